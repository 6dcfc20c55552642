package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/syncer/syncer/diag"
	"github.com/syncer/syncer/internal/status"
)

func newDiagnoseCmd(stdout, stderr io.Writer) *cobra.Command {
	var cf clientFlags
	var duration time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diagnose [--duration 10s] [--json] [-- COMMAND [ARGS...]]",
		Short: "Tell what limits the backup: CPU, disk, network, memory or latency",
		Long: `diagnose samples the machine (per-core CPU and iowait, per-disk busy time and
throughput, network against link speed, memory and swap, rsync processes)
and names the bottleneck with its evidence and what to do about it. It
reads the running daemon's queue when one answers.

With a COMMAND after "--" it runs it and diagnoses the whole run, so it
answers the question for any backup job:

    syncer diagnose -- rsync -a /data/prod/ /data/prod_backup/

and exits with COMMAND's exit status.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			prev, cur, runErr, err := diag.During(cmd.Context(), duration, args, stderr)
			if err != nil {
				return err
			}
			if ee := (*exec.ExitError)(nil); errors.As(runErr, &ee) && ee.ExitCode() > 0 { // COMMAND's status is diagnose's
				runErr = exitError{ee.ExitCode(), fmt.Sprintf("%s: exit status %d", args[0], ee.ExitCode())}
			}
			q := diag.Queue{}
			var r status.Report
			if err := cf.get(cmd, "/api/status", &r); err == nil {
				q = diag.Queue{Known: true, Pending: int(r.Queue.Pending), InFlight: r.Queue.InFlight, Workers: r.Workers, Busy: r.Busy}
			}
			_ = status.Write(stdout, asJSON, diag.Diagnose(prev, cur, q), func(w io.Writer, v diag.Verdict) { status.PrintVerdict(w, v, cur.At.Sub(prev.At)) })
			return runErr
		},
	}
	cf.add(cmd)
	cmd.Flags().DurationVar(&duration, "duration", 10*time.Second, "how long to sample when no command is given")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// load is what the queue and the pool hold now, for diag.
func (d *daemon) load(ctx context.Context) diag.Queue {
	q := diag.Queue{Known: true, Workers: d.pool.Workers(), Busy: d.pool.Busy()}
	if st, err := d.q.Stats(ctx); err == nil {
		q.Pending, q.InFlight = int(st.Pending), st.InFlight
	}
	return q
}

// verdict exports the bottleneck and logs when it changes.
func (d *daemon) verdict(v diag.Verdict, changed bool) {
	d.metrics.Bottleneck(v.Bottleneck)
	if changed {
		d.log.Info("bottleneck changed", zap.String("bottleneck", v.Bottleneck), zap.String("summary", v.Summary),
			zap.String("advice", v.Advice), zap.Strings("evidence", v.Evidence))
	}
}
