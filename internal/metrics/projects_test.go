package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/metrics"
)

// TestProjects checks each project's state: failing from a job given up
// until a job started after it succeeds, syncing while jobs wait, paused
// while the guard holds everything or an operator paused it.
func TestProjects(t *testing.T) {
	var p metrics.Projects
	var pauses []guard.Pause
	t0 := time.Now()
	res := func(dir string, ok bool, started time.Duration) syncer.Result {
		return syncer.Result{Job: syncer.Job{Scope: syncer.Scope{Dir: dir}, FirstEvent: t0}, OK: ok,
			Started: t0.Add(started), Finished: t0.Add(started + time.Second), Error: map[bool]string{false: "rsync: exit 11"}[ok]}
	}
	state := func(name string, pending map[string]uint64, paused string) metrics.Project {
		for _, pr := range p.Report(p.Names([]string{"idle"}), pending, paused, nil, pauses) {
			if pr.Name == name {
				return pr
			}
		}
		t.Fatalf("no project %q in %v", name, p.Names(nil))
		return metrics.Project{}
	}
	p.Observe(res("a/x", true, 0))
	p.Observe(res("b/y", false, 0))
	p.Observe(res("b/z", true, -time.Minute)) // started before the failure: still failing
	if s := state("a", nil, ""); s.State != "ok" || s.Done != 1 || s.LastLag != 1 {
		t.Errorf("a: %+v, want ok, 1 done, lag 1 s", s)
	}
	if s := state("b", nil, ""); s.State != "failing" || s.Failed != 1 || s.LastError != "rsync: exit 11" {
		t.Errorf("b: %+v, want failing with its error", s)
	}
	p.Observe(res("b/y", true, time.Minute))
	if s := state("b", nil, ""); s.State != "ok" || s.Done != 2 {
		t.Errorf("b after a later success: %+v, want ok", s)
	}
	if s := state("idle", map[string]uint64{"idle": 3}, ""); s.State != "syncing" || s.Pending != 3 {
		t.Errorf("idle with pending jobs: %+v, want syncing", s)
	}
	if s := state("a", nil, "source gone"); s.State != "paused" || s.Why != "source gone" {
		t.Errorf("a while paused: %+v", s)
	}
	pauses = []guard.Pause{{Project: "a", Reason: "tape"}}
	if a, b := state("a", nil, ""), state("b", nil, ""); a.State != "paused" || !strings.Contains(a.Why, "tape") || b.State != "ok" {
		t.Errorf("a paused by an operator: a %+v, b %+v", a, b)
	}
	pauses = []guard.Pause{{}}
	if b := state("b", nil, ""); b.State != "paused" || !strings.Contains(b.Why, "every project") {
		t.Errorf("every project paused: b %+v", b)
	}
}
