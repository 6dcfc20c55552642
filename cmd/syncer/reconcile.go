package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
)

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
	id, joined := d.recon.Start("api", body.Projects, true)
	if !joined {
		d.bg.Add(1)
		go func(ctx context.Context) {
			defer d.bg.Done()
			// Detached from the request: it goes on if the CLI goes away.
			if err := d.recon.Run(ctx, id); err != nil {
				d.log.Warn("reconcile", zap.Error(err), zap.String("id", id))
			}
		}(d.runCtx)
	}
	d.mu.Unlock()
	v, _ := d.recon.Report(id)
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
	flags := config.Default()
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
func reconcileDryRun(ctx context.Context, cfg config.Config, projects []string, stdout io.Writer, asJSON bool) error {
	walk := cfg.Walk()
	walk.Projects = projects
	plan, err := reconcile.Walk(ctx, walk)
	if err != nil {
		return err
	}
	var items bytes.Buffer
	opts := cfg.Rsync(zap.NewNop())
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
func reconcileRunCmd(ctx context.Context, cmd *cobra.Command, cfg config.Config, log *zap.Logger, projects []string,
	stdout, stderr io.Writer, asJSON bool) error {
	cf := clientFlags{stateDir: cfg.StateDir}
	var view func() (reconcile.Report, error)
	var done <-chan error
	var started reconcile.Report
	if err := cf.do(cmd, http.MethodPost, "/api/reconcile", map[string]any{"projects": projects}, &started); err == nil {
		log.Info("reconcile started by the running daemon", zap.String("id", started.ID))
		view = func() (reconcile.Report, error) {
			var v reconcile.Report
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
		id, _ := d.recon.Start("cli", projects, false)
		ch := make(chan error, 1)
		go func() { ch <- d.Once(ctx, id) }()
		done = ch
		view = func() (reconcile.Report, error) {
			v, _ := d.recon.Report(id)
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
	var last reconcile.Report
	for {
		v, err := view()
		if err != nil {
			return err
		}
		last = v
		if tty {
			if bar == nil && v.State != reconcile.StateWalking {
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
		if v.Ended() {
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
	case reconcile.StateFailed:
		return exitError{exitPartial, fmt.Sprintf("%d of %d jobs failed (see `syncer status`)", last.Failed, last.Jobs)}
	case reconcile.StateHeld:
		return exitError{exitRefused, fmt.Sprintf("deletions of %s wait for `syncer approve`; everything else is done", strings.Join(last.Held, ", "))}
	case reconcile.StateRefused:
		return exitError{exitRefused, last.Error}
	case reconcile.StateError:
		return errors.New(last.Error)
	}
	return nil
}
