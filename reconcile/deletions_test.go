package reconcile_test

import (
	"testing"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
)

// TestDeletions checks the count against what the real rsync then deletes,
// for flat and recursive scopes, type changes, excluded names and the trash.
func TestDeletions(t *testing.T) {
	testutil.RequireRsync(t)
	for _, tt := range []struct {
		scope syncer.Scope
		want  int64
	}{
		{syncer.Scope{Dir: "p"}, 9},                   // gone/ with 3 files, t/ (now a file) with 2, vanished/ with 1
		{syncer.Scope{Dir: "p", Recursive: true}, 10}, // and a/old
		{syncer.Scope{Dir: "p/a"}, 1},
		{syncer.Scope{Dir: "p/vanished"}, 0}, // no source directory: its parent's run deletes it
		{syncer.Scope{Dir: "q", Recursive: true}, 0},
	} {
		src, dst := t.TempDir(), t.TempDir()
		testutil.WriteTree(t, src, testutil.Tree{"p/keep": "1", "p/a/x": "2", "p/t": "now a file", "q/y": "3"})
		testutil.WriteTree(t, dst, testutil.Tree{"p/keep": "1", "p/a/x": "2", "p/a/old": "o", "p/a/skip.tmp": "excluded",
			"p/gone/1": "", "p/gone/2": "", "p/gone/3": "", "p/t/u": "", "p/t/v": "", "p/vanished/w": "", "q/y": "3", ".trash/z": ""})
		opts := reconcile.Options{Source: src, Dest: dst, Excludes: syncer.MustExcludes("*.tmp"), IgnoreDest: []string{".trash"}}
		got, err := reconcile.Deletions(t.Context(), opts, []syncer.Scope{tt.scope}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got[tt.scope.Project()] != tt.want {
			t.Errorf("%s: %v, want %d", tt.scope, got, tt.want)
		}
		r, err := rsync.New(rsync.Options{Source: src, Dest: dst, Excludes: opts.Excludes, Trash: ".trash"})
		if err != nil {
			t.Fatal(err)
		}
		st, err := r.Sync(t.Context(), []syncer.Scope{tt.scope}, syncer.Hints{})
		if err != nil {
			t.Fatal(err)
		}
		// rsync does not count a directory it replaces with a file (t).
		if st.Deleted != tt.want && !(tt.scope.Dir == "p" && st.Deleted == tt.want-1) {
			t.Errorf("%s: rsync deleted %d, counted %d", tt.scope, st.Deleted, tt.want)
		}
	}
	dst := t.TempDir()
	testutil.WriteTree(t, dst, testutil.Tree{"p/a/x": "", "p/b/": "", "p/c": "", ".trash/z": ""})
	if n, err := reconcile.Entries(t.Context(), reconcile.Options{Dest: dst, IgnoreDest: []string{".trash"}}, "p"); err != nil || n != 4 {
		t.Errorf("Entries(p) = %d, %v, want 4", n, err)
	}
	if n, err := reconcile.Entries(t.Context(), reconcile.Options{Dest: dst, IgnoreDest: []string{".trash"}}, ""); err != nil || n != 5 {
		t.Errorf("Entries(root) = %d, %v, want 5 (the trash left out)", n, err)
	}
}

// TestDeletions_Root: a sync of the root deletes whole projects, each
// counted for itself.
func TestDeletions_Root(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"a/keep": "1"})
	testutil.WriteTree(t, dst, testutil.Tree{"a/keep": "1", "a/gone": "2", "b/x/1": "", "b/x/2": "", "top": ""})
	opts := reconcile.Options{Source: src, Dest: dst}
	got, err := reconcile.Deletions(t.Context(), opts, []syncer.Scope{{Dir: ""}}, nil)
	if err != nil || len(got) != 2 || got["b"] != 4 || got["top"] != 1 {
		t.Errorf("flat root: %v, %v; want b 4, top 1", got, err)
	}
	got, err = reconcile.Deletions(t.Context(), opts, []syncer.Scope{{Dir: "", Recursive: true}}, nil)
	if err != nil || got["a"] != 1 || got["b"] != 4 {
		t.Errorf("recursive root: %v, %v; want a 1 too", got, err)
	}
}

// TestDeletions_Named: a scope whose sync looks only at named files counts
// the deletions among them alone: a named file the source lost, a named
// file the backup has as a directory (with what is in it); not the
// backup-only entries it does not name, nor an excluded name.
func TestDeletions_Named(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/keep": "1", "p/new": "2", "p/t": "a file", "p/e.tmp": ""})
	testutil.WriteTree(t, dst, testutil.Tree{"p/keep": "1", "p/gone": "", "p/t/u": "", "p/t/v/w": "",
		"p/other": "", "p/more/x": "", "p/e.tmp/y": ""})
	opts := reconcile.Options{Source: src, Dest: dst, Excludes: syncer.MustExcludes("*.tmp")}
	files := map[string][]string{"p": {"p/keep", "p/new", "p/gone", "p/t", "p/e.tmp", "q/elsewhere"}}
	got, err := reconcile.Deletions(t.Context(), opts, []syncer.Scope{{Dir: "p"}}, files)
	if err != nil || got["p"] != 5 { // gone; t with u, v and w
		t.Errorf("named: %v, %v; want p 5", got, err)
	}
	whole, err := reconcile.Deletions(t.Context(), opts, []syncer.Scope{{Dir: "p"}}, nil)
	if err != nil || whole["p"] != 8 { // and other, more, more/x
		t.Errorf("whole: %v, %v; want p 8", whole, err)
	}
	// Files name only non-recursive scopes: a recursive one is counted whole.
	rec, err := reconcile.Deletions(t.Context(), opts, []syncer.Scope{{Dir: "p", Recursive: true}}, files)
	if err != nil || rec["p"] != 8 {
		t.Errorf("recursive: %v, %v; want p 8", rec, err)
	}
	// No source directory: its parent's run deletes it.
	if got, err := reconcile.Deletions(t.Context(), opts, []syncer.Scope{{Dir: "p/more"}}, map[string][]string{"p/more": {"p/more/x"}}); err != nil || len(got) != 0 {
		t.Errorf("source directory gone: %v, %v; want nothing", got, err)
	}
}
