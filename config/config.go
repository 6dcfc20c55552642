package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/coalesce"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/control"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/watcher"
)

// Config is every setting of syncer. The YAML keys are the flag names with
// "_" for "-"; SYNCER_<KEY> environment variables override the file, and
// flags override both.
type Config struct {
	Source   string `yaml:"source" help:"source tree to back up, one folder per project (e.g. /data/prod)"`
	Dest     string `yaml:"dest" help:"backup tree; must exist: /data/prod_backup, host:/path (ssh) or rsync://host/module/path"`
	StateDir string `yaml:"state_dir" help:"where the queue store and lock live"`

	Workers          int           `yaml:"workers" help:"concurrent rsyncs (0: GOMAXPROCS, the usable cores; twice that in a standalone reconcile)"`
	Batch            int           `yaml:"batch" help:"most directories one rsync may carry"`
	Debounce         time.Duration `yaml:"debounce" help:"quiet time a directory needs before it is synced"`
	MaxDelay         time.Duration `yaml:"max_delay" help:"longest wait for a directory that never goes quiet"`
	CollapseChildren int           `yaml:"collapse_children" help:"pending subdirectories that collapse into their parent"`
	CollapseProject  int           `yaml:"collapse_project" help:"pending directories that collapse into their whole project"`
	Exclude          []string      `yaml:"exclude" help:"what not to back up (repeatable): a name glob ('*.tmp') at any depth, or a path pattern from the source root ('ProjA/cache', '*/Proxies', 'ProjB/**/*.bak')"`
	ShutdownTimeout  time.Duration `yaml:"shutdown_timeout" help:"time running rsyncs get to finish on stop"`
	OpenFileWait     time.Duration `yaml:"open_file_wait" help:"longest a file still open for writing waits to be copied (0: copy at once)"`
	WatchBackend     string        `yaml:"watcher" help:"how the source is watched: fanotify (one mark on the whole filesystem: no watch limit, no start-up walk; root, Linux 5.17, a local filesystem), inotify (a watch per directory) or auto (fanotify where it works)"`

	RsyncPath  string   `yaml:"rsync_path" help:"rsync binary"`
	RsyncArgs  []string `yaml:"rsync_args" help:"extra rsync arguments (repeatable), e.g. --acls"`
	DirectCopy bool     `yaml:"direct_copy" help:"copy new subtrees and changed files in the kernel where rsync is not needed (local backups)"`
	Xattrs     bool     `yaml:"xattrs" help:"keep extended attributes: user.* (Samba's streams, DOS attributes, Finder info), trusted.*, security.* (Windows ACLs)"`
	ACLs       bool     `yaml:"acls" help:"keep POSIX ACLs (access and default)"`
	Sparse     bool     `yaml:"sparse" help:"keep sparse files sparse on the backup"`
	HardLinks  bool     `yaml:"hard_links" help:"keep hard links (rsync -H, within one directory's or subtree's run; turns the direct copier off)"`

	// A remote dest: ssh settings ("host:/path") or the rsync daemon's
	// password ("rsync://host/module/path").
	SSHIdentity       string `yaml:"ssh_identity" help:"with a host:/path dest: ssh private key file"`
	SSHPort           int    `yaml:"ssh_port" help:"with a host:/path dest: ssh port (0: ssh's default)"`
	SSHKnownHosts     string `yaml:"ssh_known_hosts" help:"with a host:/path dest: known_hosts file; the host key is then checked strictly"`
	RsyncPasswordFile string `yaml:"rsync_password_file" help:"with an rsync:// dest: file holding the daemon user's password"`

	RetryBackoff      time.Duration `yaml:"retry_backoff" help:"first retry delay of a transiently failed job; doubles each time, at most 10m"`
	RetryMax          int           `yaml:"retry_max" help:"transient failures before a job is given up (dead-lettered)"`
	ReconcileInterval time.Duration `yaml:"reconcile_interval" help:"full reconcile every this long (±10% jitter; 0: only at start and after lost events)"`
	DeepInterval      time.Duration `yaml:"deep_reconcile_interval" help:"a reconcile of the whole tree reads every backup entry this long after the last one that did; the others skip directories unchanged on both sides since they were last found equal (0: only with --deep)"`
	JobAckWait        time.Duration `yaml:"job_ack_wait" help:"how long a job whose worker died stays unseen before another worker gets it"`
	LeaseTTL          time.Duration `yaml:"lease_ttl" help:"with --nats-url: how long a dead worker's scope lease blocks others (renewed every third of it)"`
	DiagnoseInterval  time.Duration `yaml:"diagnose_interval" help:"how often the daemon samples the machine for syncer_bottleneck (0: never)"`
	MaxDelete         int           `yaml:"max_delete" help:"most deletions one rsync may make, more is an error (0: no cap; the fraction brake is what holds mass deletions)"`
	MaxDeleteFraction float64       `yaml:"max_delete_fraction" help:"share of a project's backup entries one run may delete before it waits for 'syncer approve' (0: no brake)"`
	Trash             string        `yaml:"trash" help:"directory in the backup root that keeps deleted and overwritten files, by date"`
	TrashRetention    time.Duration `yaml:"trash_retention" help:"how long overwritten and deleted versions are kept (0: no trash, deletions are final)"`
	TrashMaxBytes     int           `yaml:"trash_max_bytes" help:"most bytes the kept versions may take; past it the oldest go first (0: no cap)"`
	TrashMinFree      float64       `yaml:"trash_min_free" help:"share of a local backup's space and inodes kept free: below it the oldest versions go first, before their retention, so that the mirror's copies do not fail (0: never)"`
	Marker            string        `yaml:"marker" help:"file that must exist in the source root before anything is deleted (e.g. .syncer-source)"`
	RequireMount      bool          `yaml:"require_mount" help:"the source root must be a mount point (and stay the same filesystem)"`

	Listen           string   `yaml:"listen" help:"HTTP address for the read-only /metrics, /healthz and /readyz (\"\" to disable); control is on the state dir's socket"`
	ControlGroup     string   `yaml:"control_group" help:"group allowed to use the control socket (status, reconcile, retry) besides root"`
	ControlTokenFile string   `yaml:"control_token_file" help:"file holding a bearer token that opens the control API on --listen too (default: control only on the socket)"`
	Pprof            bool     `yaml:"pprof" help:"serve /debug/pprof on the control socket"`
	NatsURL          []string `yaml:"nats_url" help:"external NATS server(s) instead of the embedded one (nats://host:4222, repeatable)"`
	NatsTokenFile    string   `yaml:"nats_token_file" help:"file holding the external NATS token"`
	NatsUser         string   `yaml:"nats_user" help:"external NATS user (with --nats-password-file)"`
	NatsPassword     string   `yaml:"nats_password_file" help:"file holding the external NATS user's password"`
	NatsNkeyFile     string   `yaml:"nats_nkey_file" help:"file holding an nkey user seed for the external NATS"`
	NatsCredsFile    string   `yaml:"nats_creds_file" help:"NATS credentials file (user JWT and seed)"`
	NatsTLSCA        string   `yaml:"nats_tls_ca" help:"CA bundle that verifies the NATS servers (turns TLS on)"`
	NatsTLSCert      string   `yaml:"nats_tls_cert" help:"client certificate for NATS servers that require one"`
	NatsTLSKey       string   `yaml:"nats_tls_key" help:"client certificate's key"`
	NatsReplicas     int      `yaml:"nats_replicas" help:"copies of each stream on an external cluster (0: 3 on a cluster of three or more servers, else 1)"`
	NatsListen       string   `yaml:"nats_listen" help:"also open the embedded NATS on this address (e.g. 127.0.0.1:4222); default none"`
	LogLevel         string   `yaml:"log_level" help:"debug, info, warn or error"`
	LogFormat        string   `yaml:"log_format" help:"json, console or auto (console on a terminal)"`

	excludes *syncer.Excludes // Exclude compiled, shared by what Excludes built
}

