package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/coalesce"
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
	reconcile chan syncer.Scope

	// Set once in Run before any goroutine reads them.
	q     *queue.JetStream
	pool  *worker.Pool
	guard *guard.Guard
	addr  string // HTTP listener, "" when none

	w atomic.Pointer[watcher.Watcher] // replaced when the source root is

	mu       sync.Mutex
	trackers map[*reconcile.Tracker]bool
	projects map[string]*projectStatus
	recon    reconcileStatus
	paused   string // why the deletion guard holds every job, "" when it does not

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

type reconcileStatus struct {
	Running      bool      `json:"running"`
	LastStarted  time.Time `json:"last_started,omitzero"`
	LastFinished time.Time `json:"last_finished,omitzero"`
	LastJobs     int       `json:"last_jobs"`
	LastFailed   int       `json:"last_failed"`
	DriftFiles   int64     `json:"last_drift_files"`
	DriftBytes   int64     `json:"last_drift_bytes"`
}

func newDaemon(cfg Config, log *zap.Logger) *daemon {
	return &daemon{cfg: cfg, log: log, metrics: newMetrics(), ready: make(chan struct{}),
		reconcile: make(chan syncer.Scope, 64), trackers: map[*reconcile.Tracker]bool{},
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

// Run blocks until ctx ends or a component fails, and returns once every
// goroutine it started has exited.
func (d *daemon) Run(ctx context.Context) error {
	cfg := d.cfg
	d.started = time.Now()
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
	if d.q, err = queue.Open(ctx, nc, queue.Options{Logger: d.log.Named("queue"), EventAckWait: 3*cfg.MaxDelay + time.Minute}); err != nil {
		return err
	}
	runner, err := rsync.New(rsync.Options{Binary: cfg.RsyncPath, Source: cfg.Source, Dest: cfg.Dest,
		Excludes: cfg.Exclude, Args: cfg.RsyncArgs, MaxDelete: cfg.MaxDelete, Trash: d.trash(), Logger: d.log.Named("rsync")})
	if err != nil {
		return err
	}
	d.guard = guard.New(guard.Options{Source: cfg.Source, Dest: cfg.Dest, Marker: cfg.Marker, RequireMount: cfg.RequireMount,
		IgnoreDest: d.ignoreDest()})
	w, err := d.newWatcher()
	if err != nil {
		return err
	}
	d.w.Store(w)
	co, err := coalesce.New(coalesce.Config{
		Options: coalesce.Options{Quiet: cfg.Debounce, MaxDelay: cfg.MaxDelay,
			MaxChildren: cfg.CollapseChildren, MaxPending: cfg.CollapseProject},
		Publisher: d.q, Logger: d.log.Named("coalesce"),
		OnJob: func(j syncer.Job, events int) {
			d.metrics.published.WithLabelValues(string(j.Reason)).Inc()
			d.metrics.coalesced.Add(float64(events))
		},
	})
	if err != nil {
		return err
	}
	if d.pool, err = worker.New(worker.Options{Workers: cfg.Workers, Batch: cfg.Batch, Source: d.q.Jobs(),
		Syncer: guarded{instrumented{runner, d}, d}, ShutdownTimeout: cfg.ShutdownTimeout, Logger: d.log.Named("worker"),
		OnResult: d.onResult, OnVanished: d.followUp, MaxAttempts: cfg.RetryMax,
		Backoff: func(n int) time.Duration { return min(cfg.RetryBackoff<<min(n-1, 20), 10*time.Minute) }}); err != nil {
		return err
	}
	d.registerGauges()
	stopResults, err := d.q.SubscribeResults(d.observe)
	if err != nil {
		return err
	}
	defer stopResults()

	var srv *http.Server
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("http listen: %w", err)
		}
		d.addr = ln.Addr().String()
		srv = &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("http server", zap.Error(err))
			}
		}()
		if err := os.WriteFile(filepath.Join(cfg.StateDir, addrFile), []byte(d.addr+"\n"), 0o600); err != nil {
			d.log.Warn("record http address", zap.Error(err))
		}
		defer func() {
			_ = os.Remove(filepath.Join(cfg.StateDir, addrFile))
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	d.log.Info("starting", zap.String("version", version), zap.String("source", cfg.Source), zap.String("dest", cfg.Dest),
		zap.String("state_dir", cfg.StateDir), zap.String("listen", d.addr), zap.String("nats_listen", emb.ClientURL()),
		zap.Int("workers", d.pool.Workers()), zap.Int("batch", cfg.Batch),
		zap.Duration("debounce", cfg.Debounce), zap.Duration("max_delay", cfg.MaxDelay),
		zap.Int("collapse_children", cfg.CollapseChildren), zap.Int("collapse_project", cfg.CollapseProject),
		zap.Strings("exclude", cfg.Exclude), zap.String("rsync_path", cfg.RsyncPath), zap.Strings("rsync_args", cfg.RsyncArgs))

	// The pool outlives the producers so that their last jobs settle; it
	// stops when every other component has.
	poolCtx, stopPool := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPool()
	poolDone := make(chan error, 1)
	go func() { poolDone <- d.pool.Run(poolCtx) }()

	g, gctx := errgroup.WithContext(ctx)
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
	err = g.Wait()
	stopPool()
	<-poolDone
	d.log.Info("stopped")
	return err
}

