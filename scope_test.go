package syncer_test

import (
	"slices"
	"testing"

	"github.com/syncer/syncer"
)

func TestScope(t *testing.T) {
	flat := func(d string) syncer.Scope { return syncer.Scope{Dir: d} }
	deep := func(d string) syncer.Scope { return syncer.Scope{Dir: d, Recursive: true} }
	tests := []struct {
		a, b             syncer.Scope
		covers, overlaps bool
	}{
		{flat("p/a"), flat("p/a"), true, true},
		{flat("p/a"), deep("p/a"), false, true},
		{deep("p/a"), flat("p/a"), true, true},
		{deep("p/a"), flat("p/a/b"), true, true},
		{flat("p/a"), flat("p/a/b"), false, true},
		{deep("p/a"), flat("p/ab"), false, false},
		{deep(""), flat("x/y"), true, true},
		{flat(""), flat("x"), false, true},
		{flat("p/a"), flat("q/a"), false, false},
	}
	for _, tt := range tests {
		if got := tt.a.Covers(tt.b); got != tt.covers {
			t.Errorf("%v.Covers(%v) = %v, want %v", tt.a, tt.b, got, tt.covers)
		}
		if got := tt.a.Overlaps(tt.b); got != tt.overlaps {
			t.Errorf("%v.Overlaps(%v) = %v, want %v", tt.a, tt.b, got, tt.overlaps)
		}
		if got := tt.b.Overlaps(tt.a); got != tt.overlaps {
			t.Errorf("%v.Overlaps(%v) = %v, want symmetric %v", tt.b, tt.a, got, tt.overlaps)
		}
	}
}

func TestRel(t *testing.T) {
	tests := []struct {
		root, p, want string
		ok            bool
	}{
		{"/data/prod", "/data/prod", "", true},
		{"/data/prod", "/data/prod/p/a b", "p/a b", true},
		{"/data/prod", "/data/prod_backup/p", "", false},
		{"/data/prod", "/data", "", false},
		{"/", "/x/y", "x/y", true},
	}
	for _, tt := range tests {
		got, ok := syncer.Rel(tt.root, tt.p)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Rel(%q, %q) = %q, %v, want %q, %v", tt.root, tt.p, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzRel checks that Rel and Join are inverse for any name bytes.
func FuzzRel(f *testing.F) {
	for _, s := range []string{"p", "p/a b", "p/\xff\n", "-x/*?", "a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dir string) {
		if dir == "" || dir[0] == '/' || dir[len(dir)-1] == '/' || containsEmptyOrDot(dir) {
			return
		}
		rel, ok := syncer.Rel("/data/prod", syncer.Join("/data/prod", dir))
		if !ok || rel != dir {
			t.Errorf("Rel(Join(%q)) = %q, %v", dir, rel, ok)
		}
		if p := syncer.Parent(dir); p != "" && !syncer.IsAncestor(p, dir) {
			t.Errorf("Parent(%q) = %q is not an ancestor", dir, p)
		}
	})
}

func containsEmptyOrDot(dir string) bool {
	start := 0
	for i := 0; i <= len(dir); i++ {
		if i == len(dir) || dir[i] == '/' {
			e := dir[start:i]
			if e == "" || e == "." || e == ".." || containsNUL(e) {
				return true
			}
			start = i + 1
		}
	}
	return false
}

func containsNUL(s string) bool {
	for i := range len(s) {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

func TestNamesIn(t *testing.T) {
	files := []string{"p/d/a", "p/d/sub/b", "p/e/c", "p/d", "top"}
	if got := syncer.NamesIn("p/d", files); !slices.Equal(got, []string{"a"}) {
		t.Errorf("NamesIn(p/d) = %q, want [a]", got)
	}
	if got := syncer.NamesIn("", files); !slices.Equal(got, []string{"top"}) {
		t.Errorf("NamesIn(root) = %q, want [top]", got)
	}
	if got := syncer.NamesIn("q", files); got == nil || len(got) != 0 {
		t.Errorf("NamesIn(q) = %#v, want empty, not nil", got)
	}
}
