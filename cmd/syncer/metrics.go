package main

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/queue"
)

// metrics are the daemon's Prometheus metrics, on a registry of its own so
// that several daemons (tests) never share state.
type metrics struct {
	reg *prometheus.Registry

	events        *prometheus.CounterVec
	overflows     prometheus.Counter
	watchFailures prometheus.Counter
	published     *prometheus.CounterVec
	coalesced     prometheus.Counter
	jobsDone      *prometheus.CounterVec
	jobsFailed    *prometheus.CounterVec
	rsyncDuration prometheus.Histogram
	rsyncRuns     *prometheus.CounterVec
	files         prometheus.Counter
	bytes         prometheus.Counter
	deleted       prometheus.Counter
	lag           *prometheus.HistogramVec
	reconcileLast *prometheus.GaugeVec
	driftFiles    *prometheus.CounterVec
	driftBytes    *prometheus.CounterVec
	ready         prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncer_events_total",
			Help: "Directory events received from the watcher, by reason."}, []string{"reason"}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncer_watch_overflows_total",
			Help: "Kernel inotify queue overflows (each triggers a reconcile)."}),
		watchFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncer_watch_failures_total",
			Help: "Directories whose watch could not be added (left to reconcile)."}),
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
	}
	m.reg.MustRegister(m.events, m.overflows, m.watchFailures, m.published, m.coalesced, m.jobsDone, m.jobsFailed,
		m.rsyncDuration, m.rsyncRuns, m.files, m.bytes, m.deleted, m.lag, m.reconcileLast, m.driftFiles, m.driftBytes,
		m.ready, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncer_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": version}})
	bi.Set(1)
	m.reg.MustRegister(bi)
	return m
}

// gaugeFunc registers a gauge read at scrape time.
func (m *metrics) gaugeFunc(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

func projectLabel(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// result records a settled job.
func (m *metrics) result(r syncer.Result) {
	if !r.OK {
		m.jobsFailed.WithLabelValues(strconv.Itoa(r.ExitCode)).Inc()
		return
	}
	m.jobsDone.WithLabelValues(string(r.Reason)).Inc()
	if !r.FirstEvent.IsZero() {
		m.lag.WithLabelValues(string(r.Reason)).Observe(r.Finished.Sub(r.FirstEvent).Seconds())
	}
}

// run records one rsync run.
func (m *metrics) run(st syncer.Stats, took time.Duration, err error) {
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
}

// queueCollector reads queue state at scrape time (two in-process round
// trips, ~0.1 ms each).
type queueCollector struct {
	q                                              *queue.JetStream
	pending, inflight, redelivered, oldest, events *prometheus.Desc
}

func newQueueCollector(q *queue.JetStream) *queueCollector {
	return &queueCollector{q: q,
		pending:     prometheus.NewDesc("syncer_queue_jobs_pending", "Jobs waiting for a worker.", nil, nil),
		inflight:    prometheus.NewDesc("syncer_queue_jobs_inflight", "Jobs delivered to a worker and not yet settled.", nil, nil),
		redelivered: prometheus.NewDesc("syncer_queue_jobs_redelivered", "Unsettled jobs delivered more than once.", nil, nil),
		oldest:      prometheus.NewDesc("syncer_queue_oldest_job_age_seconds", "Age of the oldest job in the queue.", nil, nil),
		events:      prometheus.NewDesc("syncer_queue_events_pending", "Watcher events not yet coalesced into jobs.", nil, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.inflight, c.redelivered, c.oldest, c.events} {
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
}

// inotifyLimit reads the kernel's max_user_watches; 0 when unknown.
func inotifyLimit() float64 {
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_watches")
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	return n
}
