package watcher_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/watcher"
)

type rec struct {
	mu  sync.Mutex
	evs []syncer.DirEvent
}

func (r *rec) PublishEvent(_ context.Context, ev syncer.DirEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

// saw reports whether an event for s (or covering it) arrived since mark.
func (r *rec) saw(mark int, s syncer.Scope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.evs[mark:] {
		if ev.Scope.Covers(s) {
			return nil
		}
	}
	return fmt.Errorf("no event covering %s in %v", s, r.evs[mark:])
}

func (r *rec) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

// forBackends runs a watcher test on each backend, as its own subtest.
func forBackends(t *testing.T, fn func(t *testing.T, backend string)) {
	for _, b := range []string{watcher.BackendInotify, watcher.BackendFanotify} {
		t.Run(b, func(t *testing.T) {
			if b == watcher.BackendFanotify {
				requireFanotify(t)
			}
			fn(t, b)
		})
	}
}

// requireFanotify skips a test where fanotify cannot watch the test's
// temporary directories (not root, an old kernel, a filesystem without
// file handles), unless SYNCER_TEST_REQUIRE_TOOLS asks for every test.
func requireFanotify(t *testing.T) {
	t.Helper()
	err := watcher.CheckFanotify(t.TempDir())
	if err == nil {
		return
	}
	if os.Getenv("SYNCER_TEST_REQUIRE_TOOLS") != "" {
		t.Fatalf("fanotify backend: %v", err)
	}
	t.Skipf("fanotify backend: %v", err)
}

func start(t *testing.T, root, backend string, excludes ...string) (*watcher.Watcher, *rec) {
	t.Helper()
	w, err := watcher.New(watcher.Options{Root: root, Backend: backend, Excludes: syncer.MustExcludes(excludes...)})
	if err != nil {
		t.Fatal(err)
	}
	r := &rec{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- w.Run(ctx, r) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	select {
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("watcher not ready")
	}
	return w, r
}

func TestWatcher_Run(t *testing.T) { forBackends(t, testRun) }

func testRun(t *testing.T, backend string) {
	root := t.TempDir()
	testutil.WriteTree(t, root, testutil.Tree{"p/a/f": "x", "p/b/": "", "q/": "", "p/skip.tmp/": ""})
	w, r := start(t, root, backend, "*.tmp")
	if got := w.Backend(); got != backend {
		t.Errorf("Backend() = %q, want %q", got, backend)
	}
	if got, want := w.Watches(), map[string]int{watcher.BackendInotify: 5}[backend]; got != want {
		t.Errorf("Watches() = %d, want %d (inotify: root, p, p/a, p/b, q; excluded not watched; fanotify: none)", got, want)
	}
	wait := func(mark int, s syncer.Scope) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error { return r.saw(mark, s) })
	}
	p := func(rel string) string { return filepath.Join(root, rel) }

	t.Run("FileWrite", func(t *testing.T) {
		m := r.mark()
		if err := os.WriteFile(p("p/a/f"), []byte("y"), 0o644); err != nil {
			t.Fatal(err)
		}
		wait(m, syncer.Scope{Dir: "p/a"})
	})
	t.Run("MkdirPRace", func(t *testing.T) {
		m := r.mark()
		// Created faster than watches can be added: the recursive event covers the gap.
		if err := os.MkdirAll(p("p/n1/n2/n3"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p("p/n1/n2/n3/f"), []byte("z"), 0o644); err != nil {
			t.Fatal(err)
		}
		wait(m, syncer.Scope{Dir: "p/n1", Recursive: true})
		// And the deepest new dir is watched now.
		testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
			m := r.mark()
			if err := os.WriteFile(p("p/n1/n2/n3/g"), []byte("z"), 0o644); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
			return r.saw(m, syncer.Scope{Dir: "p/n1/n2/n3"})
		})
	})
	t.Run("RenameDirThenWrite", func(t *testing.T) {
		if err := os.MkdirAll(p("p/old/sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		m := r.mark()
		if err := os.Rename(p("p/old"), p("q/new")); err != nil {
			t.Fatal(err)
		}
		wait(m, syncer.Scope{Dir: "p"})
		wait(m, syncer.Scope{Dir: "q/new", Recursive: true})
		time.Sleep(50 * time.Millisecond)
		m = r.mark()
		if err := os.WriteFile(p("q/new/sub/f"), []byte("w"), 0o644); err != nil {
			t.Fatal(err)
		}
		// The event names the new path, not the stale one.
		wait(m, syncer.Scope{Dir: "q/new/sub"})
	})
	t.Run("Excluded", func(t *testing.T) {
		m := r.mark()
		if err := os.WriteFile(p("p/skip.tmp/f"), []byte("w"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p("q/sentinel"), []byte("w"), 0o644); err != nil {
			t.Fatal(err)
		}
		wait(m, syncer.Scope{Dir: "q"})
		if r.saw(m, syncer.Scope{Dir: "p/skip.tmp"}) == nil {
			t.Error("event from an excluded directory")
		}
	})
}

// last returns the newest event whose scope covers s.
func (r *rec) last(s syncer.Scope) (syncer.DirEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.evs) - 1; i >= 0; i-- {
		if r.evs[i].Scope.Covers(s) {
			return r.evs[i], true
		}
	}
	return syncer.DirEvent{}, false
}

// TestWatcher_OpenFiles checks that a file still open for writing is
// reported as open, both in an existing directory and in a new one, that
// it does not hold back the directory's other changes, and that its
// closing brings an event that no longer lists it.
func TestWatcher_OpenFiles(t *testing.T) { forBackends(t, testOpenFiles) }

func testOpenFiles(t *testing.T, backend string) {
	root := t.TempDir()
	testutil.WriteTree(t, root, testutil.Tree{"p/a/": ""})
	w, r := start(t, root, backend)

	big, err := os.Create(filepath.Join(root, "p/a/clip.mov"))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	if _, err := big.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	testutil.WriteTree(t, root, testutil.Tree{"p/a/small": "done"})
	// A new directory whose file was created before its watch existed.
	if err := os.Mkdir(filepath.Join(root, "p/new"), 0o755); err != nil {
		t.Fatal(err)
	}
	inNew, err := os.Create(filepath.Join(root, "p/new/render.exr"))
	if err != nil {
		t.Fatal(err)
	}
	defer inNew.Close()

	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		ev, ok := r.last(syncer.Scope{Dir: "p/a"})
		if !ok || len(ev.Open) != 1 || ev.Open[0] != "p/a/clip.mov" {
			return fmt.Errorf("last event on p/a = %+v, want one listing p/a/clip.mov open", ev)
		}
		ev, ok = r.last(syncer.Scope{Dir: "p/new", Recursive: true})
		if !ok || len(ev.Open) != 1 || ev.Open[0] != "p/new/render.exr" {
			return fmt.Errorf("last event on p/new/... = %+v, want one listing p/new/render.exr open", ev)
		}
		return nil
	})
	if n := w.Waiting(); n != 2 {
		t.Errorf("Waiting() = %d, want 2", n)
	}
	// Still being written: no event speaks of the file as closed.
	if _, err := big.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if ev, _ := r.last(syncer.Scope{Dir: "p/a"}); len(ev.Open) != 1 {
		t.Fatalf("while written: last event on p/a = %+v, want clip.mov still open", ev)
	}

	for _, f := range []*os.File{big, inNew} {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []syncer.Scope{{Dir: "p/a"}, {Dir: "p/new"}} {
		testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
			if ev, ok := r.last(s); !ok || len(ev.Open) != 0 {
				return fmt.Errorf("after close: last event on %s = %+v, want one with nothing open", s, ev)
			}
			return nil
		})
	}
	if n := w.Waiting(); n != 0 {
		t.Errorf("Waiting() = %d after close, want 0", n)
	}
}

