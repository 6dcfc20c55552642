package queue_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/internal/testutil/testqueue"
	"github.com/syncer/syncer/queue"
)

func open(t *testing.T) *queue.JetStream { return testqueue.Queue(t, 2*time.Second) }

func TestStartEmbedded_Locked(t *testing.T) {
	dir := t.TempDir()
	e, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	if _, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: dir}); !errors.Is(err, queue.ErrLocked) {
		t.Fatalf("second server on the same store: err = %v, want ErrLocked", err)
	}
}

func TestJetStream_Jobs(t *testing.T) {
	q := open(t)
	ctx := t.Context()
	odd := "p/new\nline/\xff\xfe/-x *"
	jobs := []syncer.Job{
		{ID: "1", Scope: syncer.Scope{Dir: odd}},
		{ID: "2", Scope: syncer.Scope{Dir: odd}},                  // replaces 1
		{ID: "3", Scope: syncer.Scope{Dir: odd, Recursive: true}}, // another kind: kept
		{ID: "4", Scope: syncer.Scope{Dir: "q"}},
		{ID: "5", Scope: syncer.Scope{Dir: "q"}, Files: []string{"q/\xff"}}, // names its files: kept
	}
	for _, j := range jobs {
		if err := q.PublishJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	// Consumer figures follow publishes asynchronously.
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		st, err := q.Stats(ctx)
		if err == nil && st.Pending != 4 {
			err = fmt.Errorf("pending = %d, want 4 (a newer job replaces a pending one of the same scope and kind)", st.Pending)
		}
		return err
	})
	src := q.Jobs()
	got := map[string]syncer.Job{}
	d, err := src.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got[d.Job.ID] = d.Job
	more := src.More(10)
	for _, m := range more {
		got[m.Job.ID] = m.Job
	}
	if len(got) != 4 || got["2"].Scope.Dir != odd || got["3"].Scope != (syncer.Scope{Dir: odd, Recursive: true}) ||
		!slices.Equal(got["5"].Files, []string{"q/\xff"}) || got["4"].Files != nil {
		t.Fatalf("delivered %+v, want jobs 2, 3, 4, 5 with odd names byte-exact", got)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	for _, m := range more {
		if err := m.Nak(0); err != nil {
			t.Fatal(err)
		}
	}
	// Nak'd jobs come back, with the attempt counted.
	again := append([]syncer.Delivery(nil), src.More(10)...)
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if len(again) < 3 {
			again = append(again, src.More(10)...)
			return errors.New("nak'd jobs not redelivered")
		}
		return nil
	})
	for _, a := range again {
		if a.Attempt != 2 {
			t.Errorf("job %s attempt = %d, want 2", a.Job.ID, a.Attempt)
		}
		_ = a.Ack()
	}
}

