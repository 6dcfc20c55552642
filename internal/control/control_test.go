package control_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/syncer/syncer/internal/control"
	"go.uber.org/zap"
)

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := control.ReadToken(write("good", "0123456789abcdef\n", 0o600)); err != nil || tok != "0123456789abcdef" {
		t.Errorf("good token: %q, %v", tok, err)
	}
	if _, err := control.ReadToken(write("shared", "0123456789abcdef", 0o640)); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("group-readable token: %v", err)
	}
	if _, err := control.ReadToken(write("short", "abc", 0o600)); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("short token: %v", err)
	}
}

func TestRequireToken(t *testing.T) {
	const token, addr = "0123456789abcdef", "127.0.0.1:9797"
	h := control.RequireToken(token, addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	for _, tt := range []struct {
		name, host, origin, auth string
		want                     int
	}{
		{"token", addr, "", "Bearer " + token, http.StatusOK},
		{"localhost", "localhost:9797", "", "Bearer " + token, http.StatusOK},
		{"own origin", addr, "http://" + addr, "Bearer " + token, http.StatusOK},
		{"no token", addr, "", "", http.StatusUnauthorized},
		{"wrong token", addr, "", "Bearer 0123456789abcdeX", http.StatusUnauthorized},
		{"foreign host", "evil.example:9797", "", "Bearer " + token, http.StatusForbidden},
		{"other port", "127.0.0.1:80", "", "Bearer " + token, http.StatusForbidden},
		{"cross origin", addr, "http://evil.example", "Bearer " + token, http.StatusForbidden},
	} {
		req := httptest.NewRequest(http.MethodGet, "/api/status", nil)
		req.Host = tt.host
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, rec.Code, tt.want)
		}
	}
}

// TestListen checks the socket's mode and owner, and that a stale socket
// is replaced.
func TestListen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	if err := os.WriteFile(path, nil, 0o666); err != nil { // a stale leftover
		t.Fatal(err)
	}
	ln, err := control.Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || int(st.Uid) != os.Geteuid() {
		t.Errorf("socket %v owned by %d, want a 0660 socket of this user", fi.Mode(), st.Uid)
	}
	if _, err := control.Listen(path, "no-such-group-here"); err == nil {
		t.Error("an unknown group: no error")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the first listener no longer answers: %v", err)
	}
	c.Close()
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9797": true, "localhost:1": true, "[::1]:9": true,
		"0.0.0.0:9797": false, ":9797": false, "10.0.0.5:9797": false, "bad": false} {
		if got := control.Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestOpen serves a handler on the socket and the TCP listener, records the
// listener's address for the CLI, and removes it on Close.
func TestOpen(t *testing.T) {
	state := t.TempDir()
	full := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		control.WriteJSON(w, map[string]string{"from": "socket"})
	})
	tcp := func(token, addr string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { control.WriteJSON(w, map[string]string{"from": "tcp"}) })
	}
	api, err := control.Open(control.Options{StateDir: state, Socket: "c.sock", Listen: "127.0.0.1:0", AddrFile: "http.addr",
		Logger: zap.NewNop()}, full, tcp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(state, "http.addr"))
	if err != nil || strings.TrimSpace(string(b)) != api.Addr {
		t.Errorf("address file %q (%v), want %s", b, err, api.Addr)
	}
	for _, c := range []control.Client{{Socket: filepath.Join(state, "c.sock")}, {Addr: api.Addr}} {
		var got map[string]string
		if err := c.Do(t.Context(), http.MethodGet, "/x", nil, &got); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: "socket", false: "tcp"}[c.Socket != ""]; got["from"] != want {
			t.Errorf("%+v answered %v, want %s", c, got, want)
		}
	}
	api.Close()
	if _, err := os.Stat(filepath.Join(state, "http.addr")); err == nil {
		t.Error("address file left after Close")
	}
}
