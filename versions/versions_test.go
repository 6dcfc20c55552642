package versions_test

import (
	"testing"
	"time"

	"github.com/syncer/syncer/versions"
)

func TestStamp(t *testing.T) {
	at := time.Date(2026, 12, 2, 6, 52, 2, 123456789, time.FixedZone("x", 3600))
	s := versions.Stamp(at)
	if s != "2026-12-02T055202.123456789Z" {
		t.Errorf("Stamp = %q", s)
	}
	if back, ok := versions.ParseStamp(s); !ok || !back.Equal(at) {
		t.Errorf("ParseStamp(%q) = %v, %v", s, back, ok)
	}
	if day, ok := versions.ParseStamp("2026-11-30"); !ok || day.Day() != 30 || day.Hour() != 23 {
		t.Errorf("an earlier release's day: %v, %v; want its last moment", day, ok)
	}
	for _, bad := range []string{"notes", "2026-13-01", "x.versions"} {
		if _, ok := versions.ParseStamp(bad); ok {
			t.Errorf("ParseStamp(%q) accepted", bad)
		}
	}
}

// TestPick checks the version chosen for each file as of a time.
func TestPick(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	vs := []versions.Version{
		// edited at 1 h and 3 h: versions displaced then, the current one from 3 h
		{Path: "a", Kind: versions.Overwritten, At: h(1), Mtime: h(-5), Size: 1},
		{Path: "a", Kind: versions.Overwritten, At: h(3), Mtime: h(1), Size: 2},
		{Path: "a", Kind: versions.Current, Mtime: h(3), Size: 3},
		// created at 2 h, deleted at 4 h
		{Path: "b", Kind: versions.Deleted, At: h(4), Mtime: h(2), Size: 4},
		// deleted at 1 h
		{Path: "c", Kind: versions.Deleted, At: h(1), Mtime: h(-9), Size: 5},
		// created at 5 h
		{Path: "d", Kind: versions.Current, Mtime: h(5), Size: 6},
	}
	for _, tt := range []struct {
		at   time.Time
		want map[string]int64 // path → size of the version picked
	}{
		{h(0), map[string]int64{"a": 1, "c": 5}},
		{h(2).Add(-time.Minute), map[string]int64{"a": 2}}, // b was written at 2 h, not yet
		{h(2).Add(time.Minute), map[string]int64{"a": 2, "b": 4}},
		{h(6), map[string]int64{"a": 3, "d": 6}},
		{time.Time{}, map[string]int64{"a": 3, "b": 4, "c": 5, "d": 6}}, // latest: deleted files' last version
	} {
		got := map[string]int64{}
		for _, v := range versions.Pick(vs, tt.at) {
			got[v.Path] = v.Size
		}
		if len(got) != len(tt.want) {
			t.Errorf("at %v: picked %v, want %v", tt.at, got, tt.want)
			continue
		}
		for p, n := range tt.want {
			if got[p] != n {
				t.Errorf("at %v: picked %v, want %v", tt.at, got, tt.want)
				break
			}
		}
	}
}

func TestOld(t *testing.T) {
	names := []string{"2026-12-01", "2026-12-02T100000.000000000Z", "2026-12-02T110000.000000000Z", "notes", "2026-12-02T100000.000000000Z.versions"}
	cutoff := time.Date(2026, 12, 2, 0, 0, 0, 0, time.Local)
	old, err := versions.Old(names, cutoff, 0, nil)
	if err != nil || len(old) != 1 || old[0] != "2026-12-01" {
		t.Errorf("by age: %v, %v", old, err)
	}
	old, err = versions.Old(names, cutoff, 150, func(string) (int64, error) { return 100, nil })
	if err != nil || len(old) != 2 || old[1] != "2026-12-02T100000.000000000Z" {
		t.Errorf("by age and size: %v, %v", old, err)
	}
}
