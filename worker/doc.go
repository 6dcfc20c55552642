// Package worker runs the pool that turns delivered jobs into sync runs. It
// owns the decisions that follow a run, in one place: Ack on success, Nak
// with a growing delay on a transient failure or while files are still
// being written, Term when the failure is permanent or retries are
// exhausted; and it stores what follows (Sink): the result of every settled
// job, the dead letter of a given-up one, the follow-up of a run that saw
// files vanish. It keeps overlapping scopes from running at once through a
// Locker, batches available jobs into one run, and leaves out the files the
// watcher sees being written (OpenFiles). Before a run syncs, it makes the
// directory moves of its jobs that land in their scopes (a Mover), holding
// a lock on each move's old path too; the job of the directory a move left
// keeps the old path for it; a move not made is copied by the sync, and
// its old path's parent is queued again.
//
// It imports the root package and zap only: the queue reaches it as a
// Source of syncer.Delivery values and a Sink, the copier and rsync as a
// syncer.Syncer and a syncer.Mover.
package worker
