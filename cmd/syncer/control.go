package main

import (
	"net/http"
	"net/http/pprof"

	"github.com/syncer/syncer/internal/control"
	"github.com/syncer/syncer/internal/status"
)

// The daemon's HTTP API comes in two parts, split by privilege:
//
//   - control (status with its paths and errors, reconcile, retry, pprof
//     when switched on) on a Unix socket in the state dir, mode 0660, owned
//     by root and control_group: the file system says who may use it, and
//     the CLI talks to it;
//   - on the TCP listener, only what is safe for anyone who can connect:
//     GET / (the status page), /metrics, /healthz, /readyz. With control_token_file, control is
//     served there too, to requests carrying that bearer token and no
//     foreign Host or Origin (a browser page cannot ride on it).

// controlSock is the control socket's name in the state dir.
const controlSock = "control.sock"

// publicHandler serves the read-only routes of the TCP listener.
func (d *daemon) publicHandler(mux *http.ServeMux) {
	mux.Handle("GET /metrics", d.metrics.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		_ = status.Page(w, d.status(r.Context()))
	})
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
	mux.Handle("/api/", control.RequireToken(token, addr, ctl))
	if d.cfg.Pprof {
		mux.Handle("/debug/pprof/", control.RequireToken(token, addr, ctl))
	}
	return mux
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

// serveAPI serves the whole API on the control socket and, when listen is
// set, the public routes (and the control ones behind the token) on TCP,
// until the returned stop is called.
func (d *daemon) serveAPI() (stop func(), err error) {
	cfg := d.cfg
	api, err := control.Open(control.Options{StateDir: cfg.StateDir, Socket: controlSock, Group: cfg.ControlGroup,
		Listen: cfg.Listen, TokenFile: cfg.ControlTokenFile, AddrFile: addrFile, Logger: d.log}, d.handler(), d.tcpHandler)
	if err != nil {
		return nil, err
	}
	d.addr = api.Addr
	return api.Close, nil
}

// addrFile is where the daemon records its HTTP address in the state dir.
const addrFile = "http.addr"
