package copier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/internal/xattr"
)

// bigFile is the size from which a new file still open for writing is left
// for later (Options.OpenWait): below it, a copy costs less than the check.
const bigFile = 1 << 20

// SyncFlat brings the regular files directly in dir (not below) to the
// backup when that is all that differs, the common case of a directory
// whose files were written: new files and files whose size, mtime, mode or
// owner changed. Each is copied in the kernel under a temporary name and
// renamed into place, the file it replaces first linked into the trash
// (Options.Trash), so no half-copied file ever shows under a real name.
// Mode and owner changes are applied in place. Then the directory gets
// its source attributes, and done reports that nothing else differs.
//
// Of a non-recursive scope it also makes the rest of what rsync --dirs
// --delete would: an entry gone from the source is moved whole into the
// trash (one renameat beneath the backup root, as rsync --backup-dir
// would keep it; with no trash, or a MaxDelete cap, deletions stay
// rsync's), a new or changed symlink is made under a temporary name and
// renamed into place, a new subdirectory is made empty with its attributes
// (as rsync --dirs makes it: its content is its own scope's, the new
// directory's or the move's that brings it), and a subdirectory's own
// attributes are set.
//
// Anything else (a type change, a device or FIFO, a recursive scope's
// subdirectories) is rsync's: SyncFlat copies what it can and reports done
// false, and the rsync that follows finds those entries equal. The same
// when dir is missing on the backup.
//
// Files in skip are left alone, and so are new large files still being
// written (see Options.OpenWait), which it returns: the rsync that follows
// must leave those out as well.
//
// When files is not nil and the scope is not recursive, SyncFlat looks only
// at those (paths relative to the source root, see syncer.Job.Files) and at
// dir itself, without listing dir: done then says that they are in place
// (copied, or deleted where the source no longer has them).
//
// For a recursive scope, done also needs a directory without
// subdirectories on either side: then the scope holds nothing more.
//
// Files in verify (see syncer.Job.Verify) that look equal by size and
// mtime have their contents compared, and are copied where they differ.
func (c *Copier) SyncFlat(ctx context.Context, sc syncer.Scope, files, skip, verify []string) (st syncer.Stats, open []string, done bool, err error) {
	if err := syncer.CheckPath(sc.Dir); err != nil {
		return st, nil, false, err
	}
	t, err := c.open()
	if err != nil {
		return st, nil, false, err
	}
	defer func() {
		if cerr := t.close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	return c.syncFlat(ctx, t, sc, files, skip, verify)
}

// syncFlat is SyncFlat on open trees, which a batch of scopes shares: one
// stamp in the trash, one manifest, for all of them.
func (c *Copier) syncFlat(ctx context.Context, t *trees, sc syncer.Scope, files, skip, verify []string) (st syncer.Stats, open []string, done bool, err error) {
	dir := sc.Dir
	if err := syncer.CheckPath(dir); err != nil {
		return st, nil, false, err
	}
	var names []string
	if files != nil && !sc.Recursive {
		names = syncer.NamesIn(dir, files)
	}
	src, err := c.list(t.src, dir, names, skip)
	if errors.Is(err, unix.ENOENT) || osx.NotDir(err) {
		return st, nil, true, nil // gone (or no longer a directory): its parent's job carries it
	}
	if err != nil {
		return st, nil, false, err
	}
	defer unix.Close(src.fd)
	dst, err := c.list(t.dst, dir, names, skip)
	if osx.NotDir(err) {
		// Not a directory on the backup, or below one that is not: a
		// symlink planted there is moved aside, never written through, and
		// rsync creates the directory.
		bad, merr := misplaced(t.dst, dir)
		if merr == nil && bad != "" {
			_, merr = t.evict(bad)
		}
		return st, nil, false, merr
	}
	if errors.Is(err, unix.ENOENT) {
		return st, nil, false, nil
	}
	if err != nil {
		return st, nil, false, err
	}
	defer unix.Close(dst.fd)
	if dir == "" && c.opts.Trash != "" {
		delete(dst.ents, c.opts.Trash)
	}
	done = true
	r := &run{c: c, t: t, ctx: ctx}
	type copyJob struct {
		name    string
		replace bool
	}
	var copies, links []copyJob
	var newDirs, dirAttrs, gone []string
	for name, s := range src.ents {
		rel := join(dir, name)
		d, ok := dst.ents[name]
		sType, dType := s.Mode&unix.S_IFMT, d.Mode&unix.S_IFMT
		switch {
		case sc.Recursive && sType == unix.S_IFDIR:
			done = false // its content is rsync's
		case sType == unix.S_IFDIR && !ok:
			newDirs = append(newDirs, name)
		case sType == unix.S_IFDIR && dType == unix.S_IFDIR:
			if !sameEntry(&s, &d) {
				dirAttrs = append(dirAttrs, name)
			}
		case sType == unix.S_IFLNK && !ok:
			links = append(links, copyJob{name: name})
		case sType == unix.S_IFLNK && dType == unix.S_IFLNK:
			if !sameLink(src.fd, dst.fd, name, &s, &d) {
				links = append(links, copyJob{name: name, replace: true})
			}
		case sType != unix.S_IFREG:
			if !ok || !sameEntry(&s, &d) {
				done = false
			}
		case !ok:
			if s.Size >= bigFile && c.writing(src.fd, name) {
				open = append(open, rel)
				continue
			}
			copies = append(copies, copyJob{name: name})
		case d.Mode&unix.S_IFMT != unix.S_IFREG:
			done = false
		case s.Size != d.Size || s.Mtim != d.Mtim:
			copies = append(copies, copyJob{name: name, replace: true})
		case slices.Contains(verify, rel) && !sameContent(src.fd, dst.fd, name):
			copies = append(copies, copyJob{name: name, replace: true}) // the copy brings mode and owner
		default:
			// The same content: attributes alone may have changed.
			if s.Mode != d.Mode || s.Uid != d.Uid || s.Gid != d.Gid {
				if err := setAttrsAt(dst.fd, name, &s); err != nil {
					return st, open, false, fmt.Errorf("%s: %w", t.dst.Join(rel), err)
				}
			}
			if err := r.syncAttrs(xattr.At(src.fd, name), xattr.At(dst.fd, name), newer(&s, &d)); err != nil {
				return st, open, false, fmt.Errorf("%s: %w", t.dst.Join(rel), err)
			}
		}
	}
	for name := range dst.ents {
		if _, ok := src.ents[name]; !ok {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 && (c.opts.Trash == "" || c.opts.MaxDelete > 0) {
		done, gone = false, nil // rsync's: final deletions, or a cap to enforce
	}
	for _, name := range gone {
		if _, err := t.evict(join(dir, name)); err != nil && !errors.Is(err, unix.ENOENT) {
			return r.stats, open, false, fmt.Errorf("delete %s: %w", t.dst.Join(join(dir, name)), err)
		}
		r.stats.Deleted++
	}
	for _, j := range links {
		if err := r.link(src.fd, dst.fd, dir, j.name, j.replace); err != nil {
			return r.stats, open, false, err
		}
	}
	for _, name := range dirAttrs {
		s := src.ents[name]
		if err := setAttrsAt(dst.fd, name, &s); err != nil {
			return r.stats, open, false, fmt.Errorf("%s: %w", t.dst.Join(join(dir, name)), err)
		}
		if err := r.syncAttrs(xattr.At(src.fd, name), xattr.At(dst.fd, name), newer(&s, ptr(dst.ents[name]))); err != nil {
			return r.stats, open, false, fmt.Errorf("%s: %w", t.dst.Join(join(dir, name)), err)
		}
	}
	for _, name := range newDirs {
		// Made empty, as rsync --dirs makes it: its content is its own
		// scope's (a new directory's, a move's), which may move it here.
		s := src.ents[name]
		err := unix.Mkdirat(dst.fd, name, 0o700)
		if errors.Is(err, unix.EEXIST) {
			done = false // made meanwhile: rsync's
			continue
		}
		if err == nil {
			err = setAttrsAt(dst.fd, name, &s)
		}
		if err == nil {
			err = r.syncAttrs(xattr.At(src.fd, name), xattr.At(dst.fd, name), true)
		}
		if err != nil {
			return r.stats, open, false, fmt.Errorf("%s: %w", t.dst.Join(join(dir, name)), err)
		}
	}
	changed := len(gone)+len(links)+len(newDirs)+len(dirAttrs) > 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for _, j := range copies {
		g.Go(func() error { return r.place(gctx, src.fd, dst.fd, dir, j.name, j.replace) })
	}
	if err := g.Wait(); err != nil {
		return r.stats, open, false, err
	}
	s, d := &src.self, &dst.self
	if done {
		err = r.syncAttrs(xattr.Fd(src.fd), xattr.Fd(dst.fd), newer(&src.self, &dst.self))
	}
	if done && err == nil && (len(copies) > 0 || changed || s.Mode != d.Mode || s.Uid != d.Uid || s.Gid != d.Gid || s.Mtim != d.Mtim) {
		// As rsync leaves it: the directory's own attributes, its mtime
		// last (placing files changed it); owner and mode where they
		// differ, placing files changes neither.
		if s.Mode != d.Mode || s.Uid != d.Uid || s.Gid != d.Gid {
			_, err = setFdAttrs(dst.fd, s)
		} else {
			err = osx.Futimens(dst.fd, s)
		}
	}
	return r.stats, open, done && err == nil, err
}

// syncAttrs gives the backup entry dst the extended attributes and ACLs of
// the source entry src, where they differ. What the backup does not keep
// is counted when changed says the source changed since the backup entry
// was last written (see newer), not again on every look.
func (r *run) syncAttrs(src, dst xattr.Entry, changed bool) error {
	x, err := r.c.attrsOf(src)
	if err != nil {
		return err
	}
	dropped, err := r.c.applyAttrs(dst, x)
	if changed {
		r.drop(dropped)
	}
	return err
}

// newer reports whether the source entry s changed (ctime) after its
// backup d was last written: both on this host's clock.
func newer(s, d *unix.Stat_t) bool {
	return s.Ctim.Nano() > d.Ctim.Nano()
}

// sameContent reports whether the regular file name has the same bytes in
// the source directory sfd and the backup directory dfd; false when either
// cannot be read as one.
func sameContent(sfd, dfd int, name string) bool {
	a, ok, err := openSource(sfd, name)
	if err != nil || !ok {
		return false
	}
	defer unix.Close(a)
	b, ok, err := openSource(dfd, name)
	if err != nil || !ok {
		return false
	}
	defer unix.Close(b)
	x, y := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; {
		n, err := unix.Pread(a, x, off)
		if err != nil {
			return false
		}
		m, err := unix.Pread(b, y[:max(n, 1)], off)
		if err != nil || m != n || !bytes.Equal(x[:n], y[:m]) {
			return false
		}
		if n == 0 {
			return true
		}
		off += int64(n)
	}
}

// listing is an open directory, its entries (lstat) and its own attributes.
type listing struct {
	fd   int
	self unix.Stat_t
	ents map[string]unix.Stat_t
}

// list opens dir below root and reads it, leaving out excluded names and
// the paths in skip; with names, only those entries (missing ones are left
// out). The caller closes l.fd.
func (c *Copier) list(root *osx.Root, dir string, names, skip []string) (l listing, err error) {
	l.fd, err = root.OpenDir(dir)
	if err != nil {
		return listing{}, err
	}
	defer func() {
		if err != nil {
			unix.Close(l.fd)
		}
	}()
	if err := unix.Fstat(l.fd, &l.self); err != nil {
		return listing{}, &fs.PathError{Op: "stat", Path: root.Join(dir), Err: err}
	}
	l.ents = map[string]unix.Stat_t{}
	leave := func(name string) bool {
		return c.opts.Excludes.MatchIn(dir, name) || (len(skip) > 0 && slices.Contains(skip, join(dir, name)))
	}
	add := func(_ int, name string, st *unix.Stat_t) { l.ents[name] = *st }
	if names == nil {
		return l, osx.ListFd(l.fd, root.Join(dir), leave, add)
	}
	return l, osx.StatFd(l.fd, root.Join(dir), names, leave, add)
}

// sameEntry compares a non-regular entry the way rsync -a --dirs would
// look at it: type, mode, owner, and for devices the device number.
// Directories' and symlinks' times and symlink targets are left to rsync
// by calling them different.
func sameEntry(s, d *unix.Stat_t) bool {
	switch s.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return s.Mode == d.Mode && s.Uid == d.Uid && s.Gid == d.Gid && s.Mtim == d.Mtim
	case unix.S_IFLNK:
		return false
	}
	return s.Mode == d.Mode && s.Uid == d.Uid && s.Gid == d.Gid && s.Rdev == d.Rdev && s.Mtim == d.Mtim
}

func ptr[T any](v T) *T { return &v }

// sameLink compares two symlinks as rsync -a would: target, owner and
// mtime.
func sameLink(sfd, dfd int, name string, s, d *unix.Stat_t) bool {
	if s.Uid != d.Uid || s.Gid != d.Gid || s.Mtim != d.Mtim || s.Size != d.Size {
		return false
	}
	a, b := make([]byte, unix.PathMax), make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(sfd, name, a)
	if err != nil {
		return false
	}
	m, err := unix.Readlinkat(dfd, name, b)
	return err == nil && bytes.Equal(a[:n], b[:m])
}

// link makes the source symlink name of the directory sfd in the backup
// directory dfd: under a temporary name, then renamed into place, the one
// it replaces linked into the trash first.
func (r *run) link(sfd, dfd int, dir, name string, replace bool) error {
	var st unix.Stat_t
	if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		r.count(0, 0, true) // gone, or no longer a symlink: the next sync sees what it is
		return nil
	}
	tmp := fmt.Sprintf(".syncer-%x.tmp", rand.Uint64())
	if err := r.special(sfd, dfd, join(dir, name), name, &st, tmp); err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return err
	}
	var err error
	if replace {
		if err = r.t.toTrash(dfd, dir, name); err != nil {
			_ = unix.Unlinkat(dfd, tmp, 0)
			return err
		}
		err = unix.Renameat(dfd, tmp, dfd, name)
	} else if err = unix.Renameat2(dfd, tmp, dfd, name, unix.RENAME_NOREPLACE); errors.Is(err, unix.EEXIST) {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return nil // rsync's now
	}
	if err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("rename into %s: %w", r.t.dst.Join(join(dir, name)), err)
	}
	r.count(1, 0, false)
	return nil
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// place copies the source file name of the directory sfd to a temporary
// name in the backup directory dfd and renames it into place. A replaced
// file is linked into the trash first; a new one never replaces what
// appeared meanwhile.
func (r *run) place(ctx context.Context, sfd, dfd int, dir, name string, replace bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	in, ok, err := openSource(sfd, name)
	if err != nil {
		return fmt.Errorf("open %s: %w", r.t.src.Join(join(dir, name)), err)
	}
	if !ok {
		r.count(0, 0, true)
		return nil
	}
	defer unix.Close(in)
	tmp := fmt.Sprintf(".syncer-%x.tmp", rand.Uint64())
	n, dropped, err := r.c.copyFile(in, dfd, tmp)
	r.drop(dropped)
	if err != nil {
		return fmt.Errorf("%s: %w", r.t.dst.Join(dir), err)
	}
	if replace {
		if err := r.t.toTrash(dfd, dir, name); err != nil {
			_ = unix.Unlinkat(dfd, tmp, 0)
			return err
		}
		err = unix.Renameat(dfd, tmp, dfd, name)
	} else {
		err = unix.Renameat2(dfd, tmp, dfd, name, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			_ = unix.Unlinkat(dfd, tmp, 0)
			return nil // rsync's now
		}
	}
	if err != nil {
		_ = unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("rename into %s: %w", r.t.dst.Join(join(dir, name)), err)
	}
	r.count(1, n, false)
	return nil
}

// toTrash links the backup file name of the directory dfd (dir, below the
// backup root) into this call's trash directory, as rsync --backup-dir does.
func (t *trees) toTrash(dfd int, dir, name string) error {
	if t.trash == "" {
		return nil
	}
	tfd, err := t.trashDir(join(dir, name))
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	err = unix.Linkat(dfd, name, tfd, name, 0)
	if errors.Is(err, unix.EEXIST) {
		if err = unix.Unlinkat(tfd, name, 0); err == nil {
			err = unix.Linkat(dfd, name, tfd, name, 0)
		}
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("trash: %w", err)
	}
	if err == nil {
		t.displace(join(dir, name))
	}
	return nil
}
