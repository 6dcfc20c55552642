package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/syncer/syncer/config"
	"go.uber.org/zap"
)

// The daemon's HTTP API comes in two parts, split by privilege:
//
//   - control (status with its paths and errors, reconcile, retry, pprof
//     when switched on) on a Unix socket in the state dir, mode 0660, owned
//     by root and control_group: the file system says who may use it, and
//     the CLI talks to it;
//   - on the TCP listener, only what is safe for anyone who can connect:
//     GET /metrics, /healthz, /readyz. With control_token_file, control is
//     served there too, to requests carrying that bearer token and no
//     foreign Host or Origin (a browser page cannot ride on it).

// controlSock is the control socket's name in the state dir.
const controlSock = "control.sock"

// publicHandler serves the read-only routes of the TCP listener.
func (d *daemon) publicHandler(mux *http.ServeMux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if why := d.notReady(r.Context()); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

// tcpHandler is what the TCP listener at addr serves: the public routes,
// and the control routes only behind the token when one is configured.
func (d *daemon) tcpHandler(token, addr string) http.Handler {
	mux := http.NewServeMux()
	d.publicHandler(mux)
	if token == "" {
		return mux
	}
	ctl := d.handler()
	mux.Handle("/api/", requireToken(token, addr, ctl))
	if d.cfg.Pprof {
		mux.Handle("/debug/pprof/", requireToken(token, addr, ctl))
	}
	return mux
}

// requireToken lets through requests that carry the bearer token, name
// this listener (or a loopback name) as their Host, and have no Origin
// header other than their own: a cross-origin request from a browser is
// refused even when the browser could guess the port.
func requireToken(token, addr string, next http.Handler) http.Handler {
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

// handler serves the whole API; the daemon serves it on the control socket.
func (d *daemon) handler() http.Handler {
	mux := http.NewServeMux()
	d.publicHandler(mux)
	d.controlRoutes(mux)
	if d.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// listenControl opens the control socket in the state dir: 0660, owned by
// root and control_group. A stale socket of a dead daemon is replaced (the
// state dir lock says none runs).
func listenControl(stateDir, group string) (net.Listener, error) {
	path := filepath.Join(stateDir, controlSock)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Created unreachable, then opened to the group: no window in which
	// another user could connect.
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("control_group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
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

// serveAPI serves the whole API on the control socket and, when listen is
// set, the public routes (and the control ones behind the token) on TCP,
// until the returned stop is called.
func (d *daemon) serveAPI() (stop func(), err error) {
	cfg := d.cfg
	var token string
	if cfg.ControlTokenFile != "" {
		if token, err = config.ReadToken(cfg.ControlTokenFile); err != nil {
			return nil, fmt.Errorf("control_token_file: %w", err)
		}
	}
	ln, err := listenControl(cfg.StateDir, cfg.ControlGroup)
	if err != nil {
		return nil, err
	}
	stops := []func(){d.serve("control", ln, d.handler())}
	stop = func() {
		for _, s := range stops {
			s()
		}
	}
	if cfg.Listen == "" {
		return stop, nil
	}
	tln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		stop()
		return nil, fmt.Errorf("http listen: %w", err)
	}
	d.addr = tln.Addr().String()
	if !loopback(cfg.Listen) {
		d.log.Warn("the HTTP listener is reachable from other hosts: it serves /metrics, /healthz and /readyz to anyone who connects",
			zap.String("listen", d.addr), zap.Bool("control_by_token", token != ""))
	}
	stops = append(stops, d.serve("http", tln, d.tcpHandler(token, d.addr)))
	// Written whole or not at all: the CLI may read it at any moment.
	addrPath := filepath.Join(cfg.StateDir, addrFile)
	if err := os.WriteFile(addrPath+".tmp", []byte(d.addr+"\n"), 0o600); err != nil {
		d.log.Warn("record http address", zap.Error(err))
	} else if err := os.Rename(addrPath+".tmp", addrPath); err != nil {
		d.log.Warn("record http address", zap.Error(err))
	}
	stops = append(stops, func() { _ = os.Remove(addrPath) })
	return stop, nil
}

// addrFile is where the daemon records its HTTP address in the state dir.
const addrFile = "http.addr"

// serve serves h on ln until the returned stop is called.
func (d *daemon) serve(what string, ln net.Listener, h http.Handler) (stop func()) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error(what+" server", zap.Error(err))
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// loopback reports whether a listen address only accepts local connections.
func loopback(addr string) bool {
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
