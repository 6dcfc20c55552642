package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// Defaults for Options.
const (
	DefaultBatch           = 64
	DefaultMaxAttempts     = 8
	DefaultBusyDelay       = 25 * time.Millisecond
	DefaultHeartbeat       = 15 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	DefaultPausedDelay     = 5 * time.Second
	maxBackoff             = 10 * time.Minute
)

// Source hands out delivered jobs. Next blocks until one is delivered or
// ctx ends; More returns what is available right now, up to n.
type Source interface {
	Next(ctx context.Context) (syncer.Delivery, error)
	More(n int) []syncer.Delivery
}

// Sink stores what the pool decides: every result for whoever follows the
// jobs, each given-up job where an operator finds it and can put it back,
// and the follow-up job for a scope whose run saw files vanish.
type Sink interface {
	PublishResult(r syncer.Result) error
	PublishDead(ctx context.Context, r syncer.Result) error
	PublishJob(ctx context.Context, j syncer.Job) error
}

// OpenFiles lists the files below scopes that are being written now.
type OpenFiles interface {
	OpenBelow(scopes ...syncer.Scope) []string
}

// Options configure a Pool; zero values mean the defaults.
type Options struct {
	// Workers is the number of concurrent rsyncs, runtime.GOMAXPROCS(0) by default.
	Workers int
	// Batch is the most jobs one rsync run may cover.
	Batch int
	// MaxAttempts is how many transient failures a job may have before it
	// is given up (Term).
	MaxAttempts int
	// BusyDelay is how long a job whose scope is busy first waits before
	// redelivery; it doubles with each delivery, up to 250 ms.
	BusyDelay time.Duration
	// Heartbeat is how often a running job tells the queue it is alive; it
	// must be well under the queue's ack wait.
	Heartbeat time.Duration
	// ShutdownTimeout is how long running rsyncs may finish after the pool
	// is asked to stop; then they are cancelled and their jobs redelivered.
	ShutdownTimeout time.Duration
	// Backoff gives the redelivery delay after the n-th failure;
	// DefaultBackoff when zero.
	Backoff syncer.Backoff
	// PausedDelay is how long a job the Gate holds (syncer.ErrPaused)
	// waits before it is tried again.
	PausedDelay time.Duration

	Source Source
	Syncer syncer.Syncer
	// Gate, when set, says which scopes of a run must wait (the deletion
	// guard, an operator's pause): their jobs come back after PausedDelay
	// (or fail as usual on another error), and nothing of them is moved or
	// synced.
	Gate Gate
	// Mover, when set, makes the jobs' directory moves on the backup
	// before their scopes are synced (syncer.Job.Moves); without it the
	// syncs copy.
	Mover  syncer.Mover
	Locker Locker // a LocalLocker by default
	// Open, when set, tells which files below a run's scopes are being
	// written now (the watcher's view), whatever the jobs said when they
	// were made: a run leaves them out (syncer.Hints.Open), and each
	// brings a job of its own once it is closed.
	Open OpenFiles
	// OnRun, when set, is told of each run: what it did, how long it took
	// and its error.
	OnRun func(st syncer.Stats, took time.Duration, err error)
	// Sink, when set, stores what the pool decides beyond acks.
	Sink Sink
	// OnResult, when set, is called once per settled job (acked or given up).
	OnResult func(syncer.Result)
	// OnLost, when set, is told of a scope whose run saw source files
	// vanish (rsync exit 24) and whose follow-up job could not be queued:
	// only a reconcile looks at it again then.
	OnLost func(syncer.Scope)
	Logger *zap.Logger
}

// Pool runs Workers slots, each running one rsync at a time.
type Pool struct {
	opts Options
	log  *zap.Logger

	mu       sync.Mutex
	failures map[string]int // transient failures per job ID, for retry limits
	busy     int            // slots running an rsync
}

