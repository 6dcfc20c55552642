// Package watcher turns filesystem events on a source tree into directory
// events: which directory's entries changed, or which new subtree
// appeared. It has two backends (Options.Backend; auto picks the first
// that works).
//
// fanotify: one FAN_MARK_FILESYSTEM mark on the source's filesystem reports
// every create, delete, rename (FAN_RENAME, both names and the moved
// object's handle in one event), write, close-after-write and attribute
// change, each with its directory's file handle and the entry's name: no
// per-directory watch, no start-up walk, no watch limit. Handles become
// paths with open_by_handle_at against the root, cached per directory
// ("outside the tree" included, so that other writers on the filesystem
// cost a map lookup) until a directory is renamed. A file's first write is
// looked at once; FAN_CLOSE_WRITE then says when it is done. It needs
// CAP_SYS_ADMIN, Linux 5.17 and a filesystem with file handles and a
// unique id (not NFS, SMB, FUSE or a btrfs subvolume: FanotifyError says
// which).
//
// inotify (through fsnotify): it watches every directory (inotify is not recursive),
// adds watches to new directories before walking them (files created before
// a watch exists are never reported), drops the watches of removed or
// renamed directories, and follows files still open for writing until they
// are closed (DirEvent.Open, OpenBelow).
//
// A directory renamed within the tree is a move (DirEvent.Moves), on the
// moved directory's recursive event and on the event of the parent it
// left. The two halves are paired by the directory's identity (device and
// inode, read when it was watched), not by inotify's cookie, which fsnotify
// hides: identity also pairs what the cookie cannot, a directory moved into
// a new one before the new one was watched (seen inside it by the walk,
// either before or after the old name's rename is reported), and renames
// in a row fold into one move from the first name to the last.
//
// What it cannot report it says through one callback, Options.OnLost, with
// the affected subtree: everything after a kernel queue overflow or when the
// root is replaced (a remount: Run then watches the new root), a directory
// that cannot be watched (at once, then every UnwatchedEvery), the project
// of an event that could not be stored. NetworkFS says when the tree is on a
// filesystem where inotify sees only this host's writes.
//
// Both backends report moves, new directories, open files, excludes and a
// replaced root the same way, and a kernel queue overflow as everything lost.
//
// It imports the root package, internal helpers, fsnotify, x/sys/unix and
// zap, never another pipeline package.
package watcher
