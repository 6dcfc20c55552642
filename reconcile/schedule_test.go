package reconcile_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/reconcile"
)

// call is one reconcile the scheduler ran, at the bubble's fake time.
type call struct {
	why      string
	projects []string
	at       time.Duration // since the test began
}

// recorder is a ScheduleOptions.Reconcile that records its calls and
// answers with what fail says (nil: success).
type recorder struct {
	start time.Time
	mu    sync.Mutex
	calls []call
	fail  func(c call) error
	hold  chan struct{} // when set, each reconcile waits for a receive
}

func (r *recorder) reconcile(ctx context.Context, why string, projects []string) error {
	c := call{why: why, projects: projects, at: time.Since(r.start)}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	if r.hold != nil {
		select {
		case <-r.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.fail != nil {
		return r.fail(c)
	}
	return nil
}

func (r *recorder) all() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// run starts the scheduler in the bubble and stops it when the test ends.
func run(t *testing.T, opts reconcile.ScheduleOptions, rec *recorder) *reconcile.Scheduler {
	t.Helper()
	rec.start = time.Now()
	opts.Reconcile = rec.reconcile
	s := reconcile.NewScheduler(opts)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

func TestScheduler_IntervalWithJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		run(t, reconcile.ScheduleOptions{Interval: time.Hour}, rec)
		time.Sleep(20*time.Hour + time.Minute)
		synctest.Wait()
		calls := rec.all()
		if len(calls) < 2 || calls[0].why != reconcile.WhyStartup || calls[0].at != 0 {
			t.Fatalf("calls %+v: want the startup reconcile at once", calls)
		}
		gaps := map[time.Duration]bool{}
		prev := calls[0].at
		for _, c := range calls[1:] {
			if c.why != reconcile.WhyScheduled || c.projects != nil {
				t.Errorf("call %+v: want a scheduled reconcile of everything", c)
			}
			gap := c.at - prev
			if gap < 54*time.Minute || gap > 66*time.Minute {
				t.Errorf("a scheduled reconcile %v after the one before, want 1 h ± 10 %%", gap)
			}
			gaps[gap] = true
			prev = c.at
		}
		if n := len(calls) - 1; n < 17 || n > 23 {
			t.Errorf("%d scheduled reconciles in 20 h, want about 20", n)
		}
		if len(gaps) < 2 {
			t.Errorf("every gap is the same (%v): no jitter", gaps)
		}
	})
}

func TestScheduler_NetworkFSCapsInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		run(t, reconcile.ScheduleOptions{NetworkFS: "nfs4"}, rec) // no interval configured
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(rec.all()) - 1; n < 3 || n > 5 {
			t.Errorf("%d scheduled reconciles in an hour of a network source, want one per ~%v", n, reconcile.NetworkInterval)
		}
	})
}

func TestScheduler_RetryAfterFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		failed := false
		rec := &recorder{fail: func(c call) error {
			if c.why == reconcile.WhyRequested && !failed {
				failed = true
				return errors.New("queue unreachable")
			}
			return nil
		}}
		s := run(t, reconcile.ScheduleOptions{Retry: 10 * time.Second}, rec)
		<-s.Ready()
		time.Sleep(time.Minute)
		s.Request("p1", "p2")
		synctest.Wait()
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if n := len(rec.all()); n != 2 {
			t.Fatalf("%d reconciles before the retry pause ended, want 2 (startup, the failed one)", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		calls := rec.all()
		if len(calls) != 3 {
			t.Fatalf("calls %+v: want the failed reconcile run again", calls)
		}
		if c := calls[2]; !slices.Equal(c.projects, []string{"p1", "p2"}) || c.at != calls[1].at+10*time.Second {
			t.Errorf("retry %+v: want p1, p2 again 10 s after the failure at %v", c, calls[1].at)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(rec.all()); n != 3 {
			t.Errorf("%d reconciles: a succeeded retry was retried again", n)
		}
	})
}

func TestScheduler_StartupWaitsWhilePaused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		rec := &recorder{fail: func(c call) error {
			if n++; n <= 3 {
				return syncer.ErrPaused
			}
			return nil
		}}
		s := run(t, reconcile.ScheduleOptions{PausedRetry: 5 * time.Second}, rec)
		<-s.Ready()
		calls := rec.all()
		if len(calls) != 4 || calls[3].at != 15*time.Second {
			t.Errorf("calls %+v: want three refused startup walks 5 s apart, then ready", calls)
		}
	})
}

