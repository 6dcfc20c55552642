package index

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncer/syncer/internal/testutil"
)

// parked opens an index of the backup dst, queues one record per name in
// p, and closes it: the records are parked, not committed.
func parked(t *testing.T, path, dst string, names ...string) {
	t.Helper()
	before := committed(t, path)
	ix, err := Open(path, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	u := Update{Dir: "p", Put: map[string]Record{}, Clean: &Clean{Src: Record{Ino: 7}, Dst: Record{Ino: 8}, Listed: true}}
	for i, n := range names {
		u.Put[n] = Record{Ino: uint64(i + 1), Size: 10, Mtime: 20, Ctime: 30}
	}
	ix.Queue(u)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(parkPath(path)); err != nil {
		t.Fatalf("nothing parked: %v", err)
	}
	if n := committed(t, path); n != before {
		t.Errorf("%d records committed by Close; want them parked", n-before)
	}
}

// committed counts the records in the index file at path.
func committed(t *testing.T, path string) int {
	t.Helper()
	db, err := open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return (&Index{db: db}).Len()
}

// reopen opens the index again and returns the records of p, and the
// count of those committed once every commit its Open started is done
// (none are queued any more); the caller closes it.
func reopen(t *testing.T, path, dst string) (map[string]Record, int, *Index) {
	t.Helper()
	ix, err := Open(path, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ix.Dir("p")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ix.mu.RLock()
		n := len(ix.pending) + len(ix.flushing)
		ix.mu.RUnlock()
		if n == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(parkPath(path)); !os.IsNotExist(err) {
		t.Errorf("the park is still there after Open (%v): it is taken once", err)
	}
	return recs, ix.Len(), ix
}

// TestPark_TakenBack: what Close parked, the next Open with the same
// backup reads at once and commits soon after, flushing the backup first.
func TestPark_TakenBack(t *testing.T) {
	dir := t.TempDir()
	dst, path := filepath.Join(dir, "dst"), filepath.Join(dir, "state", "index.db")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	parked(t, path, dst, "a", "b", "-odd\n name \xff")
	recs, committed, ix := reopen(t, path, dst)
	if len(recs) != 3 || recs["b"].Ino != 2 {
		t.Fatalf("records after Open: %v; want the 3 parked", recs)
	}
	if c, ok, _ := ix.Clean("p"); !ok || !c.Listed || c.Dst.Ino != 8 {
		t.Errorf("Clean after Open: %+v %v", c, ok)
	}
	if committed != 3 {
		t.Errorf("%d records committed after Open; want the 3 parked", committed)
	}
	// Opened without its backup, an index leaves a park alone: nothing
	// could flush the backup before committing it.
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	parked(t, path, dst, "c")
	noBackup, err := Open(path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := noBackup.Dir("p"); len(got) != 3 {
		t.Errorf("opened without its backup: %d records of p; want the 3 committed, not the parked one", len(got))
	}
	noBackup.Close()
	if _, err := os.Stat(parkPath(path)); err != nil {
		t.Errorf("park gone after an Open without the backup: %v", err)
	}
}

// TestPark_Dropped: a park whose moment has passed (the machine
// restarted, the backup was remounted, shut down or the index written
// since) or whose file is damaged is dropped, whole: Open succeeds and
// the records are not there, neither read nor committed.
func TestPark_Dropped(t *testing.T) {
	testutil.RequireRoot(t)
	cases := []struct {
		name  string
		after func(t *testing.T, path, img, dst string)
	}{
		{"another boot", func(t *testing.T, path, _, _ string) {
			rewrite(t, path, func(s *stamp) { s.Boot = "00000000-0000-0000-0000-000000000000" })
		}},
		{"backup remounted", func(t *testing.T, _, img, dst string) {
			testutil.Unmount(t, dst, false)
			testutil.Mount(t, img, dst)
		}},
		{"backup crashed", func(t *testing.T, _, img, dst string) { testutil.Crash(t, img, dst, "") }},
		{"index written since", func(t *testing.T, path, _, _ string) {
			ix, err := Open(path, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := ix.SetDeepAt(time.Now()); err != nil {
				t.Fatal(err)
			}
			ix.Close()
		}},
		{"torn", func(t *testing.T, path, _, _ string) {
			b, _ := os.ReadFile(parkPath(path))
			if err := os.WriteFile(parkPath(path), b[:len(b)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"damaged", func(t *testing.T, path, _, _ string) {
			b, _ := os.ReadFile(parkPath(path))
			b[len(b)/2] ^= 0x40
			if err := os.WriteFile(parkPath(path), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"empty", func(t *testing.T, path, _, _ string) {
			if err := os.WriteFile(parkPath(path), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			img, dst := testutil.Ext4Image(t, dir, "backup"), filepath.Join(dir, "backup")
			testutil.Mount(t, img, dst)
			path := filepath.Join(dir, "index.db")
			parked(t, path, dst, "a", "b")
			c.after(t, path, img, dst)
			recs, committed, ix := reopen(t, path, dst)
			ix.Close()
			if len(recs) != 0 || committed != 0 {
				t.Errorf("after %s: %d records read, %d committed; want the park dropped", c.name, len(recs), committed)
			}
		})
	}
}

// TestPark_Shutdown: a backup whose filesystem failed after the park
// (shut down, as after an I/O error, and still mounted): its flush
// fails, so the parked records are never committed.
func TestPark_Shutdown(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	img, dst := testutil.Ext4Image(t, dir, "backup"), filepath.Join(dir, "backup")
	testutil.Mount(t, img, dst)
	path := filepath.Join(dir, "index.db")
	parked(t, path, dst, "a", "b")
	testutil.Shutdown(t, dst)
	_, committed, ix := reopen(t, path, dst)
	ix.Close()
	if committed != 0 {
		t.Errorf("%d parked records committed although the backup's flush failed", committed)
	}
}

// TestPark_ManyDirs: a park of more directories than a commit waits for
// (FlushDirs) is taken back and committed; its Open does not wait.
func TestPark_ManyDirs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")
	ix, err := Open(path, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := ix.stampNow()
	if err := ix.Close(); err != nil || !ok {
		t.Fatalf("close: %v, stamp: %v", err, ok)
	}
	batch := map[string]Update{}
	for i := range 2 * FlushDirs {
		d := fmt.Sprintf("q/%d", i)
		batch[d] = Update{Dir: d, Put: map[string]Record{"f": {Ino: uint64(i)}}}
	}
	if err := os.WriteFile(parkPath(path), encodePark(s, batch), 0o600); err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		_, committed, ix := reopen(t, path, dir)
		ix.Close()
		if committed != 2*FlushDirs {
			t.Errorf("%d records committed; want the %d parked", committed, 2*FlushDirs)
		}
	}()
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		t.Fatal("Open of a park of many directories hangs")
	}
}

// rewrite changes the stamp of the park of the index at path.
func rewrite(t *testing.T, path string, change func(*stamp)) {
	t.Helper()
	b, err := os.ReadFile(parkPath(path))
	if err != nil {
		t.Fatal(err)
	}
	s, updates, err := decodePark(b)
	if err != nil {
		t.Fatal(err)
	}
	change(&s)
	batch := map[string]Update{}
	for _, u := range updates {
		batch[u.Dir] = u
	}
	if err := os.WriteFile(parkPath(path), encodePark(s, batch), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPark_Decode(t *testing.T) {
	s := stamp{Boot: "b", Mount: 1, Dev: 2, Root: 3, IndexIno: 4, TxID: 5}
	for _, u := range []Update{
		{Dir: "/abs", Put: map[string]Record{"a": {}}},
		{Dir: "p", Put: map[string]Record{"a/b": {}}},
		{Dir: "p", Drop: []string{".."}},
		{Dir: "p\x00q"},
	} {
		if _, _, err := decodePark(encodePark(s, map[string]Update{u.Dir: u})); err == nil {
			t.Errorf("%+v: decoded; want an error", u)
		}
	}
	u := Update{Dir: "p/q", Exact: true, Drop: []string{"x"}, Put: map[string]Record{"y": {Ino: 9, Dir: true}}}
	got, updates, err := decodePark(encodePark(s, map[string]Update{u.Dir: u}))
	if err != nil || got != s || len(updates) != 1 || fmt.Sprint(updates[0]) != fmt.Sprint(u) {
		t.Errorf("round trip: %+v %+v %v", got, updates, err)
	}
}
