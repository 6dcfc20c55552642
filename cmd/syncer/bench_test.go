package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/testutil"
)

// BenchmarkRun_WriteLag measures the time from one small file write to its
// arrival (same content) in the backup, with default settings. Run with
// -benchtime=20x for the median of 20.
func BenchmarkRun_WriteLag(b *testing.B) {
	rs := testutil.RequireRsync(b)
	cfg := config.Default()
	cfg.Source, cfg.Dest, cfg.StateDir, cfg.RsyncPath = b.TempDir(), b.TempDir(), b.TempDir(), rs
	cfg.Listen = ""
	testutil.WriteTree(b, cfg.Source, testutil.Tree{"p/shot/": "", "q/": ""})
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	d := newDaemon(cfg, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-d.Ready()

	var lags []time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("p/shot/f%d", i)
		content := []byte(strconv.Itoa(i))
		start := time.Now()
		if err := os.WriteFile(filepath.Join(cfg.Source, name), content, 0o644); err != nil {
			b.Fatal(err)
		}
		for {
			got, err := os.ReadFile(filepath.Join(cfg.Dest, name))
			if err == nil && bytes.Equal(got, content) {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("%s not on the backup after 30s", name)
			}
			time.Sleep(time.Millisecond)
		}
		lags = append(lags, time.Since(start))
		time.Sleep(50 * time.Millisecond) // let the daemon go idle: measure a lone write
	}
	b.StopTimer()
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	b.ReportMetric(float64(lags[len(lags)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lags[len(lags)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRun_Footprint starts the built binary on a tree of 10,000
// directories and reports the time until the startup reconcile is done and
// the resident memory while it watches.
func BenchmarkRun_Footprint(b *testing.B) {
	testutil.RequireRsync(b)
	bin := filepath.Join(b.TempDir(), "syncer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	src, dst := b.TempDir(), b.TempDir()
	const dirs = 10000
	for i := range dirs {
		if err := os.MkdirAll(filepath.Join(src, fmt.Sprintf("p%d/d%d", i%10, i)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	// The backup holds the tree already: measure watching, not copying.
	if out, err := exec.Command("rsync", "-a", src+"/", dst+"/").CombinedOutput(); err != nil {
		b.Fatalf("rsync: %v\n%s", err, out)
	}
	for range b.N {
		cmd := exec.Command(bin, "run", "--source", src, "--dest", dst, "--state-dir", b.TempDir(), "--log-format", "json", "--listen", "127.0.0.1:0")
		stderr, _ := cmd.StderrPipe()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.Contains(sc.Text(), `"msg":"reconcile done"`) {
		}
		ready := time.Since(start)
		go func() {
			for sc.Scan() {
			}
		}()
		time.Sleep(3 * time.Second)
		rss := vmRSS(b, cmd.Process.Pid)
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		b.ReportMetric(ready.Seconds(), "ready-s")
		b.ReportMetric(float64(rss)/1024, "rss-MiB")
	}
	b.ReportMetric(0, "ns/op")
}

func vmRSS(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}
