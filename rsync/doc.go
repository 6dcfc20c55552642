// Package rsync runs the rsync binary for a set of scopes: it builds the
// argument list (never a shell line), streams stderr to the log, parses
// --stats and classifies exit codes into transient and permanent failures.
// It also lists and prunes the backup beneath its root (the trash's days,
// KeepTrash), locally or over ssh.
//
// It is the only package that executes rsync. It imports the root package
// and zap, never another syncer package.
package rsync
