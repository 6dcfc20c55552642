package syncer

import (
	"fmt"
	"strconv"
	"strings"
)

// Bounds of a path, as Linux has them: NAME_MAX bytes a component,
// PATH_MAX bytes with the terminating NUL.
const (
	MaxNameLen = 255
	MaxPathLen = 4095
)

// PathError says why a path that came from outside (a job or event off the
// queue, an API request, the command line, the config) is refused.
type PathError struct {
	Path   string
	Reason string
}

func (e *PathError) Error() string {
	p := e.Path
	if len(p) > 64 {
		p = p[:64] + "..."
	}
	return "invalid path " + strconv.Quote(p) + ": " + e.Reason
}

// CheckPath is the one validator of a path relative to a tree root, at
// every boundary: relative, slash-separated, no empty, "." or ".."
// component, no NUL, at most MaxNameLen bytes a component and MaxPathLen
// in all. "" is the root itself and is valid; any other byte is allowed
// (names need not be UTF-8). It says nothing of symlinks: the file-system
// access that follows never resolves one.
func CheckPath(p string) error {
	if p == "" {
		return nil
	}
	bad := func(reason string) error { return &PathError{Path: p, Reason: reason} }
	switch {
	case len(p) > MaxPathLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxPathLen))
	case strings.IndexByte(p, 0) >= 0:
		return bad("holds a NUL byte")
	case p[0] == '/':
		return bad("absolute")
	}
	for c := range strings.SplitSeq(p, "/") {
		switch {
		case c == "":
			return bad("empty component")
		case c == "." || c == "..":
			return bad(strconv.Quote(c) + " component")
		case len(c) > MaxNameLen:
			return bad(fmt.Sprintf("component longer than %d bytes", MaxNameLen))
		}
	}
	return nil
}

// CheckFile is CheckPath for a path that names an entry: the root is not one.
func CheckFile(p string) error {
	if p == "" {
		return &PathError{Path: p, Reason: "empty"}
	}
	return CheckPath(p)
}

// CheckName validates one entry name (a project, the trash, a marker file):
// a path of exactly one component.
func CheckName(n string) error {
	if err := CheckFile(n); err != nil {
		return err
	}
	if strings.IndexByte(n, '/') >= 0 {
		return &PathError{Path: n, Reason: "more than one component"}
	}
	return nil
}

// Check validates every path of a job: its directory, and the files it
// skips or names, which must lie in its scope.
func (j Job) Check() error {
	if err := CheckPath(j.Scope.Dir); err != nil {
		return err
	}
	for _, ps := range [][]string{j.Open, j.Files, j.Verify} {
		for _, p := range ps {
			if err := CheckFile(p); err != nil {
				return err
			}
			if !j.Scope.HasFile(p) && !IsAncestor(j.Scope.Dir, p) {
				return &PathError{Path: p, Reason: "outside the job's scope " + j.Scope.String()}
			}
		}
	}
	for _, m := range j.Moves {
		if err := m.Check(); err != nil {
			return err
		}
	}
	return nil
}

// Check validates a move: two entries below the root, neither within the other.
func (m Move) Check() error {
	for _, p := range []string{m.From, m.To} {
		if err := CheckFile(p); err != nil {
			return err
		}
	}
	if m.From == m.To || IsAncestor(m.From, m.To) || IsAncestor(m.To, m.From) {
		return &PathError{Path: m.To, Reason: "a move into itself, from " + m.From}
	}
	return nil
}

// Check validates every path of an event.
func (e DirEvent) Check() error {
	if err := CheckPath(e.Scope.Dir); err != nil {
		return err
	}
	for _, p := range e.Open {
		if err := CheckFile(p); err != nil {
			return err
		}
	}
	for _, m := range e.Moves {
		if err := m.Check(); err != nil {
			return err
		}
	}
	return nil
}
