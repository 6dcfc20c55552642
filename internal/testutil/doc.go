// Package testutil holds test helpers shared by syncer's packages: an
// in-process JetStream server, tree builders and a tree diff, polling, and the
// rsync lookup policy (skip locally, fail in CI).
package testutil
