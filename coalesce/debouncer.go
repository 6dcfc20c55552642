package coalesce

import (
	"slices"
	"sort"
	"time"

	"github.com/syncer/syncer"
)

// Defaults for Options. The quiet period is short because lag is what users
// see; the max delay bounds how often a directory that never goes quiet (a
// render writing frames, a file being streamed) is copied.
const (
	DefaultQuiet       = 50 * time.Millisecond
	DefaultMaxDelay    = 10 * time.Second
	DefaultMaxChildren = 128
	DefaultMaxPending  = 4096
)

// Options tune a Debouncer; zero values mean the defaults.
type Options struct {
	// Quiet is how long a directory must see no event before it is due.
	Quiet time.Duration
	// MaxDelay is how long after its first event a directory is due even if
	// events keep coming.
	MaxDelay time.Duration
	// MaxChildren is how many pending subdirectories of one directory are
	// kept apart; one more collapses them into the directory, recursive.
	MaxChildren int
	// MaxPending is how many pending directories one project may have; one
	// more collapses the whole project into one recursive scope.
	MaxPending int
}

func (o Options) withDefaults() Options {
	if o.Quiet <= 0 {
		o.Quiet = DefaultQuiet
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.MaxDelay < o.Quiet {
		o.MaxDelay = o.Quiet
	}
	if o.MaxChildren <= 0 {
		o.MaxChildren = DefaultMaxChildren
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	return o
}

// Pending is a directory that became due: the scope to sync, why, when its
// first event was seen, and the tokens (e.g. acknowledgements) of every event
// merged into it.
type Pending[T any] struct {
	Scope  syncer.Scope
	Reason syncer.Reason
	First  time.Time
	Last   time.Time
	Tokens []T
	// Open are the files below Scope still open for writing, as the latest
	// event on each part of Scope reported them (syncer.DirEvent.Open).
	Open map[string]bool
	// Moves are the directory moves of the events merged, in order, renames
	// in a row folded into one (syncer.ThenMoves).
	Moves []syncer.Move
}

// setOpen applies what an event on s says: exactly open are open below s.
func (p *Pending[T]) setOpen(s syncer.Scope, open []string) {
	for f := range p.Open {
		if s.HasFile(f) {
			delete(p.Open, f)
		}
	}
	p.addOpen(open)
}

func (p *Pending[T]) addOpen(open []string) {
	if len(open) > 0 && p.Open == nil {
		p.Open = make(map[string]bool, len(open))
	}
	for _, f := range open {
		p.Open[f] = true
	}
}

// OpenFiles lists Open, sorted.
func (p *Pending[T]) OpenFiles() []string {
	if len(p.Open) == 0 {
		return nil
	}
	out := make([]string, 0, len(p.Open))
	for f := range p.Open {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

func (p *Pending[T]) merge(q *Pending[T]) {
	if q.First.Before(p.First) {
		p.First = q.First
	}
	p.Tokens = append(p.Tokens, q.Tokens...)
	for f := range q.Open {
		p.addOpen([]string{f})
	}
	p.Moves = syncer.ThenMoves(slices.Clone(q.Moves), p.Moves...) // q's came first
}

// Debouncer merges directory events until they are due. It is not safe for
// concurrent use: one goroutine owns it.
type Debouncer[T any] struct {
	opts     Options
	pending  map[string]*Pending[T] // by Dir; at most one scope per dir
	children map[string]int         // pending direct subdirectories per dir
	projects map[string]int         // pending dirs per project
}

// NewDebouncer returns an empty Debouncer.
func NewDebouncer[T any](opts Options) *Debouncer[T] {
	return &Debouncer[T]{
		opts:     opts.withDefaults(),
		pending:  map[string]*Pending[T]{},
		children: map[string]int{},
		projects: map[string]int{},
	}
}

// Len is the number of pending directories.
func (d *Debouncer[T]) Len() int { return len(d.pending) }

// Add records an event, seen at ev.At. It merges into a pending scope that
// covers it, absorbs pending scopes it covers, and collapses to the parent or
// the project when the limits are passed.
func (d *Debouncer[T]) Add(ev syncer.DirEvent, tok ...T) {
	s, now := ev.Scope, ev.At
	// A pending recursive scope on the dir or an ancestor absorbs the event.
	for dir := s.Dir; ; dir = syncer.Parent(dir) {
		if p, ok := d.pending[dir]; ok && p.Scope.Covers(s) {
			if now.After(p.Last) {
				p.Last = now
			}
			if now.Before(p.First) {
				p.First = now
			}
			p.Tokens = append(p.Tokens, tok...)
			p.setOpen(s, ev.Open)
			p.Moves = syncer.ThenMoves(p.Moves, ev.Moves...)
			return
		}
		if dir == "" {
			break
		}
	}
	p := &Pending[T]{Scope: s, Reason: ev.Reason, First: now, Last: now, Tokens: tok, Moves: ev.Moves}
	if old, ok := d.pending[s.Dir]; ok { // the same dir, not covering: s is recursive
		d.remove(old)
		p.merge(old)
	}
	if s.Recursive {
		d.absorb(p)
	}
	if ev.Reason == syncer.ReasonMove {
		// What was pending on the moved directory's old paths moved with
		// it: those syncs are this one's. Not what moved in there since
		// (a swap through a temporary name reuses the names).
		for _, m := range ev.Moves {
			for dir, q := range d.pending {
				if (dir == m.From || syncer.IsAncestor(m.From, dir)) && len(q.Moves) == 0 {
					d.remove(q)
					p.merge(q)
				}
			}
			for f := range p.Open {
				if syncer.IsAncestor(m.From, f) {
					delete(p.Open, f) // written still, under its new name
					p.Open[m.To+f[len(m.From):]] = true
				}
			}
		}
	}
	p.setOpen(s, ev.Open)
	d.insert(p)
	if s.Dir != "" && d.children[syncer.Parent(s.Dir)] > d.opts.MaxChildren {
		d.collapse(syncer.Parent(s.Dir), syncer.ReasonCollapse, now)
	}
	if prj := syncer.Project(s.Dir); d.projects[prj] > d.opts.MaxPending {
		d.collapse(prj, syncer.ReasonCollapse, now)
	}
}

// collapse replaces every pending scope on or below dir by dir, recursive.
func (d *Debouncer[T]) collapse(dir string, r syncer.Reason, now time.Time) {
	p := &Pending[T]{Scope: syncer.Scope{Dir: dir, Recursive: true}, Reason: r, First: now, Last: now}
	if old, ok := d.pending[dir]; ok {
		d.remove(old)
		p.merge(old)
	}
	d.absorb(p)
	d.insert(p)
}

// absorb removes the pending scopes strictly below p's dir, merging their
// first-seen times and tokens into p.
func (d *Debouncer[T]) absorb(p *Pending[T]) {
	for dir, q := range d.pending {
		if syncer.IsAncestor(p.Scope.Dir, dir) {
			d.remove(q)
			p.merge(q)
		}
	}
}

func (d *Debouncer[T]) insert(p *Pending[T]) {
	d.pending[p.Scope.Dir] = p
	if p.Scope.Dir != "" {
		d.children[syncer.Parent(p.Scope.Dir)]++
	}
	d.projects[syncer.Project(p.Scope.Dir)]++
}

func (d *Debouncer[T]) remove(p *Pending[T]) {
	delete(d.pending, p.Scope.Dir)
	if p.Scope.Dir != "" {
		parent := syncer.Parent(p.Scope.Dir)
		if d.children[parent]--; d.children[parent] <= 0 {
			delete(d.children, parent)
		}
	}
	prj := syncer.Project(p.Scope.Dir)
	if d.projects[prj]--; d.projects[prj] <= 0 {
		delete(d.projects, prj)
	}
}

func (d *Debouncer[T]) due(p *Pending[T]) time.Time {
	q, m := p.Last.Add(d.opts.Quiet), p.First.Add(d.opts.MaxDelay)
	if m.Before(q) {
		return m
	}
	return q
}

// Due removes and returns the scopes that are due at now: quiet for Quiet,
// or first seen MaxDelay ago. Oldest first.
func (d *Debouncer[T]) Due(now time.Time) []Pending[T] {
	var out []Pending[T]
	for _, p := range d.pending {
		if !d.due(p).After(now) {
			out = append(out, *p)
		}
	}
	for i := range out {
		d.remove(d.pending[out[i].Scope.Dir])
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].First.Equal(out[j].First) {
			return out[i].First.Before(out[j].First)
		}
		return out[i].Scope.Dir < out[j].Scope.Dir
	})
	return out
}

// Next reports when the earliest pending scope becomes due; false when none is pending.
func (d *Debouncer[T]) Next() (time.Time, bool) {
	var next time.Time
	for _, p := range d.pending {
		if t := d.due(p); next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next, !next.IsZero()
}

// Restore puts back scopes returned by Due that could not be handed on (a
// failed publish), with their first-seen times and tokens.
func (d *Debouncer[T]) Restore(ps []Pending[T]) {
	for _, p := range ps {
		d.Add(syncer.DirEvent{Scope: p.Scope, Reason: p.Reason, At: p.First, Open: p.OpenFiles(), Moves: p.Moves}, p.Tokens...)
	}
}
