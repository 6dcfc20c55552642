package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/testutil"
)

type harness struct {
	cfg    config.Config
	d      *daemon
	cancel context.CancelFunc
	done   chan error
}

func testConfig(t *testing.T) config.Config {
	t.Helper()
	rs := testutil.RequireRsync(t)
	cfg := config.Default()
	cfg.Source, cfg.Dest, cfg.StateDir = t.TempDir(), t.TempDir(), t.TempDir()
	cfg.RsyncPath = rs
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.Listen = "127.0.0.1:0"
	return cfg
}

// start runs a daemon on cfg until the test ends and waits until it is ready.
func start(t *testing.T, cfg config.Config) *harness {
	t.Helper()
	h := launch(t, cfg, zaptest.NewLogger(t, zaptest.Level(testLogLevel())))
	h.waitReady(t)
	return h
}

// launch starts a daemon without waiting for it to be ready.
func launch(t *testing.T, cfg config.Config, log *zap.Logger) *harness {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{cfg: cfg, d: newDaemon(cfg, log), cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- h.d.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-h.d.Ready():
	case err := <-h.done:
		t.Fatalf("daemon exited before ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("daemon not ready after 60s")
	}
}

func (h *harness) stop(t *testing.T) {
	t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("daemon Run() = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("daemon did not stop within 30s")
	}
}

// converge waits until the backup equals the source.
func (h *harness) converge(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, 25*time.Millisecond, func() error {
		if d := testutil.DiffTrees(h.cfg.Source, h.cfg.Dest, h.cfg.Trash); d != "" {
			return errors.New(d)
		}
		return nil
	})
}

