package xattr_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/internal/xattr"
)

func openDir(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func ramfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "ramfs", "ramfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount ramfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func TestProbe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("trusted xattrs need root")
	}
	img := testutil.Ext4Image(t, t.TempDir(), "probe")
	ext4 := filepath.Join(t.TempDir(), "ext4")
	testutil.Mount(t, img, ext4)
	before, _ := os.Stat(ext4)
	got, err := xattr.Probe(openDir(t, ext4))
	if err != nil || got != xattr.All {
		t.Fatalf("Probe(ext4) = %v, %v; want %v", got, err, xattr.All)
	}
	if after, _ := os.Stat(ext4); !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the probe changed its directory's mtime: %v → %v", before.ModTime(), after.ModTime())
	}
	if got, err := xattr.Probe(openDir(t, ramfs(t))); err != nil || got != xattr.None {
		t.Fatalf("Probe(ramfs) = %v, %v; want none", got, err)
	}
	if ents, _ := os.ReadDir(ext4); len(ents) != 1 { // lost+found
		t.Fatalf("probe left %v", ents)
	}
}

func TestApply(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("trusted xattrs need root")
	}
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	for _, p := range []string{src, dst} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	afp := bytes.Repeat([]byte{0, 0xff, 'A'}, 11)[:32]
	for name, v := range map[string][]byte{"user.DosStream.AFP_AfpInfo:$DATA": afp, "trusted.a": []byte("1"), "security.NTACL": {1, 2}} {
		if err := unix.Setxattr(src, name, v, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Setxattr(dst, "user.stale", []byte("old"), 0); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testutil.RequireTool(t, "setfacl"), "-m", "u:1234:rw", src).CombinedOutput(); err != nil {
		t.Fatalf("setfacl: %v %s", err, out)
	}
	fd := openDir(t, dir)
	want, err := xattr.At(fd, "src").List(xattr.All)
	if err != nil || len(want) != 4 {
		t.Fatalf("List = %v, %v; want 4 attributes", want, err)
	}
	changed, dropped, err := xattr.At(fd, "dst").Apply(want, xattr.All)
	if err != nil || !changed || dropped.Total() != 0 {
		t.Fatalf("Apply = %v, %v, %v", changed, dropped, err)
	}
	got, _ := xattr.At(fd, "dst").List(xattr.All)
	if !xattr.Equal(got, want) || xattr.Sum(got) != xattr.Sum(want) {
		t.Fatalf("after Apply: %v, want %v", got, want)
	}
	if changed, _, _ := xattr.At(fd, "dst").Apply(want, xattr.All); changed {
		t.Fatal("second Apply changed something")
	}
	// Kinds left out are neither set nor removed.
	if _, _, err := xattr.At(fd, "dst").Apply(nil, xattr.User); err != nil {
		t.Fatal(err)
	}
	got, _ = xattr.At(fd, "dst").List(xattr.All)
	if len(got) != 3 || xattr.Sum(got) == xattr.Sum(want) {
		t.Fatalf("Apply(nil, User) left %v", got)
	}

	ram := ramfs(t)
	if err := os.WriteFile(filepath.Join(ram, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	changed, dropped, err = xattr.At(openDir(t, ram), "f").Apply(want, xattr.All)
	if err != nil || changed || dropped.Total() != 4 || dropped[xattr.ACL] != 1 {
		t.Fatalf("Apply on ramfs = %v, %v, %v; want 4 dropped, no error", changed, dropped, err)
	}
}

func TestKind(t *testing.T) {
	for name, want := range map[string]xattr.Kind{"user.x": xattr.User, "trusted.x": xattr.Trusted, "security.selinux": xattr.Security,
		"system.posix_acl_default": xattr.ACL, "system.nfs4_acl": xattr.None, "user": xattr.None} {
		if got := xattr.KindOf(name); got != want {
			t.Errorf("KindOf(%q) = %v, want %v", name, got, want)
		}
	}
	if s := (xattr.User | xattr.ACL).String(); s != "user xattrs, POSIX ACLs" {
		t.Errorf("String = %q", s)
	}
}
