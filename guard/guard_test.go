package guard_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/testutil"
)

func TestGuard_Check(t *testing.T) {
	tests := []struct {
		name     string
		src, dst testutil.Tree
		opts     guard.Options
		trip     string // substring of the reason; "" means healthy
	}{
		{"healthy", testutil.Tree{"p/f": "1"}, testutil.Tree{"p/f": "1"}, guard.Options{}, ""},
		{"both empty", nil, nil, guard.Options{}, ""},
		{"empty source, full backup", nil, testutil.Tree{"p/f": "1"}, guard.Options{}, "empty"},
		{"empty source, only trash in backup", nil, testutil.Tree{".trash/2026-01-01/f": "1"}, guard.Options{IgnoreDest: []string{".trash"}}, ""},
		{"marker present", testutil.Tree{".mark": "", "p/f": "1"}, nil, guard.Options{Marker: ".mark"}, ""},
		{"marker missing", testutil.Tree{"p/f": "1"}, nil, guard.Options{Marker: ".mark"}, "marker"},
		{"not a mount point", testutil.Tree{"p/f": "1"}, nil, guard.Options{RequireMount: true}, "mount point"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			testutil.WriteTree(t, src, tt.src)
			testutil.WriteTree(t, dst, tt.dst)
			tt.opts.Source, tt.opts.Dest = src, dst
			err := guard.New(tt.opts).Check()
			switch {
			case tt.trip == "" && err != nil:
				t.Errorf("Check() = %v, want healthy", err)
			case tt.trip != "" && (err == nil || !strings.Contains(err.Error(), tt.trip) || !errors.Is(err, syncer.ErrPaused)):
				t.Errorf("Check() = %v, want a trip (ErrPaused) mentioning %q", err, tt.trip)
			}
		})
	}
	t.Run("source gone", func(t *testing.T) {
		dir := t.TempDir()
		err := guard.New(guard.Options{Source: filepath.Join(dir, "gone"), Dest: dir}).Check()
		if !errors.Is(err, syncer.ErrPaused) {
			t.Errorf("Check() = %v, want ErrPaused", err)
		}
	})
	t.Run("source is a file", func(t *testing.T) {
		dir := t.TempDir()
		f := filepath.Join(dir, "f")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := guard.New(guard.Options{Source: f, Dest: dir}).Check(); !errors.Is(err, syncer.ErrPaused) {
			t.Errorf("Check() = %v, want ErrPaused", err)
		}
	})
}

func TestIsMountPoint(t *testing.T) {
	if ok, err := guard.IsMountPoint("/"); err != nil || !ok {
		t.Errorf("IsMountPoint(/) = %v, %v; want true", ok, err)
	}
	if ok, err := guard.IsMountPoint(t.TempDir()); err != nil || ok {
		t.Errorf("IsMountPoint(tempdir) = %v, %v; want false", ok, err)
	}
	if os.Geteuid() != 0 {
		return
	}
	// A source configured as a symlink to its mount point (/data/prod ->
	// /mnt/vol1) is mounted, and the guard says so.
	dir := t.TempDir()
	mnt, link := filepath.Join(dir, "vol1"), filepath.Join(dir, "prod")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(mnt, syscall.MNT_DETACH)
	if err := os.Symlink(mnt, link); err != nil {
		t.Fatal(err)
	}
	if ok, err := guard.IsMountPoint(link); err != nil || !ok {
		t.Errorf("IsMountPoint(symlink to a mount point) = %v, %v; want true", ok, err)
	}
	if err := guard.New(guard.Options{Source: link, Dest: t.TempDir(), RequireMount: true}).Check(); err != nil {
		t.Errorf("Check() of a symlinked mounted source = %v, want nil", err)
	}
}

