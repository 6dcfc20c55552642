package syncer

import (
	"path"
	"slices"
	"strings"
)

// Scope names what a sync covers: the direct entries of Dir, or with
// Recursive the whole subtree below Dir.
//
// Dir is relative to the source root, slash-separated, without leading or
// trailing slash; "" is the root itself. Dir holds raw bytes: any name Linux
// allows, valid UTF-8 or not.
type Scope struct {
	Dir       string
	Recursive bool
}

// String renders the scope for logs: the root is ".", a recursive scope ends in "/...".
func (s Scope) String() string {
	d := s.Dir
	if d == "" {
		d = "."
	}
	if s.Recursive {
		return d + "/..."
	}
	return d
}

// Project is the top-level folder the scope belongs to, "" for the root.
func (s Scope) Project() string { return Project(s.Dir) }

// Covers reports whether syncing s also syncs everything o would.
func (s Scope) Covers(o Scope) bool {
	if s.Dir == o.Dir {
		return s.Recursive || !o.Recursive
	}
	return s.Recursive && IsAncestor(s.Dir, o.Dir)
}

// HasFile reports whether the file at path (relative to the source root)
// is one of the entries s syncs.
func (s Scope) HasFile(path string) bool {
	if s.Recursive {
		return IsAncestor(s.Dir, path)
	}
	return path != "" && Parent(path) == s.Dir
}

// Overlaps reports whether two syncs of s and o may touch the same backup
// paths, so they must not run at the same time: the same directory, or one
// inside the other. A non-recursive sync counts as touching its subtree too,
// because its --delete removes vanished subdirectories whole.
func (s Scope) Overlaps(o Scope) bool {
	return s.Dir == o.Dir || IsAncestor(s.Dir, o.Dir) || IsAncestor(o.Dir, s.Dir)
}

// IsAncestor reports whether dir a is a strict ancestor of dir b.
func IsAncestor(a, b string) bool {
	if a == b {
		return false
	}
	return a == "" || (len(b) > len(a) && b[len(a)] == '/' && strings.HasPrefix(b, a))
}

// Parent returns the directory holding dir; the parent of a project and of
// the root is the root "".
func Parent(dir string) string {
	i := strings.LastIndexByte(dir, '/')
	if i < 0 {
		return ""
	}
	return dir[:i]
}

// NamesIn returns the names in dir of those of files (paths relative to the
// source root, as a job's Files) that are directly in it; never nil.
func NamesIn(dir string, files []string) []string {
	names := make([]string, 0, len(files))
	for _, f := range files {
		if f != dir && Parent(f) == dir {
			names = append(names, path.Base(f))
		}
	}
	return names
}

// Project returns the first element of dir, "" for the root.
func Project(dir string) string {
	if i := strings.IndexByte(dir, '/'); i >= 0 {
		return dir[:i]
	}
	return dir
}

// Rel turns an absolute path below root into a Dir, reporting false when p
// is not root or below it. Both must be clean absolute paths.
func Rel(root, p string) (string, bool) {
	if p == root {
		return "", true
	}
	if root == "/" {
		return p[1:], strings.HasPrefix(p, "/") && len(p) > 1
	}
	if !strings.HasPrefix(p, root) || len(p) <= len(root) || p[len(root)] != '/' {
		return "", false
	}
	return p[len(root)+1:], true
}

// Join is the absolute path of dir below root.
func Join(root, dir string) string {
	if dir == "" {
		return root
	}
	return path.Join(root, dir)
}

// ThenMoves appends moves to ms, each folded into an earlier move of the
// same directory that ended where it starts: renames in a row are one
// move, from the first name to the last, and a directory moved back to
// where it was has none. A move ms already holds is not added again.
func ThenMoves(ms []Move, moves ...Move) []Move {
	for _, m := range moves {
		if slices.Contains(ms, m) {
			continue
		}
		for i, p := range ms {
			if p.Ino == m.Ino && p.To == m.From {
				m.From = p.From
				ms = slices.Delete(slices.Clone(ms), i, i+1)
				break
			}
		}
		if m.From != m.To {
			ms = append(ms, m)
		}
	}
	return ms
}
