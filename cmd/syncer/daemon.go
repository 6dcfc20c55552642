package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/coalesce"
	"github.com/syncer/syncer/copier"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/watcher"
	"github.com/syncer/syncer/worker"
)

// addrFile is where the daemon records its HTTP address in the state dir,
// for `syncer status` and `syncer reconcile`.
const addrFile = "http.addr"

// daemon is `syncer run`: embedded NATS, watcher, coalescer, workers,
// reconcile and the HTTP API in one process.
type daemon struct {
	cfg     Config
	log     *zap.Logger
	metrics *metrics
	started time.Time

	ready     chan struct{} // closed when the initial reconcile is done
	reconcile chan struct{} // wakes the reconciler: wanted has projects

	// Set once in Run before any goroutine reads them.
	q      *queue.JetStream
	pool   *worker.Pool
	runner *rsync.Runner
	guard  *guard.Guard
	addr   string // HTTP listener, "" when none

	w atomic.Pointer[watcher.Watcher] // replaced when the source root is

	// mu guards what follows. Lock order: mu before a Tracker's own lock
	// (observe calls Tracker.Observe with mu held); nothing takes mu while
	// holding another lock.
	mu       sync.Mutex
	trackers map[*reconcile.Tracker]bool
	projects map[string]*projectStatus
	recons   []*reconcileRun // recent reconciles, newest last
	paused   string          // why the deletion guard holds every job, "" when it does not
	wanted   map[string]bool // projects to reconcile ("" is all), until a reconcile of them succeeds

	failoverPending bool // a reconcile after a NATS leader election is scheduled

	networkFS string          // the source's filesystem when it is a network one
	oneShot   bool            // a standalone reconcile: in-memory queue
	role      string          // "run" or "" (everything), "watch" or "work"
	runCtx    context.Context // ends when Run does; API-started work uses it
	bg        sync.WaitGroup  // API-started work, joined before Run returns
	startPool func()          // starts the worker pool once
	stopping  bool            // set under mu before bg.Wait: no more bg.Add

	runs atomic.Int64 // rsync runs, for tests and status
}

// projectStatus is the per-project state shown by `syncer status`.
type projectStatus struct {
	LastSync   time.Time `json:"last_sync,omitzero"`
	LastLag    float64   `json:"last_lag_seconds"`
	Done       int64     `json:"jobs_done"`
	Failed     int64     `json:"jobs_failed"`
	LastError  string    `json:"last_error,omitempty"`
	failing    bool
	lastFailed time.Time
}

func newDaemon(cfg Config, log *zap.Logger) *daemon {
	return &daemon{cfg: cfg, log: log, metrics: newMetrics(), ready: make(chan struct{}),
		reconcile: make(chan struct{}, 1), wanted: map[string]bool{}, trackers: map[*reconcile.Tracker]bool{},
		projects: map[string]*projectStatus{}}
}

// Ready is closed once the initial reconcile has made the backup equal to
// the source as it was at start.
func (d *daemon) Ready() <-chan struct{} { return d.ready }

func (d *daemon) isReady() bool {
	select {
	case <-d.ready:
		return true
	default:
		return false
	}
}

