package coalesce_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/coalesce"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ev(s syncer.Scope, at time.Time, open ...string) syncer.DirEvent {
	return syncer.DirEvent{Scope: s, Reason: syncer.ReasonChange, At: at, Open: open}
}

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

func flat(d string) syncer.Scope { return syncer.Scope{Dir: d} }
func deep(d string) syncer.Scope { return syncer.Scope{Dir: d, Recursive: true} }

type add struct {
	at    int // ms after t0
	scope syncer.Scope
}

func TestDebouncer(t *testing.T) {
	opts := coalesce.Options{Quiet: 100 * time.Millisecond, MaxDelay: time.Second, MaxChildren: 3, MaxPending: 6}
	tests := []struct {
		name string
		adds []add
		at   int            // when Due is asked
		want []syncer.Scope // due at `at`, oldest first
		left int            // still pending
	}{
		{"quiet not yet passed", []add{{0, flat("p/a")}, {50, flat("p/a")}}, 149, nil, 1},
		{"quiet passed", []add{{0, flat("p/a")}, {50, flat("p/a")}}, 150, []syncer.Scope{flat("p/a")}, 0},
		{"max delay for a dir that never stops", func() []add {
			var a []add
			for i := 0; i <= 1000; i += 50 {
				a = append(a, add{i, flat("p/busy")})
			}
			return a
		}(), 1000, []syncer.Scope{flat("p/busy")}, 0},
		{"each dir on its own clock", []add{{0, flat("p/a")}, {80, flat("p/b")}}, 120, []syncer.Scope{flat("p/a")}, 1},
		{"recursive ancestor absorbs later descendants", []add{{0, deep("p/a")}, {10, flat("p/a/b")}, {20, flat("p/a/b/c")}}, 200,
			[]syncer.Scope{deep("p/a")}, 0},
		{"recursive event absorbs pending descendants", []add{{0, flat("p/a/b")}, {10, flat("p/a/c/d")}, {20, deep("p/a")}}, 200,
			[]syncer.Scope{deep("p/a")}, 0},
		{"absorbed keeps oldest first-seen", []add{{0, flat("p/a/b")}, {950, deep("p/a")}}, 1000, []syncer.Scope{deep("p/a")}, 0},
		{"recursive upgrades same dir", []add{{0, flat("p/a")}, {10, deep("p/a")}}, 200, []syncer.Scope{deep("p/a")}, 0},
		{"flat does not absorb children", []add{{0, flat("p/a")}, {0, flat("p/a/b")}}, 200, []syncer.Scope{flat("p/a"), flat("p/a/b")}, 0},
		{"siblings stay apart up to the limit", []add{{0, flat("p/x/1")}, {0, flat("p/x/2")}, {0, flat("p/x/3")}}, 200,
			[]syncer.Scope{flat("p/x/1"), flat("p/x/2"), flat("p/x/3")}, 0},
		{"too many children escalate to the parent", []add{{0, flat("p/x/1")}, {1, flat("p/x/2")}, {2, deep("p/x/3/y")},
			{3, flat("p/x/3")}, {4, flat("p/x/4")}}, 200, []syncer.Scope{deep("p/x")}, 0},
		{"too many in a project escalate to the project", []add{{0, flat("p/1/a")}, {0, flat("p/2/a")}, {0, flat("p/3/a")},
			{0, flat("p/4/a")}, {0, flat("p/5/a")}, {0, flat("p/6/a")}, {0, flat("p/7/a")}, {0, flat("q/a")}}, 200,
			[]syncer.Scope{deep("p"), flat("q/a")}, 0},
		{"root change stays flat", []add{{0, flat("")}, {0, flat("p")}}, 200, []syncer.Scope{flat(""), flat("p")}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := coalesce.NewDebouncer[int](opts)
			for i, a := range tt.adds {
				d.Add(ev(a.scope, ms(a.at)), i)
			}
			var got []syncer.Scope
			tokens := 0
			for _, p := range d.Due(ms(tt.at)) {
				got = append(got, p.Scope)
				tokens += len(p.Tokens)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Due() mismatch (-want +got):\n%s", d)
			}
			if d.Len() != tt.left {
				t.Errorf("Len() = %d, want %d", d.Len(), tt.left)
			}
			if tt.left == 0 && tokens != len(tt.adds) {
				t.Errorf("tokens handed out = %d, want %d (one per event)", tokens, len(tt.adds))
			}
		})
	}
}

func TestDebouncer_Next(t *testing.T) {
	d := coalesce.NewDebouncer[int](coalesce.Options{Quiet: 100 * time.Millisecond, MaxDelay: 300 * time.Millisecond})
	if _, ok := d.Next(); ok {
		t.Fatal("Next() on empty debouncer reported a time")
	}
	d.Add(ev(flat("a"), ms(0)))
	d.Add(ev(flat("a"), ms(250)))
	if got, _ := d.Next(); !got.Equal(ms(300)) {
		t.Errorf("Next() = %v, want max delay at %v", got, ms(300))
	}
	d.Add(ev(flat("b"), ms(100)))
	if got, _ := d.Next(); !got.Equal(ms(200)) {
		t.Errorf("Next() = %v, want quiet end of b at %v", got, ms(200))
	}
}

