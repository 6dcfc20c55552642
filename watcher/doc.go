// Package watcher turns inotify events (through fsnotify) on a source tree
// into directory events: which directory's entries changed, or which new
// subtree appeared. It watches every directory (fsnotify is not recursive),
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
// It imports the root package, internal helpers, fsnotify and zap, never
// another pipeline package.
package watcher
