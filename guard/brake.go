package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// Defaults for BrakeOptions.
const (
	DefaultFraction = 0.5
	DefaultFloor    = 500
	DefaultApproval = 15 * time.Minute
)

// BrakeOptions configure a Brake.
type BrakeOptions struct {
	// Fraction is the share of a project's entries on the backup that one
	// run may delete; a run that would delete more is held until approved.
	Fraction float64
	// Floor is the number of deletions below which a run is never held.
	Floor int64
	// Count says how many backup entries a sync of the scopes would
	// delete, per project, before anything is deleted; in a scope that
	// files names (syncer.Hints.Files), among those files alone.
	Count func(ctx context.Context, scopes []syncer.Scope, files map[string][]string) (map[string]int64, error)
	// Entries counts a project's entries on the backup.
	Entries func(ctx context.Context, project string) (int64, error)
	// Approval is how long an approval lets a project's deletions through.
	Approval time.Duration
	// StateFile, when set, keeps the held projects across restarts.
	StateFile string
	Logger    *zap.Logger // nil: no logs
}

// Brake holds the runs that would delete a large share of a project on
// the backup until an operator approves: an emptied project, a wrong rm
// -rf, a source that came back half restored. It is safe for concurrent use.
type Brake struct {
	opts BrakeOptions
	log  *zap.Logger

	mu       sync.Mutex
	held     map[string]Hold       // by project
	approved map[string]time.Time  // by project: until when
	history  map[string][]deletion // by project: the deletions let through within the window
}

// Hold is a project's deletion waiting for approval.
type Hold struct {
	Project  string    `json:"project"`
	Deleting int64     `json:"deleting"`
	Of       int64     `json:"of"`
	Since    time.Time `json:"since"`
	// Scopes are the held runs' scopes in the project: the hold ends by
	// itself when they have nothing left to delete.
	Scopes []syncer.Scope `json:"scopes"`
}

// mergeScopes adds to have the scopes of project p (the root's too).
func mergeScopes(have, scopes []syncer.Scope, p string) []syncer.Scope {
	for _, s := range scopes {
		if (s.Project() == p || s.Dir == "") && !slices.Contains(have, s) {
			have = append(have, s)
		}
	}
	return have
}

func (h Hold) String() string {
	return fmt.Sprintf("project %q: deleting %d of %d entries needs approval: run `syncer approve %s`", h.Project, h.Deleting, h.Of, h.Project)
}

// HeldError is the error of a run held by the brake. It matches
// syncer.ErrPaused: its jobs wait, they do not fail.
type HeldError struct{ Holds []Hold }

func (e *HeldError) Error() string {
	s := "deletion brake: " + e.Holds[0].String()
	if len(e.Holds) > 1 {
		s += fmt.Sprintf(" (and %d more projects)", len(e.Holds)-1)
	}
	return s
}

// Is makes errors.Is(err, syncer.ErrPaused) true.
func (e *HeldError) Is(target error) bool { return target == syncer.ErrPaused }

