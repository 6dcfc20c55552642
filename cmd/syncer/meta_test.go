package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/testutil"
)

// samba gives the file p what Samba's vfs_fruit, vfs_acl_xattr and DOS
// attribute support store for Mac and Windows clients, with a resource
// fork of fork bytes, and a POSIX ACL.
func samba(t *testing.T, p string, fork int, seed byte) {
	t.Helper()
	afp := bytes.Repeat([]byte{0x41, 0x46, 0x00, 0xff, seed}, 7)[:32] // binary, with NULs
	setfattr(t, p, "user.DosStream.AFP_AfpInfo:$DATA", afp)
	setfattr(t, p, "user.DosStream.AFP_Resource:$DATA", bytes.Repeat([]byte{seed, 0, 1}, fork)[:fork])
	setfattr(t, p, "user.DOSATTRIB", []byte{0, 0, 4, 0, 4, 0, 0, 0, 0x11, 0, 0, 0, 0x20, 0, 0, 0, seed})
	setfattr(t, p, "security.NTACL", append([]byte{4, 0, 4, 0, 0, 0, 2, 0}, bytes.Repeat([]byte{seed}, 80)...))
	setfacl(t, p, "-m", fmt.Sprintf("u:%d:rw,g:%d:r", 1000+int(seed), 2000+int(seed)))
}

// setfattr sets an attribute as setfattr(1) does (a 64 KiB value is
// longer than one argument may be).
func setfattr(t *testing.T, p, name string, v []byte) {
	t.Helper()
	if err := unix.Lsetxattr(p, name, v, 0); err != nil {
		t.Fatalf("setxattr %s %s: %v", name, p, err)
	}
}

func setfacl(t *testing.T, p string, args ...string) {
	t.Helper()
	out, err := exec.Command(testutil.RequireTool(t, "setfacl"), append(args, p)...).CombinedOutput()
	if err != nil {
		t.Fatalf("setfacl %v %s: %v %s", args, p, err, out)
	}
}

// sparse makes p a file of 1 GiB holding 1 MiB of data in its middle.
func sparse(t *testing.T, p string) {
	t.Helper()
	f, err := os.Create(p)
	must(t, err)
	defer f.Close()
	must(t, f.Truncate(1<<30))
	_, err = f.WriteAt(bytes.Repeat([]byte("render"), (1<<20)/6+1)[:1<<20], 512<<20)
	must(t, err)
}

func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Stat(p, &st))
	return st.Blocks * 512
}

// fsTrees puts the source and the backup of cfg on filesystems of their
// own of the type fstype (as root).
func fsTrees(t *testing.T, cfg *config.Config, fstype string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop mounts need root")
	}
	dir := t.TempDir()
	testutil.Mount(t, testutil.Image(t, dir, "src", fstype), cfg.Source)
	testutil.Mount(t, testutil.Image(t, dir, "dst", fstype), cfg.Dest)
}

