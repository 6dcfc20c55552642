package syncer

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"sync/atomic"
)

// Excludes is what syncer leaves out of the backup, one rule set that
// the watcher, the reconcile walk, the copier, the index and rsync all
// apply, so that each skips exactly what the others skip. A config reload
// swaps the rules in place (Set); safe for concurrent use. A nil Excludes
// excludes nothing.
//
// Two kinds of pattern, the subset of rsync's filter rules that reads the
// same in rsync and here (rsync is what applies them on remote backups,
// and it takes them verbatim):
//
//   - a name glob, without '/': "*.tmp", ".DS_Store", "Thumbs.db". It
//     matches an entry of that name at any depth, as rsync's --exclude
//     without a slash does.
//   - a path pattern, with '/': "ProjA/render/cache", "*/Proxies",
//     "ProjB/**/*.bak". It is anchored at the source root (a leading '/'
//     is optional: rsync gets it as "--exclude=/<pattern>"), so a pattern
//     that starts with a project's name is that project's own rule. '*'
//     and '?' do not cross '/', "**" does and may match nothing, as in
//     rsync: "ProjB/**/x" matches "ProjB/a/x" and "ProjB/a/b/x" but not
//     "ProjB/x".
//
// An excluded directory excludes everything below it. There is no
// negation ('!'): a backup that keeps less than it seems to is the
// failure that matters, and rsync's and gitignore's rules for re-including
// beneath an excluded parent differ.
type Excludes struct {
	rules atomic.Pointer[excludeRules]
}

type excludeRules struct {
	patterns []string
	names    []string
	paths    []*regexp.Regexp
}

// NewExcludes compiles patterns; see Excludes for their syntax.
func NewExcludes(patterns []string) (*Excludes, error) {
	e := &Excludes{}
	if err := e.Set(patterns); err != nil {
		return nil, err
	}
	return e, nil
}

// MustExcludes is NewExcludes for patterns known to be valid.
func MustExcludes(patterns ...string) *Excludes {
	e, err := NewExcludes(patterns)
	if err != nil {
		panic("bug: " + err.Error())
	}
	return e
}

// Set replaces the rules with patterns, all or none: on an error the
// rules stay as they were.
func (e *Excludes) Set(patterns []string) error {
	r := &excludeRules{patterns: append([]string(nil), patterns...)}
	var errs []error
	for _, p := range patterns {
		if err := CheckExclude(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if !strings.Contains(p, "/") {
			r.names = append(r.names, p)
			continue
		}
		r.paths = append(r.paths, pathRegexp(strings.TrimPrefix(p, "/")))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	e.rules.Store(r)
	return nil
}

// CheckExclude says what is wrong with one exclude pattern, nil if nothing.
func CheckExclude(p string) error {
	switch {
	case p == "" || p == "/":
		return fmt.Errorf("exclude %q: empty", p)
	case strings.HasSuffix(p, "/"):
		return fmt.Errorf("exclude %q: drop the trailing '/' (a pattern matches directories and files alike)", p)
	case strings.HasPrefix(p, "!"):
		return fmt.Errorf("exclude %q: negations are not supported", p)
	case strings.Contains(p, "**") && !strings.Contains(p, "/"):
		return fmt.Errorf("exclude %q: \"**\" belongs in a path pattern (with '/'), e.g. \"Proj/**/cache\"", p)
	case strings.ContainsAny(p, "\x00\n"):
		return fmt.Errorf("exclude %q: holds a NUL or newline", p)
	}
	for _, seg := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		switch seg {
		case "", ".", "..":
			return fmt.Errorf("exclude %q: empty, '.' or '..' path element", p)
		}
		if _, err := path.Match(strings.ReplaceAll(seg, "**", "*"), ""); err != nil {
			return fmt.Errorf("exclude %q: %w", p, err)
		}
	}
	return nil
}

// pathRegexp turns an anchored path pattern into a regexp: "**" is any
// string, '*' any string without '/', '?' one character but '/', and
// [...] a class ([!...] negated), as rsync's wildmatch reads them.
func pathRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*':
			if i+1 < len(p) && p[i+1] == '*' {
				b.WriteString(`.*`)
				i++
				continue
			}
			b.WriteString(`[^/]*`)
		case '?':
			b.WriteString(`[^/]`)
		case '[':
			j := strings.IndexByte(p[i+1:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := p[i+1 : i+1+j]
			if j == 0 { // "[]...]": a ']' first is literal
				if k := strings.IndexByte(p[i+2:], ']'); k >= 0 {
					class = p[i+1 : i+2+k]
				}
			}
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += len(class) + 1
		case '\\':
			if i+1 < len(p) {
				i++
				b.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// Patterns is the rules as they were given.
func (e *Excludes) Patterns() []string {
	if e == nil {
		return nil
	}
	if r := e.rules.Load(); r != nil {
		return r.patterns
	}
	return nil
}

// RsyncArgs is the rules as rsync arguments for a run whose transfer root
// is the source root (--relative with a "/./" anchor): name globs as they
// are, path patterns anchored with a leading '/'.
func (e *Excludes) RsyncArgs() []string {
	var args []string
	for _, p := range e.Patterns() {
		if strings.Contains(p, "/") && !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		args = append(args, "--exclude="+p)
	}
	return args
}

// Match reports whether rel, a slash-separated path below the source root
// ("" is the root, never excluded), is excluded: it or one of its parents
// matches a rule.
func (e *Excludes) Match(rel string) bool {
	if e == nil || rel == "" {
		return false
	}
	r := e.rules.Load()
	if r == nil || (len(r.names) == 0 && len(r.paths) == 0) {
		return false
	}
	for end := len(rel); ; {
		p := rel[:end]
		name := p[strings.LastIndexByte(p, '/')+1:]
		for _, n := range r.names {
			if ok, _ := path.Match(n, name); ok {
				return true
			}
		}
		for _, re := range r.paths {
			if re.MatchString(p) {
				return true
			}
		}
		end = strings.LastIndexByte(p, '/')
		if end < 0 {
			return false
		}
	}
}

// MatchIn reports whether the entry name of directory dir matches a rule
// itself, its parents unchecked: for walks, which never enter an excluded
// directory, so that every entry costs one test per rule, not one per
// level.
func (e *Excludes) MatchIn(dir, name string) bool {
	if e == nil {
		return false
	}
	r := e.rules.Load()
	if r == nil {
		return false
	}
	for _, n := range r.names {
		if ok, _ := path.Match(n, name); ok {
			return true
		}
	}
	if len(r.paths) == 0 {
		return false
	}
	p := name
	if dir != "" {
		p = dir + "/" + name
	}
	for _, re := range r.paths {
		if re.MatchString(p) {
			return true
		}
	}
	return false
}
