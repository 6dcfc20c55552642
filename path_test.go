package syncer_test

import (
	"strings"
	"testing"

	"github.com/syncer/syncer"
)

func TestCheckPath(t *testing.T) {
	long := strings.Repeat("a", syncer.MaxNameLen)
	deep := strings.Repeat(long+"/", 15) + long // MaxPathLen bytes
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"", true},
		{"proj", true},
		{"proj/a b/-x/*?[", true},
		{"proj/\xff\xfe/\n", true},
		{"proj/..x/x..", true},
		{long, true},
		{deep, true},
		{"/etc", false},
		{"../x", false},
		{"proj/../../x", false},
		{"proj/..", false},
		{"./proj", false},
		{"proj/.", false},
		{"proj//a", false},
		{"proj/", false},
		{"proj\x00/a", false},
		{long + "a", false},
		{deep + "/c", false},
	} {
		err := syncer.CheckPath(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("CheckPath(%.40q) = %v, want ok %v", tc.path, err, tc.ok)
		}
	}
	if syncer.CheckFile("") == nil {
		t.Error(`CheckFile("") = nil, want an error`)
	}
	if syncer.CheckName("a/b") == nil || syncer.CheckName("a") != nil {
		t.Error("CheckName: a/b must fail and a pass")
	}
}

func TestJob_Check(t *testing.T) {
	ok := syncer.Job{Scope: syncer.Scope{Dir: "p/d"}, Open: []string{"p/d/f"}, Files: []string{"p/d/g"}}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	rec := syncer.Job{Scope: syncer.Scope{Dir: "p", Recursive: true}, Open: []string{"p/d/e/f"}}
	if err := rec.Check(); err != nil {
		t.Fatal(err)
	}
	for _, j := range []syncer.Job{
		{Scope: syncer.Scope{Dir: "p/../.."}},
		{Scope: syncer.Scope{Dir: "p"}, Open: []string{"q/f"}},
		{Scope: syncer.Scope{Dir: "p"}, Files: []string{"p/../../etc/passwd"}},
		{Scope: syncer.Scope{Dir: "p"}, Files: []string{""}},
	} {
		if j.Check() == nil {
			t.Errorf("%+v: Check() = nil, want an error", j)
		}
	}
}

// FuzzCheckPath: whatever CheckPath accepts can be joined below a root
// without leaving it, and splits into components a directory may hold.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"", "a", "a/b", "../a", "a/./b", "/x", "a\x00b", "a//b", "\xff/\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if syncer.CheckPath(p) != nil {
			return
		}
		j := syncer.Join("/root/tree", p)
		if j != "/root/tree" && !strings.HasPrefix(j, "/root/tree/") {
			t.Fatalf("CheckPath(%q) ok, but Join leaves the root: %q", p, j)
		}
		if p != "" && j != "/root/tree/"+p {
			t.Fatalf("CheckPath(%q) ok, but Join cleans it to %q", p, j)
		}
		if len(p) > syncer.MaxPathLen || strings.ContainsRune(p, 0) {
			t.Fatalf("CheckPath(%q) ok past a bound", p)
		}
	})
}
