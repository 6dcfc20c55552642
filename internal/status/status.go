// Package status is what the CLI shows of the daemon: its status report,
// as GET /api/status returns it and `syncer status` prints it, and a
// reconcile's progress and summary.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/syncer/syncer"
	"github.com/syncer/syncer/diag"
	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/metrics"
	"github.com/syncer/syncer/queue"
	"github.com/syncer/syncer/reconcile"
	"github.com/syncer/syncer/rsync"
	"github.com/syncer/syncer/versions"
	"github.com/syncer/syncer/watcher"
)

// Report is what GET /api/status returns and `syncer status` prints.
type Report struct {
	Version      string            `json:"version"`
	Source       string            `json:"source"`
	Dest         string            `json:"dest"`
	Started      time.Time         `json:"started"`
	Ready        bool              `json:"ready"`
	NotReady     string            `json:"not_ready,omitempty"`
	Workers      int               `json:"workers"`
	Busy         int               `json:"workers_busy"`
	Queue        Queue             `json:"queue"`
	Watcher      string            `json:"watcher"` // the backend: fanotify or inotify
	Watches      int               `json:"watches"`
	WatchesLimit int64             `json:"watches_limit"`
	Unwatched    []string          `json:"unwatched,omitempty"`
	Overflows    int64             `json:"overflows"`
	OpenWaiting  int               `json:"open_files_waiting"`
	RsyncRuns    int64             `json:"rsync_runs"`
	NetworkFS    string            `json:"network_fs,omitempty"`
	CannotKeep   string            `json:"backup_cannot_keep,omitempty"`
	Reconcile    *reconcile.Report `json:"reconcile,omitempty"`
	Paused       string            `json:"paused,omitempty"`
	Held         []guard.Hold      `json:"held,omitempty"`
	Pauses       []guard.Pause     `json:"pauses,omitempty"` // an operator's
	Dead         []queue.DeadJob   `json:"dead"`
	// VersionRuns counts the runs whose overwritten and deleted files the
	// trash keeps, since OldestVersion (a local backup's).
	VersionRuns   int       `json:"version_runs"`
	OldestVersion time.Time `json:"oldest_version,omitzero"`
	// BackupRoom is a local backup's filesystem's room; below TrashMinFree
	// of it free the trash's oldest versions go first (0: never).
	BackupRoom   *rsync.Room       `json:"backup_room,omitempty"`
	TrashMinFree float64           `json:"trash_min_free,omitempty"`
	Projects     []metrics.Project `json:"projects"`
}

// Queue is what the queue holds.
type Queue struct {
	Pending       uint64  `json:"pending"`
	InFlight      int     `json:"inflight"`
	OldestSeconds float64 `json:"oldest_seconds"`
	Events        uint64  `json:"events"`
	Error         string  `json:"error,omitempty"`
}

