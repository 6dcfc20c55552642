package queue_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/queue"
)

// leasers opens n Leasers on separate connections to one server, as n hosts
// would, and returns the server's URL.
func leasers(t *testing.T, n int, ttl time.Duration) ([]*queue.Leaser, string) {
	t.Helper()
	s := testutil.StartJetStream(t)
	var out []*queue.Leaser
	for range n {
		q, err := queue.Connect(t.Context(), queue.Options{StateDir: t.TempDir(), External: &queue.ExternalOptions{URLs: []string{s.ClientURL()}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(q.Close)
		l, err := q.OpenLeases(t.Context(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out, s.ClientURL()
}

func TestLeaser_TryLock(t *testing.T) {
	ls, _ := leasers(t, 2, 3*time.Second)
	a, b := ls[0], ls[1]
	ctx := t.Context()
	_, unlock, err := a.TryLock(ctx, syncer.Scope{Dir: "p/a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []syncer.Scope{{Dir: "p/a"}, {Dir: "p/a", Recursive: true}, {Dir: "p"}, {Dir: ""}, {Dir: "p/a/b/c"}} {
		if _, _, err := b.TryLock(ctx, s); !errors.Is(err, syncer.ErrBusy) {
			t.Errorf("TryLock(%v) while p/a is leased elsewhere = %v, want ErrBusy", s, err)
		}
	}
	_, unlockQ, err := b.TryLock(ctx, syncer.Scope{Dir: "q/a"})
	if err != nil {
		t.Fatalf("disjoint scope: %v", err)
	}
	_, unlockSib, err := b.TryLock(ctx, syncer.Scope{Dir: "p/ab"})
	if err != nil {
		t.Fatalf("sibling with a common name prefix: %v", err)
	}
	unlock()
	unlock() // idempotent
	_, unlock2, err := b.TryLock(ctx, syncer.Scope{Dir: "p/a/b"})
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	unlock2()
	unlockQ()
	unlockSib()
	if _, u, err := a.TryLock(ctx, syncer.Scope{Dir: ""}); err != nil {
		t.Errorf("root after every unlock: %v", err)
	} else {
		u()
	}
}

// TestLeaser_Renew: a held lease outlives its TTL by renewal, and a lease
// lost (its key taken away) cancels the holder's context.
func TestLeaser_Renew(t *testing.T) {
	ls, url := leasers(t, 2, time.Second)
	ctx := t.Context()
	held, unlock, err := ls[0].TryLock(ctx, syncer.Scope{Dir: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	time.Sleep(2500 * time.Millisecond) // 2.5 TTLs
	if _, _, err := ls[1].TryLock(ctx, syncer.Scope{Dir: "p"}); !errors.Is(err, syncer.ErrBusy) {
		t.Fatalf("lease expired although renewed: %v", err)
	}
	if held.Err() != nil {
		t.Fatal("held context cancelled while the lease was renewed")
	}
	// Take the lease away (what an expiry during a long pause looks like).
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, queue.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "L."+queue.Token("p", 12)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("holder not told that its lease was lost")
	}
}

// TestLeaser_NoOverlap: goroutines on three "hosts" race for nested scopes;
// no two overlapping leases are ever held at once.
func TestLeaser_NoOverlap(t *testing.T) {
	ls, _ := leasers(t, 3, 5*time.Second)
	scopes := []syncer.Scope{{Dir: ""}, {Dir: "p"}, {Dir: "p/a"}, {Dir: "p/a/b"}, {Dir: "q"}, {Dir: "q/x"}, {Dir: "r"}}
	var mu sync.Mutex
	held := map[syncer.Scope]int{}
	violations, acquired := 0, 0
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	for g := range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			for time.Now().Before(deadline) {
				s := scopes[rng.IntN(len(scopes))]
				_, unlock, err := ls[g%3].TryLock(t.Context(), s)
				if err != nil {
					continue
				}
				mu.Lock()
				for h, n := range held {
					if n > 0 && h.Overlaps(s) {
						violations++
					}
				}
				held[s]++
				acquired++
				mu.Unlock()
				time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
				mu.Lock()
				held[s]--
				mu.Unlock()
				unlock()
			}
		}()
	}
	wg.Wait()
	if violations != 0 {
		t.Errorf("%d overlapping leases held at once, want 0", violations)
	}
	if acquired < 20 {
		t.Errorf("only %d leases acquired in 2 s: the test did not race much", acquired)
	}
	t.Logf("%d leases acquired, %d overlaps", acquired, violations)
}
