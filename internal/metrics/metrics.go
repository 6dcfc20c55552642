package metrics

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/diag"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/xattr"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/watcher"
	"github.com/syncer/syncer/worker"
)

// Metrics are the daemon's Prometheus metrics, on a registry of its own so
// that several daemons (tests) never share state.
type Metrics struct {
	*prometheus.Registry

	published     *prometheus.CounterVec
	coalesced     prometheus.Counter
	jobsDone      *prometheus.CounterVec
	jobsFailed    *prometheus.CounterVec
	rsyncDuration prometheus.Histogram
	rsyncRuns     *prometheus.CounterVec
	files         prometheus.Counter
	bytes         prometheus.Counter
	deleted       prometheus.Counter
	moved         prometheus.Counter
	movedBytes    prometheus.Counter
	lag           *prometheus.HistogramVec
	reconcileLast *prometheus.GaugeVec
	driftFiles    *prometheus.CounterVec
	driftBytes    *prometheus.CounterVec
	ready         prometheus.Gauge
	bottleneck    *prometheus.GaugeVec
	dropped       *prometheus.CounterVec
	trashFreed    prometheus.Counter
	cannotKeep    *prometheus.GaugeVec

	runs runs
}

// runs remembers the runs whose stats were counted: the jobs of one run
// share them, and their results may interleave with other workers'.
type runs struct {
	mu   sync.Mutex
	seen map[string]bool
}

// first reports whether run is seen for the first time.
func (s *runs) first(run string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[run] {
		return false
	}
	if len(s.seen) >= 4096 {
		clear(s.seen) // a run's results settle back to back: older ones are done
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[run] = true
	return true
}

// New returns the metrics of a daemon of the given version.
func New(version string) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_jobs_published_total",
			Help: "Jobs put on the queue, by reason."}, []string{"reason"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncer_events_coalesced_total",
			Help: "Events merged into published jobs."}),
		jobsDone: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_jobs_succeeded_total",
			Help: "Jobs whose rsync succeeded, by reason."}, []string{"reason"}),
		jobsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_jobs_failed_total",
			Help: "Jobs given up, by rsync exit code (-1: not an rsync exit)."}, []string{"exit_code"}),
		rsyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "syncer_rsync_duration_seconds",
			Help: "Duration of rsync runs.", Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200}}),
		rsyncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_rsync_runs_total",
			Help: "rsync runs, by result."}, []string{"result"}),
		files: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncer_transferred_files_total",
			Help: "Regular files transferred to the backup."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncer_transferred_bytes_total",
			Help: "Bytes of file data transferred to the backup."}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncer_moved_dirs_total",
			Help: "Directories moved on the backup by a rename instead of a deletion and a copy."}),
		movedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncer_moved_bytes_total",
			Help: "Bytes of the files in directories moved on the backup: what copies would have written."}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncer_deleted_files_total",
			Help: "Entries deleted from the backup."}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "syncer_replication_lag_seconds",
			Help:    "Time from the first event of a change to the end of the rsync that put it on the backup, by reason.",
			Buckets: []float64{.05, .1, .2, .3, .5, 1, 2, 5, 10, 30, 60, 300, 900, 3600}}, []string{"reason"}),
		reconcileLast: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "syncer_reconcile_last_success_timestamp_seconds",
			Help: "When a reconcile last completed without failures, by project."}, []string{"project"}),
		driftFiles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_reconcile_drift_files_total",
			Help: "Files reconcile found different or missing on the backup, by project: what events missed."}, []string{"project"}),
		driftBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_reconcile_drift_bytes_total",
			Help: "Bytes of the files counted in syncer_reconcile_drift_files_total."}, []string{"project"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncer_ready",
			Help: "1 once the startup reconcile is done."}),
		bottleneck: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "syncer_bottleneck",
			Help: "1 for the resource that limits the sync now (cpu, disk, network, memory, latency, idle), 0 for the others."},
			[]string{"resource"}),
		trashFreed: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncer_trash_freed_runs_total",
			Help: "Runs whose kept versions were removed before their retention, the oldest first, because the local backup was short of room (trash_min_free)."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_metadata_dropped_total",
			Help: "Extended attributes and ACLs of synced entries the backup did not keep, by project."}, []string{"project"}),
		cannotKeep: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "syncer_backup_cannot_keep",
			Help: "1 for each kind of metadata asked for that the backup's filesystem does not take (user, trusted, security, acl)."},
			[]string{"kind"}),
	}
	m.MustRegister(m.published, m.coalesced, m.jobsDone, m.jobsFailed,
		m.rsyncDuration, m.rsyncRuns, m.files, m.bytes, m.deleted, m.moved, m.movedBytes, m.lag, m.reconcileLast, m.driftFiles, m.driftBytes,
		m.ready, m.bottleneck, m.dropped, m.cannotKeep, m.trashFreed, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.zero()
	bi := prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncer_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": version}})
	bi.Set(1)
	m.MustRegister(bi)
	return m
}

