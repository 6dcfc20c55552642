package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// NetworkInterval is the longest pause between scheduled reconciles of a
// source on a network filesystem: inotify sees only this host's writes there.
const NetworkInterval = 15 * time.Minute

// ScheduleOptions configure a Scheduler.
type ScheduleOptions struct {
	// Reconcile runs one reconcile of the projects (none: all) and returns
	// once its jobs are settled; an error means it did not complete.
	Reconcile func(ctx context.Context, why string, projects []string) error
	// Interval is the pause between scheduled reconciles of everything,
	// give or take 10 % so that daemons started together spread out; 0 is
	// none.
	Interval time.Duration
	// NetworkFS, the source's filesystem type when it is a network one,
	// makes Interval at most NetworkInterval.
	NetworkFS string
	// Retry is the pause before a reconcile that did not complete runs
	// again (default 10 s); the startup reconcile refused by the deletion
	// guard is retried every PausedRetry (default 5 s).
	Retry, PausedRetry time.Duration
	// Settle is how long after a failover its reconcile runs: the cluster
	// settles and queued work drains first (default 15 s).
	Settle time.Duration
	// OnReady, when set, is called once the startup reconcile is done.
	OnReady func()
	Logger  *zap.Logger
}

// Scheduler decides when reconciles run: the startup one, then on the
// interval and on request (lost events, unwatched directories, a failover,
// the API). Requests are a set, never dropped: each stays until a reconcile
// that covers it completes, and requests made while one runs are served by
// one walk after it.
type Scheduler struct {
	opts  ScheduleOptions
	log   *zap.Logger
	ready chan struct{}
	wake  chan struct{}
	reset chan time.Duration // SetInterval's new interval, for Run's loop

	mu       sync.Mutex
	all      bool            // everything is wanted
	wanted   map[string]bool // projects wanted
	failover bool            // a failover's reconcile is scheduled
	lostAt   time.Time       // events lost since, until a reconcile started after catches up
}

// NewScheduler returns a Scheduler; Run runs it.
func NewScheduler(opts ScheduleOptions) *Scheduler {
	if opts.Retry <= 0 {
		opts.Retry = 10 * time.Second
	}
	if opts.PausedRetry <= 0 {
		opts.PausedRetry = 5 * time.Second
	}
	if opts.Settle <= 0 {
		opts.Settle = 15 * time.Second
	}
	if opts.NetworkFS != "" && (opts.Interval <= 0 || opts.Interval > NetworkInterval) {
		opts.Interval = NetworkInterval
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Scheduler{opts: opts, log: opts.Logger, ready: make(chan struct{}), wake: make(chan struct{}, 1),
		reset: make(chan time.Duration, 1), wanted: map[string]bool{}}
}

// Ready is closed once the startup reconcile is done.
func (s *Scheduler) Ready() <-chan struct{} { return s.ready }

func (s *Scheduler) isReady() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// Request asks for a reconcile of the projects; none is all of them. A nil
// Scheduler (a process that does not reconcile) ignores it, and Lost and
// Failover too.
func (s *Scheduler) Request(projects ...string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if len(projects) == 0 {
		s.all = true
	}
	for _, p := range projects {
		s.wanted[p] = true
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // already awake
	}
}

// Lost asks for a reconcile of what the watcher may have missed: the
// project holding s, or everything when s is the whole tree.
func (s *Scheduler) Lost(sc syncer.Scope) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.lostAt.IsZero() {
		s.lostAt = time.Now()
	}
	s.mu.Unlock()
	if sc.Dir == "" {
		s.Request()
		return
	}
	s.Request(sc.Project())
}