// open starts what every mode needs: the embedded queue, the rsync runner
// behind the deletion guard, the worker pool, result bookkeeping and the
// HTTP API. stop shuts them down in order: pool (running jobs settle), HTTP,
// connection, server.
func (d *daemon) open(ctx context.Context) (stop func(), err error) {
	cfg := d.cfg
	d.started = time.Now()
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	nc, natsURL, err := d.connect(&undo)
	if err != nil {
		return nil, err
	}
	replicas := cfg.NatsReplicas
	if replicas == 0 {
		replicas = queue.Replicas(nc) // 3 on a cluster: survive the loss of a server
	}
	if d.q, err = queue.Open(ctx, nc, queue.Options{Logger: d.log.Named("queue"), Replicas: replicas, JobAckWait: cfg.JobAckWait,
		EventAckWait: 3*cfg.MaxDelay + time.Minute, Memory: d.oneShot}); err != nil {
		return nil, err
	}
	runner, err := d.newRunner()
	if err != nil {
		return nil, err
	}
	d.runner = runner
	if cfg.remote() && d.role != "watch" {
		// A worker that cannot reach the backup says so now, not per job.
		if err := runner.Reachable(ctx, 30*time.Second); err != nil {
			return nil, err
		}
	}
	if d.guard == nil {
		d.guard = d.newGuard()
	}
	w, err := d.newWatcher()
	if err != nil {
		return nil, err
	}
	d.w.Store(w)
	var locker worker.Locker // in-process by default
	if len(cfg.NatsURL) > 0 {
		// Workers on other hosts share this queue: lease scopes cluster-wide.
		if locker, err = d.q.OpenLeases(ctx, cfg.LeaseTTL); err != nil {
			return nil, err
		}
	}
	if d.pool, err = worker.New(worker.Options{Workers: cfg.Workers, Batch: cfg.Batch, Source: d.q.Jobs(), Locker: locker,
		Syncer: guarded{skipWriting{instrumented{d.withCopier(runner), d}, d}, d}, ShutdownTimeout: cfg.ShutdownTimeout, Logger: d.log.Named("worker"),
		OnResult: d.onResult, OnVanished: d.followUp, MaxAttempts: cfg.RetryMax, Heartbeat: cfg.JobAckWait / 4,
		Backoff: syncer.Backoff{Base: cfg.RetryBackoff, Max: max(cfg.RetryBackoff, 10*time.Minute)}}); err != nil {
		return nil, err
	}
	d.registerGauges()
	stopResults, err := d.q.SubscribeResults(d.observe)
	if err != nil {
		return nil, err
	}
	undo = append(undo, stopResults)
	if len(cfg.NatsURL) > 0 && d.role != "work" {
		// The half that reconciles follows every failover with a
		// reconcile: a leader change may redeliver work or, rarely, skip it.
		stopElections, err := d.q.OnLeaderElected(d.afterFailover)
		if err != nil {
			return nil, err
		}
		undo = append(undo, stopElections)
		// Advisories are not stored: one sent while this process was
		// reconnecting is missed. A reconnect is a failover of its own.
		nc.SetReconnectHandler(func(*nats.Conn) { d.afterFailover("reconnected") })
	}

	// The pool outlives the producers so that their last jobs settle. A
	// standalone reconcile starts it once all its jobs are queued, so that
	// the workers share full batches instead of a trickle.
	poolCtx, stopPool := context.WithCancel(context.WithoutCancel(ctx))
	poolDone := make(chan error, 1)
	d.startPool = sync.OnceFunc(func() {
		if d.role == "watch" {
			poolDone <- nil // the watch role queues work, it never runs rsync
			return
		}
		go func() { poolDone <- d.pool.Run(poolCtx) }()
	})
	if !d.oneShot {
		d.startPool()
	}
	undo = append(undo, func() { stopPool(); d.startPool(); <-poolDone })

	if !d.oneShot {
		ln, err := listenControl(cfg.StateDir, cfg.ControlGroup)
		if err != nil {
			return nil, err
		}
		stop := d.serveControl(ln)
		undo = append(undo, stop)
	}
	if cfg.Listen != "" {
		var token string
		if cfg.ControlTokenFile != "" {
			if token, err = readToken(cfg.ControlTokenFile); err != nil {
				return nil, fmt.Errorf("control_token_file: %w", err)
			}
		}
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("http listen: %w", err)
		}
		d.addr = ln.Addr().String()
		if !loopback(cfg.Listen) {
			d.log.Warn("the HTTP listener is reachable from other hosts: it serves /metrics, /healthz and /readyz to anyone who connects",
				zap.String("listen", d.addr), zap.Bool("control_by_token", token != ""))
		}
		srv := &http.Server{Handler: d.tcpHandler(token, d.addr), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("http server", zap.Error(err))
			}
		}()
		// Written whole or not at all: the CLI may read it at any moment.
		tmp := filepath.Join(cfg.StateDir, addrFile+".tmp")
		if err := os.WriteFile(tmp, []byte(d.addr+"\n"), 0o600); err != nil {
			d.log.Warn("record http address", zap.Error(err))
		} else if err := os.Rename(tmp, filepath.Join(cfg.StateDir, addrFile)); err != nil {
			d.log.Warn("record http address", zap.Error(err))
		}
		undo = append(undo, func() {
			_ = os.Remove(filepath.Join(cfg.StateDir, addrFile))
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
	}
	d.log.Info("starting", zap.String("version", version), zap.String("source", cfg.Source), zap.String("dest", cfg.Dest),
		zap.String("state_dir", cfg.StateDir), zap.String("listen", d.addr), zap.String("nats", natsURL),
		zap.Int("workers", d.pool.Workers()), zap.Int("batch", cfg.Batch),
		zap.Duration("debounce", cfg.Debounce), zap.Duration("max_delay", cfg.MaxDelay),
		zap.Int("collapse_children", cfg.CollapseChildren), zap.Int("collapse_project", cfg.CollapseProject),
		zap.Strings("exclude", cfg.Exclude), zap.String("rsync_path", cfg.RsyncPath), zap.Strings("rsync_args", cfg.RsyncArgs),
		zap.Int("max_delete", cfg.MaxDelete), zap.String("trash", d.trash()), zap.Duration("trash_retention", cfg.TrashRetention),
		zap.String("marker", cfg.Marker), zap.Bool("require_mount", cfg.RequireMount),
		zap.Duration("reconcile_interval", cfg.ReconcileInterval))
	return cleanup, nil
}

