package rsync_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/internal/xattr"
	"github.com/syncer/syncer/rsync"
)

func TestArgs(t *testing.T) {
	opts := rsync.Options{Source: "/data/prod", Dest: "/data/prod_backup/", Excludes: syncer.MustExcludes("*.tmp"), MaxDelete: 500,
		Trash: ".syncer-trash", Now: func() time.Time { return time.Date(2026, 11, 22, 23, 59, 0, 0, time.UTC) }}
	tests := []struct {
		name      string
		dirs      []string
		recursive bool
		skip      []string
		want      []string
	}{
		{"flat", []string{"p/a b", "-x"}, false, nil, []string{"-lptgoD", "--numeric-ids", "--delete", "--relative", "--stats", "--protect-args", "--modify-window=-1",
			"--dirs", "--max-delete=500", "--backup", "--backup-dir=.syncer-trash/2026-11-22T235900.000000000Z", "--exclude=/.syncer-trash", "--exclude=*.tmp", "--", "/data/prod/./p/a b/", "/data/prod/./-x/", "/data/prod_backup/"}},
		{"root recursive", []string{""}, true, nil, []string{"-lptgoD", "--numeric-ids", "--delete", "--relative", "--stats", "--protect-args", "--modify-window=-1",
			"--recursive", "--max-delete=500", "--backup", "--backup-dir=.syncer-trash/2026-11-22T235900.000000000Z", "--exclude=/.syncer-trash", "--exclude=*.tmp", "--", "/data/prod/./", "/data/prod_backup/"}},
	}
	tests = append(tests, struct {
		name      string
		dirs      []string
		recursive bool
		skip      []string
		want      []string
	}{"skip", []string{"p"}, false, []string{"p/clip.mov", "p/a*b?[c]\\d"}, []string{"-lptgoD", "--numeric-ids", "--delete", "--relative", "--stats", "--protect-args", "--modify-window=-1",
		"--dirs", "--max-delete=500", "--backup", "--backup-dir=.syncer-trash/2026-11-22T235900.000000000Z", "--exclude=/.syncer-trash", "--exclude=*.tmp",
		"--exclude=/p/clip.mov", `--exclude=/p/a\*b\?\[c]\\d`, "--", "/data/prod/./p/", "/data/prod_backup/"}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rsync.Args(opts, tt.dirs, tt.recursive, tt.skip)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Args() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestTransient(t *testing.T) {
	for code, want := range map[int]bool{1: false, 2: false, 3: false, 4: false, 5: true, 10: true, 11: true,
		12: true, 23: true, 25: false, 30: true, 35: true, 20: false} {
		if got := rsync.Transient(code); got != want {
			t.Errorf("Transient(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestParseStats(t *testing.T) {
	out := []byte("Number of files: 1,204 (reg: 1,200, dir: 4)\nNumber of created files: 3\n" +
		"Number of deleted files: 7 (reg: 7)\nNumber of regular files transferred: 1,201\n" +
		"Total file size: 10 bytes\nTotal transferred file size: 2,345,678 bytes\n")
	got := rsync.ParseStats(out)
	want := syncer.Stats{Files: 1201, Bytes: 2345678, Deleted: 7}
	if got != want {
		t.Errorf("ParseStats() = %+v, want %+v", got, want)
	}
}

func newRunner(t *testing.T) (*rsync.Runner, string, string) {
	t.Helper()
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	return r, src, dst
}

func TestRunner_Sync(t *testing.T) {
	r, src, dst := newRunner(t)
	testutil.WriteTree(t, src, testutil.Tree{"p/a/f": "1", "p/a/sub/g": "2", "p/top": "3", "q/x": "4"})

	t.Run("Flat", func(t *testing.T) {
		st, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "p/a"}}, syncer.Hints{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Files != 1 {
			t.Errorf("files = %d, want 1", st.Files)
		}
		if _, err := os.Stat(filepath.Join(dst, "p/a/sub/g")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("non-recursive sync copied a subdirectory's content: %v", err)
		}
		if fi, err := os.Stat(filepath.Join(dst, "p/a/sub")); err != nil || !fi.IsDir() {
			t.Errorf("subdirectory not created: %v", err)
		}
	})
	t.Run("RecursiveAndDelete", func(t *testing.T) {
		if _, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "", Recursive: true}}, syncer.Hints{}); err != nil {
			t.Fatal(err)
		}
		if d := testutil.DiffTrees(src, dst); d != "" {
			t.Fatal(d)
		}
		if err := os.RemoveAll(filepath.Join(src, "p/a/sub")); err != nil {
			t.Fatal(err)
		}
		st, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "p/a"}}, syncer.Hints{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Deleted != 2 {
			t.Errorf("deleted = %d, want 2", st.Deleted)
		}
		if d := testutil.DiffTrees(src, dst); d != "" {
			t.Fatal(d)
		}
	})
	t.Run("VanishedScopeSkipped", func(t *testing.T) {
		if _, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "p/gone"}, {Dir: "q"}}, syncer.Hints{}); err != nil {
			t.Fatalf("Sync() with a vanished scope: %v", err)
		}
	})
}

