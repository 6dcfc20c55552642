package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncer/syncer/internal/testutil"
)

// TestDeploy_Deb builds the Debian package (make deb), unpacks it into a
// fresh root with dpkg, and checks what a sysadmin gets: the binary says
// its version, the unit verifies, the config is a conffile, and the
// completions, man pages, alert rules and dashboard are in place.
func TestDeploy_Deb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package with nfpm: skipped with -short")
	}
	dpkg := testutil.RequireTool(t, "dpkg")
	sa := testutil.RequireTool(t, "systemd-analyze")
	top := filepath.Join("..", "..")
	if out, err := exec.Command("make", "-C", top, "deb").CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(top, "dist", "syncer_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v, want one package", debs)
	}
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644))
	if out, err := exec.Command(dpkg, "--root="+root, "--force-depends", "--unpack", debs[0]).CombinedOutput(); err != nil {
		t.Fatalf("dpkg --unpack: %v\n%s", err, out)
	}
	bin := filepath.Join(root, "usr/bin/syncer")
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "syncer ") {
		t.Errorf("syncer --version: %v, %q", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/syncer.service"))
	must(t, err)
	if !bytes.Contains(unit, []byte("Type=notify")) || !bytes.Contains(unit, []byte("ExecReload=")) || !bytes.Contains(unit, []byte("WatchdogSec=")) {
		t.Errorf("the packaged unit is not Type=notify with reload and watchdog:\n%s", unit)
	}
	// verify wants ExecStart's binary at its path: the unpacked one.
	u := filepath.Join(t.TempDir(), "syncer.service")
	must(t, os.WriteFile(u, bytes.ReplaceAll(unit, []byte("/usr/bin/syncer"), []byte(bin)), 0o644))
	if out, err := exec.Command(sa, "verify", u).CombinedOutput(); err != nil || bytes.Contains(out, []byte("syncer.service")) {
		t.Errorf("systemd-analyze verify of the packaged unit: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/info/syncer.conffiles")); err != nil || strings.TrimSpace(string(b)) != "/etc/syncer/syncer.yaml" {
		t.Errorf("conffiles %q, %v; want /etc/syncer/syncer.yaml", b, err)
	}
	// Unpacked, not configured (that would run postinst inside the root):
	// a conffile waits under its .dpkg-new name.
	conf := filepath.Join(root, "etc/syncer/syncer.yaml.dpkg-new")
	for _, f := range []string{"etc/syncer/syncer.yaml.dpkg-new", "usr/share/bash-completion/completions/syncer",
		"usr/share/zsh/vendor-completions/_syncer", "usr/share/fish/vendor_completions.d/syncer.fish",
		"usr/share/syncer/alerts.yml", "usr/share/syncer/alerts_test.yml", "usr/share/syncer/grafana-dashboard.json"} {
		if st, err := os.Stat(filepath.Join(root, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, page := range []string{"syncer", "syncer-run", "syncer-reconcile", "syncer-status", "syncer-retry", "syncer-diagnose"} {
		f, err := os.Open(filepath.Join(root, "usr/share/man/man1", page+".1.gz"))
		if err != nil {
			t.Errorf("man page %s: %v", page, err)
			continue
		}
		zr, err := gzip.NewReader(f)
		var b []byte
		if err == nil {
			b, err = io.ReadAll(zr)
		}
		f.Close()
		if err != nil || !bytes.HasPrefix(b, []byte(".nh\n.TH")) && !bytes.Contains(b, []byte(".TH \"SYNCER\"")) {
			t.Errorf("man page %s is not a man page: %v, %.60q", page, err, b)
		}
	}
	// The bash completion completes subcommands, as the shell would ask.
	if out, err := exec.Command(bin, "__complete", "rec").CombinedOutput(); err != nil || !strings.Contains(string(out), "reconcile") {
		t.Errorf("completion of 'rec': %v, %q", err, out)
	}
	// The packaged config reads: the paths it names are this host's to make.
	out, _ = exec.Command(bin, "reconcile", "--dry-run", "--config", conf).CombinedOutput()
	if !strings.Contains(string(out), "/data/prod") || strings.Count(string(out), "\n") != 1 {
		t.Errorf("the packaged config: %q; want one line about the trees it names", out)
	}
}
