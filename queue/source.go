package queue

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// fetchWait bounds one pull request; it is also how long a stopping worker
// may wait for its fetch to end.
const fetchWait = 2 * time.Second

// Jobs is the workers' side of the JOBS queue. It is safe for concurrent use;
// each call pulls its own messages, with no client-side prefetch, so a busy
// worker never hoards jobs another could run.
type Jobs struct{ q *JetStream }

// Jobs returns the workers' view of the queue.
func (q *JetStream) Jobs() *Jobs { return &Jobs{q: q} }

// Next blocks until a job is delivered or ctx ends.
func (j *Jobs) Next(ctx context.Context) (syncer.Delivery, error) {
	for {
		if err := ctx.Err(); err != nil {
			return syncer.Delivery{}, err
		}
		fctx, cancel := context.WithTimeout(ctx, fetchWait)
		b, err := j.q.jobCons.Fetch(1, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return syncer.Delivery{}, ctx.Err()
			}
			j.q.log.Warn("fetch job", zap.Error(err))
			sleep(ctx, time.Second)
			continue
		}
		var got []syncer.Delivery
		for m := range b.Messages() {
			if d, ok := j.decode(m); ok {
				got = append(got, d)
			}
		}
		cancel()
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			j.q.log.Debug("fetch job", zap.Error(err))
		}
		if len(got) == 0 {
			continue
		}
		if ctx.Err() != nil {
			for _, d := range got {
				_ = d.Nak(0) // stopping: hand it to the next worker now, not after AckWait
			}
			return syncer.Delivery{}, ctx.Err()
		}
		return got[0], nil
	}
}

// More returns up to n jobs that are available right now, without waiting;
// a worker uses it to batch several directories into one rsync.
func (j *Jobs) More(n int) []syncer.Delivery {
	if n <= 0 {
		return nil
	}
	b, err := j.q.jobCons.FetchNoWait(n)
	if err != nil {
		return nil
	}
	var out []syncer.Delivery
	for m := range b.Messages() {
		if d, ok := j.decode(m); ok {
			out = append(out, d)
		}
	}
	return out
}

func (j *Jobs) decode(m jetstream.Msg) (syncer.Delivery, bool) {
	job, err := decodeJob(m.Data())
	if err != nil {
		// Whoever published it, it never reaches a worker: dead-lettered
		// with the reason on its first delivery, never retried.
		j.q.log.Error("job refused", zap.Error(err), zap.String("subject", m.Subject()), zap.String(syncer.LogJobID, job.ID))
		if derr := j.q.PublishDead(context.Background(), syncer.Result{Job: job, Finished: time.Now(), ExitCode: -1, Error: err.Error()}); derr != nil {
			j.q.log.Warn("dead-letter refused job", zap.Error(derr))
		}
		_ = m.Term()
		return syncer.Delivery{}, false
	}
	attempt, pending := 1, 0
	if md, err := m.Metadata(); err == nil {
		attempt, pending = int(md.NumDelivered), int(md.NumPending)
	}
	return syncer.Delivery{Job: job, Attempt: attempt, Pending: pending, Acker: acker{m}}, true
}

type acker struct{ m jetstream.Msg }

// Ack waits for the server to confirm: a job counts as done only when the
// queue knows it.
func (a acker) Ack() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return a.m.DoubleAck(ctx)
}

func (a acker) Nak(delay time.Duration) error {
	if delay <= 0 {
		return a.m.Nak()
	}
	return a.m.NakWithDelay(delay)
}

func (a acker) Term() error       { return a.m.Term() }
func (a acker) InProgress() error { return a.m.InProgress() }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
