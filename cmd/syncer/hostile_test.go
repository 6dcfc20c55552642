package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/syncer/syncer/internal/control"
	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/reconcile"
)

// hostile starts a daemon (with the direct copier, or rsync alone) whose source is written by an unprivileged user
// and returns it with the root-only directory outside both trees and its
// fingerprint before any attack.
func hostile(t *testing.T, direct bool, tree testutil.Tree) (h *harness, outside, before string) {
	t.Helper()
	base, outside := testutil.Lair(t)
	cfg := testConfig(t)
	cfg.DirectCopy = direct
	cfg.Source, cfg.Dest = filepath.Join(base, "src"), filepath.Join(base, "dst")
	must(t, os.Mkdir(cfg.Source, 0o755))
	must(t, os.Mkdir(cfg.Dest, 0o755))
	testutil.WriteTree(t, cfg.Source, tree)
	testutil.ChownTree(t, cfg.Source, testutil.Nobody, testutil.Nobody)
	before = testutil.Fingerprint(t, outside)
	h = start(t, cfg)
	h.converge(t)
	return h, outside, before
}

// intact fails the test when the root-only directory changed in any way.
func intact(t *testing.T, outside, before, what string) {
	t.Helper()
	if now := testutil.Fingerprint(t, outside); now != before {
		t.Fatalf("%s: the root-only directory outside the trees changed:\nbefore:\n%s\nafter:\n%s", what, before, now)
	}
}

// noSecret fails the test when bytes of the root-only directory's files
// reached the backup (its trash included): something read outside the source.
func noSecret(t *testing.T, dest string) {
	t.Helper()
	err := filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if bytes.Contains(b, []byte("TOP SECRET")) || bytes.Contains(b, []byte("root@host")) {
			return fmt.Errorf("%s holds bytes of a root-only file outside the source", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bothPaths runs an attack test with the direct copier and with rsync
// alone, whose safety must hold as well.
func bothPaths(t *testing.T, fn func(t *testing.T, direct bool)) {
	if testing.Short() {
		t.Skip("attack tests: skipped with -short")
	}
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "DirectCopy", false: "RsyncOnly"}[direct], func(t *testing.T) { fn(t, direct) })
	}
}

// plant replaces the backup directory at with a symlink to target. The
// daemon runs meanwhile, and a late job of the converged tree may make the
// directory again between the removal and the symlink: tried again.
func plant(t *testing.T, target, at string) {
	t.Helper()
	for i := 0; ; i++ {
		must(t, os.RemoveAll(at))
		err := os.Symlink(target, at)
		if err == nil {
			return
		}
		if !errors.Is(err, fs.ErrExist) || i == 20 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func asNobody(t *testing.T, dir, script string) {
	t.Helper()
	if out, err := testutil.RunAs(t, dir, script); err != nil {
		t.Fatalf("as nobody: %s: %v\n%s", script, err, out)
	}
}

// TestHostile_BackupSymlinks: symlinks planted on the backup side, where a
// directory and where a whole project should be, are moved aside, never
// written through; the backup converges to the source.
func TestHostile_BackupSymlinks(t *testing.T) {
	bothPaths(t, func(t *testing.T, direct bool) {
		h, outside, before := hostile(t, direct, testutil.Tree{"proj/keep": "k"})
		const tries = 20
		for i := range tries {
			asNobody(t, h.cfg.Source, fmt.Sprintf("mkdir -p proj/d%[1]d p%[1]d && echo one > proj/d%[1]d/f1 && echo k > p%[1]d/keep", i))
			h.converge(t)
			// The directory: a change of one file, and a new one.
			d := filepath.Join(h.cfg.Dest, "proj", fmt.Sprint("d", i))
			plant(t, outside, d)
			// The project: a new subtree in it.
			p := filepath.Join(h.cfg.Dest, fmt.Sprint("p", i))
			plant(t, outside, p)
			asNobody(t, h.cfg.Source, fmt.Sprintf("echo changed > proj/d%[1]d/f1 && echo new > proj/d%[1]d/new && mkdir -p p%[1]d/new/sub && echo x > p%[1]d/new/sub/f", i))
			h.converge(t)
			intact(t, outside, before, fmt.Sprintf("try %d, backup directory and project replaced by symlinks", i))
			for _, x := range []string{d, p} {
				if fi, err := os.Lstat(x); err != nil || !fi.IsDir() {
					t.Fatalf("try %d: %s on the backup is %v (%v), want a directory", i, x, fi.Mode(), err)
				}
			}
		}
		noSecret(t, h.cfg.Dest)
		t.Logf("backup-side symlinks: %d tries of each, the root-only directory unchanged, backup equal to the source", tries)
	})
}

// TestHostile_SourceSymlinkSwap: an unprivileged user makes proj/aN a
// symlink to the root-only directory (it syncs as a symlink), then, while
// the parent keeps changing, replaces it with a real directory holding
// authorized_keys. The file must land in the backup's proj/aN, never in
// the root-only directory.
func TestHostile_SourceSymlinkSwap(t *testing.T) {
	bothPaths(t, func(t *testing.T, direct bool) {
		h, outside, before := hostile(t, direct, testutil.Tree{"proj/x": "x"})
		const tries = 20
		for i := range tries {
			a := fmt.Sprintf("a%d", i)
			asNobody(t, h.cfg.Source, "ln -s "+outside+" proj/"+a)
			testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
				if fi, err := os.Lstat(filepath.Join(h.cfg.Dest, "proj", a)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
					return errors.New("symlink not on the backup yet")
				}
				return nil
			})
			asNobody(t, h.cfg.Source, fmt.Sprintf(`for j in 1 2 3 4 5; do echo $j > proj/x$j; done &
		rm proj/%[1]s && mkdir proj/%[1]s && echo 'ssh-ed25519 EVIL nobody@x' > proj/%[1]s/authorized_keys
		for j in 1 2 3 4 5; do echo $j > proj/y$j; done; wait`, a))
			h.converge(t)
			intact(t, outside, before, fmt.Sprintf("try %d", i))
		}
		t.Logf("source symlink swapped for a directory: %d tries, the root-only directory unchanged", tries)
	})
}