// TestRun_Metadata checks that extended attributes as Samba writes them,
// POSIX access and default ACLs and sparse files reach the backup on
// every kind of change, through the direct copier and through rsync, on
// ext4 and XFS.
func TestRun_Metadata(t *testing.T) {
	if testing.Short() {
		t.Skip("loop-mounted filesystems: skipped with -short")
	}
	for _, fs := range []struct {
		name string
		fork int // the largest resource fork it keeps beside the rest
	}{{"ext4", 3 << 10}, {"xfs", 64 << 10}} {
		for _, direct := range []bool{true, false} {
			t.Run(fs.name+"/"+map[bool]string{true: "DirectCopy", false: "RsyncOnly"}[direct], func(t *testing.T) {
				cfg := testConfig(t)
				cfg.DirectCopy = direct
				fsTrees(t, &cfg, fs.name)
				shots := filepath.Join(cfg.Source, "proj", "shots")
				must(t, os.MkdirAll(shots, 0o775))
				setfacl(t, shots, "-d", "-m", "u:1500:rwx,g:1600:rx")
				setfacl(t, shots, "-m", "u:1500:rwx")
				must(t, os.WriteFile(filepath.Join(shots, "take1.mov"), []byte("take one"), 0o664))
				samba(t, filepath.Join(shots, "take1.mov"), fs.fork, 1)
				sparse(t, filepath.Join(cfg.Source, "proj", "disk.img"))

				h := start(t, cfg) // what was there before: the startup reconcile
				h.converge(t)
				if n := allocated(t, filepath.Join(cfg.Dest, "proj", "disk.img")); n > 4<<20 {
					t.Fatalf("the 1 GiB sparse file with 1 MiB of data takes %d bytes on the backup", n)
				}

				// Created live, in a directory with a default ACL.
				take2 := filepath.Join(shots, "take2.mov")
				must(t, os.WriteFile(take2, []byte("take two"), 0o664))
				samba(t, take2, fs.fork, 2)
				h.converge(t)

				// Modified: content and attributes both.
				f, err := os.OpenFile(take2, os.O_APPEND|os.O_WRONLY, 0)
				must(t, err)
				_, err = f.WriteString(" and more")
				must(t, err)
				must(t, f.Close())
				setfattr(t, take2, "user.DOSATTRIB", []byte("changed"))
				h.converge(t)

				// Attributes alone: a new stream, a removed one, an ACL entry.
				setfattr(t, filepath.Join(shots, "take1.mov"), "user.DosStream.Zone.Identifier:$DATA", []byte("[ZoneTransfer]\r\nZoneId=3\r\n"))
				out, err := exec.Command(testutil.RequireTool(t, "setfattr"), "-x", "user.DOSATTRIB", take2).CombinedOutput()
				must(t, errorsJoin(err, out))
				setfacl(t, shots, "-m", "u:1700:r")
				h.converge(t)

				// Renamed, file and directory.
				must(t, os.Rename(take2, filepath.Join(shots, "take2_final.mov")))
				must(t, os.Rename(shots, filepath.Join(cfg.Source, "proj", "shots_v2")))
				h.converge(t)

				// Changed while stopped: the startup reconcile finds them.
				h.stop(t)
				shots = filepath.Join(cfg.Source, "proj", "shots_v2")
				setfattr(t, filepath.Join(shots, "take1.mov"), "user.DosStream.AFP_AfpInfo:$DATA", bytes.Repeat([]byte{9}, 32))
				setfacl(t, filepath.Join(shots, "take2_final.mov"), "-x", "u:1002")
				take3 := filepath.Join(cfg.Source, "proj", "take3.mov")
				must(t, os.WriteFile(take3, []byte("take three"), 0o644))
				samba(t, take3, fs.fork, 3)
				h = start(t, cfg)
				h.converge(t)
			})
		}
	}
}

