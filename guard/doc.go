// Package guard decides whether it is safe to let a sync delete on the
// backup. A backup is never wiped because the source vanished: before each
// run the source root must exist, be a directory, be the root recorded at
// the first healthy check (Identity: the filesystem's id, device, root
// inode and mount, kept in the state dir; a volume that failed to mount,
// a lazy unmount or another disk is refused until Accept), be the
// configured mount (when required), hold the marker file (when
// configured), and not be empty while the backup is not. Syncer puts the
// check in front of every run; Paused says what holds them.
//
// The Brake holds, before anything is deleted, the runs that would delete
// more than a share of a project's entries on the backup (counted by the
// caller from the trees), the deletions of the last minutes included, until
// an operator approves; the other projects of the run go on.
//
// It imports the root package and zap only.
package guard
