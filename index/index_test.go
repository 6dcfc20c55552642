package index_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer/index"
)

func TestIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	ix, err := index.Open(path, nil)
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
	if _, err := index.Open(path, nil); err == nil {
		t.Fatal("a second Open of a held index succeeded")
	}
	ix.Queue(index.Update{Dir: "q", Put: map[string]index.Record{"c": b}})
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened: the records survived, the last queued one committed by Close.
	ix, err = index.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ix.Dir("p"); got["a"] != a {
		t.Fatalf("after reopening: %v", got)
	}
	if got, _ := ix.Dir("q"); got["c"] != b {
		t.Fatalf("the record queued before Close: %v", got)
	}
	ix.Close()
	// A damaged file is moved aside and the index starts anew.
	if err := os.WriteFile(path, []byte(strings.Repeat("not a b+tree ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	ix, err = index.Open(path, nil)
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
