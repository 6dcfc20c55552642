// Package osx holds file-system helpers the standard library lacks.
package osx

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// OpenDir opens a directory for listing. Unlike os.Open, the file is not
// offered to the runtime's poller, which costs a failed epoll_ctl and two
// fcntl calls per directory: a third of the time of a walk that reads
// many small directories.
func OpenDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ListDir lstats each entry of the directory path, relative to the open
// directory (no path lookups), and hands it to fn with the directory's
// descriptor, skipping the names skip reports and entries that vanish
// meanwhile.
func ListDir(path string, skip func(name string) bool, fn func(dirfd int, name string, st *unix.Stat_t)) error {
	f, err := OpenDir(path)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return &os.PathError{Op: "readdir", Path: path, Err: err}
	}
	fd := int(f.Fd())
	var st unix.Stat_t
	for _, name := range names {
		if skip(name) {
			continue
		}
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue
			}
			return &os.PathError{Op: "lstat", Path: filepath.Join(path, name), Err: err}
		}
		fn(fd, name, &st)
	}
	return nil
}