func (h *harness) path(rel string) string { return filepath.Join(h.cfg.Source, rel) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRun_Changes checks that each kind of change converges to a backup equal
// to the source, one after the other on one running daemon.
func TestRun_Changes(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/f": "one", "p/b/g": "two", "q/h": "three", "p/big": strings.Repeat("x", 1<<20)})
	h := start(t, cfg)
	h.converge(t)
	p := h.path
	write := func(rel, s string) error { return os.WriteFile(p(rel), []byte(s), 0o644) }
	steps := []struct {
		name string
		do   func() error
	}{
		{"create", func() error { return write("p/a/new", "new") }},
		{"overwrite", func() error { return write("p/a/f", "ONE") }},
		{"append to a large file", func() error {
			f, err := os.OpenFile(p("p/big"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := f.Write(bytes.Repeat([]byte("y"), 4<<20)); err != nil {
				return err
			}
			return f.Close()
		}},
		{"truncate", func() error { return os.Truncate(p("p/big"), 1000) }},
		{"delete", func() error { return os.Remove(p("p/a/new")) }},
		{"rename within a directory", func() error { return os.Rename(p("p/a/f"), p("p/a/f2")) }},
		{"rename across directories", func() error { return os.Rename(p("p/a/f2"), p("p/b/f3")) }},
		{"rename across projects", func() error { return os.Rename(p("p/b/f3"), p("q/f4")) }},
		{"mkdir -p with files written at once", func() error {
			if err := os.MkdirAll(p("p/m1/m2/m3"), 0o755); err != nil {
				return err
			}
			for i := range 20 {
				for _, d := range []string{"p/m1", "p/m1/m2", "p/m1/m2/m3"} {
					if err := write(fmt.Sprintf("%s/f%d", d, i), "m"); err != nil {
						return err
					}
				}
			}
			return nil
		}},
		{"rm -r of a subtree", func() error { return os.RemoveAll(p("p/m1/m2")) }},
		{"rename a directory, then write inside it", func() error {
			testutil.WriteTree(t, h.cfg.Source, testutil.Tree{"p/d1/s1/x": "x", "p/d1/y": "y"})
			time.Sleep(100 * time.Millisecond)
			if err := os.Rename(p("p/d1"), p("p/d2")); err != nil {
				return err
			}
			if err := write("p/d2/s1/after", "after"); err != nil {
				return err
			}
			return write("p/d2/after", "after")
		}},
		{"chmod", func() error { return os.Chmod(p("q/h"), 0o600) }},
		{"chmod a directory", func() error { return os.Chmod(p("p/b"), 0o700) }},
		{"symlink create", func() error { return os.Symlink("../q/h", p("p/link")) }},
		{"symlink delete", func() error { return os.Remove(p("p/link")) }},
		{"empty file", func() error { return write("p/empty", "") }},
		{"empty directory", func() error { return os.Mkdir(p("p/emptydir"), 0o755) }},
		{"new top-level project", func() error {
			testutil.WriteTree(t, h.cfg.Source, testutil.Tree{"newproj/shot/frame1": "f", "newproj/readme": "r"})
			return nil
		}},
		{"remove a project", func() error { return os.RemoveAll(p("newproj")) }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			must(t, s.do())
			h.converge(t)
		})
	}
}

// TestRun_OddNames checks invariant 6 end to end: names reach the backup byte-exactly.
func TestRun_OddNames(t *testing.T) {
	h := start(t, testConfig(t))
	names := []string{"with space", "new\nline", "tab\there", "-leading-dash", "star*", "quest?", `quo"te`, "sq'uote",
		`back\slash`, "non-utf8-\xff\xfe", strings.Repeat("x", 255), "--", "[br]", "$HOME", "..."}
	for _, n := range names {
		must(t, os.MkdirAll(h.path("p/"+n), 0o755))
		must(t, os.WriteFile(h.path("p/"+n+"/"+n), []byte(n), 0o644))
	}
	must(t, os.MkdirAll(h.path("p/"+strings.Repeat("deep/", 60)), 0o755))
	must(t, os.WriteFile(h.path("p/"+strings.Repeat("deep/", 60)+"leaf"), []byte("leaf"), 0o644))
	h.converge(t)
	// And renames of odd names.
	must(t, os.Rename(h.path("p/new\nline"), h.path("p/-renamed\n*")))
	h.converge(t)
}

// TestRun_Startup checks that differences present at start are synced before
// ready, and that a second start with nothing changed runs no rsync.
func TestRun_Startup(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/f": "1", "p/b/g": "2", "q/h": "3", "top": "4"})
	testutil.WriteTree(t, cfg.Dest, testutil.Tree{"p/a/f": "stale", "gone/x": "x"})
	h := start(t, cfg)
	if d := testutil.DiffTrees(cfg.Source, cfg.Dest, cfg.Trash); d != "" {
		t.Fatalf("backup differs when ready:\n%s", d)
	}
	h.stop(t)

	h = start(t, cfg)
	if n := h.d.runs.Load(); n != 0 {
		t.Errorf("second start with nothing changed ran %d rsyncs, want 0", n)
	}
}

// rsyncWrapper writes a script that records each rsync run (pid, start,
// end, args) in dir, sleeps delay, then runs the real rsync.
func rsyncWrapper(t *testing.T, dir string, delay time.Duration) string {
	t.Helper()
	rs := testutil.RequireRsync(t)
	script := filepath.Join(t.TempDir(), "rsync-wrapper")
	body := fmt.Sprintf(`#!/bin/bash
# Records every run for the tests; any line here must stay cheap. Runs are
# named by their start (microseconds) and pid: pids wrap around under load
# (pid_max is often 32768), and a reused or shorter pid must neither
# overwrite an earlier run's record nor sort before it.
log=%q/${EPOCHREALTIME//[!0-9]/}-$$
printf '%%s\0' "$@" > "$log.args"
date +%%s%%N > "$log.start"
sleep %f
%q "$@"
rc=$?
date +%%s%%N > "$log.end"
exit $rc
`, dir, delay.Seconds(), rs)
	must(t, os.WriteFile(script, []byte(body), 0o755))
	return script
}

type run struct {
	pid        int
	start, end int64
	scopes     []syncer.Scope
}

// readRuns parses what rsyncWrapper recorded, oldest first.
func readRuns(t *testing.T, dir, src string) []run {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var runs []run
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), ".args")
		if !ok {
			continue
		}
		_, p, _ := strings.Cut(base, "-")
		pid, _ := strconv.Atoi(p)
		r := run{pid: pid}
		args, err := os.ReadFile(filepath.Join(dir, e.Name()))
		must(t, err)
		parts := strings.Split(strings.TrimSuffix(string(args), "\x00"), "\x00")
		recursive := false
		paths := false
		for i, a := range parts {
			switch {
			case a == "--recursive":
				recursive = true
			case a == "--" && !paths:
				paths = true
			case paths && i < len(parts)-1:
				d := strings.TrimSuffix(strings.TrimPrefix(a, src+"/./"), "/")
				r.scopes = append(r.scopes, syncer.Scope{Dir: d, Recursive: recursive})
			}
		}
		for _, f := range []struct {
			ext string
			v   *int64
		}{{".start", &r.start}, {".end", &r.end}} {
			b, err := os.ReadFile(filepath.Join(dir, base+f.ext))
			if err != nil {
				*f.v = -1 // never finished (killed)
				continue
			}
			*f.v, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		}
		if len(r.scopes) > 0 { // not `rsync --version`
			runs = append(runs, r)
		}
	}
	return runs
}

