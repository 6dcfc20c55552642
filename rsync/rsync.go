package rsync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/internal/xattr"
	"github.com/syncer/syncer/versions"
)

// Defaults for Options.
const (
	DefaultBinary      = "rsync"
	DefaultMaxArgBytes = 96 << 10 // stay well below ARG_MAX and MAX_ARG_STRLEN
	DefaultWaitDelay   = 10 * time.Second
	stderrTail         = 2 << 10
)

// Options configure a Runner.
type Options struct {
	// Binary is the rsync executable, looked up in PATH; DefaultBinary when empty.
	Binary string
	// Source and Dest are the roots of the two trees. Source is a local
	// directory; Dest is a local directory or a remote one (see
	// ParseLocation).
	Source, Dest string
	// SSH configures the remote shell of a "host:/path" Dest.
	SSH SSH
	// PasswordFile is the rsync daemon password of an "rsync://" Dest.
	PasswordFile string
	// Excludes are given to every run as --exclude rules (read at each
	// run, so that a reload applies to the next); nil excludes nothing.
	Excludes *syncer.Excludes
	// Args are extra rsync arguments appended before the paths (e.g. --acls).
	Args []string
	// Keep is the kinds of extended attributes and ACLs kept (-X, -A):
	// xattr kinds left out are filtered from -X ("-x" rules), so that a
	// backup that takes some kinds but not others gets those it takes
	// instead of failing every file.
	Keep xattr.Kind
	// Lost is the kinds asked for that the backup's filesystem cannot
	// keep (filtered from -X like those not asked for): the attributes of
	// those kinds on each entry rsync sends are counted in Stats.Dropped,
	// as the copier counts them, found from its --itemize-changes lines.
	Lost xattr.Kind
	// Sparse turns runs of zeros into holes (--sparse): a sparse file
	// stays sparse on the backup.
	Sparse bool
	// HardLinks keeps hard links within one invocation (-H).
	HardLinks bool
	// MaxDelete caps deletions per run (--max-delete); 0 means no cap.
	// Hitting the cap ends the run with exit 25, a permanent failure.
	MaxDelete int
	// Trash, when set, is a directory name in the backup root: deleted and
	// overwritten files move to Trash/<stamp>/<path> (versions.Stamp of the
	// invocation's start) instead of disappearing, with a manifest beside
	// (versions.Record), and Trash itself is never synced or deleted.
	Trash string
	// Now gives the trash date; time.Now when nil.
	Now func() time.Time
	// DryRun changes nothing: rsync runs with --dry-run --itemize-changes
	// and its itemized lines go to Itemize.
	DryRun  bool
	Itemize io.Writer
	// MaxArgBytes bounds the bytes of path arguments of one invocation;
	// larger batches run as several invocations.
	MaxArgBytes int
	// WaitDelay is how long a cancelled rsync gets after SIGTERM before SIGKILL.
	WaitDelay time.Duration
	Logger    *zap.Logger
}

// Runner syncs scopes with rsync. It is safe for concurrent use.
type Runner struct {
	opts Options
	loc  Location // Dest, parsed
	bin  string
	log  *zap.Logger
}

var _ syncer.Syncer = (*Runner)(nil)

// New checks the options and finds the rsync binary. It starts nothing.
func New(opts Options) (*Runner, error) {
	if opts.Binary == "" {
		opts.Binary = DefaultBinary
	}
	if opts.MaxArgBytes <= 0 {
		opts.MaxArgBytes = DefaultMaxArgBytes
	}
	if opts.WaitDelay <= 0 {
		opts.WaitDelay = DefaultWaitDelay
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Source == "" || opts.Dest == "" {
		return nil, errors.New("rsync: source and dest are required")
	}
	loc, err := ParseLocation(opts.Dest)
	if err != nil {
		return nil, fmt.Errorf("rsync dest: %w", err)
	}
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("find rsync %q: %w", opts.Binary, err)
	}
	return &Runner{opts: opts, loc: loc, bin: bin, log: opts.Logger}, nil
}

