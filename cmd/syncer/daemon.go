package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/coalesce"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/watcher"
	"github.com/syncer/syncer/worker"
)

// daemon is `syncer run`: embedded NATS, watcher, coalescer, workers and
// reconcile in one process.
type daemon struct {
	cfg Config
	log *zap.Logger

	ready     chan struct{} // closed when the initial reconcile is done
	reconcile chan syncer.Scope

	mu       sync.Mutex
	trackers map[*reconcile.Tracker]bool

	// Counters for status and tests.
	jobsDone   atomic.Int64
	jobsFailed atomic.Int64
	runs       atomic.Int64
}

func newDaemon(cfg Config, log *zap.Logger) *daemon {
	return &daemon{cfg: cfg, log: log, ready: make(chan struct{}),
		reconcile: make(chan syncer.Scope, 64), trackers: map[*reconcile.Tracker]bool{}}
}

// Ready is closed once the initial reconcile has made the backup equal to
// the source as it was at start.
func (d *daemon) Ready() <-chan struct{} { return d.ready }

// Run blocks until ctx ends or a component fails, and returns once every
// goroutine it started has exited.
func (d *daemon) Run(ctx context.Context) error {
	cfg := d.cfg
	emb, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: filepath.Join(cfg.StateDir, "nats"), Listen: cfg.NatsListen})
	if err != nil {
		return err
	}
	defer emb.Shutdown()
	nc, err := emb.Connect("syncer-run")
	if err != nil {
		return err
	}
	defer nc.Close()
	q, err := queue.Open(ctx, nc, queue.Options{Logger: d.log.Named("queue"), EventAckWait: 3*cfg.MaxDelay + time.Minute})
	if err != nil {
		return err
	}
	d.log.Info("queue ready", zap.String("store", filepath.Join(cfg.StateDir, "nats")), zap.String("nats_listen", emb.ClientURL()))

	runner, err := rsync.New(rsync.Options{Binary: cfg.RsyncPath, Source: cfg.Source, Dest: cfg.Dest,
		Excludes: cfg.Exclude, Args: cfg.RsyncArgs, Logger: d.log.Named("rsync")})
	if err != nil {
		return err
	}
	w, err := watcher.New(watcher.Options{Root: cfg.Source, Excludes: cfg.Exclude, Logger: d.log.Named("watcher")})
	if err != nil {
		return err
	}
	co, err := coalesce.New(coalesce.Config{
		Options: coalesce.Options{Quiet: cfg.Debounce, MaxDelay: cfg.MaxDelay,
			MaxChildren: cfg.CollapseChildren, MaxPending: cfg.CollapseProject},
		Publisher: q, Logger: d.log.Named("coalesce"),
	})
	if err != nil {
		return err
	}
	pool, err := worker.New(worker.Options{Workers: cfg.Workers, Batch: cfg.Batch, Source: q.Jobs(), Syncer: countingSyncer{runner, &d.runs},
		ShutdownTimeout: cfg.ShutdownTimeout, Logger: d.log.Named("worker"),
		OnResult: func(r syncer.Result) {
			if r.OK {
				d.jobsDone.Add(1)
			} else {
				d.jobsFailed.Add(1)
			}
			if err := q.PublishResult(r); err != nil {
				d.log.Warn("publish result", zap.Error(err))
			}
		}})
	if err != nil {
		return err
	}
	stopResults, err := q.SubscribeResults(d.observe)
	if err != nil {
		return err
	}
	defer stopResults()
	d.log.Info("starting", zap.String("version", version), zap.String("source", cfg.Source), zap.String("dest", cfg.Dest),
		zap.String("state_dir", cfg.StateDir), zap.Int("workers", pool.Workers()), zap.Int("batch", cfg.Batch),
		zap.Duration("debounce", cfg.Debounce), zap.Duration("max_delay", cfg.MaxDelay),
		zap.Int("collapse_children", cfg.CollapseChildren), zap.Int("collapse_project", cfg.CollapseProject),
		zap.Strings("exclude", cfg.Exclude), zap.String("rsync_path", cfg.RsyncPath), zap.Strings("rsync_args", cfg.RsyncArgs))

	// The pool outlives the producers so that their last jobs settle; it
	// stops when every other component has.
	poolCtx, stopPool := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPool()
	poolDone := make(chan error, 1)
	go func() { poolDone <- pool.Run(poolCtx) }()

	g, gctx := errgroup.WithContext(ctx)
	events := make(chan coalesce.Input) // unbuffered: the stream is the buffer
	g.Go(func() error { return co.Run(gctx, events) })
	g.Go(func() error {
		return q.ConsumeEvents(gctx, func(ev syncer.DirEvent, ack func() error) {
			select {
			case events <- coalesce.Input{Event: ev, Ack: ack}:
			case <-gctx.Done():
			}
		})
	})
	g.Go(func() error { return w.Run(gctx, eventSink{q: q, d: d}) })
	g.Go(func() error { return d.reconciler(gctx, q, w) })
	err = g.Wait()
	stopPool()
	<-poolDone
	d.log.Info("stopped")
	return err
}

