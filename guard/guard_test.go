package guard_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/testutil"
)

func TestGuard_Check(t *testing.T) {
	tests := []struct {
		name     string
		src, dst testutil.Tree
		opts     guard.Options
		trip     string // substring of the reason; "" means healthy
	}{
		{"healthy", testutil.Tree{"p/f": "1"}, testutil.Tree{"p/f": "1"}, guard.Options{}, ""},
		{"both empty", nil, nil, guard.Options{}, ""},
		{"empty source, full backup", nil, testutil.Tree{"p/f": "1"}, guard.Options{}, "empty"},
		{"empty source, only trash in backup", nil, testutil.Tree{".trash/2026-01-01/f": "1"}, guard.Options{IgnoreDest: []string{".trash"}}, ""},
		{"marker present", testutil.Tree{".mark": "", "p/f": "1"}, nil, guard.Options{Marker: ".mark"}, ""},
		{"marker missing", testutil.Tree{"p/f": "1"}, nil, guard.Options{Marker: ".mark"}, "marker"},
		{"not a mount point", testutil.Tree{"p/f": "1"}, nil, guard.Options{RequireMount: true}, "mount point"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			testutil.WriteTree(t, src, tt.src)
			testutil.WriteTree(t, dst, tt.dst)
			tt.opts.Source, tt.opts.Dest = src, dst
			err := guard.New(tt.opts).Check()
			switch {
			case tt.trip == "" && err != nil:
				t.Errorf("Check() = %v, want healthy", err)
			case tt.trip != "" && (err == nil || !strings.Contains(err.Error(), tt.trip) || !errors.Is(err, syncer.ErrPaused)):
				t.Errorf("Check() = %v, want a trip (ErrPaused) mentioning %q", err, tt.trip)
			}
		})
	}
	t.Run("source gone", func(t *testing.T) {
		dir := t.TempDir()
		err := guard.New(guard.Options{Source: filepath.Join(dir, "gone"), Dest: dir}).Check()
		if !errors.Is(err, syncer.ErrPaused) {
			t.Errorf("Check() = %v, want ErrPaused", err)
		}
	})
	t.Run("source is a file", func(t *testing.T) {
		dir := t.TempDir()
		f := filepath.Join(dir, "f")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := guard.New(guard.Options{Source: f, Dest: dir}).Check(); !errors.Is(err, syncer.ErrPaused) {
			t.Errorf("Check() = %v, want ErrPaused", err)
		}
	})
}

func TestIsMountPoint(t *testing.T) {
	if ok, err := guard.IsMountPoint("/"); err != nil || !ok {
		t.Errorf("IsMountPoint(/) = %v, %v; want true", ok, err)
	}
	if ok, err := guard.IsMountPoint(t.TempDir()); err != nil || ok {
		t.Errorf("IsMountPoint(tempdir) = %v, %v; want false", ok, err)
	}
}
