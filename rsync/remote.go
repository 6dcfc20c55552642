package rsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/internal/osx"
	"github.com/syncer/syncer/versions"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Location is a parsed backup root: a local directory, a path on a host
// reached with rsync over ssh ("[user@]host:/path"), or a path in an rsync
// daemon module ("rsync://[user@]host[:port]/module/path" or
// "[user@]host::module/path"). The same rules as rsync's own decide.
type Location struct {
	Raw    string
	Host   string // "" for a local directory
	Path   string // the directory (for a daemon, module/path)
	Daemon bool
}

// ParseLocation splits s the way rsync does: "rsync://" or "::" is a daemon,
// a ':' before the first '/' is a remote shell, anything else is local.
func ParseLocation(s string) (Location, error) {
	l := Location{Raw: s}
	switch {
	case strings.HasPrefix(s, "rsync://"):
		rest := strings.TrimPrefix(s, "rsync://")
		i := strings.IndexByte(rest, '/')
		if i <= 0 || i == len(rest)-1 {
			return l, fmt.Errorf("%s: want rsync://host/module[/path]", s)
		}
		l.Host, l.Path, l.Daemon = rest[:i], rest[i+1:], true
	case strings.Contains(s, ":") && (!strings.Contains(s, "/") || strings.Index(s, ":") < strings.Index(s, "/")):
		i := strings.Index(s, ":")
		l.Host, l.Path = s[:i], s[i+1:]
		if strings.HasPrefix(l.Path, ":") {
			l.Path, l.Daemon = l.Path[1:], true
		}
		if l.Host == "" || l.Path == "" || strings.HasSuffix(l.Host, "@") {
			return l, fmt.Errorf("%s: want [user@]host:/path or [user@]host::module/path", s)
		}
	default:
		l.Path = s
	}
	return l, nil
}

// Remote reports whether the backup is on another host.
func (l Location) Remote() bool { return l.Host != "" }

// SSH are the ssh settings of a remote-shell backup.
type SSH struct {
	// Identity is a private key file; Port the ssh port (0: ssh's default).
	Identity string
	Port     int
	// KnownHosts is a known_hosts file that must list the host: with it
	// the host key is checked strictly, never learned on first use.
	KnownHosts string
	// Binary is the ssh client; "ssh" when empty.
	Binary string
}

// Command is the remote shell command line rsync's -e gets. It never asks
// for a password or a host-key confirmation: a daemon has nobody to ask.
func (s SSH) Command() string {
	bin := s.Binary
	if bin == "" {
		bin = "ssh"
	}
	args := []string{bin, "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"}
	if s.Port > 0 {
		args = append(args, "-p", fmt.Sprint(s.Port))
	}
	if s.Identity != "" {
		args = append(args, "-i", s.Identity, "-o", "IdentitiesOnly=yes")
	}
	if s.KnownHosts != "" {
		args = append(args, "-o", "UserKnownHostsFile="+s.KnownHosts, "-o", "StrictHostKeyChecking=yes")
	}
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}

// shellQuote quotes a for rsync's -e splitting, which honours single and
// double quotes like a shell.
func shellQuote(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`") {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'"'"'`) + "'"
}

// remoteArgs are the transport options of a remote backup: the ssh command
// or the daemon's password file and connect timeout, and an I/O timeout so
// a dead link ends the run (exit 30, retried) instead of hanging it.
func remoteArgs(opts Options) []string {
	loc, err := ParseLocation(opts.Dest)
	if err != nil || !loc.Remote() {
		return nil
	}
	args := []string{"--timeout=300"}
	if loc.Daemon {
		args = append(args, "--contimeout=15")
		if opts.PasswordFile != "" {
			args = append(args, "--password-file="+opts.PasswordFile)
		}
		return args
	}
	return append(args, "-e", opts.SSH.Command())
}

