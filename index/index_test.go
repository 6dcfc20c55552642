package index_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncer/syncer/index"
	"github.com/syncer/syncer/internal/testutil"
)

func TestIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	ix, err := index.Open(path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := index.Record{Ino: 1, Size: 2, Mtime: 3, Ctime: 4}, index.Record{Ino: 5, Size: 6, Mtime: 7, Ctime: 8}
	odd := "-odd\n name \xff"
	ix.Queue(index.Update{Dir: "p/a", Put: map[string]index.Record{"x": a}},
		index.Update{Dir: "p/a b", Put: map[string]index.Record{"x": b}}, index.Update{Dir: "p", Put: map[string]index.Record{"a": a}})
	ix.Queue(index.Update{Dir: "p/a", Put: map[string]index.Record{odd: b}}) // merged with the first
	// Queued records are read back before they are committed.
	got, err := ix.Dir("p/a")
	if err != nil || len(got) != 2 || got["x"] != a || got[odd] != b {
		t.Fatalf("Dir(p/a) of queued records = %v, %v", got, err)
	}
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := ix.Dir("p/a"); len(got) != 2 || got["x"] != a || got[odd] != b {
		t.Fatalf("Dir(p/a) after Flush = %v", got)
	}
	// Exact forgets the names it does not put, queued or committed; its
	// neighbours stay.
	ix.Queue(index.Update{Dir: "p/a", Put: map[string]index.Record{"z": a}})
	ix.Queue(index.Update{Dir: "p/a", Put: map[string]index.Record{"y": a}, Exact: true})
	ix.Queue(index.Update{Dir: "p/a", Put: map[string]index.Record{"y": b}})
	if got, _ := ix.Dir("p/a"); len(got) != 1 || got["y"] != b {
		t.Fatalf("queued Exact: %v", got)
	}
	// Committed within FlushEvery without a Flush.
	deadline := time.Now().Add(10 * index.FlushEvery)
	for ix.Len() != 3 && time.Now().Before(deadline) {
		time.Sleep(index.FlushEvery / 10)
	}
	if n := ix.Len(); n != 3 {
		t.Fatalf("%v after queueing, %d records committed; want 3", 10*index.FlushEvery, n)
	}
	if got, _ := ix.Dir("p/a"); len(got) != 1 || got["y"] != b {
		t.Fatalf("after Exact: %v", got)
	}
	if got, _ := ix.Dir("p/a b"); len(got) != 1 {
		t.Fatalf("a neighbour lost its records: %v", got)
	}
	if got, _ := ix.Dir("p"); len(got) != 1 || got["a"] != a {
		t.Fatalf("Dir(p) = %v", got)
	}
	// One process at a time.
	if _, err := index.Open(path, "", nil); err == nil {
		t.Fatal("a second Open of a held index succeeded")
	}
	ix.Queue(index.Update{Dir: "q", Put: map[string]index.Record{"c": b}})
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened: the records survived, the last queued one committed by Close.
	ix, err = index.Open(path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ix.Dir("p"); got["a"] != a {
		t.Fatalf("after reopening: %v", got)
	}
	if got, _ := ix.Dir("q"); got["c"] != b {
		t.Fatalf("the record queued before Close: %v", got)
	}
	// Drop removes a committed record and a queued one; a later Put of a
	// dropped name brings it back; the rest of the directory stays.
	ix.Queue(index.Update{Dir: "q", Put: map[string]index.Record{"d": a, "e": a}})
	ix.Queue(index.Update{Dir: "q", Drop: []string{"c", "d", "e"}})
	ix.Queue(index.Update{Dir: "q", Put: map[string]index.Record{"e": b}})
	if got, _ := ix.Dir("q"); len(got) != 1 || got["e"] != b {
		t.Fatalf("queued Drop: %v", got)
	}
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := ix.Dir("q"); len(got) != 1 || got["e"] != b {
		t.Fatalf("committed Drop: %v", got)
	}
	ix.Queue(index.Update{Dir: "q", Drop: []string{"e"}})
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := ix.Dir("q"); len(got) != 0 {
		t.Fatalf("Drop of a committed record: %v", got)
	}
	ix.Close()
	// A damaged file is moved aside and the index starts anew.
	if err := os.WriteFile(path, []byte(strings.Repeat("not a b+tree ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	ix, err = index.Open(path, "", nil)
	if err != nil {
		t.Fatalf("Open(damaged) = %v", err)
	}
	defer ix.Close()
	if n := ix.Len(); n != 0 {
		t.Fatalf("a fresh index holds %d records", n)
	}
	if m, _ := filepath.Glob(path + ".damaged-*"); len(m) != 1 {
		t.Fatalf("the damaged index was not kept aside: %v", m)
	}
}

// TestClean: what a directory was on both sides when found equal is read
// back queued and committed, outlasts a reopen, goes with a move of the
// directory (and those below it), and the time of the last deep compare
// is kept.
func TestClean(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	ix, err := index.Open(path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := func(n uint64) index.Clean {
		return index.Clean{Src: index.Record{Ino: n, Mtime: 2, Ctime: 3, Dir: true}, Dst: index.Record{Ino: n + 1, Mtime: 2, Ctime: 4, Dir: true}}
	}
	for i, dir := range []string{"", "p", "p/a", "p/a/b", "pa"} {
		ix.Queue(index.Update{Dir: dir, Clean: ptr(c(uint64(10 * i)))})
	}
	ix.Queue(index.Update{Dir: "p", Put: map[string]index.Record{"x": {Ino: 9}}}) // keeps p's Clean
	if got, ok, err := ix.Clean("p"); err != nil || !ok || got != c(10) {
		t.Fatalf("queued Clean(p) = %v, %v, %v", got, ok, err)
	}
	if ix.DeepAt() != (time.Time{}) {
		t.Fatalf("DeepAt of a new index = %v, want zero", ix.DeepAt())
	}
	at := time.Unix(1700000000, 5)
	if err := ix.SetDeepAt(at); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if ix, err = index.Open(path, "", nil); err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if got, ok, err := ix.Clean(""); err != nil || !ok || got != c(0) {
		t.Fatalf("Clean(root) after reopen = %v, %v, %v", got, ok, err)
	}
	if !ix.DeepAt().Equal(at) {
		t.Fatalf("DeepAt after reopen = %v, want %v", ix.DeepAt(), at)
	}
	if err := ix.Move("p/a", "q", index.Record{Ino: 7, Dir: true}); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]bool{"p/a": false, "p/a/b": false, "p": true, "pa": true} {
		if _, ok, err := ix.Clean(dir); err != nil || ok != want {
			t.Errorf("after moving p/a: Clean(%q) found %v, %v; want %v", dir, ok, err, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestIndex_OpenWritesNothing: opening an index that has its buckets and
// closing it with nothing queued leaves the file as it was: no commit, and
// none of the two fdatasyncs one costs, before a reconcile can start.
func TestIndex_OpenWritesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	ix, err := index.Open(path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ix.Queue(index.Update{Dir: "p", Put: map[string]index.Record{"a": {Ino: 1, Size: 2, Mtime: 3, Ctime: 4}}})
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ix, err := index.Open(path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ix.Dir("p"); err != nil || len(got) != 1 {
			t.Fatalf("Dir(p) after reopening = %v, %v", got, err)
		}
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if after, err := os.ReadFile(path); err != nil || string(after) != string(before) {
		t.Errorf("the index file changed on open and close with nothing queued (err %v)", err)
	}
}

// TestIndex_ReadsWhileCommitting: a read sees every record queued before
// it began, whether still queued, being committed or committed, while
// commits run all the time and readers never wait for them.
func TestIndex_ReadsWhileCommitting(t *testing.T) {
	ix, err := index.Open(filepath.Join(t.TempDir(), "index.db"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	const n = 200
	var queued atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // commits as often as it can
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := ix.Flush(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			recs := map[string]index.Record{}
			for {
				select {
				case <-stop:
					return
				default:
				}
				want := int(queued.Load())
				if _, _, err := ix.DirInto("d", recs); err != nil {
					t.Error(err)
					return
				}
				for i := range want {
					if r, ok := recs[fmt.Sprint(i)]; !ok || r.Ino != uint64(i+1) {
						t.Errorf("after %d updates, record %d is %+v (found %v)", want, i, r, ok)
						return
					}
				}
			}
		})
	}
	all := map[string]index.Record{}
	for i := range n {
		name := fmt.Sprint(i)
		all[name] = index.Record{Ino: uint64(i + 1)}
		u := index.Update{Dir: "d", Put: map[string]index.Record{name: all[name]}}
		if i%3 == 0 { // as a sync of the whole directory records it
			u = index.Update{Dir: "d", Put: maps.Clone(all), Exact: true}
		}
		ix.Queue(u)
		queued.Store(int64(i + 1))
		time.Sleep(100 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
}

// TestIndex_BackupOnDiskFirst crashes the backup's filesystem right after
// a commit: every file with a committed record is there in full. Without
// the flush before the commit, the files written a moment before are
// lost with the crash while their records stay.
func TestIndex_BackupOnDiskFirst(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	img, dst := testutil.Ext4Image(t, dir, "backup"), filepath.Join(dir, "backup")
	testutil.MountWith(t, img, dst, "commit=1")
	ix, err := index.Open(filepath.Join(dir, "index.db"), dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat("frame ", 2000)
	u := index.Update{Dir: "p", Put: map[string]index.Record{}}
	if err := os.Mkdir(filepath.Join(dst, "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		name := fmt.Sprintf("f%d", i)
		if err := os.WriteFile(filepath.Join(dst, "p", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		u.Put[name] = index.Record{Ino: uint64(i + 1), Size: int64(len(data))}
	}
	ix.Queue(u)
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	// The journal commits the new entries (commit=1); their data is not
	// due for writeback yet.
	time.Sleep(2 * time.Second)
	if err := ix.Close(); err != nil { // nothing queued: nothing flushed
		t.Fatal(err)
	}
	testutil.Crash(t, img, dst, "")
	if ix, err = index.Open(filepath.Join(dir, "index.db"), "", nil); err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	recs, err := ix.Dir("p")
	if err != nil || len(recs) != 20 {
		t.Fatalf("records: %d, %v", len(recs), err)
	}
	for name := range recs {
		if b, err := os.ReadFile(filepath.Join(dst, "p", name)); err != nil || string(b) != data {
			t.Errorf("%s has a record but %d of its %d bytes survived the crash (%v)", name, len(b), len(data), err)
		}
	}
}
