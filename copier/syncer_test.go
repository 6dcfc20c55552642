package copier_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/copier"
	"github.com/syncer/syncer/internal/testutil"
)

// fallback records the scopes handed to it: a fake at the seam where rsync
// would run.
type fallback struct{ got []syncer.Scope }

func (f *fallback) Sync(_ context.Context, scopes []syncer.Scope, _ syncer.Hints) (syncer.Stats, error) {
	f.got = append(f.got, scopes...)
	return syncer.Stats{}, nil
}

// TestSyncer_Sync: the copier does what it can, and only the rest reaches
// the fallback; a backup directory replaced by a symlink is moved into the
// trash and left to the fallback to create, never written through.
func TestSyncer_Sync(t *testing.T) {
	src, dst, outside := t.TempDir(), t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/old/f": "1", "p/del/f": "1", "p/link/f": "1"})
	testutil.WriteTree(t, dst, testutil.Tree{"p/old/f": "1", "p/del/f": "1", "p/del/gone": "x"})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(outside, filepath.Join(dst, "p/link")))
	testutil.WriteTree(t, src, testutil.Tree{"p/new/a/b": "2", "p/old/g": "3"})
	before := testutil.Fingerprint(t, outside)

	fb := &fallback{}
	s := copier.Syncer{Copier: copier.New(copier.Options{Source: src, Dest: dst, Trash: ".trash"}), Fallback: fb}
	scopes := []syncer.Scope{{Dir: "p/new", Recursive: true}, {Dir: "p/old"}, {Dir: "p/del"}, {Dir: "p/link"}}
	if _, err := s.Sync(t.Context(), scopes, syncer.Hints{}); err != nil {
		t.Fatal(err)
	}
	want := []syncer.Scope{{Dir: "p/link"}}
	if !slices.Equal(fb.got, want) {
		t.Errorf("fallback got %v, want %v (the directory the planted symlink stood for; the deletion is the copier's)", fb.got, want)
	}
	if _, err := os.Stat(filepath.Join(dst, "p/del/gone")); err == nil {
		t.Error("p/del/gone not deleted")
	}
	for _, p := range []string{"p/new/a/b", "p/old/g"} {
		if b, err := os.ReadFile(filepath.Join(dst, p)); err != nil || len(b) != 1 {
			t.Errorf("%s not copied directly: %v", p, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dst, "p/link")); err == nil {
		t.Errorf("the planted symlink is still in place (%v), want it moved into the trash", fi.Mode())
	}
	if now := testutil.Fingerprint(t, outside); now != before {
		t.Errorf("the directory the symlink pointed at changed:\n%s", now)
	}
}