// List returns the names in dir (relative to the backup root, "" for the
// root) on the backup: read directly on a local backup, through rsync itself
// on an ssh or daemon one. A missing dir lists as empty.
func (r *Runner) List(ctx context.Context, dir string) ([]string, error) {
	if err := syncer.CheckPath(dir); err != nil {
		return nil, err
	}
	if !r.loc.Remote() {
		root, err := osx.OpenRoot(r.opts.Dest)
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		defer root.Close()
		var names []string
		err = root.ListDir(dir, func(string) bool { return false }, func(_ int, name string, _ *unix.Stat_t) {
			names = append(names, name)
		})
		if (errors.Is(err, fs.ErrNotExist) || osx.NotDir(err)) && dir != "" {
			return nil, nil // not there, or not a directory: nothing of ours in it
		}
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		return names, nil
	}
	target := strings.TrimSuffix(r.opts.Dest, "/") + "/"
	if dir != "" {
		target += dir + "/"
	}
	args := append([]string{"--list-only", "--dirs", "--protect-args"}, remoteArgs(r.opts)...)
	args = append(args, r.opts.Args...)
	cmd := exec.CommandContext(ctx, r.bin, append(args, "--", target)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = r.opts.WaitDelay
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 23 && bytes.Contains(stderr.Bytes(), []byte("No such file or directory")) && dir != "" {
		return nil, nil
	}
	if err != nil {
		msg := firstLine(stderr.String()) // the cause; rsync's summary line follows it
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("list %s: %s", target, msg)
	}
	var names []string
	for _, l := range strings.Split(stdout.String(), "\n") {
		// "drwxr-xr-x          4,096 2026/11/22 10:00:00 name"
		f := strings.SplitN(strings.TrimSpace(l), " ", 2)
		if len(f) < 2 {
			continue
		}
		rest := strings.TrimLeft(f[1], " ")
		for range 3 { // size, date, time
			i := strings.IndexByte(rest, ' ')
			if i < 0 {
				rest = ""
				break
			}
			rest = strings.TrimLeft(rest[i:], " ")
		}
		if rest != "" && rest != "." {
			names = append(names, rest)
		}
	}
	return names, nil
}

// RemoveAll deletes the given subdirectories of dir on the backup (for
// pruning trash days): directly on a local backup; on a remote one rsync
// mirrors an empty directory onto dir with every other entry protected.
func (r *Runner) RemoveAll(ctx context.Context, dir string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if err := syncer.CheckPath(dir); err != nil {
		return err
	}
	for _, n := range names {
		if err := syncer.CheckName(n); err != nil {
			return err
		}
	}
	if !r.loc.Remote() {
		// dir is opened beneath the backup root through directories only,
		// and what is removed below it is removed without following a
		// symlink (os.Root, pinned to that descriptor).
		root, err := osx.OpenRoot(r.opts.Dest)
		if err != nil {
			return err
		}
		defer root.Close()
		fd, err := root.OpenDir(dir)
		if err != nil {
			return fmt.Errorf("remove in %s: %w", root.Join(dir), err)
		}
		defer unix.Close(fd)
		pinned, err := os.OpenRoot("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			return err
		}
		defer pinned.Close()
		var errs []error
		for _, n := range names {
			errs = append(errs, pinned.RemoveAll(n))
		}
		return errors.Join(errs...)
	}
	empty, err := os.MkdirTemp("", "syncer-empty-")
	if err != nil {
		return err
	}
	defer os.Remove(empty)
	args := append([]string{"--recursive", "--delete", "--protect-args"}, remoteArgs(r.opts)...)
	for _, n := range names {
		args = append(args, "--filter=R /"+n, "--filter=R /"+n+"/***")
	}
	args = append(args, "--filter=P *")
	args = append(args, r.opts.Args...)
	target := strings.TrimSuffix(r.opts.Dest, "/") + "/" + dir + "/"
	cmd := exec.CommandContext(ctx, r.bin, append(args, "--", empty+"/", target)...)
	cmd.WaitDelay = r.opts.WaitDelay
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("remove %v in %s: %v: %s", names, target, err, strings.TrimSpace(lastLine(string(out))))
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Reachable checks, within timeout, that the backup root can be listed.
func (r *Runner) Reachable(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := r.List(ctx, "")
	if ctx.Err() != nil {
		return fmt.Errorf("backup %s: no answer within %v", r.opts.Dest, timeout)
	}
	return err
}

// PruneTrash removes the trash's versions displaced more than retention
// before now and then, with maxBytes positive on a local backup, the
// oldest others until what is left holds at most maxBytes; it returns the
// stamps it removed (versions.Old). Names that are not stamps are left
// alone. On a local backup nothing is resolved through a symlink: a trash
// that is a symlink lists as empty, and a stamp that is one is removed as
// a link.
func (r *Runner) PruneTrash(ctx context.Context, retention time.Duration, maxBytes int64, now time.Time) ([]string, error) {
	if r.opts.Trash == "" || retention <= 0 {
		return nil, nil
	}
	names, err := r.List(ctx, r.opts.Trash)
	if err != nil {
		return nil, err
	}
	size := func(string) (int64, error) { return 0, nil }
	if !r.loc.Remote() && maxBytes > 0 {
		root, err := osx.OpenRoot(r.opts.Dest)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		size = func(stamp string) (int64, error) { return versions.Size(root, r.opts.Trash, stamp) }
	}
	old, err := versions.Old(names, now.Add(-retention), maxBytes, size)
	if err != nil || len(old) == 0 {
		return nil, err
	}
	remove := slices.Clone(old)
	for _, s := range old {
		if slices.Contains(names, versions.Manifest(s)) {
			remove = append(remove, versions.Manifest(s))
		}
	}
	if err := r.RemoveAll(ctx, r.opts.Trash, remove); err != nil {
		return nil, err
	}
	return old, nil
}

// FreeTrash removes the trash's versions, the oldest run first, while the
// local backup's filesystem has less than minFree (a share: 0.05 is 5 %)
// of its blocks or of its inodes free to syncer: the mirror's next copies
// must not fail for the sake of older versions. It returns the stamps it
// removed. It does nothing on a remote backup, with the trash off, or with
// minFree 0.
//
// What each run gives back is counted as it goes (versions.Usage): some
// filesystems (XFS) free an unlinked file's blocks in the background, and
// a count read at once would take more versions than needed. Once the
// runs removed should be enough, the filesystem's own count decides, read
// until it shows them freed (SettleWait at most); short still (hard links
// freed less), the next oldest go.
func (r *Runner) FreeTrash(ctx context.Context, minFree float64) ([]string, error) {
	if r.opts.Trash == "" || minFree <= 0 || r.loc.Remote() {
		return nil, nil
	}
	root, err := osx.OpenRoot(r.opts.Dest)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	// short is how many bytes and inodes the filesystem lacks.
	short := func() (bytes, inodes int64, err error) {
		m, err := roomOf(root)
		if err != nil {
			return 0, 0, err
		}
		bytes, inodes = m.Short(minFree)
		return bytes, inodes, nil
	}
	needBytes, needInodes, err := short()
	if err != nil || needBytes <= 0 && needInodes <= 0 {
		return nil, err
	}
	names, err := r.List(ctx, r.opts.Trash)
	if err != nil {
		return nil, err
	}
	var gone []string
	for _, s := range versions.Stamps(names) {
		if err := ctx.Err(); err != nil {
			return gone, err
		}
		inodes, bytes, err := versions.Usage(root, r.opts.Trash, s)
		if err != nil {
			return gone, err
		}
		remove := []string{s}
		if slices.Contains(names, versions.Manifest(s)) {
			remove = append(remove, versions.Manifest(s))
		}
		if err := r.RemoveAll(ctx, r.opts.Trash, remove); err != nil {
			return gone, err
		}
		gone = append(gone, s)
		if needBytes, needInodes = needBytes-bytes, needInodes-inodes; needBytes > 0 || needInodes > 0 {
			continue
		}
		for wait := time.Now().Add(SettleWait); ; {
			if needBytes, needInodes, err = short(); err != nil || needBytes <= 0 && needInodes <= 0 {
				return gone, err
			}
			if time.Now().After(wait) {
				break
			}
			time.Sleep(SettleWait / 40)
		}
	}
	return gone, nil
}

// SettleWait is how long FreeTrash waits for a filesystem to show the
// room of the versions it removed.
const SettleWait = 2 * time.Second

// Room is what a filesystem holds and has free, to syncer: free to root
// (who may write the blocks a filesystem reserves for it) when syncer is
// root, else available to anyone.
type Room struct {
	FreeBytes  int64 `json:"free_bytes"`
	Bytes      int64 `json:"bytes"`
	FreeInodes int64 `json:"free_inodes"`
	Inodes     int64 `json:"inodes"` // 0: the filesystem counts none (btrfs)
}

// Room is the local backup's filesystem's room; false for a remote backup.
func (r *Runner) Room() (Room, bool, error) {
	if r.loc.Remote() {
		return Room{}, false, nil
	}
	root, err := osx.OpenRoot(r.opts.Dest)
	if err != nil {
		return Room{}, false, err
	}
	defer root.Close()
	m, err := roomOf(root)
	return m, err == nil, err
}

// roomOf is the room of the filesystem of root.
func roomOf(root *osx.Root) (Room, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(root.Fd(), &st); err != nil {
		return Room{}, &os.PathError{Op: "statfs", Path: root.Path(), Err: err}
	}
	unit := st.Frsize // the unit of Blocks
	if unit <= 0 {
		unit = st.Bsize
	}
	free := st.Bavail
	if os.Geteuid() == 0 {
		free = st.Bfree
	}
	return Room{FreeBytes: int64(free) * unit, Bytes: int64(st.Blocks) * unit, FreeInodes: int64(st.Ffree), Inodes: int64(st.Files)}, nil
}

// Short is how many bytes and how many inodes m lacks to have minFree of
// each free (0 or less: none).
func (m Room) Short(minFree float64) (bytes, inodes int64) {
	bytes = int64(math.Ceil(minFree*float64(m.Bytes))) - m.FreeBytes
	if m.Inodes > 0 {
		inodes = int64(math.Ceil(minFree*float64(m.Inodes))) - m.FreeInodes
	}
	return bytes, inodes
}

// FreeEvery is how often KeepTrash looks at the local backup's free room.
const FreeEvery = 10 * time.Second

// TrashPolicy is what KeepTrash keeps of the trash.
type TrashPolicy struct {
	Retention time.Duration // versions displaced longer ago go (PruneTrash)
	MaxBytes  int64         // past it the oldest go (0: no cap)
	MinFree   float64       // the local backup's share kept free (FreeTrash; 0: none)
	// Freed, when set, is told how many runs' versions FreeTrash removed
	// before their retention.
	Freed func(runs int)
}

// KeepTrash prunes the trash at start and hourly until ctx ends (see
// PruneTrash), and every FreeEvery frees the oldest versions on a local
// backup short of room (FreeTrash), warning that it did. It does nothing
// when Options.Trash is off.
func (r *Runner) KeepTrash(ctx context.Context, p TrashPolicy) {
	if r.opts.Trash == "" || p.Retention <= 0 {
		return
	}
	prune := time.Now()
	for {
		if !time.Now().Before(prune) {
			r.prune(ctx, p)
			prune = time.Now().Add(time.Hour)
		}
		r.free(ctx, p)
		select {
		case <-ctx.Done():
			return
		case <-time.After(FreeEvery):
		}
	}
}

// TidyTrash is one round of KeepTrash, for a process that does not stay
// (a standalone reconcile): the trash pruned, then the backup's room freed.
func (r *Runner) TidyTrash(ctx context.Context, p TrashPolicy) {
	if r.opts.Trash == "" || p.Retention <= 0 {
		return
	}
	r.prune(ctx, p)
	r.free(ctx, p)
}

// TidyTrashAside runs one TidyTrash round in the background, on a runner
// of its own for opts, beside the one job of a process that then exits (a
// standalone reconcile, run by cron with no daemon: old versions must not
// fill the backup there either); wait returns once it is done. Options
// New refuses leave nothing to tidy.
func TidyTrashAside(ctx context.Context, opts Options, p TrashPolicy) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if r, err := New(opts); err == nil {
			r.TidyTrash(ctx, p)
		}
	}()
	return func() { <-done }
}