func TestJetStream_Events(t *testing.T) {
	q := open(t)
	ctx := t.Context()
	want := syncer.DirEvent{Scope: syncer.Scope{Dir: "p/\xff", Recursive: true}, Reason: syncer.ReasonNewDir, At: time.Now().UTC().Round(0)}
	if err := q.PublishEvent(ctx, want); err != nil {
		t.Fatal(err)
	}
	got := make(chan syncer.DirEvent, 1)
	go q.ConsumeEvents(ctx, func(ev syncer.DirEvent, ack func() error) {
		_ = ack()
		got <- ev
	})
	select {
	case ev := <-got:
		if ev.Scope != want.Scope || ev.Reason != want.Reason || !ev.At.Equal(want.At) {
			t.Errorf("event = %+v, want %+v", ev, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event not delivered")
	}
}

func TestJetStream_Results(t *testing.T) {
	q := open(t)
	got := make(chan syncer.Result, 1)
	stop, err := q.SubscribeResults(func(r syncer.Result) { got <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	want := syncer.Result{Job: syncer.Job{ID: "x", Scope: syncer.Scope{Dir: "a\nb"}}, OK: true, Stats: syncer.Stats{Files: 3}}
	if err := q.PublishResult(want); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.Job.ID != want.Job.ID || r.Job.Scope != want.Job.Scope || r.Stats != want.Stats || !r.OK {
			t.Errorf("result = %+v, want %+v", r, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("result not delivered")
	}
}

// TestOpen_External checks that two processes' worth of Open calls on one
// TCP server share the same streams.
func TestOpen_External(t *testing.T) {
	s := testutil.StartJetStream(t)
	for i := range 2 {
		q, err := queue.Connect(t.Context(), queue.Options{StateDir: t.TempDir(), External: &queue.ExternalOptions{URLs: []string{s.ClientURL()}}})
		if err != nil {
			t.Fatalf("open #%d: %v", i, err)
		}
		defer q.Close()
	}
}

func TestJetStream_Dead(t *testing.T) {
	q := open(t)
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		r := syncer.Result{Job: syncer.Job{ID: id, Scope: syncer.Scope{Dir: "p/\xff" + id}}, Error: "rsync: exit 1", ExitCode: 1, Finished: time.Now()}
		if err := q.PublishDead(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	dead, err := q.Dead(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 || dead[0].ID != "a" || dead[0].Job.Scope.Dir != "p/\xffa" || dead[0].ExitCode != 1 {
		t.Fatalf("Dead() = %+v, want jobs a and b", dead)
	}
	if n, err := q.Retry(ctx, []string{"b"}); err != nil || n != 1 {
		t.Fatalf("Retry(b) = %d, %v; want 1", n, err)
	}
	if dead, _ := q.Dead(ctx, 10); len(dead) != 1 || dead[0].ID != "a" {
		t.Errorf("after Retry(b) Dead() = %+v, want only a", dead)
	}
	d, err := q.Jobs().Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Job.Scope.Dir != "p/\xffb" || d.Job.Reason != syncer.ReasonRetry {
		t.Errorf("retried job = %+v, want scope p/\\xffb, reason retry", d.Job)
	}
	_ = d.Ack()
}

// TestScratchDir: each call gets a directory of its own; what an earlier
// process left more than a minute ago goes, a fresh one stays.
func TestScratchDir(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "scratch")
	a, err := queue.ScratchDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(a, old, old); err != nil {
		t.Fatal(err)
	}
	b, err := queue.ScratchDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	c, err := queue.ScratchDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Errorf("stale %s still there (%v)", a, err)
	}
	for _, d := range []string{b, c} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("fresh %s removed: %v", d, err)
		}
	}
	if b == c {
		t.Error("two calls got the same directory")
	}
}

// TestConnect_ScratchResults: a scratch queue with no client port hands
// results to its subscribers in process, before PublishResult returns;
// with a port open, they go through the server, where a client outside
// the process follows them.
func TestConnect_ScratchResults(t *testing.T) {
	q, err := queue.Connect(t.Context(), queue.Options{StateDir: t.TempDir(), Scratch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	a, b := make(chan syncer.Result, 2), make(chan syncer.Result, 2)
	stopA, err := q.SubscribeResults(func(r syncer.Result) { a <- r })
	if err != nil {
		t.Fatal(err)
	}
	stopB, err := q.SubscribeResults(func(r syncer.Result) { b <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()
	want := syncer.Result{Job: syncer.Job{ID: "x", Scope: syncer.Scope{Dir: "p"}}, OK: true}
	if err := q.PublishResult(want); err != nil {
		t.Fatal(err)
	}
	if len(a) != 1 || len(b) != 1 || (<-a).Job.ID != "x" || (<-b).Job.ID != "x" {
		t.Fatal("result not handed to both subscribers by the time PublishResult returned")
	}
	stopA()
	if err := q.PublishResult(want); err != nil {
		t.Fatal(err)
	}
	if len(a) != 0 || len(b) != 1 {
		t.Errorf("after stop: %d, %d results; want 0, 1", len(a), len(b))
	}

	port := testutil.FreePort(t)
	listening, err := queue.Connect(t.Context(), queue.Options{StateDir: t.TempDir(), Scratch: true, Listen: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		t.Fatal(err)
	}
	defer listening.Close()
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("syncer.results.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := listening.PublishResult(want); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("a client on the port saw no result: %v", err)
	}
}
