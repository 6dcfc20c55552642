// Package watcher turns inotify events (through fsnotify) on a source tree
// into directory events: which directory's entries changed, or which new
// subtree appeared. It watches every directory (fsnotify is not recursive),
// adds watches to new directories before walking them (files created before
// a watch exists are never reported), drops the watches of removed or
// renamed directories, and reports a kernel queue overflow as an event that
// asks for a reconcile. NetworkFS says when the tree is on a filesystem
// where inotify sees only this host's writes.
//
// It imports the root package, fsnotify and zap, never another syncer package.
package watcher