// prune is PruneTrash, logged.
func (r *Runner) prune(ctx context.Context, p TrashPolicy) {
	old, err := r.PruneTrash(ctx, p.Retention, p.MaxBytes, time.Now())
	switch {
	case err != nil && ctx.Err() == nil:
		r.log.Warn("prune trash", zap.Error(err))
	case len(old) > 0:
		r.log.Info("trash pruned", zap.Int("runs", len(old)), zap.String("oldest", old[0]), zap.String("newest", old[len(old)-1]),
			zap.Duration("retention", p.Retention), zap.Int64("max_bytes", p.MaxBytes))
	}
}

// free is FreeTrash, logged and counted.
func (r *Runner) free(ctx context.Context, p TrashPolicy) {
	old, err := r.FreeTrash(ctx, p.MinFree)
	if err != nil && ctx.Err() == nil {
		r.log.Warn("free the backup's room from the trash", zap.Error(err))
	}
	if len(old) > 0 {
		// Versions within their retention are gone: an operator must know.
		r.log.Warn("backup short of room: oldest versions removed before their retention",
			zap.Int("runs", len(old)), zap.String("oldest", old[0]), zap.String("newest", old[len(old)-1]),
			zap.Float64("min_free", p.MinFree))
		if p.Freed != nil {
			p.Freed(len(old))
		}
	}
}

