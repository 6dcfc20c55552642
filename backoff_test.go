package syncer_test

import (
	"testing"
	"time"

	"github.com/syncer/syncer"
)

func TestBackoff_Delay(t *testing.T) {
	b := syncer.Backoff{Base: time.Second, Max: 10 * time.Minute}
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{-1, time.Second}, {0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {4, 8 * time.Second},
		{10, 512 * time.Second}, {11, 10 * time.Minute}, {1 << 30, 10 * time.Minute}} {
		if got := b.Delay(c.n); got != c.want {
			t.Errorf("Delay(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}
