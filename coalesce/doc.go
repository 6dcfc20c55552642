// Package coalesce is the debouncer between file-system events and rsync
// jobs. Its core, Debouncer, is pure (time is passed in, no goroutines, no
// I/O): it merges events per directory, waits for a quiet period or a
// maximum delay, and collapses many pending directories into one subtree so
// that memory and the number of rsyncs stay bounded in an event storm.
// Directory moves (syncer.Move) ride on the pending directories in order,
// folded (syncer.ThenMoves), and a move takes along what was pending on
// the moved directory's old paths.
// Coalescer is the thin loop around it that reads events (Consume, from the
// EVENTS stream), publishes jobs and acknowledges events only after the jobs
// covering them are published.
//
// It imports the root package and zap only.
package coalesce
