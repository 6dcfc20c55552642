// Command syncer replicates a production tree to a backup continuously:
// inotify events → NATS JetStream → debounce → a pool of targeted rsyncs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/logging"
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
func oneLine(err error) string {
	var b []byte
	for _, c := range []byte(err.Error()) {
		if c == '\n' {
			b = append(b, ';', ' ')
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "syncer",
		Short: "Continuous, incremental backup of a file server tree with rsync",
		Long: `syncer keeps a backup tree equal to a source tree continuously. It watches
the source with inotify, debounces changes per directory, queues them in NATS
JetStream and runs targeted rsyncs on a pool of workers, one per core. A full
compare walk (reconcile) runs at start and whenever events may have been lost.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newDaemonCmd("run", stderr), newDaemonCmd("watch", stderr), newDaemonCmd("work", stderr), newReconcileCmd(stdout, stderr), newStatusCmd(stdout), newRetryCmd(stdout), newResumeCmd(stdout), newApproveCmd(stdout), newVersionsCmd(stdout, stderr), newRestoreCmd(stdout, stderr), newDiagnoseCmd(stdout, stderr), newVersionCmd(stdout))
	return root
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(stdout, "syncer %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
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
			ctx, cfg, log, done, err := prepare(cmd, configPath, flags, stderr)
			if err != nil {
				return err
			}
			defer done()
			if role != "run" && len(cfg.NatsURL) == 0 {
				return usageError{fmt.Errorf("%s needs --nats-url: several hosts share an external NATS (one host: syncer run)", role)}
			}
			d := newDaemon(cfg, log)
			d.role = role
			return d.Run(ctx)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML config file (e.g. /etc/syncer/syncer.yaml)")
	addFlags(cmd.Flags(), &flags)
	return cmd
}

// prepare builds and validates the effective config of a command, its
// logger and a context that signals end; every error is a usage error.
// done stops watching signals and flushes the log.
func prepare(cmd *cobra.Command, configPath string, flags config.Config, stderr io.Writer) (
	ctx context.Context, cfg config.Config, log *zap.Logger, done func(), err error) {
	if cfg, err = loadConfig(configPath, cmd.Flags(), flags); err != nil {
		return nil, cfg, nil, nil, usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return nil, cfg, nil, nil, usageError{err}
	}
	if log, err = logging.New(cfg.LogLevel, cfg.LogFormat, stderr); err != nil {
		return nil, cfg, nil, nil, usageError{err}
	}
	ctx, stop := notifyContext(cmd.Context(), log)
	return ctx, cfg, log, func() { stop(); _ = log.Sync() }, nil
}

// notifyContext ends ctx on the first SIGINT/SIGTERM and exits the process
// on the second.
func notifyContext(parent context.Context, log *zap.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case s := <-ch:
			log.Info("stopping; a second signal exits at once", zap.String("signal", s.String()))
			cancel()
		case <-ctx.Done():
			return
		}
		if s, ok := <-ch; ok {
			log.Warn("second signal: exiting now", zap.String("signal", s.String()))
			_ = log.Sync()
			os.Exit(130)
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
