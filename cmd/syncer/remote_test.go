package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/testutil"
)

// TestRun_RemoteDest runs the daemon against a backup behind a real rsync
// daemon and a real sshd on loopback: the startup reconcile, watched
// changes with a delete and renames, the trash and its pruning, and the
// deletion guard all hold as on a local backup.
func TestRun_RemoteDest(t *testing.T) {
	for _, kind := range []string{"rsync-daemon", "ssh"} {
		t.Run(kind, func(t *testing.T) {
			cfg := testConfig(t)
			backup := cfg.Dest
			switch kind {
			case "rsync-daemon":
				cfg.Dest, cfg.RsyncPasswordFile = testutil.RsyncDaemon(t, backup)
			case "ssh":
				s := testutil.StartSSHD(t)
				cfg.Dest, cfg.SSHPort, cfg.SSHIdentity, cfg.SSHKnownHosts = "root@127.0.0.1:"+backup, s.Port, s.Identity, s.KnownHosts
			}
			old := filepath.Join(backup, cfg.Trash, "2020-01-01")
			testutil.WriteTree(t, old, testutil.Tree{"p/x": "old"})
			testutil.WriteTree(t, backup, testutil.Tree{"gone/stale": "s"})
			testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/a/f": "1", "p/a/g": "2", "p/b/h": "3", "q/x y": "4"})
			equal := func() {
				t.Helper()
				testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
					if d := testutil.DiffTrees(cfg.Source, backup, cfg.Trash); d != "" {
						return errors.New(d)
					}
					return nil
				})
			}
			h := start(t, cfg)
			equal() // the startup reconcile, planned without reading the backup
			testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
				if _, err := os.Stat(old); err == nil {
					return errors.New("trash older than the retention still there")
				}
				return nil
			})

			must(t, os.Remove(h.path("p/a/g")))
			must(t, os.Rename(h.path("p/a/f"), h.path("p/a/f2")))
			must(t, os.Rename(h.path("p/b/h"), h.path("q/h")))
			must(t, os.MkdirAll(h.path("q/new/deep"), 0o755))
			must(t, os.WriteFile(h.path("q/new/deep/n"), []byte("n"), 0o644))
			equal()
			if b, err := trashed(backup, cfg.Trash, "p/a/g"); err != nil || string(b) != "2" {
				t.Errorf("deleted file not in the remote trash: %q, %v", b, err)
			}
			// Its versions listed and restored through rsync.
			flags := []string{"--source", cfg.Source, "--dest", cfg.Dest, "--state-dir", t.TempDir(), "--rsync-path", cfg.RsyncPath,
				"--ssh-port", fmt.Sprint(cfg.SSHPort), "--ssh-identity", cfg.SSHIdentity, "--ssh-known-hosts", cfg.SSHKnownHosts,
				"--rsync-password-file", cfg.RsyncPasswordFile}
			if code, out, errs := cli(t, append([]string{"versions", "p/a/g", "--json"}, flags...)...); code != 0 || !strings.Contains(out, `"kind": "deleted"`) {
				t.Errorf("versions on a remote backup: exit %d, %s %s", code, out, errs)
			}
			to := t.TempDir()
			if code, _, errs := cli(t, append([]string{"restore", "p/a/g", "--to", to}, flags...)...); code != 0 {
				t.Errorf("restore from a remote backup: exit %d: %s", code, errs)
			} else if b, err := os.ReadFile(filepath.Join(to, "g")); err != nil || string(b) != "2" {
				t.Errorf("restored from a remote backup: %q, %v", b, err)
			}

			// The source emptied: the guard, reading the remote backup, holds.
			before := files(t, backup)
			for _, p := range []string{"p", "q"} {
				must(t, os.RemoveAll(h.path(p)))
			}
			testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
				if h.d.guard.Paused() == "" {
					return errors.New("not paused")
				}
				return nil
			})
			time.Sleep(time.Second)
			if d := unchanged(t, before, backup); d != "" {
				t.Fatalf("remote backup changed while the source was empty:\n%s", d)
			}
		})
	}
}

// TestRun_RemoteDestDown: a backup host that does not answer stops a worker
// at start with one line and a non-zero exit.
func TestRun_RemoteDestDown(t *testing.T) {
	cfg := testConfig(t)
	port := testutil.FreePort(t)
	for _, dest := range []string{fmt.Sprintf("rsync://127.0.0.1:%d/backup", port), "root@127.0.0.1:/backup"} {
		args := []string{"run", "--source", cfg.Source, "--dest", dest, "--state-dir", t.TempDir(), "--listen", "", "--log-level", "error"}
		if !strings.HasPrefix(dest, "rsync://") {
			args = append(args, "--ssh-port", fmt.Sprint(port))
		}
		var stderr bytes.Buffer
		code := Main(t.Context(), args, &bytes.Buffer{}, &stderr)
		if code == 0 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "refused") {
			t.Errorf("%s: exit %d, stderr %q; want non-zero and one line saying the connection was refused", dest, code, stderr.String())
		}
	}
}