// connect starts the embedded server (locking the state dir), or connects
// to the external one; undo collects the matching cleanups.
func (d *daemon) connect(undo *[]func()) (*nats.Conn, string, error) {
	cfg := d.cfg
	if len(cfg.NatsURL) > 0 {
		// The state dir still holds the lock: one daemon per state dir.
		lock, err := queue.LockDir(cfg.StateDir)
		if err != nil {
			return nil, "", err
		}
		*undo = append(*undo, func() { lock.Close() })
		nc, err := queue.ConnectExternal(cfg.external())
		if err != nil {
			return nil, "", err
		}
		*undo = append(*undo, nc.Close)
		return nc, nc.ConnectedUrlRedacted(), nil
	}
	store := filepath.Join(cfg.StateDir, "nats")
	if d.oneShot {
		// A standalone reconcile: its queue lives in memory and dies with
		// it, but it holds the state dir so no daemon starts meanwhile.
		lock, err := queue.LockDir(store)
		if err != nil {
			return nil, "", err
		}
		*undo = append(*undo, func() { lock.Close() })
		// The server is left to stop on its own (below) and removes its
		// store then.
		if store, err = queue.ScratchDir(filepath.Join(cfg.StateDir, "reconcile-queue")); err != nil {
			return nil, "", err
		}
	}
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: store, Listen: cfg.NatsListen})
	if err != nil {
		return nil, "", err
	}
	if d.oneShot {
		// Memory only and the process is about to end: do not wait the
		// ~50 ms the server takes to stop.
		*undo = append(*undo, func() {
			go func() { emb.Shutdown(); _ = os.RemoveAll(store) }()
		})
	} else {
		*undo = append(*undo, emb.Shutdown)
	}
	nc, err := emb.Connect("syncer")
	if err != nil {
		return nil, "", err
	}
	*undo = append(*undo, nc.Close)
	url := "embedded"
	if u := emb.ClientURL(); u != "" {
		url = "embedded, listening on " + u
	}
	return nc, url, nil
}

