package syncer

import (
	"errors"
	"fmt"
)

// ErrPaused means a job may not run now because deleting on the backup is
// not safe (the deletion guard tripped). The job waits; it is not a failure.
var ErrPaused = errors.New("project paused by the deletion guard")

// ErrBusy means an overlapping scope is being synced by another run, here or
// on another host: the job must wait.
var ErrBusy = errors.New("an overlapping scope is being synced")

// OpenFilesError is returned by a Sync that did everything else, but left
// out files it found still open for writing that it was not asked to skip:
// the jobs covering them must run again later. It is not a failure.
type OpenFilesError struct {
	Paths []string // relative to the source root
}

func (e *OpenFilesError) Error() string {
	return fmt.Sprintf("%d files still open for writing, left for later (%s...)", len(e.Paths), e.Paths[0])
}

// Covers reports whether s covers one of the files left out.
func (e *OpenFilesError) Covers(s Scope) bool {
	for _, p := range e.Paths {
		if s.HasFile(p) {
			return true
		}
	}
	return false
}

// ScopeError is returned by a Sync that synced its scopes except Scopes,
// which failed with Err: the jobs of the others are done.
type ScopeError struct {
	Scopes []Scope
	Err    error
}

func (e *ScopeError) Error() string {
	return fmt.Sprintf("%d of the run's scopes failed (%s...): %v", len(e.Scopes), e.Scopes[0], e.Err)
}

func (e *ScopeError) Unwrap() error { return e.Err }

// Has reports whether s is one of the scopes that failed.
func (e *ScopeError) Has(s Scope) bool {
	for _, x := range e.Scopes {
		if x == s {
			return true
		}
	}
	return false
}
