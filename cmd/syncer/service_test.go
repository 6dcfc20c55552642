package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/testutil"
)

// notifySocket is a supervisor's end of systemd's notify protocol: a
// datagram socket the daemon is given as $NOTIFY_SOCKET, and what it said.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify")}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		b := make([]byte, 4096)
		for {
			k, err := c.Read(b)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, strings.Split(string(b[:k]), "\n")...)
			n.mu.Unlock()
		}
	}()
	return n
}

// said is every line received so far.
func (n *notifySocket) said() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// index is where the first line at or after from starting with prefix is, -1 if none.
func (n *notifySocket) index(prefix string, from int) int {
	for i, m := range n.said() {
		if i >= from && strings.HasPrefix(m, prefix) {
			return i
		}
	}
	return -1
}

// syncedBuffer is a bytes.Buffer that a process and the test share.
type syncedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRun_Systemd runs the built daemon as systemd would with Type=notify
// and WatchdogSec=: READY=1 only after the startup reconcile (the backup
// equal), STATUS= lines before and after it, watchdog pings; SIGHUP
// re-reads the config and applies a new log level and excludes live,
// saying what it changed; an ignored signal is logged; SIGTERM stops it
// with STOPPING=1 and exit 0.
func TestRun_Systemd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds syncer: skipped with -short")
	}
	testutil.RequireRsync(t)
	bin, _ := binaries(t)
	cfg := testConfig(t)
	tree := testutil.Tree{"p/keep.txt": "k", "p/a.old": "old", "p/b.skip": "s"}
	for i := range 300 {
		tree[fmt.Sprintf("p/d%d/f", i%30)+fmt.Sprint(i)] = "x"
	}
	testutil.WriteTree(t, cfg.Source, tree)
	conf := filepath.Join(t.TempDir(), "syncer.yaml")
	write := func(level string, excludes ...string) {
		y := fmt.Sprintf("source: %s\ndest: %s\nstate_dir: %s\nlisten: \"\"\nlog_format: json\nlog_level: %s\nexclude: [%s]\n",
			cfg.Source, cfg.Dest, cfg.StateDir, level, strings.Join(excludes, ", "))
		must(t, os.WriteFile(conf, []byte(y), 0o644))
	}
	write("info", `"*.old"`)
	n := listenNotify(t)
	cmd := exec.Command(bin, "run")
	cmd.Env = append(os.Environ(), "SYNCER_CONFIG="+conf, "NOTIFY_SOCKET="+n.path, "WATCHDOG_USEC=400000")
	var out syncedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("syncer run:\n%s\nnotify: %q", out.String(), n.said())
		}
	})

	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n.index("READY=1", 0) < 0 {
			return errors.New("no READY=1 yet")
		}
		return nil
	})
	ready := n.index("READY=1", 0)
	if s := n.index("STATUS=startup reconcile", 0); s < 0 || s > ready {
		t.Errorf("no STATUS= line on the startup reconcile before READY=1: %q", n.said())
	}
	// Ready means equal: nothing was left to sync when READY=1 was sent.
	if d := testutil.DiffTrees(cfg.Source, cfg.Dest, cfg.Trash, "p/a.old"); d != "" {
		t.Errorf("READY=1 sent before the backup was equal: %s", d)
	}
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n.index("WATCHDOG=1", ready) < 0 || n.index("STATUS=ready", ready) < 0 {
			return errors.New("no watchdog ping or ready STATUS= yet")
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(cfg.Dest, "p/a.old")); err == nil {
		t.Fatal("an excluded file is on the backup")
	}

	must(t, cmd.Process.Signal(syscall.SIGUSR1))
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(out.String(), `"signal ignored","signal":"user defined signal 1"`) {
			return errors.New("SIGUSR1 not logged")
		}
		return nil
	})

	// Reload: debug logs, "*.old" no longer excluded, "*.skip" now is.
	write("debug", `"*.skip"`)
	mark := len(n.said())
	must(t, cmd.Process.Signal(syscall.SIGHUP))
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(out.String(), `"msg":"config reloaded","applied":["exclude","log_level"]`) {
			return errors.New("no reload log line yet")
		}
		return nil
	})
	if r := n.index("RELOADING=1", mark); r < 0 || n.index("READY=1", r) < 0 {
		t.Errorf("reload not told to systemd as RELOADING=1 then READY=1: %q", n.said()[mark:])
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, err := os.Stat(filepath.Join(cfg.Dest, "p/a.old")); err != nil {
			return fmt.Errorf("a file no longer excluded is not synced: %v", err)
		}
		return nil
	})
	must(t, os.WriteFile(filepath.Join(cfg.Source, "p/new.skip"), []byte("n"), 0o644))
	must(t, os.WriteFile(filepath.Join(cfg.Source, "p/new.txt"), []byte("n"), 0o644))
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := os.Stat(filepath.Join(cfg.Dest, "p/new.txt"))
		return err
	})
	if _, err := os.Stat(filepath.Join(cfg.Dest, "p/new.skip")); err == nil {
		t.Error("a file excluded by the reload reached the backup")
	}
	if !strings.Contains(out.String(), `"level":"debug"`) {
		t.Error("no debug line after the reload set log_level: debug")
	}

	// A config that does not validate changes nothing.
	must(t, os.WriteFile(conf, []byte("source: [\n"), 0o644))
	must(t, cmd.Process.Signal(syscall.SIGHUP))
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "config reload refused") {
			return errors.New("a bad config not refused in the log")
		}
		return nil
	})

	must(t, cmd.Process.Signal(syscall.SIGTERM))
	err := cmd.Wait()
	if err != nil || n.index("STOPPING=1", 0) < 0 || !strings.Contains(out.String(), `"msg":"stopping; a second signal exits at once","signal":"terminated"`) {
		t.Errorf("SIGTERM: %v, STOPPING=1 at %d; want exit 0 with the stop logged and told", err, n.index("STOPPING=1", 0))
	}
}