// New checks the options; it starts nothing.
func New(opts Options) (*Pool, error) {
	if opts.Source == nil || opts.Syncer == nil {
		return nil, errors.New("worker: source and syncer are required")
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.BusyDelay <= 0 {
		opts.BusyDelay = DefaultBusyDelay
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.PausedDelay <= 0 {
		opts.PausedDelay = DefaultPausedDelay
	}
	if opts.Backoff.Base <= 0 || opts.Backoff.Max < opts.Backoff.Base {
		opts.Backoff = DefaultBackoff
	}
	if opts.Locker == nil {
		opts.Locker = &LocalLocker{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Pool{opts: opts, log: opts.Logger, failures: map[string]int{}}, nil
}

// DefaultBackoff is the default retry delay: 2^n seconds, at most 10 minutes.
var DefaultBackoff = syncer.Backoff{Base: 2 * time.Second, Max: maxBackoff}

// Workers is the number of slots.
func (p *Pool) Workers() int { return p.opts.Workers }

// Busy is the number of slots running an rsync now.
func (p *Pool) Busy() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy
}

// Run starts the slots and blocks until ctx ends and every slot has
// settled its jobs. Running rsyncs get ShutdownTimeout to finish.
func (p *Pool) Run(ctx context.Context) error {
	// Runs outlive ctx by up to ShutdownTimeout; runCtx ends them after it.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.opts.ShutdownTimeout, cancelRuns)
		context.AfterFunc(runCtx, func() { t.Stop() })
	})
	defer stop()

	var wg sync.WaitGroup
	for i := range p.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.slot(ctx, runCtx, p.log.With(zap.Int(syncer.LogWorker, i)))
		}()
	}
	wg.Wait()
	return nil
}

func (p *Pool) slot(ctx, runCtx context.Context, log *zap.Logger) {
	for {
		d, err := p.opts.Source.Next(ctx)
		if err != nil {
			return // ctx ended
		}
		// Share a backlog between the slots instead of the first one taking
		// it all: at most Batch, at least a fair share of what waits.
		n := min(p.opts.Batch, max(1, (d.Pending+1+p.opts.Workers-1)/p.opts.Workers))
		batch := append([]syncer.Delivery{d}, p.opts.Source.More(n-1)...)
		p.runBatch(runCtx, log, batch)
	}
}

// claim is one scope taken for a run, with every delivery it settles.
type claim struct {
	scope  syncer.Scope
	ds     []syncer.Delivery
	unlock func()
	locked bool // holds its own lock (not riding on an ancestor's)
}

// depth counts the components of dir ("" is 0).
func depth(dir string) int {
	if dir == "" {
		return 0
	}
	return strings.Count(dir, "/") + 1
}

func (p *Pool) runBatch(ctx context.Context, log *zap.Logger, batch []syncer.Delivery) {
	claims, held, release := p.claim(ctx, log, batch)
	defer release()
	if len(claims) == 0 {
		return
	}
	defer func() {
		for _, c := range claims {
			c.unlock()
		}
	}()
	p.run(held, log, claims)
}

// Gate decides which scopes may run now (guard.Gate).
type Gate interface {
	// Admit returns the scopes that must wait, and the error their jobs
	// settle with; nil, nil when all may run. files are the run's
	// syncer.Hints.Files.
	Admit(ctx context.Context, scopes []syncer.Scope, files map[string][]string) ([]syncer.Scope, error)
}

// admit settles the jobs of the claims the gate holds, and returns the
// claims that may run; files are the run's (batchFiles).
func (p *Pool) admit(ctx context.Context, log *zap.Logger, claims []*claim, files map[string][]string) []*claim {
	if p.opts.Gate == nil {
		return claims
	}
	scopes := make([]syncer.Scope, len(claims))
	for i, c := range claims {
		scopes[i] = c.scope
	}
	held, err := p.opts.Gate.Admit(ctx, scopes, files)
	if len(held) == 0 {
		return claims
	}
	if err == nil {
		err = syncer.ErrPaused // held, whatever the gate said
	}
	var run []*claim
	now := time.Now()
	for _, c := range claims {
		if !slices.Contains(held, c.scope) {
			run = append(run, c)
			continue
		}
		for _, d := range c.ds {
			p.settle(log, d, d.Job.ID, syncer.Stats{}, err, now, 0, len(claims))
		}
	}
	return run
}

