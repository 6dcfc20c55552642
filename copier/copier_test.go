package copier_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncer/syncer/copier"
	"github.com/syncer/syncer/internal/testutil"
)

// TestCopier_Copy checks that a copied subtree equals its source the way
// the tree diff sees it (names, types, sizes, modes, owners, mtimes,
// symlink targets, contents), odd names and special files included.
func TestCopier_Copy(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree := testutil.Tree{"p/a/f": "1", "p/a/sub/g": "22", "p/link": "-> a/f", "p/dangling": "-> nowhere", "p/empty/": "",
		"p/skip.tmp": "excluded", "p/big": strings.Repeat("x", 3<<20)}
	for _, n := range []string{"new\nline", "-dash", "non-utf8-\xff", strings.Repeat("y", 255)} {
		tree["p/odd/"+n] = n
	}
	testutil.WriteTree(t, src, tree)
	if err := syscall.Mkfifo(filepath.Join(src, "p/fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "p/a/sub"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "p/a/f"), 0o4755); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	if err := os.Chtimes(filepath.Join(src, "p/a/sub/g"), old, old); err != nil {
		t.Fatal(err)
	}
	c := copier.New(copier.Options{Source: src, Dest: dst, Excludes: []string{"*.tmp"}})
	st, err := c.Copy(t.Context(), "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != int64(len(tree))-4 || st.Bytes < 3<<20 { // not: 2 symlinks, 1 directory, 1 excluded
		t.Errorf("stats = %+v", st)
	}
	if d := testutil.DiffTrees(src, dst, "p/skip.tmp"); d != "" {
		t.Fatal(d)
	}
	if _, err := c.Copy(t.Context(), "p", nil); !errors.Is(err, copier.ErrExists) {
		t.Errorf("second Copy() = %v, want ErrExists", err)
	}
}

// TestCopier_Copy_Parents creates missing parents with their source attributes.
func TestCopier_Copy_Parents(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/q/r/f": "1"})
	if err := os.Chmod(filepath.Join(src, "p/q"), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := copier.New(copier.Options{Source: src, Dest: dst}).Copy(t.Context(), "p/q/r", nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dst, "p/q"))
	if err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("parent p/q = %v, %v; want mode 0750", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "p/q/r/f")); err != nil || string(b) != "1" {
		t.Errorf("p/q/r/f = %q, %v", b, err)
	}
}

// TestCopier_CopyNew checks that only large files missing from the backup
// are copied, exactly, without temporary files left behind; that existing
// files are never replaced; and that skipped, excluded and small files and
// subdirectories are left alone.
func TestCopier_CopyNew(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	big := strings.Repeat("b", 2<<20)
	testutil.WriteTree(t, src, testutil.Tree{"p/a/new.mov": big, "p/a/new2.mov": big + "2", "p/a/old.mov": big + "new",
		"p/a/small": "s", "p/a/open.mov": big, "p/a/x.tmp": big, "p/a/sub/deep.mov": big, "p/a/-odd\n name": big})
	testutil.WriteTree(t, dst, testutil.Tree{"p/a/old.mov": "old"})
	c := copier.New(copier.Options{Source: src, Dest: dst, Excludes: []string{"*.tmp"}})
	st, _, err := c.CopyNew(t.Context(), "p/a", 1<<20, []string{"p/a/open.mov"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 3 || st.Bytes != 3*(2<<20)+1 {
		t.Errorf("stats = %+v, want 3 files", st)
	}
	ents, err := os.ReadDir(filepath.Join(dst, "p/a"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, ","), "-odd\n name,new.mov,new2.mov,old.mov"; got != want {
		t.Errorf("backup holds %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "p/a/old.mov")); string(b) != "old" {
		t.Error("an existing file was replaced")
	}
	if d := testutil.DiffTrees(filepath.Join(src, "p/a"), filepath.Join(dst, "p/a"), "small", "open.mov", "x.tmp", "sub", "old.mov"); d != "" {
		t.Error(d)
	}
	// A directory missing from the backup is created, parents included.
	testutil.WriteTree(t, src, testutil.Tree{"q/r/s/clip.mov": big})
	if _, _, err := c.CopyNew(t.Context(), "q/r/s", 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if d := testutil.DiffTrees(filepath.Join(src, "q"), filepath.Join(dst, "q")); d != "" {
		t.Error(d)
	}
}