// Sync makes the backup of each scope equal to the source. Scopes whose
// directory no longer exists in the source are skipped: their removal shows
// up as a change of an existing ancestor, which carries the deletion.
// Recursive and non-recursive scopes run as separate invocations. Files in
// h.Open are excluded, which also keeps them from being deleted; h.Files is
// not used (rsync compares the whole directory). With h.Verify, rsync
// compares checksums of same-size files (--checksum) instead of mtimes.
func (r *Runner) Sync(ctx context.Context, scopes []syncer.Scope, h syncer.Hints) (syncer.Stats, error) {
	var total syncer.Stats
	var flat, deep []string
	src, err := osx.OpenRoot(r.opts.Source)
	if err != nil {
		return total, err
	}
	defer src.Close()
	for _, s := range scopes {
		if err := syncer.CheckPath(s.Dir); err != nil {
			return total, err
		}
		// rsync follows a symlink in the path it is given: each scope must
		// be a directory beneath the source root, reached through
		// directories only.
		fd, err := src.OpenDir(s.Dir)
		if errors.Is(err, fs.ErrNotExist) || osx.NotDir(err) {
			r.log.Debug("scope vanished", zap.String(syncer.LogScope, s.String()))
			continue
		}
		if err != nil {
			return total, fmt.Errorf("stat %s: %w", s, err)
		}
		_ = syscall.Close(fd)
		if s.Recursive {
			deep = append(deep, s.Dir)
		} else {
			flat = append(flat, s.Dir)
		}
	}
	for _, set := range []struct {
		dirs      []string
		recursive bool
	}{{deep, true}, {flat, false}} {
		for _, chunk := range r.chunks(set.dirs) {
			// Each invocation displaces into a trash directory of its own:
			// no version ever replaces another.
			stamp := versions.Stamp(r.now())
			args := argsAt(r.opts, chunk, set.recursive, skipped(h.Open, chunk, set.recursive), stamp)
			if len(h.Verify) > 0 {
				// Files rewritten keeping size and mtime: rsync's quick
				// check would pass them, its checksums do not.
				args = slices.Insert(args, 1, "--checksum")
			}
			st, out, err := r.run(ctx, args)
			if r.opts.Lost != xattr.None && !r.opts.DryRun {
				st.Dropped += lostAttrs(src, out, r.opts.Lost)
			}
			total.Add(st)
			r.record(stamp)
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

func (r *Runner) now() time.Time {
	if r.opts.Now != nil {
		return r.opts.Now()
	}
	return time.Now()
}

// record writes the manifest of what the invocation displaced into the
// trash directory stamp, on a local backup (a remote one's stamps are
// listed by walking them).
func (r *Runner) record(stamp string) {
	if r.opts.Trash == "" || r.loc.Remote() || r.opts.DryRun {
		return
	}
	root, err := osx.OpenRoot(r.opts.Dest)
	if err == nil {
		err = versions.Record(root, r.opts.Trash, stamp)
		root.Close()
	}
	if err != nil {
		r.log.Warn("record versions", zap.Error(err), zap.String("stamp", stamp))
	}
}

// chunks splits dirs so that each invocation's path arguments stay under MaxArgBytes.
func (r *Runner) chunks(dirs []string) [][]string {
	var out [][]string
	var cur []string
	n := 0
	for _, d := range dirs {
		l := len(r.opts.Source) + len(d) + 4
		if len(cur) > 0 && n+l > r.opts.MaxArgBytes {
			out = append(out, cur)
			cur, n = nil, 0
		}
		cur = append(cur, d)
		n += l
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// skipped returns the paths of skip that the scopes of dirs cover, as many
// as fit in maxSkipBytes of arguments: the rest are copied as they are.
func skipped(skip, dirs []string, recursive bool) []string {
	var out []string
	n := 0
	for _, p := range skip {
		for _, d := range dirs {
			if (syncer.Scope{Dir: d, Recursive: recursive}).HasFile(p) {
				if n += len(p) + 12; n > maxSkipBytes {
					return out
				}
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// maxSkipBytes bounds the arguments one invocation spends on Job.Open.
const maxSkipBytes = 32 << 10

// Args builds the argument list (without the binary) that syncs dirs,
// leaving out the files in skip (relative to the source root).
//
// Archive semantics without -r (-lptgoD), --numeric-ids so a backup host with
// other users keeps the owners, --delete without --ignore-errors, and
// --relative with a "/./" anchor so the path below the source root is
// recreated below the destination. A non-recursive sync uses --dirs: the
// directory's own entries, subdirectories created empty. --modify-window=-1
// compares mtimes to the nanosecond: two edits within one second that keep a
// file's size are still seen, and directory times converge. Paths always follow
// "--", so names starting with "-" are never read as options.
func Args(opts Options, dirs []string, recursive bool, skip []string) []string {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	return argsAt(opts, dirs, recursive, skip, versions.Stamp(now()))
}

// argsAt is Args displacing into the trash directory stamp.
func argsAt(opts Options, dirs []string, recursive bool, skip []string, stamp string) []string {
	args := []string{"-lptgoD", "--numeric-ids", "--delete", "--relative", "--stats", "--protect-args", "--modify-window=-1"}
	if recursive {
		args = append(args, "--recursive")
	} else {
		args = append(args, "--dirs")
	}
	args = append(args, metaArgs(opts)...)
	if opts.MaxDelete > 0 {
		args = append(args, "--max-delete="+strconv.Itoa(opts.MaxDelete))
	}
	if opts.Trash != "" {
		// Anchored at the transfer root: with --relative that is the backup root.
		args = append(args, "--backup", "--backup-dir="+opts.Trash+"/"+stamp, "--exclude=/"+opts.Trash)
	}
	args = append(args, opts.Excludes.RsyncArgs()...)
	for _, p := range skip {
		// Anchored at the transfer root, which --relative makes the source root.
		args = append(args, "--exclude=/"+literal(p))
	}
	if opts.DryRun {
		args = append(args, "--dry-run")
	}
	if opts.DryRun || opts.Lost != xattr.None {
		args = append(args, "--itemize-changes")
	}
	args = append(args, remoteArgs(opts)...)
	args = append(args, opts.Args...)
	args = append(args, "--")
	src := strings.TrimSuffix(opts.Source, "/")
	for _, d := range dirs {
		if d == "" {
			args = append(args, src+"/./")
		} else {
			args = append(args, src+"/./"+d+"/")
		}
	}
	return append(args, strings.TrimSuffix(opts.Dest, "/")+"/")
}

// metaArgs asks for what Keep, Sparse and HardLinks keep.
func metaArgs(opts Options) []string {
	var args []string
	names := xattr.User | xattr.Trusted | xattr.Security
	if opts.Keep&names != 0 {
		args = append(args, "-X")
		for _, f := range []struct {
			k    xattr.Kind
			rule string
		}{{xattr.User, "user.*"}, {xattr.Trusted, "trusted.*"}, {xattr.Security, "security.*"}} {
			if opts.Keep&f.k == 0 {
				args = append(args, "--filter=-x "+f.rule)
			}
		}
		if opts.Keep&xattr.ACL == 0 {
			args = append(args, "--filter=-x system.*") // -X alone copies ACLs as raw attributes
		}
	}
	if opts.Keep&xattr.ACL != 0 {
		args = append(args, "-A")
	}
	if opts.Sparse {
		args = append(args, "--sparse")
	}
	if opts.HardLinks {
		args = append(args, "-H")
	}
	return args
}

// literal escapes a path for an rsync pattern. rsync reads a backslash as
// an escape only in a pattern with a wildcard, so a name without one is
// already literal.
func literal(p string) string {
	if !strings.ContainsAny(p, "*?[") {
		return p
	}
	var b strings.Builder
	for _, c := range []byte(p) {
		if c == '*' || c == '?' || c == '[' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// run runs rsync with args and returns its figures and its stdout.
func (r *Runner) run(ctx context.Context, args []string) (syncer.Stats, []byte, error) {
	cmd := exec.CommandContext(ctx, r.bin, args...)
	// rsync forks a receiver; a process group lets cancellation reach both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = r.opts.WaitDelay
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return syncer.Stats{}, nil, fmt.Errorf("rsync stderr pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return syncer.Stats{}, nil, fmt.Errorf("start rsync: %w", err)
	}
	tail, refused, other := r.drain(stderr)
	err = cmd.Wait()
	// Whatever happened, leave no process of the group behind.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	st := ParseStats(stdout.Bytes())
	if r.opts.DryRun && r.opts.Itemize != nil {
		for _, l := range bytes.SplitAfter(stdout.Bytes(), []byte("\n")) {
			if isItemized(l) {
				_, _ = r.opts.Itemize.Write(l)
			}
		}
	}
	if err == nil {
		return st, stdout.Bytes(), nil
	}
	if ctx.Err() != nil {
		return st, stdout.Bytes(), fmt.Errorf("rsync cancelled: %w", ctx.Err())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return st, stdout.Bytes(), fmt.Errorf("rsync: %w", err)
	}
	code := ee.ExitCode()
	if code == 23 && refused > 0 && other == 0 {
		// Everything transferred but attributes the backup would not
		// take (a value larger than its filesystem keeps): counted, not
		// failed, as the copier does.
		r.log.Warn("rsync: the backup refused some extended attributes or ACLs; dropped and counted",
			zap.Int("refused", refused))
		st.Dropped += int64(refused)
		return st, stdout.Bytes(), nil
	}
	if code == 24 {
		// Files vanished while rsync ran: normal in a live tree. Their
		// deletion reaches us as its own event.
		r.log.Warn("rsync: source files vanished", zap.Int(syncer.LogExitCode, code))
		st.Vanished = true
		return st, stdout.Bytes(), nil
	}
	return st, stdout.Bytes(), &ExitError{Code: code, Stderr: tail.String()}
}

// refusedAttr is rsync's message for an extended attribute or ACL the
// receiving filesystem would not take: not supported, too large, no room
// beside the others, not permitted.
var refusedAttr = regexp.MustCompile(`^rsync: \[\w+\] (rsync_xal_set|set_acl): .*\((1|7|28|34|61|95)\)$`)

// drain reads stderr to the end, logging each line at Debug and keeping the
// last bytes for an ExitError. It counts the attributes the backup refused
// and the other error lines. It returns once the pipe is closed.
func (r *Runner) drain(rd io.Reader) (_ *bytes.Buffer, refused, other int) {
	var tail bytes.Buffer
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if ce := r.log.Check(zap.DebugLevel, "rsync stderr"); ce != nil {
			ce.Write(zap.ByteString("line", line))
		}
		switch {
		case refusedAttr.Match(line):
			refused++
		case bytes.HasPrefix(line, []byte("rsync: ")):
			other++
		}
		tail.Write(line)
		tail.WriteByte('\n')
		if tail.Len() > 2*stderrTail {
			b := tail.Bytes()[tail.Len()-stderrTail:]
			tail = *bytes.NewBuffer(append([]byte(nil), b...))
		}
	}
	if tail.Len() > stderrTail {
		tail.Next(tail.Len() - stderrTail)
	}
	return &tail, refused, other
}

// lostAttrs counts the attributes of the kinds in lost on the entries that
// the itemized lines in out say were sent (created, rewritten or given new
// attributes), read from the source beneath src without following links.
// An entry gone since is not counted.
func lostAttrs(src *osx.Root, out []byte, lost xattr.Kind) int64 {
	var n int64
	for _, l := range bytes.Split(out, []byte("\n")) {
		rel, ok := sentName(l)
		if !ok {
			continue
		}
		dirfd, name, err := src.OpenParent(rel)
		if err != nil {
			continue
		}
		names, _ := xattr.At(dirfd, name).Names(lost)
		n += int64(len(names))
		_ = syscall.Close(dirfd)
	}
	return n
}

// sentName is the source path of an itemized line for an entry rsync sent
// or changed, with rsync's \#ooo escapes undone; not ok for deletions, the
// root and lines that are not itemized.
func sentName(l []byte) (string, bool) {
	if !isItemized(l) || l[0] == '*' || (l[0] == '.' && bytes.Count(l[2:11], []byte(".")) == 9) {
		return "", false
	}
	name := string(l[12:])
	switch {
	case l[1] == 'L':
		name, _, _ = strings.Cut(name, " -> ")
	case l[0] == 'h':
		name, _, _ = strings.Cut(name, " => ")
	}
	name = strings.TrimSuffix(unescape(name), "/")
	if name == "" || name == "." || syncer.CheckPath(name) != nil {
		return "", false
	}
	return name, true
}

// unescape undoes rsync's \#ooo (octal) escapes of unprintable bytes.
func unescape(s string) string {
	if !strings.Contains(s, "\\#") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 < len(s) && s[i+1] == '#' {
			if v, err := strconv.ParseUint(s[i+2:i+5], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 4
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isItemized reports whether l is an --itemize-changes line ("YXcstpoguax name"
// or "*deleting   name"), not --stats output.
func isItemized(l []byte) bool {
	return len(l) > 12 && l[11] == ' ' && bytes.IndexByte([]byte("<>ch.*"), l[0]) >= 0
}

var statLine = regexp.MustCompile(`(?m)^(Number of regular files transferred|Total transferred file size|Number of deleted files): ([0-9,.]+)`)

// ParseStats reads the figures syncer reports from rsync --stats output.
func ParseStats(out []byte) syncer.Stats {
	var st syncer.Stats
	for _, m := range statLine.FindAllSubmatch(out, -1) {
		n, _ := strconv.ParseInt(strings.NewReplacer(",", "", ".", "").Replace(string(m[2])), 10, 64)
		switch string(m[1]) {
		case "Number of regular files transferred":
			st.Files = n
		case "Total transferred file size":
			st.Bytes = n
		case "Number of deleted files":
			st.Deleted = n
		}
	}
	return st
}

// Changes is what a dry run found: rsync's itemized lines, each change
// once (a directory's flat scope and its child's recursive one both
// itemize the child), and their count by kind.
type Changes struct {
	Lines   []string `json:"changes"`
	Sent    int      `json:"files_to_send"`     // files, links and devices to create or update
	Dirs    int      `json:"dirs_to_create"`    // directories to create
	Deleted int      `json:"entries_to_delete"` // entries to delete (into the trash when there is one)
	Attrs   int      `json:"attrs_to_set"`      // entries whose attributes alone differ
}

// Itemize is a dry run of the scopes, one at a time: the changes rsync
// would make (--itemize-changes lines), with nothing changed and no
// deletion cap.
func Itemize(ctx context.Context, opts Options, scopes []syncer.Scope) (Changes, error) {
	var items bytes.Buffer
	opts.MaxDelete, opts.DryRun, opts.Itemize = 0, true, &items
	r, err := New(opts)
	if err != nil {
		return Changes{}, err
	}
	for _, s := range scopes {
		if _, err := r.Sync(ctx, []syncer.Scope{s}, syncer.Hints{}); err != nil {
			return Changes{}, fmt.Errorf("dry run of %s: %w", s, err)
		}
	}
	c := Changes{Lines: []string{}}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(items.String(), "\n"), "\n") {
		if l == "" || seen[l] {
			continue
		}
		seen[l] = true
		c.Lines = append(c.Lines, l)
		switch {
		case strings.HasPrefix(l, "*deleting"):
			c.Deleted++
		case strings.HasPrefix(l, "cd"):
			c.Dirs++
		case l[0] == '.':
			c.Attrs++
		default:
			c.Sent++
		}
	}
	return c, nil
}
