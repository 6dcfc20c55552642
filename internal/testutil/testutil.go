package testutil

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sys/unix"
)

// StartJetStream starts an in-process JetStream server on a random loopback
// port with its store in a temp dir and returns it; it is shut down (and
// waited for) when the test ends.
func StartJetStream(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: tb.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("jetstream not ready")
	}
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// RequireRsync returns the path of rsync. When it is missing the test is
// skipped, unless SYNCER_TEST_REQUIRE_RSYNC=1 (set by CI), which fails it.
func RequireRsync(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("rsync")
	if err == nil {
		return p
	}
	if os.Getenv("SYNCER_TEST_REQUIRE_RSYNC") == "1" {
		tb.Fatalf("rsync is required (SYNCER_TEST_REQUIRE_RSYNC=1) but missing: %v", err)
	}
	tb.Skipf("rsync not installed: %v", err)
	return ""
}

// Eventually calls fn every tick until it returns nil, failing the test with
// fn's last error after timeout.
func Eventually(tb testing.TB, timeout, tick time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(tick)
	}
}

// Tree describes files to create: path → content. A path ending in "/" is a
// directory; content starting with "-> " makes a symlink to the rest.
type Tree map[string]string

// WriteTree creates t below root.
func WriteTree(tb testing.TB, root string, t Tree) {
	tb.Helper()
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := filepath.Join(root, k)
		v := t[k]
		var err error
		switch {
		case strings.HasSuffix(k, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(v, "-> "):
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.Symlink(v[3:], p)
			}
		default:
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, []byte(v), 0o644)
			}
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// DiffTrees compares two trees (names, types, sizes, modes, owners, mtimes,
// symlink targets, contents, extended attributes and ACLs) and describes the first differences; "" means
// equal. The roots' own attributes are not compared. Entries whose
// slash-separated relative path starts with one of skip are ignored.
func DiffTrees(a, b string, skip ...string) string {
	ea, err := scan(a, skip)
	if err != nil {
		return err.Error()
	}
	eb, err := scan(b, skip)
	if err != nil {
		return err.Error()
	}
	var diffs []string
	for p, x := range ea {
		y, ok := eb[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("only in source: %q", p))
		case x != y:
			diffs = append(diffs, fmt.Sprintf("differs %q: %s / %s", p, x, y))
		}
	}
	for p := range eb {
		if _, ok := ea[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("only in backup: %q", p))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	sort.Strings(diffs)
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("... and %d more", len(diffs)-10))
	}
	return strings.Join(diffs, "\n")
}

func scan(root string, skip []string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+"/") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v uid=%d gid=%d mtime=%d", fi.Mode(), st.Uid, st.Gid, fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + t
		case fi.Mode().IsRegular():
			n, sum, err := contentSum(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d sum=%x", n, sum)
		}
		x, err := Xattrs(p)
		if err != nil {
			return err
		}
		for _, name := range slices.Sorted(maps.Keys(x)) {
			if name == "trusted.SGI_ACL_FILE" || name == "trusted.SGI_ACL_DEFAULT" {
				continue // XFS's own view of the ACL, compared as system.posix_acl_*
			}
			desc += fmt.Sprintf(" %s=%x", name, quickSum([]byte(x[name])))
		}
		out[rel] = desc
		return nil
	})
	return out, err
}

// Xattrs reads the extended attributes (ACLs included) of p, not
// following it.
func Xattrs(p string) (map[string]string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	out := map[string]string{}
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		out[name] = string(v[:m])
	}
	return out, nil
}

// sumSeed keys contentSum: sums compare within one test process.
var sumSeed = maphash.MakeSeed()

// contentSum reads the file p in chunks (a 1 GiB sparse file costs no
// 1 GiB buffer) and returns its size and a hash of its bytes.
func contentSum(p string) (int64, uint64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var h maphash.Hash
	h.SetSeed(sumSeed)
	buf := sumBufs.Get().(*[]byte)
	defer sumBufs.Put(buf)
	n, err := io.CopyBuffer(&h, f, *buf)
	return n, h.Sum64(), err
}

var sumBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func quickSum(b []byte) uint64 {
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}
