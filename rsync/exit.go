package rsync

import "fmt"

// ExitError is an rsync run that ended with a non-zero exit code other than
// 24 (vanished source files, which is success in a live tree).
type ExitError struct {
	Code   int
	Stderr string // the last 2 KiB of rsync's stderr
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("rsync: exit %d (%s)", e.Code, Meaning(e.Code))
}

// ExitCode is rsync's exit code.
func (e *ExitError) ExitCode() int { return e.Code }

// Transient reports whether a retry may succeed: partial transfers and I/O,
// socket, timeout and daemon-connection errors are transient; syntax,
// protocol, unsupported-feature and --max-delete stops are not. 255 is
// ssh's own failure (host down, connection reset) on a remote backup.
func (e *ExitError) Transient() bool { return Transient(e.Code) }

// Transient classifies an rsync exit code; see ExitError.Transient.
func Transient(code int) bool {
	switch code {
	case 5, 10, 11, 12, 23, 30, 35, 255:
		return true
	}
	return false
}

// Meaning is the short description rsync's manual gives an exit code.
func Meaning(code int) string {
	switch code {
	case 0:
		return "success"
	case 1:
		return "syntax or usage error"
	case 2:
		return "protocol incompatibility"
	case 3:
		return "errors selecting input/output files, dirs"
	case 4:
		return "requested action not supported"
	case 5:
		return "error starting client-server protocol"
	case 6:
		return "daemon unable to append to log-file"
	case 10:
		return "error in socket I/O"
	case 11:
		return "error in file I/O"
	case 12:
		return "error in rsync protocol data stream"
	case 13:
		return "errors with program diagnostics"
	case 14:
		return "error in IPC code"
	case 20:
		return "received SIGUSR1 or SIGINT"
	case 21:
		return "some error returned by waitpid()"
	case 22:
		return "error allocating core memory buffers"
	case 23:
		return "partial transfer due to error"
	case 24:
		return "partial transfer due to vanished source files"
	case 25:
		return "the --max-delete limit stopped deletions"
	case 30:
		return "timeout in data send/receive"
	case 35:
		return "timeout waiting for daemon connection"
	case 255:
		return "remote shell (ssh) failed"
	}
	return "unknown"
}
