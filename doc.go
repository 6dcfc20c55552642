// Package syncer holds the domain of the syncer backup daemon: the values that
// travel through the pipeline (DirEvent, Job, Result), the scope algebra that
// keeps rsyncs from overlapping, and the small interfaces the packages share.
//
// The pipeline is
//
//	watcher ─► EVENTS ─► coalesce ─► JOBS (work queue) ─► worker pool ─► rsync ─► backup
//	reconcile planner ───────────────┘
//
// The packages watcher, queue, coalesce, worker, rsync and reconcile import
// this package and third-party code, never each other; cmd/syncer wires them.
// This package imports the standard library only.
package syncer
