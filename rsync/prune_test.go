package rsync_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/rsync"
)

// TestRunner_PruneTrash: days past the retention go, others and names that
// are not days stay; a day planted as a symlink is removed as a link, and a
// trash that is itself a symlink is not followed.
func TestRunner_PruneTrash(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst, outside := t.TempDir(), t.TempDir(), t.TempDir()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.Local)
	testutil.WriteTree(t, outside, testutil.Tree{"2026-01-01/keep": "k", "f": "x"})
	testutil.WriteTree(t, dst, testutil.Tree{
		".trash/2026-11-01/a": "old", ".trash/2026-11-30/b": "recent", ".trash/notes/c": "not a day",
		".trash/2026-10-01": "-> " + outside,
	})
	before := testutil.Fingerprint(t, outside)
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst, Trash: ".trash"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.PruneTrash(t.Context(), 7*24*time.Hour, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"2026-10-01", "2026-11-01"}; !slices.Equal(got, want) {
		t.Errorf("pruned %v, want %v", got, want)
	}
	for p, want := range map[string]bool{"2026-11-01": false, "2026-10-01": false, "2026-11-30": true, "notes": true} {
		if _, err := os.Lstat(filepath.Join(dst, ".trash", p)); (err == nil) != want {
			t.Errorf(".trash/%s: present %v, want %v", p, err == nil, want)
		}
	}
	// The trash replaced by a symlink to a directory holding day names.
	must(t, os.RemoveAll(filepath.Join(dst, ".trash")))
	must(t, os.Symlink(outside, filepath.Join(dst, ".trash")))
	if got, err := r.PruneTrash(t.Context(), 7*24*time.Hour, 0, now); err != nil || len(got) > 0 {
		t.Errorf("trash as a symlink: pruned %v (%v), want nothing", got, err)
	}
	if now := testutil.Fingerprint(t, outside); now != before {
		t.Errorf("pruning reached outside the backup:\n%s", now)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunner_PruneTrashBytes: past the size cap the oldest runs' versions
// go first, with their manifests, until the rest fits.
func TestRunner_PruneTrashBytes(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	big := string(make([]byte, 100))
	testutil.WriteTree(t, dst, testutil.Tree{
		".trash/2026-12-02T100000.000000000Z/p/a": big, ".trash/2026-12-02T100000.000000000Z.versions": "o\t100\t0\t33188\t\"p/a\"\n",
		".trash/2026-12-02T110000.000000000Z/p/a": big,
		".trash/2026-12-02T113000.000000000Z/p/b": big,
	})
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst, Trash: ".trash"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.PruneTrash(t.Context(), 7*24*time.Hour, 250, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"2026-12-02T100000.000000000Z"}; !slices.Equal(got, want) {
		t.Errorf("pruned %v, want %v", got, want)
	}
	for p, want := range map[string]bool{"2026-12-02T100000.000000000Z": false, "2026-12-02T100000.000000000Z.versions": false,
		"2026-12-02T110000.000000000Z": true, "2026-12-02T113000.000000000Z": true} {
		if _, err := os.Lstat(filepath.Join(dst, ".trash", p)); (err == nil) != want {
			t.Errorf(".trash/%s: present %v, want %v", p, err == nil, want)
		}
	}
}