// TestHostile_SourceSwapLoop: while the daemon syncs, an unprivileged user
// keeps swapping a directory with a symlink to the root-only directory.
// Nothing of that directory is ever read into the backup, nothing written
// into it.
func TestHostile_SourceSwapLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("attack tests: skipped with -short")
	}
	h, outside, before := hostile(t, true, testutil.Tree{"proj/sw/f": "f"})
	script := fmt.Sprintf(`i=0; while [ $i -lt 200 ]; do
  i=$((i+1))
  rm -rf proj/sw; ln -s %[1]s proj/sw; echo $i > proj/tick
  rm proj/sw; mkdir proj/sw; echo $i > proj/sw/f; mkdir proj/sw/d; echo $i > proj/sw/d/g
  sleep 0.01
done`, outside)
	asNobody(t, h.cfg.Source, script)
	h.converge(t)
	intact(t, outside, before, "200 swaps")
	noSecret(t, h.cfg.Dest)
	t.Logf("directory and symlink swapped 200 times under a running daemon: nothing read or written outside")
}

// TestHostile_API: control needs the socket (root or control_group); the
// TCP listener serves only metrics and health, and with a token refuses
// requests without it or from a foreign origin; 40 reconcile requests at
// once run as one walk.
func TestHostile_API(t *testing.T) {
	if testing.Short() {
		t.Skip("attack tests: skipped with -short")
	}
	tree := testutil.Tree{}
	for i := range 3000 {
		tree[fmt.Sprintf("proj/d%d/e%d/f", i%60, i)] = "x"
	}
	h, outside, _ := hostile(t, true, tree)
	must(t, os.Chmod(h.cfg.StateDir, 0o755)) // so that only the socket's own mode stands in the way

	sock := filepath.Join(h.cfg.StateDir, controlSock)
	fi, err := os.Lstat(sock)
	must(t, err)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("control socket %v uid %d, want a root-owned socket, mode 0660", fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
	}
	// An unprivileged user, with the syncer binary itself, and with a raw connect.
	bin := filepath.Join(filepath.Dir(outside), "syncer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, args := range []string{"status", "retry --all", "pause", "resume", "pause proj"} {
		args += " --state-dir " + h.cfg.StateDir
		out, err := testutil.RunAs(t, "/", bin+" "+args)
		if err == nil || !strings.Contains(out, "permission") {
			t.Errorf("syncer %s as nobody: %v, %q; want a refusal for lack of permission", args, err, out)
		}
	}

	// TCP without a token: read-only routes only.
	base := "http://" + h.d.addr
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/metrics", 200}, {"GET", "/healthz", 200}, {"GET", "/readyz", 200},
		{"GET", "/api/status", 404}, {"POST", "/api/reconcile", 404}, {"POST", "/api/retry", 404},
		{"POST", "/api/pause", 404}, {"POST", "/api/resume", 404},
		{"GET", "/debug/pprof/", 404}, {"GET", "/debug/pprof/heap", 404},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader("{}"))
		req.Header.Set("Origin", "http://evil.example")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("TCP %s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}

	// TCP with a token: the control routes behind it.
	token := "0123456789abcdef0123456789abcdef"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h.d.tcpHandler(token, ln.Addr().String())}}
	srv.Start()
	defer srv.Close()
	addr := ln.Addr().String()
	for _, c := range []struct {
		name, auth, origin, host string
		want                     int
	}{
		{"no token", "", "", "", 401},
		{"wrong token", "Bearer nope", "", "", 401},
		{"cross-origin", "Bearer " + token, "http://evil.example", "", 403},
		{"foreign host", "Bearer " + token, "", "evil.example", 403},
		{"token", "Bearer " + token, "", "", 200},
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/status", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		if c.host != "" {
			req.Host = c.host
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("token listener, %s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}

	// Bad paths get 400 with the reason; 40 requests at once, one walk.
	cf := clientFlags{control.Flags{StateDir: h.cfg.StateDir}}
	cmd := &cobra.Command{}
	cmd.SetContext(t.Context())
	var v reconcile.Report
	err = cf.do(cmd, http.MethodPost, "/api/reconcile", map[string]any{"projects": []string{"../../Z"}}, &v)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), `".." component`) {
		t.Errorf("reconcile of ../../Z: %v, want 400 with the reason", err)
	}
	ids := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v reconcile.Report
			if err := cf.do(cmd, http.MethodPost, "/api/reconcile", map[string]any{}, &v); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[v.ID]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Errorf("40 parallel reconcile requests ran %d walks (%v), want 1", len(ids), ids)
	}
}