// Excludes is Exclude compiled: one rule set, made at the first call and
// shared by every component built from c or from a copy of c made after,
// so that a reload's Set reaches them all at once. Exclude must be valid
// (Validate); an invalid one excludes nothing.
func (c *Config) Excludes() *syncer.Excludes {
	if c.excludes == nil {
		var err error
		if c.excludes, err = syncer.NewExcludes(c.Exclude); err != nil {
			c.excludes = syncer.MustExcludes()
		}
	}
	return c.excludes
}

// MaxWorkers bounds the worker pool: each worker runs one rsync.
const MaxWorkers = 1024

// DefaultListen is the HTTP listener's default address: loopback only.
const DefaultListen = "127.0.0.1:9797"

// Default is the configuration with nothing set.
func Default() Config {
	return Config{
		StateDir:          defaultStateDir(),
		Batch:             256,
		Debounce:          coalesce.DefaultQuiet,
		MaxDelay:          coalesce.DefaultMaxDelay,
		CollapseChildren:  coalesce.DefaultMaxChildren,
		CollapseProject:   coalesce.DefaultMaxPending,
		ShutdownTimeout:   30 * time.Second,
		OpenFileWait:      watcher.DefaultOpenWait,
		WatchBackend:      watcher.BackendAuto,
		RsyncPath:         "rsync",
		DirectCopy:        true,
		Xattrs:            true,
		ACLs:              true,
		Sparse:            true,
		Listen:            DefaultListen,
		RetryBackoff:      time.Second,
		RetryMax:          8,
		ReconcileInterval: 24 * time.Hour,
		DeepInterval:      7 * 24 * time.Hour,
		JobAckWait:        60 * time.Second,
		LeaseTTL:          30 * time.Second,
		DiagnoseInterval:  30 * time.Second,
		MaxDeleteFraction: guard.DefaultFraction,
		Trash:             ".syncer-trash",
		TrashRetention:    7 * 24 * time.Hour,
		TrashMinFree:      0.05,
		LogLevel:          "info",
		LogFormat:         "auto",
	}
}