// Print writes r for a terminal.
func Print(w io.Writer, r Report) {
	state := "ready"
	if !r.Ready || r.NotReady != "" {
		state = "NOT READY: " + r.NotReady
	}
	fmt.Fprintf(w, "syncer %s  %s → %s  %s  (up %s)\n", r.Version, r.Source, r.Dest, state, time.Since(r.Started).Round(time.Second))
	fmt.Fprintf(w, "workers %d/%d busy · queue %d pending, %d in flight, oldest %.1fs · events %d · %s · rsync runs %d\n",
		r.Busy, r.Workers, r.Queue.Pending, r.Queue.InFlight, r.Queue.OldestSeconds, r.Queue.Events, Watching(r.Watcher, r.Watches, r.WatchesLimit), r.RsyncRuns)
	if r.Queue.Error != "" {
		fmt.Fprintf(w, "queue error: %s\n", r.Queue.Error)
	}
	if r.Paused != "" {
		fmt.Fprintf(w, "PAUSED: %s\n", r.Paused)
	}
	for _, ps := range r.Pauses {
		fmt.Fprintf(w, "PAUSED: %s\n", ps)
	}
	for _, h := range r.Held {
		fmt.Fprintf(w, "HELD: %s\n", h)
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
	if r.CannotKeep != "" {
		fmt.Fprintf(w, "WARNING: the backup's filesystem cannot keep %s: dropped, counted per project (DROPPED)\n", r.CannotKeep)
	}
	if m := r.BackupRoom; m != nil {
		kept := fmt.Sprintf("%d runs", r.VersionRuns)
		if r.VersionRuns > 0 {
			kept += " since " + FmtTime(r.OldestVersion)
		}
		fmt.Fprintf(w, "backup: %s · versions kept: %s\n", FmtRoom(*m, r.TrashMinFree), kept)
	}
	if rc := r.Reconcile; rc != nil {
		fmt.Fprintf(w, "last reconcile %s (%s): %s, started %s, %d of %d jobs done, %d failed, drift %d files / %s\n",
			rc.ID, rc.Why, rc.State, FmtTime(rc.Started), rc.Done, rc.Jobs, rc.Failed, rc.DriftFiles, FmtBytes(rc.DriftBytes))
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPROJECT\tSTATE\tLAST SYNC\tLAG\tPENDING\tDONE\tFAILED\tDROPPED\tLAST ERROR")
	for _, p := range r.Projects {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2fs\t%d\t%d\t%d\t%d\t%s\n", FmtName(p.Name), p.State, FmtTime(p.LastSync), p.LastLag, p.Pending, p.Done, p.Failed,
			p.Dropped, p.LastError)
	}
	_ = tw.Flush()
	if len(r.Dead) > 0 {
		fmt.Fprintf(w, "\n%d dead-lettered jobs (put back with `syncer retry`):\n", len(r.Dead))
		PrintDead(w, r.Dead)
	}
}

// FmtRoom says what a backup has free, and what happens below minFree.
func FmtRoom(m rsync.Room, minFree float64) string {
	out := fmt.Sprintf("%s free of %s (%s)", FmtBytes(m.FreeBytes), FmtBytes(m.Bytes), percent(m.FreeBytes, m.Bytes))
	if m.Inodes > 0 {
		out += fmt.Sprintf(", %d of %d inodes (%s)", m.FreeInodes, m.Inodes, percent(m.FreeInodes, m.Inodes))
	}
	if minFree > 0 {
		out += fmt.Sprintf("; under %s %% free the oldest versions go first", strconv.FormatFloat(100*minFree, 'f', -1, 64))
	}
	return out
}

// percent is n of total, in percent.
func percent(n, total int64) string {
	if total <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(n)/float64(total))
}

// PrintDead lists dead-lettered jobs for a terminal, with the reason each
// was given up (rsync's own words when it said why).
func PrintDead(w io.Writer, dead []queue.DeadJob) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSCOPE\tEXIT\tWHEN\tERROR")
	for _, d := range dead {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", d.ID, FmtName(d.Scope), d.ExitCode, FmtTime(d.At), d.Error)
	}
	_ = tw.Flush()
}

// FmtName is a file or project name for a terminal: as it is, unless it
// is empty or holds spaces, quotes or characters a terminal would not show
// as themselves; then quoted with Go's escapes.
func FmtName(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == ' ' || r == '"' || r == '\\' || r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// FmtBytes is n bytes in B, KiB, MiB, GiB or TiB, with one decimal past B.
func FmtBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, units := float64(n), []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	for i := range units {
		f /= 1024
		if (f < 1024 && f > -1024) || i == len(units)-1 {
			return fmt.Sprintf("%.1f %s", f, units[i])
		}
	}
	panic("bug: unreachable")
}

// FmtTime is t for a terminal, "-" when zero.
func FmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// Readiness is what /readyz asks, in its order.
type Readiness struct {
	Guard    func() error                // the deletion guard, checked now
	Paused   func() string               // why the guard holds every job
	Held     func() []guard.Hold         // projects whose deletions wait for approval
	Pauses   func() []guard.Pause        // an operator's pauses
	Ready    func() bool                 // the startup reconcile is done
	Queue    func(context.Context) error // the queue answers and has room
	Degraded func() string               // lost events not caught up yet
}

