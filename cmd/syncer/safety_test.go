package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/metrics"
	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/versions"
)

func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// files maps each non-directory entry of a tree to its content (or link
// target): what a deletion guard must keep intact.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&os.ModeSymlink != 0 {
			out[rel], err = os.Readlink(p)
			return err
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	must(t, err)
	return out
}

// unchanged reports what differs between a files() snapshot and dir now.
func unchanged(t *testing.T, before map[string]string, dir string) string {
	t.Helper()
	now := files(t, dir)
	var diffs []string
	for p, c := range before {
		if n, ok := now[p]; !ok {
			diffs = append(diffs, "deleted: "+p)
		} else if n != c {
			diffs = append(diffs, "changed: "+p)
		}
	}
	for p := range now {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "added: "+p)
		}
	}
	return strings.Join(diffs, "\n")
}

func (h *harness) status(t *testing.T) status.Report {
	t.Helper()
	r, err := h.tryStatus()
	must(t, err)
	return r
}

// tryStatus is `syncer status --json`; an error when no daemon answers yet.
func (h *harness) tryStatus() (status.Report, error) {
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"status", "--json", "--state-dir", h.cfg.StateDir}, &stdout, &stderr); code != 0 {
		return status.Report{}, fmt.Errorf("status: exit %d: %s", code, stderr.String())
	}
	var r status.Report
	err := json.Unmarshal(stdout.Bytes(), &r)
	return r, err
}

// TestRun_GuardSourceReplaced: the source replaced by an empty directory (an
// unmounted NAS share looks like this) deletes nothing, pauses, and resumes
// by itself when the source is back.
func TestRun_GuardSourceReplaced(t *testing.T) {
	base := t.TempDir()
	cfg := testConfig(t)
	cfg.Source = filepath.Join(base, "prod")
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/f": "1", "p/b/g": "2", "q/h": "3"})
	h := start(t, cfg)
	h.converge(t)
	before := files(t, cfg.Dest)

	away := filepath.Join(base, "prod.away")
	must(t, os.Rename(cfg.Source, away))
	must(t, os.Mkdir(cfg.Source, 0o755))
	// Changes on the old tree still raise events under the old paths.
	must(t, os.Remove(filepath.Join(away, "q/h")))
	must(t, os.WriteFile(filepath.Join(away, "p/a/new"), []byte("n"), 0o644))

	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		if r := h.status(t); r.Paused == "" {
			return errors.New("not paused yet")
		}
		return nil
	})
	r := h.status(t)
	if !strings.Contains(r.Paused, "empty") {
		t.Errorf("paused reason = %q, want it to say the source is empty", r.Paused)
	}
	for _, p := range r.Projects {
		if p.State != "paused" {
			t.Errorf("project %s state = %s, want paused", p.Name, p.State)
		}
	}
	if code, body := httpGet(t, "http://"+h.d.addr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "paused") {
		t.Errorf("/readyz while paused = %d %q, want 503 paused", code, body)
	}
	time.Sleep(3 * time.Second) // jobs keep coming back while paused: none may delete
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Fatalf("backup changed while the source was gone:\n%s", d)
	}

	// The source comes back: resumed without a restart, and its changes arrive.
	must(t, os.Remove(cfg.Source))
	must(t, os.Rename(away, cfg.Source))
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if r := h.status(t); r.Paused != "" {
			return fmt.Errorf("still paused: %s", r.Paused)
		}
		return nil
	})
	h.converge(t)
	must(t, os.WriteFile(h.path("p/b/after"), []byte("a"), 0o644))
	h.converge(t)
}

// TestRun_GuardUnmount unmounts a tmpfs source from under the running
// daemon, with require_mount and a marker.
func TestRun_GuardUnmount(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig(t)
	img := testutil.Ext4Image(t, t.TempDir(), "prod")
	testutil.Mount(t, img, cfg.Source)
	cfg.RequireMount, cfg.Marker = true, ".syncer-source"
	testutil.WriteTree(t, cfg.Source, testutil.Tree{".syncer-source": "", "p/a/f": "1", "q/h": "3"})
	h := start(t, cfg)
	h.converge(t)
	before := files(t, cfg.Dest)

	// The marker goes missing: paused.
	must(t, os.Remove(h.path(".syncer-source")))
	must(t, os.Remove(h.path("p/a/f")))
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		if r := h.status(t); !strings.Contains(r.Paused, "marker") {
			return fmt.Errorf("paused = %q, want the marker reason", r.Paused)
		}
		return nil
	})
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Fatalf("backup changed with the marker missing:\n%s", d)
	}
	testutil.WriteTree(t, cfg.Source, testutil.Tree{".syncer-source": "", "p/a/f": "1"})

	// Unmounted: the mount point is an empty directory of the root filesystem.
	must(t, syscall.Unmount(cfg.Source, 0))
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"stray": "written into the bare mount point"})
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		if r := h.status(t); !strings.Contains(r.Paused, "mount") && !strings.Contains(r.Paused, "marker") {
			return fmt.Errorf("paused = %q, want a mount or marker reason", r.Paused)
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Fatalf("backup changed with the source unmounted:\n%s", d)
	}
	must(t, os.Remove(h.path("stray")))
	testutil.Mount(t, img, cfg.Source) // the same filesystem back
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"q/new": "n"})
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if r := h.status(t); r.Paused != "" {
			return fmt.Errorf("still paused: %s", r.Paused)
		}
		return nil
	})
	h.converge(t)
}

