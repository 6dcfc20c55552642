package rsync_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/rsync"
)

// TestExcludes_SameAsRsync syncs a tree whose scopes start at several
// depths through real rsync with exclude rules of both kinds, and checks
// that an entry reached the backup exactly when syncer.Excludes says it is
// not excluded: the watcher, reconcile and the copier decide with Match,
// rsync with the rules RsyncArgs gives it.
func TestExcludes_SameAsRsync(t *testing.T) {
	testutil.RequireRsync(t)
	ex := syncer.MustExcludes("*.tmp", "Thumbs.db", "ProjA/render/cache", "*/Proxies", "ProjB/**/*.bak",
		"ProjC/x?", "ProjC/[ab]*/keep", "**/deep/*.log", "sp ace/*")
	tree := testutil.Tree{}
	for _, p := range []string{"a.tmp", "keep", "ProjA/render/cache/f", "ProjA/render/cachet", "ProjA/render/x.tmp",
		"ProjA/Proxies/p.mov", "ProjA/sub/Proxies/p.mov", "ProjA/Thumbs.db", "ProjB/x.bak", "ProjB/a/x.bak", "ProjB/a/b/x.bak",
		"ProjB/a/x.bakk", "ProjC/x1", "ProjC/x12", "ProjC/a1/keep", "ProjC/c1/keep", "ProjC/b/keep", "ProjD/e/deep/z.log",
		"deep/z.log", "ProjD/deep/y.log", "sp ace/f", "ProjE/sp ace/f"} {
		tree[p] = "x"
	}
	for _, scopes := range [][]syncer.Scope{{{Dir: "", Recursive: true}},
		{{Dir: "ProjA", Recursive: true}, {Dir: "ProjB/a", Recursive: true}, {Dir: "ProjC", Recursive: true}, {Dir: "ProjD", Recursive: true}}} {
		src, dst := t.TempDir(), t.TempDir()
		testutil.WriteTree(t, src, tree)
		r, err := rsync.New(rsync.Options{Source: src, Dest: dst, Excludes: ex})
		if err != nil {
			t.Fatal(err)
		}
		if scopes[0].Dir != "" {
			for _, d := range []string{"ProjA", "ProjB/a", "ProjC", "ProjD"} {
				must(t, os.MkdirAll(filepath.Join(dst, d), 0o755))
			}
		}
		if _, err := r.Sync(t.Context(), scopes, syncer.Hints{}); err != nil {
			t.Fatal(err)
		}
		for p := range tree {
			if !inScopes(p, scopes) {
				continue
			}
			_, err := os.Lstat(filepath.Join(dst, p))
			if copied, excluded := err == nil, ex.Match(p); copied == excluded {
				t.Errorf("scopes %v: %s: on the backup %v, Match says excluded %v", scopes, p, copied, excluded)
			}
		}
	}
}

func inScopes(p string, scopes []syncer.Scope) bool {
	for _, s := range scopes {
		if s.Dir == "" || len(p) > len(s.Dir) && p[:len(s.Dir)+1] == s.Dir+"/" {
			return true
		}
	}
	return false
}
