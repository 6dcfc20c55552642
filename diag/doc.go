// Package diag answers "what limits the backup: CPU, disk, network or
// memory?". Sampler is the only code in syncer that imports gopsutil; it
// copies readings into Snapshot. Diagnose is pure: two snapshots plus queue
// figures in, a Verdict with its evidence and advice out.
//
// It imports the root package and gopsutil only.
package diag
