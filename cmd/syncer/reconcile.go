package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/control"
	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
)

// handleReconcile starts a reconcile for the API (POST /api/reconcile).
func (d *daemon) handleReconcile(w http.ResponseWriter, req *http.Request) {
	var body struct {
		Projects []string `json:"projects"`
		Deep     bool     `json:"deep"`
	}
	if req.ContentLength != 0 {
		if err := control.DecodeJSON(req, &body); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	projects, err := reconcile.Projects(body.Projects)
	if err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !d.isReady() {
		http.Error(w, "the startup reconcile is still running", http.StatusServiceUnavailable)
		return
	}
	d.mu.Lock()
	if d.stopping {
		d.mu.Unlock()
		http.Error(w, "the daemon is stopping", http.StatusServiceUnavailable)
		return
	}
	// A request for what a reconcile still walking already covers joins
	// it: forty requests at once cost one walk, not forty.
	id, joined := d.recon.Start("api", projects, body.Deep, true)
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
	control.WriteJSON(w, v)
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
	var dryRun, asJSON, deep bool
	flags := config.Default()
	cmd := &cobra.Command{
		Use:   "reconcile [flags] [PROJECT...]",
		Short: "Make the backup equal to the source now, with a full compare walk",
		Long: `reconcile walks the source and the backup side by side, compares metadata
(type, size, mtime to the nanosecond, mode, owner, symlink target) and syncs
only what differs, in balanced partitions spread over every worker. It is
the backstop for what the watcher cannot see and the replacement for a
nightly full rsync. Directories the index says are unchanged on both sides
since last found equal are not read on the backup; --deep (and one reconcile
every deep_reconcile_interval) reads every backup entry.

When a 'syncer run' daemon runs for the same state dir, reconcile asks it
(its workers do the work) and follows its progress; otherwise it starts its
own embedded queue and worker pool. With PROJECT arguments only those
top-level folders are reconciled. --dry-run lists what would change
(rsync --itemize-changes) and changes nothing.

Exit codes: 0 done, 1 error, 2 bad usage, 3 some jobs failed, 4 refused by
the deletion guard (source unmounted, empty or without its marker).`,
		RunE: func(cmd *cobra.Command, projects []string) error {
			cfg, log, _, err := prepare(cmd, configPath, flags, stderr)
			if err != nil {
				return err
			}
			if err := cfg.CheckProjects(projects); err != nil {
				return usageError{err}
			}
			ctx, done := signals(cmd, log)
			defer done()
			if dryRun {
				return reconcileDryRun(ctx, cfg, projects, stdout, asJSON)
			}
			return reconcileRunCmd(ctx, cmd, cfg, log, projects, deep, stdout, stderr, asJSON)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML config file (e.g. /etc/syncer/syncer.yaml)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would change (itemized) and change nothing")
	cmd.Flags().BoolVar(&deep, "deep", false, "read every backup entry, also of directories the index says are unchanged on both sides (see deep_reconcile_interval)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON summary (the default when stdout is not a terminal)")
	addFlags(cmd.Flags(), &flags, config.ReconcileSettings...)
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
	changes, err := rsync.Itemize(ctx, cfg.Rsync(zap.NewNop()), plan.Scopes)
	if err != nil {
		return err
	}
	d := status.DryRun{DryRun: true, Scopes: len(plan.Scopes), DriftFiles: plan.Files, DriftBytes: plan.Bytes, Changes: changes}
	return status.Write(stdout, status.WantJSON(stdout, asJSON), d, status.PrintDryRun)
}

// reconcileRunCmd runs the reconcile through the daemon when one answers,
// else with its own queue and pool, showing progress.
func reconcileRunCmd(ctx context.Context, cmd *cobra.Command, cfg config.Config, log *zap.Logger, projects []string, deep bool,
	stdout, stderr io.Writer, asJSON bool) error {
	cf := clientFlags{control.Flags{StateDir: cfg.StateDir}}
	var view func() (reconcile.Report, error)
	var done <-chan error
	var started reconcile.Report
	if err := cf.do(cmd, http.MethodPost, "/api/reconcile", map[string]any{"projects": projects, "deep": deep}, &started); err == nil {
		log.Info("reconcile started by the running daemon", zap.String("id", started.ID))
		view = func() (reconcile.Report, error) {
			var v reconcile.Report
			return v, cf.get(cmd, "/api/reconcile/"+started.ID, &v)
		}
	} else {
		if err := cfg.NoDaemon(err); err != nil {
			return err
		}
		cfg.Listen = ""
		d := newDaemon(cfg, log)
		id, _ := d.recon.Start("cli", projects, deep, false)
		ch := make(chan error, 1)
		go func() { ch <- d.Once(ctx, id) }()
		done = ch
		view = func() (reconcile.Report, error) {
			v, _ := d.recon.Report(id)
			return v, nil
		}
	}
	last, err := status.Follow(ctx, view, done, stdout, stderr, asJSON)
	if err != nil {
		return err
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
