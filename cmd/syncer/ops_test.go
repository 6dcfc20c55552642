package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"gopkg.in/yaml.v3"

	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/internal/testutil"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// TestRun_Metrics scrapes a daemon after a small real sync and checks every
// metric, its type and labels; then that the deploy files use only these names.
func TestRun_Metrics(t *testing.T) {
	cfg := testConfig(t)
	cfg.DiagnoseInterval = 300 * time.Millisecond
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/f": "1"})
	h := start(t, cfg)
	const changes = 4
	for i := range changes {
		must(t, os.WriteFile(h.path(fmt.Sprintf("p/a/c%d", i)), []byte("x"), 0o644))
		h.converge(t)
	}
	must(t, os.Remove(h.path("p/a/c0")))
	h.converge(t)

	var fams map[string]*dto.MetricFamily
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		fams = scrape(t, h.d.addr)
		lag := fams["syncer_replication_lag_seconds"]
		var n uint64
		for _, m := range lag.GetMetric() {
			if label(m, "reason") == "change" {
				n += m.GetHistogram().GetSampleCount()
			}
		}
		if n < changes+1 {
			return fmt.Errorf("lag histogram counts %d changes, want at least %d", n, changes+1)
		}
		if len(fams["syncer_bottleneck"].GetMetric()) != 6 {
			return fmt.Errorf("syncer_bottleneck not exported yet")
		}
		return nil
	})
	want := map[string]struct {
		typ    dto.MetricType
		labels []string
	}{
		"syncer_events_total":                             {dto.MetricType_COUNTER, []string{"reason"}},
		"syncer_events_coalesced_total":                   {dto.MetricType_COUNTER, nil},
		"syncer_jobs_published_total":                     {dto.MetricType_COUNTER, []string{"reason"}},
		"syncer_jobs_succeeded_total":                     {dto.MetricType_COUNTER, []string{"reason"}},
		"syncer_queue_jobs_pending":                       {dto.MetricType_GAUGE, nil},
		"syncer_queue_jobs_inflight":                      {dto.MetricType_GAUGE, nil},
		"syncer_queue_jobs_redelivered":                   {dto.MetricType_GAUGE, nil},
		"syncer_queue_oldest_job_age_seconds":             {dto.MetricType_GAUGE, nil},
		"syncer_queue_events_pending":                     {dto.MetricType_GAUGE, nil},
		"syncer_rsync_duration_seconds":                   {dto.MetricType_HISTOGRAM, nil},
		"syncer_rsync_runs_total":                         {dto.MetricType_COUNTER, []string{"result"}},
		"syncer_transferred_files_total":                  {dto.MetricType_COUNTER, nil},
		"syncer_transferred_bytes_total":                  {dto.MetricType_COUNTER, nil},
		"syncer_deleted_files_total":                      {dto.MetricType_COUNTER, nil},
		"syncer_replication_lag_seconds":                  {dto.MetricType_HISTOGRAM, []string{"reason"}},
		"syncer_watches":                                  {dto.MetricType_GAUGE, nil},
		"syncer_watches_limit":                            {dto.MetricType_GAUGE, nil},
		"syncer_watch_overflows_total":                    {dto.MetricType_COUNTER, nil},
		"syncer_watch_failures_total":                     {dto.MetricType_COUNTER, nil},
		"syncer_reconcile_last_success_timestamp_seconds": {dto.MetricType_GAUGE, []string{"project"}},
		"syncer_reconcile_drift_files_total":              {dto.MetricType_COUNTER, []string{"project"}},
		"syncer_reconcile_drift_bytes_total":              {dto.MetricType_COUNTER, []string{"project"}},
		"syncer_workers":                                  {dto.MetricType_GAUGE, nil},
		"syncer_workers_busy":                             {dto.MetricType_GAUGE, nil},
		"syncer_ready":                                    {dto.MetricType_GAUGE, nil},
		"syncer_paused":                                   {dto.MetricType_GAUGE, nil},
		"syncer_build_info":                               {dto.MetricType_GAUGE, []string{"version"}},
		"syncer_bottleneck":                               {dto.MetricType_GAUGE, []string{"resource"}},
		"syncer_watcher_backend":                          {dto.MetricType_GAUGE, []string{"backend"}},
		"syncer_jobs_failed_total":                        {dto.MetricType_COUNTER, []string{"exit_code"}},
		"syncer_dead_letters":                             {dto.MetricType_GAUGE, nil},
		"syncer_degraded":                                 {dto.MetricType_GAUGE, nil},
		"syncer_projects_held":                            {dto.MetricType_GAUGE, nil},
		"syncer_operator_pauses":                          {dto.MetricType_GAUGE, nil},
		"syncer_open_files_waiting":                       {dto.MetricType_GAUGE, nil},
	}
	for name, w := range want {
		f := fams[name]
		if f == nil {
			t.Errorf("metric %s missing", name)
			continue
		}
		if f.GetType() != w.typ {
			t.Errorf("metric %s type = %v, want %v", name, f.GetType(), w.typ)
		}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
			}
			if strings.Join(got, ",") != strings.Join(w.labels, ",") {
				t.Errorf("metric %s labels = %v, want %v", name, got, w.labels)
			}
		}
	}
	if v := fams["syncer_transferred_files_total"].GetMetric()[0].GetCounter().GetValue(); v < changes+1 {
		t.Errorf("files transferred = %v, want at least %d", v, changes+1)
	}
	if v := fams["syncer_deleted_files_total"].GetMetric()[0].GetCounter().GetValue(); v < 1 {
		t.Errorf("files deleted = %v, want at least 1", v)
	}
	// Series an alert takes increase() of exist at 0 before their first
	// event, so that the first one alerts.
	zero := map[string]bool{}
	for _, m := range fams["syncer_jobs_failed_total"].GetMetric() {
		zero[label(m, "exit_code")] = m.GetCounter().GetValue() == 0
	}
	for _, code := range []string{"11", "23", "255", "-1"} {
		if !zero[code] {
			t.Errorf("syncer_jobs_failed_total{exit_code=%q} not at 0 before any failure: %v", code, zero)
		}
	}
	exposed := map[string]bool{}
	for name := range fams {
		exposed[name] = true
	}

	t.Run("DeployReferencesExposedMetrics", func(t *testing.T) {
		names := map[string]bool{}
		re := regexp.MustCompile(`syncer_[a-z_]+`)
		for _, f := range []string{"alerts.yml", "grafana-dashboard.json"} {
			b, err := os.ReadFile(filepath.Join("..", "..", "deploy", f))
			must(t, err)
			for _, n := range re.FindAllString(string(b), -1) {
				names[n] = true
			}
		}
		if len(names) < 10 {
			t.Fatalf("found only %d metric names in deploy/", len(names))
		}
		for n := range names {
			base := n
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suf)
			}
			if !exposed[base] {
				t.Errorf("deploy/ references %s, which the daemon does not expose", n)
			}
		}
	})
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestRun_Readyz checks that /readyz says not ready during the startup sync
// and ready after it, while /healthz is up all along.
func TestRun_Readyz(t *testing.T) {
	cfg := testConfig(t)
	cfg.RsyncPath = rsyncWrapper(t, t.TempDir(), 1500*time.Millisecond)
	cfg.DirectCopy = false // a slow startup sync needs rsync
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/f": "needs a sync"})
	// An existing directory: rsync's job (slow here), not the copier's.
	testutil.WriteTree(t, cfg.Dest, testutil.Tree{"p/f": "stale"})
	h := launch(t, cfg, zap.NewNop())
	var addr string
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		b, err := os.ReadFile(filepath.Join(cfg.StateDir, addrFile))
		addr = strings.TrimSpace(string(b))
		if err == nil && addr == "" {
			err = fmt.Errorf("address file empty")
		}
		return err
	})
	if code, body := httpGet(t, "http://"+addr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the startup sync = %d %q, want 503", code, body)
	}
	if code, _ := httpGet(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	h.waitReady(t)
	if code, body := httpGet(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the startup sync = %d %q, want 200", code, body)
	}
}

