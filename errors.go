package syncer

import "errors"

// ErrOverflow means the kernel dropped file-system events: what changed since
// the last good moment is unknown and a reconcile must find it.
var ErrOverflow = errors.New("event queue overflow: changes lost")

// ErrPaused means a job may not run now because deleting on the backup is
// not safe (the deletion guard tripped). The job waits; it is not a failure.
var ErrPaused = errors.New("project paused by the deletion guard")

// ErrBusy means an overlapping scope is being synced by another run, here or
// on another host: the job must wait.
var ErrBusy = errors.New("an overlapping scope is being synced")
