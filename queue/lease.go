package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/syncer/syncer"
)

// LeaseBucket is the KV bucket holding scope leases.
const LeaseBucket = "syncer_leases"

// DefaultLeaseTTL is how long a lease outlives a holder that stopped renewing.
const DefaultLeaseTTL = 30 * time.Second

// Leaser grants scope leases shared by every worker on every host: the same
// contract as the workers' in-process lock (worker.Locker), across the
// cluster. A lease covers its scope against every overlapping one (the same
// directory, an ancestor, a descendant).
//
// Keys spell the path as a chain of hashed prefixes ("L.<p>.<p/a>"), so
// ancestors are key prefixes and descendants a key filter. A lease is taken
// by creating its key and then checking for overlapping keys; whichever of
// two racing holders checks last sees the other and backs off (both may,
// then both retry later), so two overlapping leases are never both held.
type Leaser struct {
	kv  jetstream.KeyValue
	ttl time.Duration
}

// OpenLeases opens (creating when missing) the lease bucket.
func (q *JetStream) OpenLeases(ctx context.Context, ttl time.Duration) (*Leaser, error) {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	kv, err := retry(ctx, "lease bucket", func(ctx context.Context) (jetstream.KeyValue, error) {
		kv, err := q.js.KeyValue(ctx, LeaseBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = q.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: LeaseBucket, TTL: ttl, History: 1,
				Storage: q.opts.storage(), Replicas: q.opts.Replicas})
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = q.js.KeyValue(ctx, LeaseBucket)
			}
		}
		return kv, err
	})
	if err != nil {
		return nil, err
	}
	return &Leaser{kv: kv, ttl: ttl}, nil
}

// leaseKey is the key of dir and the keys of its ancestors, root first.
func leaseKey(dir string) (string, []string) {
	key := "L"
	var ancestors []string
	if dir == "" {
		return key, nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		ancestors = append(ancestors, key)
		key += "." + Token(strings.Join(parts[:i+1], "/"), 12)
	}
	return key, ancestors
}

// TryLock leases scope s. It returns syncer.ErrBusy when an overlapping
// lease is held. held is cancelled when the lease is lost (a renewal
// failed); unlock releases it and is idempotent.
func (l *Leaser) TryLock(ctx context.Context, s syncer.Scope) (context.Context, func(), error) {
	key, ancestors := leaseKey(s.Dir)
	rev, err := l.kv.Create(ctx, key, []byte(s.Dir))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, nil, syncer.ErrBusy
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lease %s: %w", s, err)
	}
	release := func() { _ = l.kv.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev)) }
	if busy, err := l.overlapped(ctx, key, ancestors); busy || err != nil {
		release()
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, syncer.ErrBusy
	}
	held, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var renewed sync.WaitGroup
	renewed.Add(1)
	go func() { // renews until unlocked; the lease is lost when renewals fail for too long
		defer renewed.Done()
		every := l.ttl / 3
		// The server expires the key ttl after the last update it stored,
		// which was sent no earlier than lastSent: stop the holder with a
		// margin before that.
		lastSent := time.Now()
		t := time.NewTimer(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sent := time.Now()
				r, err := l.kv.Update(context.WithoutCancel(ctx), key, []byte(s.Dir), rev)
				switch {
				case err == nil:
					rev, lastSent = r, sent
					t.Reset(every)
				case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || time.Since(lastSent) > l.ttl-l.ttl/6:
					// Someone else's revision, or too late to be sure: fenced.
					cancel()
					return
				default:
					// A leader election or a reconnect: try again soon.
					t.Reset(min(every, 250*time.Millisecond))
				}
			}
		}
	}()
	var once sync.Once
	return held, func() {
		once.Do(func() {
			close(done)
			renewed.Wait()
			cancel()
			release()
		})
	}, nil
}

// overlapped reports whether an ancestor or a descendant of key is leased.
func (l *Leaser) overlapped(ctx context.Context, key string, ancestors []string) (bool, error) {
	for _, a := range ancestors {
		_, err := l.kv.Get(ctx, a)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, fmt.Errorf("read lease %s: %w", a, err)
		}
	}
	lister, err := l.kv.ListKeysFiltered(ctx, key+".>")
	if err != nil {
		return false, fmt.Errorf("list leases: %w", err)
	}
	busy := false
	for range lister.Keys() {
		busy = true
	}
	_ = lister.Stop() // drained: its subscription is gone already
	return busy, nil
}