// TestRun_SourceUnmounted: with the default config, the source volume
// lazily unmounted under the running daemon with a stray file written to
// the bare mount point pauses every project, also across a restart, and
// nothing leaves the mirror; the same volume back resumes by itself;
// another volume waits for `syncer resume --accept-source`.
func TestRun_SourceUnmounted(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig(t)
	imgs := t.TempDir()
	img := testutil.Ext4Image(t, imgs, "prod")
	testutil.Mount(t, img, cfg.Source)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/f": "1", "p/b/g": "2", "q/h": "3"})
	h := start(t, cfg)
	h.converge(t)
	before := files(t, cfg.Dest)
	paused := func(h *harness) {
		t.Helper()
		testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
			r, err := h.tryStatus()
			if err != nil {
				return err
			}
			if !strings.Contains(r.Paused, "not the filesystem recorded") || !strings.Contains(r.Paused, "--accept-source") {
				return fmt.Errorf("paused = %q, want the source identity reason and how to accept", r.Paused)
			}
			return nil
		})
	}

	testutil.Unmount(t, cfg.Source, true)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"stray": "written into the bare mount point"})
	paused(h)
	if code, body := httpGet(t, "http://"+h.d.addr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "paused") {
		t.Errorf("/readyz while paused = %d %q, want 503 paused", code, body)
	}
	time.Sleep(3 * time.Second)
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Fatalf("mirror changed with the source unmounted:\n%s", d)
	}

	// Restarted while unmounted: the recorded identity still holds it.
	h.stop(t)
	h = launch(t, cfg, zaptest.NewLogger(t, zaptest.Level(testLogLevel())))
	paused(h)
	time.Sleep(2 * time.Second)
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Fatalf("mirror changed after a restart with the source unmounted:\n%s", d)
	}

	// The volume back: resumed by itself, nothing lost.
	must(t, os.Remove(h.path("stray")))
	testutil.Mount(t, img, cfg.Source)
	h.waitReady(t)
	h.converge(t)
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Fatalf("mirror after the volume came back:\n%s", d)
	}

	// Another volume with the same projects: held until accepted.
	testutil.Unmount(t, cfg.Source, false)
	testutil.Mount(t, testutil.Ext4Image(t, imgs, "new"), cfg.Source)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/f": "1", "p/b/g": "2", "q/h": "3", "q/new": "n"})
	paused(h)
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"resume", "--accept-source", "--state-dir", cfg.StateDir}, &stdout, &stderr); code != 0 {
		t.Fatalf("resume --accept-source: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "source accepted") {
		t.Errorf("resume said %q", stdout.String())
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if r := h.status(t); r.Paused != "" {
			return fmt.Errorf("still paused: %s", r.Paused)
		}
		return nil
	})
	h.converge(t)
}

// rsyncBreaker writes an rsync wrapper that makes the real rsync fail with a
// syntax error (exit 1) for runs touching project "bad" while flag exists.
func rsyncBreaker(t *testing.T, flag string) string {
	t.Helper()
	rs := testutil.RequireRsync(t)
	script := filepath.Join(t.TempDir(), "rsync-breaker")
	body := fmt.Sprintf(`#!/bin/bash
extra=()
if [ -e %q ]; then
  for a in "$@"; do case "$a" in */./bad|*/./bad/*) extra=(--filter=bogus-rule);; esac; done
fi
exec %q "${extra[@]}" "$@"
`, flag, rs)
	must(t, os.WriteFile(script, []byte(body), 0o755))
	return script
}

// TestRun_DeadLetter: a permanent rsync failure dead-letters that job, the
// other projects keep syncing, status lists it and retry puts it back.
func TestRun_DeadLetter(t *testing.T) {
	cfg := testConfig(t)
	flag := filepath.Join(t.TempDir(), "broken")
	cfg.RsyncPath = rsyncBreaker(t, flag)
	cfg.DirectCopy = false // about rsync failures
	cfg.Batch = 1          // keep the bad project's runs apart from the good ones
	// The projects exist on both sides: their changes go to rsync, not the copier.
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"bad/": "", "good/": ""})
	h := start(t, cfg)
	must(t, os.WriteFile(flag, nil, 0o644))
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"bad/f": "x", "good/g": "y"})
	var r status.Report
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		r = h.status(t)
		if len(r.Dead) == 0 {
			return errors.New("nothing dead-lettered yet")
		}
		return nil
	})
	if d := r.Dead[0]; d.Project != "bad" || d.ExitCode != 1 {
		t.Errorf("dead job = %+v, want project bad, exit 1", d)
	}
	for _, p := range r.Projects {
		if p.Name == "bad" && p.State != "failing" {
			t.Errorf("project bad state = %s, want failing", p.State)
		}
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := os.Stat(filepath.Join(cfg.Dest, "good/g"))
		return err // the good project syncs while bad fails
	})
	must(t, os.WriteFile(h.path("good/later"), []byte("z"), 0o644))
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := os.Stat(filepath.Join(cfg.Dest, "good/later"))
		return err
	})

	// The cause is fixed; the operator puts the jobs back.
	must(t, os.Remove(flag))
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"retry", "--all", "--state-dir", cfg.StateDir}, &stdout, &stderr); code != 0 {
		t.Fatalf("retry: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "put back") {
		t.Errorf("retry output = %q", stdout.String())
	}
	h.converge(t)
	if r := h.status(t); len(r.Dead) != 0 {
		t.Errorf("%d dead jobs after retry, want 0", len(r.Dead))
	}
}

