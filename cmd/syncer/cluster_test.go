package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/testutil"
	"go.uber.org/zap/zaptest"
)

// builds holds the syncer and upstream nats-server binaries, built once
// per test binary and removed by TestMain.
var builds struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	if os.Getenv("SYNCER_CONFIG") == "" {
		// The host's own /etc/syncer/syncer.yaml is not the tests'.
		os.Setenv("SYNCER_CONFIG", os.DevNull)
	}
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// binaries builds syncer and the nats-server of the module version syncer
// embeds (Debian's is too old), once.
func binaries(t *testing.T) (syncerBin, natsBin string) {
	t.Helper()
	builds.once.Do(func() {
		if builds.dir, builds.err = os.MkdirTemp("", "syncer-bin-"); builds.err != nil {
			return
		}
		for _, b := range [][2]string{{".", "syncer"}, {"github.com/nats-io/nats-server/v2", "nats-server"}} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(builds.dir, b[1]), b[0]).CombinedOutput(); err != nil {
				builds.err = fmt.Errorf("build %s: %v\n%s", b[0], err, out)
				return
			}
		}
	})
	if builds.err != nil {
		t.Fatal(builds.err)
	}
	return filepath.Join(builds.dir, "syncer"), filepath.Join(builds.dir, "nats-server")
}

// startNATS starts a JetStream server binary on a free loopback port with an
// auth token, waits until it accepts connections and returns its URL.
func startNATS(t *testing.T, bin, token string) string {
	t.Helper()
	port := testutil.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testutil.Serve(t, addr, bin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", strconv.Itoa(port), "--auth", token)
	return "nats://" + addr
}

// TestCluster_WatchWork runs a real nats-server (built from the module we
// embed) with a token, one `syncer watch` and two `syncer work` processes.
// One worker is killed with SIGKILL mid-rsync; everything converges, both
// workers worked, and no two rsyncs on overlapping scopes ever overlapped.
func TestCluster_WatchWork(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and runs four processes: skipped with -short")
	}
	testutil.RequireRsync(t)
	syncerBin, natsBin := binaries(t)
	url := startNATS(t, natsBin, "s3cret")
	token := filepath.Join(t.TempDir(), "token")
	must(t, os.WriteFile(token, []byte("s3cret\n"), 0o600))

	cfg := testConfig(t)
	common := []string{"--nats-url", url, "--nats-token-file", token, "--source", cfg.Source, "--dest", cfg.Dest,
		"--listen", "127.0.0.1:0", "--log-level", "warn", "--log-format", "json",
		"--direct-copy=false"} // the test follows work through rsync runs
	logA, logB := t.TempDir(), t.TempDir()
	workA := testutil.Start(t, syncerBin, append([]string{"work", "--state-dir", t.TempDir(), "--workers", "2",
		"--rsync-path", rsyncWrapper(t, logA, 400*time.Millisecond), "--job-ack-wait", "3s", "--lease-ttl", "3s"}, common...)...)
	testutil.Start(t, syncerBin, append([]string{"work", "--state-dir", t.TempDir(), "--workers", "2",
		"--rsync-path", rsyncWrapper(t, logB, 400*time.Millisecond), "--job-ack-wait", "3s", "--lease-ttl", "3s"}, common...)...)
	watchLog := t.TempDir()
	testutil.Start(t, syncerBin, append([]string{"watch", "--state-dir", t.TempDir(), "--rsync-path", rsyncWrapper(t, watchLog, 0)}, common...)...)

	h := &harness{cfg: cfg}
	killed := false
	for i := range 60 {
		d := fmt.Sprintf("p%d/d%d", i%3, i%7)
		must(t, os.MkdirAll(h.path(d), 0o755))
		must(t, os.WriteFile(h.path(fmt.Sprintf("%s/f%d", d, i)), []byte(strconv.Itoa(i)), 0o644))
		if !killed && i > 20 {
			for _, r := range readRuns(t, logA, cfg.Source) {
				if r.end <= 0 { // A is in the middle of an rsync
					must(t, workA.Process.Kill())
					killed = true
					break
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !killed {
		must(t, workA.Process.Kill())
	}
	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, func() error {
		if d := testutil.DiffTrees(cfg.Source, cfg.Dest, cfg.Trash); d != "" {
			return errors.New(d)
		}
		return nil
	})
	runsA, runsB := readRuns(t, logA, cfg.Source), readRuns(t, logB, cfg.Source)
	t.Logf("worker A: %d rsyncs (killed mid-rsync: %v), worker B: %d rsyncs", len(runsA), killed, len(runsB))
	if len(runsA) == 0 || len(runsB) == 0 {
		t.Errorf("both workers should have worked: A %d, B %d rsyncs", len(runsA), len(runsB))
	}
	if n := len(readRuns(t, watchLog, cfg.Source)); n > 0 {
		t.Errorf("the watch role ran %d rsyncs, want none", n)
	}
	if o := overlaps(append(runsA, runsB...)); len(o) > 0 {
		t.Errorf("%d overlapping rsyncs across hosts, want 0; first: %s", len(o), o[0])
	}
}

// TestCluster_BadServer: a wrong token, and Debian's nats-server 2.9 (too
// old: it ignores newer stream settings), each end in one clear line and a
// non-zero exit, with the backup untouched.
func TestCluster_BadServer(t *testing.T) {
	old := testutil.RequireTool(t, "nats-server") // Debian's package: 2.9.x
	out, err := exec.Command(old, "--version").Output()
	must(t, err)
	if !bytes.Contains(out, []byte("v2.9")) && !bytes.Contains(out, []byte("v2.10")) {
		t.Skipf("the nats-server on PATH is %s, not an old one", bytes.TrimSpace(out))
	}
	url := startNATS(t, old, "right")
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Dest, testutil.Tree{"keep": "k"})
	before := files(t, cfg.Dest)
	for _, tt := range []struct{ name, token, want string }{
		{"wrong token", "wrong", "uthorization"},
		{"too old", "right", "too old"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := filepath.Join(t.TempDir(), "token")
			must(t, os.WriteFile(tok, []byte(tt.token), 0o600))
			var stderr bytes.Buffer
			code := Main(t.Context(), []string{"work", "--nats-url", url, "--nats-token-file", tok,
				"--source", cfg.Source, "--dest", cfg.Dest, "--state-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--log-level", "error"},
				&bytes.Buffer{}, &stderr)
			if code == 0 || bytes.Count(stderr.Bytes(), []byte("\n")) != 1 || !bytes.Contains(stderr.Bytes(), []byte(tt.want)) {
				t.Errorf("exit %d, stderr %q; want non-zero and one line mentioning %q", code, stderr.String(), tt.want)
			}
		})
	}
	if d := unchanged(t, before, cfg.Dest); d != "" {
		t.Errorf("backup touched:\n%s", d)
	}
}

// TestRun_WorkRoleStays: `syncer work` with nothing but its pool (no
// diagnose loop) runs until it is stopped, and then returns success.
func TestRun_WorkRoleStays(t *testing.T) {
	s := testutil.StartJetStream(t)
	cfg := testConfig(t)
	cfg.NatsURL, cfg.DiagnoseInterval = []string{s.ClientURL()}, 0
	must(t, cfg.Validate())
	ctx, cancel := context.WithCancel(context.Background())
	d := newDaemon(cfg, zaptest.NewLogger(t, zaptest.Level(testLogLevel())))
	d.role = "work"
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("the work role returned by itself: %v", err)
	case <-time.After(2 * time.Second):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stopped by its context: %v, want success", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop")
	}
}