// TestRun_Status checks that `syncer status --json` reports what the daemon did.
func TestRun_Status(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p1/f": "1", "p2/g": "2"})
	h := start(t, cfg)
	must(t, os.WriteFile(h.path("p1/f2"), []byte("x"), 0o644))
	h.converge(t)
	var r status.Report
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), []string{"status", "--json", "--state-dir", cfg.StateDir}, &stdout, &stderr); code != 0 {
			return fmt.Errorf("status exit %d: %s", code, stderr.String())
		}
		r = status.Report{}
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			return err
		}
		if r.Queue.Pending+uint64(r.Queue.InFlight) > 0 {
			return fmt.Errorf("queue not idle: %+v", r.Queue)
		}
		// An idle queue can still have events in the coalescer's window
		// (the write's close after its create): wait until no run follows.
		if n := h.d.runs.Load(); r.RsyncRuns != n {
			return fmt.Errorf("status says %d runs, the daemon has done %d", r.RsyncRuns, n)
		}
		return nil
	})
	if !r.Ready || r.Source != cfg.Source || r.RsyncRuns != h.d.runs.Load() {
		t.Errorf("status = ready %v, source %q, runs %d; want ready, %q, %d", r.Ready, r.Source, r.RsyncRuns, cfg.Source, h.d.runs.Load())
	}
	if m := r.BackupRoom; m == nil || m.Bytes <= 0 || m.FreeBytes <= 0 || m.FreeBytes > m.Bytes || r.TrashMinFree != cfg.TrashMinFree {
		t.Errorf("status backup room %+v, trash_min_free %v; want the backup's filesystem and %v", m, r.TrashMinFree, cfg.TrashMinFree)
	}
	got := map[string]int64{}
	for _, p := range r.Projects {
		got[p.Name] = p.Done
		if p.State != "ok" {
			t.Errorf("project %s state = %s, want ok", p.Name, p.State)
		}
	}
	for _, ps := range h.d.projects.Report(h.d.projects.Names(nil), nil, "", nil, nil) {
		if got[ps.Name] != ps.Done {
			t.Errorf("project %q jobs done = %d in status, %d in the daemon", ps.Name, got[ps.Name], ps.Done)
		}
	}
	if got["p1"] < 2 {
		t.Errorf("p1 jobs done = %d, want at least 2 (startup, change)", got["p1"])
	}

	// Human output names each project; no daemon is a clear error.
	var stdout, stderr bytes.Buffer
	Main(context.Background(), []string{"status", "--state-dir", cfg.StateDir}, &stdout, &stderr)
	for _, w := range []string{"PROJECT", "\np1 ", "\np2 ", "ready", "\nbackup: ", "under 5 % free the oldest versions go first"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("status output lacks %q:\n%s", w, stdout.String())
		}
	}
	stdout.Reset()
	stderr.Reset()
	if code := Main(context.Background(), []string{"status", "--state-dir", t.TempDir()}, &stdout, &stderr); code != exitFailure ||
		!strings.Contains(stderr.String(), "no syncer daemon") {
		t.Errorf("status without daemon: exit %d, %q; want 1 and a clear message", code, stderr.String())
	}
}

