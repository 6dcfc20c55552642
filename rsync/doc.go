// Package rsync runs the rsync binary for a set of scopes: it builds the
// argument list (never a shell line; metadata kept with -X -A --sparse,
// xattr kinds the backup does not take filtered out), streams stderr to the log, parses
// --stats and classifies exit codes into transient and permanent failures.
// Each invocation displaces what it overwrites or deletes into a trash
// directory of its own (--backup-dir=<trash>/<stamp>), recorded by
// versions.Record on a local backup. It also lists and prunes the backup
// beneath its root (the trash's versions by age and size, and the oldest
// first when a local backup is short of room: KeepTrash),
// locally or over ssh.
//
// It is the only package that executes rsync. It imports the root package,
// versions, internal helpers and zap, never another pipeline package.
package rsync