// overlaps lists pairs of runs that ran at the same time on overlapping scopes.
func overlaps(runs []run) []string {
	var out []string
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.end < 0 || b.end < 0 || a.end <= b.start || b.end <= a.start {
				continue
			}
			for _, x := range a.scopes {
				for _, y := range b.scopes {
					if x.Overlaps(y) {
						out = append(out, fmt.Sprintf("%v and %v", x, y))
					}
				}
			}
		}
	}
	return out
}

// TestRun_NoOverlap checks invariant 2 with slow rsyncs: nested directories
// changing all the time never sync at once, and a change made while its
// directory's rsync runs arrives by a follow-up job.
func TestRun_NoOverlap(t *testing.T) {
	cfg := testConfig(t)
	logDir := t.TempDir()
	cfg.RsyncPath = rsyncWrapper(t, logDir, 300*time.Millisecond)
	cfg.DirectCopy = false // about rsync runs
	cfg.Workers = 4
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/b/c/f": "0", "q/f": "0"})
	h := start(t, cfg)
	h.converge(t)
	dirs := []string{"p", "p/a", "p/a/b", "p/a/b/c", "q"}
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		d := dirs[i%len(dirs)]
		must(t, os.WriteFile(h.path(fmt.Sprintf("%s/f", d)), []byte(strconv.Itoa(i)), 0o644))
		if i%7 == 0 {
			must(t, os.Mkdir(h.path(fmt.Sprintf("%s/new%d", d, i)), 0o755))
		}
		time.Sleep(40 * time.Millisecond)
	}
	h.converge(t)

	// A write while the directory's rsync sleeps in the wrapper.
	before := len(readRuns(t, logDir, cfg.Source))
	must(t, os.WriteFile(h.path("q/during1"), []byte("1"), 0o644))
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, r := range readRuns(t, logDir, cfg.Source)[before:] {
			if r.end == 0 || r.end == -1 {
				return nil // running
			}
		}
		return errors.New("no rsync running yet")
	})
	must(t, os.WriteFile(h.path("q/during2"), []byte("2"), 0o644))
	h.converge(t)

	runs := readRuns(t, logDir, cfg.Source)
	if o := overlaps(runs); len(o) > 0 {
		t.Errorf("%d overlapping rsyncs, want 0; first: %s", len(o), o[0])
	}
	parallel := 0
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.start < b.end && b.start < a.end {
				parallel++
			}
		}
	}
	t.Logf("%d rsync runs, %d pairs ran in parallel", len(runs), parallel)
	if parallel == 0 {
		t.Error("no two rsyncs ever ran in parallel: disjoint scopes should")
	}
}

// TestRun_Burst checks invariant 7: 20,000 creates in one project converge
// with far fewer rsyncs than changes.
func TestRun_Burst(t *testing.T) {
	if testing.Short() {
		t.Skip("burst of 20,000 files: skipped with -short")
	}
	cfg := testConfig(t)
	for d := range 20 {
		must(t, os.MkdirAll(filepath.Join(cfg.Source, fmt.Sprintf("p/shot%02d", d)), 0o755))
	}
	h := start(t, cfg)
	h.d.runs.Store(0)
	// Renders appearing by the thousand in existing, watched directories.
	for d := range 20 {
		dir := h.path(fmt.Sprintf("p/shot%02d", d))
		for i := range 1000 {
			must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("frame%04d.exr", i)), []byte("px"), 0o644))
		}
	}
	start := time.Now()
	h.converge(t)
	runs := h.d.runs.Load()
	t.Logf("20000 creates: %d rsync runs, converged %v after the last write", runs, time.Since(start))
	if runs > 200 {
		t.Errorf("%d rsync runs for 20000 creates, want at most 200 (1 per 100 files)", runs)
	}
}