// run syncs the claims in one run and settles their jobs. A run of several
// scopes that fails as a whole runs each of them alone: one scope's failure
// never fails the jobs of the others.
func (p *Pool) run(ctx context.Context, log *zap.Logger, claims []*claim) {
	files := batchFiles(claims)
	if claims = p.admit(ctx, log, claims, files); len(claims) == 0 {
		return
	}
	scopes := make([]syncer.Scope, len(claims))
	for i, c := range claims {
		scopes[i] = c.scope
	}
	hints := syncer.Hints{Open: batchOpen(claims), Files: files, Verify: batchVerify(claims)}
	if p.opts.Mover != nil {
		// Left alone, as an open file is: the move takes it.
		hints.Open = append(hints.Open, keptFroms(claims)...)
	}
	if p.opts.Open != nil {
		for _, f := range p.opts.Open.OpenBelow(scopes...) {
			if !slices.Contains(hints.Open, f) {
				hints.Open = append(hints.Open, f)
			}
		}
	}

	hbCtx, stopHB := context.WithCancel(ctx)
	go p.heartbeat(hbCtx, claims)
	p.mu.Lock()
	p.busy++
	p.mu.Unlock()
	start := time.Now()
	moved := p.move(ctx, log, claims)
	st, err := p.opts.Syncer.Sync(ctx, scopes, hints)
	st.Add(moved)
	took := time.Since(start)
	p.mu.Lock()
	p.busy--
	p.mu.Unlock()
	stopHB()
	if p.opts.OnRun != nil {
		p.opts.OnRun(st, took, err)
	}
	if err != nil && len(claims) > 1 && !isCancel(err) && !errors.Is(err, syncer.ErrPaused) {
		var open *syncer.OpenFilesError
		var part *syncer.ScopeError
		if !errors.As(err, &open) && !errors.As(err, &part) {
			log.Warn("batched run failed; running its scopes one by one", zap.Int("scopes", len(claims)), zap.Error(err))
			for _, c := range claims {
				p.run(ctx, log, []*claim{c})
			}
			return
		}
	}

	var open *syncer.OpenFilesError
	if errors.As(err, &open) {
		err = nil // for every job but those covering the open files
	}
	var part *syncer.ScopeError
	if errors.As(err, &part) {
		err = nil // for every job but those of the scopes that failed
	}
	if err == nil && st.Vanished {
		p.followUp(log, scopes, syncer.ReasonVanished)
	}
	run := claims[0].ds[0].Job.ID + "#" + start.Format("150405.000000")
	// Each settle waits for the queue to confirm its ack: a batch's are
	// confirmed together, not one after the other.
	var wg sync.WaitGroup
	sem := make(chan struct{}, settlers)
	for _, c := range claims {
		for _, d := range c.ds {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				switch {
				case open != nil && open.Covers(d.Job.Scope):
					p.later(log, d, open)
				case part != nil && part.Has(c.scope):
					p.settle(log, d, run, st, part.Err, start, took, len(claims))
				default:
					p.settle(log, d, run, st, err, start, took, len(claims))
				}
			})
		}
	}
	wg.Wait()
}

// settlers bounds the jobs of one run settled at once.
const settlers = 16

// later sends back a job whose run left out files still being written: a
// second after the first time, then less and less often, up to every 30 s.
// The watcher's job for the closed file usually replaces it before.
func (p *Pool) later(log *zap.Logger, d syncer.Delivery, open *syncer.OpenFilesError) {
	delay := syncer.Backoff{Base: time.Second, Max: 30 * time.Second}.Delay(d.Attempt)
	if ce := log.Check(zap.DebugLevel, "files still open for writing; job comes back"); ce != nil {
		ce.Write(zap.String(syncer.LogJobID, d.Job.ID), zap.String(syncer.LogScope, d.Job.Scope.String()),
			zap.Strings("open", open.Paths), zap.Duration("retry_in", delay))
	}
	if err := d.Nak(delay); err != nil {
		log.Warn("nak job", zap.Error(err), zap.String(syncer.LogJobID, d.Job.ID))
	}
}

