package reconcile

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/index"
)

// States of a reconcile, in Report.State.
const (
	StateWalking = "walking"
	StateSyncing = "syncing"
	StateDone    = "done"
	StateFailed  = "failed"  // some jobs failed (dead-lettered)
	StateRefused = "refused" // the deletion guard holds every job
	StateHeld    = "held"    // what is left waits for the deletion brake's approval
	StateError   = "error"
)

// Reasons a reconcile runs, in Report.Why, beyond those a caller names.
const (
	WhyStartup   = "startup"   // the daemon's first, while the watches go in
	WhyScheduled = "scheduled" // RunnerOptions' interval
	WhyRequested = "requested" // lost events, unwatched directories, a failover
)

// Report is one reconcile as the API and the CLI show it.
type Report struct {
	ID       string    `json:"id"`
	Why      string    `json:"reason"`
	Projects []string  `json:"projects,omitempty"` // none: all
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Deep is a walk that read every backup entry (Options.Deep).
	Deep bool `json:"deep,omitempty"`
	// State is one of the State constants.
	State string `json:"state"`
	Dirs  int64  `json:"dirs"`
	// Trusted counts the directories whose backup entries were not read
	// (Plan.Trusted).
	Trusted    int64    `json:"dirs_trusted"`
	Entries    int64    `json:"entries"`
	DriftFiles int64    `json:"drift_files"`
	DriftBytes int64    `json:"drift_bytes"`
	Jobs       int      `json:"jobs"`
	Done       int      `json:"jobs_done"`
	Failed     int      `json:"jobs_failed"`
	Files      int64    `json:"files"`
	Bytes      int64    `json:"bytes"`
	Deleted    int64    `json:"deleted"`
	Errors     []string `json:"errors,omitempty"`
	Error      string   `json:"error,omitempty"`
	// Held are the projects whose jobs wait for the deletion brake's
	// approval: the reconcile ends without them.
	Held []string `json:"held,omitempty"`
}

// Ended reports whether the reconcile is over, however it ended.
func (r Report) Ended() bool {
	switch r.State {
	case StateDone, StateFailed, StateRefused, StateHeld, StateError:
		return true
	}
	return false
}

// Projects checks the projects a request names for a reconcile (each a
// plain name, syncer.CheckName) and returns them sorted, each once.
func Projects(ps []string) ([]string, error) {
	for _, p := range ps {
		if err := syncer.CheckName(p); err != nil {
			return nil, fmt.Errorf("project: %w", err)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(ps))), nil
}

// Covers reports whether a reconcile of the projects have also covers those
// of want (none meaning all projects).
func Covers(have, want []string) bool {
	if len(have) == 0 {
		return true
	}
	if len(want) == 0 {
		return false
	}
	for _, p := range want {
		if !slices.Contains(have, p) {
			return false
		}
	}
	return true
}

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	// Walk names the trees (Source, Dest, Excludes, IgnoreDest, partition
	// bounds); Projects, OnScope and BeforeRead are set per reconcile.
	Walk Options
	// Jobs takes the jobs a walk finds.
	Jobs Publisher
	// Check is the deletion guard, asked before every walk: a reconcile
	// never plans deletions from a source that is not there.
	Check func() error
	// Watched, when set, blocks until the watcher watches dir; the startup
	// reconcile reads each directory only once it is watched, so that it
	// can walk while the watches go in and miss nothing changed meanwhile.
	Watched func(dir string)
	// OnFound, when set, is called each time a walk finds a difference,
	// before its job is queued (a standalone reconcile opens its queue then).
	OnFound func()
	// OnQueued, when set, is called after each batch of jobs is queued.
	OnQueued func(jobs int)
	// Holds, when set, says whether a project's jobs wait (for the
	// deletion brake's approval, for an operator's resume; the root's
	// project is ""): a reconcile whose remaining jobs are all held ends.
	Holds func(project string) bool
	// OnDone, when set, is called when a reconcile whose walk completed
	// ends, with what each project's backup lacked.
	OnDone func(r Report, drift map[string]Drift)
	// Workers is how many jobs the workers run at once (default
	// GOMAXPROCS): while fewer of a reconcile's jobs wait, what its walk
	// finds is queued at once, so that syncing starts while it walks.
	Workers int
	// SubmitEvery bounds how long a walk's findings gather while the
	// workers are busy with its earlier ones (default 1 s).
	SubmitEvery time.Duration
	// DeepEvery is how often a reconcile of the whole tree reads every
	// backup entry (Options.Deep), counted from the last one that did, as
	// the index records it (0: only when asked).
	DeepEvery time.Duration
	// Keep is how many reports are kept for Report (default 20).
	Keep   int
	Logger *zap.Logger
}

