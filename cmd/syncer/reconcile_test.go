package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/index"
	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/versions"
)

func reconcileCLI(t *testing.T, cfg config.Config, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	all := append([]string{"reconcile", "--source", cfg.Source, "--dest", cfg.Dest, "--state-dir", cfg.StateDir,
		"--rsync-path", cfg.RsyncPath, "--log-level", "error", "--json"}, args...)
	procs := runtime.GOMAXPROCS(0)
	code := Main(context.Background(), all, &stdout, &stderr)
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("after a reconcile in this process GOMAXPROCS is %d, was %d: the runtime it set for itself was not put back", got, procs)
	}
	return code, stdout.String(), stderr.String()
}

// TestReconcile_CLI: offline changes of every kind, fixed by one reconcile
// with no daemon running; --dry-run changes nothing; a project filter syncs
// only that project.
func TestReconcile_CLI(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/f": "1", "p/a/sub/g": "2", "p/top": "3", "q/x": "4", "gone/y": "5", "root": "6"})
	if code, _, stderr := reconcileCLI(t, cfg); code != 0 {
		t.Fatalf("first reconcile: exit %d: %s", code, stderr)
	}
	h := &harness{cfg: cfg}
	h.converge(t)

	// Offline changes.
	time.Sleep(10 * time.Millisecond)
	must(t, os.WriteFile(h.path("p/a/f"), []byte("9"), 0o644))
	must(t, os.Remove(h.path("p/top")))
	must(t, os.Rename(h.path("p/a/sub"), h.path("p/renamed")))
	must(t, os.RemoveAll(h.path("gone")))
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"new/n/deep": "n", "q/added": "a"})

	t.Run("DryRun", func(t *testing.T) {
		before := files(t, cfg.Dest)
		code, stdout, stderr := reconcileCLI(t, cfg, "--dry-run")
		if code != 0 {
			t.Fatalf("dry run: exit %d: %s", code, stderr)
		}
		if d := unchanged(t, before, cfg.Dest); d != "" {
			t.Fatalf("dry run changed the backup:\n%s", d)
		}
		var out status.DryRun
		must(t, json.Unmarshal([]byte(stdout), &out))
		joined := strings.Join(out.Lines, "\n")
		for _, w := range []string{"*deleting   gone/", "p/a/f", "new/n/deep", "q/added"} {
			if !strings.Contains(joined, w) {
				t.Errorf("dry run lacks %q:\n%s", w, joined)
			}
		}
		seen, deleting := map[string]bool{}, 0
		for _, l := range out.Lines {
			if seen[l] {
				t.Errorf("dry run lists %q twice", l)
			}
			seen[l] = true
			if strings.HasPrefix(l, "*deleting") {
				deleting++
			}
		}
		if out.Deleted != deleting || deleting < 3 || out.Sent+out.Dirs+out.Deleted+out.Attrs != len(out.Lines) {
			t.Errorf("dry run counts %+v for %d lines, %d deletions", out.Changes, len(out.Lines), deleting)
		}
		// Piped without --json: JSON all the same.
		var piped, stderr2 bytes.Buffer
		if code := Main(context.Background(), []string{"reconcile", "--dry-run", "--source", cfg.Source, "--dest", cfg.Dest,
			"--state-dir", cfg.StateDir, "--log-level", "error"}, &piped, &stderr2); code != 0 || !json.Valid(piped.Bytes()) {
			t.Errorf("piped dry run: exit %d, %q %s; want JSON", code, piped.String(), stderr2.String())
		}
	})
	t.Run("UnknownProject", func(t *testing.T) {
		before := files(t, cfg.Dest)
		code, stdout, stderr := reconcileCLI(t, cfg, "q", "ProjZ")
		if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, `no project "ProjZ"`) ||
			!strings.Contains(stderr, "projects are gone, new, p, q") {
			t.Errorf("reconcile ProjZ: exit %d, stdout %q, stderr %q; want exit 2 and one line naming the projects", code, stdout, stderr)
		}
		if d := unchanged(t, before, cfg.Dest); d != "" {
			t.Errorf("reconcile of an unknown project changed the backup:\n%s", d)
		}
	})
	t.Run("ProjectFilter", func(t *testing.T) {
		code, _, stderr := reconcileCLI(t, cfg, "q")
		if code != 0 {
			t.Fatalf("reconcile q: exit %d: %s", code, stderr)
		}
		if _, err := os.Stat(filepath.Join(cfg.Dest, "q/added")); err != nil {
			t.Errorf("q not synced: %v", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.Dest, "new")); err == nil {
			t.Error("project new synced by a reconcile of q only")
		}
	})
	code, stdout, stderr := reconcileCLI(t, cfg)
	if code != 0 {
		t.Fatalf("reconcile: exit %d: %s", code, stderr)
	}
	h.converge(t)
	var sum reconcile.Report
	must(t, json.Unmarshal([]byte(stdout), &sum))
	if sum.State != "done" || sum.DriftFiles < 3 || sum.Jobs == 0 {
		t.Errorf("summary = %+v, want done with drift", sum)
	}
	// Nothing left: the next reconcile plans nothing.
	code, stdout, _ = reconcileCLI(t, cfg)
	must(t, json.Unmarshal([]byte(stdout), &sum))
	if code != 0 || sum.Jobs != 0 {
		t.Errorf("reconcile of equal trees: exit %d, %d jobs; want 0, 0", code, sum.Jobs)
	}
	// A reconcile with nothing to sync still writes what it found the index
	// lacking: a backup made by another tool is recorded.
	must(t, os.Remove(cfg.IndexFile()))
	if code, _, stderr := reconcileCLI(t, cfg); code != 0 {
		t.Fatalf("reconcile without an index: exit %d: %s", code, stderr)
	}
	ix, err := index.Open(cfg.IndexFile(), cfg.Dest, nil)
	must(t, err)
	defer ix.Close()
	if recs, err := ix.Dir("q"); err != nil || len(recs) != 2 {
		t.Errorf("index after a reconcile that synced nothing: q has %v, %v; want records of x and added", recs, err)
	}
}