// TestWatcher_OpenWait checks that a file open for writing longer than
// OpenWait is reported (and so copied) as it is, again every OpenWait while
// it stays open and written, and once more when it is closed.
func TestWatcher_OpenWait(t *testing.T) { forBackends(t, testOpenWait) }

func testOpenWait(t *testing.T, backend string) {
	root := t.TempDir()
	w, err := watcher.New(watcher.Options{Root: root, Backend: backend, OpenWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &rec{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = w.Run(ctx, r) }()
	<-w.Ready()
	f, err := os.Create(filepath.Join(root, "app.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if ev, ok := r.last(syncer.Scope{}); !ok || len(ev.Open) != 1 {
			return fmt.Errorf("last root event = %+v, want app.db open", ev)
		}
		return nil
	})
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if ev, _ := r.last(syncer.Scope{}); len(ev.Open) != 0 || w.Waiting() != 0 {
			return fmt.Errorf("last root event = %+v, waiting %d; want app.db given up on", ev, w.Waiting())
		}
		return nil
	})
	// Written on, still open: reported as it is again and again.
	m := r.mark()
	for range 20 {
		if _, err := f.WriteString("row\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := r.count(m, syncer.Scope{}); n < 2 {
		t.Errorf("%d events for a file written for 1 s while open, want one at least every 300 ms", n)
	}
	if open := w.OpenBelow(syncer.Scope{Recursive: true}); len(open) != 0 {
		t.Errorf("OpenBelow = %v while it is synced as it is", open)
	}
	m = r.mark()
	must(t, f.Close())
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error { return r.saw(m, syncer.Scope{}) })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// count is the number of events for s since mark.
func (r *rec) count(mark int, s syncer.Scope) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.evs[mark:] {
		if ev.Scope == s {
			n++
		}
	}
	return n
}

