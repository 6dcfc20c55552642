// Package guard decides whether it is safe to let rsync delete on the
// backup. A backup is never wiped because the source vanished: before each
// run the source root must exist, be a directory, be the configured mount
// (when required) on the same filesystem as at start, hold the marker file
// (when configured), and not be empty while the backup is not. Syncer puts
// the check in front of every run; Paused says what holds them.
//
// It imports the root package and zap only.
package guard