// MakeTrash creates the trash directory (0700) in a local backup's root
// when it is missing, keeping the root's times: made by the first run that
// displaces something, it would change them after the root was synced.
func (r *Runner) MakeTrash() error {
	if r.opts.Trash == "" || r.loc.Remote() {
		return nil
	}
	root, err := osx.OpenRoot(r.opts.Dest)
	if err != nil {
		return err
	}
	defer root.Close()
	defer root.KeepTimes(nil, []string{""})()
	if err := unix.Mkdirat(root.Fd(), r.opts.Trash, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("make the trash %s: %w", root.Join(r.opts.Trash), err)
	}
	return nil
}

// Fetch copies path (a file or a directory, relative to the tree) from a
// remote backup into the local directory into, below the same relative
// path, with every kept version of it (Trash/<stamp>/path) and the trash's
// manifests, so that versions and restore read a remote backup as a local
// one. Versions a stamp does not hold are no error.
func (r *Runner) Fetch(ctx context.Context, path, into string) error {
	if !r.loc.Remote() {
		return errors.New("fetch: the backup is local")
	}
	if err := syncer.CheckPath(path); err != nil {
		return err
	}
	base := strings.TrimSuffix(r.opts.Dest, "/") + "/./"
	srcs := []string{base + path}
	if path == "" {
		srcs = []string{base}
	}
	if r.opts.Trash != "" {
		// rsync expands the wildcards on the remote side, --protect-args or not.
		srcs = append(srcs, base+r.opts.Trash+"/*/"+path, base+r.opts.Trash+"/*"+versions.ManifestSuffix)
	}
	args := append([]string{"-lptgoD", "--recursive", "--relative", "--numeric-ids", "--protect-args"}, remoteArgs(r.opts)...)
	args = append(args, "--")
	args = append(args, srcs...)
	cmd := exec.CommandContext(ctx, r.bin, append(args, strings.TrimSuffix(into, "/")+"/")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = r.opts.WaitDelay
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 23 {
		return nil // some stamps hold no version of path
	}
	if err != nil {
		return fmt.Errorf("fetch %s: %s", path, firstLine(stderr.String()+err.Error()))
	}
	return nil
}

// Open opens the backup for reading path and its kept versions: a local
// backup directly, a remote one fetched into a staging directory (Fetch)
// that done removes.
func (r *Runner) Open(ctx context.Context, path string) (root *osx.Root, done func(), err error) {
	if !r.loc.Remote() {
		if root, err = osx.OpenRoot(r.opts.Dest); err != nil {
			return nil, nil, err
		}
		return root, func() { root.Close() }, nil
	}
	staging, err := os.MkdirTemp("", "syncer-versions-")
	if err != nil {
		return nil, nil, err
	}
	if err = r.Fetch(ctx, path, staging); err == nil {
		root, err = osx.OpenRoot(staging)
	}
	if err != nil {
		_ = os.RemoveAll(staging)
		return nil, nil, err
	}
	return root, func() { root.Close(); _ = os.RemoveAll(staging) }, nil
}
