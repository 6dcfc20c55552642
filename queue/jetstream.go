package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// Stream and consumer names.
const (
	EventsStream   = "SYNCER_EVENTS"
	JobsStream     = "SYNCER_JOBS"
	EventsConsumer = "coalescer"
	JobsConsumer   = "workers"
)

// Defaults for Options.
const (
	DefaultJobAckWait   = 60 * time.Second
	DefaultEventAckWait = 2 * time.Minute
	DefaultPullExpiry   = 5 * time.Second
	apiTimeout          = 10 * time.Second
	// openTimeout bounds setting up streams: on a cluster that is still
	// electing leaders, creating them fails for a few seconds.
	openTimeout = 60 * time.Second
	// embeddedOpenTimeout bounds it on the embedded server, which elects
	// nothing: a stream or consumer that cannot be set up this long is damaged.
	embeddedOpenTimeout = 5 * time.Second
	// DefaultEventsMaxBytes caps the EVENTS stream (a stopped coalescer must
	// not fill the disk); on a small state filesystem Connect lowers it.
	DefaultEventsMaxBytes = 1 << 30
	attemptTimeout        = 5 * time.Second
)

// Publishes outlive a stream leader election (a few seconds) by retrying
// "no responders" instead of failing.
var pubRetry = []jetstream.PublishOpt{jetstream.WithRetryAttempts(60), jetstream.WithRetryWait(250 * time.Millisecond)}

// Options configure the JetStream queue.
type Options struct {
	// Replicas of streams (1 standalone, 3 on a cluster).
	Replicas int
	// JobAckWait is how long a delivered job may go without Ack or
	// InProgress before it is delivered again (to another worker).
	JobAckWait time.Duration
	// EventAckWait is the same for events held by the coalescer; it must
	// exceed the coalescer's max delay.
	EventAckWait time.Duration
	// StateDir is the daemon's state directory (required): locked while
	// the queue is open, it holds the embedded server's store (nats/).
	StateDir string
	// External, when set, is the NATS cluster to use instead of the
	// embedded server.
	External *ExternalOptions
	// Listen opens a client port on the embedded server ("127.0.0.1:4222");
	// empty opens none.
	Listen string
	// Scratch keeps the streams in memory, on an embedded server of their
	// own: a one-shot queue whose loss costs only a rerun (a standalone
	// reconcile); it starts and stops without the file store's fsyncs.
	// With no client port (Listen) nobody outside the process can follow
	// its results, which are then handed to the subscribers in process,
	// not encoded and sent through the server.
	Scratch bool
	// OnFailover, when set, is called (on a goroutine of its own) for every
	// leader election of one of syncer's streams or consumers on an
	// external cluster, and after each reconnect: the moments when stored
	// work can be redelivered or, rarely, skipped.
	OnFailover func(what string)
	// EventsMaxBytes caps the EVENTS stream when it is created
	// (DefaultEventsMaxBytes, less on a small embedded store).
	EventsMaxBytes int64
	Logger         *zap.Logger
}

func (o Options) storage() jetstream.StorageType {
	if o.Scratch {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// JetStream is the queue on a NATS connection. It is safe for concurrent use.
type JetStream struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	jobs    jetstream.Stream
	events  jetstream.Stream
	jobCons jetstream.Consumer
	evCons  jetstream.Consumer
	opts    Options
	log     *zap.Logger
	url     string
	close   func()
	local   *subscribers // results in process: a scratch queue nobody else reaches
}

// subscribers are the functions SubscribeResults gave a queue whose results
// stay in process, called one at a time.
type subscribers struct {
	mu   sync.Mutex
	fns  map[int]func(syncer.Result)
	next int
}

// open sets up streams and consumers (creating what is missing, never
// rewriting what exists) on nc.
func open(ctx context.Context, nc *nats.Conn, opts Options) (*JetStream, error) {
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.JobAckWait <= 0 {
		opts.JobAckWait = DefaultJobAckWait
	}
	if opts.EventAckWait <= 0 {
		opts.EventAckWait = DefaultEventAckWait
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	q := &JetStream{nc: nc, js: js, opts: opts, log: opts.Logger}
	timeout := openTimeout
	if opts.External == nil {
		timeout = embeddedOpenTimeout // no leader to elect: what fails this long is damage
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	maxEvents := opts.EventsMaxBytes
	if maxEvents <= 0 {
		maxEvents = DefaultEventsMaxBytes
	}
	if q.events, err = ensureStream(ctx, js, jetstream.StreamConfig{
		Name:      EventsStream,
		Subjects:  []string{eventsPrefix + ">"},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   opts.storage(),
		Replicas:  opts.Replicas,
		// A stopped coalescer must not fill the disk; a refused publish
		// makes the watcher ask for a reconcile instead.
		MaxBytes: maxEvents,
		Discard:  jetstream.DiscardNew,
	}); err != nil {
		return nil, err
	}
	if q.jobs, err = ensureStream(ctx, js, jetstream.StreamConfig{
		Name:      JobsStream,
		Subjects:  []string{jobsPrefix + ">"},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   opts.storage(),
		Replicas:  opts.Replicas,
		// One pending job per scope: a newer job replaces an older pending
		// one, which is how repeated changes to a directory coalesce here.
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		Duplicates:        2 * time.Minute,
	}); err != nil {
		return nil, err
	}
	if _, err = q.deadStream(ctx); err != nil {
		return nil, err
	}
	if q.evCons, err = ensureConsumer(ctx, q.events, jetstream.ConsumerConfig{
		Durable:       EventsConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.EventAckWait,
		MaxDeliver:    -1,
		MaxAckPending: 1 << 16,
	}); err != nil {
		return nil, err
	}
	if q.jobCons, err = ensureConsumer(ctx, q.jobs, jetstream.ConsumerConfig{
		Durable:   JobsConsumer,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   opts.JobAckWait,
		// A finite MaxDeliver orphans jobs silently; workers count real
		// failures and Term instead.
		MaxDeliver:    -1,
		MaxAckPending: 1 << 14,
	}); err != nil {
		return nil, err
	}
	return q, nil
}

// ensureStream reads the stream and creates it only when missing, so that
// many processes starting at once never fight over its config. Errors a
// cluster gives while it forms or elects a leader are retried until ctx ends.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return retry(ctx, "stream "+cfg.Name, func(ctx context.Context) (jetstream.Stream, error) {
		s, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				s, err = js.Stream(ctx, cfg.Name) // another process won the race
			}
		}
		return s, err
	})
}

