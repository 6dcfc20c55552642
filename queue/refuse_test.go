package queue_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/internal/testutil/testqueue"
	"github.com/syncer/syncer/queue"
)

// TestJobs_RefuseCraftedPaths: jobs published straight to the queue's
// listener by someone else, naming paths outside the trees, never reach a
// worker: each is dead-lettered with its reason on its first delivery, and
// a valid job behind them still is delivered.
func TestJobs_RefuseCraftedPaths(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	q := testqueue.Listening(t, 2*time.Second, addr)

	// The attacker: a plain client on the TCP port.
	evil, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	b64 := func(s string) string { // []byte fields are base64 in JSON
		return fmt.Sprintf("%q", encodeB64(s))
	}
	crafted := map[string]string{
		"dotdot":   `{"id":"dotdot","dir":` + b64("../../X") + `,"rec":true,"reason":"change"}`,
		"abs":      `{"id":"abs","dir":` + b64("/etc") + `,"reason":"change"}`,
		"nul":      `{"id":"nul","dir":` + b64("p/a\x00b") + `,"reason":"change"}`,
		"empty":    `{"id":"empty","dir":` + b64("p//a") + `,"reason":"change"}`,
		"overlong": `{"id":"overlong","dir":` + b64("p/"+strings.Repeat("n", 256)) + `,"reason":"change"}`,
		"open":     `{"id":"open","dir":` + b64("p") + `,"reason":"change","open":[` + b64("../../etc/shadow") + `]}`,
		"files":    `{"id":"files","dir":` + b64("p") + `,"reason":"change","files":[` + b64("q/f") + `]}`,
		"garbage":  `{"id":`,
	}
	for id, payload := range crafted {
		if err := evil.Publish("syncer.jobs.evil."+id+".d", []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	if err := evil.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := q.PublishJob(t.Context(), syncer.Job{ID: "good", Scope: syncer.Scope{Dir: "p/ok"}}); err != nil {
		t.Fatal(err)
	}
	d, err := q.Jobs().Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d.Job.ID != "good" {
		t.Fatalf("delivered job %q (%q), want only the valid one", d.Job.ID, d.Job.Scope.Dir)
	}
	_ = d.Ack()
	var dead []queue.DeadJob
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		dead, err = q.Dead(t.Context(), 100)
		if err == nil && len(dead) != len(crafted) {
			err = fmt.Errorf("%d dead-lettered, want %d", len(dead), len(crafted))
		}
		return err
	})
	for _, dj := range dead {
		if !strings.Contains(dj.Error, "invalid path") && !strings.Contains(dj.Error, "decode job") {
			t.Errorf("dead job %s: error %q does not say why", dj.ID, dj.Error)
		}
		t.Logf("dead-lettered %s: %s", dj.ID, dj.Error)
	}
	st, err := q.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || st.InFlight != 0 {
		t.Fatalf("queue after refusals: %+v, want nothing left (refused on the first delivery)", st)
	}
}

func encodeB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// FuzzDecodeJob: whatever the wire decoder accepts is a job whose every
// path passes the validator.
func FuzzDecodeJob(f *testing.F) {
	f.Add([]byte(`{"id":"1","dir":"cC9h","reason":"change"}`))
	f.Add([]byte(`{"id":"1","dir":"Li4vLi4vWA==","rec":true}`))
	f.Add([]byte(`{"id":"1","dir":"cA==","files":["cC9m"],"open":["cC94L3k="]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := queue.DecodeJob(b)
		if err != nil {
			return
		}
		if cerr := j.Check(); cerr != nil {
			t.Fatalf("DecodeJob accepted %+v: %v", j, cerr)
		}
		for _, p := range append(append([]string{j.Scope.Dir}, j.Open...), j.Files...) {
			if strings.Contains(p, "..") && syncer.CheckPath(p) != nil {
				t.Fatalf("DecodeJob let %q through", p)
			}
		}
	})
}