// countSyncer counts the runs it is handed.
// TestGate_HoldsRunsWhilePaused checks that no run starts while the source
// is gone, that Paused says why, and that the source coming back resumes
// runs and asks, once, for what was held.
func TestGate_HoldsRunsWhilePaused(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for _, p := range []string{filepath.Join(src, "p"), filepath.Join(dst, "p")} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	resumed := 0
	g := guard.New(guard.Options{Source: src, Dest: dst, OnResume: func() { resumed++ }})
	next := &struct{ runs int }{}
	sync := func() error {
		held, err := guard.Gate{Guard: g}.Admit(t.Context(), []syncer.Scope{{Dir: "p"}}, nil)
		if len(held) == 0 {
			next.runs++
		}
		return err
	}
	if err := sync(); err != nil || next.runs != 1 || g.Paused() != "" {
		t.Fatalf("healthy source: err %v, runs %d, paused %q", err, next.runs, g.Paused())
	}
	if err := os.Remove(filepath.Join(src, "p")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := sync(); !errors.Is(err, syncer.ErrPaused) {
			t.Fatalf("emptied source: err %v, want ErrPaused", err)
		}
	}
	if next.runs != 1 || !strings.Contains(g.Paused(), "is empty but the backup is not") {
		t.Fatalf("emptied source: runs %d, paused %q", next.runs, g.Paused())
	}
	if err := os.Mkdir(filepath.Join(src, "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := sync(); err != nil {
			t.Fatal(err)
		}
	}
	if next.runs != 3 || g.Paused() != "" || resumed != 1 {
		t.Errorf("source back: runs %d, paused %q, resumed %d times (want 3, \"\", 1)", next.runs, g.Paused(), resumed)
	}
}

// TestGuard_Identity checks that the source root recorded at the first
// healthy check is required from then on, by the recorded file across
// guards (restarts), until Accept records another.
func TestGuard_Identity(t *testing.T) {
	base, dst := t.TempDir(), t.TempDir()
	src := filepath.Join(base, "prod")
	testutil.WriteTree(t, src, testutil.Tree{"p/f": "1"})
	testutil.WriteTree(t, dst, testutil.Tree{"p/f": "1"})
	file := filepath.Join(t.TempDir(), "state", "source.json")
	opts := guard.Options{Source: src, Dest: dst, IdentityFile: file}
	g := guard.New(opts)
	if err := g.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("identity not recorded: %v", err)
	}
	// Another directory at the same path, not empty (a stray file on a bare
	// mount point): refused, by this guard and by a new one.
	must(t, os.Rename(src, src+".away"))
	testutil.WriteTree(t, src, testutil.Tree{"stray": "x"})
	for i, g := range []*guard.Guard{g, guard.New(opts)} {
		err := g.Check()
		if !errors.Is(err, syncer.ErrPaused) || !strings.Contains(err.Error(), "not the filesystem recorded") ||
			!strings.Contains(err.Error(), "--accept-source") {
			t.Errorf("guard %d, replaced root: %v, want paused with how to accept", i, err)
		}
	}
	// The original back: healthy again.
	must(t, os.RemoveAll(src))
	must(t, os.Rename(src+".away", src))
	if err := g.Check(); err != nil {
		t.Errorf("original root back: %v", err)
	}
	// A deliberate new volume, accepted: healthy, and recorded for the next start.
	must(t, os.Rename(src, src+".old"))
	testutil.WriteTree(t, src, testutil.Tree{"p/f": "1"})
	if err := g.Check(); err == nil {
		t.Fatal("new root accepted without Accept")
	}
	if _, err := g.Accept(); err != nil {
		t.Fatal(err)
	}
	if err := g.Check(); err != nil {
		t.Errorf("after Accept: %v", err)
	}
	if err := guard.New(opts).Check(); err != nil {
		t.Errorf("after Accept, a new guard: %v", err)
	}
	// Another source in the config is another tree, recorded anew.
	other := filepath.Join(base, "other")
	testutil.WriteTree(t, other, testutil.Tree{"p/f": "1"})
	moved := opts
	moved.Source = other
	if err := guard.New(moved).Check(); err != nil {
		t.Errorf("a new source path in the config: %v", err)
	}
	if err := guard.New(moved).Check(); err != nil {
		t.Errorf("the new source path, next start: %v", err)
	}
}

