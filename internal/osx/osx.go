// Package osx holds file-system helpers the standard library lacks: Root,
// which resolves paths beneath a tree root without following symlinks, and
// directory listings on descriptors.
package osx

import (
	"bytes"
	"encoding/binary"
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

// ListStat is ListDir that also returns the directory's own lstat, taken
// once it is open and before its entries are read: a change made to it
// while it is read moves its mtime or ctime past what is returned.
func (r *Root) ListStat(rel string, skip func(name string) bool, fn func(dirfd int, name string, st *unix.Stat_t)) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := r.OpenDir(rel)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return st, &os.PathError{Op: "fstat", Path: r.Join(rel), Err: err}
	}
	return st, ListFd(fd, r.Join(rel), skip, fn)
}

// ListTypes hands fn the name and type (the S_IFMT bits) of each entry of
// the directory rel beneath the root, skipping the names skip reports: the
// type the directory itself records (getdents' d_type), with an lstat only
// where the filesystem records none. No other attribute is read.
func (r *Root) ListTypes(rel string, skip func(name string) bool, fn func(name string, typ uint32)) error {
	fd, err := r.OpenDir(rel)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return readDirents(fd, r.Join(rel), func(_ *dirBuf, b []byte) error {
		for len(b) >= 19 {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			typ, nm := dtype(b[18]), string(name)
			b = b[reclen:]
			if nm == "." || nm == ".." || skip(nm) {
				continue
			}
			if typ == 0 {
				var st unix.Stat_t
				if err := unix.Fstatat(fd, nm, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					continue // gone meanwhile
				}
				typ = st.Mode & unix.S_IFMT
			}
			fn(nm, typ)
		}
		return nil
	})
}

// readDirents reads the open directory fd with getdents on a pooled
// buffer, handing fn each batch of raw entries (and the buffer, whose
// names slice fn may reuse); path is for messages.
func readDirents(fd int, path string, fn func(buf *dirBuf, b []byte) error) error {
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
		if err := fn(buf, buf.b[:n]); err != nil {
			return err
		}
	}
}

// dtype turns a d_type into S_IFMT bits; 0 for DT_UNKNOWN.
func dtype(t byte) uint32 {
	switch t {
	case unix.DT_REG:
		return unix.S_IFREG
	case unix.DT_DIR:
		return unix.S_IFDIR
	case unix.DT_LNK:
		return unix.S_IFLNK
	case unix.DT_FIFO:
		return unix.S_IFIFO
	case unix.DT_SOCK:
		return unix.S_IFSOCK
	case unix.DT_CHR:
		return unix.S_IFCHR
	case unix.DT_BLK:
		return unix.S_IFBLK
	}
	return 0
}

// ListFd is ListDir on an open directory; path is for messages.
func ListFd(fd int, path string, skip func(name string) bool, fn func(dirfd int, name string, st *unix.Stat_t)) error {
	return readDirents(fd, path, func(buf *dirBuf, b []byte) error {
		_, _, buf.names = unix.ParseDirent(b, -1, buf.names[:0])
		return StatFd(fd, path, buf.names, skip, fn)
	})
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
