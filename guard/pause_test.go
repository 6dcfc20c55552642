package guard_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/guard"
)

// TestPauses checks what a pause holds (its project's scopes, the root's
// while any project is paused, everything for the pause of every project),
// that pauses outlast a reopen (a restart), that one project cannot be
// resumed out of the pause of all, and that a damaged file is an error,
// not a silent resume.
func TestPauses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state", "paused.json")
	ps, err := guard.OpenPauses(file, nil)
	must(t, err)
	p, q, root := syncer.Scope{Dir: "p/d", Recursive: true}, syncer.Scope{Dir: "q"}, syncer.Scope{Dir: ""}
	held := func(ps *guard.Pauses, scopes ...syncer.Scope) []syncer.Scope {
		h, why := ps.Check(scopes)
		if (len(h) > 0) != (why != nil) || why != nil && !errors.Is(why, syncer.ErrPaused) {
			t.Fatalf("Check(%v) = %v, %v: want the held scopes with an error matching ErrPaused", scopes, h, why)
		}
		return h
	}
	if h := held(ps, p, q, root); len(h) != 0 {
		t.Fatalf("nothing paused, held %v", h)
	}
	if _, err := ps.Pause("../etc", ""); err == nil {
		t.Error("pause of ../etc accepted")
	}
	first, err := ps.Pause("p", "restoring from tape")
	must(t, err)
	again, err := ps.Pause("p", "still restoring")
	must(t, err)
	if !again.Since.Equal(first.Since) || again.Reason != "still restoring" {
		t.Errorf("paused again: %+v, want the first time (%v) and the new reason", again, first.Since)
	}
	if h := held(ps, p, q, root); !slices.Equal(h, []syncer.Scope{p, root}) {
		t.Errorf("p paused: held %v, want p's scope and the root's", h)
	}
	_, why := ps.Check([]syncer.Scope{p})
	if s := why.Error(); !strings.Contains(s, `project "p" paused by an operator`) || !strings.Contains(s, "still restoring") ||
		!strings.Contains(s, "syncer resume p") {
		t.Errorf("why = %q, want the project, the reason and how to resume", s)
	}

	// A restart: the pause is read back.
	ps2, err := guard.OpenPauses(file, nil)
	must(t, err)
	if l := ps2.List(); len(l) != 1 || l[0].Project != "p" || l[0].Reason != "still restoring" {
		t.Fatalf("reopened: %+v", l)
	}
	_, err = ps2.Pause("", "")
	must(t, err)
	if h := held(ps2, p, q); len(h) != 2 {
		t.Errorf("every project paused: held %v, want both", h)
	}
	if _, err := ps2.Resume("q"); !errors.Is(err, guard.ErrAllPaused) {
		t.Errorf("resume q while all paused = %v, want ErrAllPaused", err)
	}
	ended, err := ps2.Resume("")
	must(t, err)
	if len(ended) != 2 || len(ps2.List()) != 0 || len(held(ps2, p, q, root)) != 0 {
		t.Errorf("resume all: ended %+v, left %+v", ended, ps2.List())
	}
	if ended, err := ps2.Resume("p"); err != nil || len(ended) != 0 {
		t.Errorf("resume of what is not paused = %v, %v", ended, err)
	}
	if l, err := guard.OpenPauses(file, nil); err != nil || len(l.List()) != 0 {
		t.Errorf("reopened after resume: %v, %v", l.List(), err)
	}

	for name, data := range map[string]string{"garbage": "{", "a path": `[{"project": "../x"}]`} {
		must(t, os.WriteFile(file, []byte(data), 0o600))
		if _, err := guard.OpenPauses(file, nil); err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s in the file: %v, want an error naming it", name, err)
		}
	}
	var nilPauses *guard.Pauses
	if nilPauses.Holds("p") || len(nilPauses.List()) != 0 {
		t.Error("a nil Pauses pauses")
	}
}