// Degraded says, while events may have been lost and the reconciles that
// catch up have not completed, since when; "" when none are missing.
func (s *Scheduler) Degraded() string {
	if s == nil {
		return "" // a process that does not reconcile
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lostAt.IsZero() {
		return ""
	}
	return "events may have been lost since " + s.lostAt.Format(time.RFC3339) + "; a reconcile is catching up"
}

// caughtUp clears the lost mark when a reconcile that started at start
// completed with nothing else wanted.
func (s *Scheduler) caughtUp(start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lostAt.IsZero() && !s.lostAt.After(start) && !s.all && len(s.wanted) == 0 {
		s.lostAt = time.Time{}
	}
}

// Failover asks for one reconcile of everything once the cluster settles:
// a leader change may redeliver work or, rarely, skip it. The many
// elections of one failover (every stream and consumer elects) and those
// while the startup reconcile runs, which covers them, cost nothing more.
func (s *Scheduler) Failover(cause string) {
	if s == nil || !s.isReady() {
		return
	}
	s.mu.Lock()
	pending := s.failover
	s.failover = true
	s.mu.Unlock()
	if pending {
		return
	}
	s.log.Warn("NATS failover; reconciling once the cluster settles", zap.String("cause", cause),
		zap.Duration("in", s.opts.Settle))
	time.AfterFunc(s.opts.Settle, func() {
		s.mu.Lock()
		s.failover = false
		s.mu.Unlock()
		s.Request()
	})
}

// take returns and clears what is wanted: all, or the projects (sorted).
func (s *Scheduler) take() (all bool, projects []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, s.all = s.all, false
	for p := range s.wanted {
		projects = append(projects, p)
	}
	clear(s.wanted)
	if all {
		return true, nil
	}
	sort.Strings(projects)
	return false, projects
}

// Run runs the startup reconcile until it completes (waiting while the
// deletion guard refuses), then the scheduled and requested ones, until
// ctx ends. It returns an error only when the startup reconcile fails for
// another reason.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		err := s.opts.Reconcile(ctx, WhyStartup, nil)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, syncer.ErrPaused) {
			return fmt.Errorf("startup reconcile: %w", err)
		}
		select { // paused: wait for the source, then walk it
		case <-ctx.Done():
			return nil
		case <-time.After(s.opts.PausedRetry):
		}
	}
	close(s.ready)
	if s.opts.OnReady != nil {
		s.opts.OnReady()
	}
	scheduled := s.next()
	for {
		why := WhyRequested
		var projects []string
		select {
		case <-ctx.Done():
			return nil
		case iv := <-s.reset:
			s.opts.Interval = iv // this loop alone reads it once Run began
			scheduled = s.next()
			continue
		case <-scheduled:
			scheduled = s.next()
			why = WhyScheduled
		case <-s.wake:
			all, list := s.take()
			if !all && len(list) == 0 {
				continue
			}
			projects = list
		}
		start := time.Now()
		err := s.opts.Reconcile(ctx, why, projects)
		if err == nil {
			s.caughtUp(start)
		}
		if err != nil && ctx.Err() == nil {
			// Not done (the queue unreachable, the guard tripped): ask
			// again, so that what it was for is not forgotten.
			s.log.Error("reconcile failed; retrying in a while", zap.Error(err), zap.String(syncer.LogReason, why),
				zap.Strings("projects", projects), zap.Duration("retry_in", s.opts.Retry))
			time.AfterFunc(s.opts.Retry, func() { s.Request(projects...) })
		}
	}
}

// SetInterval changes the pause between scheduled reconciles (a reload):
// the next one is due an interval (with jitter) from now. On a network
// source the interval stays at most NetworkInterval. A nil Scheduler
// ignores it.
func (s *Scheduler) SetInterval(iv time.Duration) {
	if s == nil {
		return
	}
	if s.opts.NetworkFS != "" && (iv <= 0 || iv > NetworkInterval) {
		iv = NetworkInterval
	}
	for {
		select {
		case s.reset <- iv:
			return
		default:
			select { // a value not yet taken: replace it
			case <-s.reset:
			default:
			}
		}
	}
}

// next is when the next scheduled reconcile is due, nil for never.
func (s *Scheduler) next() <-chan time.Time {
	iv := s.opts.Interval
	if iv <= 0 {
		return nil
	}
	return time.After(time.Duration(float64(iv) * (0.9 + 0.2*rand.Float64())))
}
