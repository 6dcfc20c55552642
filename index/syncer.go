package index

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/osx"
)

// Margin is how long before a sync started a file's last change must be
// for the sync to be known to have it: a change within it may have come
// after the copy read the file (the kernel's file times run on a clock
// that lags by up to a tick), and is left unrecorded.
const Margin = 20 * time.Millisecond

// Unknown is the ctime of a record whose file changed while it was synced:
// it matches no file, so the file's content is compared once it looks
// equal by size and mtime.
const Unknown = 0

// Syncer records, once Next synced scopes, the regular files of those
// scopes as the source has them (Recorder.Record). A failed sync records
// nothing. Before the sync it asks Next to compare the contents of the
// files of flat scopes that were rewritten keeping their size and mtime
// since they were recorded (Recorder.Suspects): a live `touch -r` or
// `cp -p` over a file reaches the backup within the usual lag.
type Syncer struct {
	Recorder *Recorder
	Next     syncer.Syncer
}

var _ syncer.Syncer = Syncer{}

// Sync syncs with Next, then records.
func (s Syncer) Sync(ctx context.Context, scopes []syncer.Scope, h syncer.Hints) (syncer.Stats, error) {
	start := time.Now()
	if v := s.Recorder.Suspects(scopes, h); len(v) > 0 {
		h.Verify = append(slices.Clone(h.Verify), v...)
	}
	kept := s.Recorder.custody(scopes, h)
	st, err := s.Next.Sync(ctx, scopes, h)
	var open *syncer.OpenFilesError
	var covered map[string]bool
	if err == nil || errors.As(err, &open) {
		covered = s.Recorder.record(scopes, h, start)
	}
	if err == nil {
		kept(covered)
	}
	return st, err
}

// custody finds the flat scopes a successful sync leaves known equal,
// and returns what then records what their backup directory is after it
// (Clean), given what Record found of each (covered):
//   - a scope synced whole (no named files): the sync compares every entry,
//     so the directory is equal as the source was before it;
//   - a scope whose named files were the only differences the reconcile
//     walk found (Index.Expect), both sides unchanged since;
//   - a scope whose backup directory is what its Clean says: a sync makes
//     entries equal, so a directory known equal stays so through syncer's
//     own writes.
//
// A scope with entries the sync leaves out (h.Open) is not. What this
// leaves is for a reconcile to compare; each entry is still checked
// against its record (see Clean). With no local backup (Dest empty) there
// is nothing to keep.
//
// The backup directory is listed by the records (Clean.Listed) when every
// entry a sync of the whole directory leaves there has a record of its
// kind, or, for a sync of named files, when it was so before and each of
// them now has a record or is gone: after a sync, the backup's entries
// are the source's. Like the stamp, that trusts nobody else to write the
// directory during the sync; a deep reconcile reads it anyway.
func (r *Recorder) custody(scopes []syncer.Scope, h syncer.Hints) (kept func(covered map[string]bool)) {
	nop := func(map[string]bool) {}
	if r == nil || r.Index == nil || r.Dest == "" {
		return nop
	}
	src, err := osx.OpenRoot(r.Source)
	if err != nil {
		return nop
	}
	defer src.Close()
	dst, err := osx.OpenRoot(r.Dest)
	if err != nil {
		return nop
	}
	type held struct {
		dir   string
		clean Clean
		// listed: Listed before the sync, or a sync of the whole
		// directory, where what Record covered says it all.
		listed bool
	}
	var hs []held
	for _, sc := range scopes {
		if sc.Recursive || slices.ContainsFunc(h.Open, func(p string) bool { return syncer.Parent(p) == sc.Dir }) {
			continue // below a recursive one, directories change with no record of it
		}
		var ss, ds unix.Stat_t
		if src.Lstat(sc.Dir, &ss) != nil || dst.Lstat(sc.Dir, &ds) != nil || ss.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		now := Clean{Src: Stamp(&ss), Dst: Stamp(&ds)}
		files := h.Files[sc.Dir]
		if files == nil && ss.Ctim.Nano() < time.Now().Add(-Margin).UnixNano() {
			// (Changed within a clock tick, the source directory may
			// change again with its times unmoved: not recorded.)
			hs = append(hs, held{sc.Dir, now, true})
		} else if e, ok := r.Index.expected(sc.Dir, files); ok && e.Src == now.Src && e.Dst == now.Dst {
			hs = append(hs, held{sc.Dir, e, files == nil || e.Listed})
		} else if c, ok, err := r.Index.Clean(sc.Dir); err == nil && ok && c.Dst == now.Dst {
			hs = append(hs, held{sc.Dir, c, files == nil || c.Listed})
		}
	}
	if len(hs) == 0 {
		dst.Close()
		return nop
	}
	return func(covered map[string]bool) {
		defer dst.Close()
		for _, h := range hs {
			var st unix.Stat_t
			if dst.Lstat(h.dir, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				h.clean.Dst = Stamp(&st)
				h.clean.Listed = h.listed && covered[h.dir]
				r.Index.Queue(Update{Dir: h.dir, Clean: &h.clean})
			}
		}
	}
}

