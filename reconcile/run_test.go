package reconcile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
)

// held is a pool whose workers run a job only when the test releases one:
// it records each batch the runner queues, syncs each job with rsync and
// reports the result to the runner, as the daemon's workers do.
type held struct {
	batches chan []syncer.Job
	jobs    chan syncer.Job
	release chan struct{}
}

func (h *held) PublishJobs(_ context.Context, jobs []syncer.Job) error {
	h.batches <- slices.Clone(jobs)
	for _, j := range jobs {
		h.jobs <- j
	}
	return nil
}

func (h *held) work(ctx context.Context, t *testing.T, r *rsync.Runner, run *reconcile.Runner) {
	for j := range h.jobs {
		<-h.release
		started := time.Now()
		_, err := r.Sync(ctx, []syncer.Scope{j.Scope}, syncer.Hints{})
		if err != nil {
			t.Errorf("sync %s: %v", j.Scope, err)
		}
		run.Observe(syncer.Result{Job: j, OK: err == nil, Started: started, Finished: time.Now(), Error: fmt.Sprint(err)})
	}
}

// TestRunner_QueuesWhileWalking: what the walk finds is queued at once
// while fewer of its jobs wait than the workers run, and gathers while
// they are busy, to go in one batch when one of them settles. The walk
// reads a directory only when the test lets it, and no timer is at work
// (SubmitEvery is an hour).
func TestRunner_QueuesWhileWalking(t *testing.T) {
	testutil.RequireRsync(t)
	src, dst := t.TempDir(), t.TempDir()
	tree := testutil.Tree{}
	for i := range 8 {
		tree[fmt.Sprintf("p/d%d/f", i)] = "new"
		if err := os.MkdirAll(filepath.Join(dst, fmt.Sprintf("p/d%d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WriteTree(t, src, tree)
	r, err := rsync.New(rsync.Options{Source: src, Dest: dst})
	if err != nil {
		t.Fatal(err)
	}
	h := &held{batches: make(chan []syncer.Job, 100), jobs: make(chan syncer.Job, 100), release: make(chan struct{})}
	reads := make(chan struct{})
	run := reconcile.NewRunner(reconcile.RunnerOptions{
		Walk: reconcile.Options{Source: src, Dest: dst, Concurrency: 1}, Jobs: h,
		Watched: func(string) { <-reads }, Workers: 2, SubmitEvery: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	go h.work(ctx, t, r, run)
	id, _ := run.Start(reconcile.WhyStartup, nil, false, false)
	done := make(chan error, 1)
	go func() { done <- run.Run(ctx, id) }()

	batch := func() []syncer.Job {
		t.Helper()
		select {
		case b := <-h.batches:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("no batch queued")
			return nil
		}
	}
	read := func(n int) {
		for range n {
			reads <- struct{}{}
		}
	}
	// The root (its entry p differs) and p (its entries d* differ): each
	// queued alone, with no worker busy, then one.
	read(1)
	if b := batch(); len(b) != 1 || b[0].Scope.Dir != "" {
		t.Fatalf("first batch %v, want the root's job alone", b)
	}
	read(1)
	if b := batch(); len(b) != 1 || b[0].Scope.Dir != "p" {
		t.Fatalf("second batch %v, want p's job alone", b)
	}
	// Both workers busy: three directories found are held back.
	read(3)
	select {
	case b := <-h.batches:
		t.Fatalf("queued %v while both workers were busy", b)
	case <-time.After(300 * time.Millisecond):
	}
	// One settles: the three go together.
	h.release <- struct{}{}
	if b := batch(); len(b) != 3 {
		t.Fatalf("batch after a job settled: %v, want the 3 found meanwhile", b)
	}
	close(h.release)
	close(reads)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := testutil.DiffTrees(src, dst); d != "" {
		t.Fatal(d)
	}
	if rep, _ := run.Report(id); rep.State != reconcile.StateDone || rep.Failed != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// TestProjects: a request's projects come back sorted and each once; a
// name that is not a plain one (a path, "..", empty) is refused.
func TestProjects(t *testing.T) {
	got, err := reconcile.Projects([]string{"b", "a", "b"})
	if err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Projects(b a b) = %v, %v; want [a b]", got, err)
	}
	for _, bad := range []string{"", "..", "a/b", "/etc"} {
		if _, err := reconcile.Projects([]string{"a", bad}); err == nil {
			t.Errorf("Projects(a %q): no error", bad)
		}
	}
}
