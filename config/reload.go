package config

import (
	"reflect"
	"slices"
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