// TestReconcile_BackupHostCrash: the backup's host loses power a few
// seconds after a reconcile copied new files (its filesystem shut down
// without writing back, then mounted again). The next reconcile finds the
// backup equal to the source: no file is left empty on the backup with a
// record in the index that says it was synced.
func TestReconcile_BackupHostCrash(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig(t)
	dir := t.TempDir()
	img, mnt := testutil.Ext4Image(t, dir, "backup"), filepath.Join(dir, "backup")
	testutil.MountWith(t, img, mnt, "commit=1")
	cfg.Dest = filepath.Join(mnt, "dst")
	must(t, os.Mkdir(cfg.Dest, 0o755))
	tree := testutil.Tree{"p/a/f": "1", "q/x": "2"}
	testutil.WriteTree(t, cfg.Source, tree)
	if code, _, stderr := reconcileCLI(t, cfg); code != 0 {
		t.Fatalf("first reconcile: exit %d: %s", code, stderr)
	}
	// A day's work: new files beside old ones, and a new directory.
	work := testutil.Tree{}
	for i := range 10 {
		work[fmt.Sprintf("p/a/n%d", i)] = strings.Repeat("take ", 1000+i)
		work[fmt.Sprintf("p/new/g%d", i)] = strings.Repeat("frame ", 1000+i)
	}
	testutil.WriteTree(t, cfg.Source, work)
	if code, _, stderr := reconcileCLI(t, cfg); code != 0 {
		t.Fatalf("second reconcile: exit %d: %s", code, stderr)
	}
	// The journal commits the new entries (commit=1); their data is not
	// due for writeback for half a minute.
	time.Sleep(2 * time.Second)
	testutil.Crash(t, img, mnt, "commit=1")
	if code, _, stderr := reconcileCLI(t, cfg); code != 0 {
		t.Fatalf("reconcile after the crash: exit %d: %s", code, stderr)
	}
	if d := testutil.DiffTrees(cfg.Source, cfg.Dest, cfg.Trash); d != "" {
		t.Fatalf("after the crash and a reconcile the backup differs:\n%s", d)
	}
}

// TestReconcile_ThroughDaemon: with a daemon running, reconcile asks it.
func TestReconcile_ThroughDaemon(t *testing.T) {
	cfg := testConfig(t)
	cfg.Exclude = []string{"*.skip"}
	h := start(t, cfg)
	// A change the watcher cannot see: written straight into the backup.
	testutil.WriteTree(t, cfg.Dest, testutil.Tree{"p/stray": "not in the source"})
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/ok": "1"})
	h.converge(t)
	code, stdout, stderr := reconcileCLI(t, cfg, "--exclude", "*.skip")
	if code != 0 {
		t.Fatalf("reconcile: exit %d: %s", code, stderr)
	}
	var sum reconcile.Report
	must(t, json.Unmarshal([]byte(stdout), &sum))
	if sum.Why != "api" {
		t.Errorf("reconcile ran as %q, want through the daemon (api)", sum.Why)
	}
	h.converge(t)
}