// TestRun_Shutdown checks that stopping mid-rsync leaves no goroutine and no
// rsync process behind, and that the interrupted job runs on the next start.
func TestRun_Shutdown(t *testing.T) {
	base := runtime.NumGoroutine()
	cfg := testConfig(t)
	logDir := t.TempDir()
	cfg.RsyncPath = rsyncWrapper(t, logDir, 5*time.Second)
	cfg.DirectCopy = false // about rsync runs
	cfg.ShutdownTimeout = 200 * time.Millisecond
	h := start(t, cfg)
	must(t, os.WriteFile(h.path("f"), []byte("x"), 0o644))
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(readRuns(t, logDir, cfg.Source)) == 0 {
			return errors.New("rsync not started")
		}
		return nil
	})
	h.stop(t)
	for _, r := range readRuns(t, logDir, cfg.Source) {
		if err := syscall.Kill(r.pid, 0); err == nil {
			t.Errorf("rsync wrapper %d still alive after stop", r.pid)
		}
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > base {
			return fmt.Errorf("%d goroutines after stop, %d before start", n, base)
		}
		return nil
	})
	if out, _ := exec.Command("pgrep", "-f", cfg.RsyncPath).Output(); len(out) > 0 {
		t.Errorf("processes left: %s", out)
	}

	// The unfinished job comes back: the next start converges quickly.
	cfg.RsyncPath = testutil.RequireRsync(t)
	h = start(t, cfg)
	h.converge(t)
}

// TestRun_OpenFiles checks that a file still open for writing is left as it
// is on the backup (an old version stays, a new file is not copied half
// written) while the rest of its directory syncs, in an existing directory
// (rsync) and in a new one (the direct copier), and that it is copied once
// closed.
func TestRun_OpenFiles(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/clip.mov": "old"})
	h := start(t, cfg)
	h.converge(t)
	backup := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(cfg.Dest, rel))
		if err != nil {
			return err.Error()
		}
		return string(b)
	}
	clip, err := os.OpenFile(h.path("p/a/clip.mov"), os.O_WRONLY|os.O_TRUNC, 0)
	must(t, err)
	defer clip.Close()
	_, err = clip.Write(bytes.Repeat([]byte("n"), 1<<20))
	must(t, err)
	must(t, os.WriteFile(h.path("p/a/small"), []byte("s"), 0o644))
	must(t, os.Mkdir(h.path("p/new"), 0o755))
	render, err := os.Create(h.path("p/new/render.exr"))
	must(t, err)
	defer render.Close()
	_, err = render.Write(bytes.Repeat([]byte("r"), 1<<20))
	must(t, err)
	must(t, os.WriteFile(h.path("p/new/done"), []byte("d"), 0o644))

	testutil.Eventually(t, 10*time.Second, 25*time.Millisecond, func() error {
		if backup("p/a/small") != "s" || backup("p/new/done") != "d" {
			return errors.New("the closed files are not on the backup yet")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // any sync of the open files would have run by now
	if got := backup("p/a/clip.mov"); got != "old" {
		t.Errorf("open file on the backup = %.20q, want the old version left alone", got)
	}
	if _, err := os.Lstat(filepath.Join(cfg.Dest, "p/new/render.exr")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a new file open for writing was copied: %v", err)
	}
	_, err = clip.Write([]byte("end"))
	must(t, err)
	must(t, clip.Close())
	must(t, render.Close())
	h.converge(t)
}

// testLogLevel is Warn, or SYNCER_TEST_LOG (debug, info) when set.
func testLogLevel() zapcore.Level {
	var l zapcore.Level
	if err := l.Set(os.Getenv("SYNCER_TEST_LOG")); err != nil || os.Getenv("SYNCER_TEST_LOG") == "" {
		return zapcore.WarnLevel
	}
	return l
}

// jobsDone sums syncer_jobs_succeeded_total.
func (h *harness) jobsDone(t *testing.T) float64 {
	t.Helper()
	fams, err := h.d.metrics.Gather()
	must(t, err)
	var n float64
	for _, f := range fams {
		if f.GetName() == "syncer_jobs_succeeded_total" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestRun_GoneAtOnce: a directory created and removed at once leaves no
// job behind that comes back by itself ("vanished" → follow-up →
// "vanished" ...): the jobs stop, and the backup equals the source.
func TestRun_GoneAtOnce(t *testing.T) {
	h := start(t, testConfig(t))
	must(t, os.MkdirAll(h.path("p"), 0o755))
	for i := range 10 {
		d := h.path([]string{"t", "p/t"}[i%2] + fmt.Sprint(i))
		must(t, os.Mkdir(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "z"), []byte("z"), 0o644))
		time.Sleep(20 * time.Millisecond)
		must(t, os.RemoveAll(d))
	}
	h.converge(t)
	time.Sleep(time.Second) // let every follow-up run
	n0 := h.jobsDone(t)
	time.Sleep(2 * time.Second)
	if n := h.jobsDone(t); n != n0 {
		t.Fatalf("%v jobs ran in 2 s with nothing changing, want none", n-n0)
	}
}