func ensureConsumer(ctx context.Context, s jetstream.Stream, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return retry(ctx, "consumer "+cfg.Durable, func(ctx context.Context) (jetstream.Consumer, error) {
		c, err := s.Consumer(ctx, cfg.Durable)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			c, err = s.CreateConsumer(ctx, cfg)
		}
		return c, err
	})
}

// retry calls fn with a growing pause (100 ms up to 1 s) until it succeeds
// or ctx ends, and then returns fn's last error, not ctx's. Each attempt
// gets at most attemptTimeout: a request that went to a server that just
// died must not use up the whole budget.
func retry[T any](ctx context.Context, what string, fn func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		v, err := fn(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrAuthorization) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return v, fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%s: %w", what, err)
		case <-time.After(syncer.Backoff{Base: 100 * time.Millisecond, Max: time.Second}.Delay(attempt)):
		}
	}
}

// PublishEvent stores one watcher event in the EVENTS stream.
func (q *JetStream) PublishEvent(ctx context.Context, ev syncer.DirEvent) error {
	b, err := json.Marshal(toWireEvent(ev))
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if _, err := q.js.Publish(ctx, eventSubject(ev.Scope), b, pubRetry...); err != nil {
		return fmt.Errorf("publish event: %w", err)
	}
	return nil
}

// ConsumeEvents hands each stored event to fn with the acknowledgement that
// removes it from the stream, until ctx ends. fn runs on one goroutine.
func (q *JetStream) ConsumeEvents(ctx context.Context, fn func(ev syncer.DirEvent, ack func() error)) error {
	it, err := q.evCons.Messages(jetstream.PullMaxMessages(512), jetstream.PullExpiry(DefaultPullExpiry))
	if err != nil {
		return fmt.Errorf("consume events: %w", err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return fmt.Errorf("consume events: %w", err)
			}
			q.log.Warn("next event", zap.Error(err))
			continue
		}
		ev, err := decodeEvent(m.Data())
		if err != nil {
			q.log.Error("event refused", zap.Error(err), zap.String("subject", m.Subject()))
			_ = m.Term()
			continue
		}
		fn(ev, m.Ack)
	}
}

// PublishJob stores a job in the JOBS work queue, replacing a pending job
// for the same scope. The job ID de-duplicates retries of this publish only.
func (q *JetStream) PublishJob(ctx context.Context, job syncer.Job) error {
	b, err := json.Marshal(toWireJob(job))
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	if _, err := q.js.Publish(ctx, jobSubject(job), b, append(pubRetry, jetstream.WithMsgID(job.ID))...); err != nil {
		return fmt.Errorf("publish job %s: %w", job.ID, err)
	}
	return nil
}

