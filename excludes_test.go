package syncer_test

import (
	"testing"

	"github.com/syncer/syncer"
)

func TestExcludes_Match(t *testing.T) {
	ex := syncer.MustExcludes("*.tmp", ".DS_Store", "ProjA/render/cache", "*/Proxies", "ProjB/**/*.bak", "/ProjC/x?")
	for rel, want := range map[string]bool{
		"":                           false,
		"a.tmp":                      true,
		"ProjA/deep/down/b.tmp":      true,
		"ProjA/.DS_Store":            true,
		"ProjA/render/cache":         true,
		"ProjA/render/cache/f":       true, // below an excluded directory
		"ProjB/render/cache":         false,
		"ProjA/render/cachet":        false,
		"ProjA/Proxies":              true,
		"ProjA/sub/Proxies":          false, // '*' does not cross '/'
		"Proxies":                    false,
		"ProjB/a/x.bak":              true,
		"ProjB/a/b/x.bak":            true,
		"ProjB/x.bak":                false, // "**" between two '/' needs a directory, as in rsync
		"ProjC/x1":                   true,
		"ProjC/x12":                  false,
		"ProjA/render/cache.tmp.txt": false,
	} {
		if got := ex.Match(rel); got != want {
			t.Errorf("Match(%q) = %v, want %v", rel, got, want)
		}
	}
	if !ex.MatchIn("ProjA/render", "cache") || ex.MatchIn("ProjA", "render") {
		t.Error("MatchIn disagrees with Match on an entry")
	}
	var none *syncer.Excludes
	if none.Match("a.tmp") || none.MatchIn("", "a.tmp") || none.RsyncArgs() != nil {
		t.Error("a nil Excludes excludes something")
	}
}

func TestExcludes_Set(t *testing.T) {
	ex := syncer.MustExcludes("*.tmp")
	if err := ex.Set([]string{"*.bak", "bad/"}); err == nil {
		t.Fatal("Set took a pattern with a trailing '/'")
	}
	if !ex.Match("a.tmp") || ex.Match("a.bak") {
		t.Error("a failed Set changed the rules")
	}
	if err := ex.Set([]string{"*.bak", "P/cache"}); err != nil {
		t.Fatal(err)
	}
	if ex.Match("a.tmp") || !ex.Match("a.bak") || !ex.Match("P/cache") {
		t.Error("Set did not replace the rules")
	}
	got, want := ex.RsyncArgs(), []string{"--exclude=*.bak", "--exclude=/P/cache"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("RsyncArgs() = %q, want %q", got, want)
	}
}

func TestCheckExclude(t *testing.T) {
	for _, p := range []string{"", "/", "a/", "!keep", "**", "a**", "a//b", "a/../b", "./a", "[", "a\nb"} {
		if syncer.CheckExclude(p) == nil {
			t.Errorf("CheckExclude(%q) = nil, want an error", p)
		}
	}
	for _, p := range []string{"*.tmp", "/P/x", "P/**/x", "*/Proxies", "[ab]c", "Thumbs.db"} {
		if err := syncer.CheckExclude(p); err != nil {
			t.Errorf("CheckExclude(%q) = %v", p, err)
		}
	}
}
