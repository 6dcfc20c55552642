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
