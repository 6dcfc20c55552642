package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/watcher"
)

// inotifyWatches counts the inotify watches every process holds now.
func inotifyWatches(t *testing.T) int {
	t.Helper()
	fds, err := filepath.Glob("/proc/[0-9]*/fdinfo/*")
	must(t, err)
	n := 0
	for _, p := range fds {
		f, err := os.Open(p)
		if err != nil {
			continue // gone meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "inotify wd:") {
				n++
			}
		}
		f.Close()
	}
	return n
}

// requireFanotifyAt fails (or, unless every test is required, skips) a
// test where the fanotify backend cannot watch dir.
func requireFanotifyAt(t *testing.T, dir string) {
	t.Helper()
	if err := watcher.CheckFanotify(dir); err != nil {
		if os.Getenv("SYNCER_TEST_REQUIRE_TOOLS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// TestRun_PastWatchLimit: a tree with more directories than
// fs.inotify.max_user_watches (lowered here) under the fanotify backend:
// the daemon gets ready without a watch, a change in any directory, the
// deepest and the last made included, is on the backup within seconds,
// and status shows no unwatched directory and no reconcile after start.
func TestRun_PastWatchLimit(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig(t)
	requireFanotifyAt(t, cfg.Source)
	cfg.WatchBackend = watcher.BackendFanotify
	// Room for what other processes (and tests running alongside) hold,
	// and far fewer than the tree's directories.
	limit := inotifyWatches(t) + 500
	dirs := limit + 1500
	tree := testutil.Tree{}
	for i := range dirs {
		tree[fmt.Sprintf("p%d/d%d/e%d/", i%3, i%40, i)] = ""
	}
	tree["p0/d0/e0/deep/deeper/deepest/f"] = "0"
	testutil.WriteTree(t, cfg.Source, tree)

	const knob = "/proc/sys/fs/inotify/max_user_watches"
	old, err := os.ReadFile(knob)
	must(t, err)
	must(t, os.WriteFile(knob, []byte(fmt.Sprint(limit)), 0o644))
	t.Cleanup(func() { _ = os.WriteFile(knob, old, 0o644) })

	h := start(t, cfg)
	h.converge(t)
	r := h.status(t)
	if r.Watcher != watcher.BackendFanotify || r.Watches != 0 || len(r.Unwatched) != 0 || r.WatchesLimit != int64(limit) {
		t.Fatalf("status: watcher %q, %d watches of %d, unwatched %v; want fanotify with none of %d and nothing unwatched",
			r.Watcher, r.Watches, r.WatchesLimit, r.Unwatched, limit)
	}
	startup := r.Reconcile.ID
	var worst time.Duration
	for _, dir := range []string{"p0/d0/e0/deep/deeper/deepest", fmt.Sprintf("p%d/d%d/e%d", (dirs-1)%3, (dirs-1)%40, dirs-1),
		fmt.Sprintf("p%d/d%d/e%d", (dirs/2)%3, (dirs/2)%40, dirs/2), "p2"} {
		rel := filepath.Join(dir, "changed")
		t0 := time.Now()
		must(t, os.WriteFile(h.path(rel), []byte(dir), 0o644))
		testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
			b, err := os.ReadFile(filepath.Join(cfg.Dest, rel))
			if err != nil || string(b) != dir {
				return fmt.Errorf("%s not on the backup: %v", rel, err)
			}
			return nil
		})
		worst = max(worst, time.Since(t0))
	}
	t.Logf("%d directories, max_user_watches %d: worst lag %v", dirs+dirs/40, limit, worst.Round(time.Millisecond))
	if r := h.status(t); len(r.Unwatched) != 0 || r.Overflows != 0 || r.Reconcile.ID != startup {
		t.Errorf("after the changes: unwatched %v, %d overflows, last reconcile %s (want none after the startup one %s)",
			r.Unwatched, r.Overflows, r.Reconcile.ID, startup)
	}
}