// NewBrake returns a Brake.
func NewBrake(opts BrakeOptions) *Brake {
	if opts.Fraction <= 0 {
		opts.Fraction = DefaultFraction
	}
	if opts.Floor <= 0 {
		opts.Floor = DefaultFloor
	}
	if opts.Approval <= 0 {
		opts.Approval = DefaultApproval
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	b := &Brake{opts: opts, log: opts.Logger, held: map[string]Hold{}, approved: map[string]time.Time{},
		history: map[string][]deletion{}}
	if opts.StateFile != "" {
		if data, err := os.ReadFile(opts.StateFile); err == nil {
			if err := json.Unmarshal(data, &b.held); err != nil {
				b.log.Warn("held deletions not read", zap.String("file", opts.StateFile), zap.Error(err))
			}
		}
	}
	return b
}

// Check counts what a sync of scopes would delete and returns the scopes of
// the projects that need approval first, with why. A scope that files
// names (syncer.Hints.Files) is counted among those files: whatever syncs
// it whole later must be checked again without them (Whole). A project is
// released when a later check finds its deletions within bounds (the files
// came back) or it is approved.
func (b *Brake) Check(ctx context.Context, scopes []syncer.Scope, files map[string][]string) ([]syncer.Scope, *HeldError, error) {
	counts, err := b.opts.Count(ctx, scopes, files)
	if err != nil {
		return nil, nil, fmt.Errorf("count deletions: %w", err)
	}
	projects := map[string]bool{}
	for _, s := range scopes {
		if s.Dir != "" {
			projects[s.Project()] = true
		}
	}
	for p := range counts {
		projects[p] = true
	}
	now := time.Now()
	var holds []Hold
	for _, p := range slices.Sorted(maps.Keys(projects)) {
		n := counts[p]
		if b.isApproved(p, now) {
			b.release(p)
			continue
		}
		if h, ok := b.heldNow(p); ok {
			if n > 0 {
				// A mass deletion waits: so does every deletion in its
				// project, however small each run's share.
				h.Scopes = mergeScopes(h.Scopes, scopes, p)
				holds = append(holds, b.hold(h))
				continue
			}
			// This run deletes nothing there; the held deletion is over
			// when its scopes have nothing left to delete (the files came back).
			left, err := b.opts.Count(ctx, h.Scopes, nil)
			if err != nil {
				return nil, nil, fmt.Errorf("count deletions: %w", err)
			}
			if left[p] == 0 {
				b.release(p)
			}
			continue
		}
		if n == 0 {
			continue
		}
		// What the project lost within the window counts with this run:
		// a deletion split over many runs (one per directory) is one.
		recent := b.recent(p, now)
		if n+recent <= b.opts.Floor {
			b.deleted(p, n, now)
			continue
		}
		total, err := b.opts.Entries(ctx, p)
		if err != nil {
			return nil, nil, fmt.Errorf("count entries of %s: %w", p, err)
		}
		if float64(n+recent) <= b.opts.Fraction*float64(total+recent) {
			b.deleted(p, n, now)
			continue
		}
		holds = append(holds, b.hold(Hold{Project: p, Deleting: n + recent, Of: total + recent, Since: now,
			Scopes: mergeScopes(nil, scopes, p)}))
	}
	if len(holds) == 0 {
		return nil, nil, nil
	}
	var out []syncer.Scope
	for _, s := range scopes {
		for _, h := range holds {
			// The root's run deletes whole projects: held with any of them.
			if s.Project() == h.Project || s.Dir == "" {
				out = append(out, s)
				break
			}
		}
	}
	return out, &HeldError{Holds: holds}, nil
}

// window is how long a project's deletions count together.
const window = 10 * time.Minute

type deletion struct {
	at time.Time
	n  int64
}

// recent is what project p deleted within the window before now.
func (b *Brake) recent(p string, now time.Time) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	kept := b.history[p][:0]
	for _, d := range b.history[p] {
		if now.Sub(d.at) < window {
			kept = append(kept, d)
			n += d.n
		}
	}
	b.history[p] = kept
	return n
}

func (b *Brake) deleted(p string, n int64, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.history[p] = append(b.history[p], deletion{now, n})
}

func (b *Brake) heldNow(p string) (Hold, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.held[p]
	return h, ok
}

func (b *Brake) isApproved(p string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.approved[p]
	if ok && now.After(until) {
		delete(b.approved, p)
		return false
	}
	return ok
}

// hold records h, logging when the project was not held before; it keeps
// the first time it was held.
func (b *Brake) hold(h Hold) Hold {
	b.mu.Lock()
	defer b.mu.Unlock()
	if was, ok := b.held[h.Project]; ok {
		h.Since = was.Since
	} else {
		b.log.Error("deletion held: the project pauses until an operator approves", zap.String(syncer.LogProject, h.Project),
			zap.Int64("deleting", h.Deleting), zap.Int64("entries", h.Of), zap.String("approve", "syncer approve "+h.Project))
	}
	b.held[h.Project] = h
	b.save()
	return h
}

// save records the held projects in StateFile; b.mu is held.
func (b *Brake) save() {
	if b.opts.StateFile == "" {
		return
	}
	if err := saveJSON(b.opts.StateFile, b.held); err != nil {
		b.log.Warn("record held deletions", zap.String("file", b.opts.StateFile), zap.Error(err))
	}
}

func (b *Brake) release(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.held[p]; ok {
		delete(b.held, p)
		b.save()
		b.log.Info("deletion released", zap.String(syncer.LogProject, p), zap.Int64("held_deleting", h.Deleting))
	}
}

// Approve lets the deletions of project through for the approval period;
// held reports whether it was held.
func (b *Brake) Approve(project string) (h Hold, held bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, held = b.held[project]
	b.approved[project] = time.Now().Add(b.opts.Approval)
	delete(b.held, project)
	b.save()
	b.log.Warn("deletion approved", zap.String(syncer.LogProject, project), zap.Bool("was_held", held),
		zap.Int64("deleting", h.Deleting), zap.Duration("for", b.opts.Approval))
	return h, held
}

// Projects lists the held projects' names; none for a nil Brake.
func (b *Brake) Projects() []string {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Sorted(maps.Keys(b.held))
}

// Held lists the projects waiting for approval; none for a nil Brake.
func (b *Brake) Held() []Hold {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Hold, 0, len(b.held))
	for _, p := range slices.Sorted(maps.Keys(b.held)) {
		out = append(out, b.held[p])
	}
	return out
}
