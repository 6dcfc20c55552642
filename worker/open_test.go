package worker

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/syncer/syncer"
)

func TestBatchSkip(t *testing.T) {
	job := func(dir string, rec bool, skip ...string) *claim {
		return &claim{scope: syncer.Scope{Dir: dir, Recursive: rec},
			ds: []syncer.Delivery{{Job: syncer.Job{Scope: syncer.Scope{Dir: dir, Recursive: rec}, Open: skip}}}}
	}
	tests := []struct {
		name   string
		claims []*claim
		want   []string
	}{
		{"one job", []*claim{job("p/a", false, "p/a/clip")}, []string{"p/a/clip"}},
		{"an unrelated job does not matter", []*claim{job("p/a", false, "p/a/clip"), job("q", true)}, []string{"p/a/clip"}},
		// The second job may be the follow-up sent once clip was closed.
		{"a covering job that copies it wins", []*claim{job("p/a", false, "p/a/clip"), job("p/a", false)}, nil},
		{"a recursive ancestor that copies it wins", []*claim{job("p", true), job("p/a", false, "p/a/clip")}, nil},
		{"every covering job skips it", []*claim{job("p", true, "p/a/clip"), job("p/a", false, "p/a/clip", "p/a/x")},
			[]string{"p/a/clip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, batchOpen(tt.claims)); d != "" {
				t.Errorf("batchOpen() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestBatchFiles(t *testing.T) {
	job := func(dir string, rec bool, files ...string) syncer.Delivery {
		return syncer.Delivery{Job: syncer.Job{Scope: syncer.Scope{Dir: dir, Recursive: rec}, Files: files}}
	}
	claimOf := func(ds ...syncer.Delivery) *claim { return &claim{scope: ds[0].Job.Scope, ds: ds} }
	tests := []struct {
		name   string
		claims []*claim
		want   map[string][]string
	}{
		{"none named", []*claim{claimOf(job("p/a", false))}, nil},
		{"named", []*claim{claimOf(job("p/a", false, "p/a/f")), claimOf(job("q", false))},
			map[string][]string{"p/a": {"p/a/f"}}},
		{"two reconciles name files of one directory", []*claim{claimOf(job("p/a", false, "p/a/g"), job("p/a", false, "p/a/f", "p/a/g"))},
			map[string][]string{"p/a": {"p/a/f", "p/a/g"}}},
		// The watcher's job covers the whole directory: it wins.
		{"a job for the whole directory wins", []*claim{claimOf(job("p/a", false, "p/a/f"), job("p/a", false))}, nil},
		{"a recursive scope is never narrowed", []*claim{claimOf(job("p", true, "p/f"))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, batchFiles(tt.claims)); d != "" {
				t.Errorf("batchFiles() mismatch (-want +got):\n%s", d)
			}
		})
	}
}