func (d *daemon) registerGauges() {
	m := d.metrics
	m.reg.MustRegister(newQueueCollector(d.q))
	m.gaugeFunc("syncer_watches", "Directories watched with inotify.", func() float64 { return float64(d.w.Load().Watches()) })
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
		d.requestReconcile(syncer.Scope{Dir: ev.Scope.Project(), Recursive: true})
	}
	return nil
}

func (d *daemon) requestReconcile(s syncer.Scope) {
	select {
	case d.reconcile <- s:
	default: // the queue of requests is full; one queued covers the whole tree soon
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
func (d *daemon) reconciler(ctx context.Context) error {
	select {
	case <-d.w.Load().Ready():
	case <-ctx.Done():
		return nil
	}
	// Never plan deletions from a source that is not there.
	for d.checkGuard() != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	if _, err := d.runReconcile(ctx, nil, "startup"); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("initial reconcile: %w", err)
	}
	d.metrics.ready.Set(1)
	close(d.ready)
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-d.reconcile:
			projects := map[string]bool{s.Project(): true}
			// Drain what queued meanwhile: one walk serves them all.
			for more := true; more; {
				select {
				case s2 := <-d.reconcile:
					projects[s2.Project()] = true
				default:
					more = false
				}
			}
			var list []string
			if !projects[""] {
				for p := range projects {
					list = append(list, p)
				}
			}
			if _, err := d.runReconcile(ctx, list, "requested"); err != nil && ctx.Err() == nil {
				d.log.Error("reconcile failed", zap.Error(err))
			}
		}
	}
}

var reconcileSeq atomic.Int64

