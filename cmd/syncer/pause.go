package main

import (
	"errors"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/syncer/syncer/config"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/control"
	"github.com/syncer/syncer/internal/status"
)

// pauseRequest is POST /api/pause and /api/resume: one project, or All.
type pauseRequest struct {
	Project      string `json:"project,omitempty"`
	All          bool   `json:"all,omitempty"`
	Reason       string `json:"reason,omitempty"`
	AcceptSource bool   `json:"accept_source,omitempty"` // resume: the source root as it is now
}

type pauseResponse struct {
	Pauses []guard.Pause   `json:"pauses"` // in force now
	Ended  []guard.Pause   `json:"ended,omitempty"`
	Source *guard.Identity `json:"source,omitempty"` // accepted
	Paused string          `json:"paused,omitempty"` // what the guard still holds every project for
}

// handlePause is POST /api/pause and /api/resume: an operator's pause.
func (d *daemon) handlePause(w http.ResponseWriter, r *http.Request) {
	var req pauseRequest
	err := control.DecodeJSON(r, &req)
	one := req.All != (req.Project != "") != req.AcceptSource && !(req.All && req.AcceptSource) // exactly one of the three
	if err == nil && (!one || req.AcceptSource && r.URL.Path == "/api/pause") {
		err = errors.New(`want {"project": NAME}, {"all": true} or, to resume, {"accept_source": true}`)
	}
	if err == nil && req.Project != "" {
		err = d.cfg.CheckProjects([]string{req.Project})
	}
	if err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var resp pauseResponse
	switch {
	case r.URL.Path == "/api/pause":
		_, err = d.pauses.Pause(req.Project, req.Reason)
	case req.AcceptSource:
		var id guard.Identity
		id, err = d.guard.Accept()
		resp.Source = &id
	default:
		if resp.Ended, err = d.pauses.Resume(req.Project); len(resp.Ended) > 0 {
			d.sched.Request(guard.Projects(resp.Ended)...) // what changed meanwhile is synced now
		}
	}
	if err != nil {
		http.Error(w, err.Error(), map[bool]int{true: http.StatusConflict, false: http.StatusInternalServerError}[errors.Is(err, guard.ErrAllPaused)])
		return
	}
	_ = d.guard.Check() // resumes the projects now if nothing else holds them
	resp.Pauses, resp.Paused = d.pauses.List(), d.guard.Paused()
	control.WriteJSON(w, resp)
}

func newPauseCmd(stdout io.Writer, resume bool) *cobra.Command {
	var cf clientFlags
	var accept bool
	var reason string
	cmd := &cobra.Command{
		Use:   "pause [PROJECT]",
		Short: "Stop changing a project (or, with none, every project) on the backup until resumed",
		Long: `pause stops syncing a project, or with no PROJECT every project: nothing of it
is copied, moved or deleted on the backup, its jobs wait in the queue, and
status, the status page and /readyz say it is paused, by whom and since
when. The pause outlasts a restart (it is kept in the state dir); without
a running daemon it is recorded for the next start. ` + "`syncer resume`" + ` ends it
and reconciles what changed meanwhile.`,
		Args: cobra.MaximumNArgs(1),
	}
	if resume {
		cmd.Use, cmd.Short = "resume [PROJECT] | resume --accept-source", "Resume a paused project (or every one), or accept a changed source root"
		cmd.Long = `resume ends an operator's pause of PROJECT, or with none every pause; what
changed meanwhile is reconciled at once.

resume --accept-source: at its first start syncer records what the source
root is (its filesystem's id, device, root inode, mount). When the root
later is something else (a volume that failed to mount, a lazy unmount,
another disk), every project pauses and nothing is deleted. If the change
is deliberate, resume --accept-source records the root as it is now; the
running daemon then resumes and reconciles. Without a running daemon it
records it in the state dir for the next start.`
		cmd.Flags().BoolVar(&accept, "accept-source", false, "record the source root as it is now as the one to back up")
	} else {
		cmd.Flags().StringVar(&reason, "reason", "", "why, for status and the log (e.g. \"restoring from tape\")")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		req := pauseRequest{All: len(args) == 0 && !accept, Reason: reason, AcceptSource: accept}
		if len(args) == 1 {
			if accept {
				return usageError{errors.New("--accept-source takes no project")}
			}
			req.Project = args[0]
		}
		path := map[bool]string{false: "/api/pause", true: "/api/resume"}[resume]
		var resp pauseResponse
		err := cf.do(cmd, http.MethodPost, path, req, &resp)
		if err != nil && (!errors.Is(err, control.ErrNoDaemon) || cf.Listen != "") {
			return err // the daemon answered, or was asked for by address
		}
		if err != nil {
			// No daemon: recorded for the next start, holding the state dir
			// so that none starts meanwhile.
			if resp, err = pauseOffline(cmd, cf, req, resume); err != nil {
				return err
			}
		}
		status.PrintPauses(stdout, req.Project, resume, resp.Ended, resp.Pauses, resp.Paused, resp.Source)
		return nil
	}
	cf.add(cmd)
	return cmd
}

// pauseOffline is pause or resume with no daemon running.
func pauseOffline(cmd *cobra.Command, cf clientFlags, req pauseRequest, resume bool) (resp pauseResponse, err error) {
	cfg, err := loadConfig(cf.Config, cmd.Flags(), config.Config{})
	if cf.StateDir != "" {
		cfg.StateDir = cf.StateDir
	}
	if err == nil && cfg.Source == "" {
		err = errors.New("no daemon answers, and no source is configured: give --config")
	}
	if err != nil {
		return resp, usageError{err}
	}
	if req.AcceptSource {
		id, err := cfg.AcceptSource()
		return pauseResponse{Source: &id}, err
	}
	resp.Ended, resp.Pauses, err = cfg.Pause(req.Project, req.Reason, resume)
	return resp, err
}