// TestReconcile_Refused: an empty source with a full backup is refused (exit 4).
func TestReconcile_Refused(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Dest, testutil.Tree{"p/f": "precious"})
	code, _, stderr := reconcileCLI(t, cfg)
	if code != exitRefused || !strings.Contains(stderr, "empty") {
		t.Errorf("reconcile of an empty source: exit %d, %q; want %d and the reason", code, stderr, exitRefused)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.Dest, "p/f")); err != nil || string(b) != "precious" {
		t.Errorf("backup touched: %q, %v", b, err)
	}
}

// TestRun_Overflow lowers the kernel's event queue (inotify's, fanotify's)
// so that a burst overflows it: the daemon reconciles and converges
// without restarting its watcher.
func TestRun_Overflow(t *testing.T) {
	for backend, knob := range map[string]string{"inotify": "/proc/sys/fs/inotify/max_queued_events",
		"fanotify": "/proc/sys/fs/fanotify/max_queued_events"} {
		t.Run(backend, func(t *testing.T) { testOverflow(t, backend, knob) })
	}
}

func testOverflow(t *testing.T, backend, knob string) {
	testutil.RequireRoot(t)
	old, err := os.ReadFile(knob)
	must(t, err)
	must(t, os.WriteFile(knob, []byte("16"), 0o644))
	t.Cleanup(func() { _ = os.WriteFile(knob, old, 0o644) })
	cfg := testConfig(t)
	cfg.WatchBackend = backend
	if backend == "fanotify" {
		// A filesystem of its own: the mark sees only this test's writes,
		// not the machine's (a queue of 16 on the root filesystem
		// overflows on every write of anything, the backup's included).
		mountTmpfs(t, cfg.Source, "256m")
	}
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/d/": ""})
	h := start(t, cfg)
	// Queue size is fixed when the instance is made: restore now.
	must(t, os.WriteFile(knob, old, 0o644))
	w := h.d.w
	if w.Backend() != backend {
		t.Fatalf("watching with %s, want %s", w.Backend(), backend)
	}
	// Four writers at once: faster than any reader of the queue.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < 3000; i += 4 {
				if err := os.WriteFile(h.path(fmt.Sprintf("p/d/f%d", i)), []byte("x"), 0o644); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	h.converge(t)
	if n := w.Overflows(); n == 0 {
		t.Fatal("no overflow seen: the test did not test anything")
	}
	if w.Restarts() != 0 {
		t.Error("watcher was restarted")
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		v, ok := h.d.recon.Report("")
		if !ok || v.Why != "requested" || !v.Ended() {
			return fmt.Errorf("last reconcile = %+v, want a requested one, finished", v)
		}
		return nil
	})
	// Events flow again after the overflow.
	must(t, os.WriteFile(h.path("p/d/after"), []byte("y"), 0o644))
	h.converge(t)
}

