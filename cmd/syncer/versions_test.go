package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/testutil"
	"github.com/syncer/syncer/versions"
)

// cli runs syncer with args and returns its exit code and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestRun_Versions: a file saved five times keeps five versions, each
// restored byte-exact as of its time; a project restored as of a time
// before deletions and edits equals the copy taken then; restore refuses
// to replace files without --force.
func TestRun_Versions(t *testing.T) {
	cfg := testConfig(t)
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/keep": "k"})
	h := start(t, cfg)
	trees := []string{"--source", cfg.Source, "--dest", cfg.Dest, "--state-dir", cfg.StateDir, "--rsync-path", cfg.RsyncPath}

	var saved []time.Time
	for i := 1; i <= 5; i++ {
		must(t, os.WriteFile(h.path("p/doc"), []byte(strings.Repeat(fmt.Sprintf("take %d\n", i), i)), 0o640))
		h.converge(t)
		saved = append(saved, time.Now())
		time.Sleep(20 * time.Millisecond)
	}
	code, out, errs := cli(t, append([]string{"versions", "p/doc", "--json"}, trees...)...)
	if code != 0 {
		t.Fatalf("versions: exit %d: %s", code, errs)
	}
	var vs []versions.Version
	must(t, json.Unmarshal([]byte(out), &vs))
	if len(vs) != 5 {
		t.Fatalf("%d versions of a file saved 5 times: %+v", len(vs), vs)
	}
	for i, v := range vs[:4] {
		if v.Kind != versions.Overwritten || v.Size != int64(7*(i+1)) {
			t.Errorf("version %d: %+v, want take %d overwritten", i, v, i+1)
		}
	}
	for i, at := range saved {
		to := t.TempDir()
		if code, _, errs := cli(t, append([]string{"restore", "p/doc", "--at", at.Format(time.RFC3339Nano), "--to", to}, trees...)...); code != 0 {
			t.Fatalf("restore take %d: exit %d: %s", i+1, code, errs)
		}
		want := strings.Repeat(fmt.Sprintf("take %d\n", i+1), i+1)
		if b, err := os.ReadFile(filepath.Join(to, "doc")); err != nil || string(b) != want {
			t.Errorf("restored as of take %d: %q, %v", i+1, b, err)
		}
	}

	// A project as it was, before deletions, edits and additions.
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"q/a/1": "one", "q/a/2": "two", "q/b/3": "three", "q/4": "four", "q/link": "-> a/1"})
	must(t, os.Chmod(h.path("q/a/2"), 0o600))
	h.converge(t)
	snap := filepath.Join(t.TempDir(), "q")
	if out, err := exec.Command("cp", "-a", h.path("q"), snap).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	then := time.Now()
	time.Sleep(20 * time.Millisecond)
	must(t, os.RemoveAll(h.path("q/b")))
	must(t, os.WriteFile(h.path("q/a/1"), []byte("ONE, edited"), 0o644))
	must(t, os.Remove(h.path("q/4")))
	must(t, os.WriteFile(h.path("q/new"), []byte("added later"), 0o644))
	h.converge(t)
	to := t.TempDir()
	if code, _, errs := cli(t, append([]string{"restore", "q", "--at", then.Format(time.RFC3339Nano), "--to", to}, trees...)...); code != 0 {
		t.Fatalf("restore q: exit %d: %s", code, errs)
	}
	if d := sameFiles(t, snap, filepath.Join(to, "q")); d != "" {
		t.Errorf("q restored as of before the changes differs from the copy taken then:\n%s", d)
	}

	// In place, over existing files: refused, nothing written, unless --force.
	before := testutil.Fingerprint(t, cfg.Source)
	code, _, errs = cli(t, append([]string{"restore", "q", "--at", then.Format(time.RFC3339Nano)}, trees...)...)
	if code == 0 || !strings.Contains(errs, "exist at the target") || !strings.Contains(errs, "--force") {
		t.Errorf("restore over existing files: exit %d %q, want a refusal naming --force", code, errs)
	}
	if now := testutil.Fingerprint(t, cfg.Source); now != before {
		t.Errorf("a refused restore changed the source:\n%s", now)
	}
	if code, _, errs := cli(t, append([]string{"restore", "q", "--at", then.Format(time.RFC3339Nano), "--force"}, trees...)...); code != 0 {
		t.Fatalf("restore --force: exit %d: %s", code, errs)
	}
	if b, err := os.ReadFile(h.path("q/a/1")); err != nil || string(b) != "one" {
		t.Errorf("q/a/1 after restore --force = %q, %v", b, err)
	}
	h.converge(t) // the restored files sync back like any change
}

// sameFiles compares the entries of two trees that are not directories:
// names, contents, link targets, modes and mtimes.
func sameFiles(t *testing.T, a, b string) string {
	t.Helper()
	type meta struct {
		content string
		mode    os.FileMode
		mtime   int64
	}
	scan := func(root string) map[string]meta {
		out := map[string]meta{}
		must(t, filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			var st syscall.Stat_t
			must(t, syscall.Lstat(p, &st))
			fi, _ := d.Info()
			m := meta{mode: fi.Mode(), mtime: st.Mtim.Nano()}
			if fi.Mode()&os.ModeSymlink != 0 {
				m.content, err = os.Readlink(p)
			} else {
				var c []byte
				c, err = os.ReadFile(p)
				m.content = string(c)
			}
			out[rel] = m
			return err
		}))
		return out
	}
	ma, mb := scan(a), scan(b)
	var diffs []string
	for p, x := range ma {
		if y, ok := mb[p]; !ok {
			diffs = append(diffs, "missing: "+p)
		} else if x != y {
			diffs = append(diffs, fmt.Sprintf("differs: %s: %+v, restored %+v", p, x, y))
		}
	}
	for p := range mb {
		if _, ok := ma[p]; !ok {
			diffs = append(diffs, "extra: "+p)
		}
	}
	return strings.Join(diffs, "\n")
}

// TestRun_OpenFileCopiedAsItIs: a file opened once and written every
// 100 ms for longer than open_file_wait is copied as it is while it stays
// open, again each open_file_wait, and whole once it is closed.
func TestRun_OpenFileCopiedAsItIs(t *testing.T) {
	cfg := testConfig(t)
	cfg.OpenFileWait = time.Second
	testutil.WriteTree(t, cfg.Source, testutil.Tree{"p/": ""})
	h := start(t, cfg)
	f, err := os.Create(h.path("p/app.db"))
	must(t, err)
	defer f.Close()
	sizes := map[int64]bool{}
	for i := range 40 {
		_, err := fmt.Fprintf(f, "row %d\n", i)
		must(t, err)
		time.Sleep(100 * time.Millisecond)
		if fi, err := os.Stat(filepath.Join(cfg.Dest, "p/app.db")); err == nil && fi.Size() > 0 {
			sizes[fi.Size()] = true
		}
	}
	if len(sizes) < 2 {
		t.Errorf("backup copies seen while the file stayed open for 4 s: sizes %v, want at least two", sizes)
	}
	must(t, f.Close())
	h.converge(t)
}
