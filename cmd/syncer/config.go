package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/coalesce"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/watcher"
)

// Config is every setting of syncer. The YAML keys are the flag names with
// "_" for "-"; SYNCER_<KEY> environment variables override the file, and
// flags override both.
type Config struct {
	Source   string `yaml:"source"`
	Dest     string `yaml:"dest"`
	StateDir string `yaml:"state_dir"`

	Workers          int           `yaml:"workers"`
	Batch            int           `yaml:"batch"`
	Debounce         time.Duration `yaml:"debounce"`
	MaxDelay         time.Duration `yaml:"max_delay"`
	CollapseChildren int           `yaml:"collapse_children"`
	CollapseProject  int           `yaml:"collapse_project"`
	Exclude          []string      `yaml:"exclude"`
	ShutdownTimeout  time.Duration `yaml:"shutdown_timeout"`
	OpenFileWait     time.Duration `yaml:"open_file_wait"`

	RsyncPath  string   `yaml:"rsync_path"`
	RsyncArgs  []string `yaml:"rsync_args"`
	DirectCopy bool     `yaml:"direct_copy"`

	// A remote dest: ssh settings ("host:/path") or the rsync daemon's
	// password ("rsync://host/module/path").
	SSHIdentity       string `yaml:"ssh_identity"`
	SSHPort           int    `yaml:"ssh_port"`
	SSHKnownHosts     string `yaml:"ssh_known_hosts"`
	RsyncPasswordFile string `yaml:"rsync_password_file"`

	RetryBackoff      time.Duration `yaml:"retry_backoff"`
	RetryMax          int           `yaml:"retry_max"`
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	JobAckWait        time.Duration `yaml:"job_ack_wait"`
	LeaseTTL          time.Duration `yaml:"lease_ttl"`
	DiagnoseInterval  time.Duration `yaml:"diagnose_interval"`
	MaxDelete         int           `yaml:"max_delete"`
	Trash             string        `yaml:"trash"`
	TrashRetention    time.Duration `yaml:"trash_retention"`
	Marker            string        `yaml:"marker"`
	RequireMount      bool          `yaml:"require_mount"`

	Listen           string   `yaml:"listen"`
	ControlGroup     string   `yaml:"control_group"`
	ControlTokenFile string   `yaml:"control_token_file"`
	Pprof            bool     `yaml:"pprof"`
	NatsURL          []string `yaml:"nats_url"`
	NatsTokenFile    string   `yaml:"nats_token_file"`
	NatsUser         string   `yaml:"nats_user"`
	NatsPassword     string   `yaml:"nats_password_file"`
	NatsNkeyFile     string   `yaml:"nats_nkey_file"`
	NatsCredsFile    string   `yaml:"nats_creds_file"`
	NatsTLSCA        string   `yaml:"nats_tls_ca"`
	NatsTLSCert      string   `yaml:"nats_tls_cert"`
	NatsTLSKey       string   `yaml:"nats_tls_key"`
	NatsReplicas     int      `yaml:"nats_replicas"`
	NatsListen       string   `yaml:"nats_listen"`
	LogLevel         string   `yaml:"log_level"`
	LogFormat        string   `yaml:"log_format"`
}

// maxWorkers bounds the worker pool: each worker runs one rsync.
const maxWorkers = 1024

// defaultListen is the HTTP listener's default address: loopback only.
const defaultListen = "127.0.0.1:9797"

