package control

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// ReadToken reads a bearer token file, which must not be readable by
// group or others.
func ReadToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("%s: the token is shorter than 16 characters", path)
	}
	return tok, nil
}

// RequireToken lets through requests that carry the bearer token, name
// this listener (or a loopback name) as their Host, and have no Origin
// header other than their own: a cross-origin request from a browser is
// refused even when the browser could guess the port.
func RequireToken(token, addr string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sameHost(r.Host, addr) {
			http.Error(w, "foreign Host refused", http.StatusForbidden)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="syncer"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameHost reports whether a request's Host names the listener at addr:
// its own address, or localhost / a loopback address on its port.
func sameHost(host, addr string) bool {
	if host == addr {
		return true
	}
	h, p, err := net.SplitHostPort(host)
	_, lp, lerr := net.SplitHostPort(addr)
	if err != nil || lerr != nil || p != lp {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Listen opens the control socket at path: 0660, owned by root and group
// (none: root's). A stale socket of a dead daemon is replaced: the caller
// holds the state dir's lock, so none runs.
func Listen(path, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("control_group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Created unreachable, then opened to the group: no window in which
	// another user could connect.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Lchown(path, -1, gid); err != nil && gid >= 0 {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// Serve serves h on ln until the returned stop is called; log gets what
// fails meanwhile.
func Serve(what string, ln net.Listener, h http.Handler, log *zap.Logger) (stop func()) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" server", zap.Error(err))
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// Loopback reports whether a listen address only accepts local connections.
func Loopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// DecodeJSON reads a request's JSON body (at most 1 MiB, no unknown fields) into v.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// WriteJSON answers with v as indented JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Options say where the API is served.
type Options struct {
	StateDir string // holds the socket and the address file
	Socket   string // the control socket's name in StateDir
	Group    string // the group besides root that may use the socket
	// Listen, when set, is the TCP address of the public routes; with
	// TokenFile, the control routes are served there too, behind its token.
	Listen, TokenFile string
	// AddrFile names, in StateDir, the file the TCP listener's address is
	// written to (whole or not at all) for the CLI.
	AddrFile string
	Logger   *zap.Logger
}

// API is the served API; Addr is the TCP listener's address, "" when none.
type API struct {
	Addr  string
	stops []func()
}

// Open serves full on the control socket and, with Listen, tcp(token,
// addr) on TCP, until Close.
func Open(o Options, full http.Handler, tcp func(token, addr string) http.Handler) (*API, error) {
	var token string
	if o.TokenFile != "" {
		var err error
		if token, err = ReadToken(o.TokenFile); err != nil {
			return nil, fmt.Errorf("control_token_file: %w", err)
		}
	}
	ln, err := Listen(filepath.Join(o.StateDir, o.Socket), o.Group)
	if err != nil {
		return nil, err
	}
	a := &API{stops: []func(){Serve("control", ln, full, o.Logger)}}
	if o.Listen == "" {
		return a, nil
	}
	tln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("http listen: %w", err)
	}
	a.Addr = tln.Addr().String()
	if !Loopback(o.Listen) {
		o.Logger.Warn("the HTTP listener is reachable from other hosts: it serves /metrics, /healthz and /readyz to anyone who connects",
			zap.String("listen", a.Addr), zap.Bool("control_by_token", token != ""))
	}
	a.stops = append(a.stops, Serve("http", tln, tcp(token, a.Addr), o.Logger))
	path := filepath.Join(o.StateDir, o.AddrFile)
	if err := os.WriteFile(path+".tmp", []byte(a.Addr+"\n"), 0o600); err != nil {
		o.Logger.Warn("record http address", zap.Error(err))
	} else if err := os.Rename(path+".tmp", path); err != nil {
		o.Logger.Warn("record http address", zap.Error(err))
	}
	a.stops = append(a.stops, func() { _ = os.Remove(path) })
	return a, nil
}

// Close stops serving.
func (a *API) Close() {
	for _, s := range a.stops {
		s()
	}
}
