package memory_test

import (
	"runtime/debug"
	"testing"

	"github.com/syncer/syncer/internal/memory"
)

// TestShortLived: GOGC and the soft limit are set, unless the environment
// sets them.
func TestShortLived(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	memory.ShortLived()
	if got := debug.SetGCPercent(100); got != memory.ShortLivedGC {
		t.Errorf("GOGC = %d, want %d", got, memory.ShortLivedGC)
	}
	if lim := debug.SetMemoryLimit(-1); lim <= 0 || lim == 1<<63-1 {
		t.Errorf("memory limit = %d, want a quarter of the machine's memory", lim)
	}
	debug.SetMemoryLimit(1<<63 - 1)
	t.Setenv("GOGC", "50")
	t.Setenv("GOMEMLIMIT", "1GiB")
	memory.ShortLived()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set in the environment: the collector's is %d, want it left alone (100)", got)
	}
	if lim := debug.SetMemoryLimit(-1); lim != 1<<63-1 {
		t.Errorf("GOMEMLIMIT set in the environment: limit %d, want it left alone", lim)
	}
}