// TestRunner_Sync_Skip checks that skipped files are neither copied nor
// deleted, whatever their names, while the rest of their scope syncs.
func TestRunner_Sync_Skip(t *testing.T) {
	r, src, dst := newRunner(t)
	odd := []string{"clip.mov", "a*b", "q?[x]", `back\slash`, `st*r\[`, "-dash", "new\nline"}
	tree := testutil.Tree{"p/keep": "k", "p/sub/deep": "d"}
	for _, n := range odd {
		tree["p/"+n] = "partial"
		tree["p/sub/"+n] = "partial"
	}
	testutil.WriteTree(t, src, tree)
	testutil.WriteTree(t, dst, testutil.Tree{"p/a*b": "old", "p/sub/a*b": "old"})
	var skip []string
	for _, n := range odd {
		skip = append(skip, "p/"+n, "p/sub/"+n)
	}
	for _, sc := range []syncer.Scope{{Dir: "p"}, {Dir: "p", Recursive: true}} {
		if _, err := r.Sync(t.Context(), []syncer.Scope{sc}, syncer.Hints{Open: skip}); err != nil {
			t.Fatal(err)
		}
		for _, n := range odd {
			for _, p := range []string{"p/" + n, "p/sub/" + n} {
				b, err := os.ReadFile(filepath.Join(dst, p))
				if n == "a*b" {
					if string(b) != "old" {
						t.Errorf("%s: skipped file on the backup = %q, %v; want it left as it was", sc, b, err)
					}
				} else if !errors.Is(err, os.ErrNotExist) && (sc.Recursive || filepath.Dir(p) == "p") {
					t.Errorf("%s: skipped %q was copied", sc, p)
				}
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "p/sub/deep")); string(b) != "d" {
		t.Errorf("unskipped file not copied: %q, %v", b, err)
	}
	if _, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "p", Recursive: true}}, syncer.Hints{}); err != nil {
		t.Fatal(err)
	}
	if d := testutil.DiffTrees(src, dst); d != "" {
		t.Fatal(d)
	}
}

// TestRunner_Sync_OddNames checks invariant 6: any name Linux allows arrives byte-exactly.
func TestRunner_Sync_OddNames(t *testing.T) {
	r, src, dst := newRunner(t)
	names := OddNames()
	for _, n := range names {
		testutil.WriteTree(t, src, testutil.Tree{"p/" + n + "/" + n: n})
	}
	deep := "p/" + strings.Repeat("d/", 60)
	testutil.WriteTree(t, src, testutil.Tree{deep + "leaf": "deep"})
	var scopes []syncer.Scope
	for _, n := range names {
		scopes = append(scopes, syncer.Scope{Dir: "p/" + n})
	}
	scopes = append(scopes, syncer.Scope{Dir: strings.TrimSuffix(deep, "/")}, syncer.Scope{Dir: "p"})
	if _, err := r.Sync(t.Context(), scopes, syncer.Hints{}); err != nil {
		t.Fatal(err)
	}
	// The deep chain's middle directories come from --relative's implied dirs.
	if _, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "p/d", Recursive: true}}, syncer.Hints{}); err != nil {
		t.Fatal(err)
	}
	if d := testutil.DiffTrees(src, dst); d != "" {
		t.Fatal(d)
	}
}

// OddNames are file names that break shells, JSON and naive path handling.
func OddNames() []string {
	return []string{"with space", "new\nline", "tab\there", "-leading-dash", "star*", "quest?", `quo"te`, "sq'uote",
		`back\slash`, "non-utf8-\xff\xfe", strings.Repeat("x", 255), "--", "[br]", "$HOME"}
}

