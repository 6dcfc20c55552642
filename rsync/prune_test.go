package rsync_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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

// tmpfs mounts a tmpfs with opts on a new directory until the test ends.
func tmpfs(t *testing.T, opts string) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	must(t, syscall.Mount("tmpfs", dir, "tmpfs", 0, opts))
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// statfs is dir's filesystem's free blocks and inodes, and its totals.
func statfs(t *testing.T, dir string) (free, blocks, ffree, files uint64) {
	t.Helper()
	var st syscall.Statfs_t
	must(t, syscall.Statfs(dir, &st))
	return st.Bfree, st.Blocks, st.Ffree, st.Files
}

// TestRunner_FreeTrash: on a backup short of blocks, or of inodes, the
// oldest runs' versions go first, with their manifests, until the
// filesystem has its floor free again; the mirror is untouched, a stamp
// planted as a symlink is removed as a link, and a backup with room, or a
// floor of 0, loses nothing.
func TestRunner_FreeTrash(t *testing.T) {
	testutil.RequireRsync(t)
	stamps := []string{"2026-12-02T100000.000000000Z", "2026-12-02T110000.000000000Z", "2026-12-02T120000.000000000Z", "2026-12-02T130000.000000000Z"}
	present := func(t *testing.T, dst string, want ...string) {
		t.Helper()
		for _, s := range stamps {
			_, err := os.Lstat(filepath.Join(dst, ".trash", s))
			if _, err2 := os.Lstat(filepath.Join(dst, ".trash", s+".versions")); (err == nil) != (err2 == nil) {
				t.Errorf("%s and its manifest: one without the other (%v, %v)", s, err, err2)
			}
			if (err == nil) != slices.Contains(want, s) {
				t.Errorf(".trash/%s: present %v, want %v", s, err == nil, !(err == nil))
			}
		}
	}

	t.Run("blocks", func(t *testing.T) {
		dst, outside := tmpfs(t, "size=4m"), t.TempDir()
		testutil.WriteTree(t, outside, testutil.Tree{"keep": "outside the backup"})
		before := testutil.Fingerprint(t, outside)
		tree := testutil.Tree{".trash/2026-12-01T000000.000000000Z": "-> " + outside, "p/f": "mirror"}
		for _, s := range stamps {
			tree[".trash/"+s+"/p/v"] = strings.Repeat("v", 512<<10)
			tree[".trash/"+s+".versions"] = "o\t524288\t0\t33188\t\"p/v\"\n"
		}
		testutil.WriteTree(t, dst, tree)
		r, err := rsync.New(rsync.Options{Source: t.TempDir(), Dest: dst, Trash: ".trash"})
		must(t, err)
		if got, err := r.FreeTrash(t.Context(), 0.05); err != nil || len(got) > 0 {
			t.Fatalf("backup with room: freed %v (%v), want nothing", got, err)
		}
		// The mirror grows until under 5 % of the blocks are free.
		free, blocks, _, _ := statfs(t, dst)
		must(t, os.WriteFile(filepath.Join(dst, "p/fill"), make([]byte, (free-blocks/50)*4096), 0o644))
		if got, err := r.FreeTrash(t.Context(), 0); err != nil || len(got) > 0 {
			t.Fatalf("floor 0: freed %v (%v), want nothing", got, err)
		}
		got, err := r.FreeTrash(t.Context(), 0.05)
		if err != nil {
			t.Fatal(err)
		}
		// The planted link first (the oldest name), then the oldest run:
		// 512 KiB brings 4 MiB past its 5 %.
		if want := []string{"2026-12-01T000000.000000000Z", stamps[0]}; !slices.Equal(got, want) {
			t.Errorf("freed %v, want %v", got, want)
		}
		present(t, dst, stamps[1:]...)
		if b, err := os.ReadFile(filepath.Join(dst, "p/f")); err != nil || string(b) != "mirror" {
			t.Errorf("mirror p/f: %q, %v", b, err)
		}
		if now := testutil.Fingerprint(t, outside); now != before {
			t.Errorf("freeing reached outside the backup:\n%s", now)
		}
		if free, blocks, _, _ := statfs(t, dst); float64(free) < 0.05*float64(blocks) {
			t.Errorf("%d of %d blocks free after freeing, want 5 %%", free, blocks)
		}
	})

	t.Run("inodes", func(t *testing.T) {
		dst := tmpfs(t, "size=64m,nr_inodes=100")
		tree := testutil.Tree{}
		for _, s := range stamps {
			for i := range 8 {
				tree[fmt.Sprintf(".trash/%s/p/v%d", s, i)] = "v"
			}
			tree[".trash/"+s+".versions"] = ""
		}
		testutil.WriteTree(t, dst, tree)
		_, _, ffree, files := statfs(t, dst)
		for i := range ffree - 2 {
			must(t, os.WriteFile(filepath.Join(dst, fmt.Sprintf("m%d", i)), nil, 0o644))
		}
		r, err := rsync.New(rsync.Options{Source: t.TempDir(), Dest: dst, Trash: ".trash"})
		must(t, err)
		got, err := r.FreeTrash(t.Context(), 0.05)
		if err != nil {
			t.Fatal(err)
		}
		// A run frees 11 inodes (its files, p, itself, its manifest): one
		// brings 2 free past 5 of 100.
		if want := stamps[:1]; !slices.Equal(got, want) {
			t.Errorf("freed %v, want %v (of %d inodes)", got, want, files)
		}
		present(t, dst, stamps[1:]...)
	})

	// XFS frees an unlinked file's blocks in the background: a count read
	// at once after the oldest run went would take the next ones too.
	t.Run("xfs", func(t *testing.T) {
		testutil.RequireRoot(t)
		dst := filepath.Join(t.TempDir(), "mnt")
		testutil.Mount(t, testutil.Image(t, t.TempDir(), "backup", "xfs"), dst)
		alloc := func(p string, n int64) {
			t.Helper()
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			f, err := os.Create(p)
			must(t, err)
			defer f.Close()
			must(t, syscall.Fallocate(int(f.Fd()), 0, 0, n))
		}
		for _, s := range stamps {
			alloc(filepath.Join(dst, ".trash", s, "p/v"), 16<<20)
			must(t, os.WriteFile(filepath.Join(dst, ".trash", s+".versions"), nil, 0o644))
		}
		free, blocks, _, _ := statfs(t, dst)
		var st syscall.Statfs_t
		must(t, syscall.Statfs(dst, &st))
		alloc(filepath.Join(dst, "p/fill"), int64(free-blocks/50)*st.Frsize)
		r, err := rsync.New(rsync.Options{Source: t.TempDir(), Dest: dst, Trash: ".trash"})
		must(t, err)
		got, err := r.FreeTrash(t.Context(), 0.05)
		if err != nil {
			t.Fatal(err)
		}
		if want := stamps[:1]; !slices.Equal(got, want) {
			t.Errorf("freed %v, want %v: one run's 16 MiB is enough", got, want)
		}
		present(t, dst, stamps[1:]...)
		if free, blocks, _, _ := statfs(t, dst); float64(free) < 0.05*float64(blocks) {
			t.Errorf("%d of %d blocks free after freeing, want 5 %%", free, blocks)
		}
	})
}
