package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// Defaults for Options.
const (
	DefaultFlush  = 10 * time.Millisecond
	DefaultBuffer = 4096
)

// Publisher receives the watcher's directory events. Publish may block; it
// returns an error when the event could not be stored.
type Publisher interface {
	Publish(ctx context.Context, ev syncer.DirEvent) error
}

// Options configure a Watcher; zero values mean the defaults.
type Options struct {
	// Root is the source tree, an absolute clean path.
	Root string
	// Excludes are glob patterns (path.Match syntax) matched against each
	// entry's name; matching entries are neither watched nor reported.
	Excludes []string
	// Flush is how long identical directory events are merged before they
	// are published; it keeps the reader fast in storms.
	Flush time.Duration
	// Buffer is the size of fsnotify's event channel.
	Buffer int
	Logger *zap.Logger
}

// Watcher watches a tree. Create it with New, start it with Run.
type Watcher struct {
	opts Options
	log  *zap.Logger

	ready     chan struct{}
	watches   atomic.Int64
	failed    atomic.Int64
	overflows atomic.Int64

	// Owned by the Run goroutine: the watched dirs and their watched children.
	fsw      *fsnotify.Watcher
	watched  map[string]bool
	children map[string]map[string]bool
	pending  map[syncer.Scope]pendingEvent

	mu       sync.Mutex
	unwatchd []string // dirs whose watch could not be added

	// Startup progress, for WaitWatched: the dirs whose watch was added
	// (or failed) so far; nil once the whole tree is done.
	setupMu   sync.Mutex
	setupCond *sync.Cond
	setupSeen map[string]bool
	setupN    int
}

type pendingEvent struct {
	reason syncer.Reason
	at     time.Time
}

// New checks the options; it starts nothing.
func New(opts Options) (*Watcher, error) {
	if opts.Flush <= 0 {
		opts.Flush = DefaultFlush
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if !filepath.IsAbs(opts.Root) || filepath.Clean(opts.Root) != opts.Root {
		return nil, fmt.Errorf("watcher: root %q must be an absolute clean path", opts.Root)
	}
	for _, e := range opts.Excludes {
		if _, err := filepath.Match(e, ""); err != nil {
			return nil, fmt.Errorf("watcher: exclude %q: %w", e, err)
		}
	}
	w := &Watcher{opts: opts, log: opts.Logger, ready: make(chan struct{}), setupSeen: map[string]bool{}}
	w.setupCond = sync.NewCond(&w.setupMu)
	return w, nil
}

// Ready is closed once every directory present at start is watched.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// WaitWatched blocks until the startup walk has added the watch of dir (or
// failed to), or finished. A reader that looks at dir only after this
// misses nothing: what changes later is reported. It lets the startup
// reconcile walk the tree while the watches are still being added.
func (w *Watcher) WaitWatched(dir string) {
	w.setupMu.Lock()
	defer w.setupMu.Unlock()
	for w.setupSeen != nil && !w.setupSeen[dir] {
		w.setupCond.Wait()
	}
}

// setupMark records that dir's watch is in place (or failed), waking
// waiters in groups so that a large tree does not wake them per directory.
func (w *Watcher) setupMark(dir string) {
	w.setupMu.Lock()
	defer w.setupMu.Unlock()
	if w.setupSeen == nil {
		return
	}
	w.setupSeen[dir] = true
	if w.setupN++; w.setupN%64 == 0 {
		w.setupCond.Broadcast()
	}
}

// setupDone ends the startup walk for WaitWatched.
func (w *Watcher) setupDone() {
	w.setupMu.Lock()
	defer w.setupMu.Unlock()
	w.setupSeen = nil
	w.setupCond.Broadcast()
}

// Watches is the number of directories watched now.
func (w *Watcher) Watches() int { return int(w.watches.Load()) }

// Overflows counts kernel event queue overflows.
func (w *Watcher) Overflows() int64 { return w.overflows.Load() }

// WatchFailures counts directories whose watch could not be added.
func (w *Watcher) WatchFailures() int64 { return w.failed.Load() }

// Unwatched lists directories whose watch could not be added (e.g. the
// max_user_watches limit); only a reconcile sees their changes.
func (w *Watcher) Unwatched() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.unwatchd...)
}

// Run watches the tree and publishes events until ctx ends. It returns an
// error only when watching cannot start at all.
func (w *Watcher) Run(ctx context.Context, pub Publisher) error {
	defer w.setupDone() // whatever happens, nobody waits for a walk that is over
	fsw, err := fsnotify.NewBufferedWatcher(uint(w.opts.Buffer))
	if err != nil {
		return fmt.Errorf("start watcher: %w", err)
	}
	defer fsw.Close()
	w.fsw = fsw
	w.watched = map[string]bool{}
	w.children = map[string]map[string]bool{}
	w.pending = map[syncer.Scope]pendingEvent{}

	start := time.Now()
	err = w.addTree("")
	w.setupDone()
	if err != nil {
		return err
	}
	w.log.Info("watching", zap.String("root", w.opts.Root), zap.Int(syncer.LogWatches, w.Watches()),
		zap.Duration(syncer.LogTook, time.Since(start)))
	close(w.ready)

	// The flush timer runs only while events wait: an idle watcher on a
	// large tree must not wake up a hundred times a second.
	flush := time.NewTimer(w.opts.Flush)
	flush.Stop()
	armed := false
	for {
		select {
		case <-ctx.Done():
			w.publish(context.WithoutCancel(ctx), pub) // best effort: hand over what was seen
			return nil
		case ev, ok := <-fsw.Events:
			if !ok {
				return errors.New("watcher closed")
			}
			w.handle(ev)
		case err, ok := <-fsw.Errors:
			if !ok {
				return errors.New("watcher closed")
			}
			w.handleError(err)
		case <-flush.C:
			armed = false
			w.publish(ctx, pub)
		}
		if !armed && len(w.pending) > 0 {
			flush.Reset(w.opts.Flush)
			armed = true
		}
	}
}

