package main

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/testutil"
)

// TestRun_Moves renames directories in every way a production tree sees
// and checks that each converges with a rename on the backup: under 1 MiB
// written and the trash unchanged for a pure rename of unchanged
// contents (real daemon, real inotify, real rsync and copier).
func TestRun_Moves(t *testing.T) {
	cfg := testConfig(t)
	big := int64(1 << 30)
	if testing.Short() {
		big = 64 << 20
	}
	outside := t.TempDir()
	fill(t, filepath.Join(cfg.Source, "p", "shots"), big, 8)
	fill(t, filepath.Join(cfg.Source, "q", "takes"), 64<<20, 4)
	fill(t, filepath.Join(cfg.Source, "r", "x"), 8<<20, 2)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/notes.txt": "new notes", "p/old.txt": "old notes",
		"p/shots/sub/deep/a.txt": "a", "q/takes/sub/b.txt": "b"})
	h := start(t, cfg)
	h.converge(t)

	// step makes change, waits until the backup equals the source, and
	// checks what was written, moved and put in the trash meanwhile.
	step := func(name string, change func(), pure bool, moves int, trashOK int64) {
		t.Run(name, func(t *testing.T) {
			bytes, moved, trash := h.metric(t, "syncer_transferred_bytes_total"), h.metric(t, "syncer_moved_dirs_total"), trashBytes(t, h)
			change()
			h.converge(t)
			h.idle(t, moved+float64(moves))
			wrote, did, grew := h.metric(t, "syncer_transferred_bytes_total")-bytes, h.metric(t, "syncer_moved_dirs_total")-moved, trashBytes(t, h)-trash
			t.Logf("%s: %.0f bytes written, %.0f directories moved, trash grew %d bytes", name, wrote, did, grew)
			if !pure {
				return
			}
			if wrote >= 1<<20 {
				t.Errorf("%.0f bytes written to the backup, want under 1 MiB", wrote)
			}
			if grew > trashOK {
				t.Errorf("the trash grew by %d bytes, want at most %d", grew, trashOK)
			}
			if did < float64(moves) {
				t.Errorf("%.0f directories moved on the backup, want %d", did, moves)
			}
		})
	}
	mv := func(from, to string) {
		t.Helper()
		must(t, os.Rename(from, to))
	}
	src := func(rel string) string { return filepath.Join(cfg.Source, rel) }

	step("WithinProject", func() { mv(src("p/shots"), src("p/shots_v2")) }, true, 1, 0)
	step("AcrossProjects", func() { mv(src("p/shots_v2"), src("q/shots")) }, true, 1, 0)
	step("Twice", func() { mv(src("q/shots"), src("q/s2")); mv(src("q/s2"), src("q/s3")) }, true, 1, 0)
	step("Swap", func() {
		mv(src("q/takes"), src("q/tmp"))
		mv(src("q/s3"), src("q/takes"))
		mv(src("q/tmp"), src("q/s3"))
	}, true, 2, 0)
	step("IntoOtherProjectDeep", func() {
		must(t, os.MkdirAll(src("r/_Delivered/2026"), 0o755))
		mv(src("q/s3"), src("r/_Delivered/2026/s3"))
	}, true, 1, 0)
	step("RenameThenWrite", func() {
		mv(src("q/takes"), src("q/takes2"))
		must(t, os.WriteFile(src("q/takes2/sub/new.txt"), []byte("written at once"), 0o644))
		must(t, os.MkdirAll(src("q/takes2/newdir"), 0o755))
		must(t, os.WriteFile(src("q/takes2/newdir/c.txt"), []byte("c"), 0o644))
	}, true, 1, 16) // a file caught half-written may be copied twice, the first copy kept as a version
	step("FileOverFile", func() { mv(src("p/notes.txt"), src("p/old.txt")) }, false, 0, 0)
	step("OutAndIn", func() {
		mv(src("r/x"), filepath.Join(outside, "x"))
		testutil.WriteTree(t, outside, testutil.Tree{"in/f": "from outside"})
		mv(filepath.Join(outside, "in"), src("r/in"))
	}, false, 0, 0)
	step("WhileOldPathSyncs", func() {
		// A large new file in the directory, then the directory renamed
		// while its sync copies it.
		fill(t, src("q/takes2/render"), 64<<20, 1)
		mv(src("q/takes2"), src("q/takes3"))
	}, false, 0, 0)
}

// fill writes n files of size/n bytes of random data below dir.
func fill(t *testing.T, dir string, size int64, n int) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	block := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(uint64(size), uint64(n)))
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	for i := range n {
		f, err := os.Create(filepath.Join(dir, "clip"+string(rune('0'+i))+".mov"))
		must(t, err)
		for w := int64(0); w < size/int64(n); w += int64(len(block)) {
			block[0] = byte(w >> 20) // each MiB differs
			_, err = f.Write(block)
			must(t, err)
		}
		must(t, f.Close())
	}
}

// trashBytes sums the regular files in the backup's trash.
func trashBytes(t *testing.T, h *harness) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(h.cfg.Dest, h.cfg.TrashDir()), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && filepath.Ext(d.Name()) != ".versions" {
				n += fi.Size()
			}
		}
		return nil
	})
	must(t, err)
	return n
}

// idle waits until the queue holds no job and at least moves directories
// were moved: the runs that made the backup equal have reported.
func (h *harness) idle(t *testing.T, moves float64) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, 25*time.Millisecond, func() error {
		q := h.d.status(t.Context()).Queue
		if n := h.metric(t, "syncer_moved_dirs_total"); n < moves {
			return fmt.Errorf("%.0f directories moved, want %.0f", n, moves)
		}
		if q.Pending+uint64(q.InFlight) > 0 {
			return fmt.Errorf("queue not idle: %+v", q)
		}
		return nil
	})
}

// TestRun_MovesOffline makes the same renames while the daemon is down:
// the startup reconcile recognises each moved directory by the inode the
// index recorded and moves it, not copies it.
func TestRun_MovesOffline(t *testing.T) {
	cfg := testConfig(t)
	big := int64(512 << 20)
	if testing.Short() {
		big = 64 << 20
	}
	fill(t, filepath.Join(cfg.Source, "p", "shots"), big, 8)
	fill(t, filepath.Join(cfg.Source, "q", "takes"), 32<<20, 2)
	fill(t, filepath.Join(cfg.Source, "q", "a"), 16<<20, 2)
	fill(t, filepath.Join(cfg.Source, "q", "b"), 16<<20, 3)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/shots/sub/deep/x.txt": "x", "r/keep": "k"})
	h := start(t, cfg)
	h.converge(t)
	h.idle(t, 0)
	h.stop(t)
	trash := trashBytes(t, h)

	src := func(rel string) string { return filepath.Join(cfg.Source, rel) }
	for _, mv := range [][2]string{{"p/shots", "p/shots_v2"}, {"q/takes", "r/takes"}, {"q/a", "q/tmp"}, {"q/b", "q/a"}, {"q/tmp", "q/b"}} {
		must(t, os.Rename(src(mv[0]), src(mv[1])))
	}
	h = start(t, cfg)
	h.converge(t)
	h.idle(t, 4)
	wrote, moved, grew := h.metric(t, "syncer_transferred_bytes_total"), h.metric(t, "syncer_moved_dirs_total"), trashBytes(t, h)-trash
	t.Logf("startup reconcile: %.0f bytes written, %.0f directories moved, trash grew %d bytes", wrote, moved, grew)
	if wrote >= 1<<20 || grew != 0 {
		t.Errorf("%.0f bytes written, trash grew %d bytes; want under 1 MiB and 0", wrote, grew)
	}
}
