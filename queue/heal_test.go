package queue_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/queue"
)

// TestConnect_HealsDamagedStore: each kind of damage to the embedded store
// is moved aside with an error line naming where, and the queue is usable
// again within seconds.
func TestConnect_HealsDamagedStore(t *testing.T) {
	if testing.Short() {
		t.Skip("opens damaged stores: skipped with -short")
	}
	streams := filepath.Join("nats", "jetstream", "$G", "streams")
	garble := func(p string) error {
		b := make([]byte, 256)
		_, _ = rand.Read(b)
		return os.WriteFile(p, b, 0o600)
	}
	for _, tt := range []struct {
		name   string
		named  string // what a log line must name; "" when nothing is left to name
		damage func(state string) error
	}{
		{"truncated block file", queue.JobsStream, func(state string) error {
			p := filepath.Join(state, streams, queue.JobsStream, "msgs", "1.blk")
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, fi.Size()/2)
		}},
		{"garbled meta.inf", queue.JobsStream, func(state string) error {
			return garble(filepath.Join(state, streams, queue.JobsStream, "meta.inf"))
		}},
		{"random bytes in a consumer file", queue.EventsConsumer, func(state string) error {
			return garble(filepath.Join(state, streams, queue.EventsStream, "obs", queue.EventsConsumer, "o.dat"))
		}},
		{"deleted stream directory", "", func(state string) error {
			return os.RemoveAll(filepath.Join(state, streams, queue.EventsStream))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			state := t.TempDir()
			q, err := queue.Connect(t.Context(), queue.Options{StateDir: state})
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range []string{"p/a", "p/b", "q"} {
				if err := q.PublishJob(t.Context(), syncer.Job{ID: d, Scope: syncer.Scope{Dir: d}}); err != nil {
					t.Fatal(err)
				}
				if err := q.PublishEvent(t.Context(), syncer.DirEvent{Scope: syncer.Scope{Dir: d}, Reason: syncer.ReasonChange, At: time.Now()}); err != nil {
					t.Fatal(i, err)
				}
			}
			q.Close()
			if err := tt.damage(state); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.WarnLevel)
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			q, err = queue.Connect(ctx, queue.Options{StateDir: state, Logger: zap.New(core)})
			took := time.Since(t0)
			if err != nil {
				t.Fatalf("reopen after damage: %v (after %v)", err, took)
			}
			defer q.Close()
			if took > 10*time.Second {
				t.Errorf("reopened after %v, want within 10 s", took)
			}
			moved := ""
			for _, e := range logs.All() {
				if v, ok := e.ContextMap()["moved_to"].(string); ok {
					moved = v
				}
			}
			t.Logf("%s: reopened in %v; moved aside: %q", tt.name, took.Round(time.Millisecond), moved)
			named := false
			for _, e := range logs.All() {
				t.Logf("  %s %s %v", e.Level, e.Message, e.ContextMap())
				named = named || strings.Contains(e.Message, tt.named) || strings.Contains(fmt.Sprint(e.ContextMap()), tt.named)
			}
			if tt.named != "" && !named {
				t.Errorf("no log line names %s", tt.named)
			}
			if moved != "" {
				if _, err := os.Stat(moved); err != nil || !strings.Contains(moved, "damaged-") {
					t.Errorf("moved aside to %q: %v", moved, err)
				}
			}
			// Usable: a job goes in and comes out.
			if err := q.PublishJob(t.Context(), syncer.Job{ID: "after", Scope: syncer.Scope{Dir: "r"}}); err != nil {
				t.Fatal(err)
			}
			nctx, ncancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer ncancel()
			for {
				d, err := q.Jobs().Next(nctx)
				if err != nil {
					t.Fatalf("no job after healing: %v", err)
				}
				_ = d.Ack()
				if d.Job.ID == "after" {
					break
				}
			}
		})
	}
}

// TestConnect_SmallStateFilesystem: on a state filesystem smaller than the
// EVENTS stream's default cap, the queue still opens, with a cap that fits.
func TestConnect_SmallStateFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	state := t.TempDir()
	if err := syscall.Mount("tmpfs", state, "tmpfs", 0, "size=300m"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Unmount(state, syscall.MNT_DETACH) }()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	q, err := queue.Connect(ctx, queue.Options{StateDir: state})
	if err != nil {
		t.Fatalf("a 300 MiB state filesystem: %v", err)
	}
	defer q.Close()
	if err := q.PublishEvent(t.Context(), syncer.DirEvent{Scope: syncer.Scope{Dir: "p"}, Reason: syncer.ReasonChange, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
}