func errorsJoin(err error, out []byte) error {
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// TestRun_BackupWithoutXattrs checks that a backup whose filesystem keeps
// no extended attributes or ACLs (ramfs) gets everything else, says once
// what it cannot keep, and counts what was dropped per project.
func TestRun_BackupWithoutXattrs(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "DirectCopy", false: "RsyncOnly"}[direct], func(t *testing.T) {
			cfg := testConfig(t)
			cfg.DirectCopy = direct
			if os.Geteuid() != 0 {
				t.Skip("mounting needs root")
			}
			if out, err := exec.Command("mount", "-t", "ramfs", "ramfs", cfg.Dest).CombinedOutput(); err != nil {
				t.Fatalf("mount ramfs: %v %s", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("umount", "-l", cfg.Dest).Run() })
			must(t, os.MkdirAll(filepath.Join(cfg.Source, "proj"), 0o755))
			must(t, os.WriteFile(filepath.Join(cfg.Source, "proj", "a.mov"), []byte("a"), 0o644))
			samba(t, filepath.Join(cfg.Source, "proj", "a.mov"), 100, 1)
			h := start(t, cfg)
			// b arrives with its attributes, in one move: one sync sends it.
			b := filepath.Join(t.TempDir(), "b.mov")
			must(t, os.WriteFile(b, []byte("b"), 0o644))
			samba(t, b, 100, 2)
			must(t, os.Rename(b, filepath.Join(cfg.Source, "proj", "b.mov")))
			testutil.Eventually(t, 30*time.Second, 25*time.Millisecond, func() error {
				for _, f := range []string{"a.mov", "b.mov"} {
					got, err := os.ReadFile(filepath.Join(cfg.Dest, "proj", f))
					if err != nil || string(got) != f[:1] {
						return fmt.Errorf("%s on the backup: %q, %v", f, got, err)
					}
				}
				return nil
			})
			r := h.d.status(t.Context())
			if r.CannotKeep != "user xattrs, trusted xattrs, security xattrs, POSIX ACLs" {
				t.Errorf("status says the backup cannot keep %q", r.CannotKeep)
			}
			if len(r.Dead) > 0 {
				t.Errorf("jobs failed: %+v", r.Dead)
			}
			// 5 attributes of each file, counted by the copier as it copies
			// and by rsync from the entries it itemizes as sent.
			testutil.Eventually(t, 10*time.Second, 25*time.Millisecond, func() error {
				var dropped int64
				for _, p := range h.d.status(t.Context()).Projects {
					if p.Name == "proj" {
						dropped = p.Dropped
					}
				}
				if v := h.metric(t, "syncer_metadata_dropped_total"); dropped != 10 || v != 10 {
					return fmt.Errorf("status counts %d attributes dropped in proj, syncer_metadata_dropped_total %v; want 10", dropped, v)
				}
				return nil
			})
			// Counted once: later syncs of the directory count nothing more.
			must(t, os.WriteFile(filepath.Join(cfg.Source, "proj", "c.txt"), []byte("c"), 0o644))
			testutil.Eventually(t, 10*time.Second, 25*time.Millisecond, func() error {
				_, err := os.Stat(filepath.Join(cfg.Dest, "proj", "c.txt"))
				return err
			})
			if v := h.metric(t, "syncer_metadata_dropped_total"); v != 10 {
				t.Errorf("after another sync of the directory, syncer_metadata_dropped_total = %v, want still 10", v)
			}
		})
	}
}

// metric sums the values of the counter or gauge name over its labels.
func (h *harness) metric(t *testing.T, name string) float64 {
	t.Helper()
	fams, err := h.d.metrics.Gather()
	must(t, err)
	var n float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return n
}

