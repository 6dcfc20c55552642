package diag_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncer/syncer/diag"
)

// These tests put real load on this machine and check the verdict. Other
// tests running at the same time would be load too, so `make test` runs
// them alone, after the rest (SYNCER_LOAD_TESTS=1, -p 1).
func requireLoadTests(t *testing.T) {
	t.Helper()
	if os.Getenv("SYNCER_LOAD_TESTS") != "1" {
		t.Skip("real-load tests run alone: SYNCER_LOAD_TESTS=1 (make test does)")
	}
}

// verdictUnder samples for d while load runs, up to 3 tries until want is seen.
func verdictUnder(t *testing.T, want string, d time.Duration, load func(ctx context.Context)) diag.Verdict {
	t.Helper()
	var s diag.Sampler
	var v diag.Verdict
	for range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); load(ctx) }()
		time.Sleep(200 * time.Millisecond) // let the load start
		prev, err := s.Sample(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(d)
		cur, err := s.Sample(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		<-done
		v = diag.Diagnose(prev, cur, diag.Queue{})
		if v.Bottleneck == want {
			return v
		}
		t.Logf("got %s (%s), retrying: %v", v.Bottleneck, v.Summary, v.Evidence)
	}
	t.Fatalf("verdict %s (%s), want %s\n%s", v.Bottleneck, v.Summary, want, strings.Join(v.Evidence, "\n"))
	return v
}

func TestLoad_CPU(t *testing.T) {
	requireLoadTests(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two cores to show an idle one")
	}
	v := verdictUnder(t, diag.CPU, 2*time.Second, func(ctx context.Context) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var n atomic.Int64
		for ctx.Err() == nil {
			for range 100000 {
				n.Add(1)
			}
		}
	})
	if !strings.Contains(v.Summary, "idle") || !strings.Contains(v.Advice, "will help") {
		t.Errorf("one busy core: %q / %q, want it to name the idle cores and say more workers help", v.Summary, v.Advice)
	}
}

// TestLoad_Disk: direct writes keep the device busy without filling the
// page cache. One writer has one request in flight at a time (a fast
// disk shows it 80-odd % busy), yet it waits on the disk all along: that
// is disk-bound as much as two writers are, and the verdict names dd.
func TestLoad_Disk(t *testing.T) {
	requireLoadTests(t)
	for _, writers := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d writers", writers), func(t *testing.T) {
			dir := t.TempDir()
			v := verdictUnder(t, diag.Disk, 2*time.Second, func(ctx context.Context) {
				var wg sync.WaitGroup
				for i := range writers {
					f := filepath.Join(dir, fmt.Sprint("load", i))
					wg.Go(func() {
						for ctx.Err() == nil {
							// One long dd, so that both samples see it (a
							// reaped child's I/O is counted to its parent).
							_ = exec.CommandContext(ctx, "dd", "if=/dev/zero", "of="+f, "bs=1M", "count=8192", "oflag=direct").Run()
						}
					})
				}
				wg.Wait()
			})
			t.Logf("%s\n%s", v.Summary, strings.Join(v.Evidence, "\n"))
			if !strings.Contains(v.Summary, "dd (pid") {
				t.Errorf("disk verdict %q does not name dd", v.Summary)
			}
		})
	}
}

func TestLoad_Idle(t *testing.T) {
	requireLoadTests(t)
	verdictUnder(t, diag.Idle, time.Second, func(context.Context) {})
}
