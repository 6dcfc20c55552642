// Package versions is the trash seen as history: every version of a file
// that a sync overwrote or deleted, kept under the time it was displaced,
// and the way back.
//
// Each run moves what it displaces to <trash>/<stamp>/<path>, the stamp
// being its start time (UTC, to the nanosecond: no version ever replaces
// another), and Record writes beside it <stamp>.versions, one line per
// version (kind, size, mtime, mode, path), so that List reads a small file
// per run instead of walking the trash. Old picks what retention and the
// size cap remove, oldest first; Usage says what removing a run gives
// back to the filesystem (inodes and blocks), for freeing a backup short
// of room. Restore brings a file, a directory or a
// project back as it was at a time: for each file, the first version
// displaced after that time, else the mirror's, never through a symlink,
// never over an existing file unless asked.
//
// It imports the root package and internal helpers only.
package versions
