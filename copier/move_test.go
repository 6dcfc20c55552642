package copier_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/copier"
	"github.com/syncer/syncer/index"
	"github.com/syncer/syncer/internal/testutil"
)

func ino(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestMover_Move: a directory moved in the source is renamed on the
// backup, what was at its new path kept in the trash and found there by
// the move that wants it; nothing is moved through or onto a symlink
// planted on either side, and a root-only directory outside the trees is
// never touched.
func TestMover_Move(t *testing.T) {
	src, dst, secret := t.TempDir(), t.TempDir(), t.TempDir()
	testutil.WriteTree(t, secret, testutil.Tree{"key": "root only"})
	before := testutil.DiffTrees(secret, secret)
	tree := testutil.Tree{"p/a/f": "a", "p/a/sub/g": "g", "p/b/h": "b", "p/c/i": "c", "p/evil/j": "e"}
	testutil.WriteTree(t, src, tree)
	testutil.WriteTree(t, dst, tree)
	ix, err := index.Open(filepath.Join(t.TempDir(), "index.db"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	for _, d := range []string{"a", "b", "c", "evil"} {
		ix.Queue(index.Update{Dir: "p", Put: map[string]index.Record{d: {Ino: ino(t, filepath.Join(src, "p", d)), Dir: true}}})
	}
	mv := copier.Mover{Copier: copier.New(copier.Options{Source: src, Dest: dst, Trash: ".trash"}), Index: ix}
	move := func(from, to string, want bool) {
		t.Helper()
		m := syncer.Move{From: from, To: to, Ino: ino(t, filepath.Join(src, to))}
		moved, n, err := mv.Move(t.Context(), m)
		if err != nil || moved != want {
			t.Fatalf("Move(%s → %s) = %v, %d, %v; want moved %v", from, to, moved, n, err, want)
		}
		if want && n != int64(len(tree[from+"/f"])+len(tree[from+"/sub/g"])+len(tree[from+"/h"])) {
			t.Errorf("Move(%s → %s) counted %d bytes", from, to, n)
		}
	}
	rename := func(from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(src, from), filepath.Join(src, to)); err != nil {
			t.Fatal(err)
		}
	}

	// A swap through a temporary name, made in either order.
	rename("p/a", "p/tmp")
	rename("p/b", "p/a")
	rename("p/tmp", "p/b")
	move("p/b", "p/a", true) // the backup's p/a, synced from the other one, goes to the trash
	move("p/a", "p/b", true) // ...and is found there
	for f, want := range map[string]string{"p/a/h": "b", "p/b/f": "a", "p/b/sub/g": "g"} {
		if b, err := os.ReadFile(filepath.Join(dst, f)); err != nil || string(b) != want {
			t.Errorf("after the swap the backup's %s is %q, %v; want %q", f, b, err, want)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dst, ".trash", "*", "p", "*")); len(m) != 0 {
		t.Errorf("the trash keeps %v after a pure swap", m)
	}

	// Not what was synced there: the source directory came back.
	rename("p/c", "p/c2")
	rename("p/c2", "p/c")
	if moved, _, _ := mv.Move(t.Context(), syncer.Move{From: "p/c2", To: "p/c", Ino: ino(t, filepath.Join(src, "p/c"))}); moved {
		t.Error("moved a directory the backup does not have")
	}

	// A symlink planted on the backup at the old path, and one in place
	// of the new path's parent: neither is followed.
	if err := os.Mkdir(filepath.Join(src, "p", "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	rename("p/evil", "p/new/evil")
	if err := os.RemoveAll(filepath.Join(dst, "p", "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dst, "p", "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dst, "p", "new")); err != nil {
		t.Fatal(err)
	}
	if moved, _, _ := mv.Move(t.Context(), syncer.Move{From: "p/evil", To: "p/new/evil", Ino: ino(t, filepath.Join(src, "p/new/evil"))}); moved {
		t.Error("moved through a planted symlink")
	}
	// The old path a real directory again: the new path's planted parent
	// still stops it.
	if err := os.Remove(filepath.Join(dst, "p", "evil")); err != nil {
		t.Fatal(err)
	}
	testutil.WriteTree(t, dst, testutil.Tree{"p/evil/j": "e"})
	if moved, _, err := mv.Move(t.Context(), syncer.Move{From: "p/evil", To: "p/new/evil", Ino: ino(t, filepath.Join(src, "p/new/evil"))}); moved || err == nil {
		t.Errorf("a move below a planted symlink: moved %v, %v; want an error", moved, err)
	}
	// The source's new path a symlink: not the directory that moved.
	if moved, _, _ := mv.Move(t.Context(), syncer.Move{From: "p/a", To: "p/link", Ino: 1}); moved {
		t.Error("moved onto a path the source does not have")
	}
	if after := testutil.DiffTrees(secret, secret); after != before {
		t.Fatal("the directory outside the trees changed")
	}
	if fi, err := os.Lstat(filepath.Join(secret, "evil")); err == nil {
		t.Fatalf("a move wrote outside the backup: %v", fi.Name())
	}
	if b, err := os.ReadFile(filepath.Join(secret, "key")); err != nil || string(b) != "root only" {
		t.Fatalf("the secret is %q, %v", b, err)
	}
	// Moves into the trash are refused.
	if moved, _, err := mv.Move(t.Context(), syncer.Move{From: "p/b", To: ".trash/x", Ino: ino(t, filepath.Join(src, "p/b"))}); moved || err != nil {
		t.Errorf("a move into the trash: moved %v, %v", moved, err)
	}
}
