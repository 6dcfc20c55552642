package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/metrics"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/reconcile"
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
		writeJSON(w, d.status(r.Context()))
	})
	mux.HandleFunc("POST /api/reconcile", d.handleReconcile)
	mux.HandleFunc("POST /api/resume", d.handleResume)
	mux.HandleFunc("POST /api/approve", d.handleApprove)
	mux.HandleFunc("GET /api/reconcile/{id}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := d.recon.Report(r.PathValue("id"))
		if !ok {
			http.Error(w, "no such reconcile", http.StatusNotFound)
			return
		}
		writeJSON(w, v)
	})
	mux.HandleFunc("POST /api/retry", func(w http.ResponseWriter, r *http.Request) {
		var req retryRequest
		if err := decodeJSON(r, &req); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		n, err := d.q.Retry(r.Context(), req.IDs)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		d.log.Info("dead-lettered jobs put back", zap.Int(syncer.LogJobs, n), zap.Strings("ids", req.IDs))
		writeJSON(w, retryResponse{Retried: n})
	})
}

// held lists the projects the deletion brake holds.
func (d *daemon) held() []guard.Hold {
	if d.brake == nil {
		return nil
	}
	return d.brake.Held()
}

// notReady says why the daemon is not ready, "" when it is.
func (d *daemon) notReady(ctx context.Context) string {
	// Asked now, not from the last run: a source gone while nothing
	// changes is not ready either.
	if err := d.guard.Check(); err != nil {
		return "paused: " + d.guard.Paused()
	}
	if h := d.held(); len(h) > 0 {
		return "held: " + h[0].String()
	}
	if !d.isReady() {
		return "initial sync not done"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := d.q.Healthy(ctx); err != nil {
		return "queue " + err.Error()
	}
	if d.sched != nil {
		if why := d.sched.Degraded(); why != "" {
			return "degraded: " + why
		}
	}
	return ""
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// statusReport is what GET /api/status returns and `syncer status` prints.
type statusReport struct {
	Version      string            `json:"version"`
	Source       string            `json:"source"`
	Dest         string            `json:"dest"`
	Started      time.Time         `json:"started"`
	Ready        bool              `json:"ready"`
	NotReady     string            `json:"not_ready,omitempty"`
	Workers      int               `json:"workers"`
	Busy         int               `json:"workers_busy"`
	Queue        queueReport       `json:"queue"`
	Watches      int               `json:"watches"`
	WatchesLimit int64             `json:"watches_limit"`
	Unwatched    []string          `json:"unwatched,omitempty"`
	Overflows    int64             `json:"overflows"`
	OpenWaiting  int               `json:"open_files_waiting"`
	RsyncRuns    int64             `json:"rsync_runs"`
	NetworkFS    string            `json:"network_fs,omitempty"`
	Reconcile    *reconcile.Report `json:"reconcile,omitempty"`
	Paused       string            `json:"paused,omitempty"`
	Held         []guard.Hold      `json:"held,omitempty"`
	Dead         []queue.DeadJob   `json:"dead"`
	Projects     []metrics.Project `json:"projects"`
}

type queueReport struct {
	Pending       uint64  `json:"pending"`
	InFlight      int     `json:"inflight"`
	OldestSeconds float64 `json:"oldest_seconds"`
	Events        uint64  `json:"events"`
	Error         string  `json:"error,omitempty"`
}

func (d *daemon) status(ctx context.Context) statusReport {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w := d.w
	r := statusReport{Version: version, Source: d.cfg.Source, Dest: d.cfg.Dest, Started: d.started,
		Ready: d.isReady(), Workers: d.pool.Workers(), Busy: d.pool.Busy(), Watches: w.Watches(),
		WatchesLimit: metrics.InotifyLimit(), Unwatched: w.Unwatched(), Overflows: w.Overflows(), OpenWaiting: w.Waiting(), RsyncRuns: d.runs.Load()}
	r.Dead, _ = d.q.Dead(ctx, 100)
	r.NotReady = d.notReady(ctx) // checks the guard now
	r.Paused = d.guard.Paused()
	if st, err := d.q.Stats(ctx); err != nil {
		r.Queue.Error = err.Error()
	} else {
		r.Queue = queueReport{Pending: st.Pending, InFlight: st.InFlight, OldestSeconds: st.OldestAge.Seconds(), Events: st.Events}
	}
	if v, ok := d.recon.Report(""); ok {
		r.Reconcile = &v
	}
	r.NetworkFS = d.networkFS
	names := d.projects.Names(metrics.SourceProjects(d.cfg.Source))
	pending, _ := d.q.PendingByProject(ctx, names)
	r.Held = d.held()
	held := map[string]string{}
	for _, h := range r.Held {
		held[h.Project] = h.String()
	}
	r.Projects = d.projects.Report(names, pending, r.Paused, held)
	return r
}
