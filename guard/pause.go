package guard

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// Pause is an operator's pause (`syncer pause [PROJECT]`).
type Pause struct {
	// Project is the paused project, "" for every project.
	Project string    `json:"project,omitempty"`
	Since   time.Time `json:"since"`
	// Reason is what the operator gave, if anything.
	Reason string `json:"reason,omitempty"`
}

func (p Pause) String() string {
	what := "every project"
	if p.Project != "" {
		what = fmt.Sprintf("project %q", p.Project)
	}
	s := fmt.Sprintf("%s paused by an operator since %s", what, p.Since.UTC().Format(time.DateTime+" MST"))
	if p.Reason != "" {
		s += " (" + p.Reason + ")"
	}
	return s + ": run `" + p.Resume() + "`"
}

// PausedError is the error of the runs of paused projects. It matches
// syncer.ErrPaused: their jobs wait, they do not fail.
type PausedError struct{ Pauses []Pause }

func (e *PausedError) Error() string {
	s := e.Pauses[0].String()
	if len(e.Pauses) > 1 {
		s += fmt.Sprintf(" (and %d more)", len(e.Pauses)-1)
	}
	return s
}

// Is makes errors.Is(err, syncer.ErrPaused) true.
func (e *PausedError) Is(target error) bool { return target == syncer.ErrPaused }

// ErrAllPaused refuses to resume one project while every project is paused.
var ErrAllPaused = errors.New("every project is paused: `syncer resume` with no project resumes them all")

// Pauses are the operator's pauses: nothing of a paused project changes on
// the backup (its jobs wait in the queue, a reconcile reports it held)
// until it is resumed. They are kept in a file, so that they outlast a
// restart. It is safe for concurrent use; a nil *Pauses pauses nothing.
type Pauses struct {
	file string
	log  *zap.Logger

	mu sync.Mutex
	m  map[string]Pause // by project; "" is every project
}

// OpenPauses reads the pauses kept in file ("" keeps none). A file that
// does not parse is an error: a pause is never dropped silently.
func OpenPauses(file string, log *zap.Logger) (*Pauses, error) {
	if log == nil {
		log = zap.NewNop()
	}
	p := &Pauses{file: file, log: log, m: map[string]Pause{}}
	if file == "" {
		return p, nil
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err == nil {
		var list []Pause
		if err = json.Unmarshal(data, &list); err == nil {
			for _, ps := range list {
				if ps.Project != "" {
					if err = syncer.CheckName(ps.Project); err != nil {
						break
					}
				}
				p.m[ps.Project] = ps
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pauses in %s: %w (remove the file to resume every project)", file, err)
	}
	return p, nil
}

// Pause pauses project ("" every project); pausing again keeps the first
// time and takes the new reason.
func (p *Pauses) Pause(project, reason string) (Pause, error) {
	if project != "" {
		if err := syncer.CheckName(project); err != nil {
			return Pause{}, fmt.Errorf("project: %w", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old, was := p.m[project]
	ps := old
	if !was {
		ps = Pause{Project: project, Since: time.Now().UTC()}
	}
	ps.Reason = reason
	p.m[project] = ps
	if err := p.save(); err != nil {
		if was {
			p.m[project] = old
		} else {
			delete(p.m, project)
		}
		return Pause{}, err
	}
	if !was {
		p.log.Warn("paused by an operator: nothing of it changes on the backup until resumed", zap.String(syncer.LogProject, project),
			zap.String("reason", reason), zap.String("resume", ps.Resume()))
	}
	return ps, nil
}

// Projects are the pauses' projects; none when one is every project's.
func Projects(ps []Pause) []string {
	var out []string
	for _, p := range ps {
		if p.Project == "" {
			return nil
		}
		out = append(out, p.Project)
	}
	return out
}

// Resume is the command that ends p.
func (p Pause) Resume() string {
	if p.Project == "" {
		return "syncer resume"
	}
	return "syncer resume " + p.Project
}

// Resume ends project's pause; "" ends every pause. It returns the pauses
// it ended (none when nothing was paused), ErrAllPaused for one project
// while every project is paused.
func (p *Pauses) Resume(project string) ([]Pause, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ended []Pause
	if project == "" {
		ended = p.list()
		clear(p.m)
	} else {
		if _, all := p.m[""]; all {
			return nil, ErrAllPaused
		}
		if ps, ok := p.m[project]; ok {
			ended = append(ended, ps)
			delete(p.m, project)
		}
	}
	if len(ended) == 0 {
		return nil, nil
	}
	if err := p.save(); err != nil {
		for _, ps := range ended {
			p.m[ps.Project] = ps
		}
		return nil, err
	}
	for _, ps := range ended {
		p.log.Info("resumed by an operator", zap.String(syncer.LogProject, ps.Project), zap.Time("paused_since", ps.Since))
	}
	return ended, nil
}

// List returns the pauses, every project's first.
func (p *Pauses) List() []Pause {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.list()
}

func (p *Pauses) list() []Pause {
	out := make([]Pause, 0, len(p.m))
	for _, k := range slices.Sorted(maps.Keys(p.m)) {
		out = append(out, p.m[k])
	}
	return out
}

// Of returns what pauses project: its own pause or every project's.
func (p *Pauses) Of(project string) (Pause, bool) {
	if p == nil {
		return Pause{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps, ok := p.m[""]; ok {
		return ps, true
	}
	ps, ok := p.m[project]
	return ps, ok
}

// Holds reports whether project's jobs wait. The root's scope ("") is held
// while any project is: its run syncs every project.
func (p *Pauses) Holds(project string) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if project == "" {
		return len(p.m) > 0
	}
	_, all := p.m[""]
	_, one := p.m[project]
	return all || one
}

// Check returns the scopes held by a pause, and why.
func (p *Pauses) Check(scopes []syncer.Scope) ([]syncer.Scope, *PausedError) {
	var held []syncer.Scope
	var why []Pause
	for _, s := range scopes {
		if !p.Holds(s.Project()) {
			continue
		}
		held = append(held, s)
		ps, ok := p.Of(s.Project())
		if !ok { // the root, held by some project's pause
			ps = p.List()[0]
		}
		if !slices.Contains(why, ps) {
			why = append(why, ps)
		}
	}
	if len(held) == 0 {
		return nil, nil
	}
	return held, &PausedError{Pauses: why}
}

// save writes the pauses to the file; p.mu is held.
func (p *Pauses) save() error {
	if p.file == "" {
		return nil
	}
	if err := saveJSON(p.file, p.list()); err != nil {
		return fmt.Errorf("record pauses: %w", err)
	}
	return nil
}