// TestHostile_CraftedJobsExternal: any client of an external nats-server
// (built from the module we embed) publishes jobs naming paths outside the
// trees; a running `syncer work` dead-letters each with its reason on its
// first delivery, and nothing outside the trees is touched.
func TestHostile_CraftedJobsExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and runs processes: skipped with -short")
	}
	base, outside := testutil.Lair(t)
	before := testutil.Fingerprint(t, outside)
	syncerBin, natsBin := binaries(t)
	url := startNATS(t, natsBin, "s3cret")
	token := filepath.Join(t.TempDir(), "token")
	must(t, os.WriteFile(token, []byte("s3cret\n"), 0o600))
	cfg := testConfig(t)
	cfg.Source, cfg.Dest = filepath.Join(base, "src"), filepath.Join(base, "dst")
	must(t, os.MkdirAll(filepath.Join(cfg.Source, "p"), 0o755))
	must(t, os.Mkdir(cfg.Dest, 0o755))
	state := t.TempDir()
	testutil.Start(t, syncerBin, "work", "--state-dir", state, "--nats-url", url, "--nats-token-file", token,
		"--source", cfg.Source, "--dest", cfg.Dest, "--listen", "", "--log-level", "warn", "--log-format", "json")

	nc, err := nats.Connect(url, nats.Token("s3cret"))
	must(t, err)
	defer nc.Close()
	b64 := func(s string) string { return `"` + base64.StdEncoding.EncodeToString([]byte(s)) + `"` }
	crafted := map[string]string{
		"dotdot":   `{"id":"dotdot","dir":` + b64("../../X") + `,"rec":true,"reason":"change"}`,
		"outside":  `{"id":"outside","dir":` + b64("../rootonly") + `,"reason":"change"}`,
		"abs":      `{"id":"abs","dir":` + b64(outside) + `,"rec":true,"reason":"change"}`,
		"nul":      `{"id":"nul","dir":` + b64("p/a\x00b") + `,"reason":"change"}`,
		"empty":    `{"id":"empty","dir":` + b64("p//a") + `,"reason":"change"}`,
		"overlong": `{"id":"overlong","dir":` + b64("p/"+strings.Repeat("n", 300)) + `,"reason":"change"}`,
	}
	// The stream exists once the worker is up.
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		m, err := nc.Request("$JS.API.STREAM.INFO.SYNCER_JOBS", nil, time.Second)
		if err == nil && bytes.Contains(m.Data, []byte(`"error"`)) {
			err = errors.New(string(m.Data))
		}
		return err
	})
	for id, payload := range crafted {
		if _, err := nc.Request("syncer.jobs.evil."+id+".r", []byte(payload), 5*time.Second); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
	}
	var st status.Report
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		var stdout, stderr bytes.Buffer
		if code := Main(t.Context(), []string{"status", "--json", "--state-dir", state}, &stdout, &stderr); code != 0 {
			return fmt.Errorf("status: exit %d: %s", code, stderr.String())
		}
		st = status.Report{}
		if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
			return err
		}
		if len(st.Dead) != len(crafted) {
			return fmt.Errorf("%d dead-lettered, want %d", len(st.Dead), len(crafted))
		}
		return nil
	})
	for _, d := range st.Dead {
		if !strings.Contains(d.Error, "invalid path") {
			t.Errorf("dead job %s: %q does not say why", d.ID, d.Error)
		}
		t.Logf("dead-lettered %s: %s", d.ID, d.Error)
	}
	if st.Queue.Pending != 0 || st.Queue.InFlight != 0 {
		t.Errorf("queue %+v: the refused jobs must not wait for a retry", st.Queue)
	}
	intact(t, outside, before, "crafted jobs")
	for _, p := range []string{filepath.Join(base, "X"), filepath.Join(filepath.Dir(base), "X")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created outside the backup", p)
		}
	}
}
