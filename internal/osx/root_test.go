package osx

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRoot_NoSymlinks: no component of a path below the root is ever
// resolved through a symlink, whether it points out of the tree or into
// it, with openat2 and with the per-component fallback.
func TestRoot_NoSymlinks(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		name := "openat2"
		if fallback {
			name = "walk"
		}
		t.Run(name, func(t *testing.T) {
			if fallback {
				noOpenat2.Store(true)
				t.Cleanup(func() { noOpenat2.Store(false) })
			}
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			tree := filepath.Join(base, "tree")
			for _, d := range []string{outside, tree + "/p/d"} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.WriteFile(outside+"/secret", []byte("s"), 0o600))
			must(os.WriteFile(tree+"/p/d/f", []byte("f"), 0o600))
			must(os.Symlink(outside, tree+"/p/out"))          // out of the tree
			must(os.Symlink("d", tree+"/p/in"))               // within it
			must(os.Symlink(outside+"/secret", tree+"/p/lf")) // a file link
			must(os.WriteFile(tree+"/p/file", nil, 0o600))
			r, err := OpenRoot(tree)
			must(err)
			defer r.Close()

			for _, ok := range []string{"", "p", "p/d"} {
				fd, err := r.OpenDir(ok)
				if err != nil {
					t.Errorf("OpenDir(%q): %v", ok, err)
					continue
				}
				unix.Close(fd)
			}
			fd, err := r.Open("p/d/f", unix.O_RDONLY, 0)
			must(err)
			unix.Close(fd)
			for _, bad := range []string{"p/out", "p/out/secret", "p/in", "p/in/f", "p/lf", "p/file/x", "../outside/secret", "p/../../outside"} {
				fd, err := r.Open(bad, unix.O_RDONLY, 0)
				if err == nil {
					unix.Close(fd)
					t.Errorf("Open(%q) succeeded, want a refusal", bad)
					continue
				}
				if !NotDir(err) && !errors.Is(err, unix.EXDEV) {
					t.Errorf("Open(%q) = %v, want ELOOP, ENOTDIR or EXDEV", bad, err)
				}
			}
			// The entry itself is reached through its parent, never resolved.
			dfd, name, err := r.OpenParent("p/out")
			must(err)
			defer unix.Close(dfd)
			var st unix.Stat_t
			must(unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW))
			if st.Mode&unix.S_IFMT != unix.S_IFLNK {
				t.Errorf("OpenParent(p/out): %q is mode %o, want the symlink itself", name, st.Mode)
			}
		})
	}
}
