package syncer

import (
	"context"
	"time"
)

// Reason says why a directory needs a sync. It travels with events and jobs
// and ends up in logs and metrics labels, so the set is small and fixed.
type Reason string

// Reasons.
const (
	ReasonChange    Reason = "change"    // entries of a watched directory changed
	ReasonNewDir    Reason = "new-dir"   // a directory appeared (created or moved in): sync it whole
	ReasonMove      Reason = "move"      // a directory moved within the tree: move it on the backup, then sync it whole
	ReasonCollapse  Reason = "collapse"  // many pending descendants were merged into one subtree
	ReasonReconcile Reason = "reconcile" // planned by a full-walk reconcile
	ReasonVanished  Reason = "vanished"  // files vanished during the last rsync: look again
	ReasonRetry     Reason = "retry"     // a dead-lettered job put back by an operator
)

// DirEvent says that the entries of Scope.Dir (and, when Scope.Recursive, of
// everything below it) changed at At. The watcher produces them; the
// coalescer consumes them.
type DirEvent struct {
	Scope  Scope
	Reason Reason
	At     time.Time
	// Open lists the files below Scope (paths relative to the source root)
	// that were still open for writing at At. The event speaks for its whole
	// scope: a file it does not list is not open. The watcher sends another
	// event for each one once it is closed.
	Open []string
	// Moves are the directory moves that made this change, in the order
	// they happened (see Job.Moves).
	Moves []Move
}

// Move is a directory of the source moved from one path to another
// (relative to the source root), seen as the same directory (Ino) at both.
// On the backup it is a rename, not a deletion and a copy.
type Move struct {
	From, To string
	Ino      uint64 // the source directory's inode
}

// Job asks a worker to make the backup of Scope equal to the source. One job
// covers one scope; workers may batch several jobs into one rsync.
type Job struct {
	ID     string
	Scope  Scope
	Reason Reason
	// FirstEvent is when the oldest change this job covers was seen; the
	// replication lag of the job is measured from it.
	FirstEvent time.Time
	// Open lists files below Scope still open for writing when the job was
	// made (DirEvent.Open): copying them now would copy half a file and
	// then all of it again once written. They are left as they are on the backup; the
	// watcher makes another job for each once it is closed.
	Open []string
	// Files, set by a reconcile on a non-recursive scope, are the regular
	// files of Scope.Dir (paths relative to the source root) that it found
	// new, changed, or on the backup only (to delete) when nothing else
	// there differed. The job covers only them and the directory's own
	// attributes, so a worker need not list the whole directory again. Such a job travels apart from the jobs
	// that cover a whole directory and never replaces one.
	Files []string
	// Verify, set by a reconcile, are regular files of Scope.Dir that are
	// equal to their backup by size and mtime but were rewritten since
	// they were synced (their ctime or inode moved, see package index):
	// their contents are compared, and copied where they differ.
	Verify []string
	// Moves, in the order they happened, are made on the backup before a
	// recursive Scope they land in is synced, each where the backup still
	// has what was synced at its From and the source has the same
	// directory at its To; one that cannot be made is left to the sync,
	// which copies. A worker locks each From too. A move that does not
	// land in Scope rides on the job of the directory it left: that sync
	// leaves its From for the move. Such a job is never replaced by one
	// without its moves.
	Moves []Move
}

// Stats are what one rsync run moved, parsed from its --stats output.
type Stats struct {
	Files   int64 // regular files transferred
	Bytes   int64 // bytes of file data transferred
	Deleted int64 // entries deleted on the backup
	// Dropped counts extended attributes and ACLs of synced entries that
	// the backup's filesystem would not take (no support for their kind,
	// or a value larger than it keeps).
	Dropped int64
	// Moved counts directories moved on the backup (Job.Moves), and
	// MovedBytes the bytes of the regular files in them: what a copy
	// would have written.
	Moved, MovedBytes int64
	// Vanished is set when source files disappeared during the run (rsync
	// exit 24): the run succeeded, but its scopes deserve another look.
	Vanished bool
}

// Add accumulates o into s.
func (s *Stats) Add(o Stats) {
	s.Files += o.Files
	s.Bytes += o.Bytes
	s.Deleted += o.Deleted
	s.Dropped += o.Dropped
	s.Moved += o.Moved
	s.MovedBytes += o.MovedBytes
	s.Vanished = s.Vanished || o.Vanished
}

// Result reports the end of one job. Workers publish one when a job is
// acknowledged (OK) or given up (not OK); a job that will be retried
// produces no result.
type Result struct {
	Job Job // the job settled; the lag is measured from its FirstEvent
	// Run identifies the rsync run that settled the job; the jobs of one
	// batch share it, and Stats, which are the whole run's.
	Run      string
	OK       bool
	Started  time.Time // when the rsync that covered the job started
	Finished time.Time
	ExitCode int
	Error    string
	Stats    Stats // of the whole run, see Run
}

// Named reports whether the job named its files (Job.Files): it covered
// only those, not the whole directory.
func (r Result) Named() bool { return len(r.Job.Files) > 0 }

// Syncer replicates the given scopes from the source tree to the backup tree.
//
// Sync must be idempotent: running it twice leaves the backup as running it
// once. It is safe for concurrent use, but callers never run two Syncs on
// overlapping scopes at once (see Scope.Overlaps). The scopes of one call
// may overlap each other: Sync runs them one after the other, never at
// once. A returned error may implement interface{ Transient() bool } to ask
// for a retry.
type Syncer interface {
	Sync(ctx context.Context, scopes []Scope, h Hints) (Stats, error)
}

// Mover makes directory moves on the backup (see Job.Moves) before the
// scopes they land in are synced.
type Mover interface {
	// Move renames m.From to m.To on the backup where it still holds what
	// was synced from the moved directory, and reports whether it did and
	// the bytes of the regular files it moved. Not moving is no error:
	// the sync of m.To copies instead.
	Move(ctx context.Context, m Move) (moved bool, bytes int64, err error)
}

// Hints are what the jobs of one Sync call say beyond their scopes.
type Hints struct {
	// Open lists files still being written (paths relative to the source
	// root, see Job.Open): they are neither copied nor deleted.
	Open []string
	// Files maps the Dir of a non-recursive scope to the only files that
	// need a look there, besides the directory's own attributes (see
	// Job.Files). A Syncer may ignore it and compare the whole directory.
	Files map[string][]string
	// Verify lists files whose contents must be compared, not judged by
	// size and mtime (see Job.Verify).
	Verify []string
}

// Acker mirrors JetStream's acknowledgement verbs. Exactly one of Ack, Nak or
// Term ends a delivery; InProgress extends its lease and may be called any
// number of times before that.
type Acker interface {
	Ack() error
	Nak(delay time.Duration) error
	Term() error
	InProgress() error
}

// Delivery is a job handed to a worker together with the handle that settles it.
type Delivery struct {
	Job Job
	// Attempt counts deliveries of this message, starting at 1.
	Attempt int
	// Pending is how many more jobs were waiting when this one was
	// delivered (0 when unknown); workers use it to share a backlog.
	Pending int
	Acker
}