// defaultStateDir follows systemd's StateDirectory, then root's /var/lib,
// then XDG for a user daemon.
func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return strings.Split(d, ":")[0]
	}
	if os.Geteuid() == 0 {
		return "/var/lib/syncer"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "syncer")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "syncer")
}

// Validate checks everything that can be checked before anything starts and
// reports every problem at once. It normalises paths to absolute clean ones.
// It changes nothing on disk.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	src, srcOK := c.checkDir("source", &c.Source, &errs)
	var dst string
	dstOK := false
	loc, err := rsync.ParseLocation(c.Dest)
	switch {
	case err != nil:
		bad("dest %v", err)
	case loc.Remote():
		c.checkRemote(loc, &errs)
	default:
		dst, dstOK = c.checkDir("dest", &c.Dest, &errs)
	}
	if srcOK && dstOK {
		switch {
		case src == dst:
			bad("source and dest are the same directory: %s", src)
		case within(dst, src):
			bad("dest %s is inside source %s: the backup would back itself up", dst, src)
		case within(src, dst):
			bad("source %s is inside dest %s: syncing would delete the source", src, dst)
		}
	}
	if c.StateDir == "" {
		bad("state_dir: required")
	} else if err := checkCreatable(c.StateDir); err != nil {
		bad("state_dir %s: %v", c.StateDir, err)
	} else if abs, err := filepath.Abs(c.StateDir); err == nil {
		c.StateDir = abs
		if srcOK && (abs == src || within(abs, src)) {
			bad("state_dir %s is inside source %s", abs, src)
		}
		if dstOK && (abs == dst || within(abs, dst)) {
			bad("state_dir %s is inside dest %s: a sync would move the live queue into the trash", abs, dst)
		}
		if srcOK && within(src, abs) || dstOK && within(dst, abs) {
			bad("state_dir %s holds the source or the dest", abs)
		}
	}
	if c.Workers < 0 || c.Workers > MaxWorkers {
		bad("workers: %d, want 0 (one per core) to %d", c.Workers, MaxWorkers)
	}
	if c.Batch < 1 || c.Batch > 10000 {
		bad("batch: %d, want 1 to 10000", c.Batch)
	}
	for _, b := range []struct {
		name     string
		v        time.Duration
		min, max time.Duration
	}{
		{"debounce", c.Debounce, time.Millisecond, time.Minute},
		{"max_delay", c.MaxDelay, time.Millisecond, time.Hour},
		{"retry_backoff", c.RetryBackoff, time.Millisecond, time.Hour},
		{"job_ack_wait", c.JobAckWait, 3 * time.Second, time.Hour},
		{"lease_ttl", c.LeaseTTL, time.Second, 10 * time.Minute},
		{"shutdown_timeout", c.ShutdownTimeout, time.Millisecond, time.Hour},
		{"open_file_wait", c.OpenFileWait, 0, 24 * time.Hour},
		{"trash_retention", c.TrashRetention, 0, 10 * 366 * 24 * time.Hour},
	} {
		if b.v < b.min || b.v > b.max {
			bad("%s: %v, want %v to %v", b.name, b.v, b.min, b.max)
		}
	}
	if c.ReconcileInterval != 0 && (c.ReconcileInterval < time.Minute || c.ReconcileInterval > 31*24*time.Hour) {
		bad("reconcile_interval: %v, want 0 (never) or 1m to 744h", c.ReconcileInterval)
	}
	if c.DiagnoseInterval != 0 && (c.DiagnoseInterval < 100*time.Millisecond || c.DiagnoseInterval > 24*time.Hour) {
		bad("diagnose_interval: %v, want 0 (never) or 100ms to 24h", c.DiagnoseInterval)
	}
	if c.RetryMax > 1000 {
		bad("retry_max: %d, want at most 1000", c.RetryMax)
	}
	if c.ControlGroup != "" {
		if _, err := user.LookupGroup(c.ControlGroup); err != nil {
			bad("control_group %q: %v", c.ControlGroup, err)
		}
	}
	if c.ControlTokenFile != "" {
		if _, err := control.ReadToken(c.ControlTokenFile); err != nil {
			bad("control_token_file: %v", err)
		}
	}
	if c.Debounce <= 0 {
		bad("debounce: %v, want a positive duration", c.Debounce)
	}
	if c.MaxDelay < c.Debounce {
		bad("max_delay %v is shorter than debounce %v", c.MaxDelay, c.Debounce)
	}
	if c.CollapseChildren < 1 || c.CollapseProject < 1 {
		bad("collapse_children and collapse_project must be at least 1")
	}
	if c.RetryBackoff <= 0 || c.RetryMax < 1 {
		bad("retry_backoff must be positive and retry_max at least 1")
	}
	if c.LeaseTTL < time.Second {
		bad("lease_ttl: %v, want at least 1s", c.LeaseTTL)
	}
	if c.JobAckWait < 3*time.Second {
		bad("job_ack_wait: %v, want at least 3s", c.JobAckWait)
	}
	if c.DeepInterval != 0 && (c.DeepInterval < time.Hour || c.DeepInterval > 366*24*time.Hour) {
		bad("deep_reconcile_interval: %v, want 0 (only when asked) or 1h to 8784h", c.DeepInterval)
	}
	if c.ReconcileInterval < 0 {
		bad("reconcile_interval: %v is negative", c.ReconcileInterval)
	}
	if c.MaxDelete < 0 {
		bad("max_delete: %d, want 0 (no cap) or more", c.MaxDelete)
	}
	if c.MaxDeleteFraction < 0 || c.MaxDeleteFraction > 1 {
		bad("max_delete_fraction: %v, want 0 (no brake) to 1", c.MaxDeleteFraction)
	}
	if c.TrashMaxBytes < 0 {
		bad("trash_max_bytes: %d, want 0 (no cap) or more", c.TrashMaxBytes)
	}
	if c.TrashMinFree < 0 || c.TrashMinFree >= 1 {
		bad("trash_min_free: %v, want 0 (never) up to but not 1", c.TrashMinFree)
	}
	if c.TrashRetention < 0 {
		bad("trash_retention: %v is negative", c.TrashRetention)
	}
	if c.TrashRetention > 0 && (syncer.CheckName(c.Trash) != nil || strings.ContainsAny(c.Trash, "*?[")) {
		bad("trash %q: want a plain directory name", c.Trash)
	}
	if c.Marker != "" && syncer.CheckName(c.Marker) != nil {
		bad("marker %q: want a file name in the source root", c.Marker)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout: %v, want a positive duration", c.ShutdownTimeout)
	}
	switch c.WatchBackend {
	case watcher.BackendAuto, watcher.BackendFanotify, watcher.BackendInotify:
	default:
		bad("watcher: %q, want auto, fanotify or inotify", c.WatchBackend)
	}
	if c.OpenFileWait < 0 {
		bad("open_file_wait: %v, want 0 or a positive duration", c.OpenFileWait)
	}
	for _, e := range c.Exclude {
		if err := syncer.CheckExclude(e); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "console", "auto":
	default:
		bad("log_format %q: want json, console or auto", c.LogFormat)
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("listen: %v", err)
		}
	}
	if len(c.NatsURL) > 0 && c.NatsListen != "" {
		bad("nats_listen is for the embedded server; not with nats_url")
	}
	if err := c.external().Check(); err != nil {
		errs = append(errs, err)
	}
	if len(c.NatsURL) == 0 && strings.Join([]string{c.NatsTokenFile, c.NatsUser, c.NatsPassword, c.NatsNkeyFile,
		c.NatsCredsFile, c.NatsTLSCA, c.NatsTLSCert, c.NatsTLSKey}, "") != "" {
		bad("nats credentials and TLS settings need nats_url")
	}
	if c.NatsReplicas < 0 || c.NatsReplicas > 5 {
		bad("nats_replicas: %d, want 0 (automatic) to 5", c.NatsReplicas)
	}
	if c.NatsListen != "" {
		if _, _, err := net.SplitHostPort(c.NatsListen); err != nil {
			bad("nats_listen: %v", err)
		}
	}
	remember, err := checkRsync(c.RsyncPath, c.StateDir)
	if err != nil {
		bad("%v", err)
	}
	if len(errs) == 0 {
		remember() // bad input touches nothing, the state dir included
	}
	return errors.Join(errs...)
}

