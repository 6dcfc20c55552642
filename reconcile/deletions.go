package reconcile

import (
	"context"
	"errors"
	"io/fs"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/osx"
)

// Deletions counts, per project, the backup entries a sync of scopes would
// delete (rsync --delete, the entries moved to the trash): the entries of a
// scope's directory that the source lacks or has with another type, with
// everything below them, and for a recursive scope the same at every level
// below. A scope whose source directory is gone deletes nothing (its
// parent's run does). It reads only; opts names the trees as for Walk.
//
// files maps the Dir of a non-recursive scope to the only files its sync
// looks at (syncer.Hints.Files, paths relative to the source root): there
// only those are counted, without listing the directory. Whatever syncs
// such a scope whole must count it whole first.
func Deletions(ctx context.Context, opts Options, scopes []syncer.Scope, files map[string][]string) (map[string]int64, error) {
	src, err := osx.OpenRoot(opts.Source)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dst, err := osx.OpenRoot(opts.Dest)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	c := counter{ctx: ctx, src: src, dst: dst, opts: opts}
	out := map[string]int64{}
	for _, s := range scopes {
		if s.Dir == "" {
			// The root's run deletes whole projects: each counts for its own.
			if err := c.root(s.Recursive, out); err != nil {
				return nil, err
			}
			continue
		}
		var n int64
		if names, ok := files[s.Dir]; ok && !s.Recursive {
			n, err = c.named(s.Dir, names)
		} else {
			n, err = c.deletions(s.Dir, s.Recursive)
		}
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out[s.Project()] += n
		}
	}
	return out, nil
}

// root counts into out, by project, what a sync of the root deletes.
func (c *counter) root(recursive bool, out map[string]int64) error {
	src, err := list(c.src, "", c.skip(""))
	if err != nil || src == nil {
		return err
	}
	dst, err := list(c.dst, "", c.skip(""))
	if err != nil {
		return err
	}
	for name, typ := range dst {
		var n int64
		switch st, ok := src[name]; {
		case !ok || st != typ:
			if n, err = c.gone(name, typ); err != nil {
				return err
			}
		case recursive && typ == unix.S_IFDIR:
			if n, err = c.deletions(name, true); err != nil {
				return err
			}
		}
		if n > 0 {
			out[name] += n
		}
	}
	return nil
}

// Entries counts the entries of the backup below dir (the directory
// itself not included).
func Entries(ctx context.Context, opts Options, dir string) (int64, error) {
	dst, err := osx.OpenRoot(opts.Dest)
	if err != nil {
		return 0, err
	}
	defer dst.Close()
	c := counter{ctx: ctx, dst: dst, opts: opts}
	return c.below(dir)
}

type counter struct {
	ctx      context.Context
	src, dst *osx.Root
	opts     Options
}

func (c *counter) skip(dir string) func(string) bool {
	return func(name string) bool {
		return c.opts.Excludes.MatchIn(dir, name) || (dir == "" && slices.Contains(c.opts.IgnoreDest, name))
	}
}

// list returns the names of dir's entries by type (unix.S_IFMT bits);
// none when dir is not there.
func list(r *osx.Root, dir string, skip func(string) bool) (map[string]uint32, error) {
	out := map[string]uint32{}
	err := r.ListTypes(dir, skip, func(name string, typ uint32) { out[name] = typ })
	if errors.Is(err, fs.ErrNotExist) || osx.NotDir(err) {
		return nil, nil
	}
	return out, err
}

func (c *counter) deletions(dir string, recursive bool) (int64, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	src, err := list(c.src, dir, c.skip(dir))
	if err != nil || src == nil {
		return 0, err
	}
	dst, err := list(c.dst, dir, c.skip(dir))
	if err != nil {
		return 0, err
	}
	var n int64
	for name, typ := range dst {
		var m int64
		switch st, ok := src[name]; {
		case !ok || st != typ:
			m, err = c.gone(syncer.Join(dir, name), typ)
		case recursive && typ == unix.S_IFDIR:
			m, err = c.deletions(syncer.Join(dir, name), true)
		}
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}

// gone counts the backup entry rel, of type typ, deleted: itself and,
// for a directory, everything below it.
func (c *counter) gone(rel string, typ uint32) (int64, error) {
	if typ != unix.S_IFDIR {
		return 1, nil
	}
	below, err := c.below(rel)
	return 1 + below, err
}

// named counts what a sync of dir that looks only at files deletes: those
// of them the backup has and the source lacks or has with another type,
// with everything below them.
func (c *counter) named(dir string, files []string) (int64, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	names := syncer.NamesIn(dir, files)
	src, err := stats(c.src, dir, names, c.skip(dir))
	if err != nil || src == nil {
		return 0, err
	}
	dst, err := stats(c.dst, dir, names, c.skip(dir))
	if err != nil {
		return 0, err
	}
	var n int64
	for name, typ := range dst {
		if st, ok := src[name]; ok && st == typ {
			continue
		}
		m, err := c.gone(syncer.Join(dir, name), typ)
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}

// stats is list for names alone: the types of those dir has.
func stats(r *osx.Root, dir string, names []string, skip func(string) bool) (map[string]uint32, error) {
	out := map[string]uint32{}
	err := r.StatAt(dir, names, skip, func(_ int, name string, st *unix.Stat_t) { out[name] = st.Mode & unix.S_IFMT })
	if errors.Is(err, fs.ErrNotExist) || osx.NotDir(err) {
		return nil, nil
	}
	return out, err
}

// below counts the backup's entries below dir.
func (c *counter) below(dir string) (int64, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	var dirs []string
	err := c.dst.ListDir(dir, c.skip(dir), func(_ int, name string, st *unix.Stat_t) {
		n++
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			dirs = append(dirs, syncer.Join(dir, name))
		}
	})
	if errors.Is(err, fs.ErrNotExist) || osx.NotDir(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		m, err := c.below(d)
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}
