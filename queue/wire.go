package queue

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/syncer/syncer"
)

// Token is the subject-safe token of a project or directory: NATS subjects
// cannot hold spaces, ".", "*" or ">", and names may be any bytes.
func Token(s string, n int) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:n]
}

// Subject prefixes.
const (
	eventsPrefix  = "syncer.events."
	jobsPrefix    = "syncer.jobs."
	resultsPrefix = "syncer.results."
)

func eventSubject(s syncer.Scope) string {
	return eventsPrefix + Token(s.Project(), 16)
}

// jobSubject gives every (dir, kind) its own subject: with MaxMsgsPerSubject
// 1, a newer job replaces a pending one for the same scope and never a job
// of another kind. A flat job must not replace a recursive one, nor a job
// naming its files (syncer.Job.Files) one that covers the whole directory:
// those have a kind of their own.
func jobSubject(j syncer.Job) string {
	kind := "d"
	switch {
	case len(j.Moves) > 0:
		kind = "m" + Token(fmt.Sprint(j.Moves), 16) // never replaced, nor replacing
	case j.Scope.Recursive:
		kind = "r"
	case len(j.Verify) > 0:
		kind = "v" // never replaced by a job that would not compare contents
	case len(j.Files) > 0:
		kind = "f"
	}
	return jobsPrefix + Token(j.Scope.Project(), 16) + "." + Token(j.Scope.Dir, 32) + "." + kind
}

func resultSubject(s syncer.Scope) string {
	return resultsPrefix + Token(s.Project(), 16)
}

// Paths are []byte on the wire: encoding/json would replace invalid UTF-8.

type wireEvent struct {
	Dir       []byte     `json:"dir"`
	Recursive bool       `json:"rec,omitempty"`
	Reason    string     `json:"reason"`
	At        time.Time  `json:"at"`
	Open      [][]byte   `json:"open,omitempty"`
	Moves     []wireMove `json:"moves,omitempty"`
}

type wireMove struct {
	From []byte `json:"from"`
	To   []byte `json:"to"`
	Ino  uint64 `json:"ino,omitempty"`
}

func toWireMoves(ms []syncer.Move) []wireMove {
	var out []wireMove
	for _, m := range ms {
		out = append(out, wireMove{From: []byte(m.From), To: []byte(m.To), Ino: m.Ino})
	}
	return out
}

func fromWireMoves(ws []wireMove) []syncer.Move {
	var out []syncer.Move
	for _, w := range ws {
		out = append(out, syncer.Move{From: string(w.From), To: string(w.To), Ino: w.Ino})
	}
	return out
}

type wireJob struct {
	ID         string     `json:"id"`
	Dir        []byte     `json:"dir"`
	Recursive  bool       `json:"rec,omitempty"`
	Reason     string     `json:"reason"`
	FirstEvent time.Time  `json:"first_event"`
	Open       [][]byte   `json:"open,omitempty"`
	Files      [][]byte   `json:"files,omitempty"`
	Verify     [][]byte   `json:"verify,omitempty"`
	Moves      []wireMove `json:"moves,omitempty"`
}

type wireResult struct {
	wireJob
	Run      string       `json:"run,omitempty"`
	OK       bool         `json:"ok"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	ExitCode int          `json:"exit_code,omitempty"`
	Error    string       `json:"error,omitempty"`
	Stats    syncer.Stats `json:"stats"`
}

func toWireJob(j syncer.Job) wireJob {
	return wireJob{ID: j.ID, Dir: []byte(j.Scope.Dir), Recursive: j.Scope.Recursive, Reason: string(j.Reason),
		FirstEvent: j.FirstEvent, Open: toBytes(j.Open), Files: toBytes(j.Files), Verify: toBytes(j.Verify), Moves: toWireMoves(j.Moves)}
}

func (w wireJob) job() syncer.Job {
	return syncer.Job{ID: w.ID, Scope: syncer.Scope{Dir: string(w.Dir), Recursive: w.Recursive},
		Reason: syncer.Reason(w.Reason), FirstEvent: w.FirstEvent, Open: fromBytes(w.Open), Files: fromBytes(w.Files), Verify: fromBytes(w.Verify),
		Moves: fromWireMoves(w.Moves)}
}

// decodeJob reads a job off the wire and validates every path in it
// (syncer.Job.Check). On a validation error it still returns what it read,
// for the dead letter.
func decodeJob(b []byte) (syncer.Job, error) {
	var w wireJob
	if err := json.Unmarshal(b, &w); err != nil {
		return syncer.Job{}, fmt.Errorf("decode job: %w", err)
	}
	j := w.job()
	if err := j.Check(); err != nil {
		return j, fmt.Errorf("job %s: %w", j.ID, err)
	}
	return j, nil
}

// decodeEvent is decodeJob for an event.
func decodeEvent(b []byte) (syncer.DirEvent, error) {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return syncer.DirEvent{}, fmt.Errorf("decode event: %w", err)
	}
	ev := w.event()
	if err := ev.Check(); err != nil {
		return ev, fmt.Errorf("event: %w", err)
	}
	return ev, nil
}

func toWireEvent(ev syncer.DirEvent) wireEvent {
	return wireEvent{Dir: []byte(ev.Scope.Dir), Recursive: ev.Scope.Recursive, Reason: string(ev.Reason), At: ev.At, Open: toBytes(ev.Open),
		Moves: toWireMoves(ev.Moves)}
}

func (w wireEvent) event() syncer.DirEvent {
	return syncer.DirEvent{Scope: syncer.Scope{Dir: string(w.Dir), Recursive: w.Recursive},
		Reason: syncer.Reason(w.Reason), At: w.At, Open: fromBytes(w.Open), Moves: fromWireMoves(w.Moves)}
}

// Paths travel as bytes: JSON strings would mangle names that are not UTF-8.
func toBytes(ss []string) [][]byte {
	if len(ss) == 0 {
		return nil
	}
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func fromBytes(bs [][]byte) []string {
	if len(bs) == 0 {
		return nil
	}
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: bad port", addr)
	}
	return host, port, nil
}