// TestRun_JobLog checks the one log line per finished job and its fields.
func TestRun_JobLog(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	cfg := testConfig(t)
	h := launch(t, cfg, zap.New(core))
	h.waitReady(t)
	must(t, os.MkdirAll(h.path("p/a"), 0o755))
	must(t, os.WriteFile(h.path("p/a/f"), []byte("hello"), 0o644))
	h.converge(t)
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if logs.FilterMessage("job done").Len() == 0 {
			return fmt.Errorf("no job line")
		}
		return nil
	})
	e := logs.FilterMessage("job done").All()[0]
	fields := e.ContextMap()
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range []string{"project", "dir", "job_id", "reason", "attempt", "exit_code", "took", "files", "bytes", "deleted", "worker"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("job line lacks %q; has %v", k, keys)
		}
	}
	if e.LoggerName != "worker" {
		t.Errorf("job line logger = %q, want worker", e.LoggerName)
	}
}

// TestDeploy_SystemdUnit runs systemd-analyze verify on the unit.
func TestDeploy_SystemdUnit(t *testing.T) {
	sa := testutil.RequireTool(t, "systemd-analyze")
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "syncer.service"))
	must(t, err)
	// verify wants the ExecStart binary to exist: point it at a built one.
	dir := t.TempDir()
	bin := filepath.Join(dir, "syncer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	unit := filepath.Join(dir, "syncer.service")
	must(t, os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/bin/syncer"), []byte(bin)), 0o644))
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	// Only lines about our unit count: the host may have broken units of its own.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "syncer.service") {
			ours = append(ours, l)
		}
	}
	if len(ours) > 0 || (err != nil && len(strings.TrimSpace(string(out))) == 0) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}

