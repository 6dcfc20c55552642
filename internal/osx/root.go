package osx

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Root is an open tree root (the source or the backup). Every path below it
// is resolved by the kernel beneath the root's descriptor without following
// a symlink in any component, the last one included: openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or on kernels before 5.6 one
// O_NOFOLLOW openat per component. A symlink planted anywhere in the tree,
// or swapped in for a directory between a listing and an open, makes the
// open fail (ELOOP, ENOTDIR); it is never followed out of the tree.
//
// The root's own path is trusted (it comes from the config) and resolved
// once, by OpenRoot. A Root is safe for concurrent use.
type Root struct {
	fd   int
	path string
}

// OpenRoot opens the directory at path as a Root.
func OpenRoot(path string) (*Root, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &Root{fd: fd, path: path}, nil
}

// Close closes the root's descriptor.
func (r *Root) Close() error { return unix.Close(r.fd) }

// Path is the root's path, for messages.
func (r *Root) Path() string { return r.path }

// Fd is the root's descriptor, valid until Close.
func (r *Root) Fd() int { return r.fd }

// Join is the path of rel below the root, for messages only: it is never
// opened.
func (r *Root) Join(rel string) string {
	if rel == "" {
		return r.path
	}
	return strings.TrimSuffix(r.path, "/") + "/" + rel
}

// Open opens rel (relative, slash-separated, validated by syncer.CheckPath;
// "" is the root) beneath the root with flags, to which it adds O_NOFOLLOW
// and O_CLOEXEC. A symlink in any component fails with ELOOP, a file where
// a directory should be with ENOTDIR.
func (r *Root) Open(rel string, flags int, mode uint32) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if rel == "" {
		rel = "."
	}
	fd, err := beneath(r.fd, rel, flags, mode)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: r.Join(strings.TrimPrefix(rel, ".")), Err: err}
	}
	return fd, nil
}

// OpenDir opens the directory rel beneath the root for reading.
func (r *Root) OpenDir(rel string) (int, error) {
	return r.Open(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
}

// OpenParent opens the directory holding rel (which must not be the root)
// and returns it with rel's last name, for the *at calls that act on the
// entry itself without resolving it.
func (r *Root) OpenParent(rel string) (dirfd int, name string, err error) {
	dir, name := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, name = rel[:i], rel[i+1:]
	}
	fd, err := r.OpenDir(dir)
	return fd, name, err
}

// NotDir reports whether err says that a component of a path is not a
// directory: a symlink (ELOOP) or another file type (ENOTDIR) stands where
// one was expected.
func NotDir(err error) bool {
	return errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR)
}

// noOpenat2 is set once openat2 turned out to be missing (ENOSYS, or
// EPERM from a seccomp filter that does not know it).
var noOpenat2 atomic.Bool

const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

func beneath(dirfd int, rel string, flags int, mode uint32) (int, error) {
	if !noOpenat2.Load() {
		how := unix.OpenHow{Flags: uint64(flags), Mode: uint64(mode), Resolve: resolve}
		for range 16 {
			fd, err := unix.Openat2(dirfd, rel, &how)
			switch err {
			case nil:
				return fd, nil
			case unix.EAGAIN, unix.EINTR: // a rename raced the lookup: look again
				continue
			case unix.ENOSYS, unix.EPERM: // EPERM: a seccomp filter older than openat2
				noOpenat2.Store(true)
			default:
				return -1, err
			}
			break
		}
		if !noOpenat2.Load() {
			return -1, unix.EAGAIN
		}
	}
	return walk(dirfd, rel, flags, mode)
}

// walk is beneath without openat2: each component opened with O_NOFOLLOW
// relative to the last. Paths are validated (no "..", no leading "/").
func walk(dirfd int, rel string, flags int, mode uint32) (int, error) {
	if strings.HasPrefix(rel, "/") || rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(rel, "/../") || strings.HasSuffix(rel, "/..") {
		return -1, unix.EXDEV
	}
	parts := strings.Split(rel, "/")
	cur := dirfd
	defer func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}()
	for _, p := range parts[:len(parts)-1] {
		fd, err := unix.Openat(cur, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		cur = fd
	}
	return unix.Openat(cur, parts[len(parts)-1], flags|unix.O_NOFOLLOW, mode)
}

// KeepTimes records the times of the directories rels beneath r (those
// that exist) and returns a func that sets the times of those that changed
// meanwhile to those of the same directory beneath from (the source), or
// back to what they were when from has none: a sync that creates or
// removes an entry in a directory outside its scopes must not leave that
// directory's times its own. Taking the source's, not the recorded ones,
// keeps concurrent runs under one parent from undoing each other. A nil
// from puts back the recorded times.
func (r *Root) KeepTimes(from *Root, rels []string) (restore func()) {
	type kept struct {
		rel string
		st  unix.Stat_t
	}
	var ks []kept
	for _, rel := range rels {
		var st unix.Stat_t
		if err := r.stat(rel, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			ks = append(ks, kept{rel, st})
		}
	}
	return func() {
		for _, k := range ks {
			var now unix.Stat_t
			if r.stat(k.rel, &now) != nil || now.Mtim == k.st.Mtim || now.Ino != k.st.Ino {
				continue
			}
			want := &k.st
			var src unix.Stat_t
			if from != nil && from.stat(k.rel, &src) == nil && src.Mode&unix.S_IFMT == unix.S_IFDIR {
				want = &src
			}
			fd, err := r.OpenDir(k.rel)
			if err != nil {
				continue
			}
			_ = Futimens(fd, want)
			unix.Close(fd)
		}
	}
}

// Lstat lstats rel beneath r ("" is the root): no symlink followed on the
// way, nor at rel itself.
func (r *Root) Lstat(rel string, st *unix.Stat_t) error { return r.stat(rel, st) }

// stat lstats rel beneath r ("" is the root).
func (r *Root) stat(rel string, st *unix.Stat_t) error {
	if rel == "" {
		return unix.Fstat(r.fd, st)
	}
	fd, name, err := r.OpenParent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fstatat(fd, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

// Futimens gives the open file or directory fd the access and modification
// times of st (utimensat on the descriptor itself).
func Futimens(fd int, st *unix.Stat_t) error {
	ts := [2]unix.Timespec{st.Atim, st.Mtim}
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); e != 0 {
		return fmt.Errorf("set times: %w", e)
	}
	return nil
}
