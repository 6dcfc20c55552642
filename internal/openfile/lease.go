// Package openfile tells whether a file is open for writing, by asking the
// kernel for a read lease (fcntl F_SETLEASE), the way Samba and the NFS
// server learn about local writers.
package openfile

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// Writing reports whether some process has the regular file at path
// open for writing. It asks the kernel for a read lease, which is refused
// with EAGAIN exactly while the file is open for writing (or held by a
// writer's lease: an NFS write delegation, a Samba oplock), and gives the
// lease back at once. Nothing is read and atime is not touched.
//
// known is false when it cannot tell: the path is gone or not a regular
// file (devices and FIFOs are never opened), or leases are not available
// (network filesystems, /proc/sys/fs/leases-enable off, a non-root user on
// someone else's file).
func Writing(path string) (open, known bool) {
	return WritingAt(unix.AT_FDCWD, path)
}

// WritingAt is Writing for the entry name of the open directory
// dirfd, never resolved through a symlink. What is opened is checked with
// fstat: a file swapped for a device or FIFO after the check is never used.
func WritingAt(dirfd int, name string) (open, known bool) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, false
	}
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME needs the owner or CAP_FOWNER
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	if err != nil {
		return false, false
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, false
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return true, true
		}
		return false, false
	}
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	return false, true
}

// Born returns when the file at path was created, if the filesystem keeps
// it (statx btime: ext4, xfs, btrfs, tmpfs).
func Born(path string) (time.Time, bool) { return BornAt(unix.AT_FDCWD, path) }

// BornAt is Born for the entry name of the open directory dirfd.
func BornAt(dirfd int, name string) (time.Time, bool) {
	var sx unix.Statx_t
	if err := unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &sx); err != nil ||
		sx.Mask&unix.STATX_BTIME == 0 {
		return time.Time{}, false
	}
	return time.Unix(sx.Btime.Sec, int64(sx.Btime.Nsec)), true
}