// reasons are the job reasons a series is made for at start.
var reasons = []syncer.Reason{syncer.ReasonChange, syncer.ReasonNewDir, syncer.ReasonMove, syncer.ReasonCollapse,
	syncer.ReasonReconcile, syncer.ReasonVanished, syncer.ReasonRetry}

// zero makes every labelled series that alerts and panels read exist at 0
// from start: increase() over a series that appears with its first event
// sees no increase, so the first failure of a kind would never alert.
func (m *Metrics) zero() {
	for _, r := range reasons {
		m.published.WithLabelValues(string(r))
		m.jobsDone.WithLabelValues(string(r))
		m.lag.WithLabelValues(string(r))
	}
	for _, code := range append(rsync.ExitCodes(), -1) {
		m.jobsFailed.WithLabelValues(strconv.Itoa(code))
	}
	for _, res := range []string{"ok", "error"} {
		m.rsyncRuns.WithLabelValues(res)
	}
	m.Bottleneck(diag.Idle)
}

// gaugeFunc registers a gauge read at scrape time.
func (m *Metrics) gaugeFunc(name, help string, fn func() float64) {
	m.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// ProjectLabel is a project's label value: "." for the source root.
func ProjectLabel(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// Register adds the metrics read at scrape time from the components.
// degraded says why lost events are not caught up yet ("" when they are),
// held which projects wait for `syncer approve`.
func (m *Metrics) Register(q *queue.JetStream, w *watcher.Watcher, g *guard.Guard, p *worker.Pool, degraded func() string,
	held func() []string, pauses func() []guard.Pause) {
	m.MustRegister(newQueueCollector(q), newWatchCollector(w))
	m.gaugeFunc("syncer_paused", "1 while the deletion guard holds every job (source unmounted, emptied, marker missing).",
		func() float64 {
			if g.Paused() != "" {
				return 1
			}
			return 0
		})
	m.gaugeFunc("syncer_degraded", "1 while events were lost and the reconcile that catches up has not finished.",
		func() float64 {
			if degraded() != "" {
				return 1
			}
			return 0
		})
	m.gaugeFunc("syncer_projects_held", "Projects whose deletions past the brake wait for `syncer approve`.",
		func() float64 { return float64(len(held())) })
	m.gaugeFunc("syncer_operator_pauses", "Operator pauses in force (`syncer pause`; the pause of every project counts once).",
		func() float64 { return float64(len(pauses())) })
	m.gaugeFunc("syncer_watches_limit", "The kernel's fs.inotify.max_user_watches.", func() float64 { return float64(InotifyLimit()) })
	m.gaugeFunc("syncer_workers", "Worker slots (concurrent rsyncs).", func() float64 { return float64(p.Workers()) })
	m.gaugeFunc("syncer_workers_busy", "Worker slots running an rsync now.", func() float64 { return float64(p.Busy()) })
}

// Ready says the startup reconcile is done.
func (m *Metrics) Ready() { m.ready.Set(1) }

// Queued records jobs a reconcile queued.
func (m *Metrics) Queued(n int) {
	m.published.WithLabelValues(string(syncer.ReasonReconcile)).Add(float64(n))
}

// Job records a job the coalescer published for events.
func (m *Metrics) Job(j syncer.Job, events int) {
	m.published.WithLabelValues(string(j.Reason)).Inc()
	m.coalesced.Add(float64(events))
}

// Reconciled records a reconcile whose walk completed: the drift it found
// and, when no job failed, the projects it made equal.
func (m *Metrics) Reconciled(r reconcile.Report, drift map[string]reconcile.Drift, source string) {
	for p, dr := range drift {
		m.driftFiles.WithLabelValues(ProjectLabel(p)).Add(float64(dr.Files))
		m.driftBytes.WithLabelValues(ProjectLabel(p)).Add(float64(dr.Bytes))
	}
	if r.Failed > 0 {
		return
	}
	done := r.Projects
	if len(done) == 0 {
		done = SourceProjects(source)
	}
	for _, p := range done {
		m.reconcileLast.WithLabelValues(ProjectLabel(p)).Set(float64(time.Now().Unix()))
	}
}

// SourceProjects lists the top-level folders of the source.
func SourceProjects(source string) []string {
	ents, err := os.ReadDir(source)
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

// CannotKeep records what the backup's filesystem does not take of what
// the settings ask for: wanted, and takes of it.
func (m *Metrics) CannotKeep(wanted, takes xattr.Kind) {
	for _, k := range []struct {
		k     xattr.Kind
		label string
	}{{xattr.User, "user"}, {xattr.Trusted, "trusted"}, {xattr.Security, "security"}, {xattr.ACL, "acl"}} {
		if wanted&k.k != 0 {
			m.cannotKeep.WithLabelValues(k.label).Set(map[bool]float64{true: 0, false: 1}[takes&k.k != 0])
		}
	}
}

// Result records a settled job.
func (m *Metrics) Result(r syncer.Result) {
	if r.Stats.Dropped > 0 && m.runs.first(r.Run) {
		m.dropped.WithLabelValues(ProjectLabel(r.Job.Scope.Project())).Add(float64(r.Stats.Dropped))
	}
	if !r.OK {
		m.jobsFailed.WithLabelValues(strconv.Itoa(r.ExitCode)).Inc()
		return
	}
	m.jobsDone.WithLabelValues(string(r.Job.Reason)).Inc()
	if !r.Job.FirstEvent.IsZero() {
		m.lag.WithLabelValues(string(r.Job.Reason)).Observe(r.Finished.Sub(r.Job.FirstEvent).Seconds())
	}
}

// Run records one sync run.
func (m *Metrics) Run(st syncer.Stats, took time.Duration, err error) {
	m.rsyncDuration.Observe(took.Seconds())
	res := "ok"
	var open *syncer.OpenFilesError
	if err != nil && !errors.As(err, &open) {
		res = "error"
	}
	m.rsyncRuns.WithLabelValues(res).Inc()
	m.files.Add(float64(st.Files))
	m.bytes.Add(float64(st.Bytes))
	m.deleted.Add(float64(st.Deleted))
	m.moved.Add(float64(st.Moved))
	m.movedBytes.Add(float64(st.MovedBytes))
}

// queueCollector reads queue state at scrape time (two in-process round
// trips, ~0.1 ms each).
type queueCollector struct {
	q                                                    *queue.JetStream
	pending, inflight, redelivered, oldest, events, dead *prometheus.Desc
}

func newQueueCollector(q *queue.JetStream) *queueCollector {
	return &queueCollector{q: q,
		pending:     prometheus.NewDesc("syncer_queue_jobs_pending", "Jobs waiting for a worker.", nil, nil),
		inflight:    prometheus.NewDesc("syncer_queue_jobs_inflight", "Jobs delivered to a worker and not yet settled.", nil, nil),
		redelivered: prometheus.NewDesc("syncer_queue_jobs_redelivered", "Unsettled jobs delivered more than once.", nil, nil),
		oldest:      prometheus.NewDesc("syncer_queue_oldest_job_age_seconds", "Age of the oldest job in the queue.", nil, nil),
		events:      prometheus.NewDesc("syncer_queue_events_pending", "Watcher events not yet coalesced into jobs.", nil, nil),
		dead:        prometheus.NewDesc("syncer_dead_letters", "Jobs given up after their retries, waiting for `syncer retry`.", nil, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.inflight, c.redelivered, c.oldest, c.events, c.dead} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.q.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.pending, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(st.InFlight))
	ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(st.Redelivered))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, st.OldestAge.Seconds())
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.GaugeValue, float64(st.Events))
	ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(st.Dead))
}

