package metrics

import (
	"sort"
	"sync"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/guard"
)

// Projects keeps, per project, what `syncer status` shows of its settled
// jobs. It is safe for concurrent use.
type Projects struct {
	mu   sync.Mutex
	m    map[string]*project
	runs runs
}

type project struct {
	Project
	lastFailed time.Time
}

// Project is one project's line in the status report.
type Project struct {
	Name string `json:"name"`
	// State is ok, syncing (jobs pending), failing (its last job was
	// given up), held (its deletions wait for approval) or paused (the
	// deletion guard holds every job, or an operator paused it); Why
	// says why it waits.
	State     string    `json:"state"`
	Why       string    `json:"why,omitempty"`
	Pending   uint64    `json:"pending"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	LastLag   float64   `json:"last_lag_seconds"`
	Done      int64     `json:"jobs_done"`
	Failed    int64     `json:"jobs_failed"`
	LastError string    `json:"last_error,omitempty"`
	// Dropped counts extended attributes and ACLs the backup did not keep
	// (syncer.Stats.Dropped).
	Dropped int64 `json:"metadata_dropped"`
}

// Observe takes one settled job. A project is failing from a job given up
// until a job started after it succeeds.
func (p *Projects) Observe(r syncer.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*project{}
	}
	name := r.Job.Scope.Project()
	ps := p.m[name]
	if ps == nil {
		ps = &project{}
		p.m[name] = ps
	}
	if r.Stats.Dropped > 0 && p.runs.first(r.Run) {
		ps.Dropped += r.Stats.Dropped
	}
	if r.OK {
		ps.Done++
		ps.LastSync = r.Finished
		if !r.Job.FirstEvent.IsZero() {
			ps.LastLag = r.Finished.Sub(r.Job.FirstEvent).Seconds()
		}
		if r.Started.After(ps.lastFailed) && ps.State == "failing" {
			ps.State = ""
		}
	} else {
		ps.Failed++
		ps.LastError = r.Error
		ps.State = "failing"
		ps.lastFailed = r.Finished
	}
}

// Names lists the projects seen, with those of extra, sorted.
func (p *Projects) Names(extra []string) []string {
	p.mu.Lock()
	set := map[string]bool{}
	for n := range p.m {
		set[n] = true
	}
	p.mu.Unlock()
	for _, n := range extra {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Report is the status of the named projects, given their pending jobs,
// why every job is held ("" when none is) and the projects whose deletions
// wait for approval (with why).
func (p *Projects) Report(names []string, pending map[string]uint64, paused string, holds []guard.Hold, pauses []guard.Pause) []Project {
	held := map[string]string{}
	for _, h := range holds {
		held[h.Project] = h.String()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Project, 0, len(names))
	for _, n := range names {
		pr := Project{}
		if ps := p.m[n]; ps != nil {
			pr = ps.Project
		}
		pr.Name, pr.Pending = ProjectLabel(n), pending[n]
		pr.Why = held[n]
		switch {
		case paused != "":
			pr.State, pr.Why = "paused", paused
		case pr.Why != "":
			pr.State = "held"
		case pausedBy(pauses, n) != nil:
			pr.State, pr.Why = "paused", pausedBy(pauses, n).String()
		case pr.State == "failing":
		case pr.Pending > 0:
			pr.State = "syncing"
		default:
			pr.State = "ok"
		}
		out = append(out, pr)
	}
	return out
}

// pausedBy is the pause that holds project n, nil when none does.
func pausedBy(pauses []guard.Pause, n string) *guard.Pause {
	for i, ps := range pauses {
		if ps.Project == "" || ps.Project == n {
			return &pauses[i]
		}
	}
	return nil
}
