package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool returns the path of an external tool a test needs (promtool,
// systemd-analyze, ...). When it is missing the test is skipped, unless
// SYNCER_TEST_REQUIRE_TOOLS=1 (set by CI, which installs them), which fails it.
func RequireTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("SYNCER_TEST_REQUIRE_TOOLS") == "1" {
		tb.Fatalf("%s is required (SYNCER_TEST_REQUIRE_TOOLS=1) but missing: %v", name, err)
	}
	tb.Skipf("%s not installed: %v", name, err)
	return ""
}

// RequireRoot skips a test that mounts filesystems or faults them unless
// it runs as root; with SYNCER_TEST_REQUIRE_TOOLS=1 it fails it instead.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("SYNCER_TEST_REQUIRE_TOOLS") == "1" {
		tb.Fatal("fault tests need root (SYNCER_TEST_REQUIRE_TOOLS=1)")
	}
	tb.Skip("fault tests need root to mount filesystems")
}
