// Package worker runs the pool that turns delivered jobs into rsync runs. It
// owns the decisions that follow a run, in one place: Ack on success, Nak
// with a growing delay on a transient failure, Term when the failure is
// permanent or retries are exhausted. It keeps overlapping scopes from
// running at once through a Locker, and batches available jobs into one
// rsync.
//
// It imports the root package and zap only: the queue reaches it as a
// Source of syncer.Delivery values, rsync as a syncer.Syncer.
package worker
