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

// Syncer records, once Next synced scopes, the regular files of those
// scopes as the source has them (Recorder.Record). A failed sync records
// nothing.
type Syncer struct {
	Recorder *Recorder
	Next     syncer.Syncer
}

var _ syncer.Syncer = Syncer{}

// Sync syncs with Next, then records.
func (s Syncer) Sync(ctx context.Context, scopes []syncer.Scope, h syncer.Hints) (syncer.Stats, error) {
	start := time.Now()
	st, err := s.Next.Sync(ctx, scopes, h)
	var open *syncer.OpenFilesError
	if err == nil || errors.As(err, &open) {
		s.Recorder.Record(scopes, h, start)
	}
	return st, err
}

// Recorder writes the records of synced directories.
type Recorder struct {
	Index    *Index
	Source   string
	Excludes []string
	Logger   *zap.Logger
}

// Record records the regular files of scopes (the files a flat scope's
// job named, when it named some) whose last change is older than the sync
// that started at start (Margin); files in h.Open are left out, being
// left out of the backup. A failure is logged, not returned: without a
// record, a file is compared by its size and mtime.
func (r *Recorder) Record(scopes []syncer.Scope, h syncer.Hints, start time.Time) {
	if r == nil || r.Index == nil {
		return
	}
	src, err := osx.OpenRoot(r.Source)
	if err == nil {
		defer src.Close()
		before := start.Add(-Margin).UnixNano()
		for _, sc := range scopes {
			if err = r.scope(src, sc, h, before); err != nil {
				break
			}
		}
	}
	if err != nil && r.Logger != nil {
		r.Logger.Warn("index of synced files not updated", zap.Error(err))
	}
}

func (r *Recorder) scope(src *osx.Root, sc syncer.Scope, h syncer.Hints, before int64) error {
	skip := func(name string) bool { return syncer.Excluded(r.Excludes, name) }
	stack := []string{sc.Dir}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		old, err := r.Index.Dir(dir)
		if err != nil {
			return err
		}
		u := Update{Dir: dir, Put: map[string]Record{}, Exact: true}
		add := func(_ int, name string, st *unix.Stat_t) {
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				p, now := syncer.Join(dir, name), Stamp(st)
				prev, had := old[name]
				switch {
				case now.Ctime >= before || slices.Contains(h.Open, p):
				case had && prev.Size == now.Size && prev.Mtime == now.Mtime && prev != now && !slices.Contains(h.Verify, p):
					// Rewritten keeping size and mtime, or only its
					// attributes changed: a sync that compared sizes and
					// mtimes did not look, so the old record stays, for a
					// reconcile to compare its content.
					u.Put[name] = prev
				default:
					u.Put[name] = now
				}
			case unix.S_IFDIR:
				if sc.Recursive {
					stack = append(stack, syncer.Join(dir, name))
				}
			}
		}
		if files := h.Files[dir]; files != nil && !sc.Recursive {
			names := make([]string, 0, len(files))
			for _, f := range files {
				if syncer.Parent(f) == dir {
					names = append(names, f[len(f)-len(baseName(f)):])
				}
			}
			u.Exact = false
			err = src.StatAt(dir, names, skip, add)
		} else {
			err = src.ListDir(dir, skip, add)
		}
		if errors.Is(err, unix.ENOENT) || osx.NotDir(err) {
			continue // gone meanwhile: its parent's sync forgets it
		}
		if err != nil {
			return err
		}
		if err := r.Index.Apply(u); err != nil {
			return err
		}
	}
	return nil
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// Stamp is the record of a file as stat gives it.
func Stamp(st *unix.Stat_t) Record {
	return Record{Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}