// DefaultConfig is the configuration with nothing set.
func DefaultConfig() Config {
	return Config{
		StateDir:          defaultStateDir(),
		Batch:             256,
		Debounce:          coalesce.DefaultQuiet,
		MaxDelay:          coalesce.DefaultMaxDelay,
		CollapseChildren:  coalesce.DefaultMaxChildren,
		CollapseProject:   coalesce.DefaultMaxPending,
		ShutdownTimeout:   30 * time.Second,
		OpenFileWait:      watcher.DefaultOpenWait,
		RsyncPath:         "rsync",
		DirectCopy:        true,
		Listen:            defaultListen,
		RetryBackoff:      time.Second,
		RetryMax:          8,
		ReconcileInterval: 24 * time.Hour,
		JobAckWait:        60 * time.Second,
		LeaseTTL:          30 * time.Second,
		DiagnoseInterval:  30 * time.Second,
		MaxDelete:         10000,
		Trash:             ".syncer-trash",
		TrashRetention:    7 * 24 * time.Hour,
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

// addFlags registers the flags of every Config field on fs.
func addFlags(fs *pflag.FlagSet, c *Config) {
	fs.StringVar(&c.Source, "source", c.Source, "source tree to back up, one folder per project (e.g. /data/prod)")
	fs.StringVar(&c.Dest, "dest", c.Dest, "backup tree; must exist: /data/prod_backup, host:/path (ssh) or rsync://host/module/path")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "where the queue store and lock live")
	fs.IntVar(&c.Workers, "workers", c.Workers, "concurrent rsyncs (0: GOMAXPROCS, the usable cores)")
	fs.IntVar(&c.Batch, "batch", c.Batch, "most directories one rsync may carry")
	fs.DurationVar(&c.Debounce, "debounce", c.Debounce, "quiet time a directory needs before it is synced")
	fs.DurationVar(&c.MaxDelay, "max-delay", c.MaxDelay, "longest wait for a directory that never goes quiet")
	fs.IntVar(&c.CollapseChildren, "collapse-children", c.CollapseChildren, "pending subdirectories that collapse into their parent")
	fs.IntVar(&c.CollapseProject, "collapse-project", c.CollapseProject, "pending directories that collapse into their whole project")
	fs.StringSliceVar(&c.Exclude, "exclude", c.Exclude, "name glob to skip (repeatable), e.g. '*.tmp'")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "time running rsyncs get to finish on stop")
	fs.DurationVar(&c.OpenFileWait, "open-file-wait", c.OpenFileWait, "longest a file still open for writing waits to be copied (0: copy at once)")
	fs.StringVar(&c.RsyncPath, "rsync-path", c.RsyncPath, "rsync binary")
	fs.StringSliceVar(&c.RsyncArgs, "rsync-args", c.RsyncArgs, "extra rsync arguments (repeatable), e.g. --acls")
	fs.BoolVar(&c.DirectCopy, "direct-copy", c.DirectCopy, "copy new subtrees and changed files in the kernel where rsync is not needed (local backups)")
	fs.StringVar(&c.SSHIdentity, "ssh-identity", c.SSHIdentity, "with a host:/path dest: ssh private key file")
	fs.IntVar(&c.SSHPort, "ssh-port", c.SSHPort, "with a host:/path dest: ssh port (0: ssh's default)")
	fs.StringVar(&c.SSHKnownHosts, "ssh-known-hosts", c.SSHKnownHosts, "with a host:/path dest: known_hosts file; the host key is then checked strictly")
	fs.StringVar(&c.RsyncPasswordFile, "rsync-password-file", c.RsyncPasswordFile, "with an rsync:// dest: file holding the daemon user's password")
	fs.DurationVar(&c.RetryBackoff, "retry-backoff", c.RetryBackoff, "first retry delay of a transiently failed job; doubles each time, at most 10m")
	fs.IntVar(&c.RetryMax, "retry-max", c.RetryMax, "transient failures before a job is given up (dead-lettered)")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", c.ReconcileInterval, "full reconcile every this long (±10% jitter; 0: only at start and after lost events)")
	fs.DurationVar(&c.JobAckWait, "job-ack-wait", c.JobAckWait, "how long a job whose worker died stays unseen before another worker gets it")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "with --nats-url: how long a dead worker's scope lease blocks others (renewed every third of it)")
	fs.DurationVar(&c.DiagnoseInterval, "diagnose-interval", c.DiagnoseInterval, "how often the daemon samples the machine for syncer_bottleneck (0: never)")
	fs.IntVar(&c.MaxDelete, "max-delete", c.MaxDelete, "most deletions one rsync may make; more is an error that needs an operator")
	fs.StringVar(&c.Trash, "trash", c.Trash, "directory in the backup root that keeps deleted and overwritten files, by date")
	fs.DurationVar(&c.TrashRetention, "trash-retention", c.TrashRetention, "how long trash is kept (0: no trash, deletions are final)")
	fs.StringVar(&c.Marker, "marker", c.Marker, "file that must exist in the source root before anything is deleted (e.g. .syncer-source)")
	fs.BoolVar(&c.RequireMount, "require-mount", c.RequireMount, "the source root must be a mount point (and stay the same filesystem)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTP address for the read-only /metrics, /healthz and /readyz (\"\" to disable); control is on the state dir's socket")
	fs.StringVar(&c.ControlGroup, "control-group", c.ControlGroup, "group allowed to use the control socket (status, reconcile, retry) besides root")
	fs.StringVar(&c.ControlTokenFile, "control-token-file", c.ControlTokenFile, "file holding a bearer token that opens the control API on --listen too (default: control only on the socket)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof on the control socket")
	fs.StringSliceVar(&c.NatsURL, "nats-url", c.NatsURL, "external NATS server(s) instead of the embedded one (nats://host:4222, repeatable)")
	fs.StringVar(&c.NatsTokenFile, "nats-token-file", c.NatsTokenFile, "file holding the external NATS token")
	fs.StringVar(&c.NatsUser, "nats-user", c.NatsUser, "external NATS user (with --nats-password-file)")
	fs.StringVar(&c.NatsPassword, "nats-password-file", c.NatsPassword, "file holding the external NATS user's password")
	fs.StringVar(&c.NatsNkeyFile, "nats-nkey-file", c.NatsNkeyFile, "file holding an nkey user seed for the external NATS")
	fs.StringVar(&c.NatsCredsFile, "nats-creds-file", c.NatsCredsFile, "NATS credentials file (user JWT and seed)")
	fs.StringVar(&c.NatsTLSCA, "nats-tls-ca", c.NatsTLSCA, "CA bundle that verifies the NATS servers (turns TLS on)")
	fs.StringVar(&c.NatsTLSCert, "nats-tls-cert", c.NatsTLSCert, "client certificate for NATS servers that require one")
	fs.StringVar(&c.NatsTLSKey, "nats-tls-key", c.NatsTLSKey, "client certificate's key")
	fs.IntVar(&c.NatsReplicas, "nats-replicas", c.NatsReplicas, "copies of each stream on an external cluster (0: 3 on a cluster of three or more servers, else 1)")
	fs.StringVar(&c.NatsListen, "nats-listen", c.NatsListen, "also open the embedded NATS on this address (e.g. 127.0.0.1:4222); default none")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json, console or auto (console on a terminal)")
}