// batchOpen is what a run leaves out: a file that some job asks to skip,
// and that every job of the run covering it asks to skip too. A job that
// covers the file without skipping it may be the follow-up sent once the
// file was closed, and skipping it there would lose that follow-up.
// batchVerify is every file a job of the run asks to compare by content.
func batchVerify(claims []*claim) []string {
	var out []string
	for _, c := range claims {
		for _, d := range c.ds {
			for _, p := range d.Job.Verify {
				if !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

func batchOpen(claims []*claim) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range claims {
		for _, d := range c.ds {
			for _, p := range d.Job.Open {
				if seen[p] {
					continue
				}
				seen[p] = true
				if skippedByAll(claims, p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// batchFiles is, for each non-recursive scope of a run, the files its jobs
// name (see Job.Files) when every one of them names some: a job that names
// none covers the whole directory.
func batchFiles(claims []*claim) map[string][]string {
	var out map[string][]string
	for _, c := range claims {
		if c.scope.Recursive {
			continue
		}
		var files []string
		for _, d := range c.ds {
			if len(d.Job.Files) == 0 || d.Job.Scope != c.scope {
				files = nil
				break
			}
			files = append(files, d.Job.Files...)
		}
		if files == nil {
			continue
		}
		if out == nil {
			out = map[string][]string{}
		}
		slices.Sort(files)
		out[c.scope.Dir] = slices.Compact(files)
	}
	return out
}

func skippedByAll(claims []*claim, path string) bool {
	for _, c := range claims {
		for _, d := range c.ds {
			if d.Job.Scope.HasFile(path) && !slices.Contains(d.Job.Open, path) {
				return false
			}
		}
	}
	return true
}

// claim locks the scopes of a batch. A delivery whose scope is covered by an
// already claimed one rides along; one that overlaps a held scope waits.
// The returned release must be called once the run is over: it frees the
// run's context and its lock watchers (the pool's context lives for days).
func (p *Pool) claim(ctx context.Context, log *zap.Logger, batch []syncer.Delivery) ([]*claim, context.Context, func()) {
	var claims []*claim
	var lctxs []context.Context
	// Shallow scopes first: a lock on a directory keeps every other worker
	// out of its whole subtree (and its ancestors), so a deeper scope of
	// the same batch can run under it, in this run, after it.
	batch = slices.Clone(batch)
	slices.SortStableFunc(batch, func(a, b syncer.Delivery) int {
		return cmp.Compare(depth(a.Job.Scope.Dir), depth(b.Job.Scope.Dir))
	})
next:
	for _, d := range batch {
		for _, c := range claims {
			switch {
			case c.scope.Covers(d.Job.Scope):
				froms, ok := p.lockFroms(ctx, log, claims, d)
				if !ok {
					continue next
				}
				c.ds = append(c.ds, d)
				c.unlock = chain(c.unlock, froms)
				continue next
			case c.locked && (c.scope.Dir == d.Job.Scope.Dir || syncer.IsAncestor(c.scope.Dir, d.Job.Scope.Dir)):
				// A new directory's own job and its parent's, typically:
				// one run instead of one waiting for the other.
				froms, ok := p.lockFroms(ctx, log, claims, d)
				if !ok {
					continue next
				}
				claims = append(claims, &claim{scope: d.Job.Scope, ds: []syncer.Delivery{d}, unlock: froms})
				continue next
			case c.scope.Overlaps(d.Job.Scope):
				p.busyNak(log, d)
				continue next
			}
		}
		lctx, unlock, err := p.opts.Locker.TryLock(ctx, d.Job.Scope)
		if err != nil {
			if !errors.Is(err, ErrBusy) {
				log.Warn("lock scope", zap.Error(err), zap.String(syncer.LogScope, d.Job.Scope.String()))
			}
			p.busyNak(log, d)
			continue
		}
		c := &claim{scope: d.Job.Scope, ds: []syncer.Delivery{d}, unlock: unlock, locked: true}
		froms, ok := p.lockFroms(ctx, log, append(claims, c), d)
		if !ok {
			unlock()
			continue
		}
		c.unlock = chain(unlock, froms)
		claims = append(claims, c)
		lctxs = append(lctxs, lctx)
	}
	// The run stops if any of its locks is lost.
	held, cancel := context.WithCancel(ctx)
	stops := []func() bool{}
	for _, l := range lctxs {
		if l != ctx {
			stops = append(stops, context.AfterFunc(l, cancel))
		}
	}
	return claims, held, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// ownMoves are the moves of d that its run makes: those landing in its
// (recursive) scope, which the run then syncs whole. The others ride on
// the job of the directory a move left, to keep its sync from deleting
// what is about to move (see keptFroms).
func ownMoves(d syncer.Delivery) []syncer.Move {
	var out []syncer.Move
	for _, m := range d.Job.Moves {
		if d.Job.Scope.Covers(syncer.Scope{Dir: m.To, Recursive: true}) {
			out = append(out, m)
		}
	}
	return out
}

// lockFroms locks, for each move d makes, the subtree it moves from,
// unless a claim of the run covers it already. When one is busy it sends
// d back and reports false.
func (p *Pool) lockFroms(ctx context.Context, log *zap.Logger, claims []*claim, d syncer.Delivery) (unlock func(), ok bool) {
	unlock = func() {}
	if p.opts.Mover == nil {
		return unlock, true
	}
next:
	for _, m := range ownMoves(d) {
		from := syncer.Scope{Dir: m.From, Recursive: true}
		for _, c := range claims {
			if c.scope.Covers(from) {
				continue next
			}
		}
		_, u, err := p.opts.Locker.TryLock(ctx, from)
		if err != nil {
			unlock()
			p.busyNak(log, d)
			return nil, false
		}
		unlock = chain(unlock, u)
	}
	return unlock, true
}

func chain(a, b func()) func() { return func() { b(); a() } }

// move makes the claims' own moves, in order, before their run syncs. A
// move that could not be made leaves the copy to the sync, and the old
// path to its parent's next sync, which is queued.
func (p *Pool) move(ctx context.Context, log *zap.Logger, claims []*claim) syncer.Stats {
	var st syncer.Stats
	if p.opts.Mover == nil {
		return st
	}
	var moves []syncer.Move
	for _, c := range claims {
		for _, d := range c.ds {
			moves = syncer.ThenMoves(moves, ownMoves(d)...)
		}
	}
	var again []syncer.Scope
	for _, m := range moves {
		t0 := time.Now()
		moved, n, err := p.opts.Mover.Move(ctx, m)
		if moved {
			st.Moved++
			st.MovedBytes += n
		}
		fields := []zap.Field{zap.String("from", m.From), zap.String("to", m.To), zap.Bool("moved", moved),
			zap.Int64("moved_bytes", n), zap.Duration(syncer.LogTook, time.Since(t0))}
		switch {
		case err != nil:
			log.Warn("move on the backup failed; copying instead", append(fields, zap.Error(err))...)
		case moved:
			log.Info("moved on the backup", fields...)
		default:
			log.Debug("not moved on the backup; copying instead", fields...)
		}
		if !moved {
			again = append(again, syncer.Scope{Dir: syncer.Parent(m.From)})
		}
	}
	if len(again) > 0 {
		p.followUp(log, again, syncer.ReasonChange)
	}
	return st
}

// keptFroms are the old paths of the moves the claims' jobs carry but do
// not make: their sync leaves them on the backup for the move. A path a
// move of the run lands on, or a scope of the run, is synced as usual.
func keptFroms(claims []*claim) []string {
	var own []syncer.Move
	for _, c := range claims {
		for _, d := range c.ds {
			own = append(own, ownMoves(d)...)
		}
	}
	var out []string
next:
	for _, c := range claims {
		for _, d := range c.ds {
			for _, m := range d.Job.Moves {
				if slices.Contains(own, m) || slices.Contains(out, m.From) {
					continue
				}
				for _, o := range own {
					if o.To == m.From || syncer.IsAncestor(o.To, m.From) {
						continue next
					}
				}
				for _, c := range claims {
					if c.scope.Dir == m.From || syncer.IsAncestor(m.From, c.scope.Dir) {
						continue next
					}
				}
				out = append(out, m.From)
			}
		}
	}
	return out
}

func (p *Pool) busyNak(log *zap.Logger, d syncer.Delivery) {
	if ce := log.Check(zap.DebugLevel, "scope busy, job deferred"); ce != nil {
		ce.Write(zap.String(syncer.LogJobID, d.Job.ID), zap.String(syncer.LogScope, d.Job.Scope.String()))
	}
	// Soon at first (a directory's follow-up waits for its running sync,
	// typically tens of milliseconds), then every 250 ms: a job waiting
	// under a long sync costs a few redeliveries a second, and starts at
	// most 250 ms after it ends.
	delay := syncer.Backoff{Base: p.opts.BusyDelay, Max: max(p.opts.BusyDelay, 250*time.Millisecond)}.Delay(d.Attempt)
	if err := d.Nak(delay); err != nil {
		log.Warn("nak job", zap.Error(err), zap.String(syncer.LogJobID, d.Job.ID))
	}
}

func (p *Pool) heartbeat(ctx context.Context, claims []*claim) {
	t := time.NewTicker(p.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, c := range claims {
				for _, d := range c.ds {
					_ = d.InProgress()
				}
			}
		}
	}
}

// settle is the one place that decides a job's fate after its run.
func (p *Pool) settle(log *zap.Logger, d syncer.Delivery, run string, st syncer.Stats, err error, start time.Time, took time.Duration, batch int) {
	j := d.Job
	res := syncer.Result{Job: j, Run: run, Started: start, Finished: start.Add(took), Stats: st}
	fields := []zap.Field{
		zap.String(syncer.LogProject, j.Scope.Project()), zap.String(syncer.LogDir, j.Scope.Dir),
		zap.Bool("recursive", j.Scope.Recursive), zap.String(syncer.LogJobID, j.ID),
		zap.String(syncer.LogReason, string(j.Reason)), zap.Int(syncer.LogAttempt, d.Attempt),
		zap.Duration(syncer.LogTook, took), zap.Int("batch", batch),
		zap.Int64(syncer.LogFiles, st.Files), zap.Int64(syncer.LogBytes, st.Bytes), zap.Int64(syncer.LogDeleted, st.Deleted),
	}
	if st.Moved > 0 {
		fields = append(fields, zap.Int64("moved", st.Moved), zap.Int64("moved_bytes", st.MovedBytes))
	}
	if err == nil {
		if aerr := d.Ack(); aerr != nil {
			// Not confirmed: the job comes back and runs again, harmlessly.
			log.Warn("ack job", append(fields, zap.Error(aerr))...)
			return
		}
		p.forget(j.ID)
		res.OK = true
		if !j.FirstEvent.IsZero() {
			fields = append(fields, zap.Duration(syncer.LogLag, res.Finished.Sub(j.FirstEvent)))
		}
		log.Info("job done", append(fields, zap.Int(syncer.LogExitCode, 0))...)
		p.report(res)
		return
	}

	code := exitCode(err)
	res.ExitCode, res.Error = code, err.Error()
	fields = append(fields, zap.Int(syncer.LogExitCode, code), zap.Error(err))
	if isCancel(err) {
		// Shutdown or a lost lock: not the job's fault; run it again soon.
		log.Warn("job interrupted, returned to the queue", fields...)
		_ = d.Nak(0)
		return
	}
	if errors.Is(err, syncer.ErrPaused) {
		// Not the job's fault either: it waits until deleting is safe. The
		// guard logs the trip once; here it is one line per held job.
		log.Debug("job held: project paused", fields...)
		_ = d.Nak(p.opts.PausedDelay)
		return
	}
	var tr interface{ Transient() bool }
	transient := errors.As(err, &tr) && tr.Transient()
	n := p.fail(j.ID)
	if transient && n < p.opts.MaxAttempts {
		delay := p.opts.Backoff.Delay(n)
		log.Warn("job failed, will retry", append(fields, zap.Int("failures", n), zap.Duration("retry_in", delay))...)
		_ = d.Nak(delay)
		return
	}
	p.forget(j.ID)
	if terr := d.Term(); terr != nil {
		log.Warn("term job", append(fields, zap.NamedError("term_error", terr))...)
	}
	log.Error("job given up", append(fields, zap.Int("failures", n), zap.Bool("transient", transient))...)
	p.report(res)
}

func (p *Pool) report(r syncer.Result) {
	if p.opts.OnResult != nil {
		p.opts.OnResult(r)
	}
	if p.opts.Sink == nil {
		return
	}
	if !r.OK {
		if err := p.opts.Sink.PublishDead(context.Background(), r); err != nil {
			p.log.Error("store dead-lettered job", zap.Error(err), zap.String(syncer.LogJobID, r.Job.ID))
		}
	}
	if err := p.opts.Sink.PublishResult(r); err != nil {
		p.log.Warn("publish result", zap.Error(err))
	}
}

// followUp queues another look at scopes: those whose run saw files
// vanish, the parents of directories that could not be moved.
func (p *Pool) followUp(log *zap.Logger, scopes []syncer.Scope, r syncer.Reason) {
	now := time.Now()
	for i, s := range scopes {
		j := syncer.Job{ID: fmt.Sprintf("%s-%d-%d", r, now.UnixNano(), i), Scope: s, Reason: r, FirstEvent: now}
		err := errors.New("no sink")
		if p.opts.Sink != nil {
			err = p.opts.Sink.PublishJob(context.Background(), j)
		}
		if err != nil {
			log.Warn("follow-up job not queued; left to reconcile", zap.Error(err), zap.String(syncer.LogScope, s.String()))
			if p.opts.OnLost != nil {
				p.opts.OnLost(s)
			}
		}
	}
}

func (p *Pool) fail(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures[id]++
	return p.failures[id]
}

func (p *Pool) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.failures, id)
}

func isCancel(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func exitCode(err error) int {
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return -1
}