// TestGuard_IdentityRemount checks, as root, that a filesystem unmounted
// and mounted again (on another loop device) is the same source, and that
// another filesystem with the same files is not.
func TestGuard_IdentityRemount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	base := t.TempDir()
	src, dst := filepath.Join(base, "prod"), t.TempDir()
	must(t, os.Mkdir(src, 0o755))
	imgA, imgB := testutil.Ext4Image(t, base, "a"), testutil.Ext4Image(t, base, "b")
	testutil.Mount(t, imgA, src)
	testutil.WriteTree(t, src, testutil.Tree{"p/f": "1"})
	testutil.WriteTree(t, dst, testutil.Tree{"p/f": "1"})
	opts := guard.Options{Source: src, Dest: dst, IdentityFile: filepath.Join(base, "source.json")}
	if err := guard.New(opts).Check(); err != nil {
		t.Fatal(err)
	}
	testutil.Unmount(t, src, false)
	// The bare mount point, with a stray file: another filesystem.
	testutil.WriteTree(t, src, testutil.Tree{"stray": "x"})
	if err := guard.New(opts).Check(); !errors.Is(err, syncer.ErrPaused) {
		t.Errorf("bare mount point: %v, want paused", err)
	}
	must(t, os.Remove(filepath.Join(src, "stray")))
	testutil.Mount(t, imgB, src)
	testutil.WriteTree(t, src, testutil.Tree{"p/f": "1"})
	if err := guard.New(opts).Check(); !errors.Is(err, syncer.ErrPaused) {
		t.Errorf("another filesystem with the same files: %v, want paused", err)
	}
	testutil.Unmount(t, src, false)
	holdLoop := testutil.Ext4Image(t, base, "hold") // takes the first free loop device, so that a comes back on another
	testutil.Mount(t, holdLoop, filepath.Join(base, "hold.mnt"))
	testutil.Mount(t, imgA, src)
	if err := guard.New(opts).Check(); err != nil {
		t.Errorf("the same filesystem mounted again: %v", err)
	}
}

// TestIdentify_Mounts checks, as root, that the mount table Identify
// keeps is read again after every mount and unmount: a filesystem mounted
// on the source root, or taken away, shows in the next identity.
func TestIdentify_Mounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	for i := range 3 {
		before, err := guard.Identify(dir)
		if err != nil || before.IsMount {
			t.Fatalf("round %d, not mounted: %+v, %v", i, before, err)
		}
		if again, _ := guard.Identify(dir); again != before {
			t.Fatalf("round %d: the same tree identified twice differs: %+v, %+v", i, before, again)
		}
		must(t, syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"))
		on, err := guard.Identify(dir)
		if err != nil || !on.IsMount || on.FSName != "tmpfs" || on.Mount != dir {
			syscall.Unmount(dir, 0)
			t.Fatalf("round %d, tmpfs mounted there: %+v, %v", i, on, err)
		}
		must(t, syscall.Unmount(dir, 0))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBrake: a deletion split over runs counts as one, a held project
// holds every deleting run in it, the hold ends when the files come back,
// and it survives a restart.
func TestBrake(t *testing.T) {
	deleting := map[syncer.Scope]int64{}
	count := func(_ context.Context, scopes []syncer.Scope, _ map[string][]string) (map[string]int64, error) {
		out := map[string]int64{}
		for _, s := range scopes {
			out[s.Project()] += deleting[s]
		}
		return out, nil
	}
	var gone int64 // what the runs let through deleted
	entries := func(context.Context, string) (int64, error) { return 2000 - gone, nil }
	file := filepath.Join(t.TempDir(), "held.json")
	b := guard.NewBrake(guard.BrakeOptions{Count: count, Entries: entries, StateFile: file})
	check := func(b *guard.Brake, s syncer.Scope) bool {
		t.Helper()
		held, _, err := b.Check(t.Context(), []syncer.Scope{s}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(held) > 0
	}
	// Nine directories of 150 each: 1,350 of 2,000 entries, one run each.
	heldAt := -1
	for i := range 9 {
		s := syncer.Scope{Dir: fmt.Sprintf("p/d%d", i)}
		deleting[s] = 150
		if check(b, s) {
			heldAt = i
			break
		}
		gone += 150
	}
	if heldAt < 3 || heldAt > 7 {
		t.Fatalf("held at run %d, want once over half the project", heldAt)
	}
	small := syncer.Scope{Dir: "p/x"}
	deleting[small] = 1
	if !check(b, small) {
		t.Error("a one-entry deletion in a held project went through")
	}
	if check(b, syncer.Scope{Dir: "q/y"}) {
		t.Error("another project held")
	}
	// Restarted: still held.
	b2 := guard.NewBrake(guard.BrakeOptions{Count: count, Entries: entries, StateFile: file})
	if len(b2.Held()) != 1 || !check(b2, small) {
		t.Fatalf("after a restart: held %+v", b2.Held())
	}
	// The files come back: nothing to delete, released.
	clear(deleting)
	if check(b2, syncer.Scope{Dir: "p/new"}) || len(b2.Held()) != 0 {
		t.Errorf("files back: held %+v, want released", b2.Held())
	}
}
