// Package syncer holds the domain of the syncer backup daemon: the values that
// travel through the pipeline (DirEvent, Job, Result, Delivery), the scope
// algebra that keeps rsyncs from overlapping, path validation for
// everything that enters from outside (CheckPath, Job.Check), the shared
// Backoff, and the small interfaces the packages share (Syncer).
//
// The pipeline is
//
//	watcher ─► EVENTS ─► coalesce ─► JOBS (work queue) ─► worker pool ─► copier / rsync ─► backup
//	reconcile (Runner, Scheduler) ───┘
//
// The pipeline packages (watcher, queue, coalesce, worker, rsync, copier,
// reconcile, guard, diag) import this package, internal helpers and
// third-party code, never each other; config derives each one's options and
// cmd/syncer wires them. This package imports the standard library only.
package syncer
