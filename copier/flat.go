package copier

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/osx"
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
// Anything else (an entry to delete, a new subdirectory, a symlink, a
// subdirectory's attributes, a type change) is rsync's: SyncFlat copies
// what it can and reports done false, and the rsync that follows finds
// those files equal. The same when dir is missing on the backup.
//
// Files in skip are left alone, and so are new large files still being
// written (see Options.OpenWait), which it returns: the rsync that follows
// must leave those out as well.
//
// When files is not nil and the scope is not recursive, SyncFlat looks only
// at those (paths relative to the source root, see syncer.Job.Files) and at
// dir itself, without listing dir: done then says that they are in place.
//
// For a recursive scope, done also needs a directory without
// subdirectories on either side: then the scope holds nothing more.
func (c *Copier) SyncFlat(ctx context.Context, sc syncer.Scope, files, skip []string) (st syncer.Stats, open []string, done bool, err error) {
	dir := sc.Dir
	var names []string
	if files != nil && !sc.Recursive {
		names = make([]string, 0, len(files))
		for _, f := range files {
			if f != dir && syncer.Parent(f) == dir {
				names = append(names, strings.TrimPrefix(f[len(dir):], "/"))
			}
		}
	}
	src, err := c.list(c.opts.Source, dir, names, skip)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil, true, nil // gone: its parent's job carries the removal
	}
	if err != nil {
		return st, nil, false, err
	}
	dst, err := c.list(c.opts.Dest, dir, names, skip)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return st, nil, false, nil
	}
	if err != nil {
		return st, nil, false, err
	}
	if dir == "" && c.opts.Trash != "" {
		delete(dst.ents, c.opts.Trash)
	}
	done = true
	type copyJob struct {
		rel     string
		st      unix.Stat_t
		replace bool
	}
	var copies []copyJob
	for name, s := range src.ents {
		rel := join(dir, name)
		d, ok := dst.ents[name]
		switch {
		case sc.Recursive && s.Mode&unix.S_IFMT == unix.S_IFDIR:
			done = false // its content is rsync's
		case s.Mode&unix.S_IFMT != unix.S_IFREG:
			if !ok || !sameEntry(&s, &d) {
				done = false
			}
		case !ok:
			if s.Size >= bigFile && c.writing(rel) {
				open = append(open, rel)
				continue
			}
			copies = append(copies, copyJob{rel: rel, st: s})
		case d.Mode&unix.S_IFMT != unix.S_IFREG:
			done = false
		case s.Size != d.Size || s.Mtim != d.Mtim:
			copies = append(copies, copyJob{rel: rel, st: s, replace: true})
		case s.Mode != d.Mode || s.Uid != d.Uid || s.Gid != d.Gid:
			if err := setAttrs(syncer.Join(c.opts.Dest, rel), &s); err != nil {
				return st, open, false, err
			}
		}
	}
	for name := range dst.ents {
		if _, ok := src.ents[name]; !ok {
			done = false // a deletion: rsync's, with its cap and trash
		}
	}
	r := &run{c: c, ctx: ctx}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for _, j := range copies {
		g.Go(func() error { return r.place(gctx, j.rel, &j.st, j.replace) })
	}
	if err := g.Wait(); err != nil {
		return r.stats, open, false, err
	}
	s, d := &src.self, &dst.self
	if done && (len(copies) > 0 || s.Mode != d.Mode || s.Uid != d.Uid || s.Gid != d.Gid || s.Mtim != d.Mtim) {
		// As rsync leaves it: the directory's own attributes, its mtime
		// last (placing files changed it).
		err = setAttrs(syncer.Join(c.opts.Dest, dir), s)
	}
	return r.stats, open, done && err == nil, err
}

// listing is a directory's entries (lstat) and its own attributes.
type listing struct {
	self unix.Stat_t
	ents map[string]unix.Stat_t
}

// list reads root/dir, leaving out excluded names and the paths in skip;
// with names, only those entries (missing ones are left out).
func (c *Copier) list(root, dir string, names, skip []string) (listing, error) {
	p := syncer.Join(root, dir)
	var l listing
	if err := unix.Lstat(p, &l.self); err != nil {
		return listing{}, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	l.ents = map[string]unix.Stat_t{}
	leave := func(name string) bool {
		return syncer.Excluded(c.opts.Excludes, name) || (len(skip) > 0 && slices.Contains(skip, join(dir, name)))
	}
	if names == nil {
		err := osx.ListDir(p, leave, func(_ int, name string, st *unix.Stat_t) { l.ents[name] = *st })
		return l, err
	}
	err := osx.StatAt(p, names, leave, func(_ int, name string, st *unix.Stat_t) { l.ents[name] = *st })
	return l, err
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

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// place copies the source file rel to a temporary name next to its backup
// path and renames it into place. A replaced file is linked into the trash
// first; a new one never replaces what appeared meanwhile.
func (r *run) place(ctx context.Context, rel string, st *unix.Stat_t, replace bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dst := syncer.Join(r.c.opts.Dest, rel)
	tmp := filepath.Join(filepath.Dir(dst), fmt.Sprintf(".syncer-%x.tmp", rand.Uint64()))
	n, err := copyFile(syncer.Join(r.c.opts.Source, rel), tmp, st)
	if errors.Is(err, fs.ErrNotExist) {
		r.count(0, 0, true)
		return nil
	}
	if err != nil {
		return err
	}
	if replace {
		if err := r.c.toTrash(rel); err != nil {
			_ = os.Remove(tmp)
			return err
		}
		err = unix.Rename(tmp, dst)
	} else {
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			_ = os.Remove(tmp)
			return nil // rsync's now
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rename into %s: %w", dst, err)
	}
	r.count(1, n, false)
	return nil
}

// toTrash links the backup file rel into today's trash, replacing an older
// copy of the same day, as rsync --backup-dir does.
func (c *Copier) toTrash(rel string) error {
	if c.opts.Trash == "" {
		return nil
	}
	now := time.Now
	if c.opts.Now != nil {
		now = c.opts.Now
	}
	to := filepath.Join(c.opts.Dest, c.opts.Trash, now().Format("2006-01-02"), rel)
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return fmt.Errorf("trash: %w", err)
	}
	err := os.Link(syncer.Join(c.opts.Dest, rel), to)
	if errors.Is(err, fs.ErrExist) {
		if err = os.Remove(to); err == nil {
			err = os.Link(syncer.Join(c.opts.Dest, rel), to)
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("trash: %w", err)
	}
	return nil
}
