package queue

// DecodeJob is decodeJob, for the fuzz test.
var DecodeJob = decodeJob