// startObserved is start with the daemon's warnings and errors kept for
// the test to read.
func startObserved(t *testing.T, cfg config.Config) (*harness, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.WarnLevel)
	h := launch(t, cfg, zap.New(core))
	h.waitReady(t)
	return h, logs
}

// TestRun_FullBackup: the backup filesystem fills up, then turns read-only;
// jobs are retried with growing delays and never acked, and everything
// arrives once the fault is cleared.
func TestRun_FullBackup(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig(t)
	mountTmpfs(t, cfg.Dest, "1m")
	cfg.RetryBackoff = 200 * time.Millisecond
	cfg.RetryMax = 100
	h, logs := startObserved(t, cfg)

	must(t, os.MkdirAll(h.path("p"), 0o755))
	must(t, os.WriteFile(h.path("p/big"), bytes.Repeat([]byte("x"), 3<<20), 0o644))
	var delays []time.Duration
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		// Per job: the directory and its new subdirectory may fail apart.
		byJob := map[any][]time.Duration{}
		for _, e := range logs.FilterMessage("job failed, will retry").All() {
			m := e.ContextMap()
			if d, ok := m["retry_in"].(time.Duration); ok {
				byJob[m[syncer.LogJobID]] = append(byJob[m[syncer.LogJobID]], d)
			}
		}
		for _, ds := range byJob {
			if len(ds) >= 3 {
				delays = ds
				return nil
			}
		}
		return fmt.Errorf("retries so far: %v", byJob)
	})
	if !(delays[0] < delays[1] && delays[1] < delays[2]) {
		t.Errorf("retry delays %v, want growing", delays[:3])
	}
	if r := h.status(t); len(r.Dead) != 0 {
		t.Errorf("job dead-lettered during a transient fault: %+v", r.Dead)
	}

	// Room again, but read-only now: still retried.
	// EBUSY while a retry has a file open for writing there: try again.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		return syscall.Mount("tmpfs", cfg.Dest, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, "size=64m")
	})
	n := logs.FilterMessage("job failed, will retry").Len()
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if logs.FilterMessage("job failed, will retry").Len() <= n {
			return errors.New("no retry on the read-only backup yet")
		}
		return nil
	})
	must(t, syscall.Mount("tmpfs", cfg.Dest, "", syscall.MS_REMOUNT, "size=64m"))
	h.converge(t)
}

// TestRun_FullBackupFreedFromTrash: a local backup that its trash fills:
// once a copy leaves it under trash_min_free, the oldest run's versions go
// (with a warning), though within their retention, and the next copy,
// which would not have fitted, arrives; the newer versions stay.
func TestRun_FullBackupFreedFromTrash(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig(t)
	mountTmpfs(t, cfg.Dest, "8m")
	cfg.RetryBackoff = 200 * time.Millisecond
	cfg.RetryMax = 1000
	var stamps []string
	tree := testutil.Tree{}
	for i := range 3 {
		s := versions.Stamp(time.Now().Add(time.Duration(i-3) * time.Hour))
		stamps = append(stamps, s)
		tree[cfg.Trash+"/"+s+"/p/old"] = strings.Repeat("o", 2<<20)
		tree[cfg.Trash+"/"+s+".versions"] = ""
	}
	testutil.WriteTree(t, cfg.Dest, tree)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a": "1"})
	h, logs := startObserved(t, cfg)
	h.converge(t)

	// 1.8 of the 2 MiB left: the backup is short of room once it is there.
	must(t, os.WriteFile(h.path("p/big"), bytes.Repeat([]byte("b"), 1800<<10), 0o644))
	h.converge(t)
	testutil.Eventually(t, 3*rsync.FreeEvery, 100*time.Millisecond, func() error {
		if logs.FilterMessage("backup short of room: oldest versions removed before their retention").Len() == 0 {
			return errors.New("no warning that the trash was freed yet")
		}
		return nil
	})
	if v := h.metric(t, "syncer_trash_freed_runs_total"); v != 1 {
		t.Errorf("syncer_trash_freed_runs_total = %v, want 1", v)
	}
	// This one fits only in what the oldest run's versions took.
	must(t, os.WriteFile(h.path("p/big2"), bytes.Repeat([]byte("c"), 1500<<10), 0o644))
	h.converge(t)
	for i, s := range stamps {
		_, err := os.Stat(filepath.Join(cfg.Dest, cfg.Trash, s, "p/old"))
		if want := i > 0; (err == nil) != want {
			t.Errorf("run %s (%d of 3, oldest first): kept %v, want %v", s, i+1, err == nil, want)
		}
	}
}