// Runner runs reconciles: walk, queue what differs while the walk goes on,
// follow the jobs to the end, and keep the reports.
type Runner struct {
	opts RunnerOptions
	log  *zap.Logger

	mu       sync.Mutex
	runs     []*run // newest last
	trackers map[*Tracker]bool
}

type run struct {
	Report
	tracker *Tracker
}

// NewRunner returns a Runner.
func NewRunner(opts RunnerOptions) *Runner {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.SubmitEvery <= 0 {
		opts.SubmitEvery = time.Second
	}
	if opts.Keep <= 0 {
		opts.Keep = 20
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Runner{opts: opts, log: opts.Logger, trackers: map[*Tracker]bool{}}
}

var seq atomic.Int64

// Start records a reconcile about to run and returns its ID; deep asks it
// to read every backup entry (Options.Deep). When join is set and a
// reconcile for the same reason that covers projects (and is deep, if
// asked) is still walking, its ID is returned instead, with joined true:
// forty requests at once cost one walk, not forty.
func (r *Runner) Start(why string, projects []string, deep, join bool) (id string, joined bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if join {
		for _, x := range r.runs {
			if x.Why == why && x.State == StateWalking && Covers(x.Projects, projects) && (x.Deep || !deep) {
				return x.ID, true
			}
		}
	}
	// Unique across processes: job IDs derive from it and JetStream drops a
	// publish whose ID it saw in the last two minutes (a restart within the
	// same second would otherwise lose the whole startup reconcile).
	var b [4]byte
	_, _ = rand.Read(b[:])
	x := &run{Report: Report{ID: fmt.Sprintf("r%d-%d-%x", time.Now().Unix(), seq.Add(1), b), Why: why,
		Projects: projects, Deep: deep, Started: time.Now(), State: StateWalking}}
	r.runs = append(r.runs, x)
	if len(r.runs) > r.opts.Keep {
		r.runs = r.runs[len(r.runs)-r.opts.Keep:]
	}
	return x.ID, false
}

// Reconcile starts a reconcile and runs it to the end.
func (r *Runner) Reconcile(ctx context.Context, why string, projects []string) error {
	id, _ := r.Start(why, projects, false, false)
	return r.Run(ctx, id)
}

// Report returns reconcile id with live figures; "" is the latest.
func (r *Runner) Report(id string) (Report, bool) {
	r.mu.Lock()
	x := r.find(id)
	if x == nil {
		r.mu.Unlock()
		return Report{}, false
	}
	v, t := x.Report, x.tracker
	v.Errors = slices.Clone(v.Errors)
	r.mu.Unlock()
	if t != nil && !v.Ended() {
		s := t.Summary()
		v.Jobs, v.Done, v.Failed, v.Files, v.Bytes, v.Deleted = s.Jobs, s.Done, s.Failed, s.Stats.Files, s.Stats.Bytes, s.Stats.Deleted
	}
	return v, true
}

// find returns reconcile id ("" the latest), nil if unknown; r.mu is held.
func (r *Runner) find(id string) *run {
	if id == "" && len(r.runs) > 0 {
		return r.runs[len(r.runs)-1]
	}
	for _, x := range r.runs {
		if x.ID == id {
			return x
		}
	}
	return nil
}

// Observe takes one result from the results subject.
func (r *Runner) Observe(res syncer.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t := range r.trackers {
		t.Observe(res)
	}
}

func (r *Runner) update(id string, fn func(x *run)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if x := r.find(id); x != nil {
		fn(x)
	}
}

// Run runs the reconcile Start recorded: it walks (the given projects of)
// the trees, queues what differs and waits until those jobs are settled.
// Failed jobs are reported, not returned: they are dead-lettered and
// everything else goes on.
func (r *Runner) Run(ctx context.Context, id string) error {
	err := r.run(ctx, id)
	r.update(id, func(x *run) {
		x.Finished = time.Now()
		switch {
		case errors.Is(err, syncer.ErrPaused):
			x.State, x.Error = StateRefused, err.Error()
		case err != nil:
			x.State, x.Error = StateError, err.Error()
		case x.Failed > 0:
			x.State = StateFailed
		case len(x.Held) > 0:
			x.State = StateHeld
		default:
			x.State = StateDone
		}
	})
	return err
}

// run queues each directory that differs as soon as the walk finds it, so
// that the workers sync while the walk goes on; the missing subtrees, which
// are partitioned by size, follow the walk.
func (r *Runner) run(ctx context.Context, id string) error {
	rep, ok := r.Report(id)
	if !ok {
		return fmt.Errorf("reconcile %s: unknown", id)
	}
	if r.opts.Check != nil {
		if err := r.opts.Check(); err != nil {
			return err
		}
	}
	t := NewTracker()
	r.mu.Lock()
	r.trackers[t] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.trackers, t)
		r.mu.Unlock()
	}()
	r.update(id, func(x *run) { x.tracker = t })

	found := make(chan syncer.Job, 1024)
	submitted := make(chan error, 1)
	go func() { submitted <- r.submit(ctx, id, t, found) }()
	opts := r.opts.Walk
	opts.Projects = rep.Projects
	opts.Deep = rep.Deep || (len(rep.Projects) == 0 && opts.Index != nil && r.opts.DeepEvery > 0 &&
		time.Since(opts.Index.DeepAt()) >= r.opts.DeepEvery)
	r.update(id, func(x *run) { x.Deep = opts.Deep })
	var touchedMu sync.Mutex
	touched := map[syncer.Scope]bool{} // what the reconcile queued, and the parents holding their attributes
	touch := func(s syncer.Scope) {
		touchedMu.Lock()
		touched[s] = true
		// The parent holds the directory's own attributes; the root's
		// other entries are other projects', outside a filtered reconcile.
		if s.Dir != "" && (syncer.Parent(s.Dir) != "" || len(rep.Projects) == 0) {
			touched[syncer.Scope{Dir: syncer.Parent(s.Dir)}] = true
		}
		touchedMu.Unlock()
	}
	opts.OnScope = func(s syncer.Scope, files, verify []string) {
		if r.opts.OnFound != nil {
			r.opts.OnFound()
		}
		touch(s)
		found <- syncer.Job{Scope: s, Files: files, Verify: verify}
	}
	if rep.Why == WhyStartup {
		opts.BeforeRead = r.opts.Watched
	}
	t0 := time.Now()
	plan, werr := Walk(ctx, opts)
	walked := time.Since(t0)
	r.log.Debug("walk done", zap.Int64("dirs", plan.Dirs), zap.Int64("trusted", plan.Trusted), zap.Bool("deep", opts.Deep),
		zap.Int64("entries", plan.Entries), zap.Int("streamed", plan.Streamed), zap.Duration(syncer.LogTook, walked), zap.Error(werr))
	if werr == nil && opts.Deep && len(rep.Projects) == 0 && opts.Index != nil {
		if err := opts.Index.SetDeepAt(t0); err != nil {
			r.log.Warn("index: the time of this deep compare not recorded; the next reconcile is deep too", zap.Error(err))
		}
	}
	if werr == nil {
		for _, s := range plan.Scopes {
			if r.opts.OnFound != nil {
				r.opts.OnFound()
			}
			touch(s)
			found <- syncer.Job{Scope: s, Moves: movesOf(plan.Moves, s)}
		}
	}
	close(found)
	serr := <-submitted
	r.update(id, func(x *run) {
		x.Dirs, x.Trusted, x.Entries, x.DriftFiles, x.DriftBytes = plan.Dirs, plan.Trusted, plan.Entries, plan.Files, plan.Bytes
		x.Jobs, x.State = t.Summary().Jobs, StateSyncing
	})
	if werr != nil {
		return werr // what was queued already still runs: each job stands alone
	}
	if serr != nil {
		return serr
	}
	sum, held, err := r.wait(ctx, t)
	if err == nil && sum.Failed == 0 && len(held) == 0 && len(touched) > 0 && !plan.Blind {
		scopes := make([]syncer.Scope, 0, len(touched))
		for s := range touched {
			scopes = append(scopes, s)
		}
		sum, held, err = r.verify(ctx, id, t, scopes, sum)
	}
	r.update(id, func(x *run) {
		x.Done, x.Failed, x.Errors, x.Held = sum.Done, sum.Failed, sum.Errors, held
		x.Files, x.Bytes, x.Deleted = sum.Stats.Files, sum.Stats.Bytes, sum.Stats.Deleted
		if plan.Blind {
			// A remote backup: what rsync had to transfer is the drift.
			x.DriftFiles, x.DriftBytes = sum.Stats.Files, sum.Stats.Bytes
		}
		rep = x.Report
	})
	if err != nil {
		return err
	}
	for p, dr := range plan.Drift {
		if dr.Files > 0 && rep.Why != WhyStartup && rep.Why != "cli" {
			r.log.Warn("reconcile fixed what the watcher missed", zap.String(syncer.LogProject, p),
				zap.Int64(syncer.LogFiles, dr.Files), zap.Int64(syncer.LogBytes, dr.Bytes), zap.String(syncer.LogReason, rep.Why))
		}
	}
	if r.opts.OnDone != nil {
		r.opts.OnDone(rep, plan.Drift)
	}
	r.log.Info("reconcile done", zap.String("id", id), zap.String(syncer.LogReason, rep.Why), zap.Strings("projects", rep.Projects),
		zap.Int64("dirs", rep.Dirs), zap.Int64("entries", rep.Entries), zap.Int(syncer.LogJobs, sum.Jobs),
		zap.Int("failed", sum.Failed), zap.Int64("drift_files", rep.DriftFiles), zap.Int64("drift_bytes", rep.DriftBytes),
		zap.Int64(syncer.LogFiles, sum.Stats.Files), zap.Int64(syncer.LogBytes, sum.Stats.Bytes),
		zap.Int64(syncer.LogDeleted, sum.Stats.Deleted), zap.Duration("walk", walked), zap.Duration(syncer.LogTook, time.Since(rep.Started)))
	if sum.Failed > 0 {
		r.log.Error("reconcile jobs failed", zap.String("id", id), zap.Int("failed", sum.Failed), zap.Strings("errors", sum.Errors))
	}
	return nil
}