// TestDebouncer_Storm checks invariant 7: 200,000 events in many dirs keep a
// bounded number of pending scopes.
func TestDebouncer_Storm(t *testing.T) {
	d := coalesce.NewDebouncer[struct{}](coalesce.Options{})
	for i := range 200000 {
		d.Add(ev(flat(fmt.Sprintf("p/d%d/e%d", i%5000, i%7)), ms(i/100)))
	}
	if d.Len() > coalesce.DefaultMaxPending {
		t.Errorf("Len() = %d after storm, want <= %d", d.Len(), coalesce.DefaultMaxPending)
	}
}

type recorder struct {
	mu   sync.Mutex
	jobs []syncer.Job
	at   []time.Time
	fail int
}

func (r *recorder) PublishJob(_ context.Context, j syncer.Job) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return fmt.Errorf("injected publish failure")
	}
	r.jobs = append(r.jobs, j)
	r.at = append(r.at, time.Now())
	return nil
}

// TestCoalescer_Run drives the real loop on synctest's fake clock.
func TestCoalescer_Run(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{fail: 1}
		c, err := coalesce.New(coalesce.Config{Options: coalesce.Options{Quiet: 100 * time.Millisecond, MaxDelay: time.Second}, Publisher: rec})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		in := make(chan coalesce.Input)
		done := make(chan error)
		go func() { done <- c.Run(ctx, in) }()

		acked := 0
		start := time.Now()
		// A directory written every 50 ms for 3 s: due by max delay, three times.
		for range 60 {
			in <- coalesce.Input{Event: syncer.DirEvent{Scope: flat("p/busy"), At: time.Now()}, Ack: func() error { acked++; return nil }}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(rec.jobs) < 3 || len(rec.jobs) > 4 {
			t.Errorf("published %d jobs for a 3 s stream with 1 s max delay, want 3 or 4", len(rec.jobs))
		}
		if acked != 60 {
			t.Errorf("acked %d events, want all 60 once their jobs were published", acked)
		}
		// The first publish failed: it was retried after a backoff, not dropped.
		if got := rec.at[0].Sub(start); got < time.Second || got > 2*time.Second {
			t.Errorf("first job published after %v, want max delay plus backoff", got)
		}
	})
}

// TestDebouncer_Open checks that a pending scope skips exactly the files the
// latest event on their part of the tree reported open: a file reported
// closed, by any later event covering it, is never skipped again.
func TestDebouncer_Open(t *testing.T) {
	tests := []struct {
		name string
		evs  []syncer.DirEvent
		want []string
	}{
		{"open then closed", []syncer.DirEvent{ev(flat("p/a"), ms(0), "p/a/clip"), ev(flat("p/a"), ms(1))}, nil},
		{"closed then open", []syncer.DirEvent{ev(flat("p/a"), ms(0)), ev(flat("p/a"), ms(1), "p/a/clip")}, []string{"p/a/clip"}},
		{"a new dir's event, then its closed file's", []syncer.DirEvent{ev(deep("p/new"), ms(0), "p/new/x/f", "p/new/g"),
			ev(flat("p/new/x"), ms(1))}, []string{"p/new/g"}},
		{"absorbed children keep theirs", []syncer.DirEvent{ev(flat("p/a"), ms(0), "p/a/f"), ev(flat("p/b"), ms(0), "p/b/g"),
			ev(flat("p/c"), ms(1)), ev(flat("p/d"), ms(1)), ev(flat("p/e"), ms(1))}, []string{"p/a/f", "p/b/g"}},
		{"a recursive event speaks for its subtree", []syncer.DirEvent{ev(flat("p/a"), ms(0), "p/a/f"), ev(deep("p"), ms(1), "p/b/g")},
			[]string{"p/b/g"}},
		{"a flat event speaks for its own files only", []syncer.DirEvent{ev(deep("p"), ms(0), "p/a/f", "p/g"), ev(flat("p"), ms(1))},
			[]string{"p/a/f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := coalesce.NewDebouncer[int](coalesce.Options{Quiet: 100 * time.Millisecond, MaxChildren: 4})
			for _, e := range tt.evs {
				d.Add(e)
			}
			var got []string
			for _, p := range d.Due(ms(1000)) {
				got = append(got, p.OpenFiles()...)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("open files mismatch (-want +got):\n%s", d)
			}
		})
	}
}

// events is an EventSource that delivers its events, then waits for the end.
type events []syncer.DirEvent

func (e events) ConsumeEvents(ctx context.Context, fn func(syncer.DirEvent, func() error)) error {
	for _, ev := range e {
		fn(ev, func() error { return nil })
	}
	<-ctx.Done()
	return nil
}

// failingSource is an EventSource that cannot start.
type failingSource struct{}

func (failingSource) ConsumeEvents(context.Context, func(syncer.DirEvent, func() error)) error {
	return errors.New("consume events: iterator closed")
}

// TestCoalescer_Consume checks that Consume feeds the stored events through
// the loop, and returns the source's failure.
func TestCoalescer_Consume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		c, err := coalesce.New(coalesce.Config{Options: coalesce.Options{Quiet: 100 * time.Millisecond, MaxDelay: time.Second}, Publisher: rec})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		now := time.Now()
		go func() {
			done <- c.Consume(ctx, events{{Scope: flat("p/a"), At: now}, {Scope: flat("p/a"), At: now}, {Scope: flat("p/b"), At: now}})
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(rec.jobs) != 2 {
			t.Errorf("published %+v, want one job each for p/a and p/b", rec.jobs)
		}
		if err := c.Consume(t.Context(), failingSource{}); err == nil || !strings.Contains(err.Error(), "iterator closed") {
			t.Errorf("Consume over a failing source = %v, want its error", err)
		}
	})
}
