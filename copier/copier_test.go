package copier_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/copier"
	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/versions"
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
	c := copier.New(copier.Options{Source: src, Dest: dst, Excludes: syncer.MustExcludes("*.tmp")})
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

// TestCopier_Copy_KeepsOuterTimes: the backup directory in which Copy
// makes a new directory (the scope's own, or its first missing parent's)
// keeps the times of its source, as if nothing had been made in it: its
// own sync may have run before, and none follows.
func TestCopier_Copy_KeepsOuterTimes(t *testing.T) {
	for _, scope := range []string{"p/new", "p/q/r"} {
		t.Run(scope, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			testutil.WriteTree(t, src, testutil.Tree{"p/new/f": "1", "p/q/r/f": "2"})
			testutil.WriteTree(t, dst, testutil.Tree{"p/": ""})
			old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
			for _, d := range []string{"p/q", "p"} {
				if err := os.Chtimes(filepath.Join(src, d), old, old); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chtimes(filepath.Join(dst, "p"), old, old); err != nil {
				t.Fatal(err)
			}
			if _, err := copier.New(copier.Options{Source: src, Dest: dst}).Copy(t.Context(), scope, nil); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{"p", syncer.Parent(scope)} {
				if fi, err := os.Stat(filepath.Join(dst, d)); err != nil || !fi.ModTime().Equal(old) {
					t.Errorf("backup %s = %v, %v; want its source mtime %v", d, fi.ModTime(), err, old)
				}
			}
		})
	}
}

