package reconcile

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/syncer/syncer"
)

// Publisher puts jobs on the JOBS queue, all of them or an error.
type Publisher interface {
	PublishJobs(ctx context.Context, jobs []syncer.Job) error
}

// Tracker follows submitted jobs to completion by watching results.
//
// A job is done when a successful result covers its scope and started no
// earlier than the job was submitted. Matching by scope and time, not by job
// ID, is what makes it exact: the queue may replace a pending job with a
// newer one for the same scope, whose result then stands for both.
type Tracker struct {
	mu      sync.Mutex
	waiting map[string]wait            // by job ID
	byDir   map[string]map[string]bool // dir → IDs waiting on it
	runs    map[string]bool            // rsync runs whose stats are counted
	sum     Summary
	changed chan struct{} // closed and replaced on every change
}

type wait struct {
	scope syncer.Scope
	at    time.Time
	named bool // the job names its files (syncer.Job.Files)
}

// Summary is the outcome of the tracked jobs so far.
type Summary struct {
	Jobs, Done, Failed int
	Stats              syncer.Stats // of the rsync runs that completed tracked jobs
	Errors             []string     // one line per failed job
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker {
	return &Tracker{waiting: map[string]wait{}, byDir: map[string]map[string]bool{}, runs: map[string]bool{},
		changed: make(chan struct{})}
}

// Submit publishes jobs and tracks them. Each carries its Scope (and maybe
// Files); Submit sets the rest, with IDs prefix-n.
func (t *Tracker) Submit(ctx context.Context, pub Publisher, prefix string, jobs []syncer.Job, r syncer.Reason) error {
	jobs = slices.Clone(jobs)
	now := time.Now()
	t.mu.Lock()
	for i := range jobs {
		s := jobs[i].Scope
		jobs[i].ID, jobs[i].Reason, jobs[i].FirstEvent = fmt.Sprintf("%s-%d", prefix, i), r, now
		t.waiting[jobs[i].ID] = wait{scope: s, at: now, named: len(jobs[i].Files) > 0}
		if t.byDir[s.Dir] == nil {
			t.byDir[s.Dir] = map[string]bool{}
		}
		t.byDir[s.Dir][jobs[i].ID] = true
		t.sum.Jobs++
	}
	t.mu.Unlock()
	// All at once: workers then find full batches instead of a trickle.
	if err := pub.PublishJobs(ctx, jobs); err != nil {
		t.mu.Lock()
		for _, j := range jobs {
			t.remove(j.ID)
			t.sum.Jobs--
		}
		t.mu.Unlock()
		return err
	}
	return nil
}

// Observe takes one result from the results subject.
func (t *Tracker) Observe(r syncer.Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cands []string
	if r.Job.Scope.Recursive && r.OK {
		for id, w := range t.waiting { // rare: a subtree result may cover many
			if r.Job.Scope.Covers(w.scope) {
				cands = append(cands, id)
			}
		}
	} else {
		for id := range t.byDir[r.Job.Scope.Dir] {
			cands = append(cands, id)
		}
	}
	hit := false
	for _, id := range cands {
		w := t.waiting[id]
		switch {
		case r.OK && !r.Started.Before(w.at) && r.Job.Scope.Covers(w.scope) && (!r.Named() || w.named):
			// A job that named its files covered only those: it settles
			// only jobs like it (a later walk's, which replaced them
			// in the queue or found nothing more to do).
			t.sum.Done++
		case !r.OK && r.Job.ID == id:
			t.sum.Failed++
			t.sum.Errors = append(t.sum.Errors, fmt.Sprintf("%s: %s", w.scope, r.Error))
		default:
			continue
		}
		t.remove(id)
		hit = true
	}
	if !hit {
		return
	}
	if r.Run == "" || !t.runs[r.Run] {
		t.runs[r.Run] = true
		t.sum.Stats.Add(r.Stats)
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *Tracker) remove(id string) {
	w := t.waiting[id]
	delete(t.waiting, id)
	if ids := t.byDir[w.scope.Dir]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(t.byDir, w.scope.Dir)
		}
	}
}

// Waiting lists the scopes of the jobs not settled yet.
func (t *Tracker) Waiting() []syncer.Scope {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]syncer.Scope, 0, len(t.waiting))
	for _, w := range t.waiting {
		out = append(out, w.scope)
	}
	return out
}

// Unsettled is how many submitted jobs are not settled yet, and a channel
// closed when the next one settles.
func (t *Tracker) Unsettled() (int, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.waiting), t.changed
}

// Summary returns the counts so far.
func (t *Tracker) Summary() Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sum
	s.Errors = append([]string(nil), s.Errors...)
	return s
}

// Wait blocks until every submitted job is done or failed, or ctx ends.
func (t *Tracker) Wait(ctx context.Context) (Summary, error) {
	for {
		t.mu.Lock()
		n, ch := len(t.waiting), t.changed
		t.mu.Unlock()
		if n == 0 {
			return t.Summary(), nil
		}
		select {
		case <-ctx.Done():
			return t.Summary(), ctx.Err()
		case <-ch:
		}
	}
}
