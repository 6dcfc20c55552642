package watcher

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/testutil"
)

// readFor collects the fan's events below the root for d.
func readFor(t *testing.T, f *fan, d time.Duration) []fanEvent {
	t.Helper()
	var out []fanEvent
	buf := make([]byte, 64<<10)
	must(t, f.file.SetReadDeadline(time.Now().Add(d)))
	for {
		evs, err := f.read(buf)
		if err != nil {
			return out // the deadline
		}
		out = append(out, evs...)
	}
}

// TestFan_IgnoresOutside checks that a directory outside the root, once
// seen, gets an ignore mark (its writers cost the reader nothing more),
// and that a directory moved from outside into the root drops the marks:
// what is then written in it is reported.
func TestFan_IgnoresOutside(t *testing.T) {
	if err := CheckFanotify(t.TempDir()); err != nil {
		t.Skip(err)
	}
	// A filesystem of its own: no other writer's events.
	base := t.TempDir()
	if err := syscall.Mount("tmpfs", base, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(base, syscall.MNT_DETACH) })
	root, other := filepath.Join(base, "root"), filepath.Join(base, "other")
	testutil.WriteTree(t, root, testutil.Tree{"p/": ""})
	testutil.WriteTree(t, other, testutil.Tree{"d/": ""})
	f, err := openFan(root)
	must(t, err)
	defer f.Close()

	must(t, os.WriteFile(filepath.Join(other, "d", "a"), []byte("1"), 0o644))
	readFor(t, f, 200*time.Millisecond)
	if f.ignored != 1 {
		t.Fatalf("%d ignore marks after a write outside the root, want 1 (on its directory)", f.ignored)
	}
	n := f.events
	must(t, os.WriteFile(filepath.Join(other, "d", "b"), []byte("2"), 0o644))
	readFor(t, f, 200*time.Millisecond)
	if f.events != n {
		t.Errorf("%d events came from the ignored directory, want none", f.events-n)
	}

	// Moved in: the rename is reported and the marks go. (What is written
	// in it before the rename is read is the moved-in directory's
	// recursive sync's: the watcher reports it as a new subtree.)
	must(t, os.Rename(filepath.Join(other, "d"), filepath.Join(root, "p", "d")))
	seen := map[string]bool{}
	for _, ev := range readFor(t, f, 300*time.Millisecond) {
		seen[ev.rel] = true
	}
	if !seen["p/d"] {
		t.Fatalf("after the move in: events %v, want p/d's rename", seen)
	}
	must(t, os.WriteFile(filepath.Join(root, "p", "d", "c"), []byte("3"), 0o644))
	clear(seen)
	for _, ev := range readFor(t, f, 300*time.Millisecond) {
		seen[ev.rel] = true
	}
	if !seen["p/d/c"] {
		t.Errorf("a write in the directory moved in: events %v, want p/d/c", seen)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
