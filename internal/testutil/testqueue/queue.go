// Package testqueue opens syncer's queue on an embedded JetStream server for tests.
package testqueue

import (
	"testing"
	"time"

	"github.com/syncer/syncer/queue"
)

// Queue opens syncer's queue on an embedded JetStream server in a temp dir,
// with the given job ack wait; all of it is shut down when the test ends.
func Queue(tb testing.TB, ackWait time.Duration) *queue.JetStream {
	tb.Helper()
	return Listening(tb, ackWait, "")
}

// Listening is Queue with the embedded server also listening on the
// TCP address listen (loopback), for tests that play another client.
func Listening(tb testing.TB, ackWait time.Duration, listen string) *queue.JetStream {
	tb.Helper()
	q, err := queue.Connect(tb.Context(), queue.Options{StateDir: tb.TempDir(), Listen: listen, JobAckWait: ackWait})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(q.Close)
	return q
}
