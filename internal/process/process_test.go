package process_test

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/syncer/syncer/internal/process"
)

// TestShortLived: GOGC, the soft limit and GOMAXPROCS are set, unless
// the environment sets them.
func TestShortLived(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOMAXPROCS", "")
	process.ShortLived()
	if got := runtime.GOMAXPROCS(procs); got != process.ShortLivedProcs*procs {
		t.Errorf("GOMAXPROCS = %d, want %d", got, process.ShortLivedProcs*procs)
	}
	if got := debug.SetGCPercent(100); got != process.ShortLivedGC {
		t.Errorf("GOGC = %d, want %d", got, process.ShortLivedGC)
	}
	if lim := debug.SetMemoryLimit(-1); lim <= 0 || lim == 1<<63-1 {
		t.Errorf("memory limit = %d, want a quarter of the machine's memory", lim)
	}
	debug.SetMemoryLimit(1<<63 - 1)
	t.Setenv("GOGC", "50")
	t.Setenv("GOMEMLIMIT", "1GiB")
	t.Setenv("GOMAXPROCS", "1")
	process.ShortLived()
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS set in the environment: the runtime's is %d, want it left alone (%d)", got, procs)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set in the environment: the collector's is %d, want it left alone (100)", got)
	}
	if lim := debug.SetMemoryLimit(-1); lim != 1<<63-1 {
		t.Errorf("GOMEMLIMIT set in the environment: limit %d, want it left alone", lim)
	}
}