// Recorder writes the records of synced directories.
type Recorder struct {
	Index  *Index
	Source string
	// Dest is the local backup's root, where what a Clean says of its
	// directories is kept through syncs ("": none).
	Dest     string
	Excludes *syncer.Excludes
	Logger   *zap.Logger
}

// Record records the regular files of scopes (the files a flat scope's
// job named, when it named some) whose last change is older than the sync
// that started at start (Margin); files in h.Open are left out, being
// left out of the backup. A failure is logged, not returned: without a
// record, a file is compared by its size and mtime.
func (r *Recorder) Record(scopes []syncer.Scope, h syncer.Hints, start time.Time) {
	r.record(scopes, h, start)
}

// record is Record, and says of each flat scope whether it covered what
// it looked at: every entry of a whole directory a regular file or a
// directory with a record, every named file recorded or gone.
func (r *Recorder) record(scopes []syncer.Scope, h syncer.Hints, start time.Time) (covered map[string]bool) {
	if r == nil || r.Index == nil {
		return nil
	}
	covered = map[string]bool{}
	src, err := osx.OpenRoot(r.Source)
	if err == nil {
		defer src.Close()
		before := start.Add(-Margin).UnixNano()
		for _, sc := range scopes {
			var all bool
			if all, err = r.scope(src, sc, h, before); err != nil {
				break
			}
			if !sc.Recursive {
				covered[sc.Dir] = all
			}
			if sc.Recursive && sc.Dir != "" {
				r.root(src, sc.Dir)
			}
		}
	}
	if err != nil && r.Logger != nil {
		r.Logger.Warn("index of synced files not updated", zap.Error(err))
	}
	return covered
}

// Suspects lists the regular files of the flat scopes whose record has
// their size and mtime but not their ctime or inode: rewritten since the
// sync that recorded them, in a way a size-and-mtime compare does not see.
// Scopes whose jobs name their files are left out: the reconcile walk that
// named them put those in the jobs' Verify.
func (r *Recorder) Suspects(scopes []syncer.Scope, h syncer.Hints) []string {
	if r == nil || r.Index == nil {
		return nil
	}
	src, err := osx.OpenRoot(r.Source)
	if err != nil {
		return nil
	}
	defer src.Close()
	var out []string
	for _, sc := range scopes {
		if sc.Recursive || h.Files[sc.Dir] != nil {
			// New subtrees are copied whole; named files come from a
			// reconcile walk, which compared them with their records.
			continue
		}
		recs, err := r.Index.Dir(sc.Dir)
		if err != nil || len(recs) == 0 {
			continue
		}
		add := func(_ int, name string, st *unix.Stat_t) {
			prev, ok := recs[name]
			if now := Stamp(st); ok && !prev.Dir && st.Mode&unix.S_IFMT == unix.S_IFREG && prev.Size == now.Size && prev.Mtime == now.Mtime && prev != now {
				out = append(out, syncer.Join(sc.Dir, name))
			}
		}
		skip := r.skip(sc.Dir)
		if files := h.Files[sc.Dir]; files != nil {
			_ = src.StatAt(sc.Dir, syncer.NamesIn(sc.Dir, files), skip, add)
		} else {
			_ = src.ListDir(sc.Dir, skip, add)
		}
	}
	return out
}