// loadConfig builds the effective config: defaults < file < SYNCER_* env < flags set on fs.
func loadConfig(path string, fs *pflag.FlagSet, flagged Config) (Config, error) {
	c := DefaultConfig()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&c); err != nil {
		return c, err
	}
	// Flags the user set win; copy them field by field.
	cv, fv := reflect.ValueOf(&c).Elem(), reflect.ValueOf(flagged)
	for i := range cv.NumField() {
		name := strings.ReplaceAll(cv.Type().Field(i).Tag.Get("yaml"), "_", "-")
		if fl := fs.Lookup(name); fl != nil && fl.Changed {
			cv.Field(i).Set(fv.Field(i))
		}
	}
	return c, nil
}

func applyEnv(c *Config) error {
	v := reflect.ValueOf(c).Elem()
	var errs []error
	for i := range v.NumField() {
		key := v.Type().Field(i).Tag.Get("yaml")
		s, ok := os.LookupEnv("SYNCER_" + strings.ToUpper(key))
		if !ok {
			continue
		}
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString(s)
		case int:
			n, err := strconv.Atoi(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("SYNCER_%s: %q is not a number", strings.ToUpper(key), s))
				continue
			}
			f.SetInt(int64(n))
		case time.Duration:
			d, err := time.ParseDuration(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("SYNCER_%s: %q is not a duration", strings.ToUpper(key), s))
				continue
			}
			f.SetInt(int64(d))
		case []string:
			f.Set(reflect.ValueOf(strings.Split(s, ",")))
		case bool:
			b, err := strconv.ParseBool(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("SYNCER_%s: %q is not true or false", strings.ToUpper(key), s))
				continue
			}
			f.SetBool(b)
		}
	}
	return errors.Join(errs...)
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
	if c.Workers < 0 || c.Workers > maxWorkers {
		bad("workers: %d, want 0 (one per core) to %d", c.Workers, maxWorkers)
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
		if _, err := readToken(c.ControlTokenFile); err != nil {
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
	if c.ReconcileInterval < 0 {
		bad("reconcile_interval: %v is negative", c.ReconcileInterval)
	}
	if c.MaxDelete < 1 {
		bad("max_delete: %d, want at least 1", c.MaxDelete)
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
	if c.OpenFileWait < 0 {
		bad("open_file_wait: %v, want 0 or a positive duration", c.OpenFileWait)
	}
	for _, e := range c.Exclude {
		if _, err := filepath.Match(e, ""); err != nil || strings.Contains(e, "/") {
			bad("exclude %q: want a name glob without '/'", e)
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
	if err := checkRsync(c.RsyncPath); err != nil {
		bad("%v", err)
	}
	return errors.Join(errs...)
}

// remote reports whether the backup is on another host.
func (c *Config) remote() bool {
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
func (c *Config) external() queue.ExternalOptions {
	return queue.ExternalOptions{URLs: c.NatsURL, TokenFile: c.NatsTokenFile, User: c.NatsUser, PasswordFile: c.NatsPassword,
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

var rsyncVersion = regexp.MustCompile(`rsync\s+version\s+v?(\d+)\.(\d+)\.(\d+)`)

// checkRsync finds rsync and requires 3.2 or newer (nanosecond
// --modify-window, --mkpath).
func checkRsync(bin string) error {
	p, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("rsync %q not found: install it (Debian: apt-get install rsync)", bin)
	}
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		return fmt.Errorf("rsync %s --version: %v", p, err)
	}
	m := rsyncVersion.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("rsync %s: cannot read its version", p)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	if major < 3 || (major == 3 && minor < 2) {
		return fmt.Errorf("rsync %s is version %s.%s: syncer needs 3.2 or newer", p, m[1], m[2])
	}
	return nil
}
