package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/syncer/syncer"
)

// DeadStream holds jobs that were given up, until an operator retries them.
const DeadStream = "SYNCER_DEAD"

const deadPrefix = "syncer.dead."

// DeadJob is a given-up job as stored in the dead-letter stream.
type DeadJob struct {
	Seq      uint64     `json:"seq"`
	Job      syncer.Job `json:"-"`
	ID       string     `json:"job_id"`
	Scope    string     `json:"scope"`
	Project  string     `json:"project"`
	Error    string     `json:"error"`
	ExitCode int        `json:"exit_code"`
	At       time.Time  `json:"at"`
}

type wireDead struct {
	wireJob
	Error    string    `json:"error"`
	ExitCode int       `json:"exit_code"`
	At       time.Time `json:"at"`
}

func (q *JetStream) deadStream(ctx context.Context) (jetstream.Stream, error) {
	return ensureStream(ctx, q.js, jetstream.StreamConfig{
		Name:      DeadStream,
		Subjects:  []string{deadPrefix + ">"},
		Retention: jetstream.LimitsPolicy,
		Storage:   q.opts.storage(),
		Replicas:  q.opts.Replicas,
		MaxAge:    90 * 24 * time.Hour,
	})
}

// PublishDead stores a given-up job with why it failed.
func (q *JetStream) PublishDead(ctx context.Context, r syncer.Result) error {
	b, err := json.Marshal(wireDead{wireJob: toWireJob(syncer.Job{ID: r.Job.ID, Scope: r.Job.Scope, Reason: r.Job.Reason, FirstEvent: r.Job.FirstEvent}),
		Error: r.Error, ExitCode: r.ExitCode, At: r.Finished})
	if err != nil {
		return fmt.Errorf("encode dead job: %w", err)
	}
	if _, err := q.js.Publish(ctx, deadPrefix+Token(r.Job.Scope.Project(), 16), b); err != nil {
		return fmt.Errorf("publish dead job %s: %w", r.Job.ID, err)
	}
	return nil
}

// Dead lists the dead-lettered jobs, oldest first, at most limit.
func (q *JetStream) Dead(ctx context.Context, limit int) ([]DeadJob, error) {
	s, err := q.deadStream(ctx)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead stream info: %w", err)
	}
	var out []DeadJob
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0 && len(out) < limit; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("read dead job %d: %w", seq, err)
		}
		var w wireDead
		if err := json.Unmarshal(m.Data, &w); err != nil {
			continue
		}
		j := w.job()
		out = append(out, DeadJob{Seq: seq, Job: j, ID: j.ID, Scope: j.Scope.String(), Project: j.Scope.Project(),
			Error: w.Error, ExitCode: w.ExitCode, At: w.At})
	}
	return out, nil
}

// Retry puts dead-lettered jobs back on the JOBS queue (all of them when ids
// is empty) and removes them from the dead-letter stream. It returns how
// many it put back.
func (q *JetStream) Retry(ctx context.Context, ids []string) (int, error) {
	dead, err := q.Dead(ctx, 1<<20)
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	s, err := q.deadStream(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range dead {
		if len(want) > 0 && !want[d.ID] {
			continue
		}
		j := d.Job
		j.ID = fmt.Sprintf("%s-retry-%d", d.ID, time.Now().UnixNano())
		j.Reason = syncer.ReasonRetry
		if err := q.PublishJob(ctx, j); err != nil {
			return n, err
		}
		if err := s.DeleteMsg(ctx, d.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("remove dead job %d: %w", d.Seq, err)
		}
		n++
	}
	return n, nil
}