// TestRun_Trash checks retention pruning and that the trash keeps deleted files.
func TestRun_Trash(t *testing.T) {
	cfg := testConfig(t)
	old := filepath.Join(cfg.Dest, cfg.Trash, "2020-01-01")
	today := filepath.Join(cfg.Dest, cfg.Trash, time.Now().Format("2006-01-02"))
	testutil.WriteTree(t, old, testutil.Tree{"p/x": "old"})
	testutil.WriteTree(t, today, testutil.Tree{"p/y": "recent"})
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/f": "1"})
	h := start(t, cfg)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, err := os.Stat(old); err == nil {
			return errors.New("trash older than the retention still there")
		}
		return nil
	})
	must(t, os.Remove(h.path("p/f")))
	h.converge(t)
	// The earlier release's day within the retention stays, and the
	// deleted file is in the version directory of the run that deleted it.
	if _, err := os.Stat(filepath.Join(today, "p/y")); err != nil {
		t.Errorf("trash lost p/y: %v", err)
	}
	if b, err := trashed(cfg.Dest, cfg.Trash, "p/f"); err != nil || string(b) != "1" {
		t.Errorf("trash lost p/f: %q, %v", b, err)
	}
}

// trashed reads the newest version of rel kept in the trash of dest.
func trashed(dest, trash, rel string) ([]byte, error) {
	vs, err := trashedAll(dest, trash, rel)
	if err != nil {
		return nil, err
	}
	return vs[len(vs)-1], nil
}

// trashedAll returns every version of rel kept in the trash, oldest first.
func trashedAll(dest, trash, rel string) ([][]byte, error) {
	m, _ := filepath.Glob(filepath.Join(dest, trash, "*Z", rel))
	if len(m) == 0 {
		return nil, fmt.Errorf("no version of %s in %s", rel, filepath.Join(dest, trash))
	}
	slices.Sort(m)
	var out [][]byte
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// leftIntoTrash checks the backup against a files() snapshot of it taken
// before a deletion was held: nothing changed or added outside the trash,
// and whatever left it (returned) is in the trash byte for byte.
func leftIntoTrash(t *testing.T, cfg config.Config, before map[string]string) (gone []string) {
	t.Helper()
	now := files(t, cfg.Dest)
	for p, c := range before {
		n, ok := now[p]
		switch {
		case !ok && !inTrash(cfg.Dest, cfg.Trash, p, c):
			t.Errorf("%s left the backup and is not in the trash", p)
		case !ok:
			gone = append(gone, p)
		case n != c:
			t.Errorf("%s changed on the backup", p)
		}
	}
	for p := range now {
		if _, ok := before[p]; !ok && !strings.HasPrefix(p, cfg.Trash+"/") {
			t.Errorf("%s added to the backup", p)
		}
	}
	slices.Sort(gone)
	return gone
}

// inTrash reports whether the trash keeps a version of rel with content c.
func inTrash(dest, trash, rel, c string) bool {
	vs, err := trashedAll(dest, trash, rel)
	return err == nil && slices.ContainsFunc(vs, func(b []byte) bool { return string(b) == c })
}

// TestRun_SecondDaemon: a second daemon on the same state dir is refused.
func TestRun_SecondDaemon(t *testing.T) {
	cfg := testConfig(t)
	start(t, cfg)
	var stderr bytes.Buffer
	code := Main(context.Background(), []string{"run", "--source", cfg.Source, "--dest", cfg.Dest, "--state-dir", cfg.StateDir,
		"--listen", "127.0.0.1:0", "--log-level", "error"}, &bytes.Buffer{}, &stderr)
	if code == 0 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "in use") {
		t.Errorf("second daemon: exit %d, stderr %q; want non-zero and one line saying the state dir is in use", code, stderr.String())
	}
}

