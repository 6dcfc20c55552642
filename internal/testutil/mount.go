package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Ext4Image makes a small ext4 filesystem image in dir, for tests that
// mount a source of their own (as root). The test is skipped when
// mkfs.ext4 is missing.
func Ext4Image(tb testing.TB, dir, name string) string {
	tb.Helper()
	return Image(tb, dir, name, "ext4")
}

// Image makes a small filesystem image of the type fstype (ext4 or xfs)
// in dir, sparse (XFS needs 300 MiB at least). The test is skipped when
// its mkfs is missing.
func Image(tb testing.TB, dir, name, fstype string) string {
	tb.Helper()
	img := filepath.Join(dir, name+".img")
	size, args := "32M", []string{"-q", "-F", "-b", "4096"}
	if fstype == "xfs" {
		size, args = "320M", []string{"-q", "-f"}
	}
	if out, err := exec.Command("truncate", "-s", size, img).CombinedOutput(); err != nil {
		tb.Fatalf("truncate: %v %s", err, out)
	}
	mkfs := RequireTool(tb, "mkfs."+fstype)
	if out, err := exec.Command(mkfs, append(args, img)...).CombinedOutput(); err != nil {
		tb.Fatalf("mkfs.%s: %v %s", fstype, err, out)
	}
	return img
}

// Mount loop-mounts img on dir (made if missing) until the test ends.
func Mount(tb testing.TB, img, dir string) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		tb.Fatalf("mount %s on %s: %v %s", img, dir, err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// Unmount unmounts dir; lazy detaches it even while in use, the way a
// failing NAS share or a hurried operator leaves it.
func Unmount(tb testing.TB, dir string, lazy bool) {
	tb.Helper()
	args := []string{dir}
	if lazy {
		args = []string{"-l", dir}
	}
	if out, err := exec.Command("umount", args...).CombinedOutput(); err != nil {
		tb.Fatalf("umount %s: %v %s", dir, err, out)
	}
}
