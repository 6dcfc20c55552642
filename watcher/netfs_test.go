package watcher_test

import (
	"testing"

	"github.com/syncer/syncer/watcher"
)

// TestNetworkFS: a local temp dir and /proc are not network filesystems.
func TestNetworkFS(t *testing.T) {
	for _, p := range []string{t.TempDir(), "/proc", "/nonexistent"} {
		if fs := watcher.NetworkFS(p); fs != "" {
			t.Errorf("NetworkFS(%s) = %q, want \"\"", p, fs)
		}
	}
}
