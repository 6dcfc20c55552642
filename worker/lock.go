package worker

import (
	"context"
	"sync"

	"github.com/syncer/syncer"
)

// ErrBusy means an overlapping scope is held by another run.
var ErrBusy = syncer.ErrBusy

// Locker grants exclusive use of a scope against every overlapping scope
// (the same directory, an ancestor or a descendant).
//
// TryLock never waits: it returns ErrBusy when an overlapping scope is held.
// On success, held is a context derived from ctx that is cancelled if the
// lock is lost (a lease that could not be renewed), and unlock releases it;
// unlock is idempotent. Implementations are safe for concurrent use.
type Locker interface {
	TryLock(ctx context.Context, s syncer.Scope) (held context.Context, unlock func(), err error)
}

// LocalLocker is a Locker for the workers of one process.
type LocalLocker struct {
	mu   sync.Mutex
	held map[syncer.Scope]int // held scopes; a count because the same scope may be merged twice
}

var _ Locker = (*LocalLocker)(nil)

// TryLock implements Locker.
func (l *LocalLocker) TryLock(ctx context.Context, s syncer.Scope) (context.Context, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for h := range l.held {
		if h.Overlaps(s) {
			return nil, nil, ErrBusy
		}
	}
	if l.held == nil {
		l.held = map[syncer.Scope]int{}
	}
	l.held[s]++
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.held[s]--; l.held[s] <= 0 {
				delete(l.held, s)
			}
		})
	}, nil
}
