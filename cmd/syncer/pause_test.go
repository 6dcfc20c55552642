package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/control"
	"github.com/syncer/syncer/internal/metrics"
	"github.com/syncer/syncer/internal/testutil"
)

// run is cli with stdout and stderr as one.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, out, errs := cli(t, args...)
	return code, out + errs
}

// project returns project name's line in the daemon's status.
func (h *harness) project(t *testing.T, name string) metrics.Project {
	t.Helper()
	for _, p := range h.status(t).Projects {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no project %s in status", name)
	return metrics.Project{}
}

// TestRun_Pause: `syncer pause p` leaves p's backup untouched byte for byte
// while p's writers edit, delete, rename a directory and add one, and q
// goes on; status, /readyz, the page and the metric say so; the pause
// outlasts a restart (the startup reconcile reports p held and the daemon
// gets ready); `syncer resume p` syncs what changed. The pause of every
// project holds q too and refuses to resume one of them alone; a pause
// recorded with no daemon running holds from the next start; crafted
// requests are refused and change nothing.
func TestRun_Pause(t *testing.T) {
	cfg := testConfig(t)
	cfg.DiagnoseInterval = 0
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a": "1", "p/d/b": "2", "p/gone": "x", "q/a": "1"})
	h := start(t, cfg)
	h.converge(t)
	sd := "--state-dir=" + cfg.StateDir

	if code, out := runCLI(t, "pause", "p", "--reason", "restoring from tape", sd); code != 0 || !strings.Contains(out, "paused project p") {
		t.Fatalf("pause p: exit %d: %s", code, out)
	}
	backupP := filepath.Join(cfg.Dest, "p")
	before := testutil.Fingerprint(t, backupP)
	must(t, os.WriteFile(h.path("p/a"), []byte("11"), 0o644))
	must(t, os.Remove(h.path("p/gone")))
	must(t, os.Rename(h.path("p/d"), h.path("p/d2")))
	must(t, os.MkdirAll(h.path("p/new/deep"), 0o755))
	must(t, os.WriteFile(h.path("q/b"), []byte("2"), 0o644))
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := os.Stat(filepath.Join(cfg.Dest, "q/b"))
		return err
	})
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		if p := h.project(t, "p"); p.State != "paused" || p.Pending == 0 {
			return fmt.Errorf("p: %s, %d pending; want paused with its jobs waiting", p.State, p.Pending)
		}
		return nil
	})
	time.Sleep(6 * time.Second) // the held jobs come back once (PausedDelay) and are held again
	if now := testutil.Fingerprint(t, backupP); now != before {
		t.Fatalf("paused project's backup changed:\nbefore:\n%s\nnow:\n%s", before, now)
	}
	p := h.project(t, "p")
	if !strings.Contains(p.Why, "restoring from tape") || !strings.Contains(p.Why, "syncer resume p") {
		t.Errorf("status of p: %q, want the reason and how to resume", p.Why)
	}
	if q := h.project(t, "q"); q.State != "ok" {
		t.Errorf("q is %s while only p is paused", q.State)
	}
	if code, body := httpGet(t, "http://"+h.d.addr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "paused by an operator") {
		t.Errorf("/readyz while paused = %d %q", code, body)
	}
	if _, body := httpGet(t, "http://"+h.d.addr+"/"); !strings.Contains(body, "restoring from tape") {
		t.Error("the status page does not show the pause")
	}
	if v := scrape(t, h.d.addr)["syncer_operator_pauses"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("syncer_operator_pauses = %v, want 1", v)
	}

	// Crafted requests on the control socket: refused, nothing changes.
	c := control.Client{Socket: filepath.Join(cfg.StateDir, controlSock)}
	for _, body := range []string{`{"project": "../etc"}`, `{"project": "p/../../etc"}`, `{"project": "nosuch"}`,
		`{"project": "q", "all": true}`, `{}`, `{"project": "q", "extra": 1}`, `[1]`, `{"accept_source": true}`,
		`{"project": "q", "accept_source": true}`} {
		var v any
		err := c.Do(t.Context(), http.MethodPost, "/api/pause", rawJSON(body), &v)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("POST /api/pause %s = %v, want 400", body, err)
		}
	}
	if code, out := runCLI(t, "pause", "../etc", sd); code == 0 {
		t.Errorf("pause ../etc: exit 0: %s", out)
	}
	if ps := h.d.pauses.List(); len(ps) != 1 || ps[0].Project != "p" {
		t.Errorf("pauses after crafted requests: %+v", ps)
	}

	// A restart keeps p paused, and gets ready.
	h.stop(t)
	h = start(t, cfg)
	if rc := h.status(t).Reconcile; rc == nil || rc.State != "held" || strings.Join(rc.Held, ",") != "p" {
		t.Errorf("startup reconcile with p paused: %+v, want held on p", rc)
	}
	if now := testutil.Fingerprint(t, backupP); now != before {
		t.Fatalf("paused project's backup changed across a restart:\n%s", now)
	}
	if code, out := runCLI(t, "resume", "p", sd); code != 0 || !strings.Contains(out, "resumed project p") {
		t.Fatalf("resume p: exit %d: %s", code, out)
	}
	h.converge(t)
	h.idle(t, 0) // a run going on when a pause comes finishes

	// Every project paused: q waits too; q alone cannot be resumed.
	if code, out := runCLI(t, "pause", sd); code != 0 || !strings.Contains(out, "paused every project") {
		t.Fatalf("pause: exit %d: %s", code, out)
	}
	beforeAll := testutil.Fingerprint(t, cfg.Dest)
	must(t, os.WriteFile(h.path("q/c"), []byte("3"), 0o644))
	must(t, os.WriteFile(h.path("newproject"), []byte("top"), 0o644))
	if code, out := runCLI(t, "resume", "q", sd); code == 0 || !strings.Contains(out, "every project is paused") {
		t.Errorf("resume q while all paused: exit %d: %s", code, out)
	}
	time.Sleep(3 * time.Second)
	if now := testutil.Fingerprint(t, cfg.Dest); now != beforeAll {
		t.Fatalf("backup changed while every project was paused:\n%s", now)
	}
	if code, out := runCLI(t, "resume", sd); code != 0 || !strings.Contains(out, "resumed every project") {
		t.Fatalf("resume: exit %d: %s", code, out)
	}
	h.converge(t)
	h.idle(t, 0)

	// No daemon: the pause is recorded for the next start.
	h.stop(t)
	conf := filepath.Join(t.TempDir(), "syncer.yaml")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf("source: %s\ndest: %s\nstate_dir: %s\n", cfg.Source, cfg.Dest, cfg.StateDir)), 0o644))
	if code, out := runCLI(t, "pause", "q", "--config", conf); code != 0 || !strings.Contains(out, "paused project q") {
		t.Fatalf("pause q with no daemon: exit %d: %s", code, out)
	}
	must(t, os.WriteFile(h.path("q/d"), []byte("4"), 0o644))
	beforeQ := testutil.Fingerprint(t, filepath.Join(cfg.Dest, "q"))
	h = start(t, cfg)
	time.Sleep(2 * time.Second)
	if now := testutil.Fingerprint(t, filepath.Join(cfg.Dest, "q")); now != beforeQ {
		t.Fatalf("q synced at start though paused with no daemon running:\n%s", now)
	}
	if code, out := runCLI(t, "resume", sd); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, out)
	}
	h.converge(t)
}

// rawJSON is a request body sent as it is.
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if r == "" {
		return nil, errors.New("empty")
	}
	return []byte(r), nil
}
