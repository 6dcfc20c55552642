package osx_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer/internal/osx"
)

// A directory larger than one getdents buffer, with odd names, a skipped
// name and a subdirectory: every entry comes once, with its lstat.
func TestListDir(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for i := range 3000 {
		name := fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 40))
		switch i {
		case 1:
			name = "new\nline"
		case 2:
			name = "star*[q]?"
		case 3:
			name = "skip-me"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if name != "skip-me" {
			want = append(want, name)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	want = append(want, "sub")
	root, err := osx.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var got []string
	err = root.ListDir("", func(n string) bool { return n == "skip-me" }, func(fd int, name string, st *unix.Stat_t) {
		got = append(got, name)
		switch {
		case name == "sub" && st.Mode&unix.S_IFMT != unix.S_IFDIR:
			t.Errorf("sub: mode %o, want a directory", st.Mode)
		case name != "sub" && st.Size != int64(len(name)):
			t.Errorf("%q: size %d, want %d", name, st.Size, len(name))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("listed %d names, want %d", len(got), len(want))
	}
	if err := root.ListDir("gone", func(string) bool { return false }, nil); !os.IsNotExist(err) {
		t.Fatalf("missing dir: %v, want not-exist", err)
	}
}
