// Package service ties a syncer daemon to what supervises it: the signals
// it answers (stop, reload, and a log line for every other one that would
// end it) and systemd's notify protocol (READY=1 once the backup is equal,
// STATUS= lines, watchdog pings, RELOADING=1). It imports neither the
// pipeline packages nor their types: the daemon hands it functions.
package service

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// Exit codes the signals give.
const (
	// ExitSecondSignal is the exit code of a second stop signal, which
	// does not wait for running work (128 + SIGINT, as a shell reports it).
	ExitSecondSignal = 130
)

// stops end the process the ordinary way: the first one stops it
// gracefully, a second one at once. SIGQUIT and SIGABRT (systemd's
// watchdog signal) also log every goroutine's stack first: a daemon the
// watchdog gave up on is one whose stacks say why.
var stops = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGABRT}

// ignored would end the process by default but mean nothing to syncer:
// each is logged and otherwise ignored, so that no signal but SIGKILL
// ends it without a line in the log. (SIGPIPE is included: a log reader
// gone away must not take the daemon with it.)
var ignored = []os.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGVTALRM,
	syscall.SIGXCPU, syscall.SIGXFSZ, syscall.SIGSTKFLT, syscall.SIGPWR, syscall.SIGIO, syscall.SIGTRAP}

// Signals returns a context that ends on the first stop signal (SIGINT,
// SIGTERM, SIGQUIT, SIGABRT); a second one exits the process at once with
// ExitSecondSignal. SIGHUP calls reload when it is set (the daemon
// re-reads its config) and stops like SIGTERM otherwise (a command on a
// terminal that hung up). Every signal is logged. The returned stop
// restores the default handling.
func Signals(parent context.Context, log *zap.Logger, reload func()) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 4) // a burst of signals is not lost while one is handled
	signal.Notify(ch, append(append([]os.Signal{syscall.SIGHUP}, stops...), ignored...)...)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		stopped := false
		for {
			var s os.Signal
			select {
			case s = <-ch:
			case <-quit:
				return
			}
			switch {
			case s == syscall.SIGHUP && reload != nil:
				log.Info("reloading the config", zap.String("signal", s.String()))
				reload()
			case isStop(s):
				if stopped {
					log.Warn("second signal: exiting now", zap.String("signal", s.String()))
					_ = log.Sync()
					os.Exit(ExitSecondSignal)
				}
				stopped = true
				if s == syscall.SIGQUIT || s == syscall.SIGABRT {
					log.Error("stopping; the stacks of every goroutine follow", zap.String("signal", s.String()),
						zap.String("stacks", stacks()))
				} else {
					log.Info("stopping; a second signal exits at once", zap.String("signal", s.String()))
				}
				cancel()
			default:
				log.Warn("signal ignored", zap.String("signal", s.String()))
			}
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(quit)
		<-done
		cancel()
	}
}

func isStop(s os.Signal) bool {
	for _, t := range stops {
		if s == t {
			return true
		}
	}
	return s == syscall.SIGHUP
}

// stacks is every goroutine's stack, up to 1 MiB.
func stacks() string {
	b := make([]byte, 1<<20)
	return string(b[:runtime.Stack(b, true)])
}

// Notifier speaks systemd's notify protocol on $NOTIFY_SOCKET. Without
// that variable (not started by systemd with Type=notify) every call does
// nothing. Safe for concurrent use.
type Notifier struct {
	log *zap.Logger
}

// NewNotifier returns the process's notifier; errors sending go to log at
// Warn (a supervisor that cannot be told is worth a line, not a stop).
func NewNotifier(log *zap.Logger) *Notifier { return &Notifier{log: log} }

func (n *Notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("tell systemd", zap.String("state", state), zap.Error(err))
	}
}

// Ready says the service is up: for syncer, once the startup reconcile
// made the backup equal to the source.
func (n *Notifier) Ready() { n.send(daemon.SdNotifyReady) }

// Status sets the one line `systemctl status` shows.
func (n *Notifier) Status(s string) { n.send("STATUS=" + s) }

// Reloading says a reload began; Ready ends it.
func (n *Notifier) Reloading() {
	n.send(daemon.SdNotifyReloading + "\nMONOTONIC_USEC=" + daemon.SdNotifyMonotonicUsec())
}

// Stopping says the service is shutting down.
func (n *Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// Run sends a STATUS= line from status every statusEvery and, when the
// unit set WatchdogSec=, a WATCHDOG=1 ping at half that interval for as
// long as alive returns nil within it. A daemon whose alive check fails or
// hangs stops pinging, and systemd restarts it. Run returns when ctx ends.
func (n *Notifier) Run(ctx context.Context, statusEvery time.Duration, status func() string, alive func(context.Context) error) {
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("systemd watchdog setting", zap.Error(err))
	}
	var ping <-chan time.Time
	if wd > 0 {
		t := time.NewTicker(wd / 2)
		defer t.Stop()
		ping = t.C
		n.log.Info("systemd watchdog on", zap.Duration("interval", wd))
	}
	st := time.NewTicker(statusEvery)
	defer st.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.C:
			if s := status(); s != last {
				n.Status(s)
				last = s
			}
		case <-ping:
			actx, cancel := context.WithTimeout(ctx, wd/2)
			err := alive(actx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					n.log.Error("not alive: no watchdog ping", zap.Error(err))
				}
				continue
			}
			n.send(daemon.SdNotifyWatchdog)
		}
	}
}