func TestScheduler_StartupError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := reconcile.NewScheduler(reconcile.ScheduleOptions{Reconcile: func(context.Context, string, []string) error {
			return errors.New("walk: permission denied")
		}})
		err := s.Run(t.Context())
		if err == nil || !strings.Contains(err.Error(), "startup reconcile: walk: permission denied") {
			t.Errorf("Run = %v, want the startup reconcile's error", err)
		}
	})
}

// TestScheduler_BurstIsOneWalk checks that requests made while a reconcile
// runs are served by one walk after it, and that a request for everything
// absorbs those for projects.
func TestScheduler_BurstIsOneWalk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{hold: make(chan struct{})}
		s := run(t, reconcile.ScheduleOptions{}, rec)
		rec.hold <- struct{}{} // the startup reconcile ends
		<-s.Ready()
		s.Request("a")
		synctest.Wait() // the reconcile of a runs, held
		for _, p := range []string{"c", "b", "c", "b"} {
			s.Request(p)
		}
		rec.hold <- struct{}{}
		synctest.Wait()
		rec.hold <- struct{}{}
		synctest.Wait()
		calls := rec.all()
		if len(calls) != 3 || !slices.Equal(calls[1].projects, []string{"a"}) || !slices.Equal(calls[2].projects, []string{"b", "c"}) {
			t.Fatalf("calls %+v: want startup, a, then one walk of b and c", calls)
		}
		s.Request("a")
		s.Request()
		s.Request("b")
		synctest.Wait()
		rec.hold <- struct{}{}
		synctest.Wait()
		calls = rec.all()
		if len(calls) != 4 || calls[3].projects != nil {
			t.Errorf("calls %+v: want one walk of everything", calls)
		}
	})
}

func TestScheduler_FailoverFollowUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{hold: make(chan struct{})}
		s := run(t, reconcile.ScheduleOptions{Settle: 15 * time.Second}, rec)
		s.Failover("leader elected") // while starting: the startup walk covers it
		rec.hold <- struct{}{}
		<-s.Ready()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(rec.all()); n != 1 {
			t.Fatalf("%d reconciles: a failover during the startup walk was followed up", n)
		}
		t0 := time.Since(rec.start)
		for range 12 { // every stream and consumer elects a leader
			s.Failover("leader elected")
			time.Sleep(time.Second)
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		calls := rec.all()
		if len(calls) != 2 || calls[1].why != reconcile.WhyRequested || calls[1].projects != nil || calls[1].at != t0+15*time.Second {
			t.Fatalf("calls %+v: want one reconcile of everything 15 s after the first election at %v", calls, t0)
		}
		rec.hold <- struct{}{}
		time.Sleep(time.Minute)
		synctest.Wait()
		// Elections 12 s into the settle were absorbed by the follow-up;
		// a failover after it gets its own.
		if n := len(rec.all()); n != 2 {
			t.Fatalf("%d reconciles after one failover, want 2", n)
		}
		s.Failover("reconnected")
		time.Sleep(16 * time.Second)
		synctest.Wait()
		if n := len(rec.all()); n != 3 {
			t.Errorf("%d reconciles: a second failover was not followed up", n)
		}
		rec.hold <- struct{}{}
	})
}

// TestScheduler_DegradedUntilCaughtUp: lost events make the scheduler
// degraded until a reconcile started after them completes, retries
// included.
func TestScheduler_DegradedUntilCaughtUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		failures := 2
		rec := &recorder{fail: func(c call) error {
			if c.why == reconcile.WhyRequested && failures > 0 {
				failures--
				return errors.New("no space left on device")
			}
			return nil
		}}
		s := run(t, reconcile.ScheduleOptions{Retry: 10 * time.Second}, rec)
		<-s.Ready()
		if d := s.Degraded(); d != "" {
			t.Fatalf("degraded at start: %q", d)
		}
		s.Lost(syncer.Scope{Dir: "p/a", Recursive: true})
		synctest.Wait()
		if d := s.Degraded(); !strings.Contains(d, "events may have been lost") {
			t.Fatalf("after lost events: %q", d)
		}
		time.Sleep(15 * time.Second) // one retry fails too
		synctest.Wait()
		if s.Degraded() == "" {
			t.Fatal("caught up although every reconcile failed")
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if d := s.Degraded(); d != "" {
			t.Errorf("still degraded after a reconcile succeeded: %q", d)
		}
		calls := rec.all()
		if last := calls[len(calls)-1]; !slices.Equal(last.projects, []string{"p"}) {
			t.Errorf("last reconcile %+v, want project p", last)
		}
	})
}
