// Package copier creates subtrees that do not exist on the backup at all,
// the first copy of a project or a new directory, by copying them directly
// with bounded parallelism and in-kernel copies (copy_file_range), keeping
// what rsync -a --numeric-ids keeps: types, permissions, numeric owners,
// nanosecond mtimes (symlinks' too), symlink targets, devices, fifos and
// sockets. Hard links, ACLs and xattrs are not kept: with rsync options that
// ask for them, the copier is not used.
//
// It is an accelerator for one case, not a second sync path: it never
// deletes and never compares; anything that already exists on the backup is
// rsync's, and a copy interrupted half-way is completed by rsync on the next
// run, because the directory then exists.
//
// It imports the root package only.
package copier
