package syncer

import "time"

// Backoff is a retry delay that doubles from Base with each failure, up
// to Max: the one formula behind every retry in syncer (a failed job, a
// job held by open files or a busy scope, a failed publish, a NATS
// request).
type Backoff struct {
	Base, Max time.Duration
}

// Delay is the delay after the n-th failure (n >= 1; less counts as 1):
// Base, 2×Base, 4×Base, ..., at most Max.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}
