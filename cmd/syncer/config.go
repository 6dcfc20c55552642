package main

import (
	"github.com/spf13/pflag"
	"github.com/syncer/syncer/config"
)

// addFlags registers the flags of every config.Config field on fs.
func addFlags(fs *pflag.FlagSet, c *config.Config) {
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
	fs.IntVar(&c.MaxDelete, "max-delete", c.MaxDelete, "most deletions one rsync may make, more is an error (0: no cap; the fraction brake is what holds mass deletions)")
	fs.Float64Var(&c.MaxDeleteFraction, "max-delete-fraction", c.MaxDeleteFraction, "share of a project's backup entries one run may delete before it waits for `syncer approve` (0: no brake)")
	fs.StringVar(&c.Trash, "trash", c.Trash, "directory in the backup root that keeps deleted and overwritten files, by date")
	fs.DurationVar(&c.TrashRetention, "trash-retention", c.TrashRetention, "how long overwritten and deleted versions are kept (0: no trash, deletions are final)")
	fs.IntVar(&c.TrashMaxBytes, "trash-max-bytes", c.TrashMaxBytes, "most bytes the kept versions may take; past it the oldest go first (0: no cap)")
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
func loadConfig(path string, fs *pflag.FlagSet, flagged config.Config) (config.Config, error) {
	return config.Load(path, flagged, func(flag string) bool {
		fl := fs.Lookup(flag)
		return fl != nil && fl.Changed
	})
}
