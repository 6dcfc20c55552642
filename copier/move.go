package copier

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/index"
	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/versions"
)

// Mover makes directory moves on a local backup (syncer.Mover): one rename
// beneath the backup root instead of a deletion and a copy.
type Mover struct {
	Copier *Copier
	// Index, when set, says what each backup path was synced from (the
	// source directory's inode), so that a move takes only the directory
	// that was synced from the one that moved, and finds it where another
	// move put it aside. Without it, what the backup has at From is taken
	// as that directory: the sync that follows corrects what differs.
	Index *index.Index
}

var _ syncer.Mover = Mover{}

// Move renames the backup's m.From to m.To when the source has, at m.To,
// the directory m.Ino (not at m.From any more) and the backup still has
// what was synced from it: at m.From, or where a move into its place put it
// aside. What the backup has at m.To is put aside first, into the trash, as
// a sync would (a version, found there by the move that wants it). The
// parents on the backup keep their times: their own syncs set them. It
// never follows a symlink on either side. It reports whether it moved,
// and the bytes of the regular files now at m.To: what a copy would have
// written.
func (mv Mover) Move(ctx context.Context, m syncer.Move) (moved bool, bytes int64, err error) {
	if err := m.Check(); err != nil {
		return false, 0, err
	}
	t, err := mv.Copier.open()
	if err != nil {
		return false, 0, err
	}
	defer func() {
		if cerr := t.close(); err == nil {
			err = cerr
		}
	}()
	for _, p := range []string{m.From, m.To} {
		if t.trash != "" && (p == t.trash || syncer.IsAncestor(t.trash, p)) {
			return false, 0, nil // the trash is not the source's to move
		}
	}
	if !isDir(t.src, m.To, m.Ino) || isDir(t.src, m.From, m.Ino) {
		return false, 0, nil // moved on again, or back: a later move, or the sync, has it
	}
	from, ok, err := mv.synced(t, m)
	if !ok || err != nil {
		return false, 0, err
	}
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	// The target's parents, made if missing; its place, cleared.
	tfd, err := mkdirAll(t.dst, syncer.Parent(m.To))
	if err != nil {
		return false, 0, err
	}
	defer unix.Close(tfd)
	// The parents' times before anything here changes them.
	var tst unix.Stat_t
	if err := unix.Fstat(tfd, &tst); err != nil {
		return false, 0, err
	}
	name := m.To[strings.LastIndexByte(m.To, '/')+1:]
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil &&
		(st.Mode&unix.S_IFMT != unix.S_IFDIR || unix.Unlinkat(tfd, name, unix.AT_REMOVEDIR) != nil) {
		// Not an empty directory (which a sync of the parent makes for a
		// new one): a version, as a sync would keep it.
		at, err := t.evict(m.To)
		if err != nil {
			return false, 0, err
		}
		if mv.Index != nil {
			if r, ok, _ := mv.Index.Entry(m.To); ok && r.Dir {
				if err := mv.Index.Displace(r.Ino, at); err != nil {
					return false, 0, err
				}
			}
		}
	}
	ffd, fname, err := t.dst.OpenParent(from)
	if err != nil {
		return false, 0, err
	}
	defer unix.Close(ffd)
	var fst unix.Stat_t
	if err := unix.Fstat(ffd, &fst); err != nil {
		return false, 0, err
	}
	if fst.Ino == tst.Ino {
		fst = tst // the same parent
	}
	if err := unix.Renameat2(ffd, fname, tfd, name, unix.RENAME_NOREPLACE); err != nil {
		return false, 0, fmt.Errorf("move %s to %s on the backup: %w", t.dst.Join(from), t.dst.Join(m.To), err)
	}
	_ = osx.Futimens(ffd, &fst)
	_ = osx.Futimens(tfd, &tst)
	if from != m.From {
		mv.tidyTrash(t, from)
	}
	if mv.Index != nil {
		if err := mv.Index.Move(m.From, m.To, index.Record{Ino: m.Ino, Dir: true}); err != nil {
			return true, 0, err
		}
	}
	bytes, err = treeBytes(t.dst, m.To)
	return true, bytes, err
}

// synced finds, beneath the backup root, the directory last synced from
// the source directory m.Ino: m.From, unless the index says m.From was
// synced from another one; else where a move put it aside.
func (mv Mover) synced(t *trees, m syncer.Move) (string, bool, error) {
	if mv.Index == nil {
		return m.From, isDir(t.dst, m.From, 0), nil
	}
	r, ok, err := mv.Index.Entry(m.From)
	if err != nil {
		return "", false, err
	}
	if (!ok || (r.Dir && r.Ino == m.Ino)) && isDir(t.dst, m.From, 0) {
		return m.From, true, nil
	}
	at, ok, err := mv.Index.Displaced(m.Ino)
	if err != nil || !ok {
		return "", false, err
	}
	if syncer.CheckFile(at) != nil || !strings.HasPrefix(at, t.trash+"/") || !isDir(t.dst, at, 0) {
		return "", false, nil
	}
	return at, true, nil
}

// tidyTrash removes the directories a move out of the trash left empty
// between at and its stamp, and writes that stamp's manifest again.
func (mv Mover) tidyTrash(t *trees, at string) {
	rest := strings.TrimPrefix(at, t.trash+"/")
	stamp, _, _ := strings.Cut(rest, "/")
	for d := syncer.Parent(at); d != t.trash && strings.HasPrefix(d, t.trash+"/"); d = syncer.Parent(d) {
		pfd, name, err := t.dst.OpenParent(d)
		if err != nil {
			break
		}
		err = unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
		unix.Close(pfd)
		if err != nil {
			break // not empty: the rest of that run's versions
		}
	}
	_ = versions.Record(t.dst, t.trash, stamp)
}

// isDir reports whether rel beneath root is a directory, reached and
// judged without following symlinks, with inode ino (any, when 0).
func isDir(root *osx.Root, rel string, ino uint64) bool {
	fd, name, err := root.OpenParent(rel)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && (ino == 0 || st.Ino == ino)
}

// treeBytes sums the sizes of the regular files below rel.
func treeBytes(root *osx.Root, rel string) (int64, error) {
	var n int64
	dirs := []string{rel}
	for len(dirs) > 0 {
		d := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		err := root.ListDir(d, func(string) bool { return false }, func(_ int, name string, st *unix.Stat_t) {
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				n += st.Size
			case unix.S_IFDIR:
				dirs = append(dirs, d+"/"+name)
			}
		})
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return n, err
		}
	}
	return n, nil
}
