package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/internal/control"
	"github.com/syncer/syncer/internal/status"
)

// clientFlags locate a running daemon's control API: its socket in the
// state dir, or with --listen its TCP listener and a token.
type clientFlags struct{ control.Flags }

func (f *clientFlags) add(cmd *cobra.Command) { f.Add(cmd.Flags(), config.Default().StateDir) }

// get fetches path from the daemon into v.
func (f *clientFlags) get(cmd *cobra.Command, path string, v any) error {
	return f.do(cmd, http.MethodGet, path, nil, v)
}

// do sends a request with an optional JSON body and decodes the JSON answer into v.
func (f *clientFlags) do(cmd *cobra.Command, method, path string, body, v any) error {
	c, err := f.Client(func() (string, error) {
		cfg, err := loadConfig(f.Config, cmd.Flags(), config.Config{})
		return cfg.StateDir, err
	}, controlSock)
	if err != nil {
		return usageError{err}
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
			var r status.Report
			if err := cf.get(cmd, "/api/status", &r); err != nil {
				return err
			}
			return status.Write(stdout, asJSON, r, status.Print)
		},
	}
	cf.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	return cmd
}

func newRetryCmd(stdout io.Writer) *cobra.Command {
	var cf clientFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "retry [--all | JOB_ID...]",
		Short: "List dead-lettered jobs and why each was given up, or put them back on the queue",
		RunE: func(cmd *cobra.Command, ids []string) error {
			if all && len(ids) > 0 {
				return usageError{fmt.Errorf("give job IDs or --all, not both")}
			}
			if !all && len(ids) == 0 {
				var r status.Report
				if err := cf.get(cmd, "/api/status", &r); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%d dead-lettered jobs (put back with `syncer retry --all` or `syncer retry JOB_ID...`)\n", len(r.Dead))
				if len(r.Dead) > 0 {
					status.PrintDead(stdout, r.Dead)
				}
				return nil
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
