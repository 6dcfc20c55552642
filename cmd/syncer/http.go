package main

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/control"
	"github.com/syncer/syncer/internal/metrics"
	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/internal/xattr"
	"github.com/syncer/syncer/versions"
)

// retryRequest asks to put dead-lettered jobs back; no IDs means all.
type retryRequest struct {
	IDs []string `json:"ids"`
}

type retryResponse struct {
	Retried int `json:"retried"`
}

// controlRoutes are the API routes that need the control socket (or the
// token): status details, reconcile, retry.
func (d *daemon) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		control.WriteJSON(w, d.status(r.Context()))
	})
	mux.HandleFunc("POST /api/reconcile", d.handleReconcile)
	mux.HandleFunc("POST /api/pause", d.handlePause)
	mux.HandleFunc("POST /api/resume", d.handlePause)
	mux.HandleFunc("POST /api/approve", d.handleApprove)
	mux.HandleFunc("GET /api/reconcile/{id}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := d.recon.Report(r.PathValue("id"))
		if !ok {
			http.Error(w, "no such reconcile", http.StatusNotFound)
			return
		}
		control.WriteJSON(w, v)
	})
	mux.HandleFunc("POST /api/retry", func(w http.ResponseWriter, r *http.Request) {
		var req retryRequest
		if err := control.DecodeJSON(r, &req); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		n, err := d.q.Retry(r.Context(), req.IDs)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		d.log.Info("dead-lettered jobs put back", zap.Int(syncer.LogJobs, n), zap.Strings("ids", req.IDs))
		control.WriteJSON(w, retryResponse{Retried: n})
	})
}

// notReady says why the daemon is not ready, "" when it is.
func (d *daemon) notReady(ctx context.Context) string {
	return status.NotReady(ctx, status.Readiness{Guard: d.guard.Check, Paused: d.guard.Paused, Held: d.brake.Held, Pauses: d.pauses.List,
		Ready: d.isReady, Queue: d.q.Healthy, Degraded: d.sched.Degraded})
}

func (d *daemon) status(ctx context.Context) status.Report {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r := status.Report{Version: version, Source: d.cfg.Source, Dest: d.cfg.Dest, Started: d.started,
		Ready: d.isReady(), Workers: d.pool.Workers(), Busy: d.pool.Busy(), Watcher: d.w.Backend(), Watches: d.w.Watches(),
		WatchesLimit: metrics.InotifyLimit(), Unwatched: d.w.Unwatched(), Overflows: d.w.Overflows(), OpenWaiting: d.w.Waiting(), RsyncRuns: d.runs.Load()}
	r.Dead, _ = d.q.Dead(ctx, 100)
	r.NotReady = d.notReady(ctx) // checks the guard now
	r.Paused = d.guard.Paused()
	if st, err := d.q.Stats(ctx); err != nil {
		r.Queue.Error = err.Error()
	} else {
		r.Queue = status.Queue{Pending: st.Pending, InFlight: st.InFlight, OldestSeconds: st.OldestAge.Seconds(), Events: st.Events}
	}
	if v, ok := d.recon.Report(""); ok {
		r.Reconcile = &v
	}
	r.NetworkFS = d.networkFS
	if t := d.cfg.TrashDir(); t != "" && !d.cfg.Remote() {
		r.VersionRuns, r.OldestVersion = versions.Kept(d.cfg.Dest, t)
		r.TrashMinFree = d.cfg.TrashMinFree
	}
	if m, ok, err := d.runner.Room(); ok && err == nil {
		r.BackupRoom = &m
	}
	if d.backup.Lost != xattr.None {
		r.CannotKeep = d.backup.Lost.String()
	}
	names := d.projects.Names(metrics.SourceProjects(d.cfg.Source))
	pending, _ := d.q.PendingByProject(ctx, names)
	r.Held, r.Pauses = d.brake.Held(), d.pauses.List()
	r.Projects = d.projects.Report(names, pending, r.Paused, r.Held, r.Pauses)
	return r
}