// skip is what a listing of dir leaves out.
func (r *Recorder) skip(dir string) func(string) bool {
	return func(name string) bool { return r.Excludes.MatchIn(dir, name) }
}

// scope records the files of sc; all says whether every entry it looked
// at was a regular file, or a directory with a record (see record).
func (r *Recorder) scope(src *osx.Root, sc syncer.Scope, h syncer.Hints, before int64) (all bool, err error) {
	all = true
	stack := []string{sc.Dir}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		old, err := r.Index.Dir(dir)
		if err != nil {
			return false, err
		}
		u := Update{Dir: dir, Put: map[string]Record{}, Exact: true}
		add := func(_ int, name string, st *unix.Stat_t) {
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				p, now := syncer.Join(dir, name), Stamp(st)
				prev, had := old[name]
				switch {
				case slices.Contains(h.Open, p):
					all = false
					if had {
						u.Put[name] = prev // left out of the sync
					}
				case now.Ctime >= before:
					// Changed while the sync ran: whether the backup has
					// this version is unknown. A record no ctime matches
					// makes the next sync or reconcile compare contents,
					// should it look equal by size and mtime.
					now.Ctime = Unknown
					u.Put[name] = now
				case had && !prev.Dir && prev.Size == now.Size && prev.Mtime == now.Mtime && prev != now && !slices.Contains(h.Verify, p):
					// Rewritten keeping size and mtime, or only its
					// attributes changed: a sync that compared sizes and
					// mtimes did not look, so the old record stays, for a
					// reconcile to compare its content.
					u.Put[name] = prev
				default:
					u.Put[name] = now
				}
			case unix.S_IFDIR:
				// Its inode, for moves: known synced when its whole subtree
				// was; a sync of its parent alone makes it, empty.
				// A sync of the parent alone leaves what the backup has
				// there as it was.
				if sc.Recursive {
					u.Put[name] = Stamp(st)
					stack = append(stack, syncer.Join(dir, name))
				} else if prev, had := old[name]; had && prev.Dir {
					u.Put[name] = prev
				} else {
					all = false
				}
			default:
				all = false
			}
		}
		if files := h.Files[dir]; files != nil && !sc.Recursive {
			// Only the named files: those gone from the source (deleted
			// on the backup by the sync) lose their records.
			u.Exact = false
			names := syncer.NamesIn(dir, files)
			seen := make(map[string]bool, len(names))
			err = src.StatAt(dir, names, r.skip(dir), func(fd int, name string, st *unix.Stat_t) {
				seen[name] = true
				add(fd, name, st)
			})
			for _, name := range names {
				if prev, had := old[name]; had && !prev.Dir && !seen[name] {
					u.Drop = append(u.Drop, name)
				}
			}
		} else {
			err = src.ListDir(dir, r.skip(dir), add)
		}
		if errors.Is(err, unix.ENOENT) || osx.NotDir(err) {
			all = false
			continue // gone meanwhile: its parent's sync forgets it
		}
		if err != nil {
			return false, err
		}
		for name, prev := range old {
			if _, ok := u.Put[name]; !ok && u.Exact && slices.Contains(h.Open, syncer.Join(dir, name)) {
				u.Put[name] = prev // left on the backup by this sync (a directory about to move)
			}
		}
		r.Index.Queue(u)
	}
	return all, nil
}

// root records the directory dir itself, among its parent's entries,
// once its whole subtree was synced.
func (r *Recorder) root(src *osx.Root, dir string) {
	fd, name, err := src.OpenParent(dir)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		r.Index.Queue(Update{Dir: syncer.Parent(dir), Put: map[string]Record{name: Stamp(&st)}})
	}
}

// Stamp is the record of a file as stat gives it.
func Stamp(st *unix.Stat_t) Record {
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return Record{Ino: st.Ino, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Dir: true}
	}
	return Record{Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}