// TestDeploy_SystemdSecurity scores the unit's sandbox with systemd's own
// measure: its exposure must stay at 3.0 or below.
func TestDeploy_SystemdSecurity(t *testing.T) {
	sa := testutil.RequireTool(t, "systemd-analyze")
	out, _ := exec.Command(sa, "security", "--offline=true", filepath.Join("..", "..", "deploy", "syncer.service")).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for syncer.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure score in:\n%s", out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	must(t, err)
	t.Logf("systemd-analyze security exposure: %.1f", score)
	if score > 3.0 {
		t.Errorf("exposure %.1f, want at most 3.0:\n%s", score, out)
	}
}

// TestDeploy_NATSConfig checks the cluster node config with the nats-server
// syncer embeds, for each of the three node names.
func TestDeploy_NATSConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server: skipped with -short")
	}
	_, natsBin := binaries(t)
	dir := t.TempDir()
	for _, f := range [][2]string{{"nats-server.conf", "nats-server.conf"}, {"auth.conf.example", "auth.conf"}} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", f[0]))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, f[1]), b, 0o600))
	}
	for _, name := range []string{"nats1", "nats2", "nats3"} {
		cmd := exec.Command(natsBin, "-t", "-c", filepath.Join(dir, "nats-server.conf"))
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "NATS_SERVER_NAME="+name)
		if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("is valid")) {
			t.Errorf("%s: nats-server -t: %v\n%s", name, err, out)
		}
	}
}

// TestDeploy_AlertRules checks the alert rules with promtool and their structure.
func TestDeploy_AlertRules(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", "alerts.yml")
	b, err := os.ReadFile(path)
	must(t, err)
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	must(t, dec.Decode(&doc))
	alerts := map[string]bool{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %q lacks expr, severity or summary", r.Alert)
			}
		}
	}
	for _, a := range []string{"SyncerReplicationLagHigh", "SyncerJobsFailing", "SyncerPaused", "SyncerReconcileStale", "SyncerWatchesNearLimit"} {
		if !alerts[a] {
			t.Errorf("alert %s missing", a)
		}
	}
	promtool := testutil.RequireTool(t, "promtool")
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	// Every alert has a unit test that makes it fire (deploy/alerts_test.yml).
	tests := filepath.Join("..", "..", "deploy", "alerts_test.yml")
	tb, err := os.ReadFile(tests)
	must(t, err)
	for a := range alerts {
		if !bytes.Contains(tb, []byte("alertname: "+a+"\n        exp_alerts:\n          - exp_labels")) {
			t.Errorf("alert %s has no promtool test that fires it", a)
		}
	}
	if out, err := exec.Command(promtool, "test", "rules", tests).CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

// TestDiagnose_Command: `diagnose -- CMD` diagnoses CMD's run and exits
// with CMD's status, so that it can wrap a job in a script.
func TestDiagnose_Command(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
	}{{[]string{"true"}, 0}, {[]string{"sh", "-c", "exit 23"}, 23}, {[]string{"/nonexistent/cmd"}, exitFailure}} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append([]string{"diagnose", "--state-dir", t.TempDir(), "--json", "--"}, tt.args...), &stdout, &stderr)
		var v struct{ Bottleneck string }
		if code != tt.code || json.Unmarshal(stdout.Bytes(), &v) != nil || v.Bottleneck == "" {
			t.Errorf("diagnose -- %v: exit %d, stdout %q, stderr %q; want exit %d and a verdict", tt.args, code, stdout.String(), stderr.String(), tt.code)
		}
	}
}
