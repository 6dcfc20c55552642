package guard

import (
	"context"
	"fmt"
	"sort"
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
	// delete, per project, before anything is deleted.
	Count func(ctx context.Context, scopes []syncer.Scope) (map[string]int64, error)
	// Entries counts a project's entries on the backup.
	Entries func(ctx context.Context, project string) (int64, error)
	// Approval is how long an approval lets a project's deletions through.
	Approval time.Duration
	Logger   *zap.Logger // nil: no logs
}

// Brake holds the runs that would delete a large share of a project on
// the backup until an operator approves: an emptied project, a wrong rm
// -rf, a source that came back half restored. It is safe for concurrent use.
type Brake struct {
	opts BrakeOptions
	log  *zap.Logger

	mu       sync.Mutex
	held     map[string]Hold      // by project
	approved map[string]time.Time // by project: until when
}

// Hold is a project's deletion waiting for approval.
type Hold struct {
	Project  string    `json:"project"`
	Deleting int64     `json:"deleting"`
	Of       int64     `json:"of"`
	Since    time.Time `json:"since"`
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
	return &Brake{opts: opts, log: opts.Logger, held: map[string]Hold{}, approved: map[string]time.Time{}}
}

// Check counts what a sync of scopes would delete and returns the scopes of
// the projects that need approval first, with why. A project is released
// when a later check finds its deletions within bounds (the files came
// back) or it is approved.
func (b *Brake) Check(ctx context.Context, scopes []syncer.Scope) ([]syncer.Scope, *HeldError, error) {
	counts, err := b.opts.Count(ctx, scopes)
	if err != nil {
		return nil, nil, fmt.Errorf("count deletions: %w", err)
	}
	now := time.Now()
	var holds []Hold
	for _, p := range sortedKeys(counts) {
		n := counts[p]
		if n <= b.opts.Floor || b.isApproved(p, now) {
			b.release(p)
			continue
		}
		total, err := b.opts.Entries(ctx, p)
		if err != nil {
			return nil, nil, fmt.Errorf("count entries of %s: %w", p, err)
		}
		if float64(n) <= b.opts.Fraction*float64(total) {
			b.release(p)
			continue
		}
		holds = append(holds, b.hold(Hold{Project: p, Deleting: n, Of: total, Since: now}))
	}
	if len(holds) == 0 {
		return nil, nil, nil
	}
	var out []syncer.Scope
	for _, s := range scopes {
		for _, h := range holds {
			if s.Project() == h.Project {
				out = append(out, s)
				break
			}
		}
	}
	return out, &HeldError{Holds: holds}, nil
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
	return h
}

func (b *Brake) release(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.held[p]; ok {
		delete(b.held, p)
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
	b.log.Warn("deletion approved", zap.String(syncer.LogProject, project), zap.Bool("was_held", held),
		zap.Int64("deleting", h.Deleting), zap.Duration("for", b.opts.Approval))
	return h, held
}

// Held lists the projects waiting for approval.
func (b *Brake) Held() []Hold {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Hold, 0, len(b.held))
	for _, p := range sortedKeys(b.held) {
		out = append(out, b.held[p])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