// verifyRounds bounds how often a reconcile queues what a compare of what
// it touched still finds different.
const verifyRounds = 3

// verify compares again what a reconcile touched (its scopes, and their
// parents for the directories' own attributes), once its jobs are done,
// and queues what still differs (a change made meanwhile, a directory's
// times another run moved) until nothing does: a reconcile is done only
// when the backup of what it touched equals the source. What still differs
// after verifyRounds is reported as a failure.
func (r *Runner) verify(ctx context.Context, id string, t *Tracker, scopes []syncer.Scope, sum Summary) (Summary, []string, error) {
	opts := r.opts.Walk
	opts.Scopes, opts.Kept = scopes, true
	for round := 1; ; round++ {
		t0 := time.Now()
		plan, err := Walk(ctx, opts)
		r.log.Debug("verify walk done", zap.Int("round", round), zap.Int64("dirs", plan.Dirs), zap.Int64("trusted", plan.Trusted),
			zap.Int("differ", len(plan.Scopes)), zap.Duration(syncer.LogTook, time.Since(t0)), zap.Error(err))
		if err != nil || len(plan.Scopes) == 0 {
			return sum, nil, err
		}
		if round > verifyRounds {
			sum.Failed++
			sum.Errors = append(sum.Errors, fmt.Sprintf("%d scopes still differ after %d rounds (first: %s): changing faster than they sync",
				len(plan.Scopes), verifyRounds, plan.Scopes[0]))
			return sum, nil, nil
		}
		r.log.Info("reconcile: what it touched still differs; syncing it again", zap.String("id", id), zap.Int("round", round),
			zap.Int("scopes", len(plan.Scopes)), zap.String("first", plan.Scopes[0].String()))
		// A file changed within index.Margin of a sync is not recorded by
		// it (index.Unknown), and this compare finds it unrecorded: the
		// round's syncs start once the margin has passed since the compare
		// began, so that they can record what they find.
		if wait := index.Margin - time.Since(t0); wait > 0 {
			select {
			case <-ctx.Done():
				return sum, nil, ctx.Err()
			case <-time.After(wait):
			}
		}
		jobs := make([]syncer.Job, len(plan.Scopes))
		for i, s := range plan.Scopes {
			jobs[i] = syncer.Job{Scope: s}
		}
		if err := t.Submit(ctx, r.opts.Jobs, fmt.Sprintf("reconcile-%s-verify%d", id, round), jobs, syncer.ReasonReconcile); err != nil {
			return sum, nil, err
		}
		var held []string
		if sum, held, err = r.wait(ctx, t); err != nil || sum.Failed > 0 || len(held) > 0 {
			return sum, held, err
		}
	}
}

