package coalesce

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// Input is one event handed to the Coalescer, with the acknowledgement that
// settles it once a job covering it is published. Ack may be nil.
type Input struct {
	Event syncer.DirEvent
	Ack   func() error
}

// JobPublisher hands jobs to the work queue. Publish returns only once the
// job is stored durably; an error means it may not be.
type JobPublisher interface {
	PublishJob(ctx context.Context, job syncer.Job) error
}

// Coalescer runs a Debouncer over a stream of events and publishes due
// scopes as jobs.
type Coalescer struct {
	d       *Debouncer[func() error]
	pub     JobPublisher
	log     *zap.Logger
	prefix  string
	seq     uint64
	onJob   func(job syncer.Job, events int)
	onErr   func(error)
	failed  int       // publishes failed in a row
	retryAt time.Time // no publish before this
}

// Config is what New needs besides the debounce options.
type Config struct {
	Options
	Publisher JobPublisher
	Logger    *zap.Logger
	// OnJob, when set, is called after each job is published with the
	// number of events it covers (metrics).
	OnJob func(job syncer.Job, events int)
	// OnPublishError, when set, is called when a job could not be
	// published (it is retried): the queue is failing over or unreachable.
	OnPublishError func(err error)
}

// New returns a Coalescer; it starts nothing.
func New(c Config) (*Coalescer, error) {
	if c.Publisher == nil {
		return nil, fmt.Errorf("coalesce: publisher is required")
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &Coalescer{
		d:      NewDebouncer[func() error](c.Options),
		pub:    c.Publisher,
		log:    c.Logger,
		prefix: hex.EncodeToString(b),
		onJob:  c.OnJob,
		onErr:  c.OnPublishError,
	}, nil
}

// EventSource delivers stored events, each with the acknowledgement that
// settles it (the EVENTS stream).
type EventSource interface {
	ConsumeEvents(ctx context.Context, fn func(ev syncer.DirEvent, ack func() error)) error
}

// Consume runs the coalescer over the events src delivers until ctx ends or
// src fails.
func (c *Coalescer) Consume(ctx context.Context, src EventSource) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan Input) // unbuffered: the stream is the buffer
	consumed := make(chan error, 1)
	go func() {
		consumed <- src.ConsumeEvents(ctx, func(ev syncer.DirEvent, ack func() error) {
			select {
			case in <- Input{Event: ev, Ack: ack}:
			case <-ctx.Done():
			}
		})
		cancel()
	}()
	err := c.Run(ctx, in)
	cancel()
	if cerr := <-consumed; err == nil && cerr != nil && !errors.Is(cerr, context.Canceled) {
		err = cerr
	}
	return err
}

// Run reads events from in until ctx ends or in is closed, and publishes jobs
// when they are due. Pending scopes not yet published when Run returns stay
// unacknowledged, so the queue redelivers their events to the next run.
//
// The debouncer and its timer belong to this goroutine alone: no mutex.
func (c *Coalescer) Run(ctx context.Context, in <-chan Input) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.arm(timer)
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-in:
			if !ok {
				return nil
			}
			c.add(ev)
		case <-timer.C:
			c.flush(ctx)
		}
	}
}

func (c *Coalescer) add(in Input) {
	var toks []func() error
	if in.Ack != nil {
		toks = append(toks, in.Ack)
	}
	// Debounce on the time the watcher saw the change (same process), so a
	// redelivered event is due at once; never on a time in the future.
	at := in.Event.At
	if now := time.Now(); at.IsZero() || at.After(now) {
		at = now
	}
	ev := in.Event
	ev.At = at
	c.d.Add(ev, toks...)
	if ce := c.log.Check(zap.DebugLevel, "event coalesced"); ce != nil {
		ce.Write(zap.String(syncer.LogScope, in.Event.Scope.String()), zap.Int(syncer.LogPending, c.d.Len()))
	}
}

func (c *Coalescer) arm(t *time.Timer) {
	next, ok := c.d.Next()
	if !ok {
		next = time.Now().Add(time.Hour)
	}
	if c.retryAt.After(next) {
		next = c.retryAt
	}
	t.Reset(time.Until(next))
}

func (c *Coalescer) flush(ctx context.Context) {
	if time.Now().Before(c.retryAt) {
		return
	}
	due := c.d.Due(time.Now())
	for i, p := range due {
		c.seq++
		job := syncer.Job{
			ID:         fmt.Sprintf("%s-%d", c.prefix, c.seq),
			Scope:      p.Scope,
			Reason:     p.Reason,
			FirstEvent: p.First,
			Open:       p.OpenFiles(),
			Moves:      p.Moves,
		}
		if err := c.pub.PublishJob(ctx, job); err != nil {
			c.d.Restore(due[i:])
			c.failed++
			delay := publishBackoff.Delay(c.failed)
			c.retryAt = time.Now().Add(delay)
			c.log.Warn("publish job failed; will retry", zap.Error(err), zap.Duration("backoff", delay))
			if c.onErr != nil {
				c.onErr(err)
			}
			return
		}
		c.failed = 0
		for _, ack := range p.Tokens {
			if err := ack(); err != nil {
				// The event comes back after its ack wait and merges again: harmless.
				c.log.Debug("ack event", zap.Error(err))
			}
		}
		if c.onJob != nil {
			c.onJob(job, len(p.Tokens))
		}
		if ce := c.log.Check(zap.DebugLevel, "job published"); ce != nil {
			ce.Write(zap.String(syncer.LogJobID, job.ID), zap.String(syncer.LogScope, job.Scope.String()),
				zap.String(syncer.LogReason, string(job.Reason)), zap.Int("events", len(p.Tokens)))
		}
	}
}

// publishBackoff spaces the retries of a failed job publish.
var publishBackoff = syncer.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}
