// Package queue is syncer's transport on NATS JetStream: the embedded server
// (file store, store lock, no port by default), the EVENTS stream between
// watcher and coalescer, the JOBS work-queue stream that all workers share,
// and the core-NATS results subject that reports finished jobs.
//
// Subjects carry only hashed tokens (syncer.jobs.<project>.<dir>.<kind>);
// raw path bytes travel in payloads, base64 in JSON, so any name Linux allows
// survives. No nats type leaves this package: workers receive
// syncer.Delivery values.
//
// It imports the root package and third-party code, never another syncer package.
package queue
