// Package guard decides whether it is safe to let a sync delete on the
// backup. A backup is never wiped because the source vanished: before each
// run the source root must exist, be a directory, be the root recorded at
// the first healthy check (Identity: the filesystem's id, device, root
// inode and mount, kept in the state dir; a volume that failed to mount,
// a lazy unmount or another disk is refused until Accept), be the
// configured mount (when required), hold the marker file (when
// configured), and not be empty while the backup is not. Paused says what
// holds the runs.
//
// Pauses are the operator's (`syncer pause [PROJECT]`), kept in the state
// dir: a paused project's runs wait until it is resumed.
//
// The Brake holds, before anything is deleted, the runs that would delete
// more than a share of a project's entries on the backup (counted by the
// caller from the trees), the deletions of the last minutes included, until
// an operator approves; the other projects of the run go on.
//
// Gate puts the three in front of every run, before anything is moved or
// synced: the guard holds every scope, a pause its project's, the brake the
// projects whose deletions wait for approval; the root's scope waits with
// any of them, since its run syncs every project. A run's scope that names
// its files (a reconcile's, syncer.Hints.Files) has its deletions counted
// among those files, without a listing; Whole, in front of the rsync that
// syncs a directory whole, admits such a scope again counted whole.
//
// It imports the root package, zap and moby's mountinfo only.
package guard
