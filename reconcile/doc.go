// Package reconcile is the full-walk backstop. Plan walks the source and the
// backup side by side with bounded concurrency, compares metadata (type,
// size, mtime to the nanosecond, mode, owner, symlink target) and returns
// only the scopes that differ: a directory whose entries differ becomes a
// non-recursive scope, a directory missing from the backup a recursive one.
// The scopes go through the same JOBS queue and workers as watcher events;
// Tracker follows them to completion through the results subject.
//
// It imports the root package and zap only.
package reconcile
