package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/moby/sys/mountinfo"
	"github.com/syncer/syncer"
)

// Options configure a Guard.
type Options struct {
	// Source and Dest are the tree roots.
	Source, Dest string
	// Marker, when set, is a file name that must exist in the source root.
	Marker string
	// RequireMount makes the source root have to be a mount point, and
	// stay the filesystem it was at start.
	RequireMount bool
	// IgnoreDest are names in the backup root that do not make it "not
	// empty" (the trash).
	IgnoreDest []string
	// ListDest lists the backup root's names when it is not a local
	// directory (a remote backup); nil reads Dest.
	ListDest func() ([]string, error)
	// IdentityFile, when set, is where the source root's identity is
	// recorded at the first healthy check; every later check requires the
	// same root (Identity.Same) until Accept records another.
	IdentityFile string
	// OnResume, when set, is called when a check passes after one failed:
	// what was held while the source was away needs a reconcile.
	OnResume func()
	Logger   *zap.Logger // nil: no logs
}

// TrippedError says why deleting is not safe now. It matches
// syncer.ErrPaused with errors.Is.
type TrippedError struct{ Reason string }

func (e *TrippedError) Error() string { return "deletion guard: " + e.Reason }

// Is makes errors.Is(err, syncer.ErrPaused) true.
func (e *TrippedError) Is(target error) bool { return target == syncer.ErrPaused }

// Guard checks the source before deleting runs. It is safe for concurrent use.
type Guard struct {
	opts Options
	dev  atomic.Uint64 // the source mount's device, once seen mounted (RequireMount)

	mu     sync.Mutex
	paused string // why the last check failed, "" when it passed

	idMu     sync.Mutex
	recorded *Identity // loaded at the first check
}

// New returns a Guard; it checks nothing yet.
func New(opts Options) *Guard {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Guard{opts: opts}
}

// Check returns nil when deletions may proceed, a *TrippedError otherwise.
// It logs when its verdict changes.
func (g *Guard) Check() error {
	err := g.check()
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	g.mu.Lock()
	was := g.paused
	g.paused = reason
	g.mu.Unlock()
	switch {
	case reason != "" && was != reason:
		g.opts.Logger.Error("every project paused: nothing is synced or deleted until the source is back", zap.Error(err))
	case reason == "" && was != "":
		g.opts.Logger.Info("source healthy again: projects resumed", zap.String("was", was))
		if g.opts.OnResume != nil {
			g.opts.OnResume()
		}
	}
	return err
}

// Paused says why the last check failed, "" when it passed.
func (g *Guard) Paused() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// Gate decides which scopes of a run may go now: none while the guard is
// tripped (every run may delete, so none may start from a source that
// vanished), not those of the projects an operator paused, not those of
// the projects whose deletions wait for approval (Brake). A worker asks
// before it moves or syncs anything.
type Gate struct {
	Guard  *Guard
	Pauses *Pauses // nil: no pauses
	Brake  *Brake  // nil: no brake
}

// Admit returns the scopes that must wait, and why: an error matching
// syncer.ErrPaused, or a transient one when the brake could not count.
// It returns nil, nil when every scope may run. files are the run's
// syncer.Hints.Files: the brake counts a scope they name among those files.
func (g Gate) Admit(ctx context.Context, scopes []syncer.Scope, files map[string][]string) ([]syncer.Scope, error) {
	if err := g.Guard.Check(); err != nil {
		return scopes, err
	}
	held, paused := g.Pauses.Check(scopes)
	if g.Brake == nil {
		if paused == nil {
			return nil, nil
		}
		return held, paused
	}
	rest := slices.DeleteFunc(slices.Clone(scopes), func(s syncer.Scope) bool { return slices.Contains(held, s) })
	if len(rest) == 0 {
		return held, paused
	}
	braked, why, err := g.Brake.Check(ctx, rest, files)
	if err != nil {
		return scopes, transient{err}
	}
	switch {
	case why == nil && paused == nil:
		return nil, nil
	case why == nil:
		return held, paused
	case paused == nil:
		return braked, why
	}
	return append(held, braked...), errors.Join(paused, why)
}