// errHeld ends a wait whose remaining jobs all wait for approval.
var errHeld = errors.New("remaining jobs held")

// wait waits until every job is settled, or until those left all belong to
// projects held (RunnerOptions.Holds), which it returns.
func (r *Runner) wait(ctx context.Context, t *Tracker) (Summary, []string, error) {
	if r.opts.Holds == nil {
		sum, err := t.Wait(ctx)
		return sum, nil, err
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var held []string
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			left := t.Waiting()
			if len(left) == 0 {
				continue
			}
			var projects []string
			all := true
			for _, s := range left {
				if !r.opts.Holds(s.Project()) {
					all = false
					break
				}
				if s.Project() != "" && !slices.Contains(projects, s.Project()) { // the root: held with them
					projects = append(projects, s.Project())
				}
			}
			if all {
				slices.Sort(projects)
				held = projects
				cancel(errHeld)
				return
			}
		}
	}()
	sum, err := t.Wait(wctx)
	if err != nil && errors.Is(context.Cause(wctx), errHeld) && ctx.Err() == nil {
		return sum, held, nil
	}
	return sum, nil, err
}

// submit queues the jobs a walk finds: at once while the workers have room
// (RunnerOptions.Workers), else in batches of what arrived until one of
// them settled, or within SubmitEvery, at most 512. After a failed publish
// it keeps draining found, queueing nothing.
func (r *Runner) submit(ctx context.Context, id string, t *Tracker, found <-chan syncer.Job) error {
	var batch []syncer.Job
	var err error
	n := 0
	flush := func() {
		if len(batch) > 0 && err == nil {
			if err = t.Submit(ctx, r.opts.Jobs, fmt.Sprintf("reconcile-%s-%d", id, n), batch, syncer.ReasonReconcile); err == nil {
				if r.opts.OnQueued != nil {
					r.opts.OnQueued(len(batch))
				}
				n++
			}
		}
		batch = batch[:0]
	}
	tick := time.NewTicker(r.opts.SubmitEvery)
	defer tick.Stop()
	for {
		// Group commit: while fewer jobs wait than the workers run at
		// once, what was found goes at once; else it gathers until one
		// settles, so that a batch is what piled up meanwhile.
		unsettled, settled := t.Unsettled()
		if unsettled < r.opts.Workers && len(batch) > 0 {
			flush()
			continue
		}
		select {
		case j, ok := <-found:
			if !ok {
				flush()
				return err
			}
			if batch = append(batch, j); len(batch) >= 512 {
				flush()
			}
		case <-settled:
		case <-tick.C:
			flush()
		}
	}
}

// movesOf are the moves a job of s carries: those landing in it (a
// recursive scope), and those leaving it (the flat scope of the parent of
// their From, which keeps the directory for them).
func movesOf(moves []syncer.Move, s syncer.Scope) []syncer.Move {
	var out []syncer.Move
	for _, m := range moves {
		if s.Covers(syncer.Scope{Dir: m.To, Recursive: true}) || (!s.Recursive && syncer.Parent(m.From) == s.Dir) {
			out = append(out, m)
		}
	}
	return out
}