// runReconcile walks (the given projects of) the trees and waits until the
// jobs it planned are settled. Failed jobs are reported, not returned: the
// daemon goes on serving everything else.
func (d *daemon) runReconcile(ctx context.Context, projects []string, why string) (reconcile.Summary, error) {
	start := time.Now()
	d.mu.Lock()
	d.recon.Running, d.recon.LastStarted = true, start
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.recon.Running = false
		d.mu.Unlock()
	}()
	plan, err := reconcile.Walk(ctx, reconcile.Options{Source: d.cfg.Source, Dest: d.cfg.Dest, Excludes: d.cfg.Exclude,
		Projects: projects, IgnoreDest: d.ignoreDest()})
	if err != nil {
		return reconcile.Summary{}, err
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
	if err := t.Submit(ctx, d.q, prefix, plan.Scopes, syncer.ReasonReconcile); err != nil {
		return reconcile.Summary{}, err
	}
	d.metrics.published.WithLabelValues(string(syncer.ReasonReconcile)).Add(float64(len(plan.Scopes)))
	sum, err := t.Wait(ctx)
	if err != nil {
		return sum, err
	}
	for p, dr := range plan.Drift {
		d.metrics.driftFiles.WithLabelValues(projectLabel(p)).Add(float64(dr.Files))
		d.metrics.driftBytes.WithLabelValues(projectLabel(p)).Add(float64(dr.Bytes))
		if dr.Files > 0 && why != "startup" {
			d.log.Warn("reconcile found changes the watcher missed", zap.String(syncer.LogProject, p),
				zap.Int64(syncer.LogFiles, dr.Files), zap.Int64(syncer.LogBytes, dr.Bytes))
		}
	}
	if sum.Failed == 0 {
		done := projects
		if done == nil {
			done = d.sourceProjects()
		}
		for _, p := range done {
			d.metrics.reconcileLast.WithLabelValues(projectLabel(p)).Set(float64(time.Now().Unix()))
		}
	}
	d.mu.Lock()
	d.recon.LastFinished, d.recon.LastJobs, d.recon.LastFailed = time.Now(), sum.Jobs, sum.Failed
	d.recon.DriftFiles, d.recon.DriftBytes = plan.Files, plan.Bytes
	d.mu.Unlock()
	d.log.Info("reconcile done", zap.String(syncer.LogReason, why), zap.Strings("projects", projects),
		zap.Int64("dirs", plan.Dirs), zap.Int64("entries", plan.Entries), zap.Int(syncer.LogJobs, sum.Jobs),
		zap.Int("failed", sum.Failed), zap.Int64("drift_files", plan.Files), zap.Int64("drift_bytes", plan.Bytes),
		zap.Int64(syncer.LogFiles, sum.Stats.Files), zap.Int64(syncer.LogBytes, sum.Stats.Bytes),
		zap.Int64(syncer.LogDeleted, sum.Stats.Deleted), zap.Duration("walk", walked), zap.Duration(syncer.LogTook, time.Since(start)))
	if sum.Failed > 0 {
		d.log.Error("reconcile jobs failed", zap.Int("failed", sum.Failed), zap.Strings("errors", sum.Errors))
	}
	return sum, nil
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

func (i instrumented) Sync(ctx context.Context, s []syncer.Scope) (syncer.Stats, error) {
	i.d.runs.Add(1)
	start := time.Now()
	st, err := i.Syncer.Sync(ctx, s)
	i.d.metrics.run(st, time.Since(start), err)
	return st, err
}

// guarded refuses runs while the deletion guard is tripped: every run may
// delete, so none may start from a source that vanished.
type guarded struct {
	syncer.Syncer
	d *daemon
}

func (g guarded) Sync(ctx context.Context, s []syncer.Scope) (syncer.Stats, error) {
	if err := g.d.checkGuard(); err != nil {
		return syncer.Stats{}, err
	}
	return g.Syncer.Sync(ctx, s)
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
	return watcher.New(watcher.Options{Root: d.cfg.Source, Excludes: d.cfg.Exclude, Logger: d.log.Named("watcher")})
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
		dir := filepath.Join(d.cfg.Dest, d.trash())
		ents, _ := os.ReadDir(dir)
		cutoff := time.Now().Add(-d.cfg.TrashRetention)
		for _, e := range ents {
			day, err := time.ParseInLocation("2006-01-02", e.Name(), time.Local)
			if err != nil || !e.IsDir() || !day.AddDate(0, 0, 1).Before(cutoff) {
				continue
			}
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				d.log.Warn("prune trash", zap.Error(err), zap.String(syncer.LogDir, e.Name()))
				continue
			}
			d.log.Info("trash pruned", zap.String("day", e.Name()), zap.Duration("retention", d.cfg.TrashRetention))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}
