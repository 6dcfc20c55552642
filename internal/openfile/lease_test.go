package openfile_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/openfile"
)

func TestWriting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "clip")
	w, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if open, known := openfile.Writing(p); !open || !known {
		t.Errorf("while open for writing: open=%v known=%v, want true true", open, known)
	}
	r, err := os.Open(p) // a reader does not count
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if open, known := openfile.Writing(p); open || !known {
		t.Errorf("closed: open=%v known=%v, want false true", open, known)
	}
	// The probe gave its lease back: a writer opens at once.
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			err = f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a writer blocked after the probe")
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, known := openfile.Writing(fifo); known {
		t.Error("a FIFO was probed")
	}
	if _, known := openfile.Writing(filepath.Join(dir, "gone")); known {
		t.Error("a missing file was probed")
	}
	if born, ok := openfile.Born(p); ok && time.Since(born) > time.Minute {
		t.Errorf("Born() = %v, want just now", born)
	}
}
