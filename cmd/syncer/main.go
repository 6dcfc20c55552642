// Command syncer replicates a production tree to a backup continuously:
// inotify events → NATS JetStream → debounce → a pool of targeted rsyncs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/logging"
	"github.com/syncer/syncer/internal/service"
	"go.uber.org/zap"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors in how syncer was called.
type usageError struct{ error }

func main() {
	os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the syncer CLI with args and returns the exit code. Signals end
// ctx; a second SIGINT/SIGTERM exits at once.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "syncer: %v\n", oneLine(err))
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}

// oneLine joins a multi-error into one line, "; "-separated.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "syncer",
		Short: "Continuous, incremental backup of a file server tree with rsync",
		Long: `syncer keeps a backup tree equal to a source tree continuously. It watches
the source with inotify, debounces changes per directory, queues them in NATS
JetStream and runs targeted rsyncs on a pool of workers, one per core. A full
compare walk (reconcile) runs at start and whenever events may have been lost.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(versionLine())
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newDaemonCmd("run", stderr), newDaemonCmd("watch", stderr), newDaemonCmd("work", stderr), newReconcileCmd(stdout, stderr), newStatusCmd(stdout), newRetryCmd(stdout), newPauseCmd(stdout, false), newPauseCmd(stdout, true), newApproveCmd(stdout), newVersionsCmd(stdout, stderr), newRestoreCmd(stdout, stderr), newDiagnoseCmd(stdout, stderr), newVersionCmd(stdout),
		newDocsCmd(func() *cobra.Command { return newRootCmd(stdout, stderr) }))
	return root
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprint(stdout, versionLine())
			return nil
		},
	}
}

// versionLine is what `syncer --version` and `syncer version` print.
func versionLine() string {
	return fmt.Sprintf("syncer %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// daemonCmds describes the daemon commands: run (everything on one host),
// and its two halves for several hosts sharing an external NATS.
var daemonCmds = map[string]struct{ use, short, long string }{
	"run": {"run --source DIR --dest DIR [flags]",
		"Replicate continuously (watcher, queue, workers and an embedded NATS in one process)",
		`run starts everything a single host needs: an embedded NATS JetStream server
(file store in --state-dir, no network port), the inotify watcher, the
debouncer, a pool of rsync workers (one per usable core) and a startup
reconcile that syncs whatever changed while syncer was not running.

Settings come from --config (YAML, keys as the flag names with '_'), then
SYNCER_<KEY> environment variables, then flags; flags win.`},
	"watch": {"watch --nats-url URL --source DIR --dest DIR [flags]",
		"Watch the source and queue jobs on an external NATS (run it where the writes happen)", roleLong},
	"work": {"work --nats-url URL --source DIR --dest DIR [flags]",
		"Run rsync workers for jobs from an external NATS (any host that reaches source and backup)", roleLong},
}

const roleLong = `The roles of 'syncer run', split across hosts: 'watch' runs the watcher, the
coalescer and reconcile; 'work' runs the worker pool. Workers on every host
share the queue, and scope leases in NATS KV keep two hosts from syncing
overlapping directories at once. Both need --nats-url (a server >= 2.11).`

// newDaemonCmd is `syncer run`, `syncer watch` or `syncer work`.
func newDaemonCmd(role string, stderr io.Writer) *cobra.Command {
	var configPath string
	flags := config.Default()
	desc := daemonCmds[role]
	cmd := &cobra.Command{
		Use:   desc.use,
		Short: desc.short,
		Long:  desc.long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, level, err := prepare(cmd, configPath, flags, stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			if role != "run" && len(cfg.NatsURL) == 0 {
				return usageError{fmt.Errorf("%s needs --nats-url: several hosts share an external NATS (one host: syncer run)", role)}
			}
			d := newDaemon(cfg, log)
			d.role, d.level = role, level // the logger's
			d.reread = func() (config.Config, error) { return loadConfig(configPath, cmd.Flags(), flags) }
			ctx, stop := service.Signals(cmd.Context(), log, d.reload)
			defer stop()
			return d.Run(ctx)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML config file (e.g. /etc/syncer/syncer.yaml)")
	addFlags(cmd.Flags(), &flags)
	return cmd
}

// prepare builds and validates the effective config of a command and its
// logger (whose level a reload may change); every error is a usage error.
func prepare(cmd *cobra.Command, configPath string, flags config.Config, stderr io.Writer) (
	cfg config.Config, log *zap.Logger, level zap.AtomicLevel, err error) {
	if cfg, err = loadConfig(configPath, cmd.Flags(), flags); err != nil {
		return cfg, nil, level, usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, level, usageError{err}
	}
	if log, level, err = logging.New(cfg.LogLevel, cfg.LogFormat, stderr); err != nil {
		return cfg, nil, level, usageError{err}
	}
	return cfg, log, level, nil
}

// signals is prepare's context for a command that is not the daemon: it
// ends on a stop signal or SIGHUP (a terminal hung up). done stops
// watching signals and flushes the log.
func signals(cmd *cobra.Command, log *zap.Logger) (context.Context, func()) {
	ctx, stop := service.Signals(cmd.Context(), log, nil)
	return ctx, func() { stop(); _ = log.Sync() }
}