func TestRunner_Sync_TrashAndMaxDelete(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	day := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst, Trash: ".syncer-trash", MaxDelete: 3, Now: func() time.Time { return day }})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WriteTree(t, src, testutil.Tree{"p/keep": "k", "p/over": "old", "p/del": "d", "q/1": "1", "q/2": "2", "q/3": "3", "q/4": "4"})
	if _, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "", Recursive: true}}, syncer.Hints{}); err != nil {
		t.Fatal(err)
	}
	testutil.WriteTree(t, src, testutil.Tree{"p/over": "new"})
	if err := os.Remove(filepath.Join(src, "p/del")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "p"}, {Dir: ""}}, syncer.Hints{}); err != nil {
		t.Fatal(err)
	}
	trash := filepath.Join(dst, ".syncer-trash/2026-11-22T120000.000000000Z/p") // the run's own trash directory
	for name, want := range map[string]string{"del": "d", "over": "old"} {
		got, err := os.ReadFile(filepath.Join(trash, name))
		if err != nil || string(got) != want {
			t.Errorf("trash %s = %q, %v; want %q", name, got, err, want)
		}
	}
	if d := testutil.DiffTrees(src, dst, ".syncer-trash"); d != "" {
		t.Fatal(d)
	}
	// A root-level sync (which deletes extraneous projects) leaves the trash alone.
	if _, err := os.Stat(filepath.Join(dst, ".syncer-trash")); err != nil {
		t.Fatalf("root sync removed the trash: %v", err)
	}

	// Four deletions against a cap of three: a permanent failure, never a silent partial success.
	for _, n := range []string{"1", "2", "3", "4"} {
		if err := os.Remove(filepath.Join(src, "q", n)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = r.Sync(t.Context(), []syncer.Scope{{Dir: "q"}}, syncer.Hints{})
	var ee *rsync.ExitError
	if !errors.As(err, &ee) || ee.Code != 25 || ee.Transient() {
		t.Fatalf("Sync() past --max-delete = %v, want a permanent exit 25", err)
	}
}

// TestArgs_Metadata checks what each metadata setting asks of rsync: kinds
// the backup does not take are filtered out of -X, never asked for.
func TestArgs_Metadata(t *testing.T) {
	for _, tt := range []struct {
		name   string
		keep   xattr.Kind
		sparse bool
		links  bool
		want   []string
	}{
		{"all", xattr.All, true, false, []string{"-X", "-A", "--sparse"}},
		{"no user xattrs", xattr.Trusted | xattr.Security | xattr.ACL, false, false, []string{"-X", "--filter=-x user.*", "-A"}},
		{"xattrs, no ACLs", xattr.User | xattr.Trusted | xattr.Security, false, true, []string{"-X", "--filter=-x system.*", "-H"}},
		{"ACLs only", xattr.ACL, false, false, []string{"-A"}},
		{"none", xattr.None, false, false, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := rsync.Args(rsync.Options{Source: "/s", Dest: "/d", Keep: tt.keep, Sparse: tt.sparse, HardLinks: tt.links}, []string{"p"}, false, nil)
			// Between --dirs and the paths.
			i, j := slices.Index(got, "--dirs")+1, slices.Index(got, "--")
			if d := cmp.Diff(tt.want, got[i:j], cmpopts.EquateEmpty()); d != "" {
				t.Errorf("metadata arguments (-want +got):\n%s", d)
			}
		})
	}
}

// TestRunner_Sync_Lost counts the attributes of kinds the backup cannot
// keep on each entry rsync sends, odd names included, and nothing for
// entries it leaves alone.
func TestRunner_Sync_Lost(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	names := append(OddNames(), "plain")
	for _, n := range names {
		testutil.WriteTree(t, src, testutil.Tree{"p/" + n: n})
	}
	testutil.WriteTree(t, src, testutil.Tree{"p/untagged": "u"})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("plain", filepath.Join(src, "p", "link")))
	for _, n := range names {
		p := filepath.Join(src, "p", n)
		must(unix.Lsetxattr(p, "user.DOSATTRIB", []byte{1}, 0))
		must(unix.Lsetxattr(p, "user.test", []byte{2}, 0))
		must(unix.Lsetxattr(p, "trusted.kept", []byte{3}, 0)) // a kind the backup takes
	}
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst, Keep: xattr.Trusted, Lost: xattr.User})
	must(err)
	st, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "p"}}, syncer.Hints{})
	must(err)
	if want := int64(2 * len(names)); st.Dropped != want {
		t.Errorf("first sync: %d attributes dropped, want %d (2 on each of %d files)", st.Dropped, want, len(names))
	}
	got, err := testutil.Xattrs(filepath.Join(dst, "p", "plain"))
	must(err)
	if len(got) != 1 || got["trusted.kept"] != "\x03" {
		t.Errorf("backup attributes of p/plain = %q, want trusted.kept only", got)
	}
	must(os.WriteFile(filepath.Join(src, "p", "untagged"), []byte("changed"), 0o644))
	if st, err = r.Sync(t.Context(), []syncer.Scope{{Dir: "p"}}, syncer.Hints{}); err != nil || st.Dropped != 0 {
		t.Errorf("second sync (one file without attributes changed): %d dropped, %v; want 0", st.Dropped, err)
	}
}