// TestCopier_SyncFlat checks the direct path for a directory whose files
// changed: new and changed files arrive exactly (attributes too), a
// replaced file goes to the trash, no temporary file is left, skipped and
// excluded files and subdirectories are left alone; that a deletion (moved
// whole into the trash), a symlink new or changed, a new subdirectory and
// a subdirectory's attributes are made too; and that what is left (a
// FIFO, a deletion with no trash or under a cap) is rsync's, reported not
// done.
func TestCopier_SyncFlat(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	big := strings.Repeat("b", 2<<20)
	testutil.WriteTree(t, src, testutil.Tree{"p/a/new.mov": big, "p/a/changed": "new content", "p/a/same": "s",
		"p/a/chmod": "c", "p/a/open.mov": "o", "p/a/x.tmp": "t", "p/a/sub/deep": "d", "p/a/-odd\n name": "odd"})
	testutil.WriteTree(t, dst, testutil.Tree{"p/a/changed": "old", "p/a/sub/": ""})
	for _, f := range []string{"same", "chmod"} {
		if err := exec.Command("cp", "-a", filepath.Join(src, "p/a", f), filepath.Join(dst, "p/a", f)).Run(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "p/a/chmod"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub, dir := filepath.Join(src, "p/a/sub"), filepath.Join(src, "p/a")
	for _, d := range []string{sub, dir, filepath.Join(src, "p")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		mt := fi.ModTime()
		if err := os.Chtimes(filepath.Join(dst, strings.TrimPrefix(d, src)), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	day := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	c := copier.New(copier.Options{Source: src, Dest: dst, Excludes: syncer.MustExcludes("*.tmp"), Trash: ".trash", Now: func() time.Time { return day }})
	st, open, done, err := c.SyncFlat(t.Context(), syncer.Scope{Dir: "p/a"}, nil, []string{"p/a/open.mov"}, nil)
	if err != nil || !done || len(open) != 0 {
		t.Fatalf("SyncFlat() = %+v, %v, done=%v, %v; want done", st, open, done, err)
	}
	if st.Files != 3 {
		t.Errorf("stats = %+v, want 3 files copied (new.mov, changed, the odd name)", st)
	}
	if d := testutil.DiffTrees(src, dst, ".trash", "p/a/open.mov", "p/a/x.tmp", "p/a/sub/deep"); d != "" {
		t.Error(d)
	}
	if b, err := os.ReadFile(filepath.Join(dst, ".trash/2026-11-22T120000.000000000Z/p/a/changed")); string(b) != "old" {
		t.Errorf("the replaced file in the trash = %q, %v; want the old content", b, err)
	}
	for _, f := range []string{"open.mov", "x.tmp", "sub/deep"} {
		if _, err := os.Lstat(filepath.Join(dst, "p/a", f)); err == nil {
			t.Errorf("%s was copied", f)
		}
	}

	// Deletions (a file, a directory), symlinks (new, retargeted), a new
	// subdirectory with content, a subdirectory's mode: all done here.
	testutil.WriteTree(t, dst, testutil.Tree{"p/a/gone": "g", "p/a/gonedir/x/y": "z", "p/a/old": "-> before"})
	testutil.WriteTree(t, src, testutil.Tree{"p/a/link": "-> same", "p/a/more": "m", "p/a/old": "-> after",
		"p/a/newdir/inner/f": "n", "p/a/newdir/l": "-> inner"})
	must(t, os.Chmod(sub, 0o700))
	st, _, done, err = c.SyncFlat(t.Context(), syncer.Scope{Dir: "p/a"}, nil, []string{"p/a/open.mov"}, nil)
	if err != nil || !done {
		t.Fatalf("with deletions, symlinks and a new subdirectory: done=%v, %v; want done", done, err)
	}
	if st.Deleted != 2 {
		t.Errorf("stats = %+v, want 2 deleted", st)
	}
	// The new subdirectory is made empty: its content is its own scope's.
	if ents, err := os.ReadDir(filepath.Join(dst, "p/a/newdir")); err != nil || len(ents) != 0 {
		t.Errorf("new subdirectory on the backup: %v, %v; want it empty", ents, err)
	}
	if _, err := c.Copy(t.Context(), "p/a/newdir", nil); !errors.Is(err, copier.ErrExists) {
		t.Fatalf("Copy of the new subdirectory: %v, want ErrExists", err)
	}
	if _, err := c.Copy(t.Context(), "p/a/newdir/inner", nil); err != nil {
		t.Fatalf("Copy of its subdirectory: %v", err)
	}
	if _, _, done, err := c.SyncFlat(t.Context(), syncer.Scope{Dir: "p/a/newdir"}, nil, nil, nil); err != nil || !done {
		t.Fatalf("its own entries: done=%v, %v", done, err)
	}
	if d := testutil.DiffTrees(src, dst, ".trash", "p/a/open.mov", "p/a/x.tmp", "p/a/sub/deep"); d != "" {
		t.Error(d)
	}
	for _, f := range []string{"p/a/gone", "p/a/gonedir/x/y"} {
		if _, err := os.Lstat(filepath.Join(dst, ".trash/2026-11-22T120000.000000000Z", f)); err != nil {
			t.Errorf("deleted %s not in the trash: %v", f, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, ".trash/2026-11-22T120000.000000000Z/p/a/old")); l != "before" {
		t.Errorf("the replaced symlink in the trash = %q, %v", l, err)
	}
	// The manifests the two calls wrote (of what each displaced, in one
	// stamp) list what a walk of the trash finds.
	root, err := osx.OpenRoot(dst)
	must(t, err)
	defer root.Close()
	fromManifest, err := versions.List(root, ".trash", "p")
	must(t, err)
	must(t, os.Remove(filepath.Join(dst, ".trash/2026-11-22T120000.000000000Z"+versions.ManifestSuffix)))
	walked, err := versions.List(root, ".trash", "p")
	must(t, err)
	if d := cmp.Diff(walked, fromManifest); d != "" || len(walked) < 4 {
		t.Errorf("versions from the manifest differ from the trash's (-walked +manifest):\n%s", d)
	}
	// Left to rsync: a FIFO; a deletion with no trash, or under a cap.
	must(t, syscall.Mkfifo(filepath.Join(src, "p/a/fifo"), 0o600))
	if _, _, done, err := c.SyncFlat(t.Context(), syncer.Scope{Dir: "p/a"}, nil, nil, nil); err != nil || done {
		t.Errorf("with a FIFO: done=%v, %v; want not done", done, err)
	}
	must(t, os.Remove(filepath.Join(src, "p/a/fifo")))
	must(t, os.Remove(filepath.Join(src, "p/a/more")))
	for name, o := range map[string]copier.Options{"no trash": {Source: src, Dest: dst}, "a cap": {Source: src, Dest: dst, Trash: ".trash", MaxDelete: 10}} {
		if _, _, done, err := copier.New(o).SyncFlat(t.Context(), syncer.Scope{Dir: "p/a"}, nil, []string{"p/a/open.mov"}, nil); err != nil || done {
			t.Errorf("a deletion with %s: done=%v, %v; want not done", name, done, err)
		}
		if _, err := os.Stat(filepath.Join(dst, "p/a/more")); err != nil {
			t.Errorf("a deletion with %s was made: %v", name, err)
		}
	}
	// A recursive scope is done only without subdirectories: p/a has one.
	if _, _, done, err := c.SyncFlat(t.Context(), syncer.Scope{Dir: "p/a/sub", Recursive: true}, nil, nil, nil); err != nil || !done {
		t.Errorf("recursive scope of a leaf directory: done=%v, %v; want done", done, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "p/a/sub/deep")); string(b) != "d" {
		t.Error("the leaf's file was not copied")
	}
	if _, _, done, err := c.SyncFlat(t.Context(), syncer.Scope{Dir: "p", Recursive: true}, nil, nil, nil); err != nil || done {
		t.Errorf("recursive scope with subdirectories: done=%v, %v; want not done", done, err)
	}
	// A directory missing from the backup is not its case.
	testutil.WriteTree(t, src, testutil.Tree{"q/f": "f"})
	if _, _, done, err := c.SyncFlat(t.Context(), syncer.Scope{Dir: "q"}, nil, nil, nil); err != nil || done {
		t.Errorf("missing directory: done=%v, %v; want not done", done, err)
	}
}

// TestCopier_SyncFlat_Files checks the path of a reconcile's job that names
// its files: those arrive, nothing else in the directory is looked at, and
// a named file that is no longer a regular file is left to rsync.
func TestCopier_SyncFlat_Files(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/named": "new", "p/-odd\n name": "odd", "p/other": "other new"})
	testutil.WriteTree(t, dst, testutil.Tree{"p/named": "old", "p/other": "other old", "p/gone": "g"})
	c := copier.New(copier.Options{Source: src, Dest: dst})
	st, _, done, err := c.SyncFlat(t.Context(), syncer.Scope{Dir: "p"}, []string{"p/named", "p/-odd\n name", "p/vanished", "q/elsewhere"}, nil, nil)
	if err != nil || !done || st.Files != 2 {
		t.Fatalf("SyncFlat() = %+v, done=%v, %v; want 2 files, done", st, done, err)
	}
	for f, want := range map[string]string{"named": "new", "-odd\n name": "odd", "other": "other old", "gone": "g"} {
		if b, err := os.ReadFile(filepath.Join(dst, "p", f)); err != nil || string(b) != want {
			t.Errorf("%q on the backup = %q, %v; want %q", f, b, err, want)
		}
	}
	// Named, but a directory now: rsync's.
	if err := os.Remove(filepath.Join(src, "p/named")); err != nil {
		t.Fatal(err)
	}
	testutil.WriteTree(t, src, testutil.Tree{"p/named/f": "f"})
	if _, _, done, err := c.SyncFlat(t.Context(), syncer.Scope{Dir: "p"}, []string{"p/named"}, nil, nil); err != nil || done {
		t.Errorf("a named file became a directory: done=%v, %v; want not done", done, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