// Remote reports whether the backup is on another host.
func (c *Config) Remote() bool {
	l, err := rsync.ParseLocation(c.Dest)
	return err == nil && l.Remote()
}

// checkRemote checks a remote dest's settings and files; whether the host
// answers is checked when a worker starts.
func (c *Config) checkRemote(loc rsync.Location, errs *[]error) {
	bad := func(format string, a ...any) { *errs = append(*errs, fmt.Errorf(format, a...)) }
	if loc.Daemon {
		if c.SSHIdentity != "" || c.SSHPort != 0 || c.SSHKnownHosts != "" {
			bad("ssh_* settings are for a host:/path dest, not an rsync daemon")
		}
	} else {
		if c.RsyncPasswordFile != "" {
			bad("rsync_password_file is for an rsync:// dest")
		}
		if _, err := exec.LookPath("ssh"); err != nil {
			bad("dest %s needs ssh: install it (Debian: apt-get install openssh-client)", c.Dest)
		}
		if c.SSHPort < 0 || c.SSHPort > 65535 {
			bad("ssh_port: %d is not a port", c.SSHPort)
		}
	}
	for _, f := range []struct{ key, path string }{{"ssh_identity", c.SSHIdentity}, {"ssh_known_hosts", c.SSHKnownHosts},
		{"rsync_password_file", c.RsyncPasswordFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			bad("%s: %v", f.key, err)
		}
	}
}

