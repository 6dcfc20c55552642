// Package queue is syncer's transport on NATS JetStream. Connect opens it
// where the settings say it lives, and holds the state dir's lock while it
// is open: the embedded server (file store, no port by default), a scratch
// in-memory one for a standalone reconcile, or an external cluster (with
// its version checked, reconnecting forever, and every leader election and
// reconnect reported through OnFailover). An embedded store that cannot be
// opened is moved aside, named in an error line, and replaced by an empty
// one; the EVENTS stream's cap fits the state filesystem; Healthy says when
// the store's filesystem is full.
//
// On it: the EVENTS stream between watcher and coalescer, the JOBS
// work-queue stream that all workers share (one pending job per scope), the
// dead letters, the core-NATS results subject that reports finished jobs,
// and scope leases in a KV bucket for workers on several hosts (Leaser).
//
// Subjects carry only hashed tokens (syncer.jobs.<project>.<dir>.<kind>);
// raw path bytes travel in payloads, base64 in JSON, so any name Linux allows
// survives, and every path is validated where it is decoded: a job with a
// path outside the tree is dead-lettered with the reason, never delivered.
// No nats type leaves this package: workers receive syncer.Delivery values.
//
// It imports the root package and third-party code, never another syncer package.
package queue