// TestGate checks that the gate holds paused projects' scopes without
// asking the brake about them, holds the brake's, and lets the rest run.
func TestGate(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for _, d := range []string{src, dst} {
		for _, p := range []string{"p", "q", "r"} {
			must(t, os.Mkdir(filepath.Join(d, p), 0o755))
		}
	}
	ps, err := guard.OpenPauses("", nil)
	must(t, err)
	var counted []syncer.Scope
	brake := guard.NewBrake(guard.BrakeOptions{Floor: 1,
		Count: func(_ context.Context, scopes []syncer.Scope, _ map[string][]string) (map[string]int64, error) {
			counted = append(counted, scopes...)
			out := map[string]int64{}
			for _, s := range scopes {
				if s.Project() == "q" {
					out["q"] = 900
				}
			}
			return out, nil
		},
		Entries: func(context.Context, string) (int64, error) { return 1000, nil }})
	g := guard.Gate{Guard: guard.New(guard.Options{Source: src, Dest: dst}), Pauses: ps, Brake: brake}
	p, q, r := syncer.Scope{Dir: "p"}, syncer.Scope{Dir: "q"}, syncer.Scope{Dir: "r"}
	_, err = ps.Pause("p", "")
	must(t, err)
	held, err := g.Admit(t.Context(), []syncer.Scope{p, q, r}, nil)
	if !slices.Equal(held, []syncer.Scope{p, q}) || !errors.Is(err, syncer.ErrPaused) {
		t.Fatalf("Admit = %v, %v: want p (paused) and q (braked) held", held, err)
	}
	if slices.Contains(counted, p) {
		t.Error("the brake counted the deletions of a paused project")
	}
	if !g.Holds("p") || !g.Holds("q") || g.Holds("r") || !g.Holds("") {
		t.Error("Holds: want p, q and the root held, r not")
	}
	if !strings.Contains(g.Paused(), `project "p" paused`) {
		t.Errorf("Paused() = %q", g.Paused())
	}
	if held, err := g.Admit(t.Context(), []syncer.Scope{r}, nil); held != nil || err != nil {
		t.Errorf("Admit(r) = %v, %v, want it let through", held, err)
	}
}

// synced is a syncer.Syncer that records the scopes it is given.
type synced struct{ scopes *[]syncer.Scope }

func (s synced) Sync(_ context.Context, scopes []syncer.Scope, _ syncer.Hints) (syncer.Stats, error) {
	*s.scopes = append(*s.scopes, scopes...)
	return syncer.Stats{}, nil
}

// TestWhole: of the scopes a run named files in, the gate admits again,
// counted whole, those about to be synced whole: one that deletes too
// much now is held (a ScopeError matching ErrPaused), the others go on,
// and scopes no file was named in are not counted again.
func TestWhole(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for _, d := range []string{src, dst} {
		for _, p := range []string{"p", "q", "r"} {
			must(t, os.Mkdir(filepath.Join(d, p), 0o755))
		}
	}
	var counted []syncer.Scope
	brake := guard.NewBrake(guard.BrakeOptions{Floor: 1,
		Count: func(_ context.Context, scopes []syncer.Scope, files map[string][]string) (map[string]int64, error) {
			if files != nil {
				t.Errorf("counted among named files: %v", files)
			}
			counted = append(counted, scopes...)
			out := map[string]int64{}
			for _, s := range scopes {
				if s.Project() == "p" {
					out["p"] = 900 // what the whole directory deletes, the named file none
				}
			}
			return out, nil
		},
		Entries: func(context.Context, string) (int64, error) { return 1000, nil }})
	g := guard.Gate{Guard: guard.New(guard.Options{Source: src, Dest: dst}), Brake: brake}
	var got []syncer.Scope
	w := guard.Whole{Gate: g, Next: synced{&got}}
	p, q, r := syncer.Scope{Dir: "p/d"}, syncer.Scope{Dir: "q/d"}, syncer.Scope{Dir: "r", Recursive: true}
	h := syncer.Hints{Files: map[string][]string{"p/d": {"p/d/x"}, "q/d": {"q/d/y"}}}
	_, err := w.Sync(t.Context(), []syncer.Scope{p, q, r}, h)
	var part *syncer.ScopeError
	if !errors.As(err, &part) || !slices.Equal(part.Scopes, []syncer.Scope{p}) || !errors.Is(err, syncer.ErrPaused) {
		t.Fatalf("Sync = %v: want p/d held", err)
	}
	if !slices.Equal(got, []syncer.Scope{q, r}) {
		t.Errorf("synced %v, want q/d and r", got)
	}
	if !slices.Equal(counted, []syncer.Scope{p, q}) {
		t.Errorf("counted %v, want the named scopes alone", counted)
	}
	got, counted = nil, nil
	if _, err := w.Sync(t.Context(), []syncer.Scope{q, r}, syncer.Hints{}); err != nil || len(counted) != 0 || !slices.Equal(got, []syncer.Scope{q, r}) {
		t.Errorf("no named files: %v, counted %v, synced %v; want all synced, none counted", err, counted, got)
	}
	got = nil
	if _, err := w.Sync(t.Context(), []syncer.Scope{p}, h); !errors.Is(err, syncer.ErrPaused) || len(got) != 0 {
		t.Errorf("only a held scope: %v, synced %v; want held, nothing synced", err, got)
	}
}
