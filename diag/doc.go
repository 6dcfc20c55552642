// Package diag answers "what limits the backup: CPU, disk, network, memory
// or latency?". Sampler is the only code in syncer that imports gopsutil; it
// copies readings into Snapshot. Diagnose is pure: two snapshots plus queue
// figures in, a Verdict with its evidence and advice out. Monitor samples
// on an interval and hands each verdict over (the daemon's
// syncer_bottleneck).
//
// It imports the root package and gopsutil only.
package diag
