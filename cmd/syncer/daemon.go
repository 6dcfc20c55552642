package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/coalesce"
	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/copier"
	"github.com/syncer/syncer/diag"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/index"
	"github.com/syncer/syncer/internal/metrics"
	"github.com/syncer/syncer/internal/process"
	"github.com/syncer/syncer/internal/service"
	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/watcher"
	"github.com/syncer/syncer/worker"
)

// daemon is `syncer run` (and its halves, `watch` and `work`): the
// components, wired. What each does is its package's; the daemon keeps
// only what the status API reports.
type daemon struct {
	cfg     config.Config
	log     *zap.Logger
	metrics *metrics.Metrics
	started time.Time
	role    string // "run" or "" (everything), "watch" or "work"
	oneShot bool   // a standalone reconcile: scratch queue, no API
	ready   chan struct{}
	notify  *service.Notifier
	level   zap.AtomicLevel               // the log's, which a reload sets
	reread  func() (config.Config, error) // the config as it is now, for a reload

	// Set in open before any goroutine reads them.
	q         *queue.JetStream
	runner    *rsync.Runner
	guard     *guard.Guard
	brake     *guard.Brake  // nil without one
	pauses    *guard.Pauses // the operator's
	gate      guard.Gate    // the three, in front of every run
	w         *watcher.Watcher
	pool      *worker.Pool
	sched     *reconcile.Scheduler // nil for the work role and a standalone reconcile
	recon     *reconcile.Runner
	networkFS string        // the source's filesystem when it is a network one
	backup    config.Backup // what the backup keeps, and the index of synced files
	addr      string        // the TCP listener, "" when none
	startPool func()        // starts the worker pool once

	opened  func() error // a standalone reconcile opens the queue lazily
	opening atomic.Bool
	close   func()

	// mu guards what follows.
	mu       sync.Mutex
	runCtx   context.Context // ends when Run does; API-started work uses it
	bg       sync.WaitGroup  // API-started work, joined before Run returns
	stopping bool            // set under mu before bg.Wait: no more bg.Add

	applied  config.Config    // the config in force: cfg and the reloads since
	projects metrics.Projects // what status shows per project
	runs     atomic.Int64     // rsync runs, for tests and status
}

func newDaemon(cfg config.Config, log *zap.Logger) *daemon {
	d := &daemon{cfg: cfg, log: log, metrics: metrics.New(version), ready: make(chan struct{}), notify: service.NewNotifier(log),
		level: zap.NewAtomicLevel()}
	d.cfg.Excludes() // compiled here, so that every copy of d.cfg shares the one a reload sets
	d.applied = d.cfg
	d.backup = cfg.OpenBackup(log)
	d.metrics.CannotKeep(cfg.Keep(), d.backup.Takes)
	walk := d.cfg.Walk()
	walk.Keep, walk.Index = d.backup.Takes, d.backup.Index
	d.recon = reconcile.NewRunner(reconcile.RunnerOptions{Walk: walk, Jobs: jobs{d},
		Check: func() error { return d.guard.Check() }, Watched: func(dir string) { d.w.WaitWatched(dir) },
		OnFound: d.openLazily, OnQueued: func(n int) { d.startPool(); d.metrics.Queued(n) },
		OnDone:    func(r reconcile.Report, drift map[string]reconcile.Drift) { d.metrics.Reconciled(r, drift, cfg.Source) },
		Holds:     func(p string) bool { return d.gate.Holds(p) },
		DeepEvery: cfg.DeepInterval, Workers: cfg.Workers,
		Logger: log.Named("reconcile")})
	return d
}

// jobs is the reconcile runner's way to the queue, which a standalone
// reconcile opens only once its walk finds work.
type jobs struct{ d *daemon }