// Run is `syncer run`: it blocks until ctx ends or a component fails, and
// returns once every goroutine it started has exited.
func (d *daemon) Run(ctx context.Context) error {
	stop, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer stop()
	co, err := coalesce.New(coalesce.Config{
		Options: coalesce.Options{Quiet: d.cfg.Debounce, MaxDelay: d.cfg.MaxDelay,
			MaxChildren: d.cfg.CollapseChildren, MaxPending: d.cfg.CollapseProject},
		Publisher: d.q, Logger: d.log.Named("coalesce"),
		OnJob: func(j syncer.Job, events int) {
			d.metrics.published.WithLabelValues(string(j.Reason)).Inc()
			d.metrics.coalesced.Add(float64(events))
		},
		OnPublishError: func(error) { d.afterFailover("job publish failed") },
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	d.runCtx = gctx
	if d.role == "work" {
		// Workers only: the queue feeds them; nothing else to start.
		d.metrics.ready.Set(1)
		close(d.ready)
	} else {
		d.checkSourceFS()
		events := make(chan coalesce.Input) // unbuffered: the stream is the buffer
		g.Go(func() error { return co.Run(gctx, events) })
		g.Go(func() error {
			return d.q.ConsumeEvents(gctx, func(ev syncer.DirEvent, ack func() error) {
				select {
				case events <- coalesce.Input{Event: ev, Ack: ack}:
				case <-gctx.Done():
				}
			})
		})
		g.Go(func() error { return d.watch(gctx) })
		g.Go(func() error { return d.reconciler(gctx) })
		g.Go(func() error { d.pruneTrash(gctx); return nil })
	}
	if d.cfg.DiagnoseInterval > 0 {
		g.Go(func() error { d.diagnoseLoop(gctx, d.cfg.DiagnoseInterval); return nil })
	}
	err = g.Wait()
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
	d.bg.Wait()
	d.log.Info("stopping")
	return err
}

// Once is `syncer reconcile` with no daemon running: a walk, and once it
// finds something to sync, its own queue and pool, opened while the walk
// goes on.
func (d *daemon) Once(ctx context.Context, r *reconcileRun) (err error) {
	defer func() { d.finish(r, err) }()
	d.guard = d.newGuard()
	d.oneShot = true
	lq := &lazyQueue{open: d.open, log: d.log, ctx: ctx, done: make(chan struct{})}
	defer lq.close()
	return d.walkAndSync(ctx, r, lq)
}

// lazyQueue opens a one-shot reconcile's queue and pool at most once, in
// the background, when start is first called.
type lazyQueue struct {
	open func(context.Context) (func(), error)
	log  *zap.Logger
	ctx  context.Context

	once    sync.Once
	started atomic.Bool
	done    chan struct{} // closed once opening ended
	stop    func()
	err     error
}

func (q *lazyQueue) start() {
	q.once.Do(func() {
		q.started.Store(true)
		go func() {
			defer close(q.done)
			t0 := time.Now()
			q.stop, q.err = q.open(q.ctx)
			q.log.Debug("queue and pool up", zap.Duration(syncer.LogTook, time.Since(t0)), zap.Error(q.err))
		}()
	})
}

// ready starts opening if need be and waits until the queue takes jobs.
func (q *lazyQueue) ready() error {
	q.start()
	<-q.done
	return q.err
}

// close stops what was opened.
func (q *lazyQueue) close() {
	if !q.started.Load() {
		return
	}
	<-q.done
	if q.stop != nil {
		t0 := time.Now()
		q.stop()
		q.log.Debug("queue and pool down", zap.Duration(syncer.LogTook, time.Since(t0)))
	}
}

// withCopier puts the direct copier in front of rsync for subtrees missing
// from the backup, unless extra rsync options (ACLs, xattrs, hard links...)
// ask for what it does not keep.
func (d *daemon) withCopier(r syncer.Syncer) syncer.Syncer {
	if !d.cfg.DirectCopy || len(d.cfg.RsyncArgs) > 0 || d.cfg.remote() {
		return r
	}
	cp := copier.New(copier.Options{Source: d.cfg.Source, Dest: d.cfg.Dest, Excludes: d.cfg.Exclude, OpenWait: d.cfg.OpenFileWait, Trash: d.trash()})
	return copier.Syncer{Copier: cp, Fallback: r, Logger: d.log.Named("copier")}
}

func (d *daemon) newGuard() *guard.Guard {
	opts := guard.Options{Source: d.cfg.Source, Dest: d.cfg.Dest, Marker: d.cfg.Marker, RequireMount: d.cfg.RequireMount,
		IgnoreDest: d.ignoreDest()}
	if d.cfg.remote() && d.runner != nil {
		r := d.runner
		opts.ListDest = func() ([]string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			return r.List(ctx, "")
		}
	}
	return guard.New(opts)
}

// newRunner is the rsync runner for the configured backup.
func (d *daemon) newRunner() (*rsync.Runner, error) { return rsync.New(d.rsyncOptions()) }

func (d *daemon) rsyncOptions() rsync.Options {
	cfg := d.cfg
	return rsync.Options{Binary: cfg.RsyncPath, Source: cfg.Source, Dest: cfg.Dest,
		SSH:          rsync.SSH{Identity: cfg.SSHIdentity, Port: cfg.SSHPort, KnownHosts: cfg.SSHKnownHosts},
		PasswordFile: cfg.RsyncPasswordFile, Excludes: cfg.Exclude, Args: cfg.RsyncArgs, MaxDelete: cfg.MaxDelete,
		Trash: d.trash(), Logger: d.log.Named("rsync")}
}

// walkDest is the backup root the reconcile walk reads: none for a remote
// backup, whose comparison rsync does.
func (d *daemon) walkDest() string {
	if d.cfg.remote() {
		return ""
	}
	return d.cfg.Dest
}

func (d *daemon) registerGauges() {
	m := d.metrics
	m.reg.MustRegister(newQueueCollector(d.q))
	m.gaugeFunc("syncer_watches", "Directories watched with inotify.", func() float64 { return float64(d.w.Load().Watches()) })
	m.gaugeFunc("syncer_open_files_waiting", "Files left out of syncs until their writer closes them.", func() float64 { return float64(d.w.Load().Waiting()) })
	m.gaugeFunc("syncer_paused", "1 while the deletion guard holds every job (source unmounted, emptied, marker missing).",
		func() float64 {
			if d.pausedReason() != "" {
				return 1
			}
			return 0
		})
	m.gaugeFunc("syncer_watches_limit", "The kernel's fs.inotify.max_user_watches.", inotifyLimit)
	m.gaugeFunc("syncer_workers", "Worker slots (concurrent rsyncs).", func() float64 { return float64(d.pool.Workers()) })
	m.gaugeFunc("syncer_workers_busy", "Worker slots running an rsync now.", func() float64 { return float64(d.pool.Busy()) })
}

func (d *daemon) onResult(r syncer.Result) {
	d.metrics.result(r)
	d.mu.Lock()
	ps := d.project(r.Scope.Project())
	if r.OK {
		ps.Done++
		ps.LastSync = r.Finished
		if !r.FirstEvent.IsZero() {
			ps.LastLag = r.Finished.Sub(r.FirstEvent).Seconds()
		}
		if r.Started.After(ps.lastFailed) {
			ps.failing = false
		}
	} else {
		ps.Failed++
		ps.LastError = r.Error
		ps.failing = true
		ps.lastFailed = r.Finished
	}
	d.mu.Unlock()
	if !r.OK {
		// Given up: keep it where an operator finds it (status) and can put it back (retry).
		if err := d.q.PublishDead(context.Background(), r); err != nil {
			d.log.Error("store dead-lettered job", zap.Error(err), zap.String(syncer.LogJobID, r.JobID))
		}
	}
	if err := d.q.PublishResult(r); err != nil {
		d.log.Warn("publish result", zap.Error(err))
	}
}

// followUp queues another look at scopes whose rsync saw files vanish.
func (d *daemon) followUp(scopes []syncer.Scope) {
	for i, s := range scopes {
		j := syncer.Job{ID: fmt.Sprintf("vanished-%d-%d", time.Now().UnixNano(), i), Scope: s, Reason: syncer.ReasonVanished, FirstEvent: time.Now()}
		if err := d.q.PublishJob(context.Background(), j); err != nil {
			d.log.Warn("publish follow-up job", zap.Error(err))
			d.requestReconcile(syncer.Scope{Dir: s.Project(), Recursive: true})
		}
	}
}

// project returns the status entry of p; d.mu must be held.
func (d *daemon) project(p string) *projectStatus {
	ps := d.projects[p]
	if ps == nil {
		ps = &projectStatus{}
		d.projects[p] = ps
	}
	return ps
}

// eventSink sends watcher events to the EVENTS stream, except those that
// say events were lost: they ask for a reconcile of their scope instead.
type eventSink struct{ d *daemon }

func (s eventSink) Publish(ctx context.Context, ev syncer.DirEvent) error {
	d := s.d
	d.metrics.events.WithLabelValues(string(ev.Reason)).Inc()
	if ev.Reason == syncer.ReasonOverflow {
		if ev.Scope.Dir == "" {
			d.metrics.overflows.Inc()
		} else {
			d.metrics.watchFailures.Inc()
		}
		d.requestReconcile(ev.Scope)
		return nil
	}
	if err := d.q.PublishEvent(ctx, ev); err != nil {
		// Not stored: nothing may be lost, so look at the whole project.
		d.log.Warn("event not stored; reconciling its project", zap.Error(err))
		d.afterFailover("event publish failed")
		d.requestReconcile(syncer.Scope{Dir: ev.Scope.Project(), Recursive: true})
	}
	return nil
}

// failoverSettle is how long after a leader election the reconcile runs:
// the cluster settles and queued work drains first.
const failoverSettle = 15 * time.Second

// afterFailover schedules one full reconcile for a failover: leader
// elections (several streams and consumers elect at once), a reconnect, or
// work that could not be stored.
func (d *daemon) afterFailover(what string) {
	if !d.isReady() {
		return // elections while starting: the startup reconcile covers them
	}
	d.mu.Lock()
	pending := d.failoverPending
	d.failoverPending = true
	d.mu.Unlock()
	if pending {
		return
	}
	d.log.Warn("NATS failover; reconciling once the cluster settles", zap.String("cause", what),
		zap.Duration("in", failoverSettle))
	time.AfterFunc(failoverSettle, func() {
		d.mu.Lock()
		d.failoverPending = false
		d.mu.Unlock()
		d.requestReconcile(syncer.Scope{Recursive: true})
	})
}

func (d *daemon) requestReconcile(s syncer.Scope) {
	d.wantReconcile([]string{s.Project()})
}

// wantReconcile records projects to reconcile and wakes the reconciler.
// Requests are a set, never dropped: each stays until a reconcile that
// covers it succeeds.
func (d *daemon) wantReconcile(projects []string) {
	d.mu.Lock()
	for _, p := range projects {
		d.wanted[p] = true
	}
	d.mu.Unlock()
	select {
	case d.reconcile <- struct{}{}:
	default: // already awake
	}
}

// takeWanted returns and clears the projects to reconcile.
func (d *daemon) takeWanted() map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.wanted
	d.wanted = map[string]bool{}
	return w
}

func (d *daemon) observe(r syncer.Result) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for t := range d.trackers {
		t.Observe(r)
	}
}