// external is how to reach an external NATS.
func (c *Config) external() *queue.ExternalOptions {
	return &queue.ExternalOptions{URLs: c.NatsURL, TokenFile: c.NatsTokenFile, User: c.NatsUser, PasswordFile: c.NatsPassword,
		NkeyFile: c.NatsNkeyFile, CredsFile: c.NatsCredsFile, TLSCA: c.NatsTLSCA, TLSCert: c.NatsTLSCert, TLSKey: c.NatsTLSKey, Name: "syncer"}
}

func (c *Config) checkDir(name string, p *string, errs *[]error) (string, bool) {
	if *p == "" {
		*errs = append(*errs, fmt.Errorf("%s: required", name))
		return "", false
	}
	abs, err := filepath.Abs(*p)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s %s: %w", name, *p, err))
		return "", false
	}
	fi, err := os.Stat(abs)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s %s: does not exist or is unreadable", name, abs))
		return "", false
	}
	if !fi.IsDir() {
		*errs = append(*errs, fmt.Errorf("%s %s: not a directory", name, abs))
		return "", false
	}
	*p = abs
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		real = abs
	}
	return real, true
}

// within reports whether p is strictly inside dir.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// checkCreatable reports whether dir exists as a writable directory or could be created.
func checkCreatable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			f, err := os.CreateTemp(d, ".syncer-probe-*")
			if err != nil {
				return fmt.Errorf("not writable: %v", err)
			}
			f.Close()
			return os.Remove(f.Name())
		}
		if d == filepath.Dir(d) {
			return err
		}
	}
}

