package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/queue"
)

// natsCluster is three nats-server processes routed together on loopback.
type natsCluster struct {
	urls  []string
	procs map[string]*exec.Cmd // by server name
}

func startCluster(t *testing.T, bin, token string) *natsCluster {
	t.Helper()
	c := &natsCluster{procs: map[string]*exec.Cmd{}}
	var routes []string
	free := testutil.FreePorts(t, 6) // a client and a route port per node, all distinct
	ports := make([][2]int, 3)
	for i := range ports {
		ports[i] = [2]int{free[2*i], free[2*i+1]}
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i][1]))
	}
	for i, p := range ports {
		name := fmt.Sprintf("n%d", i)
		addr := fmt.Sprintf("127.0.0.1:%d", p[0])
		c.procs[name] = testutil.Serve(t, addr, bin, "-js", "-sd", t.TempDir(), "-n", name, "-a", "127.0.0.1", "-p", strconv.Itoa(p[0]),
			"--auth", token, "--cluster_name", "syncer", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		c.urls = append(c.urls, "nats://"+addr)
	}
	// Ready when JetStream has a meta leader and answers.
	nc := c.connect(t, token)
	js, err := jetstream.New(nc)
	must(t, err)
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	return c
}

func (c *natsCluster) connect(t *testing.T, token string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(strings.Join(c.urls, ","), nats.Token(token), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	must(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// TestCluster_LeaderKill runs one `syncer watch` and two `syncer work` on a
// 3-node cluster (streams with 3 replicas), kills the JOBS stream's leader
// with SIGKILL while jobs are queued, and checks that every job completes,
// none stays stored or unacknowledged, no rsyncs overlapped, and how long
// work stalled.
func TestCluster_LeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("three nats-servers and three syncer processes: skipped with -short")
	}
	testutil.RequireRsync(t)
	syncerBin, natsBin := binaries(t)
	cl := startCluster(t, natsBin, "s3cret")
	token := filepath.Join(t.TempDir(), "token")
	must(t, os.WriteFile(token, []byte("s3cret\n"), 0o600))

	cfg := testConfig(t)
	// Existing directories: each change below is a job of its own.
	for i := range 160 {
		must(t, os.MkdirAll(filepath.Join(cfg.Source, fmt.Sprintf("p%d/d%03d", i%4, i)), 0o755))
	}
	common := []string{"--nats-url", strings.Join(cl.urls, ","), "--nats-token-file", token, "--source", cfg.Source, "--dest", cfg.Dest,
		"--listen", "127.0.0.1:0", "--log-level", "warn", "--log-format", "json", "--job-ack-wait", "10s", "--lease-ttl", "6s",
		"--direct-copy=false"} // the test follows work through rsync runs
	logs := []string{t.TempDir(), t.TempDir()}
	for _, l := range logs {
		// One directory per rsync, each taking at least 200 ms: the queue stays full for a while.
		testutil.Start(t, syncerBin, append([]string{"work", "--state-dir", t.TempDir(), "--workers", "2", "--batch", "1",
			"--rsync-path", rsyncWrapper(t, l, 200*time.Millisecond)}, common...)...)
	}
	watchState, watchLog := t.TempDir(), t.TempDir()
	testutil.Start(t, syncerBin, append([]string{"watch", "--state-dir", watchState, "--rsync-path", rsyncWrapper(t, watchLog, 0)}, common...)...)
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error { // watches are up
		addr, err := os.ReadFile(filepath.Join(watchState, addrFile))
		if err != nil {
			return err
		}
		if code, body := httpGet(t, "http://"+strings.TrimSpace(string(addr))+"/readyz"); code != 200 {
			return fmt.Errorf("readyz %d %s", code, body)
		}
		return nil
	})

	nc := cl.connect(t, "s3cret")
	js, err := jetstream.New(nc)
	must(t, err)
	var jobs jetstream.Stream
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		jobs, err = js.Stream(t.Context(), queue.JobsStream)
		return err
	})
	info, err := jobs.Info(t.Context())
	must(t, err)
	if info.Config.Replicas != 3 {
		t.Errorf("JOBS stream has %d replicas on a 3-node cluster, want 3", info.Config.Replicas)
	}

	h := &harness{cfg: cfg}
	write := func(from, to int) {
		for i := from; i < to; i++ {
			d := fmt.Sprintf("p%d/d%03d", i%4, i)
			must(t, os.MkdirAll(h.path(d), 0o755))
			must(t, os.WriteFile(h.path(d+"/f"), []byte(strconv.Itoa(i)), 0o644))
		}
	}
	write(0, 120)
	// Kill the JOBS leader once jobs are queued behind the busy workers.
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		si, err := jobs.Info(t.Context())
		if err != nil {
			return err
		}
		if si.State.Msgs < 20 {
			return fmt.Errorf("%d jobs queued", si.State.Msgs)
		}
		return nil
	})
	si, err := jobs.Info(t.Context())
	must(t, err)
	leader := si.Cluster.Leader
	killed := time.Now()
	must(t, cl.procs[leader].Process.Kill())
	t.Logf("killed JOBS leader %s with %d jobs stored", leader, si.State.Msgs)
	write(120, 160) // changes made during the election arrive too

	testutil.Eventually(t, 90*time.Second, 100*time.Millisecond, func() error {
		if d := testutil.DiffTrees(cfg.Source, cfg.Dest, cfg.Trash); d != "" {
			return errors.New(d)
		}
		return nil
	})
	converged := time.Since(killed)
	// Nothing orphaned: every job acknowledged and gone from the work queue.
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		si, err := jobs.Info(ctx)
		if err != nil {
			return err
		}
		c, err := jobs.Consumer(ctx, queue.JobsConsumer)
		if err != nil {
			return err
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if si.State.Msgs != 0 || ci.NumPending != 0 || ci.NumAckPending != 0 {
			return fmt.Errorf("jobs stored %d, pending %d, unacknowledged %d", si.State.Msgs, ci.NumPending, ci.NumAckPending)
		}
		return nil
	})

	var runs []run
	for _, l := range logs {
		rs := readRuns(t, l, cfg.Source)
		if len(rs) == 0 {
			t.Errorf("a worker ran no rsync")
		}
		runs = append(runs, rs...)
	}
	if n := len(readRuns(t, watchLog, cfg.Source)); n > 0 {
		t.Errorf("the watch role ran %d rsyncs, want none", n)
	}
	if o := overlaps(runs); len(o) > 0 {
		t.Errorf("%d overlapping rsyncs, want 0; first: %s", len(o), o[0])
	}
	// The stall: the longest time without an rsync finishing, from the kill
	// until the work ran out.
	var ends []int64
	for _, r := range runs {
		if r.end > killed.UnixNano() {
			ends = append(ends, r.end)
		}
	}
	slices.Sort(ends)
	stall, prev := time.Duration(0), killed.UnixNano()
	for _, e := range ends {
		stall, prev = max(stall, time.Duration(e-prev)), e
	}
	t.Logf("after the leader kill: %d rsyncs, longest stall %v, converged in %v, new leader %s",
		len(ends), stall.Round(time.Millisecond), converged.Round(time.Millisecond), leaderOf(t, jobs))
	// Raft elects a new leader after 4 to 9 s without one.
	if stall > 30*time.Second {
		t.Errorf("work stalled %v after the leader was killed, want seconds", stall)
	}
}

func leaderOf(t *testing.T, s jetstream.Stream) string {
	si, err := s.Info(t.Context())
	if err != nil || si.Cluster == nil {
		return "?"
	}
	return si.Cluster.Leader
}
