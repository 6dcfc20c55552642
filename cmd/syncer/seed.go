package main

import (
	"context"
	"errors"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/copier"
)

// seeding sends recursive scopes that do not exist on the backup yet to the
// copier (a first copy: nothing to compare, nothing to delete), and
// everything else to rsync. Measured on the reconcile benchmark, rsync's
// three processes and pipes cost several times what an in-kernel copy does
// for a cold copy of many small files.
type seeding struct {
	copier *copier.Copier
	rsync  syncer.Syncer
}

func (s seeding) Sync(ctx context.Context, scopes []syncer.Scope, skip []string) (syncer.Stats, error) {
	var total syncer.Stats
	var rest []syncer.Scope
	for _, sc := range scopes {
		if sc.Recursive {
			st, err := s.copier.Copy(ctx, sc.Dir, skip)
			total.Add(st)
			switch {
			case err == nil:
				continue
			case !errors.Is(err, copier.ErrExists):
				if ctx.Err() != nil {
					return total, ctx.Err()
				}
				// A half-made copy: the retry finds the directory and rsync completes it.
				return total, copyError{err}
			}
		}
		rest = append(rest, sc)
	}
	if len(rest) == 0 {
		return total, nil
	}
	st, err := s.rsync.Sync(ctx, rest, skip)
	total.Add(st)
	return total, err
}

// copyError is a failed direct copy (full or read-only backup, I/O error):
// transient, like rsync's exit 11 or 23.
type copyError struct{ error }

func (e copyError) Unwrap() error   { return e.error }
func (e copyError) Transient() bool { return true }
