package index_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncer/syncer/index"
)

func TestIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	ix, err := index.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b := index.Record{Ino: 1, Size: 2, Mtime: 3, Ctime: 4}, index.Record{Ino: 5, Size: 6, Mtime: 7, Ctime: 8}
	odd := "-odd\n name \xff"
	if err := ix.Apply(index.Update{Dir: "p/a", Put: map[string]index.Record{"x": a, odd: b}},
		index.Update{Dir: "p/a b", Put: map[string]index.Record{"x": b}}, index.Update{Dir: "p", Put: map[string]index.Record{"a": a}}); err != nil {
		t.Fatal(err)
	}
	got, err := ix.Dir("p/a")
	if err != nil || len(got) != 2 || got["x"] != a || got[odd] != b {
		t.Fatalf("Dir(p/a) = %v, %v", got, err)
	}
	// Exact forgets the names it does not put; its neighbours stay.
	if err := ix.Apply(index.Update{Dir: "p/a", Put: map[string]index.Record{"y": b}, Exact: true}); err != nil {
		t.Fatal(err)
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
	if n := ix.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	// One process at a time.
	if _, err := index.Open(path); err == nil {
		t.Fatal("a second Open of a held index succeeded")
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened: the records survived.
	ix, err = index.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ix.Dir("p"); got["a"] != a {
		t.Fatalf("after reopening: %v", got)
	}
	ix.Close()
	// A damaged file is moved aside and the index starts anew.
	if err := os.WriteFile(path, []byte(strings.Repeat("not a b+tree ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	ix, err = index.Open(path)
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
