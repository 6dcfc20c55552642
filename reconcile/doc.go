// Package reconcile is the full-walk backstop and its schedule.
//
// Walk compares the source and the backup side by side with bounded
// concurrency (type, size, mtime to the nanosecond, mode, owner, symlink
// target, extended attributes and ACLs) and plans only the scopes that
// differ; with an index of synced files (package index) it also finds
// files rewritten keeping size and mtime (their ctime or inode moved),
// whose jobs then compare contents (syncer.Job.Verify), and records the
// files the index lacks: a directory whose entries
// differ becomes a non-recursive scope, a directory missing from the backup
// a recursive one, partitioned by size. A directory the source has at a
// new path with the inode the index recorded for a directory only the
// backup has (or for another one under a known name: a swap) moved while
// syncer was down: Plan.Moves, made by the job of its new path, carried
// by the job of the parent it left (held until the walk ends), so that
// the backup renames instead of copying. A file whose inode and ctime are
// those recorded has its attributes read on neither side. A directory
// whose backup side is as the index recorded it when last found equal
// (index.Clean) is compared with the index's records of its entries
// instead of the backup's, and not at all when its source side and every
// entry are as recorded too; a deep walk (Options.Deep, and every
// RunnerOptions.DeepEvery) reads every backup entry. Runner runs one reconcile: it
// walks, queues what differs while the walk goes on (the same JOBS queue and
// workers as watcher events: at once while fewer of its jobs wait than the
// workers run, else what piled up meanwhile as one batch when one of them
// settles), follows the jobs to their end through the
// results (Tracker) and keeps a Report of each; once the jobs are done it
// compares what they touched again and queues what still differs, taking
// a directory its sync certified (both sides as the sync's Clean says,
// its own attributes equal) as equal without reading it (Options.Kept).
// A job names the files that differ, new, changed or on the backup only,
// when nothing else in its directory does. Scheduler decides when
// reconciles run: at startup (waiting while the deletion guard refuses), on
// an interval with jitter (capped for a network filesystem), and on
// request, a set served by one walk, retried when it fails: lost events
// (Lost), a NATS failover once the cluster settles (Failover), the API.
//
// Deletions and Entries count, from the two trees, what a sync of some
// scopes would delete and what a project holds: the deletion brake's
// figures, known before rsync runs.
//
// It imports the root package, index, internal helpers and zap, never
// another pipeline package: its jobs go to a Publisher, the guard is a func.
package reconcile
