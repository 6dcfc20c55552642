package copier

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/internal/xattr"
	"github.com/syncer/syncer/versions"
)

// File-system calls on descriptors. Nothing here resolves a path through a
// symlink: entries are reached through their open parent directory (*at
// calls with AT_SYMLINK_NOFOLLOW / O_NOFOLLOW), directories below a tree
// root through osx.Root, and attributes go on open descriptors.

// trees are the two roots of one Copy or SyncFlat call (or of one
// Syncer.Sync's flat scopes), opened at its start.
type trees struct {
	src, dst *osx.Root
	trash    string         // the trash directory's name, "" for none
	stamp    string         // where this call's displaced entries go below trash
	mu       sync.Mutex     // guards made and displaced: a call's copies run in parallel
	made     map[string]int // trash directories open, by path below the backup root
	// displaced are the entries moved or linked into the trash, by path
	// below the stamp's directory: the manifest's lines.
	displaced []string
}

func (c *Copier) open() (*trees, error) {
	src, err := osx.OpenRoot(c.opts.Source)
	if err != nil {
		return nil, err
	}
	dst, err := osx.OpenRoot(c.opts.Dest)
	if err != nil {
		src.Close()
		return nil, err
	}
	return &trees{src: src, dst: dst, trash: c.opts.Trash, stamp: versions.Stamp(c.now())}, nil
}

// close records what the call displaced (versions.RecordOnly) and closes the roots.
func (t *trees) close() error {
	var err error
	if t.trash != "" && len(t.displaced) > 0 {
		err = versions.RecordOnly(t.dst, t.trash, t.stamp, t.displaced)
	}
	for _, fd := range t.made {
		unix.Close(fd)
	}
	t.src.Close()
	t.dst.Close()
	return err
}

func dup(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

// setFdAttrs gives the open file or directory fd the owner, mode and times
// of st, in the order that keeps setuid bits (chown clears them).
func setFdAttrs(fd int, st *unix.Stat_t) (int64, error) {
	return (*Copier)(nil).setFdAttrs(fd, st, nil)
}

// setFdAttrs gives the open file or directory fd the owner, extended
// attributes and ACLs (x, see Options.Keep), mode and times of st, in the
// order that keeps setuid bits and capabilities (chown clears both). It
// returns the count of attributes the backup did not keep. A nil Copier
// sets no attributes.
func (c *Copier) setFdAttrs(fd int, st *unix.Stat_t, x []xattr.Attr) (int64, error) {
	if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, unix.EPERM) {
		return 0, fmt.Errorf("chown: %w", err)
	}
	dropped, err := c.applyAttrs(xattr.Fd(fd), x)
	if err != nil {
		return dropped, err
	}
	if err := unix.Fchmod(fd, st.Mode&0o7777); err != nil {
		return dropped, fmt.Errorf("chmod: %w", err)
	}
	return dropped, osx.Futimens(fd, st)
}

// applyAttrs makes the attributes of e those of x (read by attrsOf) of the
// kinds the backup takes, and counts what it did not keep: the kinds it
// does not take, and values it refused.
func (c *Copier) applyAttrs(e xattr.Entry, x []xattr.Attr) (int64, error) {
	if c == nil || c.opts.Keep == xattr.None {
		return 0, nil
	}
	var lost int64
	for _, a := range x {
		if xattr.KindOf(a.Name)&c.opts.Takes == 0 {
			lost++
		}
	}
	keep := c.opts.Keep & c.opts.Takes
	if keep == xattr.None {
		return lost, nil
	}
	_, dropped, err := e.Apply(x, keep)
	return lost + dropped.Total(), err
}

// attrsOf reads the attributes of e of the kinds in Options.Keep.
func (c *Copier) attrsOf(e xattr.Entry) ([]xattr.Attr, error) {
	if c.opts.Keep == xattr.None {
		return nil, nil
	}
	return e.List(c.opts.Keep)
}

// setAttrsAt gives the entry name of dirfd (a symlink, device, FIFO or
// socket; or a file whose mode or owner alone changed) the owner, mode and
// times of st, without following it.
func setAttrsAt(dirfd int, name string, st *unix.Stat_t) error {
	if err := unix.Fchownat(dirfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := chmodAt(dirfd, name, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", name, err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times %s: %w", name, err)
	}
	return nil
}

// chmodAt changes the mode of the entry name of dirfd, never through a
// symlink: fchmodat2 with AT_SYMLINK_NOFOLLOW (Linux 6.6), else the
// entry opened with O_PATH and changed through its /proc/self/fd link,
// which names the inode itself (glibc's own fallback). Opening a device
// to fchmod it could rewind a tape: O_PATH opens nothing.
func chmodAt(dirfd int, name string, mode uint32) error {
	err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return err // EPERM too: a seccomp filter that does not know fchmodat2
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.ELOOP
	}
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}