func (w *Watcher) note(s syncer.Scope, r syncer.Reason) {
	if p, ok := w.pending[s]; ok {
		if r != syncer.ReasonChange {
			p.reason = r
			w.pending[s] = p
		}
		return
	}
	w.pending[s] = pendingEvent{reason: r, at: time.Now()}
}

func (w *Watcher) publish(ctx context.Context, pub Publisher) {
	for s, p := range w.pending {
		if err := pub.Publish(ctx, syncer.DirEvent{Scope: s, Reason: p.reason, At: p.at}); err != nil {
			w.log.Warn("publish event; will retry", zap.Error(err), zap.String(syncer.LogScope, s.String()))
			return
		}
		delete(w.pending, s)
	}
}

func (w *Watcher) handleError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.overflows.Add(1)
		w.log.Warn("kernel event queue overflowed; asking for a reconcile", zap.Error(syncer.ErrOverflow))
		w.note(syncer.Scope{Dir: "", Recursive: true}, syncer.ReasonOverflow)
		return
	}
	w.log.Warn("watch error", zap.Error(err))
}

func (w *Watcher) handle(ev fsnotify.Event) {
	rel, ok := syncer.Rel(w.opts.Root, ev.Name)
	if !ok || rel == "" {
		if ok && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
			w.log.Error("source root removed or renamed", zap.String("root", w.opts.Root))
		}
		return
	}
	if ce := w.log.Check(zap.DebugLevel, "fs event"); ce != nil {
		ce.Write(zap.String(syncer.LogDir, rel), zap.String("op", ev.Op.String()))
	}
	if w.excluded(filepath.Base(rel)) {
		return
	}
	// Whatever happened to an entry, its directory's listing changed.
	w.note(syncer.Scope{Dir: syncer.Parent(rel)}, syncer.ReasonChange)
	if ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 && w.watched[rel] {
		// Renamed or removed directory: drop its watches, and its children's,
		// whose paths are stale now. Before any Add that may reuse them.
		w.removeTree(rel)
	}
	if ev.Op&fsnotify.Create != 0 {
		fi, err := os.Lstat(ev.Name)
		if err == nil && fi.IsDir() {
			// Watch first, then sync the whole subtree: entries created
			// before the watches existed are never reported.
			if err := w.addTree(rel); err != nil {
				w.log.Warn("watch new directory", zap.Error(err), zap.String(syncer.LogDir, rel))
			}
			w.note(syncer.Scope{Dir: rel, Recursive: true}, syncer.ReasonNewDir)
		}
	}
}

func (w *Watcher) excluded(name string) bool { return syncer.Excluded(w.opts.Excludes, name) }

// addTree watches dir and every directory below it (not following symlinks,
// skipping excluded names).
func (w *Watcher) addTree(dir string) error {
	abs := syncer.Join(w.opts.Root, dir)
	err := w.fsw.Add(abs)
	w.setupMark(dir) // watched, or failed: either way done before its entries are read
	if err != nil {
		if dir == "" {
			return fmt.Errorf("watch %s: %w", abs, err)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil // gone already; its parent's event covers it
		}
		w.unwatched(dir, err)
		return nil
	}
	if !w.watched[dir] {
		w.watched[dir] = true
		w.watches.Add(1)
		if dir != "" {
			p := syncer.Parent(dir)
			if w.children[p] == nil {
				w.children[p] = map[string]bool{}
			}
			w.children[p][dir] = true
		}
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("read %s: %w", abs, err)
	}
	for _, e := range entries {
		if !e.IsDir() || w.excluded(e.Name()) {
			continue
		}
		child := e.Name()
		if dir != "" {
			child = dir + "/" + e.Name()
		}
		if err := w.addTree(child); err != nil {
			w.log.Warn("watch directory", zap.Error(err), zap.String(syncer.LogDir, child))
		}
	}
	return nil
}

func (w *Watcher) unwatched(dir string, err error) {
	w.failed.Add(1)
	w.mu.Lock()
	w.unwatchd = append(w.unwatchd, dir)
	w.mu.Unlock()
	if errors.Is(err, syscall.ENOSPC) {
		w.log.Error("inotify watch limit reached (fs.inotify.max_user_watches); directory left to reconcile",
			zap.String(syncer.LogDir, dir), zap.Int(syncer.LogWatches, w.Watches()))
	} else {
		w.log.Error("watch directory; left to reconcile", zap.String(syncer.LogDir, dir), zap.Error(err))
	}
	w.note(syncer.Scope{Dir: dir, Recursive: true}, syncer.ReasonOverflow)
}

// removeTree drops the watches of dir and of every watched dir below it.
func (w *Watcher) removeTree(dir string) {
	for child := range w.children[dir] {
		w.removeTree(child)
	}
	delete(w.children, dir)
	if w.watched[dir] {
		delete(w.watched, dir)
		w.watches.Add(-1)
		_ = w.fsw.Remove(syncer.Join(w.opts.Root, dir)) // may be gone already: fine
	}
	if dir != "" {
		if c := w.children[syncer.Parent(dir)]; c != nil {
			delete(c, dir)
		}
	}
}