// rsyncID names the rsync binary at p as the file it is now (the target
// of a symlink): path, device, inode, size and times; "" when it cannot
// be read.
func rsyncID(p string) string {
	var st unix.Stat_t
	if unix.Stat(p, &st) != nil {
		return ""
	}
	return fmt.Sprintf("%s %d %d %d %d %d", p, st.Dev, st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano())
}

var rsyncVersion = regexp.MustCompile(`rsync\s+version\s+v?(\d+)\.(\d+)\.(\d+)`)

// checkRsync finds rsync and requires 3.2 or newer (nanosecond
// --modify-window, --mkpath). What rsync --version printed is kept in
// stateDir (by remember, once the whole config is found valid), for as
// long as the binary is the same file unchanged and for a day at most: a
// standalone reconcile does not start an rsync to learn what it learnt
// the last time.
func checkRsync(bin, stateDir string) (remember func(), err error) {
	remember = func() {}
	p, err := exec.LookPath(bin)
	if err != nil {
		return remember, fmt.Errorf("rsync %q not found: install it (Debian: apt-get install rsync)", bin)
	}
	id := rsyncID(p)
	cache := filepath.Join(stateDir, "rsync.version")
	var out []byte
	if b, err := os.ReadFile(cache); err == nil && id != "" && bytes.HasPrefix(b, []byte(id+"\n")) {
		if fi, err := os.Stat(cache); err == nil && time.Since(fi.ModTime()) < 24*time.Hour {
			out = b[len(id)+1:]
		}
	}
	if out == nil {
		if out, err = exec.Command(p, "--version").Output(); err != nil {
			return remember, fmt.Errorf("rsync %s --version: %v", p, err)
		}
		if id != "" && stateDir != "" {
			remember = func() {
				tmp, err := os.CreateTemp(stateDir, ".rsync.version-*")
				if err != nil {
					return // the state dir made later: probed again next time
				}
				_, werr := tmp.Write(append([]byte(id+"\n"), out...))
				if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), cache) != nil {
					_ = os.Remove(tmp.Name())
				}
			}
		}
	}
	m := rsyncVersion.FindSubmatch(out)
	if m == nil {
		return func() {}, fmt.Errorf("rsync %s: cannot read its version", p)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	if major < 3 || (major == 3 && minor < 2) {
		return func() {}, fmt.Errorf("rsync %s is version %s.%s: syncer needs 3.2 or newer", p, m[1], m[2])
	}
	return remember, nil
}