// mkdirAll makes sure the directory rel exists below root, creating missing
// components with mode 0700, and returns it open. A component that exists
// and is not a directory fails (NotDir): it is never followed.
func mkdirAll(root *osx.Root, rel string) (int, error) {
	cur, err := dup(root.Fd())
	if err != nil {
		return -1, err
	}
	if rel == "" {
		return cur, nil
	}
	for c := range strings.SplitSeq(rel, "/") {
		next, err := mkdirAt(cur, c, root.Join(rel))
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// mkdirAt makes the directory name in the directory parent (0700) unless
// it is there, and opens it, never through a symlink; path is for errors.
func mkdirAt(parent int, name, path string) (int, error) {
	if err := unix.Mkdirat(parent, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// misplaced finds the first component of rel that exists on the backup but
// is not a directory (a symlink planted there, or a file where the source
// now has a directory), and returns its path; "" when every existing
// component is a directory.
func misplaced(root *osx.Root, rel string) (string, error) {
	if rel == "" {
		return "", nil
	}
	cur, err := dup(root.Fd())
	if err != nil {
		return "", err
	}
	defer func() { unix.Close(cur) }()
	done := 0
	for c := range strings.SplitSeq(rel, "/") {
		var st unix.Stat_t
		if err := unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return "", nil
			}
			return "", &os.PathError{Op: "lstat", Path: root.Join(rel), Err: err}
		}
		done += len(c) + 1
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return rel[:done-1], nil
		}
		next, err := unix.Openat(cur, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if osx.NotDir(err) {
				return rel[:done-1], nil // swapped meanwhile
			}
			return "", &os.PathError{Op: "open", Path: root.Join(rel), Err: err}
		}
		unix.Close(cur)
		cur = next
	}
	return "", nil
}

// now is the trash clock.
func (c *Copier) now() time.Time {
	if c.opts.Now != nil {
		return c.opts.Now()
	}
	return time.Now()
}

// trashDir opens (creating it) the trash directory that will hold the
// backup entry rel: Trash/<stamp>/<parent of rel>.
func (t *trees) trashDir(rel string) (int, error) {
	d := t.trash + "/" + t.stamp
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		d += "/" + rel[:i]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fd, err := t.made1(d)
	if err != nil {
		return -1, fmt.Errorf("trash: %w", err)
	}
	return dup(fd)
}

// displace notes rel (below the stamp's directory) for the manifest.
func (t *trees) displace(rel string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.displaced = append(t.displaced, rel)
}

// made1 returns the trash directory d (a path below the backup root),
// made if missing, from the nearest of its parents made before: each is
// made and opened once per call, kept open for the next entry displaced
// beside it (the stamp is this call's alone, so nobody else renames what
// is below it). t.mu is held.
func (t *trees) made1(d string) (int, error) {
	if fd, ok := t.made[d]; ok {
		return fd, nil
	}
	parent := t.dst.Fd()
	if i := strings.LastIndexByte(d, '/'); i >= 0 {
		var err error
		if parent, err = t.made1(d[:i]); err != nil {
			return -1, err
		}
	}
	fd, err := mkdirAt(parent, d[strings.LastIndexByte(d, '/')+1:], t.dst.Join(d))
	if err != nil {
		return -1, err
	}
	if t.made == nil {
		t.made = map[string]int{}
	}
	t.made[d] = fd
	return fd, nil
}

// evict moves the backup entry rel, whose type is not the source's, out of
// the way into the trash, as rsync replaces it (--backup): never written
// through, never followed; it returns where it went. Without a trash it is
// removed (a symlink or a file; a directory in the way is left to rsync).
func (t *trees) evict(rel string) (at string, err error) {
	dst := t.dst
	pfd, name, err := dst.OpenParent(rel)
	if err != nil {
		return "", err
	}
	defer unix.Close(pfd)
	// The parent may lie outside the scope being synced: it keeps the
	// times its own last sync gave it.
	var pst unix.Stat_t
	if err := unix.Fstat(pfd, &pst); err != nil {
		return "", err
	}
	defer func() { _ = osx.Futimens(pfd, &pst) }()
	if t.trash == "" {
		return "", unix.Unlinkat(pfd, name, 0)
	}
	tfd, err := t.trashDir(rel)
	if err != nil {
		return "", err
	}
	defer unix.Close(tfd)
	to := name
	for i := 0; ; i++ {
		err = unix.Renameat2(pfd, name, tfd, to, unix.RENAME_NOREPLACE)
		if !errors.Is(err, unix.EEXIST) || i == 100 {
			break
		}
		to = fmt.Sprintf("%s.~%d~", name, i+1) // an earlier one of the same day
	}
	if err != nil {
		return "", fmt.Errorf("move %s into the trash: %w", dst.Join(rel), err)
	}
	t.displace(path.Join(syncer.Parent(rel), to))
	return path.Join(t.trash, t.stamp, syncer.Parent(rel), to), nil
}
