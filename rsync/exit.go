package rsync

import (
	"fmt"
	"strings"
)

// ExitError is an rsync run that ended with a non-zero exit code other than
// 24 (vanished source files, which is success in a live tree).
type ExitError struct {
	Code   int
	Stderr string // the last 2 KiB of rsync's stderr
}

// Error names the exit code and, when rsync said why, its own words: the
// last error lines it printed ("write failed on …: No space left on device
// (28)"), which is what an operator acts on.
func (e *ExitError) Error() string {
	s := fmt.Sprintf("rsync: exit %d (%s)", e.Code, Meaning(e.Code))
	if r := e.Reason(); r != "" {
		s += ": " + r
	}
	return s
}

// reasonLines is how many of rsync's last error lines Reason keeps.
const reasonLines = 3

// Reason is the last error lines rsync printed (up to three, "; "-joined),
// without its closing "rsync error: … (code N) at main.c" summary, which
// only repeats the exit code; "" when it printed none.
func (e *ExitError) Reason() string {
	var keep []string
	lines := strings.Split(strings.TrimSpace(e.Stderr), "\n")
	for i := len(lines) - 1; i >= 0 && len(keep) < reasonLines; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "rsync error: ") || strings.HasPrefix(l, "rsync warning: ") {
			continue
		}
		keep = append(keep, l)
	}
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	return strings.Join(keep, "; ")
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

// ExitCodes are the exit codes rsync's manual lists, with 255 for ssh.
func ExitCodes() []int {
	return []int{1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 25, 30, 35, 255}
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