func (j jobs) PublishJobs(ctx context.Context, js []syncer.Job) error {
	if j.d.opened != nil {
		if err := j.d.opened(); err != nil {
			return err
		}
	}
	return j.d.q.PublishJobs(ctx, js)
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

func (d *daemon) setReady() {
	d.metrics.Ready()
	close(d.ready)
	d.notify.Status(d.statusLine())
	d.notify.Ready()
	// The startup walk's garbage is large on a big tree and will not come
	// back: return it to the system now rather than hold it idle.
	debug.FreeOSMemory()
}

// open starts what every mode needs: the queue, the rsync runner behind
// the deletion guard, the watcher, the worker pool and the APIs. The
// returned stop shuts them down in order: pool (running jobs settle), APIs,
// queue.
func (d *daemon) open(ctx context.Context) (stop func(), err error) {
	cfg := d.cfg
	d.started = time.Now()
	var undo []func()
	undo = append(undo, d.backup.Close) // the index, closed last: the workers write it
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
	if d.role != "work" && !d.oneShot {
		d.networkFS = watcher.NetworkFS(cfg.Source)
		d.sched = reconcile.NewScheduler(reconcile.ScheduleOptions{Reconcile: d.recon.Reconcile,
			Interval: cfg.ReconcileInterval, NetworkFS: d.networkFS, OnReady: d.setReady, Logger: d.log.Named("reconcile")})
	}
	onFailover := d.sched.Failover
	if d.role == "work" {
		onFailover = nil // the half that reconciles answers failovers
	}
	if d.q, err = queue.Connect(ctx, cfg.Queue(d.log.Named("queue"), d.oneShot, onFailover)); err != nil {
		return nil, err
	}
	undo = append(undo, d.q.Close)
	ro := cfg.Rsync(d.log.Named("rsync"))
	ro.Keep, ro.Lost = d.backup.Takes, d.backup.Lost
	if d.runner, err = rsync.New(ro); err != nil {
		return nil, err
	}
	if err := d.runner.MakeTrash(); err != nil {
		return nil, err
	}
	if cfg.Remote() && d.role != "watch" {
		// A worker that cannot reach the backup says so now, not per job.
		if err := d.runner.Reachable(ctx, 30*time.Second); err != nil {
			return nil, err
		}
	}
	if d.guard == nil {
		d.guard = guard.New(cfg.Guard(d.log.Named("guard"), d.listDest, func() { d.sched.Request() }))
	}
	if d.w, err = watcher.New(cfg.Watcher(d.log.Named("watcher"), d.sched.Lost)); err != nil {
		return nil, err
	}
	var locker worker.Locker // in-process by default
	if len(cfg.NatsURL) > 0 {
		// Workers on other hosts share this queue: lease scopes cluster-wide.
		if locker, err = d.q.OpenLeases(ctx, cfg.LeaseTTL); err != nil {
			return nil, err
		}
	}
	if bo, ok := cfg.Brake(d.log.Named("brake")); ok {
		d.brake = guard.NewBrake(bo)
	}
	if d.pauses, err = guard.OpenPauses(cfg.PausesFile(), d.log.Named("guard")); err != nil {
		return nil, err
	}
	d.gate = guard.Gate{Guard: d.guard, Pauses: d.pauses, Brake: d.brake}
	// rsync syncs a directory whole: one a run named files in is admitted again.
	var sy syncer.Syncer = guard.Whole{Gate: d.gate, Next: d.runner}
	po := cfg.Pool(d.log.Named("worker"))
	if opts, ok := cfg.Copier(); ok || !cfg.Remote() {
		opts.Takes = d.backup.Takes
		c := copier.New(opts)
		if ok {
			sy = copier.Syncer{Copier: c, Fallback: sy, Logger: d.log.Named("copier")}
		}
		po.Mover = copier.Mover{Copier: c, Index: d.backup.Index} // a local backup renames
	}
	if d.backup.Index != nil {
		sy = index.Syncer{Next: sy, Recorder: cfg.Recorder(d.backup, d.log.Named("index"))}
	}
	po.Source, po.Locker, po.Syncer, po.Gate, po.Open = d.q.Jobs(), locker, sy, d.gate, d.w
	po.Sink, po.OnLost = d.q, d.sched.Lost
	po.OnResult = func(r syncer.Result) { d.metrics.Result(r); d.projects.Observe(r) }
	po.OnRun = func(st syncer.Stats, took time.Duration, err error) { d.runs.Add(1); d.metrics.Run(st, took, err) }
	if d.pool, err = worker.New(po); err != nil {
		return nil, err
	}
	d.metrics.Register(d.q, d.w, d.guard, d.pool, d.sched.Degraded, d.brake.Projects, d.pauses.List)
	stopResults, err := d.q.SubscribeResults(d.recon.Observe)
	if err != nil {
		return nil, err
	}
	undo = append(undo, stopResults)

	// The pool outlives the producers so that their last jobs settle. A
	// standalone reconcile opens all this once its walk finds work, and the
	// pool is then ready when the walk's first jobs are queued.
	poolCtx, stopPool := context.WithCancel(context.WithoutCancel(ctx))
	poolDone := make(chan error, 1)
	d.startPool = sync.OnceFunc(func() {
		if d.role == "watch" {
			poolDone <- nil // the watch role queues work, it never runs rsync
			return
		}
		go func() { poolDone <- d.pool.Run(poolCtx) }()
	})
	d.startPool()
	undo = append(undo, func() { stopPool(); d.startPool(); <-poolDone })
	if !d.oneShot {
		stopAPI, err := d.serveAPI()
		if err != nil {
			return nil, err
		}
		undo = append(undo, stopAPI)
	}
	d.log.Info("starting", zap.String("version", version), zap.String("nats", d.q.URL()), zap.String("listen", d.addr),
		zap.Int("workers", d.pool.Workers()), zap.Object("config", d.cfg))
	return cleanup, nil
}

// Run is `syncer run`: it blocks until ctx ends or a component fails, and
// returns once every goroutine it started has exited.
func (d *daemon) Run(ctx context.Context) error {
	stop, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer stop()
	co, err := coalesce.New(coalesce.Config{Options: d.cfg.Coalesce(), Publisher: d.q, Logger: d.log.Named("coalesce"),
		OnJob: d.metrics.Job, OnPublishError: func(error) { d.sched.Failover("job publish failed") }})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	d.mu.Lock()
	d.runCtx = gctx
	d.mu.Unlock()
	// A component that returns before the end was asked for stops the
	// daemon with an error: only a signal (ctx) ends it with success, so
	// that systemd's Restart=on-failure restarts every other stop.
	component := func(name string, fn func(context.Context) error) {
		g.Go(func() error {
			err := fn(gctx)
			if err == nil && ctx.Err() == nil && gctx.Err() == nil {
				err = fmt.Errorf("%s stopped unexpectedly", name)
			}
			return err
		})
	}
	component("run", func(ctx context.Context) error { <-ctx.Done(); return nil }) // the pool runs apart
	d.notify.Status(d.statusLine())
	g.Go(func() error { d.notify.Run(gctx, 2*time.Second, d.statusLine, d.q.Healthy); return nil })
	if d.role == "work" {
		d.setReady() // workers only: the queue feeds them
	} else {
		if d.networkFS != "" {
			d.log.Warn("SOURCE IS A NETWORK FILESYSTEM: inotify sees only the writes made on this host; "+
				"writes by other clients are found by reconcile only. Run syncer on the file server itself.",
				zap.String("source", d.cfg.Source), zap.String("fstype", d.networkFS), zap.Duration("reconcile_interval", reconcile.NetworkInterval))
		}
		component("coalescer", func(ctx context.Context) error { return co.Consume(ctx, d.q) })
		component("watcher", func(ctx context.Context) error { return d.w.Run(ctx, d.q) })
		component("reconcile scheduler", d.sched.Run)
		g.Go(func() error {
			d.runner.KeepTrash(gctx, d.cfg.TrashPolicy(d.metrics.TrashFreed))
			return nil
		})
	}
	if d.cfg.DiagnoseInterval > 0 {
		g.Go(func() error {
			if err := diag.Monitor(gctx, d.cfg.DiagnoseInterval, d.load, d.verdict); err != nil {
				d.log.Warn("diagnose sample", zap.Error(err))
			}
			return nil
		})
	}
	err = g.Wait()
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
	d.notify.Stopping()
	d.bg.Wait()
	d.log.Info("stopping")
	return err
}

// statusLine is the line `systemctl status syncer` shows.
func (d *daemon) statusLine() string {
	v, ok := d.recon.Report("")
	return status.Line(d.isReady(), v, ok, d.gate.Paused(), d.pool.Busy(), d.pool.Workers(), d.runs.Load(),
		status.Watching(d.w.Backend(), d.w.Watches(), metrics.InotifyLimit()))
}

// reload is SIGHUP: it reads the config again and applies what can change
// live (config.Live), logging what changed and what waits for a restart
// (again at each reload, until it is made). A config that does not
// validate changes nothing.
func (d *daemon) reload() {
	if d.isReady() {
		d.notify.Reloading()
		defer d.notify.Ready()
	}
	cfg, err := d.reread()
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		d.log.Error("config reload refused; the running config stays", zap.Error(err))
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	live, restart := config.Running{Level: d.level, Excludes: d.cfg.Excludes(), SetInterval: d.sched.SetInterval, Applied: &d.applied}.Reload(cfg)
	d.log.Info("config reloaded", zap.Strings("applied", live), zap.Strings("need_restart", restart))
	if slices.Contains(live, "exclude") {
		d.sched.Request() // what an exclude no longer leaves out is synced now
	}
}

// Once is `syncer reconcile` with no daemon running: reconcile id, opening
// a queue and pool of its own once the walk finds something to sync.
func (d *daemon) Once(ctx context.Context, id string) error {
	d.oneShot = true
	defer process.ShortLived()() // the process ends with this reconcile (the tests run it in theirs)
	d.guard = guard.New(d.cfg.Guard(d.log.Named("guard"), d.listDest, nil))
	d.opened = sync.OnceValue(func() error {
		t0 := time.Now()
		stop, err := d.open(ctx)
		d.close = stop
		d.log.Debug("queue and pool up", zap.Duration(syncer.LogTook, time.Since(t0)), zap.Error(err))
		return err
	})
	defer rsync.TidyTrashAside(ctx, d.cfg.Rsync(d.log.Named("rsync")), d.cfg.TrashPolicy(nil))() // as the daemon keeps it
	defer func() {
		switch {
		case d.opening.Load() && d.opened() == nil:
			t0 := time.Now()
			d.close() // the index with the rest
			d.log.Debug("queue and pool down", zap.Duration(syncer.LogTook, time.Since(t0)))
		case !d.opening.Load():
			d.backup.Close() // what the walk queued for the index, written
		}
	}()
	return d.recon.Run(ctx, id)
}

// openLazily starts opening a standalone reconcile's queue in the
// background, once, while the walk goes on.
func (d *daemon) openLazily() {
	if d.opened != nil && !d.opening.Swap(true) {
		go func() { _ = d.opened() }()
	}
}

// listDest lists a remote backup's root for the deletion guard.
func (d *daemon) listDest() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return d.runner.List(ctx, "")
}