// TestRun_Kill9 kills the daemon process with SIGKILL at random moments of a
// burst of writes, five times, and checks that nothing is lost.
func TestRun_Kill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop: skipped with -short")
	}
	testutil.RequireRsync(t)
	bin := filepath.Join(t.TempDir(), "syncer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := testConfig(t)
	h := &harness{cfg: cfg}
	args := []string{"run", "--source", cfg.Source, "--dest", cfg.Dest, "--state-dir", cfg.StateDir, "--listen", "127.0.0.1:0",
		"--log-level", "warn"}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	n := 0
	for round := range 5 {
		cmd := exec.Command(bin, args...)
		var logs bytes.Buffer
		cmd.Stderr = &logs
		must(t, cmd.Start())
		stop := time.After(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
	burst:
		for {
			select {
			case <-stop:
				break burst
			default:
			}
			d := h.path(fmt.Sprintf("p%d/d%d", n%3, n%17))
			must(t, os.MkdirAll(d, 0o755))
			must(t, os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", n)), []byte(strings.Repeat("x", n%5000)), 0o644))
			if n%11 == 0 {
				_ = os.Remove(filepath.Join(d, fmt.Sprintf("f%d", n-7)))
			}
			n++
		}
		must(t, cmd.Process.Kill())
		_ = cmd.Wait()
		// A write while the daemon is down.
		must(t, os.WriteFile(h.path(fmt.Sprintf("p0/down%d", round)), []byte("while down"), 0o644))
		if strings.Contains(logs.String(), `"level":"error"`) {
			t.Logf("round %d logs:\n%s", round, logs.String())
		}
	}
	cmd := exec.Command(bin, args...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	must(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait() // the logs are complete only now
		if t.Failed() {
			t.Logf("last daemon's logs:\n%s", logs.String())
		}
	}()
	h.converge(t)
	t.Logf("%d writes over 5 kills converged", n)
}

// TestRun_ExternalNATS runs the daemon against a JetStream server on a
// loopback port, and checks that an unreachable one is one clear error.
func TestRun_ExternalNATS(t *testing.T) {
	s := testutil.StartJetStream(t)
	cfg := testConfig(t)
	cfg.NatsURL = []string{s.ClientURL()}
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/f": "1"})
	h := start(t, cfg)
	must(t, os.WriteFile(h.path("p/g"), []byte("2"), 0o644))
	h.converge(t)
	h.stop(t)

	testutil.WriteTree(t, cfg.Dest, testutil.Tree{"keep": "k"})
	before := files(t, cfg.Dest)
	var stderr bytes.Buffer
	code := Main(context.Background(), []string{"run", "--source", cfg.Source, "--dest", cfg.Dest, "--state-dir", t.TempDir(),
		"--listen", "127.0.0.1:0", "--log-level", "error", "--nats-url", "nats://127.0.0.1:1"}, &bytes.Buffer{}, &stderr)
	if code == 0 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "nats unreachable") {
		t.Errorf("unreachable NATS: exit %d, stderr %q; want non-zero and one line", code, stderr.String())
	}
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Errorf("backup touched:\n%s", d)
	}
}

// held waits until status shows project held by the deletion brake, and
// returns what it says of it.
func (h *harness) held(t *testing.T, project string) metrics.Project {
	t.Helper()
	var held metrics.Project
	testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		for _, p := range h.status(t).Projects {
			if p.Name == project && p.State == "held" {
				held = p
				return nil
			}
		}
		return fmt.Errorf("%s not held", project)
	})
	return held
}

// TestRun_DeletionBrake: deleting 60 % of a project holds its run with
// nothing deleted, while other projects go on, until `syncer approve`; then
// the deletion is done and every deleted file is in the trash.
func TestRun_DeletionBrake(t *testing.T) {
	cfg := testConfig(t)
	tree := testutil.Tree{"q/a": "1"}
	for i := range 400 {
		tree[fmt.Sprintf("p/keep/f%d", i)] = "k"
	}
	for i := range 600 {
		tree[fmt.Sprintf("p/doomed/d%d/f%d", i%6, i)] = "d"
	}
	testutil.WriteTree(t, cfg.Source, tree)
	h := start(t, cfg)
	h.converge(t)
	before := files(t, cfg.Dest)

	// Gone at once (moved out of the source), as in
	// TestRun_SourceEmptiedOneRestored: an rm -rf seen file by file may let
	// its first deletions through below the brake's floor.
	must(t, os.Rename(h.path("p/doomed"), filepath.Join(t.TempDir(), "doomed")))
	held := h.held(t, "p")
	if !strings.Contains(held.Why, "deleting 607 of 1008 entries") || !strings.Contains(held.Why, "syncer approve p") {
		t.Errorf("held = %q, want the count and how to approve", held.Why)
	}
	if code, body := httpGet(t, "http://"+h.d.addr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "held") {
		t.Errorf("/readyz while held = %d %q, want 503 held", code, body)
	}
	// Other projects go on meanwhile.
	must(t, os.WriteFile(h.path("q/b"), []byte("2"), 0o644))
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := os.Stat(filepath.Join(cfg.Dest, "q/b"))
		return err
	})
	time.Sleep(2 * time.Second)
	before["q/b"] = "2"
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Fatalf("backup changed while the deletion was held:\n%s", d)
	}

	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"approve", "p", "--state-dir", cfg.StateDir}, &stdout, &stderr); code != 0 {
		t.Fatalf("approve: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "607 of 1008") {
		t.Errorf("approve said %q", stdout.String())
	}
	h.converge(t)
	trashed := 0
	must(t, filepath.WalkDir(filepath.Join(cfg.Dest, cfg.Trash), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.Contains(p, "/p/doomed/") {
			trashed++
		}
		return err
	}))
	if trashed != 600 {
		t.Errorf("%d deleted files in the trash, want all 600", trashed)
	}
	for _, p := range h.status(t).Projects {
		if p.State == "held" {
			t.Errorf("project %s still held after approve", p.Name)
		}
	}
}

