package main

import (
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/control"
)

// resumeRequest accepts what the guard holds the projects for.
type resumeRequest struct {
	AcceptSource bool `json:"accept_source"`
}

type resumeResponse struct {
	Source guard.Identity `json:"source"`
	Paused string         `json:"paused,omitempty"` // what still holds the projects
}

// handleResume is POST /api/resume.
func (d *daemon) handleResume(w http.ResponseWriter, r *http.Request) {
	var req resumeRequest
	if err := control.DecodeJSON(r, &req); err != nil || !req.AcceptSource {
		http.Error(w, "bad request: want {\"accept_source\": true}", http.StatusBadRequest)
		return
	}
	id, err := d.guard.Accept()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_ = d.guard.Check() // resumes the projects now if nothing else holds them
	control.WriteJSON(w, resumeResponse{Source: id, Paused: d.guard.Paused()})
}

func newResumeCmd(stdout io.Writer) *cobra.Command {
	var cf clientFlags
	var accept bool
	cmd := &cobra.Command{
		Use:   "resume --accept-source",
		Short: "Accept the source root as it is now, after a deliberate change of volume",
		Long: `At its first start syncer records what the source root is (its filesystem's
id, device, root inode, mount). When the root later is something else (a
volume that failed to mount, a lazy unmount, another disk), every project
pauses and nothing is deleted. If the change is deliberate, resume
--accept-source records the root as it is now; the running daemon then
resumes and reconciles. Without a running daemon it records it in the
state dir for the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !accept {
				return usageError{fmt.Errorf("say what to accept: --accept-source")}
			}
			var resp resumeResponse
			err := cf.do(cmd, http.MethodPost, "/api/resume", resumeRequest{AcceptSource: true}, &resp)
			if err != nil && cf.listen != "" {
				return err
			}
			if err != nil {
				// No daemon: record it for the next start, holding the state
				// dir so that none starts meanwhile.
				cfg, lerr := loadConfig(cf.config, cmd.Flags(), config.Config{})
				if lerr != nil {
					return usageError{lerr}
				}
				if cf.stateDir != "" {
					cfg.StateDir = cf.stateDir
				}
				if cfg.Source == "" {
					return usageError{fmt.Errorf("no daemon answers (%v), and no source is configured: give --config", err)}
				}
				if resp.Source, err = cfg.AcceptSource(); err != nil {
					return err
				}
			}
			fmt.Fprintf(stdout, "source accepted: %s\n", resp.Source)
			if resp.Paused != "" {
				fmt.Fprintf(stdout, "still paused: %s\n", resp.Paused)
			}
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().BoolVar(&accept, "accept-source", false, "record the source root as it is now as the one to back up")
	return cmd
}
