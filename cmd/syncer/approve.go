package main

import (
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/syncer/syncer"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/control"
)

type approveRequest struct {
	Project string `json:"project"`
}

type approveResponse struct {
	Held bool       `json:"held"`
	Hold guard.Hold `json:"hold"`
}

// handleApprove is POST /api/approve: the deletions of a project held by
// the brake go ahead.
func (d *daemon) handleApprove(w http.ResponseWriter, r *http.Request) {
	var req approveRequest
	if err := control.DecodeJSON(r, &req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := syncer.CheckName(req.Project); err != nil {
		http.Error(w, "bad request: project: "+err.Error(), http.StatusBadRequest)
		return
	}
	if d.brake == nil {
		http.Error(w, "this daemon has no deletion brake (max_delete_fraction 0, or a remote backup)", http.StatusConflict)
		return
	}
	h, held := d.brake.Approve(req.Project)
	control.WriteJSON(w, approveResponse{Held: held, Hold: h})
}

func newApproveCmd(stdout io.Writer) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "approve PROJECT",
		Short: "Let a project's deletions held by the deletion brake go ahead",
		Long: `A run that would delete more than max_delete_fraction of a project's entries
on the backup waits, with nothing deleted, and the project shows as held in
` + "`syncer status`" + `. approve lets that project's deletions through for the next 15
minutes; every deleted entry goes to the trash as usual.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := syncer.CheckName(args[0]); err != nil {
				return usageError{fmt.Errorf("project: %w (want a top-level folder name)", err)}
			}
			var resp approveResponse
			if err := cf.do(cmd, http.MethodPost, "/api/approve", approveRequest{Project: args[0]}, &resp); err != nil {
				return err
			}
			if resp.Held {
				fmt.Fprintf(stdout, "approved: %d of %d entries of %q will be deleted (kept in the trash)\n", resp.Hold.Deleting, resp.Hold.Of, args[0])
			} else {
				fmt.Fprintf(stdout, "approved: %q was not held; its deletions go through for the next 15 minutes\n", args[0])
			}
			return nil
		},
	}
	cf.add(cmd)
	return cmd
}