// sourceProjects lists the top-level folders of the source.
func (d *daemon) sourceProjects() []string {
	ents, err := os.ReadDir(d.cfg.Source)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// instrumented counts and times rsync runs.
type instrumented struct {
	syncer.Syncer
	d *daemon
}

func (i instrumented) Sync(ctx context.Context, s []syncer.Scope, h syncer.Hints) (syncer.Stats, error) {
	i.d.runs.Add(1)
	start := time.Now()
	st, err := i.Syncer.Sync(ctx, s, h)
	i.d.metrics.run(st, time.Since(start), err)
	return st, err
}

// skipWriting leaves out of a run the files this process's watcher sees
// being written below its scopes: a job made before they were opened does
// not list them. The watcher sends a job for each once it is closed.
type skipWriting struct {
	syncer.Syncer
	d *daemon
}

func (w skipWriting) Sync(ctx context.Context, s []syncer.Scope, h syncer.Hints) (syncer.Stats, error) {
	if open := w.d.w.Load().OpenBelow(s...); len(open) > 0 {
		h.Skip = append(slices.Clone(h.Skip), open...)
	}
	return w.Syncer.Sync(ctx, s, h)
}

// guarded refuses runs while the deletion guard is tripped: every run may
// delete, so none may start from a source that vanished.
type guarded struct {
	syncer.Syncer
	d *daemon
}

func (g guarded) Sync(ctx context.Context, s []syncer.Scope, h syncer.Hints) (syncer.Stats, error) {
	if err := g.d.checkGuard(); err != nil {
		return syncer.Stats{}, err
	}
	return g.Syncer.Sync(ctx, s, h)
}

// checkGuard runs the deletion guard and logs when its verdict changes.
func (d *daemon) checkGuard() error {
	err := d.guard.Check()
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	d.mu.Lock()
	was := d.paused
	d.paused = reason
	d.mu.Unlock()
	switch {
	case reason != "" && was != reason:
		d.log.Error("every project paused: nothing is synced or deleted until the source is back", zap.Error(err))
	case reason == "" && was != "":
		d.log.Info("source healthy again: projects resumed", zap.String("was", was))
		d.requestReconcile(syncer.Scope{Recursive: true})
	}
	return err
}

func (d *daemon) pausedReason() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}

