package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
)

// Connect opens the queue where opts say it lives: on the embedded server
// with its file store in StateDir/nats, on a scratch in-memory one
// (Scratch), or on an external cluster (External). In every case it holds
// the state dir's lock until Close: one syncer process per state dir.
func Connect(ctx context.Context, opts Options) (q *JetStream, err error) {
	if opts.StateDir == "" {
		return nil, errors.New("queue: state dir is required")
	}
	var undo []func()
	closeAll := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	var nc *nats.Conn
	url := "embedded"
	if opts.External != nil {
		lock, err := LockDir(opts.StateDir)
		if err != nil {
			return nil, err
		}
		undo = append(undo, func() { lock.Close() })
		ext := *opts.External
		if opts.OnFailover != nil {
			// Advisories are not stored: one sent while this process was
			// reconnecting is missed. A reconnect is a failover of its own.
			ext.onReconnect = func() { opts.OnFailover("reconnected") }
		}
		if nc, err = connectExternal(ext); err != nil {
			return nil, err
		}
		undo = append(undo, nc.Close)
		url = nc.ConnectedUrlRedacted()
	} else if opts.Scratch {
		store := filepath.Join(opts.StateDir, "nats")
		// It lives in memory and dies with the process, but holds the
		// state dir so that no daemon starts meanwhile.
		lock, err := LockDir(store)
		if err != nil {
			return nil, err
		}
		undo = append(undo, func() { lock.Close() })
		if store, err = ScratchDir(filepath.Join(opts.StateDir, "reconcile-queue")); err != nil {
			return nil, err
		}
		emb, err := StartEmbedded(EmbeddedOptions{StoreDir: store, Listen: opts.Listen})
		if err != nil {
			return nil, err
		}
		// Memory only and the process is about to end: do not wait the
		// ~50 ms the server takes to stop.
		undo = append(undo, func() { go func() { emb.Shutdown(); _ = os.RemoveAll(store) }() })
		if nc, err = emb.connect("syncer"); err != nil {
			return nil, err
		}
		undo = append(undo, nc.Close)
	} else {
		return connectEmbedded(ctx, opts)
	}
	if opts.Replicas <= 0 {
		opts.Replicas = replicas(nc) // 3 on a cluster: survive the loss of a server
	}
	if q, err = open(ctx, nc, opts); err != nil {
		return nil, err
	}
	if opts.External != nil && opts.OnFailover != nil {
		stop, err := q.onLeaderElected(opts.OnFailover)
		if err != nil {
			return nil, err
		}
		undo = append(undo, stop)
	}
	q.url, q.close = url, closeAll
	if opts.Scratch && opts.External == nil && opts.Listen == "" {
		q.local = &subscribers{fns: map[int]func(syncer.Result){}}
	}
	return q, nil
}

// URL says where the queue lives, for logs: "embedded", "embedded,
// listening on nats://...", or the external server (credentials redacted).
func (q *JetStream) URL() string { return q.url }

// Close closes the connection, then the embedded server, then releases the
// state dir.
func (q *JetStream) Close() {
	if q.close != nil {
		q.close()
	}
}

// minFree is the free space below which the embedded store is reported
// unable to take events: JetStream refuses writes well before the last byte.
const minFree = 64 << 20

// Healthy reports whether the queue answers and, for the embedded server,
// whether its store's filesystem has room for events.
func (q *JetStream) Healthy(ctx context.Context) error {
	if _, err := q.Stats(ctx); err != nil {
		return fmt.Errorf("unreachable: %w", err)
	}
	if q.opts.External != nil || q.opts.Scratch {
		return nil
	}
	var fs unix.Statfs_t
	dir := filepath.Join(q.opts.StateDir, "nats")
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	if free := fs.Bavail * uint64(fs.Bsize); free < minFree {
		return fmt.Errorf("store %s: its filesystem is full (%d MiB free): events cannot be stored", dir, free>>20)
	}
	return nil
}

// connectEmbedded opens the queue on the embedded server with its file
// store in StateDir/nats. A store that cannot be opened (a damaged block
// file, consumer state or stream metadata) is moved aside, named in an
// error line, and an empty one is started: the daemon's startup reconcile
// then finds whatever the lost jobs were for.
func connectEmbedded(ctx context.Context, opts Options) (*JetStream, error) {
	store := filepath.Join(opts.StateDir, "nats")
	if opts.EventsMaxBytes <= 0 {
		opts.EventsMaxBytes = eventsLimit(opts.StateDir)
	}
	q, err := startEmbedded(ctx, opts, store)
	if err == nil || ctx.Err() != nil || errors.Is(err, ErrLocked) {
		return q, err
	}
	data := filepath.Join(store, "jetstream")
	if _, serr := os.Stat(data); serr != nil {
		return nil, err // nothing there to blame
	}
	aside := filepath.Join(store, "damaged-"+time.Now().UTC().Format("20060102T150405Z"))
	if rerr := os.Rename(data, aside); rerr != nil {
		return nil, fmt.Errorf("%w (and moving the store aside failed: %v)", err, rerr)
	}
	if opts.Logger != nil {
		opts.Logger.Error("queue store damaged: moved aside, starting an empty one; the startup reconcile finds what its jobs were for",
			zap.String("moved_to", aside), zap.Error(err))
	}
	return startEmbedded(ctx, opts, store)
}

// startEmbedded starts the server on store and opens the queue on it.
func startEmbedded(ctx context.Context, opts Options, store string) (q *JetStream, err error) {
	emb, err := StartEmbedded(EmbeddedOptions{StoreDir: store, Listen: opts.Listen, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	nc, err := emb.connect("syncer")
	if err != nil {
		emb.Shutdown()
		return nil, err
	}
	opts.Replicas = 1
	if q, err = open(ctx, nc, opts); err != nil {
		nc.Close()
		emb.Shutdown()
		return nil, err
	}
	q.url = "embedded"
	if u := emb.ClientURL(); u != "" {
		q.url = "embedded, listening on " + u
	}
	q.close = func() { nc.Close(); emb.Shutdown() }
	return q, nil
}

// eventsLimit fits the EVENTS stream's cap to the state filesystem: at
// most DefaultEventsMaxBytes, at most a quarter of the space JetStream may
// use there (three quarters of what is free), at least 8 MiB.
func eventsLimit(stateDir string) int64 {
	var fs unix.Statfs_t
	if err := unix.Statfs(stateDir, &fs); err != nil {
		return DefaultEventsMaxBytes
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	return max(8<<20, min(DefaultEventsMaxBytes, free*3/4/4))
}
