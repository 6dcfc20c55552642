package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/control"
)

// clientFlags locate a running daemon's control API: its socket in the
// state dir, or with --listen its TCP listener and a token.
type clientFlags struct {
	listen, tokenFile, stateDir, config string
}

func (f *clientFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.listen, "listen", "", "reach the daemon over TCP at this address instead of its control socket (needs --token-file)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "the daemon's control_token_file, for --listen")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "the daemon's state dir (default: from --config, else "+config.Default().StateDir+")")
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "the daemon's config file")
}

// socket is the daemon's control socket: in --state-dir, else the
// configured state dir.
func (f *clientFlags) socket(cmd *cobra.Command) (string, error) {
	dir := f.stateDir
	if dir == "" {
		cfg, err := loadConfig(f.config, cmd.Flags(), config.Config{})
		if err != nil {
			return "", usageError{err}
		}
		dir = cfg.StateDir
	}
	return filepath.Join(dir, controlSock), nil
}

// get fetches path from the daemon into v.
func (f *clientFlags) get(cmd *cobra.Command, path string, v any) error {
	return f.do(cmd, http.MethodGet, path, nil, v)
}

// do sends a request with an optional JSON body and decodes the JSON answer into v.
func (f *clientFlags) do(cmd *cobra.Command, method, path string, body, v any) error {
	c := control.Client{Addr: f.listen}
	if f.listen != "" {
		if f.tokenFile != "" {
			var err error
			if c.Token, err = control.ReadToken(f.tokenFile); err != nil {
				return usageError{fmt.Errorf("token-file: %w", err)}
			}
		}
	} else {
		sock, err := f.socket(cmd)
		if err != nil {
			return err
		}
		c.Socket = sock
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	return c.Do(ctx, method, path, body, v)
}

func newStatusCmd(stdout io.Writer) *cobra.Command {
	var cf clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what the running daemon is doing, per project",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r statusReport
			if err := cf.get(cmd, "/api/status", &r); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printStatus(stdout, r)
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	return cmd
}

func printStatus(w io.Writer, r statusReport) {
	state := "ready"
	if !r.Ready || r.NotReady != "" {
		state = "NOT READY: " + r.NotReady
	}
	fmt.Fprintf(w, "syncer %s  %s → %s  %s  (up %s)\n", r.Version, r.Source, r.Dest, state, time.Since(r.Started).Round(time.Second))
	fmt.Fprintf(w, "workers %d/%d busy · queue %d pending, %d in flight, oldest %.1fs · events %d · watches %d of %d · rsync runs %d\n",
		r.Busy, r.Workers, r.Queue.Pending, r.Queue.InFlight, r.Queue.OldestSeconds, r.Queue.Events, r.Watches, r.WatchesLimit, r.RsyncRuns)
	if r.Queue.Error != "" {
		fmt.Fprintf(w, "queue error: %s\n", r.Queue.Error)
	}
	if r.Paused != "" {
		fmt.Fprintf(w, "PAUSED: %s\n", r.Paused)
	}
	if r.OpenWaiting > 0 {
		fmt.Fprintf(w, "%d files still open for writing wait to be copied\n", r.OpenWaiting)
	}
	if len(r.Unwatched) > 0 || r.Overflows > 0 {
		fmt.Fprintf(w, "lost events: %d overflows, %d unwatched directories (covered by reconcile)\n", r.Overflows, len(r.Unwatched))
	}
	if r.NetworkFS != "" {
		fmt.Fprintf(w, "WARNING: the source is on %s: only this host's writes raise events; reconcile finds the rest\n", r.NetworkFS)
	}
	if rc := r.Reconcile; rc != nil {
		fmt.Fprintf(w, "last reconcile %s (%s): %s, started %s, %d of %d jobs done, %d failed, drift %d files / %d bytes\n",
			rc.ID, rc.Why, rc.State, fmtTime(rc.Started), rc.Done, rc.Jobs, rc.Failed, rc.DriftFiles, rc.DriftBytes)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPROJECT\tSTATE\tLAST SYNC\tLAG\tPENDING\tDONE\tFAILED\tLAST ERROR")
	for _, p := range r.Projects {
		fmt.Fprintf(tw, "%q\t%s\t%s\t%.2fs\t%d\t%d\t%d\t%s\n", p.Name, p.State, fmtTime(p.LastSync), p.LastLag, p.Pending, p.Done, p.Failed, p.LastError)
	}
	_ = tw.Flush()
	if len(r.Dead) > 0 {
		fmt.Fprintf(w, "\n%d dead-lettered jobs (put back with `syncer retry`):\n", len(r.Dead))
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tSCOPE\tEXIT\tWHEN\tERROR")
		for _, d := range r.Dead {
			fmt.Fprintf(tw, "%s\t%q\t%d\t%s\t%s\n", d.ID, d.Scope, d.ExitCode, fmtTime(d.At), d.Error)
		}
		_ = tw.Flush()
	}
}

func newRetryCmd(stdout io.Writer) *cobra.Command {
	var cf clientFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "retry [--all | JOB_ID...]",
		Short: "Put dead-lettered jobs back on the queue (see `syncer status`)",
		RunE: func(cmd *cobra.Command, ids []string) error {
			if all == (len(ids) > 0) {
				return usageError{fmt.Errorf("give job IDs or --all")}
			}
			var resp retryResponse
			if err := cf.do(cmd, http.MethodPost, "/api/retry", retryRequest{IDs: ids}, &resp); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d jobs put back on the queue\n", resp.Retried)
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "put back every dead-lettered job")
	return cmd
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