// Whole is a Syncer that syncs its scopes whole (rsync) after a sync that
// looked only at the files a run named has declined them (copier.Syncer's
// fallback): the run was admitted with those scopes' deletions counted
// among the named files alone, so each of them (h.Files) is admitted again,
// counted whole, before Next deletes anything else in it. Those held wait
// (a syncer.ScopeError matching syncer.ErrPaused); the others are synced.
type Whole struct {
	Gate Gate
	Next syncer.Syncer
}

// Sync admits the named scopes counted whole and syncs what may go.
func (w Whole) Sync(ctx context.Context, scopes []syncer.Scope, h syncer.Hints) (syncer.Stats, error) {
	var named []syncer.Scope
	for _, s := range scopes {
		if _, ok := h.Files[s.Dir]; ok && !s.Recursive {
			named = append(named, s)
		}
	}
	if len(named) == 0 {
		return w.Next.Sync(ctx, scopes, h)
	}
	held, why := w.Gate.Admit(ctx, named, nil)
	if len(held) == 0 {
		return w.Next.Sync(ctx, scopes, h)
	}
	if why == nil {
		why = syncer.ErrPaused
	}
	rest := slices.DeleteFunc(slices.Clone(scopes), func(s syncer.Scope) bool { return slices.Contains(held, s) })
	if len(rest) == 0 {
		return syncer.Stats{}, why
	}
	st, err := w.Next.Sync(ctx, rest, h)
	var part *syncer.ScopeError
	var open *syncer.OpenFilesError
	switch {
	case err == nil:
		err = &syncer.ScopeError{Scopes: held, Err: why}
	case errors.As(err, &part):
		// Retried with the scopes that failed, and admitted again then.
		err = &syncer.ScopeError{Scopes: append(slices.Clone(part.Scopes), held...), Err: part.Err}
	case errors.As(err, &open):
		err = errors.Join(err, &syncer.ScopeError{Scopes: held, Err: why})
	}
	return st, err
}

// Paused says what holds every project (the guard) or some (an
// operator's pause), "" when nothing does.
func (g Gate) Paused() string {
	if why := g.Guard.Paused(); why != "" {
		return why
	}
	if ps := g.Pauses.List(); len(ps) > 0 {
		return ps[0].String()
	}
	return ""
}

// Holds reports whether project's jobs wait for an operator's resume or
// for approval; the root's ("") waits while any project's does.
func (g Gate) Holds(project string) bool {
	if g.Pauses.Holds(project) {
		return true
	}
	held := g.Brake.Projects()
	return project == "" && len(held) > 0 || slices.Contains(held, project)
}

// transient marks a failure worth retrying.
type transient struct{ error }

func (transient) Transient() bool { return true }
func (t transient) Unwrap() error { return t.error }

