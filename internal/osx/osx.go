// Package osx holds file-system helpers the standard library lacks.
package osx

import (
	"os"

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
