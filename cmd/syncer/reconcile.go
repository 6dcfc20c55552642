package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/watcher"
)

// reconcileRun is one reconcile, as reported by the API and the CLI.
type reconcileRun struct {
	ID       string    `json:"id"`
	Why      string    `json:"reason"`
	Projects []string  `json:"projects,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// State is walking, syncing, done, failed (some jobs failed), refused
	// (the deletion guard holds every job) or error.
	State      string   `json:"state"`
	Dirs       int64    `json:"dirs"`
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

	tracker *reconcile.Tracker
	walked  time.Duration
}

func (r *reconcileRun) finished() bool {
	switch r.State {
	case "done", "failed", "refused", "error":
		return true
	}
	return false
}

var reconcileSeq atomic.Int64

func (d *daemon) newRun(why string, projects []string) *reconcileRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.newRunLocked(why, projects)
}

// newRunLocked is newRun with d.mu held.
func (d *daemon) newRunLocked(why string, projects []string) *reconcileRun {
	// Unique across processes: job IDs derive from it and JetStream drops a
	// publish whose ID it saw in the last two minutes (a restart within the
	// same second would otherwise lose the whole startup reconcile).
	var b [4]byte
	_, _ = rand.Read(b[:])
	r := &reconcileRun{ID: fmt.Sprintf("r%d-%d-%x", time.Now().Unix(), reconcileSeq.Add(1), b), Why: why, Projects: projects,
		Started: time.Now(), State: "walking"}
	d.recons = append(d.recons, r)
	if len(d.recons) > 20 {
		d.recons = d.recons[len(d.recons)-20:]
	}
	return r
}

// coversProjects reports whether a reconcile of the projects have also covers
// those of want (none meaning all projects).
func coversProjects(have, want []string) bool {
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

// reconcileView returns a copy of run r with live tracker figures.
func (d *daemon) reconcileView(id string) (reconcileRun, bool) {
	d.mu.Lock()
	var r *reconcileRun
	for _, x := range d.recons {
		if x.ID == id || (id == "" && x == d.recons[len(d.recons)-1]) {
			r = x
		}
	}
	if r == nil {
		d.mu.Unlock()
		return reconcileRun{}, false
	}
	v, t := *r, r.tracker
	d.mu.Unlock()
	if t != nil && !v.finished() {
		s := t.Summary()
		v.Jobs, v.Done, v.Failed, v.Files, v.Bytes, v.Deleted = s.Jobs, s.Done, s.Failed, s.Stats.Files, s.Stats.Bytes, s.Stats.Deleted
	}
	v.tracker = nil
	return v, true
}

func (d *daemon) update(r *reconcileRun, fn func(r *reconcileRun)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(r)
}

// runReconcile walks (the given projects of) the trees, queues what
// differs, and waits until those jobs are settled. Failed jobs are reported
// in r, not returned: the daemon goes on serving everything else.
func (d *daemon) runReconcile(ctx context.Context, r *reconcileRun) error {
	err := d.walkAndSync(ctx, r, nil)
	d.finish(r, err)
	return err
}

// finish records how a reconcile ended.
func (d *daemon) finish(r *reconcileRun, err error) {
	d.update(r, func(r *reconcileRun) {
		r.Finished = time.Now()
		switch {
		case errors.Is(err, syncer.ErrPaused):
			r.State, r.Error = "refused", err.Error()
		case err != nil:
			r.State, r.Error = "error", err.Error()
		case r.Failed > 0:
			r.State = "failed"
		default:
			r.State = "done"
		}
	})
}

// walkAndSync walks the trees for r and queues each directory that differs
// as soon as it is found, so that the workers sync while the walk goes on;
// the missing subtrees, which are partitioned by size, follow the walk.
// Then it waits until every job is settled. lq, when set, is the queue of a
// one-shot reconcile: opened once the walk finds a first difference, while
// the walk goes on.
func (d *daemon) walkAndSync(ctx context.Context, r *reconcileRun, lq *lazyQueue) error {
	// Never plan deletions from a source that is not there.
	if err := d.checkGuard(); err != nil {
		return err
	}
	t := reconcile.NewTracker()
	d.mu.Lock()
	d.trackers[t] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.trackers, t)
		d.mu.Unlock()
	}()
	d.update(r, func(r *reconcileRun) { r.tracker = t })

	found := make(chan syncer.Job, 1024)
	submitted := make(chan error, 1)
	go func() { submitted <- d.submit(ctx, r, t, found, lq) }()
	onScope := func(s syncer.Scope, files []string) {
		if lq != nil {
			lq.start()
		}
		found <- syncer.Job{Scope: s, Files: files}
	}
	opts := reconcile.Options{Source: d.cfg.Source, Dest: d.walkDest(), Excludes: d.cfg.Exclude,
		Projects: r.Projects, IgnoreDest: d.ignoreDest(), OnScope: onScope}
	if r.Why == "startup" {
		// Walk while the watches go in, reading each directory only once
		// it is watched: nothing changed meanwhile is missed.
		opts.BeforeRead = d.w.Load().WaitWatched
	}
	t0 := time.Now()
	plan, werr := reconcile.Walk(ctx, opts)
	d.log.Debug("walk done", zap.Int64("dirs", plan.Dirs), zap.Int64("entries", plan.Entries), zap.Int("streamed", plan.Streamed),
		zap.Duration(syncer.LogTook, time.Since(t0)), zap.Error(werr))
	if werr == nil {
		for _, s := range plan.Scopes {
			found <- syncer.Job{Scope: s}
		}
	}
	close(found)
	serr := <-submitted
	d.update(r, func(r *reconcileRun) {
		r.Dirs, r.Entries, r.DriftFiles, r.DriftBytes = plan.Dirs, plan.Entries, plan.Files, plan.Bytes
		r.Jobs, r.walked, r.State = t.Summary().Jobs, time.Since(r.Started), "syncing"
	})
	if werr != nil {
		return werr // what was queued already still runs: each job stands alone
	}
	if serr != nil {
		return serr
	}
	walked := r.walked
	sum, err := t.Wait(ctx)
	d.update(r, func(r *reconcileRun) {
		r.Done, r.Failed, r.Errors = sum.Done, sum.Failed, sum.Errors
		r.Files, r.Bytes, r.Deleted = sum.Stats.Files, sum.Stats.Bytes, sum.Stats.Deleted
	})
	if err != nil {
		return err
	}
	if plan.Blind {
		// A remote backup: what rsync had to transfer is the drift.
		plan.Files, plan.Bytes = sum.Stats.Files, sum.Stats.Bytes
		d.update(r, func(r *reconcileRun) { r.DriftFiles, r.DriftBytes = plan.Files, plan.Bytes })
	}
	for p, dr := range plan.Drift {
		d.metrics.driftFiles.WithLabelValues(projectLabel(p)).Add(float64(dr.Files))
		d.metrics.driftBytes.WithLabelValues(projectLabel(p)).Add(float64(dr.Bytes))
		if dr.Files > 0 && r.Why != "startup" && r.Why != "cli" {
			d.log.Warn("reconcile fixed what the watcher missed", zap.String(syncer.LogProject, p),
				zap.Int64(syncer.LogFiles, dr.Files), zap.Int64(syncer.LogBytes, dr.Bytes), zap.String(syncer.LogReason, r.Why))
		}
	}
	if sum.Failed == 0 {
		done := r.Projects
		if done == nil {
			done = d.sourceProjects()
		}
		for _, p := range done {
			d.metrics.reconcileLast.WithLabelValues(projectLabel(p)).Set(float64(time.Now().Unix()))
		}
	}
	d.log.Info("reconcile done", zap.String("id", r.ID), zap.String(syncer.LogReason, r.Why), zap.Strings("projects", r.Projects),
		zap.Int64("dirs", plan.Dirs), zap.Int64("entries", plan.Entries), zap.Int(syncer.LogJobs, sum.Jobs),
		zap.Int("failed", sum.Failed), zap.Int64("drift_files", plan.Files), zap.Int64("drift_bytes", plan.Bytes),
		zap.Int64(syncer.LogFiles, sum.Stats.Files), zap.Int64(syncer.LogBytes, sum.Stats.Bytes),
		zap.Int64(syncer.LogDeleted, sum.Stats.Deleted), zap.Duration("walk", walked), zap.Duration(syncer.LogTook, time.Since(r.Started)))
	if sum.Failed > 0 {
		d.log.Error("reconcile jobs failed", zap.String("id", r.ID), zap.Int("failed", sum.Failed), zap.Strings("errors", sum.Errors))
	}
	return nil
}

// submit queues the scopes a walk finds, in batches: as many as arrived
// within submitEvery, so that workers find full batches rather than a
// trickle. After a failed publish it keeps draining found, queueing nothing.
func (d *daemon) submit(ctx context.Context, r *reconcileRun, t *reconcile.Tracker, found <-chan syncer.Job, lq *lazyQueue) error {
	var batch []syncer.Job
	var err error
	n := 0
	flush := func() {
		if len(batch) == 0 || err != nil {
			batch = batch[:0]
			return
		}
		if n == 0 && lq != nil {
			err = lq.ready()
		}
		if err == nil {
			err = t.Submit(ctx, d.q, fmt.Sprintf("reconcile-%s-%d", r.ID, n), batch, syncer.ReasonReconcile)
		}
		if err == nil {
			if n == 0 {
				d.startPool()
			}
			d.metrics.published.WithLabelValues(string(syncer.ReasonReconcile)).Add(float64(len(batch)))
			n++
		}
		batch = batch[:0]
	}
	tick := time.NewTicker(submitEvery)
	defer tick.Stop()
	for {
		select {
		case s, ok := <-found:
			if !ok {
				flush()
				return err
			}
			if batch = append(batch, s); len(batch) >= 512 {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// submitEvery is how often a walk's findings are queued.
const submitEvery = time.Second

// reconciler runs the startup reconcile once the watcher is up (so that
// nothing changed during the walk is missed), then one per request (lost
// events, unwatched directories, the API) and on the schedule.
func (d *daemon) reconciler(ctx context.Context) error {
	for {
		err := d.runReconcile(ctx, d.newRun("startup", nil))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, syncer.ErrPaused) {
			return fmt.Errorf("startup reconcile: %w", err)
		}
		select { // paused: wait for the source, then walk it
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	d.metrics.ready.Set(1)
	close(d.ready)
	// The startup walk's garbage is large on a big tree and will not come
	// back: return it to the system now rather than hold it idle.
	debug.FreeOSMemory()

	interval := d.cfg.ReconcileInterval
	if d.networkFS != "" && (interval == 0 || interval > networkInterval) {
		interval = networkInterval
	}
	next := func(iv time.Duration) <-chan time.Time {
		if iv <= 0 {
			return nil
		}
		return time.After(time.Duration(float64(iv) * (0.9 + 0.2*mrand.Float64())))
	}
	scheduled := next(interval)
	unwatched := time.NewTicker(unwatchedInterval)
	defer unwatched.Stop()
	for {
		var projects map[string]bool
		why := "requested"
		select {
		case <-ctx.Done():
			return nil
		case <-scheduled:
			scheduled = next(interval)
			projects, why = map[string]bool{"": true}, "scheduled"
		case <-unwatched.C:
			// Directories without a watch are seen only by a walk.
			dirs := d.w.Load().Unwatched()
			if len(dirs) == 0 {
				continue
			}
			projects, why = map[string]bool{}, "unwatched"
			for _, dir := range dirs {
				projects[syncer.Project(dir)] = true
			}
		case <-d.reconcile:
			// Everything requested meanwhile: one walk serves them all.
			projects = d.takeWanted()
			if len(projects) == 0 {
				continue
			}
		}
		var list []string
		if !projects[""] {
			for p := range projects {
				list = append(list, p)
			}
			sort.Strings(list)
		}
		if err := d.runReconcile(ctx, d.newRun(why, list)); err != nil && ctx.Err() == nil {
			// Not done (the queue unreachable, the guard tripped): ask
			// again, so that what it was for is not forgotten.
			d.log.Error("reconcile failed; retrying in a while", zap.Error(err), zap.String(syncer.LogReason, why),
				zap.Duration("retry_in", reconcileRetry))
			again := list
			if again == nil {
				again = []string{""}
			}
			time.AfterFunc(reconcileRetry, func() { d.wantReconcile(again) })
		}
	}
}

const (
	// reconcileRetry is the pause before a failed reconcile runs again.
	reconcileRetry = 10 * time.Second
	// networkInterval is how often a source on a network filesystem is
	// reconciled: inotify sees only this host's writes there.
	networkInterval = 15 * time.Minute
	// unwatchedInterval is how often projects holding directories without a
	// watch (max_user_watches reached) are reconciled.
	unwatchedInterval = 10 * time.Minute
)

// checkSourceFS warns loudly when the source is a network filesystem and
// makes the scheduled reconcile frequent.
func (d *daemon) checkSourceFS() {
	if name := watcher.NetworkFS(d.cfg.Source); name != "" {
		d.networkFS = name
		d.log.Warn("SOURCE IS A NETWORK FILESYSTEM: inotify sees only the writes made on this host; "+
			"writes by other clients are found by reconcile only. Run syncer on the file server itself.",
			zap.String("source", d.cfg.Source), zap.String("fstype", name), zap.Duration("reconcile_interval", networkInterval))
	}
}

// handleReconcile starts a reconcile for the API (POST /api/reconcile).
func (d *daemon) handleReconcile(w http.ResponseWriter, req *http.Request) {
	var body struct {
		Projects []string `json:"projects"`
	}
	if req.ContentLength != 0 {
		if err := decodeJSON(req, &body); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	for _, p := range body.Projects {
		if err := syncer.CheckName(p); err != nil {
			http.Error(w, "bad request: project: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if !d.isReady() {
		http.Error(w, "the startup reconcile is still running", http.StatusServiceUnavailable)
		return
	}
	slices.Sort(body.Projects)
	body.Projects = slices.Compact(body.Projects)
	d.mu.Lock()
	if d.stopping {
		d.mu.Unlock()
		http.Error(w, "the daemon is stopping", http.StatusServiceUnavailable)
		return
	}
	// A request for what a reconcile still walking already covers joins
	// it: forty requests at once cost one walk, not forty.
	for _, x := range d.recons {
		if x.Why == "api" && x.State == "walking" && coversProjects(x.Projects, body.Projects) {
			id := x.ID
			d.mu.Unlock()
			v, _ := d.reconcileView(id)
			writeJSON(w, v)
			return
		}
	}
	d.bg.Add(1)
	r := d.newRunLocked("api", body.Projects)
	d.mu.Unlock()
	go func() {
		defer d.bg.Done()
		// Detached from the request: it goes on if the CLI goes away.
		if err := d.runReconcile(d.runCtx, r); err != nil {
			d.log.Warn("reconcile", zap.Error(err), zap.String("id", r.ID))
		}
	}()
	v, _ := d.reconcileView(r.ID)
	writeJSON(w, v)
}

// Exit codes of `syncer reconcile` beyond 0, 1 and 2.
const (
	exitPartial = 3 // some jobs failed (dead-lettered)
	exitRefused = 4 // the deletion guard refused: the source is not healthy
)

// exitError carries an exit code to Main.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

func newReconcileCmd(stdout, stderr io.Writer) *cobra.Command {
	var configPath string
	var dryRun, asJSON bool
	flags := DefaultConfig()
	cmd := &cobra.Command{
		Use:   "reconcile [flags] [PROJECT...]",
		Short: "Make the backup equal to the source now, with a full compare walk",
		Long: `reconcile walks the source and the backup side by side, compares metadata
(type, size, mtime to the nanosecond, mode, owner, symlink target) and syncs
only what differs, in balanced partitions spread over every worker. It is
the backstop for what the watcher cannot see and the replacement for a
nightly full rsync.

When a 'syncer run' daemon runs for the same state dir, reconcile asks it
(its workers do the work) and follows its progress; otherwise it starts its
own embedded queue and worker pool. With PROJECT arguments only those
top-level folders are reconciled. --dry-run lists what would change
(rsync --itemize-changes) and changes nothing.

Exit codes: 0 done, 1 error, 2 bad usage, 3 some jobs failed, 4 refused by
the deletion guard (source unmounted, empty or without its marker).`,
		RunE: func(cmd *cobra.Command, projects []string) error {
			for _, p := range projects {
				if err := syncer.CheckName(p); err != nil {
					return usageError{fmt.Errorf("project: %w (want a top-level folder name)", err)}
				}
			}
			ctx, cfg, log, done, err := prepare(cmd, configPath, flags, stderr)
			if err != nil {
				return err
			}
			defer done()
			if dryRun {
				return reconcileDryRun(ctx, cfg, projects, stdout, asJSON)
			}
			return reconcileRunCmd(ctx, cmd, cfg, log, projects, stdout, stderr, asJSON)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML config file (e.g. /etc/syncer/syncer.yaml)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would change (itemized) and change nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON summary (the default when stdout is not a terminal)")
	addFlags(cmd.Flags(), &flags)
	return cmd
}

// reconcileDryRun plans and asks rsync what it would do, changing nothing.
func reconcileDryRun(ctx context.Context, cfg Config, projects []string, stdout io.Writer, asJSON bool) error {
	d := newDaemon(cfg, zap.NewNop())
	plan, err := reconcile.Walk(ctx, reconcile.Options{Source: cfg.Source, Dest: d.walkDest(), Excludes: cfg.Exclude,
		Projects: projects, IgnoreDest: d.ignoreDest()})
	if err != nil {
		return err
	}
	var items bytes.Buffer
	opts := d.rsyncOptions()
	opts.MaxDelete, opts.DryRun, opts.Itemize = 0, true, &items
	r, err := rsync.New(opts)
	if err != nil {
		return err
	}
	for _, s := range plan.Scopes {
		if _, err := r.Sync(ctx, []syncer.Scope{s}, syncer.Hints{}); err != nil {
			return fmt.Errorf("dry run of %s: %w", s, err)
		}
	}
	if asJSON {
		lines := strings.Split(strings.TrimSuffix(items.String(), "\n"), "\n")
		if items.Len() == 0 {
			lines = []string{}
		}
		return json.NewEncoder(stdout).Encode(map[string]any{"dry_run": true, "scopes": len(plan.Scopes),
			"drift_files": plan.Files, "drift_bytes": plan.Bytes, "changes": lines})
	}
	_, _ = stdout.Write(items.Bytes())
	fmt.Fprintf(stdout, "dry run: %d scopes would be synced, %d files / %d bytes differ; nothing was changed\n",
		len(plan.Scopes), plan.Files, plan.Bytes)
	return nil
}

// reconcileRunCmd runs the reconcile through the daemon when one answers,
// else with its own queue and pool, showing progress.
func reconcileRunCmd(ctx context.Context, cmd *cobra.Command, cfg Config, log *zap.Logger, projects []string,
	stdout, stderr io.Writer, asJSON bool) error {
	cf := clientFlags{stateDir: cfg.StateDir}
	var view func() (reconcileRun, error)
	var done <-chan error
	var started reconcileRun
	if err := cf.do(cmd, http.MethodPost, "/api/reconcile", map[string]any{"projects": projects}, &started); err == nil {
		log.Info("reconcile started by the running daemon", zap.String("id", started.ID))
		view = func() (reconcileRun, error) {
			var v reconcileRun
			return v, cf.get(cmd, "/api/reconcile/"+started.ID, &v)
		}
	} else {
		if _, statErr := os.Stat(filepath.Join(cfg.StateDir, controlSock)); statErr == nil {
			lock, lockErr := queue.LockDir(filepath.Join(cfg.StateDir, "nats"))
			if lockErr != nil {
				return fmt.Errorf("a daemon holds %s but does not answer: %v", cfg.StateDir, err)
			}
			lock.Close() // a stale socket: the daemon is gone; Once locks for itself
		}
		cfg.Listen = ""
		d := newDaemon(cfg, log)
		run := d.newRun("cli", projects)
		ch := make(chan error, 1)
		go func() { ch <- d.Once(ctx, run) }()
		done = ch
		view = func() (reconcileRun, error) {
			v, _ := d.reconcileView(run.ID)
			return v, nil
		}
	}
	tty := false
	if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		tty = true
	}
	if !asJSON {
		if f, ok := stdout.(*os.File); !ok || !isatty.IsTerminal(f.Fd()) {
			asJSON = true
		}
	}
	var bar *progressbar.ProgressBar
	var last reconcileRun
	for {
		v, err := view()
		if err != nil {
			return err
		}
		last = v
		if tty {
			if bar == nil && v.State != "walking" {
				bar = progressbar.NewOptions64(max(v.DriftBytes, 1), progressbar.OptionSetWriter(stderr),
					progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			if bar != nil {
				bar.Describe(fmt.Sprintf("jobs %d/%d, files %d/%d", v.Done+v.Failed, v.Jobs, v.Files, v.DriftFiles))
				_ = bar.Set64(min(v.Bytes, max(v.DriftBytes, 1)))
			} else {
				fmt.Fprintf(stderr, "\rwalking...")
			}
		}
		if v.finished() {
			break
		}
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, syncer.ErrPaused) {
				return err
			}
			done = nil
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if done != nil {
		if err := <-done; err != nil && !errors.Is(err, syncer.ErrPaused) {
			return err
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(last)
	} else {
		fmt.Fprintf(stdout, "reconcile %s: %s in %s: %d jobs, %d failed; %d files / %d bytes transferred, %d deleted; drift %d files / %d bytes\n",
			last.ID, last.State, last.Finished.Sub(last.Started).Round(time.Millisecond), last.Jobs, last.Failed,
			last.Files, last.Bytes, last.Deleted, last.DriftFiles, last.DriftBytes)
		for _, e := range last.Errors {
			fmt.Fprintf(stdout, "  failed: %s\n", e)
		}
	}
	switch last.State {
	case "failed":
		return exitError{exitPartial, fmt.Sprintf("%d of %d jobs failed (see `syncer status`)", last.Failed, last.Jobs)}
	case "refused":
		return exitError{exitRefused, last.Error}
	case "error":
		return errors.New(last.Error)
	}
	return nil
}
