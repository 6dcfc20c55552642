package process_test

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/syncer/syncer/internal/process"
)

// TestShortLived: GOGC, the soft limit and GOMAXPROCS are set, unless
// the environment sets them; nested calls do not compound, and the last
// undo puts the runtime back as it was.
func TestShortLived(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(1<<63 - 1))
	procs := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(procs)
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOMAXPROCS", "")
	undo := process.ShortLived()
	undo2 := process.ShortLived()
	if got := runtime.GOMAXPROCS(0); got != process.ShortLivedProcs*procs {
		t.Errorf("GOMAXPROCS = %d, want %d", got, process.ShortLivedProcs*procs)
	}
	if got := gcPercent(); got != process.ShortLivedGC {
		t.Errorf("GOGC = %d, want %d", got, process.ShortLivedGC)
	}
	if lim := debug.SetMemoryLimit(-1); lim <= 0 || lim == 1<<63-1 {
		t.Errorf("memory limit = %d, want a quarter of the machine's memory", lim)
	}
	undo2()
	undo2() // once only
	if got := runtime.GOMAXPROCS(0); got != process.ShortLivedProcs*procs {
		t.Errorf("one of two undone: GOMAXPROCS = %d, want %d still", got, process.ShortLivedProcs*procs)
	}
	undo()
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("undone: GOMAXPROCS = %d, want %d", got, procs)
	}
	if got := gcPercent(); got != 100 {
		t.Errorf("undone: GOGC = %d, want 100", got)
	}
	if lim := debug.SetMemoryLimit(-1); lim != 1<<63-1 {
		t.Errorf("undone: memory limit = %d, want none", lim)
	}

	t.Setenv("GOGC", "50")
	t.Setenv("GOMEMLIMIT", "1GiB")
	t.Setenv("GOMAXPROCS", "1")
	defer process.ShortLived()()
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS set in the environment: the runtime's is %d, want it left alone (%d)", got, procs)
	}
	if got := gcPercent(); got != 100 {
		t.Errorf("GOGC set in the environment: the collector's is %d, want it left alone (100)", got)
	}
	if lim := debug.SetMemoryLimit(-1); lim != 1<<63-1 {
		t.Errorf("GOMEMLIMIT set in the environment: limit %d, want it left alone", lim)
	}
}

// gcPercent is the collector's GOGC, left as it was.
func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}