// lostRec records what the watcher reports lost.
type lostRec struct {
	mu   sync.Mutex
	lost []syncer.Scope
}

func (l *lostRec) add(s syncer.Scope) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lost = append(l.lost, s)
}

func (l *lostRec) has(s syncer.Scope) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lost {
		if x == s {
			return true
		}
	}
	return false
}

// failing is a Publisher that stores nothing.
type failing struct{}

func (failing) PublishEvent(context.Context, syncer.DirEvent) error { return errors.New("no space") }

func runLost(t *testing.T, root, backend string, pub watcher.Publisher) (*watcher.Watcher, *lostRec) {
	t.Helper()
	l := &lostRec{}
	w, err := watcher.New(watcher.Options{Root: root, Backend: backend, OnLost: l.add, CheckRoot: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- w.Run(ctx, pub) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	<-w.Ready()
	return w, l
}

// TestWatcher_RootReplaced checks that a root replaced under the watcher (a
// remount, a directory moved away and made again) is reported lost and
// watched anew: writes in the new tree bring events.
func TestWatcher_RootReplaced(t *testing.T) { forBackends(t, testRootReplaced) }

func testRootReplaced(t *testing.T, backend string) {
	base := t.TempDir()
	root := filepath.Join(base, "src")
	testutil.WriteTree(t, root, testutil.Tree{"p/old": "1"})
	r := &rec{}
	w, l := runLost(t, root, backend, r)
	if err := os.Rename(root, filepath.Join(base, "src.old")); err != nil {
		t.Fatal(err)
	}
	testutil.WriteTree(t, root, testutil.Tree{"p/x": "2"})
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if !l.has(syncer.Scope{Recursive: true}) {
			return errors.New("the replaced root was not reported lost")
		}
		return nil
	})
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if w.Restarts() == 0 || backend == watcher.BackendInotify && w.Watches() != 2 {
			return fmt.Errorf("%d restarts, %d watches, want the new root watched (inotify: it and p)", w.Restarts(), w.Watches())
		}
		return nil
	})
	m := r.mark()
	writeFile(t, filepath.Join(root, "p", "y"), "3")
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error { return r.saw(m, syncer.Scope{Dir: "p"}) })
}

// TestWatcher_EventNotStored checks that an event the publisher could not
// store is reported as its project lost, not retried forever or dropped.
func TestWatcher_EventNotStored(t *testing.T) { forBackends(t, testEventNotStored) }