// PublishJobs stores many jobs with asynchronous publishes and waits until
// every one is acknowledged by the server.
func (q *JetStream) PublishJobs(ctx context.Context, jobs []syncer.Job) error {
	acks := make([]jetstream.PubAckFuture, 0, len(jobs))
	for _, j := range jobs {
		b, err := json.Marshal(toWireJob(j))
		if err != nil {
			return fmt.Errorf("encode job: %w", err)
		}
		f, err := q.js.PublishAsync(jobSubject(j), b, append(pubRetry, jetstream.WithMsgID(j.ID))...)
		if err != nil {
			return fmt.Errorf("publish job %s: %w", j.ID, err)
		}
		acks = append(acks, f)
	}
	for i, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish job %s: %w", jobs[i].ID, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// PublishResult announces a finished job on core NATS (not stored: results
// feed live bookkeeping; a missed one is found again by reconcile).
func (q *JetStream) PublishResult(r syncer.Result) error {
	if l := q.local; l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, fn := range l.fns {
			fn(r)
		}
		return nil
	}
	w := wireResult{wireJob: toWireJob(r.Job), Run: r.Run, OK: r.OK, Started: r.Started, Finished: r.Finished, ExitCode: r.ExitCode, Error: r.Error, Stats: r.Stats}
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	return q.nc.Publish(resultSubject(r.Job.Scope), b)
}

// SubscribeResults calls fn for every result published by any worker until
// the returned stop function is called. fn runs on one goroutine.
func (q *JetStream) SubscribeResults(fn func(syncer.Result)) (stop func(), err error) {
	if l := q.local; l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		id := l.next
		l.next++
		l.fns[id] = fn
		return func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			delete(l.fns, id)
		}, nil
	}
	sub, err := q.nc.Subscribe(resultsPrefix+">", func(m *nats.Msg) {
		var w wireResult
		if err := json.Unmarshal(m.Data, &w); err != nil {
			return
		}
		fn(syncer.Result{Job: w.job(), Run: w.Run, OK: w.OK, Started: w.Started, Finished: w.Finished, ExitCode: w.ExitCode, Error: w.Error, Stats: w.Stats})
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe results: %w", err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	// Make sure the server knows the subscription before results flow.
	if err := q.nc.Flush(); err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// Stats are queue figures for status and metrics.
type Stats struct {
	Pending     uint64        // jobs waiting for a worker
	InFlight    int           // jobs delivered, not yet settled
	Redelivered int           // jobs delivered more than once and still unsettled
	OldestAge   time.Duration // age of the oldest stored job
	Events      uint64        // events waiting for the coalescer
	Dead        uint64        // jobs given up, waiting for `syncer retry`
}

// Stats reads stream and consumer state.
func (q *JetStream) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	ci, err := q.jobCons.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("jobs consumer info: %w", err)
	}
	st.Pending, st.InFlight, st.Redelivered = ci.NumPending, ci.NumAckPending, ci.NumRedelivered
	si, err := q.jobs.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("jobs stream info: %w", err)
	}
	if si.State.Msgs > 0 && !si.State.FirstTime.IsZero() {
		st.OldestAge = time.Since(si.State.FirstTime)
	}
	ei, err := q.evCons.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("events consumer info: %w", err)
	}
	st.Events = ei.NumPending + uint64(ei.NumAckPending)
	switch ds, err := q.js.Stream(ctx, DeadStream); {
	case errors.Is(err, jetstream.ErrStreamNotFound): // nothing given up yet
	case err != nil:
		return st, fmt.Errorf("dead stream: %w", err)
	default:
		di, err := ds.Info(ctx)
		if err != nil {
			return st, fmt.Errorf("dead stream info: %w", err)
		}
		st.Dead = di.State.Msgs
	}
	return st, nil
}

// PendingByProject counts the jobs stored (queued or in flight) for each of
// the given projects.
func (q *JetStream) PendingByProject(ctx context.Context, projects []string) (map[string]uint64, error) {
	si, err := q.jobs.Info(ctx, jetstream.WithSubjectFilter(jobsPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("jobs stream info: %w", err)
	}
	byToken := make(map[string]string, len(projects))
	for _, p := range projects {
		byToken[Token(p, 16)] = p
	}
	out := make(map[string]uint64, len(projects))
	for subj, n := range si.State.Subjects {
		rest := subj[len(jobsPrefix):]
		if i := len(rest); i >= 16 {
			if p, ok := byToken[rest[:16]]; ok {
				out[p] += n
			}
		}
	}
	return out, nil
}

// onLeaderElected calls fn (on its own goroutine) whenever a new leader is
// elected for one of syncer's streams or consumers on a cluster, with the
// stream or consumer name, until stop is called.
func (q *JetStream) onLeaderElected(fn func(what string)) (stop func(), err error) {
	var subs []*nats.Subscription
	stop = func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	for _, subj := range []string{"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.SYNCER_*", "$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.SYNCER_*.*"} {
		s, err := q.nc.Subscribe(subj, func(m *nats.Msg) {
			what := m.Subject[len("$JS.EVENT.ADVISORY."):]
			go fn(what)
		})
		if err != nil {
			stop()
			return nil, fmt.Errorf("subscribe leader advisories: %w", err)
		}
		subs = append(subs, s)
	}
	return stop, nil
}
