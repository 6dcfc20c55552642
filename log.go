package syncer

// Log field keys, shared by every component so that shipped logs can be
// queried by the same names.
const (
	LogProject  = "project"
	LogDir      = "dir"
	LogScope    = "scope"
	LogReason   = "reason"
	LogJobID    = "job_id"
	LogWorker   = "worker"
	LogAttempt  = "attempt"
	LogExitCode = "exit_code"
	LogTook     = "took"
	LogFiles    = "files"
	LogBytes    = "bytes"
	LogDeleted  = "deleted"
	LogStream   = "stream"
	LogConsumer = "consumer"
	LogPending  = "pending"
	LogLag      = "lag"
	LogJobs     = "jobs"
	LogWatches  = "watches"
)
