package reconcile_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
)

func TestWalk(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(p reconcile.Plan) {
		t.Helper()
		if _, err := r.Sync(t.Context(), p.Scopes, syncer.Hints{}); err != nil {
			t.Fatal(err)
		}
	}
	opts := reconcile.Options{Source: src, Dest: dst}
	testutil.WriteTree(t, src, testutil.Tree{"p/a/f": "1", "p/a/sub/g": "22", "p/top": "333", "q/x": "4", "root-file": "5",
		"p/link": "-> a/f", "empty/": ""})

	p, err := reconcile.Walk(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []syncer.Scope{{Dir: ""}, {Dir: "empty", Recursive: true}, {Dir: "p", Recursive: true}, {Dir: "q", Recursive: true}}
	if d := cmp.Diff(want, p.Scopes); d != "" {
		t.Errorf("cold plan mismatch (-want +got):\n%s", d)
	}
	if p.Files != 5 || p.Bytes != 8 {
		t.Errorf("cold drift = %d files / %d bytes, want 5 / 8", p.Files, p.Bytes)
	}
	apply(p)
	if d := testutil.DiffTrees(src, dst); d != "" {
		t.Fatal(d)
	}

	p, err = reconcile.Walk(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Scopes) != 0 || p.Files != 0 {
		t.Fatalf("plan after a full sync = %v (%d files), want nothing", p.Scopes, p.Files)
	}

	// Offline changes: edit keeping the size, delete, rename a dir, chmod, new project, removed project.
	time.Sleep(10 * time.Millisecond)
	must(t, os.WriteFile(filepath.Join(src, "p/a/f"), []byte("9"), 0o644))
	must(t, os.Remove(filepath.Join(src, "p/top")))
	must(t, os.Rename(filepath.Join(src, "p/a/sub"), filepath.Join(src, "p/a/sub2")))
	must(t, os.Chmod(filepath.Join(src, "q/x"), 0o600))
	must(t, os.RemoveAll(filepath.Join(src, "empty")))
	testutil.WriteTree(t, src, testutil.Tree{"new/n": "n"})
	p, err = reconcile.Walk(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	want = []syncer.Scope{{Dir: ""}, {Dir: "new", Recursive: true}, {Dir: "p"}, {Dir: "p/a"}, {Dir: "p/a/sub2", Recursive: true}, {Dir: "q"}}
	if d := cmp.Diff(want, p.Scopes); d != "" {
		t.Errorf("plan mismatch (-want +got):\n%s", d)
	}
	apply(p)
	if d := testutil.DiffTrees(src, dst); d != "" {
		t.Fatal(d)
	}

	t.Run("ProjectFilter", func(t *testing.T) {
		testutil.WriteTree(t, src, testutil.Tree{"p/only-p": "1", "q/not-q": "2"})
		p, err := reconcile.Walk(t.Context(), reconcile.Options{Source: src, Dest: dst, Projects: []string{"p"}})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]syncer.Scope{{Dir: "p"}}, p.Scopes); d != "" {
			t.Errorf("filtered plan mismatch (-want +got):\n%s", d)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWalk_Partitions(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	tree := testutil.Tree{"small/f": "1", "big/top": "t"}
	for _, d := range []string{"a", "b", "c/deep"} {
		for i := range 5 {
			tree[fmt.Sprintf("big/%s/f%d", d, i)] = "x"
		}
	}
	testutil.WriteTree(t, src, tree)
	p, err := reconcile.Walk(t.Context(), reconcile.Options{Source: src, Dest: dst, MaxFiles: 6})
	if err != nil {
		t.Fatal(err)
	}
	// The roots differ too (two temporary directories): the root's own flat scope.
	want := []syncer.Scope{{Dir: ""}, {Dir: "big"}, {Dir: "big/a", Recursive: true}, {Dir: "big/b", Recursive: true},
		{Dir: "big/c", Recursive: true}, {Dir: "small", Recursive: true}}
	if d := cmp.Diff(want, p.Scopes); d != "" {
		t.Errorf("partitions mismatch (-want +got):\n%s", d)
	}
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	// Disjoint but for the parent's own entries: run them in any order.
	for i := len(p.Scopes) - 1; i >= 0; i-- {
		if _, err := r.Sync(t.Context(), p.Scopes[i:i+1], syncer.Hints{}); err != nil {
			t.Fatal(err)
		}
	}
	if d := testutil.DiffTrees(src, dst); d != "" {
		t.Fatal(d)
	}
}

// TestWalk_Blind plans for a backup it cannot read (a remote one): the root's
// own entries plus every project in partitions, so that rsync compares and a
// project removed from the source is removed from the backup.
func TestWalk_Blind(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	tree := testutil.Tree{"small/f": "1", "big/top": "t", "rootfile": "r"}
	for _, d := range []string{"a", "b"} {
		for i := range 5 {
			tree[fmt.Sprintf("big/%s/f%d", d, i)] = "x"
		}
	}
	testutil.WriteTree(t, src, tree)
	testutil.WriteTree(t, dst, testutil.Tree{"gone/x": "old", "small/stale": "s"})
	p, err := reconcile.Walk(t.Context(), reconcile.Options{Source: src, MaxFiles: 6})
	if err != nil {
		t.Fatal(err)
	}
	want := []syncer.Scope{{Dir: ""}, {Dir: "big"}, {Dir: "big/a", Recursive: true}, {Dir: "big/b", Recursive: true},
		{Dir: "small", Recursive: true}}
	if d := cmp.Diff(want, p.Scopes); d != "" {
		t.Errorf("blind plan mismatch (-want +got):\n%s", d)
	}
	if !p.Blind || p.Files != 12 {
		t.Errorf("Blind %v, Files %d; want true, 12 (every file of the projects)", p.Blind, p.Files)
	}
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Scopes {
		if _, err := r.Sync(t.Context(), []syncer.Scope{s}, syncer.Hints{}); err != nil {
			t.Fatal(err)
		}
	}
	if d := testutil.DiffTrees(src, dst); d != "" {
		t.Fatal(d)
	}
}

// TestWalk_OnScope checks that directories that differ are handed out
// while the walk goes on, each once, naming their files when only regular
// files differ there, and that the plan then lists only the missing
// subtrees.
func TestWalk_OnScope(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/a/f": "new", "p/b/g": "same", "p/new/h": "h", "q/x": "x", "top": "t"})
	testutil.WriteTree(t, dst, testutil.Tree{"p/a/f": "old", "p/b/": "", "q/": "", "q/gone": "g"})
	must(t, exec.Command("cp", "-a", filepath.Join(src, "p/b/g"), filepath.Join(dst, "p/b/g")).Run())
	var mu sync.Mutex
	var got []syncer.Scope
	files := map[string][]string{}
	p, err := reconcile.Walk(t.Context(), reconcile.Options{Source: src, Dest: dst, OnScope: func(s syncer.Scope, fs, _ []string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, s)
		if fs != nil {
			files[s.Dir] = fs
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b syncer.Scope) int { return strings.Compare(a.Dir, b.Dir) })
	// p/b's own time differs (its file was copied in): its parent p lists it.
	if d := cmp.Diff([]syncer.Scope{{Dir: ""}, {Dir: "p"}, {Dir: "p/a"}, {Dir: "q"}}, got); d != "" {
		t.Errorf("streamed scopes mismatch (-want +got):\n%s", d)
	}
	// In p/a a changed file is all that differs, in q a new file and one
	// only the backup has: named. A subdirectory's attributes (p, and the
	// root) cover the directory.
	if d := cmp.Diff(map[string][]string{"p/a": {"p/a/f"}, "q": {"q/gone", "q/x"}}, files); d != "" {
		t.Errorf("named files mismatch (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]syncer.Scope{{Dir: "p/new", Recursive: true}}, p.Scopes); d != "" {
		t.Errorf("plan scopes mismatch (-want +got):\n%s", d)
	}
	if p.Streamed != len(got) {
		t.Errorf("Streamed = %d, want %d", p.Streamed, len(got))
	}
}

// TestWalk_TypeChanged: a symlink or file on the backup where the source
// now has a directory with content (changed while nobody watched) plans
// the parent and the directory whole, so one pass of the plan converges;
// a backup symlink is never read through.
func TestWalk_TypeChanged(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst, outside := t.TempDir(), t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/l/f": "1", "p/l/sub/g": "2", "p/f/h": "3"})
	testutil.WriteTree(t, dst, testutil.Tree{"p/l": "-> " + outside, "p/f": "was a file"})
	testutil.WriteTree(t, outside, testutil.Tree{"f": "1", "sub/g": "2"}) // what a followed link would show as equal
	p, err := reconcile.Walk(t.Context(), reconcile.Options{Source: src, Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	want := []syncer.Scope{{Dir: ""}, {Dir: "p"}, {Dir: "p/f", Recursive: true}, {Dir: "p/l", Recursive: true}} // the root: p's mtime differs
	if d := cmp.Diff(want, p.Scopes); d != "" {
		t.Fatalf("plan mismatch (-want +got):\n%s", d)
	}
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(t.Context(), p.Scopes, syncer.Hints{}); err != nil {
		t.Fatal(err)
	}
	if d := testutil.DiffTrees(src, dst); d != "" {
		t.Fatalf("after one pass: %s", d)
	}
}

// TestWalk_Scopes: a walk limited to scopes compares a flat scope's
// entries only and a recursive scope's whole subtree.
func TestWalk_Scopes(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/a/f": "new", "p/a/deep/g": "new", "p/b/deep/h": "new", "q/x": "new"})
	testutil.WriteTree(t, dst, testutil.Tree{"p/a/f": "old", "p/a/deep/g": "old", "p/b/deep/h": "old", "q/x": "old"})
	p, err := reconcile.Walk(t.Context(), reconcile.Options{Source: src, Dest: dst,
		Scopes: []syncer.Scope{{Dir: "p/a"}, {Dir: "p/b", Recursive: true}}})
	if err != nil {
		t.Fatal(err)
	}
	// p/a/deep is not descended; p/b/deep's own times differ too (an entry of p/b).
	want := []syncer.Scope{{Dir: "p/a"}, {Dir: "p/b"}, {Dir: "p/b/deep"}}
	if d := cmp.Diff(want, p.Scopes); d != "" {
		t.Errorf("scopes mismatch (-want +got):\n%s", d)
	}
}