func (g *Guard) check() error {
	src := g.opts.Source
	fi, err := os.Stat(src)
	switch {
	case err != nil:
		return &TrippedError{fmt.Sprintf("source root %s is not reachable: %v", src, err)}
	case !fi.IsDir():
		return &TrippedError{fmt.Sprintf("source root %s is not a directory", src)}
	}

	if g.opts.RequireMount {
		mounted, err := IsMountPoint(src)
		if err != nil {
			return &TrippedError{fmt.Sprintf("read mounts: %v", err)}
		}
		if !mounted {
			return &TrippedError{fmt.Sprintf("source root %s is not a mount point (require_mount)", src)}
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if st != nil {
			// The first filesystem seen mounted is the expected one.
			g.dev.CompareAndSwap(0, uint64(st.Dev))
			if dev := g.dev.Load(); uint64(st.Dev) != dev {
				return &TrippedError{fmt.Sprintf("source root %s is another filesystem than before (device %d, was %d)", src, st.Dev, dev)}
			}
		}
	}
	if g.opts.Marker != "" {
		if _, err := os.Lstat(filepath.Join(src, g.opts.Marker)); err != nil {
			return &TrippedError{fmt.Sprintf("marker file %s missing in the source root", g.opts.Marker)}
		}
	}
	srcEmpty, err := empty(src, nil)
	if err != nil {
		return &TrippedError{fmt.Sprintf("read source root: %v", err)}
	}
	if srcEmpty {
		dstEmpty, err := g.destEmpty()
		if err == nil && !dstEmpty {
			return &TrippedError{fmt.Sprintf("source root %s is empty but the backup is not", src)}
		}
	}
	if g.opts.IdentityFile != "" {
		id, err := g.checkIdentity()
		if err != nil {
			return err
		}
		return g.recordFirst(id)
	}
	return nil
}

// checkIdentity says what the source root is now, and trips when it is not
// what was recorded.
func (g *Guard) checkIdentity() (Identity, error) {
	src := g.opts.Source
	now, err := Identify(src)
	if err != nil {
		return now, &TrippedError{fmt.Sprintf("identify source root %s: %v", src, err)}
	}
	g.idMu.Lock()
	defer g.idMu.Unlock()
	if g.recorded == nil {
		rec, ok, err := loadIdentity(g.opts.IdentityFile)
		if err != nil {
			return now, &TrippedError{err.Error()}
		}
		if !ok {
			return now, nil // recorded once the rest of the check passes
		}
		if rec.Path != "" && rec.Path != src {
			// Another source in the config: another tree, not a swapped
			// volume (the deletion brake still holds a mass deletion).
			g.opts.Logger.Warn("source changed in the config: its identity is recorded anew", zap.String("was", rec.Path),
				zap.String("source", src))
			return now, nil
		}
		g.recorded = &rec
	}
	if !g.recorded.Same(now) {
		return now, &TrippedError{fmt.Sprintf("source root %s is not the filesystem recorded at first start (was %s, now %s): "+
			"if the new one is right, run `syncer resume --accept-source`", src, g.recorded, now)}
	}
	return now, nil
}

// recordFirst records id when no identity is recorded yet: the first
// check that finds the source healthy.
func (g *Guard) recordFirst(id Identity) error {
	g.idMu.Lock()
	defer g.idMu.Unlock()
	if g.recorded != nil {
		return nil
	}
	return g.record(id)
}

// record saves id as the source's identity; g.idMu is held.
func (g *Guard) record(id Identity) error {
	id.Recorded = time.Now().UTC()
	if err := saveJSON(g.opts.IdentityFile, id); err != nil {
		return &TrippedError{fmt.Sprintf("record the source's identity in %s: %v", g.opts.IdentityFile, err)}
	}
	g.recorded = &id
	g.opts.Logger.Info("source identity recorded", zap.String("source", g.opts.Source), zap.String("identity", id.String()),
		zap.String("file", g.opts.IdentityFile))
	return nil
}

// Accept records the source root as it is now as the one to sync: after a
// deliberate change of volume. The next check resumes the projects.
func (g *Guard) Accept() (Identity, error) {
	id, err := Identify(g.opts.Source)
	if err != nil {
		return id, fmt.Errorf("identify source root %s: %w", g.opts.Source, err)
	}
	g.idMu.Lock()
	defer g.idMu.Unlock()
	was := g.recorded
	if err := g.record(id); err != nil {
		return id, err
	}
	if was != nil {
		g.opts.Logger.Warn("source identity accepted", zap.String("was", was.String()), zap.String("now", id.String()))
	}
	return id, nil
}

func (g *Guard) destEmpty() (bool, error) {
	if g.opts.ListDest == nil {
		return empty(g.opts.Dest, g.opts.IgnoreDest)
	}
	names, err := g.opts.ListDest()
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if !contains(g.opts.IgnoreDest, n) {
			return false, nil
		}
	}
	return true, nil
}

// empty reports whether dir holds no entries other than ignore.
func empty(dir string, ignore []string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(8)
		for _, n := range names {
			if !contains(ignore, n) {
				return false, nil
			}
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// IsMountPoint reports whether path, with its symlinks resolved (a source
// configured as /data/prod -> /mnt/vol1), is a mount point: listed in
// /proc/self/mountinfo, which also sees bind mounts on the same device.
func IsMountPoint(path string) (bool, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false, err
	}
	return mountinfo.Mounted(real)
}

// unescape decodes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