// TestRun_HiddenRewrite checks that a file rewritten keeping its size and
// getting its mtime back (touch -r, cp -p of another take) is copied, on
// both paths: live, and while the daemon was stopped (found by the startup
// reconcile). The index of synced files saw its ctime move.
func TestRun_HiddenRewrite(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "DirectCopy", false: "RsyncOnly"}[direct], func(t *testing.T) {
			cfg := testConfig(t)
			cfg.DirectCopy = direct
			must(t, os.MkdirAll(filepath.Join(cfg.Source, "proj", "scene1"), 0o755))
			take := filepath.Join(cfg.Source, "proj", "scene1", "take.mov")
			other := filepath.Join(cfg.Source, "proj", "take_b.mov")
			must(t, os.WriteFile(take, []byte("take A, first grade"), 0o644))
			must(t, os.WriteFile(other, []byte("take B, other grade"), 0o644))
			h := start(t, cfg)
			h.converge(t)
			// A file written live, recorded by its job.
			live := filepath.Join(cfg.Source, "proj", "scene1", "live.mov")
			must(t, os.WriteFile(live, []byte("live take, v1"), 0o644))
			h.converge(t)
			// The same, live: the job compares its content.
			lfi, err := os.Stat(live)
			must(t, err)
			must(t, os.WriteFile(live, []byte("live take, v0"), 0o644))
			must(t, os.Chtimes(live, lfi.ModTime(), lfi.ModTime()))
			h.converge(t)
			h.stop(t)

			// Same size, mtime put back: a size-and-mtime compare sees nothing.
			fi, err := os.Stat(take)
			must(t, err)
			must(t, os.WriteFile(take, []byte("take A, final grade"[:len("take A, first grade")]), 0o644))
			must(t, os.Chtimes(take, fi.ModTime(), fi.ModTime()))
			lfi, err = os.Stat(live)
			must(t, err)
			must(t, os.WriteFile(live, []byte("live take, v2"), 0o644))
			must(t, os.Chtimes(live, lfi.ModTime(), lfi.ModTime()))
			// Replaced by another file of the same size and mtime (a new inode).
			ofi, err := os.Stat(other)
			must(t, err)
			tmp := other + ".tmp"
			must(t, os.WriteFile(tmp, []byte("take C, new grade!!"), 0o644))
			must(t, os.Chtimes(tmp, ofi.ModTime(), ofi.ModTime()))
			must(t, os.Rename(tmp, other))

			h = start(t, cfg)
			h.converge(t)
			must(t, h.d.backup.Index.Flush())
			if n := h.d.backup.Index.Len(); n < 3 {
				t.Errorf("the index holds %d records, want 3 or more", n)
			}
		})
	}
}

// TestRun_OversizeXattr checks that an attribute larger than the backup's
// filesystem keeps (a 64 KiB resource fork from XFS onto ext4, which keeps
// a few KiB per file) drops that attribute alone, counted, on both paths:
// the file, its other attributes and every other file get there.
func TestRun_OversizeXattr(t *testing.T) {
	if testing.Short() {
		t.Skip("loop-mounted filesystems: skipped with -short")
	}
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "DirectCopy", false: "RsyncOnly"}[direct], func(t *testing.T) {
			cfg := testConfig(t)
			cfg.DirectCopy = direct
			if os.Geteuid() != 0 {
				t.Skip("loop mounts need root")
			}
			dir := t.TempDir()
			testutil.Mount(t, testutil.Image(t, dir, "src", "xfs"), cfg.Source)
			testutil.Mount(t, testutil.Image(t, dir, "dst", "ext4"), cfg.Dest)
			p := filepath.Join(cfg.Source, "proj")
			must(t, os.MkdirAll(p, 0o755))
			must(t, os.WriteFile(filepath.Join(p, "small.mov"), []byte("small"), 0o644))
			samba(t, filepath.Join(p, "small.mov"), 1<<10, 1)
			h := start(t, cfg)
			h.converge(t)
			big := filepath.Join(p, "big.mov")
			must(t, os.WriteFile(big, []byte("big"), 0o644))
			setfattr(t, big, "user.DosStream.AFP_Resource:$DATA", bytes.Repeat([]byte{7}, 64<<10))
			setfattr(t, big, "user.DOSATTRIB", []byte("kept"))
			testutil.Eventually(t, 30*time.Second, 25*time.Millisecond, func() error {
				x, err := testutil.Xattrs(filepath.Join(cfg.Dest, "proj", "big.mov"))
				if err != nil || x["user.DOSATTRIB"] != "kept" {
					return fmt.Errorf("big.mov on the backup: %v, %v", x, err)
				}
				if h.metric(t, "syncer_metadata_dropped_total") < 1 {
					return fmt.Errorf("no drop counted")
				}
				return nil
			})
			if _, ok := must2(testutil.Xattrs(filepath.Join(cfg.Dest, "proj", "big.mov")))["user.DosStream.AFP_Resource:$DATA"]; ok {
				t.Fatal("ext4 kept a 64 KiB attribute?")
			}
			if r := h.d.status(t.Context()); len(r.Dead) > 0 {
				t.Fatalf("jobs failed: %+v", r.Dead)
			}
		})
	}
}

func must2[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
