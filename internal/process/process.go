// Package process sets the Go runtime, its garbage collector and its
// scheduler, for how long a syncer process lives and what it does.
package process

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"
)

// ShortLivedGC is the GOGC of a process that does one job and exits (a
// standalone reconcile): its garbage is collected a third as often as by
// default. On the 1 %-changed reconcile benchmark that is 5-10 % of the
// run's time; the heap's peak stays under the default's, which the
// process's size does not notice.
const ShortLivedGC = 300

// ShortLivedProcs multiplies the Go scheduler's processors (GOMAXPROCS,
// by default the cores) of a process that does one job and exits. That
// job is a reconcile, whose walk is mostly metadata reads that wait for
// the disk inside a system call: the thread waiting there keeps its
// processor until the runtime's monitor takes it away, tens of
// microseconds to milliseconds later, and while it does, a goroutine with
// work waits too. With twice the processors the cores stay busy; what is
// sized by GOMAXPROCS by default (the walk's concurrency, the workers,
// the copier's parallel copies) doubles with it. On the
// 1 %-changed reconcile benchmark (2 cores), interleaved rounds: 0.87 of
// the time with caches dropped, 1.03 with them warm.
const ShortLivedProcs = 2

// ShortLived sets the runtime for a process that does one job and exits
// (a standalone reconcile): GOGC ShortLivedGC unless the environment sets
// GOGC; unless it sets GOMEMLIMIT, a soft limit of a quarter of the
// machine's memory, past which the collector works as hard as it must to
// stay within it; and unless it sets GOMAXPROCS, ShortLivedProcs times
// the default. It returns what puts the runtime back as it was, for a
// caller that goes on after the job (the tests run commands in their own
// process); calls may nest, and the last undo restores.
func ShortLived() (undo func()) {
	mu.Lock()
	defer mu.Unlock()
	if holders == 0 {
		saved = settings{procs: runtime.GOMAXPROCS(0), gc: debug.SetGCPercent(-1), limit: debug.SetMemoryLimit(-1)}
		debug.SetGCPercent(saved.gc)
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.GOMAXPROCS(ShortLivedProcs * saved.procs)
		}
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(ShortLivedGC)
		}
		var si unix.Sysinfo_t
		if os.Getenv("GOMEMLIMIT") == "" && unix.Sysinfo(&si) == nil && si.Totalram > 0 {
			debug.SetMemoryLimit(int64(si.Totalram) * int64(si.Unit) / 4)
		}
	}
	holders++
	return sync.OnceFunc(func() {
		mu.Lock()
		defer mu.Unlock()
		if holders--; holders == 0 {
			runtime.GOMAXPROCS(saved.procs)
			debug.SetGCPercent(saved.gc)
			debug.SetMemoryLimit(saved.limit)
		}
	})
}

// settings are what ShortLived changes.
type settings struct {
	procs int
	gc    int
	limit int64
}

var (
	mu      sync.Mutex
	holders int      // ShortLived calls not yet undone
	saved   settings // the runtime's before the first of them
)
