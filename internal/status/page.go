package status

import (
	"html/template"
	"io"
	"time"
)

// Page writes r as the daemon's read-only status page: one HTML document
// with no script, no form and no external asset, which refreshes itself
// every RefreshSeconds. Every value is also in GET /api/status, and each
// cell that shows one carries its JSON name (data-field) for checks.
func Page(w io.Writer, r Report) error {
	return page.Execute(w, pageData{Report: r, Refresh: RefreshSeconds, Now: time.Now()})
}

// RefreshSeconds is how often the status page reloads itself.
const RefreshSeconds = 5

type pageData struct {
	Report
	Refresh int
	Now     time.Time
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"time":  FmtTime,
	"bytes": FmtBytes,
	"room":  FmtRoom,
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>syncer {{if .NotReady}}NOT READY{{else}}ready{{end}}: {{.Source}}</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .3em}
.state{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff;background:#2e7d32}
.bad{background:#c62828}.warn{background:#ef6c00}
table{border-collapse:collapse;margin:.8em 0;background:#fff}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}
.err{color:#c62828;max-width:40em;word-break:break-word}
p.meta{color:#555;margin:.2em 0}
</style></head><body>
<h1>syncer {{.Version}}: {{.Source}} → {{.Dest}}</h1>
<p><span id="state" class="state{{if .NotReady}} bad{{end}}">{{if .NotReady}}NOT READY: {{.NotReady}}{{else}}ready{{end}}</span>
 up since {{time .Started}}; page refreshed {{time .Now}}, every {{.Refresh}} s</p>
{{if .Paused}}<p class="err" id="paused">PAUSED: {{.Paused}}</p>{{end}}
{{range .Pauses}}<p class="err">PAUSED: {{.}}</p>{{end}}
{{range .Held}}<p class="err">HELD: {{.}}</p>{{end}}
<p class="meta">workers <span data-field="workers_busy">{{.Busy}}</span> of <span data-field="workers">{{.Workers}}</span> busy ·
 queue <span data-field="queue.pending">{{.Queue.Pending}}</span> pending, <span data-field="queue.inflight">{{.Queue.InFlight}}</span> in flight ·
 open files waiting <span data-field="open_files_waiting">{{.OpenWaiting}}</span> ·
 watcher <span data-field="watcher">{{.Watcher}}</span>{{if eq .Watcher "inotify"}}, watches <span data-field="watches">{{.Watches}}</span>{{end}} ·
 rsync runs <span data-field="rsync_runs">{{.RsyncRuns}}</span> ·
 versions kept <span data-field="version_runs">{{.VersionRuns}}</span> runs{{if .VersionRuns}} since {{time .OldestVersion}}{{end}}</p>
{{with .BackupRoom}}<p class="meta" id="backup-room">backup: {{room . $.TrashMinFree}}</p>{{end}}
{{with .Reconcile}}<p class="meta">last reconcile {{.ID}} ({{.Why}}): {{.State}}, {{.Done}} of {{.Jobs}} jobs done, {{.Failed}} failed, drift {{.DriftFiles}} files / {{bytes .DriftBytes}}</p>{{end}}
<table id="projects"><thead><tr><th>project</th><th>state</th><th>last sync</th><th>lag</th><th>pending</th><th>done</th><th>failed</th><th>metadata dropped</th><th>last error</th></tr></thead><tbody>
{{range .Projects}}<tr data-project="{{.Name}}"><td>{{.Name}}</td><td data-field="state" class="{{if eq .State "ok"}}{{else}}err{{end}}">{{.State}}{{if .Why}}: {{.Why}}{{end}}</td>
<td>{{ago $.Now .LastSync}}</td><td class="n">{{printf "%.2f" .LastLag}} s</td><td class="n" data-field="pending">{{.Pending}}</td>
<td class="n" data-field="jobs_done">{{.Done}}</td><td class="n" data-field="jobs_failed">{{.Failed}}</td><td class="n" data-field="metadata_dropped">{{.Dropped}}</td>
<td class="err" data-field="last_error">{{.LastError}}</td></tr>
{{else}}<tr><td colspan="9">no projects yet</td></tr>{{end}}
</tbody></table>
{{if .Dead}}<h2>Given up: <span data-field="dead">{{len .Dead}}</span> jobs (put back with <code>syncer retry</code>)</h2>
<table id="dead"><thead><tr><th>job</th><th>scope</th><th>exit</th><th>when</th><th>error</th></tr></thead><tbody>
{{range .Dead}}<tr><td>{{.ID}}</td><td>{{.Scope}}</td><td class="n">{{.ExitCode}}</td><td>{{time .At}}</td><td class="err">{{.Error}}</td></tr>{{end}}
</tbody></table>{{end}}
</body></html>
`))