// eventSink sends watcher events to the EVENTS stream, except those that
// say events were lost: they ask for a reconcile of their scope instead.
type eventSink struct {
	q *queue.JetStream
	d *daemon
}

func (s eventSink) Publish(ctx context.Context, ev syncer.DirEvent) error {
	if ev.Reason == syncer.ReasonOverflow {
		s.d.requestReconcile(ev.Scope)
		return nil
	}
	if err := s.q.PublishEvent(ctx, ev); err != nil {
		// Not stored: nothing may be lost, so look at the whole project.
		s.d.log.Warn("event not stored; reconciling its project", zap.Error(err))
		s.d.requestReconcile(syncer.Scope{Dir: ev.Scope.Project(), Recursive: true})
	}
	return nil
}

func (d *daemon) requestReconcile(s syncer.Scope) {
	select {
	case d.reconcile <- s:
	default: // one is queued already; it walks everything requested so far
		d.log.Debug("reconcile already requested")
	}
}

func (d *daemon) observe(r syncer.Result) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for t := range d.trackers {
		t.Observe(r)
	}
}

// reconciler runs the initial reconcile once the watcher is up (so that
// nothing changed during the walk is missed), then one per request.
func (d *daemon) reconciler(ctx context.Context, q *queue.JetStream, w *watcher.Watcher) error {
	select {
	case <-w.Ready():
	case <-ctx.Done():
		return nil
	}
	if err := d.runReconcile(ctx, q, nil, "startup"); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("initial reconcile: %w", err)
	}
	close(d.ready)
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-d.reconcile:
			var projects []string
			if s.Dir != "" {
				projects = []string{s.Project()}
			}
			// Drain what queued meanwhile: one walk serves them all.
			for more := true; more; {
				select {
				case s2 := <-d.reconcile:
					if s2.Dir == "" {
						projects = nil
					} else if projects != nil {
						projects = append(projects, s2.Project())
					}
				default:
					more = false
				}
			}
			if err := d.runReconcile(ctx, q, projects, "requested"); err != nil && ctx.Err() == nil {
				d.log.Error("reconcile failed", zap.Error(err))
			}
		}
	}
}

var reconcileSeq atomic.Int64

func (d *daemon) runReconcile(ctx context.Context, q *queue.JetStream, projects []string, why string) error {
	start := time.Now()
	plan, err := reconcile.Walk(ctx, reconcile.Options{Source: d.cfg.Source, Dest: d.cfg.Dest, Excludes: d.cfg.Exclude, Projects: projects})
	if err != nil {
		return err
	}
	walked := time.Since(start)
	t := reconcile.NewTracker()
	d.mu.Lock()
	d.trackers[t] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.trackers, t)
		d.mu.Unlock()
	}()
	prefix := fmt.Sprintf("reconcile-%d-%d", start.Unix(), reconcileSeq.Add(1))
	if err := t.Submit(ctx, q, prefix, plan.Scopes, syncer.ReasonReconcile); err != nil {
		return err
	}
	sum, err := t.Wait(ctx)
	if err != nil {
		return err
	}
	d.log.Info("reconcile done", zap.String(syncer.LogReason, why), zap.Strings("projects", projects),
		zap.Int64("dirs", plan.Dirs), zap.Int64("entries", plan.Entries), zap.Int(syncer.LogJobs, sum.Jobs),
		zap.Int("failed", sum.Failed), zap.Int64("drift_files", plan.Files), zap.Int64("drift_bytes", plan.Bytes),
		zap.Int64(syncer.LogFiles, sum.Stats.Files), zap.Int64(syncer.LogBytes, sum.Stats.Bytes),
		zap.Int64(syncer.LogDeleted, sum.Stats.Deleted), zap.Duration("walk", walked), zap.Duration(syncer.LogTook, time.Since(start)))
	if sum.Failed > 0 {
		// The failed jobs were logged by the workers; the daemon goes on
		// serving everything else.
		d.log.Error("reconcile jobs failed", zap.Int("failed", sum.Failed), zap.Strings("errors", sum.Errors))
	}
	return nil
}

// countingSyncer counts rsync runs.
type countingSyncer struct {
	syncer.Syncer
	n *atomic.Int64
}

func (c countingSyncer) Sync(ctx context.Context, s []syncer.Scope) (syncer.Stats, error) {
	c.n.Add(1)
	return c.Syncer.Sync(ctx, s)
}
