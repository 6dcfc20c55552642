package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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
	MountWith(tb, img, dir, "")
}

// MountWith is Mount with the mount options opts (as for mount -o).
func MountWith(tb testing.TB, img, dir, opts string) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if opts != "" {
		opts = "," + opts
	}
	if out, err := exec.Command("mount", "-o", "loop"+opts, img, dir).CombinedOutput(); err != nil {
		tb.Fatalf("mount %s on %s: %v %s", img, dir, err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// Crash takes the ext4 or XFS filesystem of img, mounted on dir, down as a
// power cut takes its host: what its journal had not committed and what
// the kernel had not yet written back are lost (the shutdown ioctl the two
// share, without flushing the log). It is then mounted again, with opts.
func Crash(tb testing.TB, img, dir, opts string) {
	tb.Helper()
	Shutdown(tb, dir)
	Unmount(tb, dir, false)
	MountWith(tb, img, dir, opts)
}

// Shutdown takes the ext4 or XFS filesystem mounted on dir down as Crash
// does, and leaves it mounted: every access then fails, as after the
// I/O error that makes the kernel give up on a disk.
func Shutdown(tb testing.TB, dir string) {
	tb.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	// EXT4_IOC_SHUTDOWN and XFS_IOC_GOINGDOWN: _IOR('X', 125, __u32).
	const shutdown, noLogFlush = 0x8004587d, 2
	err = unix.IoctlSetPointerInt(fd, shutdown, noLogFlush)
	unix.Close(fd)
	if err != nil {
		tb.Fatalf("shut %s down: %v", dir, err)
	}
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