// watchCollector reads the watcher's counters at scrape time.
type watchCollector struct {
	w                                                             *watcher.Watcher
	events, overflows, failures, watches, open, restarts, backend *prometheus.Desc
}

func newWatchCollector(w *watcher.Watcher) *watchCollector {
	return &watchCollector{w: w,
		events:    prometheus.NewDesc("syncer_events_total", "Directory events the watcher stored, by reason.", []string{"reason"}, nil),
		overflows: prometheus.NewDesc("syncer_watch_overflows_total", "Kernel event queue overflows, inotify's or fanotify's (each triggers a reconcile).", nil, nil),
		failures:  prometheus.NewDesc("syncer_watch_failures_total", "Directories whose watch could not be added (left to reconcile).", nil, nil),
		restarts:  prometheus.NewDesc("syncer_watch_restarts_total", "Times the source root was replaced and watched anew.", nil, nil),
		watches:   prometheus.NewDesc("syncer_watches", "Directories watched with inotify.", nil, nil),
		open:      prometheus.NewDesc("syncer_open_files_waiting", "Files left out of syncs until their writer closes them.", nil, nil),
		backend:   prometheus.NewDesc("syncer_watcher_backend", "1 for the backend watching the source (fanotify or inotify), 0 for the other.", []string{"backend"}, nil),
	}
}