// NotReady says why the daemon is not ready, "" when it is. The guard is
// asked now, not from the last run: a source gone while nothing changes
// is not ready either.
func NotReady(ctx context.Context, r Readiness) string {
	if err := r.Guard(); err != nil {
		return "paused: " + r.Paused()
	}
	if h := r.Held(); len(h) > 0 {
		return "held: " + h[0].String()
	}
	if ps := r.Pauses(); len(ps) > 0 {
		return "paused: " + ps[0].String()
	}
	if !r.Ready() {
		return "initial sync not done"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := r.Queue(ctx); err != nil {
		return "queue " + err.Error()
	}
	if why := r.Degraded(); why != "" {
		return "degraded: " + why
	}
	return ""
}

// Line is the one line systemd shows for the daemon (STATUS=): the
// startup reconcile's progress until ready, then what it is doing.
func Line(ready bool, startup reconcile.Report, known bool, paused string, busy, workers int, runs int64, watching string) string {
	if !ready {
		if known {
			return fmt.Sprintf("startup reconcile %s: %d of %d jobs done, %d files to sync", startup.State, startup.Done, startup.Jobs, startup.DriftFiles)
		}
		return "startup reconcile: starting"
	}
	state := "ready"
	if paused != "" {
		state = "PAUSED: " + paused
	}
	return fmt.Sprintf("%s: %d of %d workers busy, %d rsync runs, %s", state, busy, workers, runs, watching)
}

// Watching says how the source is watched: by the watcher backend, and
// with inotify how many of the kernel's watches it holds.
func Watching(backend string, watches int, limit int64) string {
	switch backend {
	case watcher.BackendFanotify:
		return "watched by fanotify (whole filesystem)"
	case "":
		return "watcher starting"
	}
	return fmt.Sprintf("%s: %d directories watched of %d", backend, watches, limit)
}

// WantJSON reports whether a command prints JSON on stdout: when asked
// (--json), or when stdout is not a terminal (a pipe, a file, a script).
func WantJSON(stdout io.Writer, asked bool) bool {
	if asked {
		return true
	}
	f, ok := stdout.(*os.File)
	return !ok || !isatty.IsTerminal(f.Fd())
}

// DryRun is what `syncer reconcile --dry-run` found.
type DryRun struct {
	DryRun     bool  `json:"dry_run"` // always true: nothing was changed
	Scopes     int   `json:"scopes"`
	DriftFiles int64 `json:"drift_files"`
	DriftBytes int64 `json:"drift_bytes"`
	rsync.Changes
}

// PrintDryRun writes d for a terminal: each change once, then the counts.
func PrintDryRun(w io.Writer, d DryRun) {
	for _, l := range d.Lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintf(w, "dry run: %d changes in %d scopes: %d files to send (%s differ), %d directories to create, %d entries to delete, %d to set attributes on; nothing was changed\n",
		len(d.Lines), d.Scopes, d.Sent, FmtBytes(d.DriftBytes), d.Dirs, d.Deleted, d.Attrs)
}

// Follow polls view every 250 ms until the reconcile ends, with a progress
// bar on stderr when it is a terminal, then prints its summary on stdout:
// JSON with asJSON or when stdout is not a terminal. done, when set,
// delivers the error of a reconcile run in this process.
func Follow(ctx context.Context, view func() (reconcile.Report, error), done <-chan error, stdout, stderr io.Writer,
	asJSON bool) (reconcile.Report, error) {
	tty := false
	if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		tty = true
	}
	asJSON = WantJSON(stdout, asJSON)
	var bar *progressbar.ProgressBar
	var last reconcile.Report
	for {
		v, err := view()
		if err != nil {
			return last, err
		}
		last = v
		if tty {
			if bar == nil && v.State != reconcile.StateWalking {
				bar = progressbar.NewOptions64(max(v.DriftBytes, 1), progressbar.OptionSetWriter(stderr),
					progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			if bar != nil {
				bar.Describe(fmt.Sprintf("jobs %d/%d, files %d/%d", v.Done+v.Failed, v.Jobs, v.Files, v.DriftFiles))
				_ = bar.Set64(min(v.Bytes, max(v.DriftBytes, 1)))
			} else {
				fmt.Fprintf(stderr, "\rwalking...")
			}
		}
		if v.Ended() {
			break
		}
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, syncer.ErrPaused) {
				return last, err
			}
			done = nil
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return last, ctx.Err()
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if done != nil {
		if err := <-done; err != nil && !errors.Is(err, syncer.ErrPaused) {
			return last, err
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(last)
	} else {
		fmt.Fprintf(stdout, "reconcile %s: %s in %s: %d jobs, %d failed; %d files / %s transferred, %d deleted; drift %d files / %s\n",
			last.ID, last.State, last.Finished.Sub(last.Started).Round(time.Millisecond), last.Jobs, last.Failed,
			last.Files, FmtBytes(last.Bytes), last.Deleted, last.DriftFiles, FmtBytes(last.DriftBytes))
		how := fmt.Sprintf("%d of them trusted from the index, their backup entries not read", last.Trusted)
		if last.Deep {
			how = "deep: every backup entry read"
		}
		fmt.Fprintf(stdout, "  compared %d directories (%s)\n", last.Dirs, how)
		for _, e := range last.Errors {
			fmt.Fprintf(stdout, "  failed: %s\n", e)
		}
	}
	return last, nil
}

// PrintVerdict writes diagnose's verdict over a sampled interval.
func PrintVerdict(w io.Writer, v diag.Verdict, over time.Duration) {
	fmt.Fprintf(w, "%s (over %s)\n→ %s\n", v.Summary, over.Round(100*time.Millisecond), v.Advice)
	for _, e := range v.Evidence {
		fmt.Fprintf(w, "  %s\n", e)
	}
}

// PrintVersions lists the kept versions of a path, oldest first.
func PrintVersions(w io.Writer, vs []versions.Version) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DISPLACED\tKIND\tSIZE\tMODIFIED\tPATH")
	for _, v := range vs {
		at := "-"
		if !v.At.IsZero() {
			at = v.At.Local().Format("2006-01-02 15:04:05.000")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", at, v.Kind, FmtBytes(v.Size), v.Mtime.Local().Format("2006-01-02 15:04:05"), FmtName(v.Path))
	}
	_ = tw.Flush()
}

// PrintRestored lists what a restore wrote (or, dry, would write); abs is
// a restored path's absolute name.
func PrintRestored(w io.Writer, done []versions.Restored, abs func(string) string, dry bool) {
	verb := "restored"
	if dry {
		verb = "would restore"
	}
	for _, r := range done {
		from := "backup"
		if r.From.Stamp != "" {
			from = r.From.Kind + " " + r.From.At.Local().Format("2006-01-02 15:04:05.000")
		}
		fmt.Fprintf(w, "%s %s (%s, %s)\n", verb, FmtName(abs(r.Path)), FmtBytes(r.From.Size), from)
	}
	fmt.Fprintf(w, "%d files %s\n", len(done), verb)
}

// PrintPauses says what `syncer pause` or `syncer resume` did: project
// ("" every project) paused or the pauses ended, the source accepted, and
// what still holds projects.
func PrintPauses(w io.Writer, project string, resumed bool, ended, now []guard.Pause, paused string, accepted *guard.Identity) {
	switch {
	case accepted != nil:
		fmt.Fprintf(w, "source accepted: %s\n", accepted)
	case resumed && len(ended) == 0:
		fmt.Fprintf(w, "%s was not paused\n", pauseTarget(project))
	case resumed:
		for _, ps := range ended {
			fmt.Fprintf(w, "resumed %s (paused since %s); what changed meanwhile is being synced\n", pauseTarget(ps.Project), FmtTime(ps.Since))
		}
	default:
		fmt.Fprintf(w, "paused %s: nothing of it changes on the backup until `%s`\n", pauseTarget(project), guard.Pause{Project: project}.Resume())
	}
	for _, ps := range now {
		if !resumed && ps.Project == project {
			continue
		}
		fmt.Fprintf(w, "still paused: %s\n", ps)
	}
	if paused != "" {
		fmt.Fprintf(w, "still paused: %s\n", paused)
	}
}

func pauseTarget(project string) string {
	if project == "" {
		return "every project"
	}
	return "project " + FmtName(project)
}

// Write prints v for a terminal with text, or as indented JSON when asJSON.
func Write[T any](w io.Writer, asJSON bool, v T, text func(io.Writer, T)) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(w, v)
	return nil
}
