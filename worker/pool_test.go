package worker_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/internal/testutil/testqueue"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/worker"
)

func openQueue(t *testing.T) *queue.JetStream { return testqueue.Queue(t, 5*time.Second) }

// recSyncer records running scopes, flags overlaps and fails on demand.
type recSyncer struct {
	mu       sync.Mutex
	running  []syncer.Scope
	overlaps int
	runs     int
	synced   map[syncer.Scope]int
	fail     func(scopes []syncer.Scope) error
	skips    [][]string
}

func (r *recSyncer) Sync(ctx context.Context, scopes []syncer.Scope, h syncer.Hints) (syncer.Stats, error) {
	r.mu.Lock()
	r.skips = append(r.skips, h.Open)
	for _, s := range scopes {
		for _, o := range r.running {
			if s.Overlaps(o) {
				r.overlaps++
			}
		}
	}
	r.running = append(r.running, scopes...)
	r.runs++
	r.mu.Unlock()
	select {
	case <-time.After(20 * time.Millisecond):
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range scopes {
		for i, o := range r.running {
			if o == s {
				r.running = append(r.running[:i], r.running[i+1:]...)
				break
			}
		}
	}
	if ctx.Err() != nil {
		return syncer.Stats{}, ctx.Err()
	}
	if r.fail != nil {
		if err := r.fail(scopes); err != nil {
			return syncer.Stats{}, err
		}
	}
	if r.synced == nil {
		r.synced = map[syncer.Scope]int{}
	}
	for _, s := range scopes {
		r.synced[s]++
	}
	return syncer.Stats{Files: int64(len(scopes))}, nil
}

type transientErr struct{}

func (transientErr) Error() string   { return "injected transient failure" }
func (transientErr) Transient() bool { return true }

type permanentErr struct{}

func (permanentErr) Error() string { return "injected permanent failure" }

func startPool(t *testing.T, q *queue.JetStream, s syncer.Syncer, onResult func(syncer.Result)) {
	t.Helper()
	runPool(t, worker.Options{Workers: 4, Batch: 8, Source: q.Jobs(), Syncer: s, OnResult: onResult,
		BusyDelay: 20 * time.Millisecond, Backoff: syncer.Backoff{Base: 50 * time.Millisecond, Max: 50 * time.Millisecond}, MaxAttempts: 3})
}

// runPool runs a pool on opts until the test ends.
func runPool(t *testing.T, opts worker.Options) {
	t.Helper()
	p, err := worker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestPool_Run_NoOverlap checks invariant 2 within a pool: nested and equal
// scopes published together never run at once, and all of them run.
func TestPool_Run_NoOverlap(t *testing.T) {
	q := openQueue(t)
	rec := &recSyncer{}
	startPool(t, q, rec, nil)
	for round := range 5 {
		for _, s := range []syncer.Scope{{Dir: "p"}, {Dir: "p/a"}, {Dir: "p/a/b", Recursive: true}, {Dir: "p", Recursive: true},
			{Dir: ""}, {Dir: "q/x"}, {Dir: "r"}} {
			id := fmt.Sprintf("%d-%s", round, s)
			if err := q.PublishJob(t.Context(), syncer.Job{ID: id, Scope: s}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		st, err := q.Stats(t.Context())
		if err != nil {
			return err
		}
		if st.Pending+uint64(st.InFlight) > 0 {
			return fmt.Errorf("queue not drained: %+v", st)
		}
		return nil
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.overlaps != 0 {
		t.Errorf("%d overlapping runs, want 0", rec.overlaps)
	}
	// Every scope of the last round ran (earlier pending ones may be replaced by newer ones).
	for _, s := range []syncer.Scope{{Dir: "p"}, {Dir: "p/a"}, {Dir: "p/a/b", Recursive: true}, {Dir: "p", Recursive: true}, {Dir: ""}, {Dir: "q/x"}, {Dir: "r"}} {
		if rec.synced[s] == 0 {
			t.Errorf("scope %s never synced", s)
		}
	}
}

func TestPool_Run_Failures(t *testing.T) {
	q := openQueue(t)
	var mu sync.Mutex
	attempts := map[string]int{}
	rec := &recSyncer{fail: func(scopes []syncer.Scope) error {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range scopes {
			attempts[s.Dir]++
			switch {
			case s.Dir == "flaky" && attempts[s.Dir] < 3:
				return transientErr{}
			case s.Dir == "broken":
				return permanentErr{}
			case s.Dir == "always":
				return transientErr{}
			}
		}
		return nil
	}}
	results := make(chan syncer.Result, 10)
	startPool(t, q, rec, func(r syncer.Result) { results <- r })
	// Batching would mix the dirs in one run; publish one at a time.
	got := map[string]syncer.Result{}
	for _, d := range []string{"flaky", "broken", "always"} {
		if err := q.PublishJob(t.Context(), syncer.Job{ID: d, Scope: syncer.Scope{Dir: d}}); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-results:
			got[r.Job.ID] = r
		case <-time.After(10 * time.Second):
			t.Fatalf("no result for %s", d)
		}
	}
	if r := got["flaky"]; !r.OK || attempts["flaky"] != 3 {
		t.Errorf("flaky: ok=%v after %d attempts, want ok after 3", r.OK, attempts["flaky"])
	}
	if r := got["broken"]; r.OK || attempts["broken"] != 1 {
		t.Errorf("broken: ok=%v after %d attempts, want given up after 1", r.OK, attempts["broken"])
	}
	if r := got["always"]; r.OK || attempts["always"] != 3 {
		t.Errorf("always: ok=%v after %d attempts, want given up after MaxAttempts=3", r.OK, attempts["always"])
	}
}

type vanishingSyncer struct{}

func (vanishingSyncer) Sync(context.Context, []syncer.Scope, syncer.Hints) (syncer.Stats, error) {
	return syncer.Stats{Vanished: true}, nil // rsync exit 24
}

// TestPool_Run_Vanished: a run during which files vanished succeeds and
// asks for another look at its scopes.
func TestPool_Run_Vanished(t *testing.T) {
	q := openQueue(t)
	results := make(chan syncer.Result, 64)
	runPool(t, worker.Options{Workers: 1, Source: q.Jobs(), Syncer: vanishingSyncer{}, Sink: q,
		OnResult: func(r syncer.Result) {
			select {
			case results <- r:
			default:
			}
		}})
	if err := q.PublishJob(t.Context(), syncer.Job{ID: "v", Scope: syncer.Scope{Dir: "p/renders"}}); err != nil {
		t.Fatal(err)
	}
	if r := <-results; !r.OK || r.Job.ID != "v" {
		t.Errorf("result = %+v, want v OK (exit 24 is success)", r)
	}
	select {
	case r := <-results:
		if r.Job.Reason != syncer.ReasonVanished || r.Job.Scope.Dir != "p/renders" {
			t.Errorf("follow-up %+v, want a vanished job for p/renders", r.Job)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no follow-up after vanished files")
	}
}

// together hands out its first n deliveries as one batch, however the
// queue's pull requests happen to split them and however few the pool
// asked for (it asks by the backlog the first delivery reported).
type together struct {
	worker.Source
	n int
}

func (s *together) More(n int) []syncer.Delivery {
	if s.n == 0 {
		return s.Source.More(n)
	}
	var out []syncer.Delivery
	for deadline := time.Now().Add(5 * time.Second); len(out) < s.n-1 && time.Now().Before(deadline); {
		more := s.Source.More(s.n - 1 - len(out))
		if len(more) == 0 {
			time.Sleep(time.Millisecond)
		}
		out = append(out, more...)
	}
	s.n = 0 // the first batch only
	return out
}

// TestPool_Run_RidesAlong: a new directory's recursive job and its parent's
// flat job, fetched together, run in one Sync under the parent's lock
// instead of one waiting for the other.
func TestPool_Run_RidesAlong(t *testing.T) {
	q := openQueue(t)
	for _, s := range []syncer.Scope{{Dir: "p/new", Recursive: true}, {Dir: "p/new/deeper"}, {Dir: "p"}} {
		if err := q.PublishJob(t.Context(), syncer.Job{ID: s.String(), Scope: s}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recSyncer{}
	runPool(t, worker.Options{Workers: 1, Batch: 8, Source: &together{Source: q.Jobs(), n: 3}, Syncer: rec})
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.synced) < 3 {
			return fmt.Errorf("synced %v", rec.synced)
		}
		return nil
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.runs != 1 {
		t.Errorf("%d runs, want 1 carrying the parent and its new subdirectory", rec.runs)
	}
}

// TestPool_Run_FailureStaysWithItsScope: one scope whose sync fails, in a
// batch with others, fails only its own job; the others are done.
func TestPool_Run_FailureStaysWithItsScope(t *testing.T) {
	q := openQueue(t)
	scopes := []syncer.Scope{{Dir: "p/a"}, {Dir: "q/bad"}, {Dir: "r/c"}}
	for _, s := range scopes {
		if err := q.PublishJob(t.Context(), syncer.Job{ID: s.Dir, Scope: s}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recSyncer{fail: func(s []syncer.Scope) error {
		if slices.Contains(s, syncer.Scope{Dir: "q/bad"}) {
			return permanentErr{}
		}
		return nil
	}}
	results := make(chan syncer.Result, 8)
	runPool(t, worker.Options{Workers: 1, Batch: 8, Source: &together{Source: q.Jobs(), n: 3}, Syncer: rec,
		OnResult: func(r syncer.Result) { results <- r }})
	got := map[string]bool{}
	for range scopes {
		select {
		case r := <-results:
			got[r.Job.ID] = r.OK
		case <-time.After(10 * time.Second):
			t.Fatalf("results so far %v", got)
		}
	}
	if !got["p/a"] || got["q/bad"] || !got["r/c"] {
		t.Errorf("results %v: want p/a and r/c done, q/bad failed", got)
	}
}

// held is a Syncer that syncs every scope but those of project "held",
// which it reports failed with a pause.
type held struct{ recSyncer }

func (h *held) Sync(ctx context.Context, scopes []syncer.Scope, hints syncer.Hints) (syncer.Stats, error) {
	var rest, out []syncer.Scope
	for _, s := range scopes {
		if s.Project() == "held" {
			out = append(out, s)
		} else {
			rest = append(rest, s)
		}
	}
	st, err := h.recSyncer.Sync(ctx, rest, hints)
	if err == nil && len(out) > 0 {
		err = &syncer.ScopeError{Scopes: out, Err: syncer.ErrPaused}
	}
	return st, err
}

// TestPool_Run_ScopeError: a run that reports some scopes failed settles
// the others as done and holds those.
func TestPool_Run_ScopeError(t *testing.T) {
	q := openQueue(t)
	for _, s := range []syncer.Scope{{Dir: "p/a"}, {Dir: "held/x"}} {
		if err := q.PublishJob(t.Context(), syncer.Job{ID: s.Dir, Scope: s}); err != nil {
			t.Fatal(err)
		}
	}
	results := make(chan syncer.Result, 8)
	runPool(t, worker.Options{Workers: 1, Batch: 8, Source: &together{Source: q.Jobs(), n: 2}, Syncer: &held{},
		OnResult: func(r syncer.Result) { results <- r }, PausedDelay: time.Hour})
	select {
	case r := <-results:
		if r.Job.ID != "p/a" || !r.OK {
			t.Errorf("result %+v, want p/a done", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no result")
	}
	select {
	case r := <-results:
		t.Errorf("result for a held job: %+v", r)
	case <-time.After(500 * time.Millisecond):
	}
}
