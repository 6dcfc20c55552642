package rsync_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/rsync"
)

func TestParseLocation(t *testing.T) {
	for _, tt := range []struct {
		in           string
		host, path   string
		daemon, fail bool
	}{
		{in: "/data/prod_backup", path: "/data/prod_backup"},
		{in: "./a:b", path: "./a:b"},
		{in: "/mnt/x:y", path: "/mnt/x:y"},
		{in: "nas2:/data/prod_backup", host: "nas2", path: "/data/prod_backup"},
		{in: "backup@nas2:/srv/b", host: "backup@nas2", path: "/srv/b"},
		{in: "nas2::prod/sub", host: "nas2", path: "prod/sub", daemon: true},
		{in: "rsync://u@nas2:8730/prod/sub", host: "u@nas2:8730", path: "prod/sub", daemon: true},
		{in: "rsync://nas2/", fail: true},
		{in: ":/x", fail: true},
		{in: "u@:/x", fail: true},
	} {
		l, err := rsync.ParseLocation(tt.in)
		if (err != nil) != tt.fail {
			t.Errorf("ParseLocation(%q) error = %v, want failure %v", tt.in, err, tt.fail)
			continue
		}
		if !tt.fail && (l.Host != tt.host || l.Path != tt.path || l.Daemon != tt.daemon || l.Remote() != (tt.host != "")) {
			t.Errorf("ParseLocation(%q) = %+v", tt.in, l)
		}
	}
}

func TestSSH_Command(t *testing.T) {
	got := rsync.SSH{Identity: "/etc/syncer/id key", Port: 2222, KnownHosts: "/etc/syncer/known_hosts"}.Command()
	for _, want := range []string{"-o BatchMode=yes", "-p 2222", "-i '/etc/syncer/id key'", "StrictHostKeyChecking=yes", "UserKnownHostsFile=/etc/syncer/known_hosts"} {
		if !strings.Contains(got, want) {
			t.Errorf("Command() = %q, want it to contain %q", got, want)
		}
	}
}

// TestRunner_Remote syncs to a real rsync daemon and a real sshd on
// loopback: new files, a delete, a rename, the trash, listing, pruning.
func TestRunner_Remote(t *testing.T) {
	testutil.RequireRsync(t)
	for _, kind := range []string{"daemon", "ssh"} {
		t.Run(kind, func(t *testing.T) {
			src, backup := t.TempDir(), t.TempDir()
			opts := rsync.Options{Source: src, Trash: ".syncer-trash", MaxDelete: 100,
				Now: func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }}
			if kind == "daemon" {
				opts.Dest, opts.PasswordFile = testutil.RsyncDaemon(t, backup)
			} else {
				s := testutil.StartSSHD(t)
				opts.Dest = "root@127.0.0.1:" + backup
				opts.SSH = rsync.SSH{Port: s.Port, Identity: s.Identity, KnownHosts: s.KnownHosts}
			}
			r, err := rsync.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			testutil.WriteTree(t, src, testutil.Tree{"p/a/f": "1", "p/a/g": "2", "p/b/h": "3", "q/x y": "4", "p/link": "-> a/f"})
			if _, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "", Recursive: true}}, syncer.Hints{}); err != nil {
				t.Fatal(err)
			}
			if d := testutil.DiffTrees(src, backup, ".syncer-trash"); d != "" {
				t.Fatal(d)
			}
			// A delete and a rename within a directory and across directories.
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.Remove(filepath.Join(src, "p/a/g")))
			must(os.Rename(filepath.Join(src, "p/a/f"), filepath.Join(src, "p/a/f2")))
			must(os.Rename(filepath.Join(src, "p/b/h"), filepath.Join(src, "q/h")))
			st, err := r.Sync(t.Context(), []syncer.Scope{{Dir: "p/a"}, {Dir: "p/b"}, {Dir: "q"}}, syncer.Hints{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Deleted != 3 {
				t.Errorf("deleted %d, want 3", st.Deleted)
			}
			if d := testutil.DiffTrees(src, backup, ".syncer-trash"); d != "" {
				t.Fatal(d)
			}
			if b, err := os.ReadFile(filepath.Join(backup, ".syncer-trash/2026-11-22T120000.000000000Z/p/a/g")); err != nil || string(b) != "2" {
				t.Errorf("deleted file not in the trash: %q, %v", b, err)
			}

			names, err := r.List(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(names)
			if want := []string{".syncer-trash", "p", "q"}; !slices.Equal(names, want) {
				t.Errorf("List(root) = %q, want %q", names, want)
			}
			if names, err := r.List(t.Context(), "missing"); err != nil || len(names) != 0 {
				t.Errorf("List(missing) = %q, %v; want empty", names, err)
			}
			must(os.MkdirAll(filepath.Join(backup, ".syncer-trash/2026-01-01/p"), 0o755))
			must(os.WriteFile(filepath.Join(backup, ".syncer-trash/2026-01-01/p/old"), nil, 0o644))
			must(r.RemoveAll(t.Context(), ".syncer-trash", []string{"2026-01-01"}))
			if names, _ := r.List(t.Context(), ".syncer-trash"); !slices.Equal(names, []string{"2026-11-22T120000.000000000Z"}) {
				t.Errorf("trash after RemoveAll = %q, want only the run's stamp", names)
			}
			if d := testutil.DiffTrees(src, backup, ".syncer-trash"); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// TestRunner_RemoteDown: a backup host that does not answer is a
// transient failure (retried), and Reachable says so in one line.
func TestRunner_RemoteDown(t *testing.T) {
	testutil.RequireRsync(t)
	src := t.TempDir()
	testutil.WriteTree(t, src, testutil.Tree{"p/f": "1"})
	port := testutil.FreePort(t)
	for _, dest := range []string{fmt.Sprintf("rsync://127.0.0.1:%d/backup", port), "root@127.0.0.1:/backup"} {
		r, err := rsync.New(rsync.Options{Source: src, Dest: dest, SSH: rsync.SSH{Port: port}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Sync(t.Context(), []syncer.Scope{{Dir: "p"}}, syncer.Hints{})
		var ee *rsync.ExitError
		if !errors.As(err, &ee) || !ee.Transient() {
			t.Errorf("%s: Sync() = %v, want a transient exit", dest, err)
		}
		err = r.Reachable(t.Context(), 10*time.Second)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Reachable() = %q, want one line", dest, err)
		}
		t.Logf("%s: %v", dest, err)
	}
}
