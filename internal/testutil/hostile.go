package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// Nobody is the unprivileged user attacker steps run as.
const Nobody = 65534

// Lair makes, for an attack test run as root, a base directory that an
// unprivileged user can traverse, and in it a root-only (0700) directory
// outside both trees, holding a file and a subdirectory: what an attack
// aims at. It returns the base and the root-only directory.
func Lair(tb testing.TB) (base, outside string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("SYNCER_TEST_REQUIRE_TOOLS") == "1" {
			tb.Fatal("attack tests need root (SYNCER_TEST_REQUIRE_TOOLS=1)")
		}
		tb.Skip("attack tests need root")
	}
	base = tb.TempDir()
	outside = filepath.Join(base, "rootonly")
	for _, err := range []error{
		os.Chmod(filepath.Dir(base), 0o711), // the test's temp root: traversable, as / is
		os.Chmod(base, 0o755),
		os.MkdirAll(filepath.Join(outside, "ssh"), 0o700),
		os.WriteFile(filepath.Join(outside, "secret"), []byte("TOP SECRET, root only\n"), 0o600),
		os.WriteFile(filepath.Join(outside, "ssh", "authorized_keys"), []byte("ssh-ed25519 AAAA root@host\n"), 0o600),
		os.Chmod(outside, 0o700),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return base, outside
}

// Fingerprint describes a tree byte for byte: every entry's type, mode,
// owner, mtime, link target and content, and the root's own mode and
// owner. Two equal fingerprints mean nothing was written, chmodded,
// chowned or deleted there.
func Fingerprint(tb testing.TB, dir string) string {
	tb.Helper()
	ents, err := scan(dir, nil)
	if err != nil {
		tb.Fatal(err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		tb.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	lines := []string{fmt.Sprintf(". %v uid=%d gid=%d", fi.Mode(), st.Uid, st.Gid)}
	for p, d := range ents {
		lines = append(lines, p+" "+d)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// ChownTree gives a tree to uid:gid, so an unprivileged user can write it.
func ChownTree(tb testing.TB, dir string, uid, gid int) {
	tb.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// RunAs runs a shell script as the unprivileged user (setpriv, no
// supplementary groups, no capabilities) in dir and returns its combined
// output.
func RunAs(tb testing.TB, dir, script string) (string, error) {
	tb.Helper()
	cmd := AsNobody(tb, dir, script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// AsNobody prepares a shell script run as the unprivileged user.
func AsNobody(tb testing.TB, dir, script string) *exec.Cmd {
	tb.Helper()
	sp := RequireTool(tb, "setpriv")
	id := fmt.Sprint(Nobody)
	cmd := exec.Command(sp, "--reuid="+id, "--regid="+id, "--clear-groups", "--inh-caps=-all", "--", "/bin/sh", "-c", script)
	cmd.Dir = dir
	return cmd
}