// trash is the trash directory name, "" when trash is off.
func (d *daemon) trash() string {
	if d.cfg.TrashRetention <= 0 {
		return ""
	}
	return d.cfg.Trash
}

func (d *daemon) ignoreDest() []string {
	if t := d.trash(); t != "" {
		return []string{t}
	}
	return nil
}

func (d *daemon) newWatcher() (*watcher.Watcher, error) {
	wait := d.cfg.OpenFileWait
	if wait == 0 {
		wait = -1 // off
	}
	return watcher.New(watcher.Options{Root: d.cfg.Source, Excludes: d.cfg.Exclude, OpenWait: wait, Logger: d.log.Named("watcher")})
}

// watch runs the watcher and restarts it when the source root is replaced
// (unmounted, remounted, moved away): its inotify watches would be on the
// old directory and see nothing of the new one.
func (d *daemon) watch(ctx context.Context) error {
	for {
		w := d.w.Load()
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx, eventSink{d}) }()
		id, _ := rootID(d.cfg.Source)
		replaced := false
		for !replaced {
			select {
			case <-ctx.Done():
				cancel()
				return <-done
			case err := <-done:
				cancel()
				return err
			case <-time.After(2 * time.Second):
				now, err := rootID(d.cfg.Source)
				replaced = err == nil && now != id
			}
		}
		cancel()
		<-done
		d.log.Warn("source root replaced (mount change?): restarting the watcher", zap.String("source", d.cfg.Source))
		nw, err := d.newWatcher()
		if err != nil {
			return err
		}
		d.w.Store(nw)
		d.requestReconcile(syncer.Scope{Recursive: true})
	}
}

type fileID struct{ dev, ino uint64 }

func rootID(p string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return fileID{}, err
	}
	return fileID{uint64(st.Dev), st.Ino}, nil
}

// pruneTrash removes trash days older than the retention, at start and hourly.
func (d *daemon) pruneTrash(ctx context.Context) {
	if d.trash() == "" {
		return
	}
	for {
		old, err := d.runner.PruneTrash(ctx, d.cfg.TrashRetention, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			d.log.Warn("prune trash", zap.Error(err))
		case len(old) > 0:
			d.log.Info("trash pruned", zap.Strings("days", old), zap.Duration("retention", d.cfg.TrashRetention))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}
