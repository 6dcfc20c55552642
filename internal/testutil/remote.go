package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	return FreePorts(tb, 1)[0]
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago: all are held open until the last is picked, so the kernel
// cannot hand out one of them twice.
func FreePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// Start starts a long-running process whose output is kept for a failing
// test, and stops it (SIGTERM) when the test ends.
func Start(tb testing.TB, name string, args ...string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if tb.Failed() {
			tb.Logf("%s %s:\n%s", filepath.Base(name), args[0], out.String())
		}
	})
	return cmd
}

// Serve is Start for a server: it also waits until addr accepts connections.
func Serve(tb testing.TB, addr string, name string, args ...string) *exec.Cmd {
	tb.Helper()
	cmd := Start(tb, name, args...)
	Eventually(tb, 10*time.Second, 20*time.Millisecond, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return cmd
}

// RsyncDaemon serves dir as module "backup" of an rsync daemon on a
// loopback port, for user "syncer" with the password in the returned file.
// It returns the module's rsync:// URL.
func RsyncDaemon(tb testing.TB, dir string) (url, passwordFile string) {
	tb.Helper()
	bin := RequireRsync(tb)
	conf := tb.TempDir()
	secrets := filepath.Join(conf, "secrets")
	passwordFile = filepath.Join(conf, "password")
	write(tb, secrets, "syncer:s3cret\n")
	write(tb, passwordFile, "s3cret\n")
	write(tb, filepath.Join(conf, "rsyncd.conf"), fmt.Sprintf(`use chroot = no
pid file = %[1]s/pid
lock file = %[1]s/lock
log file = %[1]s/log
[backup]
	path = %[2]s
	read only = no
	uid = root
	gid = root
	numeric ids = yes
	munge symlinks = no
	auth users = syncer
	secrets file = %[3]s
`, conf, dir, secrets))
	port := FreePort(tb)
	Serve(tb, fmt.Sprintf("127.0.0.1:%d", port), bin, "--daemon", "--no-detach",
		"--config="+filepath.Join(conf, "rsyncd.conf"), "--address=127.0.0.1", fmt.Sprintf("--port=%d", port))
	return fmt.Sprintf("rsync://syncer@127.0.0.1:%d/backup", port), passwordFile
}

// SSHD is an sshd on a loopback port that lets root in with a key.
type SSHD struct {
	Port       int
	Identity   string // the client's private key
	KnownHosts string // lists the server's host key for [127.0.0.1]:Port
}

// StartSSHD starts an sshd of its own (not the system's) on a free
// loopback port. It needs root and the openssh-server package.
func StartSSHD(tb testing.TB) SSHD {
	tb.Helper()
	sshd := RequireTool(tb, "/usr/sbin/sshd")
	keygen := RequireTool(tb, "ssh-keygen")
	RequireTool(tb, "ssh")
	dir := tb.TempDir()
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			tb.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub := func(k string) string {
		b, err := os.ReadFile(filepath.Join(dir, k+".pub"))
		if err != nil {
			tb.Fatal(err)
		}
		return string(b)
	}
	s := SSHD{Port: FreePort(tb), Identity: filepath.Join(dir, "user"), KnownHosts: filepath.Join(dir, "known_hosts")}
	write(tb, filepath.Join(dir, "authorized_keys"), pub("user"))
	write(tb, s.KnownHosts, fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, pub("host")))
	write(tb, filepath.Join(dir, "sshd_config"), SSHDConfig(s.Port, dir))
	// Privilege separation wants this directory; Debian's unit creates it.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatal(err)
	}
	Serve(tb, fmt.Sprintf("127.0.0.1:%d", s.Port), sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	return s
}

// SSHDConfig is the configuration of an sshd of its own on a loopback
// port, its keys and state in dir (host, authorized_keys): root in with a
// key only.
func SSHDConfig(port int, dir string) string {
	return fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %[2]s/host
PidFile %[2]s/sshd.pid
AuthorizedKeysFile %[2]s/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
`, port, dir)
}

func write(tb testing.TB, p, s string) {
	tb.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		tb.Fatal(err)
	}
}
