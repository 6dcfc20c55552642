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