func testEventNotStored(t *testing.T, backend string) {
	root := t.TempDir()
	testutil.WriteTree(t, root, testutil.Tree{"proj/a/": ""})
	w, l := runLost(t, root, backend, failing{})
	writeFile(t, filepath.Join(root, "proj", "a", "f"), "x")
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if !l.has(syncer.Scope{Dir: "proj", Recursive: true}) {
			return errors.New("the project of an unstored event was not reported lost")
		}
		return nil
	})
	if n := w.Published()[syncer.ReasonChange]; n != 0 {
		t.Errorf("Published = %d, want 0: nothing was stored", n)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestWatcher_Moves checks that a directory renamed within the tree is
// reported as a move on both scopes it changes (the moved directory and
// the parent it left), chains and swaps in order, and that a directory
// moved out of the tree or in from outside is a plain change.
func TestWatcher_Moves(t *testing.T) { forBackends(t, testMoves) }

func testMoves(t *testing.T, backend string) {
	root, outside := t.TempDir(), t.TempDir()
	testutil.WriteTree(t, root, testutil.Tree{"p/a/sub/f": "x", "p/b/g": "y", "q/": "", "p/gone/h": "z"})
	_, r := start(t, root, backend)
	p := func(rel string) string { return filepath.Join(root, rel) }
	mv := func(from, to string) {
		t.Helper()
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	// moves gathers, in order, the moves of the events since mark on s.
	moves := func(mark int, s syncer.Scope) []syncer.Move {
		r.mu.Lock()
		defer r.mu.Unlock()
		var out []syncer.Move
		for _, ev := range r.evs[mark:] {
			if ev.Scope == s {
				out = append(out, ev.Moves...)
			}
		}
		return out
	}
	want := func(mark int, s syncer.Scope, want ...[2]string) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
			got := moves(mark, s)
			if len(got) != len(want) {
				return fmt.Errorf("moves on %s = %v, want %v", s, got, want)
			}
			for i, m := range got {
				if m.From != want[i][0] || m.To != want[i][1] || m.Ino == 0 {
					return fmt.Errorf("moves on %s = %v, want %v", s, got, want)
				}
			}
			return nil
		})
	}

	m := r.mark()
	mv(p("p/a"), p("q/a2")) // across projects
	want(m, syncer.Scope{Dir: "q/a2", Recursive: true}, [2]string{"p/a", "q/a2"})
	want(m, syncer.Scope{Dir: "p"}, [2]string{"p/a", "q/a2"})

	// A chain, then a swap through a temporary name, all at once: each
	// directory's renames make one move, from its first name to its last
	// (on the moved directory's scope and its first parent's), whatever
	// the watcher saw of the names between.
	m = r.mark()
	mv(p("q/a2"), p("q/a3"))
	mv(p("q/a3"), p("q/a4"))
	mv(p("q/a4"), p("q/tmp"))
	mv(p("p/b"), p("q/a4"))
	mv(p("q/tmp"), p("p/b"))
	last := func(s syncer.Scope, from, to string) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
			got := moves(m, s)
			for _, mv := range got {
				if mv.From == from && mv.To == to {
					return nil
				}
			}
			return fmt.Errorf("moves on %s = %v, want one %s → %s", s, got, from, to)
		})
	}
	last(syncer.Scope{Dir: "p/b", Recursive: true}, "q/a2", "p/b")
	last(syncer.Scope{Dir: "q"}, "q/a2", "p/b")
	last(syncer.Scope{Dir: "q/a4", Recursive: true}, "p/b", "q/a4")
	last(syncer.Scope{Dir: "p"}, "p/b", "q/a4")

	// Out of the tree and in from outside: no moves, the usual events.
	m = r.mark()
	mv(p("p/gone"), filepath.Join(outside, "gone"))
	testutil.WriteTree(t, outside, testutil.Tree{"in/f": "w"})
	mv(filepath.Join(outside, "in"), p("p/in"))
	testutil.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error { return r.saw(m, syncer.Scope{Dir: "p/in", Recursive: true}) })
	if got := moves(m, syncer.Scope{Dir: "p/in", Recursive: true}); len(got) > 0 {
		t.Errorf("a directory moved in from outside came as moves %v", got)
	}
	if got := moves(m, syncer.Scope{Dir: "p"}); len(got) > 0 {
		t.Errorf("a directory moved out came as moves %v", got)
	}
}
