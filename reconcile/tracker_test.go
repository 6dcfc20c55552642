package reconcile_test

import (
	"context"
	"testing"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/reconcile"
)

type published []syncer.Job

func (p *published) PublishJobs(_ context.Context, jobs []syncer.Job) error {
	*p = append(*p, jobs...)
	return nil
}

// TestTracker_Named checks that a result for a job that named its files
// settles no job for the whole directory, while a result for the whole
// directory settles both kinds.
func TestTracker_Named(t *testing.T) {
	tr := reconcile.NewTracker()
	var pub published
	if err := tr.Submit(t.Context(), &pub, "r", []syncer.Job{{Scope: syncer.Scope{Dir: "p/a"}},
		{Scope: syncer.Scope{Dir: "p/b"}, Files: []string{"p/b/f"}}}, syncer.ReasonReconcile); err != nil {
		t.Fatal(err)
	}
	if len(pub) != 2 || pub[0].ID != "r-0" || pub[1].Files[0] != "p/b/f" || pub[1].Reason != syncer.ReasonReconcile {
		t.Fatalf("published %+v", pub)
	}
	later := time.Now().Add(time.Second)
	done := func(dir string, named bool) int {
		j := syncer.Job{ID: "other", Scope: syncer.Scope{Dir: dir}}
		if named {
			j.Files = []string{dir + "/f"}
		}
		tr.Observe(syncer.Result{Job: j, OK: true, Started: later})
		return tr.Summary().Done
	}
	if n := done("p/a", true); n != 0 {
		t.Errorf("a named result settled the job for the whole directory (done = %d)", n)
	}
	if n := done("p/b", false); n != 1 {
		t.Errorf("a result for the whole directory did not settle the named job (done = %d)", n)
	}
	if n := done("p/a", false); n != 2 {
		t.Errorf("done = %d, want 2", n)
	}
}