// TestRun_DeletionBrakeSlowRmRf: a folder removed file by file, a
// directory a second, as a slow rm -rf or a user emptying it by hand: the
// runs between its steps delete below the brake's floor, and the run
// that takes the project past it is held. Whatever left the mirror
// meanwhile is in the trash, byte for byte; the rest of the project is
// untouched; after approval every deleted file is in the trash.
func TestRun_DeletionBrakeSlowRmRf(t *testing.T) {
	cfg := testConfig(t)
	tree := testutil.Tree{}
	for i := range 400 {
		tree[fmt.Sprintf("p/keep/f%d", i)] = fmt.Sprintf("keep %d", i)
	}
	for i := range 600 {
		tree[fmt.Sprintf("p/doomed/d%d/f%d", i%6, i)] = fmt.Sprintf("doomed %d", i)
	}
	testutil.WriteTree(t, cfg.Source, tree)
	h := start(t, cfg)
	h.converge(t)
	before := files(t, cfg.Dest)

	for d := range 6 {
		must(t, os.RemoveAll(h.path(fmt.Sprintf("p/doomed/d%d", d))))
		time.Sleep(time.Second)
	}
	h.held(t, "p")
	time.Sleep(time.Second)
	gone := leftIntoTrash(t, cfg, before)
	for _, p := range gone {
		if !strings.HasPrefix(p, "p/doomed/") {
			t.Errorf("%s deleted from the backup: only p/doomed was removed", p)
		}
	}
	let := len(gone)
	t.Logf("deleted before the hold, all kept in the trash: %d of 600", let)
	if let >= 600 {
		t.Errorf("all 600 deleted: the brake held nothing")
	}

	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"approve", "p", "--state-dir", cfg.StateDir}, &stdout, &stderr); code != 0 {
		t.Fatalf("approve: exit %d: %s", code, stderr.String())
	}
	h.converge(t)
	for p, c := range before {
		if strings.HasPrefix(p, "p/doomed/") && !inTrash(cfg.Dest, cfg.Trash, p, c) {
			t.Errorf("%s not in the trash after approval", p)
		}
	}
}

// TestRun_DeletionBrakeNamedFallback: a reconcile's job that names one file
// is admitted with the deletions of that file alone counted. When the
// direct copy declines it (the backup has a directory there) and rsync
// would sync the whole directory, deleting 600 files the job did not name,
// the run is counted whole first and held: nothing is deleted until
// `syncer approve`.
func TestRun_DeletionBrakeNamedFallback(t *testing.T) {
	cfg := testConfig(t)
	tree := testutil.Tree{"q/a": "1", "p/d/x": "a file"}
	for i := range 400 {
		tree[fmt.Sprintf("p/keep/f%d", i)] = "k"
	}
	testutil.WriteTree(t, cfg.Source, tree)
	h := start(t, cfg)
	h.converge(t)
	// Behind syncer's back, on the backup: x became a directory, and 600
	// files the source never had (or lost while nobody watched).
	must(t, os.Remove(filepath.Join(cfg.Dest, "p/d/x")))
	must(t, os.Mkdir(filepath.Join(cfg.Dest, "p/d/x"), 0o755))
	planted := testutil.Tree{}
	for i := range 600 {
		planted[fmt.Sprintf("p/d/g%d", i)] = "g"
	}
	testutil.WriteTree(t, cfg.Dest, planted)
	before := files(t, cfg.Dest)

	job := syncer.Job{ID: "named-x", Scope: syncer.Scope{Dir: "p/d"}, Files: []string{"p/d/x"}, Reason: syncer.ReasonReconcile, FirstEvent: time.Now()}
	must(t, h.d.q.PublishJobs(t.Context(), []syncer.Job{job}))
	held := h.held(t, "p")
	// The directory's 601, and the one its admission let through first
	// (deletions within the window count together).
	if !strings.Contains(held.Why, "deleting 602 of") {
		t.Errorf("held = %q, want the whole directory's 601 deletions counted", held.Why)
	}
	time.Sleep(time.Second)
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Fatalf("backup changed while the deletion was held:\n%s", d)
	}
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"approve", "p", "--state-dir", cfg.StateDir}, &stdout, &stderr); code != 0 {
		t.Fatalf("approve: exit %d: %s", code, stderr.String())
	}
	h.converge(t)
}

// TestRun_VanishingDirs: directories created and removed at once, and a
// directory moved in and moved on at once, cost a bounded number of runs,
// leave no job looping and nothing dead-lettered.
func TestRun_VanishingDirs(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/x/y/f": "1", "p/keep": "k"})
	h := start(t, cfg)
	h.converge(t)
	h.d.runs.Store(0)
	for i := range 20 {
		d := h.path(fmt.Sprintf("p/t%d", i))
		must(t, os.Mkdir(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "z"), []byte("z"), 0o644))
		time.Sleep(20 * time.Millisecond)
		must(t, os.RemoveAll(d))
	}
	for i := range 10 {
		testutil.WriteTree(t, cfg.Source, testutil.Tree{fmt.Sprintf("p/x/y%d/f", i): "1"})
		must(t, os.Rename(h.path(fmt.Sprintf("p/x/y%d", i)), h.path("p/z")))
		must(t, os.Rename(h.path("p/z"), h.path(fmt.Sprintf("p/w%d", i))))
	}
	h.converge(t)
	time.Sleep(2 * time.Second)
	settled := h.d.runs.Load()
	time.Sleep(5 * time.Second)
	if more := h.d.runs.Load() - settled; more > 0 {
		t.Errorf("%d runs in the 5 s after converging: a job loops", more)
	}
	t.Logf("runs for 20 vanishing directories and 10 moved in and on: %d", settled)
	if settled > 200 {
		t.Errorf("%d runs, want a bounded number", settled)
	}
	if r := h.status(t); len(r.Dead) > 0 {
		t.Errorf("dead letters: %+v", r.Dead)
	}
	h.converge(t)
}

