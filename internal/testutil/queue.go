package testutil

import (
	"testing"
	"time"

	"github.com/syncer/syncer/queue"
)

// Queue opens syncer's queue on an embedded JetStream server in a temp dir,
// with the given job ack wait; all of it is shut down when the test ends.
func Queue(tb testing.TB, ackWait time.Duration) *queue.JetStream {
	tb.Helper()
	return QueueListening(tb, ackWait, "")
}

// QueueListening is Queue with the embedded server also listening on the
// TCP address listen (loopback), for tests that play another client.
func QueueListening(tb testing.TB, ackWait time.Duration, listen string) *queue.JetStream {
	tb.Helper()
	e, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: tb.TempDir(), Listen: listen})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Shutdown)
	nc, err := e.Connect("test")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	q, err := queue.Open(tb.Context(), nc, queue.Options{JobAckWait: ackWait})
	if err != nil {
		tb.Fatal(err)
	}
	return q
}
