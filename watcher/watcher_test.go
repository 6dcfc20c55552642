package watcher_test

import (
	"context"
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

func (r *rec) Publish(_ context.Context, ev syncer.DirEvent) error {
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

func start(t *testing.T, root string, excludes ...string) (*watcher.Watcher, *rec) {
	t.Helper()
	w, err := watcher.New(watcher.Options{Root: root, Excludes: excludes})
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

func TestWatcher_Run(t *testing.T) {
	root := t.TempDir()
	testutil.WriteTree(t, root, testutil.Tree{"p/a/f": "x", "p/b/": "", "q/": "", "p/skip.tmp/": ""})
	w, r := start(t, root, "*.tmp")
	if got := w.Watches(); got != 5 {
		t.Errorf("Watches() = %d, want 5 (root, p, p/a, p/b, q; excluded not watched)", got)
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
