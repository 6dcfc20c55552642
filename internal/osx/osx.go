// Package osx holds file-system helpers the standard library lacks: Root,
// which resolves paths beneath a tree root without following symlinks, and
// directory listings on descriptors.
package osx

import (
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// ListDir lstats each entry of the directory rel beneath the root,
// relative to the open directory (no path lookups), and hands it to fn with
// the directory's descriptor, skipping the names skip reports and entries
// that vanish meanwhile. Entries come in directory order. It reads with
// getdents on a pooled buffer: no os.File (whose setup costs an fcntl per
// directory, and a poller registration) and no name slice per directory.
func (r *Root) ListDir(rel string, skip func(name string) bool, fn func(dirfd int, name string, st *unix.Stat_t)) error {
	fd, err := r.OpenDir(rel)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return ListFd(fd, r.Join(rel), skip, fn)
}

// ListFd is ListDir on an open directory; path is for messages.
func ListFd(fd int, path string, skip func(name string) bool, fn func(dirfd int, name string, st *unix.Stat_t)) error {
	buf := dirBufs.Get().(*dirBuf)
	defer dirBufs.Put(buf)
	for {
		n, err := unix.Getdents(fd, buf.b[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "readdir", Path: path, Err: err}
		}
		if n <= 0 {
			return nil
		}
		_, _, buf.names = unix.ParseDirent(buf.b[:n], -1, buf.names[:0])
		if err := StatFd(fd, path, buf.names, skip, fn); err != nil {
			return err
		}
	}
}

// StatAt is ListDir for the given names only: those that do not exist are
// left out.
func (r *Root) StatAt(rel string, names []string, skip func(name string) bool, fn func(dirfd int, name string, st *unix.Stat_t)) error {
	fd, err := r.OpenDir(rel)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return StatFd(fd, r.Join(rel), names, skip, fn)
}

// StatFd lstats names relative to the open directory fd, as ListFd does
// for every entry.
func StatFd(fd int, path string, names []string, skip func(name string) bool, fn func(dirfd int, name string, st *unix.Stat_t)) error {
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

// dirBuf is ListDir's getdents buffer and name list.
type dirBuf struct {
	b     [32 << 10]byte
	names []string
}

var dirBufs = sync.Pool{New: func() any { return new(dirBuf) }}