func (c *watchCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.overflows, c.failures, c.restarts, c.watches, c.open, c.backend} {
		ch <- d
	}
}

func (c *watchCollector) Collect(ch chan<- prometheus.Metric) {
	for r, n := range c.w.Published() {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n), string(r))
	}
	ch <- prometheus.MustNewConstMetric(c.overflows, prometheus.CounterValue, float64(c.w.Overflows()))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(c.w.WatchFailures()))
	ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(c.w.Restarts()))
	ch <- prometheus.MustNewConstMetric(c.watches, prometheus.GaugeValue, float64(c.w.Watches()))
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(c.w.Waiting()))
	for _, b := range []string{watcher.BackendFanotify, watcher.BackendInotify} {
		v := 0.0
		if c.w.Backend() == b {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.backend, prometheus.GaugeValue, v, b)
	}
}

// InotifyLimit reads the kernel's max_user_watches; 0 when unknown.
func InotifyLimit() int64 {
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_watches")
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// Bottleneck records the resource that limits the sync now (diag's verdict).
func (m *Metrics) Bottleneck(resource string) {
	for _, r := range []string{diag.CPU, diag.Disk, diag.Network, diag.Memory, diag.Latency, diag.Idle} {
		v := 0.0
		if r == resource {
			v = 1
		}
		m.bottleneck.WithLabelValues(r).Set(v)
	}
}

// TrashFreed counts runs of versions removed before their retention for
// the backup's room.
func (m *Metrics) TrashFreed(runs int) { m.trashFreed.Add(float64(runs)) }

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
