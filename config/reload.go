package config

import (
	"reflect"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/syncer/syncer"
)

// Live are the settings a reload (SIGHUP, `systemctl reload syncer`)
// applies to the running daemon; every other change waits for a restart.
var Live = []string{"log_level", "exclude", "reconcile_interval"}

// Changes lists the settings (YAML keys) whose values differ from old to
// cur: those a reload applies (see Live), and those that need a restart.
func Changes(old, cur Config) (live, restart []string) {
	ov, cv := reflect.ValueOf(old), reflect.ValueOf(cur)
	for i := range ov.NumField() {
		f := ov.Type().Field(i)
		if !f.IsExported() || reflect.DeepEqual(ov.Field(i).Interface(), cv.Field(i).Interface()) {
			continue
		}
		if key := f.Tag.Get("yaml"); slices.Contains(Live, key) {
			live = append(live, key)
		} else {
			restart = append(restart, key)
		}
	}
	return live, restart
}

// Running is what a reload changes in a running daemon.
type Running struct {
	Level       zap.AtomicLevel     // the logger's
	Excludes    *syncer.Excludes    // the rules the components share
	SetInterval func(time.Duration) // the reconcile scheduler's, nil without one
	Applied     *Config             // the config in force, updated as applied
}

// Reload applies cur's live settings (Live) to r and records them in
// r.Applied, and lists what changed: applied live, and what needs a
// restart (named again at each reload until then). cur must be valid.
func (r Running) Reload(cur Config) (live, restart []string) {
	live, restart = Changes(*r.Applied, cur)
	for _, key := range live {
		switch key {
		case "log_level":
			_ = r.Level.UnmarshalText([]byte(cur.LogLevel))
			r.Applied.LogLevel = cur.LogLevel
		case "exclude":
			_ = r.Excludes.Set(cur.Exclude)
			r.Applied.Exclude = cur.Exclude
		case "reconcile_interval":
			if r.SetInterval != nil {
				r.SetInterval(cur.ReconcileInterval)
			}
			r.Applied.ReconcileInterval = cur.ReconcileInterval
		}
	}
	return live, restart
}