// TestReconcile_MutationsConverge: 20 rounds of 1 % of the files changed
// (edits, appends, additions, deletions, renames of files and of
// directories), each followed by one `syncer reconcile`: every time the
// backup equals the source, directory times included, the root's too.
func TestReconcile_MutationsConverge(t *testing.T) {
	cfg := testConfig(t)
	tree := testutil.Tree{}
	for d := range 50 {
		for f := range 10 {
			tree[fmt.Sprintf("p%d/d%d/f%d", d%5, d, f)] = strings.Repeat("x", f+1)
		}
	}
	testutil.WriteTree(t, cfg.Source, tree)
	if code, _, stderr := reconcileCLI(t, cfg); code != 0 {
		t.Fatalf("first reconcile: exit %d: %s", code, stderr)
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	pick := func() string {
		for {
			p := filepath.Join(cfg.Source, fmt.Sprintf("p%d/d%d/f%d", rng.IntN(5), rng.IntN(50), rng.IntN(12)))
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	trusted := int64(0)
	for round := range 20 {
		time.Sleep(5 * time.Millisecond) // mtimes move on between rounds
		for range 5 {
			switch rng.IntN(9) {
			case 0:
				must(t, os.WriteFile(pick(), []byte(fmt.Sprintf("edit %d", round)), 0o644))
			case 1:
				f, err := os.OpenFile(pick(), os.O_APPEND|os.O_WRONLY, 0)
				must(t, err)
				_, _ = f.WriteString("+")
				must(t, f.Close())
			case 2:
				p := pick()
				must(t, os.WriteFile(filepath.Join(filepath.Dir(p), fmt.Sprintf("new%d-%d", round, rng.IntN(1000))), []byte("n"), 0o644))
			case 3:
				must(t, os.Remove(pick()))
			case 4:
				p := pick()
				must(t, os.Rename(p, p+fmt.Sprintf(".r%d", round)))
			case 5:
				d := filepath.Dir(pick())
				to := filepath.Join(cfg.Source, fmt.Sprintf("p%d", rng.IntN(5)), fmt.Sprintf("moved%d-%d", round, rng.IntN(1000)))
				must(t, os.Rename(d, to))
				must(t, os.Mkdir(d, 0o755)) // its name comes back empty
			case 6: // a symlink made, or taken away
				l := filepath.Join(filepath.Dir(pick()), "link")
				if os.Remove(l) != nil {
					must(t, os.Symlink("f1", l))
				}
			case 7: // a directory's mode
				d := filepath.Dir(pick())
				fi, err := os.Stat(d)
				must(t, err)
				must(t, os.Chmod(d, fi.Mode().Perm()^0o020))
			case 8: // on the backup: a file lost, or one planted
				b := filepath.Join(cfg.Dest, strings.TrimPrefix(pick(), cfg.Source))
				if rng.IntN(2) == 0 {
					_ = os.Remove(b)
				} else {
					must(t, os.WriteFile(filepath.Join(filepath.Dir(b), fmt.Sprintf("planted%d", round)), []byte("p"), 0o644))
				}
			}
		}
		code, stdout, stderr := reconcileCLI(t, cfg)
		if code != 0 {
			t.Fatalf("round %d: reconcile exit %d: %s", round, code, stderr)
		}
		var rep reconcile.Report
		must(t, json.Unmarshal([]byte(stdout), &rep))
		trusted += rep.Trusted
		if d := testutil.DiffTrees(cfg.Source, cfg.Dest, cfg.Trash); d != "" {
			t.Fatalf("round %d: backup differs after reconcile:\n%s", round, d)
		}
		var s, b syscall.Stat_t
		must(t, syscall.Stat(cfg.Source, &s))
		must(t, syscall.Stat(cfg.Dest, &b))
		if s.Mtim != b.Mtim || s.Mode != b.Mode {
			t.Fatalf("round %d: root differs: source mtime %v mode %o, backup %v %o", round, s.Mtim, s.Mode, b.Mtim, b.Mode)
		}
	}
	// Most directories were left unread on the backup (index.Clean), and
	// every round still converged.
	if trusted < 20*55/2 {
		t.Errorf("%d directories trusted over 20 rounds of 56, want most", trusted)
	}
	t.Logf("%d of %d directories' backup entries not read", trusted, 20*56)
}

// TestReconcile_TidiesTrash: a standalone reconcile (cron, no daemon)
// prunes the trash as the daemon does: versions past trash_retention go,
// with their manifests, whether or not the walk found work; newer ones
// stay.
func TestReconcile_TidiesTrash(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a": "1"})
	recent := versions.Stamp(time.Now().Add(-time.Hour))
	plant := func() string {
		old := versions.Stamp(time.Now().Add(-cfg.TrashRetention - time.Hour))
		testutil.WriteTree(t, cfg.Dest, testutil.Tree{cfg.Trash + "/" + old + "/p/v": "old", cfg.Trash + "/" + old + versions.ManifestSuffix: "",
			cfg.Trash + "/" + recent + "/p/v": "recent"})
		return old
	}
	for _, round := range []string{"with work", "with nothing to sync"} {
		old := plant()
		if code, _, stderr := reconcileCLI(t, cfg); code != 0 {
			t.Fatalf("reconcile %s: exit %d: %s", round, code, stderr)
		}
		for name, want := range map[string]bool{old: false, old + versions.ManifestSuffix: false, recent: true} {
			if _, err := os.Lstat(filepath.Join(cfg.Dest, cfg.Trash, name)); (err == nil) != want {
				t.Errorf("reconcile %s: trash %s present %v, want %v", round, name, err == nil, want)
			}
		}
	}
	if d := testutil.DiffTrees(cfg.Source, cfg.Dest, cfg.Trash); d != "" {
		t.Errorf("backup differs from the source:\n%s", d)
	}
}
