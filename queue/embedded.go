package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// ErrLocked means another process holds the state directory.
var ErrLocked = errors.New("state dir is in use by another syncer process")

// EmbeddedOptions configure the in-process NATS server.
type EmbeddedOptions struct {
	// StoreDir holds the JetStream file store and the lock file.
	StoreDir string
	// Listen, when set ("127.0.0.1:4222"), opens a client port besides the
	// in-process connection; empty opens none.
	Listen string
	// SyncAlways fsyncs every write (slower; survives power loss).
	SyncAlways bool
	// Logger, when set, gets the server's warnings and errors (a block
	// file repaired, a stream it could not recover).
	Logger *zap.Logger
}

// Embedded is an in-process NATS server with JetStream.
type Embedded struct {
	srv  *server.Server
	lock *os.File
}

// StartEmbedded validates and locks the store directory, then starts the
// server and waits until it accepts connections. The server library neither
// locks its store nor reports a bad one cleanly, so both are done here.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("embedded nats: store dir is required")
	}
	lock, err := LockDir(opts.StoreDir)
	if err != nil {
		return nil, err
	}
	sopts := &server.Options{
		ServerName: "syncer",
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		NoSigs:     true, // else the library exits the process on SIGTERM
		NoLog:      true,
		DontListen: opts.Listen == "",
		SyncAlways: opts.SyncAlways,
	}
	if opts.Listen != "" {
		host, port, err := splitHostPort(opts.Listen)
		if err != nil {
			lock.Close()
			return nil, err
		}
		sopts.Host, sopts.Port = host, port
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if opts.Logger != nil {
		srv.SetLoggerV2(serverLog{opts.Logger.Named("nats")}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10*time.Second) || !srv.JetStreamEnabled() {
		srv.Shutdown()
		lock.Close()
		return nil, errors.New("embedded nats: not ready after 10s")
	}
	return &Embedded{srv: srv, lock: lock}, nil
}

// LockDir creates dir (0700) when missing, checks that it is writable and
// takes an exclusive flock on dir/syncer.lock, held until the file is closed.
func LockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "syncer.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir not writable: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	return f, nil
}

// connect opens an in-process client connection.
func (e *Embedded) connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	return nc, nil
}

// ClientURL is the URL of the listener, "" when none is open.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server, waits for it, and releases the store lock.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.lock.Close()
}

// ScratchDir makes a store directory of its own below parent, for a queue
// that lives as long as one process (a standalone reconcile), and removes
// the ones earlier processes left there when they exited first (older than
// a minute). The caller removes its own when its server has stopped.
func ScratchDir(parent string) (string, error) {
	if ents, err := os.ReadDir(parent); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
				_ = os.RemoveAll(filepath.Join(parent, e.Name()))
			}
		}
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("scratch store: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "run-")
	if err != nil {
		return "", fmt.Errorf("scratch store: %w", err)
	}
	return dir, nil
}

// serverLog passes the embedded server's warnings and errors to zap; its
// notices (startup banners) and debug lines are dropped.
type serverLog struct{ log *zap.Logger }

func (l serverLog) Noticef(string, ...any) {}
func (l serverLog) Debugf(string, ...any)  {}
func (l serverLog) Tracef(string, ...any)  {}
func (l serverLog) Warnf(format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}
func (l serverLog) Errorf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...))
}
func (l serverLog) Fatalf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...))
}