// TestRun_DamagedStore: random bytes in a consumer file of the queue store
// while the daemon is down: the next start moves the store aside, is ready
// within 10 s and the backup equals the source, changes made while down
// included.
func TestRun_DamagedStore(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a": "1"})
	h := start(t, cfg)
	h.converge(t)
	h.stop(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/while-down": "2", "q/new": "3"})
	consumer := filepath.Join(cfg.StateDir, "nats", "jetstream", "$G", "streams", queue.EventsStream, "obs", queue.EventsConsumer, "o.dat")
	must(t, os.WriteFile(consumer, bytes.Repeat([]byte{0xa5, 0x17}, 128), 0o600))
	t0 := time.Now()
	h = start(t, cfg)
	if took := time.Since(t0); took > 10*time.Second {
		t.Errorf("ready %v after a start on a damaged store, want within 10 s", took)
	}
	h.converge(t)
	aside, _ := filepath.Glob(filepath.Join(cfg.StateDir, "nats", "damaged-*"))
	if len(aside) != 1 {
		t.Errorf("moved aside: %v, want the damaged store kept once", aside)
	}
}

// TestRun_LargeOrdinaryOperations: a 30,000-entry folder moved from one
// project to another, and a `git gc` removing over 10,000 loose objects,
// converge within seconds with the default limits and dead-letter nothing.
func TestRun_LargeOrdinaryOperations(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 80,000 files: skipped with -short")
	}
	gitBin := testutil.RequireTool(t, "git")
	cfg := testConfig(t)
	tree := testutil.Tree{"b/readme": "b"}
	for d := range 300 {
		for f := range 99 {
			tree[fmt.Sprintf("a/shoot/d%d/f%d", d, f)] = ""
		}
	}
	for d := range 320 {
		for f := range 99 {
			tree[fmt.Sprintf("a/other/d%d/f%d", d, f)] = ""
		}
	}
	for i := range 10500 {
		tree[fmt.Sprintf("g/repo/src/m%d/f%d.txt", i%100, i)] = fmt.Sprintf("content %d\n", i)
	}
	for i := range 6000 {
		tree[fmt.Sprintf("g/assets/a%d/f%d", i%60, i)] = ""
	}
	testutil.WriteTree(t, cfg.Source, tree)
	git := func(args ...string) {
		t.Helper()
		c := exec.Command(gitBin, args...)
		c.Dir = h0path(cfg, "g/repo")
		c.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@example.org", "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	git("init", "-q")
	git("add", ".") // every file a loose object
	h := start(t, cfg)
	h.converge(t)
	loose, _ := filepath.Glob(filepath.Join(cfg.Dest, "g/repo/.git/objects/??/*"))

	t0 := time.Now()
	must(t, os.Rename(h.path("a/shoot"), h.path("b/shoot")))
	h.converge(t)
	t.Logf("30,000-entry folder moved across projects: equal after %v", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	git("gc", "-q", "--prune=now")
	h.converge(t)
	t.Logf("git gc removing %d loose objects: equal after %v", len(loose), time.Since(t0).Round(time.Millisecond))
	if len(loose) < 10000 {
		t.Errorf("only %d loose objects before gc: the test did not test anything", len(loose))
	}
	r := h.status(t)
	if len(r.Dead) > 0 || len(r.Held) > 0 {
		t.Errorf("dead letters %+v, held %+v: want neither", r.Dead, r.Held)
	}
}

func h0path(cfg config.Config, rel string) string { return filepath.Join(cfg.Source, rel) }

// TestRun_SourceEmptiedOneRestored: the source emptied and one file put
// back (a restore begun into a wiped volume) deletes nothing from the
// mirror, while running and across a restart: every project is held.
func TestRun_SourceEmptiedOneRestored(t *testing.T) {
	cfg := testConfig(t)
	tree := testutil.Tree{}
	for i := range 600 {
		tree[fmt.Sprintf("a/d%d/f%d", i%10, i)] = "a"
		tree[fmt.Sprintf("b/d%d/f%d", i%10, i)] = "b"
	}
	testutil.WriteTree(t, cfg.Source, tree)
	h := start(t, cfg)
	h.converge(t)
	before := files(t, cfg.Dest)
	held := func(h *harness) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
			r, err := h.tryStatus()
			if err != nil {
				return err
			}
			got := map[string]bool{}
			for _, x := range r.Held {
				got[x.Project] = true
			}
			if !got["a"] || !got["b"] {
				return fmt.Errorf("held %+v, paused %q: want a and b held", r.Held, r.Paused)
			}
			return nil
		})
	}
	// Both projects vanish at once, as on a wiped or swapped volume. An rm
	// -rf seen file by file may let its first deletions through (up to the
	// brake's floor, into the trash) before the rest are counted: not what
	// this test is about.
	gone := t.TempDir()
	for _, p := range []string{"a", "b"} {
		must(t, os.Rename(h.path(p), filepath.Join(gone, p)))
	}
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"a/d0/f0": "a"})
	held(h)
	time.Sleep(2 * time.Second)
	// The restored folder a/d0 may be a job of its own, checked before the
	// job of a's removal is held: its deletions (59 files) are below the
	// brake's floor, and go to the trash, as any small deletion does.
	// Nothing else may leave.
	let := leftIntoTrash(t, cfg, before)
	for _, p := range let {
		if !strings.HasPrefix(p, "a/d0/") {
			t.Fatalf("%s left the mirror while the emptied projects were held (%d left)", p, len(let))
		}
	}
	before = files(t, cfg.Dest)
	h.stop(t)
	h = launch(t, cfg, zaptest.NewLogger(t, zaptest.Level(testLogLevel())))
	held(h)
	if code, body := httpGet(t, "http://"+h.d.addr+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "held") {
		t.Errorf("/readyz = %d %q, want 503 held", code, body)
	}
	time.Sleep(2 * time.Second)
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Fatalf("mirror changed after a restart:\n%s", d)
	}
	// The rest of the restore arrives: released, equal.
	testutil.WriteTree(t, cfg.Source, tree)
	h.converge(t)
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if r := h.status(t); len(r.Held) > 0 {
			return fmt.Errorf("still held: %+v", r.Held)
		}
		return nil
	})
}

