// Package copier is syncer's in-kernel copy path on a local backup, in front
// of rsync for the two cases where rsync's cost is all overhead:
//
//   - Copy creates a subtree that does not exist on the backup at all (the
//     first copy of a project, a new directory): nothing to compare,
//     nothing to delete.
//   - SyncFlat makes one directory's entries equal: new and changed
//     regular files and symlinks, new subdirectories (made empty),
//     subdirectories' attributes, and deletions (each entry moved whole
//     into the trash with one renameat), and reports whether that was all
//     that differed, so that the run needs no rsync.
//
// Syncer puts both in front of another syncer.Syncer (rsync), which gets
// only what they leave: the daemon's syncer for a local backup.
//
// Mover renames a moved directory on the backup (syncer.Mover): one
// renameat2 beneath the root instead of a deletion and a copy, where the
// index (package index) says the backup's directory was synced from the
// one that moved, or where a move into its place put it aside in the
// trash (a swap of names, made in either order).
//
// Copies use copy_file_range (sendfile between filesystems), with bounded
// parallelism, and keep what rsync -aXA --sparse --numeric-ids keeps:
// types, permissions, numeric owners, nanosecond mtimes (symlinks' too),
// symlink targets, devices, fifos and sockets, extended attributes and
// POSIX ACLs (Options.Keep, on descriptors: internal/xattr), and the
// holes of sparse files (Options.Sparse: SEEK_DATA/SEEK_HOLE). Hard links
// are not kept: with them (or other rsync options) asked for, the copier
// is not used.
//
// It never resolves a path through a symlink: both trees are opened as
// osx.Root and every entry is reached beneath its root through directories
// only, created, linked and renamed through its open parent, with its
// attributes set on descriptors; what is copied is what fstat says the
// opened file is. A backup entry of the wrong type (a symlink planted where
// a directory belongs) is moved into the trash, never written through.
//
// What it replaces goes to the trash directory of its call (versions.Stamp
// of its start) with a manifest beside it (versions.Record), and the times
// of a parent its new directories changed are put back.
//
// It deletes only into the trash: with no trash (trash_retention 0) or a
// max_delete cap, deletions are rsync's, and so is anything it reports it
// did not do (type changes, devices and FIFOs). A copy interrupted
// half-way is completed by rsync on the next run.
//
// It imports the root package, index, versions and internal helpers only.
package copier
