package reconcile_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/index"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
)

// TestWalk_Trusted: a directory unchanged on both sides since a compare
// found it equal has its backup entries not read; every change to the
// source, and every change to a backup directory's entries, is still
// found; a backup file changed in place is found by a deep walk only.
func TestWalk_Trusted(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/a/f1": "1", "p/a/f2": "22", "p/a/sub/h": "333", "p/b/g": "4", "q/x": "55",
		"p/c/l": "-> ../a/f1", "p/c/m": "6"})
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "", Recursive: true}}, syncer.Hints{}); err != nil {
		t.Fatal(err)
	}
	ix, err := index.Open(filepath.Join(t.TempDir(), "index.db"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	opts := reconcile.Options{Source: src, Dest: dst, Index: ix}
	walk := func(deep bool) reconcile.Plan {
		t.Helper()
		// Changes older than a clock tick: what a walk records as equal.
		time.Sleep(2 * index.Margin)
		o := opts
		o.Deep = deep
		p, err := reconcile.Walk(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Syncs record what they synced, as the workers' do.
	rec := index.Syncer{Recorder: &index.Recorder{Index: ix, Source: src, Dest: dst}, Next: r}
	fix := func(p reconcile.Plan) {
		t.Helper()
		if _, err := rec.Sync(t.Context(), p.Scopes, syncer.Hints{}); err != nil {
			t.Fatal(err)
		}
		if d := testutil.DiffTrees(src, dst); d != "" {
			t.Fatal(d)
		}
	}
	// "", p, p/a, p/a/sub, p/b, q; not p/c, which holds a symlink (no
	// record: read every time).
	const trusted = 6
	if p := walk(false); len(p.Scopes) != 0 || p.Trusted != 0 {
		t.Fatalf("first walk: %v, %d trusted; want nothing to do, nothing trusted (nothing recorded yet)", p.Scopes, p.Trusted)
	}
	base := walk(false)
	if len(base.Scopes) != 0 || base.Trusted != trusted {
		t.Fatalf("second walk: %v, %d trusted; want nothing to do, %d trusted", base.Scopes, base.Trusted, trusted)
	}
	write := func(root, rel, data string) {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(root, rel), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(data); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for _, c := range []struct {
		name   string
		change func()
		want   syncer.Scope
		// The backup directory unchanged, its entries are the index's
		// records: not read (counted as trusted).
		fromIndex bool
	}{
		{"source file rewritten in place", func() { write(src, "p/a/f2", "xx") }, syncer.Scope{Dir: "p/a"}, true},
		{"source file deleted", func() { rm(t, src, "p/b/g") }, syncer.Scope{Dir: "p/b"}, true},
		{"source symlink deleted", func() { rm(t, src, "p/c/l") }, syncer.Scope{Dir: "p/c"}, true},
		{"source file added", func() { testutil.WriteTree(t, src, testutil.Tree{"p/a/new": "n"}) }, syncer.Scope{Dir: "p/a"}, true},
		{"source subdirectory's mode", func() { chmod(t, src, "p/a/sub", 0o700) }, syncer.Scope{Dir: "p/a/sub"}, true},
		{"backup file deleted", func() { rm(t, dst, "q/x") }, syncer.Scope{Dir: "q"}, false},
		{"backup file added", func() { testutil.WriteTree(t, dst, testutil.Tree{"p/a/sub/planted": "x"}) }, syncer.Scope{Dir: "p/a/sub"}, false},
		{"backup directory replaced by a symlink", func() {
			rm(t, dst, "p/b")
			if err := os.Symlink("/etc", filepath.Join(dst, "p/b")); err != nil {
				t.Fatal(err)
			}
		}, syncer.Scope{Dir: "p"}, false},
		{"source directory renamed", func() { must(t, os.Rename(filepath.Join(src, "p/b"), filepath.Join(src, "p/b2"))) }, syncer.Scope{Dir: "p"}, false},
		{"source directory removed", func() { rm(t, src, "p/a/sub") }, syncer.Scope{Dir: "p/a"}, false},
	} {
		c.change()
		p := walk(false)
		if !hasScope(p.Scopes, c.want) {
			t.Fatalf("%s: plan %v lacks %v", c.name, p.Scopes, c.want)
		}
		if c.fromIndex && p.Trusted != base.Trusted {
			t.Errorf("%s: %d directories' backup entries not read, want %d (the changed one's from the index)", c.name, p.Trusted, base.Trusted)
		}
		fix(p)
		walk(false) // records what the fix made equal
		if base = walk(false); len(base.Scopes) != 0 || base.Trusted < trusted-1 {
			t.Fatalf("%s, fixed: %v, %d trusted; want nothing to do, %d trusted", c.name, base.Scopes, base.Trusted, trusted)
		}
	}

	// What a trusted walk does not read: a backup file rewritten in place
	// (same size, its mtime put back). A deep walk finds it.
	fi, err := os.Stat(filepath.Join(dst, "p/a/f1"))
	if err != nil {
		t.Fatal(err)
	}
	write(dst, "p/a/f1", "9")
	if err := os.Chmod(filepath.Join(dst, "p/a/f1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dst, "p/a/f1"), fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if p := walk(false); len(p.Scopes) != 0 {
		t.Fatalf("trusted walk after a backup file's change in place: %v, want nothing (it does not read that file)", p.Scopes)
	}
	if p := walk(true); !hasScope(p.Scopes, syncer.Scope{Dir: "p/a"}) || p.Trusted != 0 {
		t.Fatalf("deep walk: %v, %d trusted; want p/a, nothing trusted", p.Scopes, p.Trusted)
	}
}

func hasScope(ss []syncer.Scope, s syncer.Scope) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func rm(t *testing.T, root, rel string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, root, rel string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(filepath.Join(root, rel), mode); err != nil {
		t.Fatal(err)
	}
}

// TestSyncer_Listed: a sync of a whole directory says whether the index's
// records then list its backup entries (index.Clean.Listed), and the walk
// takes the backup's entries from them only when they do: a subdirectory
// the sync made without a record must still be read, or its removal from
// the source would never reach the backup.
func TestSyncer_Listed(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/a/f1": "1"})
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst})
	must(t, err)
	_, err = r.Sync(t.Context(), []syncer.Scope{{Dir: "", Recursive: true}}, syncer.Hints{})
	must(t, err)
	ix, err := index.Open(filepath.Join(t.TempDir(), "index.db"), "", nil)
	must(t, err)
	t.Cleanup(func() { ix.Close() })
	walk := func() reconcile.Plan {
		t.Helper()
		time.Sleep(2 * index.Margin) // changes older than a clock tick
		p, err := reconcile.Walk(t.Context(), reconcile.Options{Source: src, Dest: dst, Index: ix})
		must(t, err)
		return p
	}
	rec := index.Syncer{Recorder: &index.Recorder{Index: ix, Source: src, Dest: dst}, Next: r}
	syncFlat := func(dir string) {
		t.Helper()
		time.Sleep(2 * index.Margin)
		_, err := rec.Sync(t.Context(), []syncer.Scope{{Dir: dir}}, syncer.Hints{})
		must(t, err)
	}
	walk()
	if p := walk(); len(p.Scopes) != 0 || p.Trusted != 3 {
		t.Fatalf("synced tree: %v, %d trusted; want nothing to do, 3 trusted", p.Scopes, p.Trusted)
	}
	// A new file synced with its directory: listed by the records, so a
	// change of it is found without reading the backup.
	testutil.WriteTree(t, src, testutil.Tree{"p/a/f2": "2"})
	syncFlat("p/a")
	must(t, os.WriteFile(filepath.Join(src, "p/a/f2"), []byte("two"), 0o644))
	if p := walk(); !hasScope(p.Scopes, syncer.Scope{Dir: "p/a"}) || p.Trusted != 3 {
		t.Fatalf("file changed after a sync of its directory: %v, %d trusted; want p/a from the index, 3 trusted", p.Scopes, p.Trusted)
	}
	syncFlat("p/a")
	// A new subdirectory synced with its parent alone has no record: the
	// parent's backup entries are read, and its removal is found, even
	// with the parent's mtime put back (nothing else shows it).
	must(t, os.Mkdir(filepath.Join(src, "p/a/s"), 0o755))
	syncFlat("p/a")
	fi, err := os.Stat(filepath.Join(dst, "p/a"))
	must(t, err)
	if _, err := os.Stat(filepath.Join(dst, "p/a/s")); err != nil {
		t.Fatal(err)
	}
	must(t, os.Remove(filepath.Join(src, "p/a/s")))
	must(t, os.Chtimes(filepath.Join(src, "p/a"), fi.ModTime(), fi.ModTime()))
	if p := walk(); !hasScope(p.Scopes, syncer.Scope{Dir: "p/a"}) {
		t.Fatalf("subdirectory removed from the source: %v, want p/a", p.Scopes)
	}
}