// TestRun_StateFilesystemFull: with the state filesystem full, events are
// not stored: /readyz says why, and once space is back the daemon catches
// up and says ready again.
func TestRun_StateFilesystemFull(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig(t)
	mountTmpfs(t, cfg.StateDir, "300m")
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a": "1"})
	h := start(t, cfg)
	h.converge(t)
	filler := filepath.Join(cfg.StateDir, "filler")
	f, err := os.Create(filler)
	must(t, err)
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break // ENOSPC
		}
	}
	must(t, f.Close())
	for i := range 20 {
		testutil.WriteTree(t, cfg.Source, testutil.Tree{fmt.Sprintf("p/d%d/f", i): "while full"})
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		code, body := httpGet(t, "http://"+h.d.addr+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "full") && !strings.Contains(body, "degraded") {
			return fmt.Errorf("/readyz = %d %q, want 503 saying the store is full or events were lost", code, body)
		}
		return nil
	})
	must(t, os.Remove(filler))
	h.converge(t)
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		if code, body := httpGet(t, "http://"+h.d.addr+"/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d %q after space came back", code, body)
		}
		return nil
	})
}

// TestRun_FullBackupSaysWhy: with the backup full, what an operator reads
// says so in rsync's own words, not only "exit 11": the job's log line,
// the project's last error in status, the dead letter, and `syncer retry`.
func TestRun_FullBackupSaysWhy(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig(t)
	mountTmpfs(t, cfg.Dest, "1m")
	cfg.DirectCopy = false // rsync's own message is the point
	cfg.RetryBackoff = 100 * time.Millisecond
	cfg.RetryMax = 2
	h, logs := startObserved(t, cfg)

	must(t, os.MkdirAll(h.path("p"), 0o755))
	must(t, os.WriteFile(h.path("p/big"), bytes.Repeat([]byte("x"), 3<<20), 0o644))
	const why = "No space left on device"
	var r status.Report
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		if r = h.status(t); len(r.Dead) == 0 {
			return errors.New("nothing dead-lettered yet")
		}
		return nil
	})
	t.Logf("dead letter: %s", r.Dead[0].Error)
	if d := r.Dead[0]; !strings.Contains(d.Error, why) || d.ExitCode != 11 {
		t.Errorf("dead letter: exit %d, %q; want exit 11 saying %q", d.ExitCode, d.Error, why)
	}
	var failed []string
	for _, e := range logs.All() {
		if strings.HasPrefix(e.Message, "job failed") {
			failed = append(failed, e.ContextMap()["error"].(string))
		}
	}
	if len(failed) == 0 || !strings.Contains(failed[len(failed)-1], why) {
		t.Errorf("job failure log lines %q; want rsync's %q", failed, why)
	}
	i := slices.IndexFunc(r.Projects, func(p metrics.Project) bool { return p.Name == "p" })
	if i < 0 || !strings.Contains(r.Projects[i].LastError, why) {
		t.Errorf("status projects %+v; want p's last error saying %q", r.Projects, why)
	}
	var out bytes.Buffer
	status.Print(&out, r)
	if !strings.Contains(out.String(), why) {
		t.Errorf("syncer status does not say %q:\n%s", why, out.String())
	}
	out.Reset()
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{"retry", "--state-dir", cfg.StateDir}, &out, &stderr); code != 0 ||
		!strings.Contains(out.String(), why) || !strings.Contains(out.String(), r.Dead[0].ID) {
		t.Errorf("syncer retry: exit %d, %q %s; want the job listed with %q", code, out.String(), stderr.String(), why)
	}
}
