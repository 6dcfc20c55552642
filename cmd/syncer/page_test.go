package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/internal/testutil"
)

// TestRun_StatusPage opens the read-only status page of a running daemon
// in headless Chromium: it takes a screenshot (status.png in the test's
// artifact dir: go test -artifacts), and checks the numbers the rendered
// page shows against GET /api/status, project by project.
func TestRun_StatusPage(t *testing.T) {
	chromium := testutil.RequireTool(t, "chromium")
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"ProjA/f": "1", "ProjB/sub/g": "2", "Proj C/h": "3"})
	h := start(t, cfg)
	h.converge(t)
	must(t, os.Remove(h.path("ProjA/f"))) // a version kept
	h.converge(t)
	url := "http://" + h.d.addr + "/"

	resp, err := http.Get(url)
	must(t, err)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("GET /: %d %q, CSP %q; want an HTML page that may load nothing", resp.StatusCode, ct, resp.Header.Get("Content-Security-Policy"))
	}

	browse := func(args ...string) string {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
			"--user-data-dir=" + t.TempDir(), "--window-size=1280,720"}, args...)
		out, err := exec.CommandContext(ctx, chromium, append(all, url)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	shot := filepath.Join(t.ArtifactDir(), "status.png")
	browse("--screenshot=" + shot)
	if b, err := os.ReadFile(shot); err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
		t.Fatalf("screenshot %s: %d bytes, %v", shot, len(b), err)
	}
	t.Logf("screenshot: %s", shot)

	// The DOM as Chromium rendered it, against the API read just before.
	var dom string
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		r := h.status(t)
		dom = browse("--dump-dom")
		if again := h.status(t); again.RsyncRuns != r.RsyncRuns || again.Queue.Pending != r.Queue.Pending {
			return errors.New("the daemon moved on while the page rendered")
		}
		return comparePage(dom, r)
	})
	if strings.Contains(dom, "<script") || strings.Contains(dom, "<form") || regexp.MustCompile(`(src|href)="https?:`).MatchString(dom) {
		t.Error("the status page has a script, a form or an external asset")
	}
}

// comparePage checks the values the page shows against r.
func comparePage(dom string, r status.Report) error {
	field := func(scope, name string) (string, bool) {
		m := regexp.MustCompile(`data-field="` + regexp.QuoteMeta(name) + `"[^>]*>([^<]*)<`).FindStringSubmatch(scope)
		if m == nil {
			return "", false
		}
		return strings.TrimSpace(m[1]), true
	}
	want := map[string]string{"workers": fmt.Sprint(r.Workers), "workers_busy": fmt.Sprint(r.Busy), "queue.pending": fmt.Sprint(r.Queue.Pending),
		"queue.inflight": fmt.Sprint(r.Queue.InFlight), "open_files_waiting": fmt.Sprint(r.OpenWaiting), "watcher": r.Watcher,
		"rsync_runs": fmt.Sprint(r.RsyncRuns), "version_runs": fmt.Sprint(r.VersionRuns)}
	for name, w := range want {
		if got, ok := field(dom, name); !ok || got != w {
			return fmt.Errorf("page %s = %q, /api/status %s", name, got, w)
		}
	}
	if r.VersionRuns == 0 {
		return errors.New("no version kept yet")
	}
	names := map[string]bool{}
	for _, p := range r.Projects {
		names[p.Name] = true
	}
	if !names["ProjA"] || !names["ProjB"] || !names["Proj C"] {
		return fmt.Errorf("/api/status lists projects %v, want ProjA, ProjB and Proj C among them", names)
	}
	for _, p := range r.Projects {
		i := strings.Index(dom, `data-project="`+p.Name+`"`)
		if i < 0 {
			return fmt.Errorf("project %q not on the page", p.Name)
		}
		row := dom[i:]
		row = row[:strings.Index(row, "</tr>")]
		for name, w := range map[string]string{"state": p.State, "pending": fmt.Sprint(p.Pending), "jobs_done": fmt.Sprint(p.Done),
			"jobs_failed": fmt.Sprint(p.Failed), "metadata_dropped": fmt.Sprint(p.Dropped), "last_error": p.LastError} {
			if got, _ := field(row, name); got != w {
				return fmt.Errorf("project %q: page %s = %q, /api/status %q", p.Name, name, got, w)
			}
		}
	}
	return nil
}
