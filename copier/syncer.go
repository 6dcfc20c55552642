package copier

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// Syncer is the local backup's syncer.Syncer: the copier in front of rsync
// (Fallback), which gets only what the copier leaves, with the run's
// Hints.Files: a scope whose named files the copier declined, Fallback
// syncs whole (which deletes more than those: see guard.Whole).
//
// Recursive scopes that do not exist on the backup yet go to Copy (a first
// copy: nothing to compare, nothing to delete). For a directory that
// exists on the backup, SyncFlat first copies the new and changed files
// directly in it: a finished render or ingest lands in parallel in-kernel
// copies instead of one rsync stream, and a directory whose files were all
// that changed needs no rsync at all (a local rsync costs some 60 ms to
// start, and half a millisecond a file). Measured on the reconcile
// benchmark, rsync's three processes and pipes cost several times what an
// in-kernel copy does for a cold copy of many small files.
type Syncer struct {
	Copier   *Copier
	Fallback syncer.Syncer
	Logger   *zap.Logger // nil: no logs
}

var _ syncer.Syncer = Syncer{}

// Sync copies what the copier can and hands the rest to Fallback. A direct
// copy that fails half-way is a transient error: the retry finds the
// directory and rsync completes it.
func (s Syncer) Sync(ctx context.Context, scopes []syncer.Scope, h syncer.Hints) (syncer.Stats, error) {
	log := s.Logger
	if log == nil {
		log = zap.NewNop()
	}
	var total syncer.Stats
	var rest []syncer.Scope
	var found []string // new files being written, that the jobs did not know of
	// New subtrees first: creating them changes their parents, whose own
	// flat scopes then set their times last.
	ordered := slices.Clone(scopes)
	slices.SortStableFunc(ordered, func(a, b syncer.Scope) int {
		switch {
		case a.Recursive == b.Recursive:
			return 0
		case a.Recursive:
			return -1
		}
		return 1
	})
	// The flat scopes share their trees: one stamp in the trash, and one
	// manifest written once they are all done.
	var t *trees
	defer func() {
		if t != nil {
			if err := t.close(); err != nil {
				log.Warn("versions manifest not written; the trash is walked instead", zap.Error(err))
			}
		}
	}()
	for _, sc := range ordered {
		if sc.Recursive {
			st, err := s.Copier.Copy(ctx, sc.Dir, h.Open)
			total.Add(st)
			switch {
			case err == nil:
				continue
			case !errors.Is(err, ErrExists):
				if ctx.Err() != nil {
					return total, ctx.Err()
				}
				// A half-made copy: the retry finds the directory and rsync completes it.
				return total, copyError{err}
			}
		}
		// The directory exists on the backup: its files first, and when
		// they were all that differed, no rsync at all. A reconcile's job
		// names its files: then only those are looked at.
		t0 := time.Now()
		var st syncer.Stats
		var open []string
		var done bool
		var err error
		if err = syncer.CheckPath(sc.Dir); err == nil && t == nil {
			t, err = s.Copier.open()
		}
		if err == nil {
			st, open, done, err = s.Copier.syncFlat(ctx, t, sc, h.Files[sc.Dir], h.Open, h.Verify)
		}
		total.Add(st)
		found = append(found, open...)
		if ce := log.Check(zap.DebugLevel, "files copied directly"); ce != nil && (st.Files > 0 || len(open) > 0) {
			ce.Write(zap.String(syncer.LogScope, sc.String()), zap.Int64(syncer.LogFiles, st.Files),
				zap.Int64(syncer.LogBytes, st.Bytes), zap.Strings("open", open), zap.Bool("rsync_needed", !done),
				zap.Duration(syncer.LogTook, time.Since(t0)))
		}
		if err != nil {
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
			// rsync copies what the copier could not.
			log.Warn("direct copy", zap.Error(err), zap.String(syncer.LogScope, sc.String()))
		}
		if done && err == nil {
			continue
		}
		rest = append(rest, sc)
	}
	if len(rest) > 0 {
		if len(found) > 0 {
			h.Open = append(slices.Clone(h.Open), found...)
		}
		st, err := s.Fallback.Sync(ctx, rest, syncer.Hints{Open: h.Open, Files: h.Files})
		total.Add(st)
		if err != nil {
			return total, err
		}
	}
	if len(found) > 0 {
		// The watcher will say when they are closed; in case it cannot
		// (restarted, or following too many), their jobs come back.
		return total, &syncer.OpenFilesError{Paths: found}
	}
	return total, nil
}

// copyError is a failed direct copy (full or read-only backup, I/O error):
// transient, like rsync's exit 11 or 23.
type copyError struct{ error }

func (e copyError) Unwrap() error   { return e.error }
func (e copyError) Transient() bool { return true }
