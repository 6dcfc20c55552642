package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/syncer/syncer/config"
	"go.uber.org/zap/zapcore"
)

// TestLoad checks the precedence: defaults < file < environment < flags.
func TestLoad(t *testing.T) {
	file := filepath.Join(t.TempDir(), "syncer.yaml")
	if err := os.WriteFile(file, []byte("source: /from/file\ndebounce: 250ms\nworkers: 3\nbatch: 9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SYNCER_WORKERS", "5")
	t.Setenv("SYNCER_BATCH", "7")
	flagged := config.Config{Batch: 11}
	got, err := config.Load(file, flagged, func(flag string) bool { return flag == "batch" })
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "/from/file" || got.Debounce != 250*time.Millisecond || got.Workers != 5 || got.Batch != 11 {
		t.Errorf("source %q, debounce %v, workers %d, batch %d; want the file's, the file's, the environment's 5, the flag's 11",
			got.Source, got.Debounce, got.Workers, got.Batch)
	}
	if got.MaxDelay != config.Default().MaxDelay {
		t.Errorf("max_delay %v, want the default", got.MaxDelay)
	}
}

func TestLoad_Bad(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknown, []byte("sourse: /typo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	none := func(string) bool { return false }
	if _, err := config.Load(unknown, config.Config{}, none); err == nil || !strings.Contains(err.Error(), "sourse") {
		t.Errorf("unknown key: %v, want an error naming it", err)
	}
	if _, err := config.Load(filepath.Join(dir, "missing.yaml"), config.Config{}, none); err == nil {
		t.Error("missing file: no error")
	}
	t.Setenv("SYNCER_DEBOUNCE", "soon")
	if _, err := config.Load("", config.Config{}, none); err == nil || !strings.Contains(err.Error(), "SYNCER_DEBOUNCE") {
		t.Errorf("bad environment value: %v, want an error naming it", err)
	}
}

// TestOptions checks what each component gets from the settings where a
// setting changes more than one field.
func TestOptions(t *testing.T) {
	c := config.Default()
	c.Source, c.Dest = "/src", "/dst"
	if _, ok := c.Copier(); !ok {
		t.Error("the direct copier is off by default on a local backup")
	}
	if o := c.Walk(); o.Dest != "/dst" || len(o.IgnoreDest) != 1 || o.IgnoreDest[0] != ".syncer-trash" {
		t.Errorf("walk %+v: want the local backup read, the trash ignored", o)
	}
	if q := c.Queue(nil, false, nil); q.External != nil || q.StateDir != c.StateDir {
		t.Errorf("queue %+v: want the embedded server in the state dir", q)
	}

	extra := c
	extra.RsyncArgs = []string{"--acls"}
	if _, ok := extra.Copier(); ok {
		t.Error("the direct copier is on with rsync options it does not honour")
	}
	remote := c
	remote.Dest = "backup.example:/srv/prod"
	if _, ok := remote.Copier(); ok || remote.Walk().Dest != "" {
		t.Error("a remote backup: the direct copier is on, or the walk reads it as a local path")
	}
	noTrash := c
	noTrash.TrashRetention = 0
	if noTrash.TrashDir() != "" || noTrash.Rsync(nil).Trash != "" || noTrash.IgnoreDest() != nil {
		t.Error("trash_retention 0 still keeps a trash")
	}
	cluster := c
	cluster.NatsURL, cluster.NatsListen = []string{"nats://127.0.0.1:4222"}, "127.0.0.1:4333"
	if q := cluster.Queue(nil, false, nil); q.External == nil || q.External.URLs[0] != "nats://127.0.0.1:4222" || q.Listen != "" {
		t.Errorf("queue %+v: want the external cluster and no embedded listener", q)
	}
	if w := c.Watcher(nil, nil); w.OpenWait != c.OpenFileWait {
		t.Errorf("watcher open wait %v, want %v", w.OpenWait, c.OpenFileWait)
	}
	off := c
	off.OpenFileWait = 0
	if w := off.Watcher(nil, nil); w.OpenWait >= 0 {
		t.Errorf("open_file_wait 0: watcher open wait %v, want off (negative)", w.OpenWait)
	}
}

func TestMarshalLogObject(t *testing.T) {
	enc := zapcore.NewMapObjectEncoder()
	c := config.Default()
	c.Exclude = []string{"*.tmp"}
	if err := c.MarshalLogObject(enc); err != nil {
		t.Fatal(err)
	}
	if enc.Fields["max_delete_fraction"] != 0.5 || enc.Fields["debounce"] != c.Debounce || enc.Fields["direct_copy"] != true {
		t.Errorf("fields %v: want every setting under its YAML key", enc.Fields)
	}
	if ex, ok := enc.Fields["exclude"].([]any); !ok || len(ex) != 1 || ex[0] != "*.tmp" {
		t.Errorf("exclude = %#v", enc.Fields["exclude"])
	}
}

// TestFlags checks that every setting has a flag named after its key, with
// help, and that a flag given wins in Load.
func TestFlags(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c := config.Default()
	config.Flags(fs, &c)
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		n++
		if f.Usage == "" {
			t.Errorf("flag --%s has no help", f.Name)
		}
	})
	settings := 0
	for _, f := range reflect.VisibleFields(reflect.TypeOf(c)) {
		if f.IsExported() {
			settings++
		}
	}
	if n != settings {
		t.Errorf("%d flags for %d settings", n, settings)
	}
	if err := fs.Parse([]string{"--max-delete-fraction", "0.25", "--exclude", "*.tmp", "--exclude", ".cache", "--workers", "3"}); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load("", c, func(name string) bool { f := fs.Lookup(name); return f != nil && f.Changed })
	if err != nil || got.MaxDeleteFraction != 0.25 || len(got.Exclude) != 2 || got.Workers != 3 {
		t.Errorf("Load with flags: %+v, %v", got, err)
	}
}

func TestChanges(t *testing.T) {
	old := config.Default()
	old.Exclude = []string{"*.tmp"}
	cur := old
	cur.Exclude = []string{"*.tmp", "P/cache"}
	cur.LogLevel, cur.Workers = "debug", 7
	live, restart := config.Changes(old, cur)
	if fmt.Sprint(live) != "[exclude log_level]" || fmt.Sprint(restart) != "[workers]" {
		t.Errorf("Changes() = %v, %v; want [exclude log_level], [workers]", live, restart)
	}
	if live, restart := config.Changes(old, old); live != nil || restart != nil {
		t.Errorf("Changes(same) = %v, %v", live, restart)
	}
}

func TestConfig_CheckProjects(t *testing.T) {
	c := config.Default()
	c.Source, c.Dest = t.TempDir(), t.TempDir()
	for _, d := range []string{c.Source + "/A", c.Source + "/B", c.Dest + "/Gone", c.Dest + "/" + c.Trash} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CheckProjects([]string{"A", "Gone"}); err != nil {
		t.Errorf("CheckProjects(A, Gone) = %v", err)
	}
	err := c.CheckProjects([]string{"A", "ProjZ", c.Trash})
	if err == nil || !strings.Contains(err.Error(), `no project "ProjZ", "`+c.Trash+`"`) || !strings.Contains(err.Error(), "projects are A, B, Gone") {
		t.Errorf("CheckProjects(ProjZ) = %v; want both unknown names and the known A, B, Gone", err)
	}
}

// TestValidate_RsyncVersionKept: what rsync --version says is kept in the
// state dir once a config is found valid, and asked again once the binary
// is another file or changed.
func TestValidate_RsyncVersionKept(t *testing.T) {
	dir := t.TempDir()
	c := config.Default()
	c.Source, c.Dest, c.StateDir = filepath.Join(dir, "src"), filepath.Join(dir, "dst"), filepath.Join(dir, "state")
	for _, d := range []string{c.Source, c.Dest, c.StateDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	runs := filepath.Join(dir, "runs")
	c.RsyncPath = filepath.Join(dir, "rsync")
	fake := func(version string) {
		t.Helper()
		script := "#!/bin/sh\necho >> " + runs + "\necho 'rsync  version " + version + "  protocol version 31'\n"
		if err := os.WriteFile(c.RsyncPath, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	asked := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "\n")
	}
	fake("3.2.7")
	for range 3 {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if n := asked(); n != 1 {
		t.Errorf("rsync --version ran %d times for 3 valid configs, want once", n)
	}
	fake("3.1.13") // another version in place (another size, whatever the clock says): asked again, refused
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "needs 3.2 or newer") {
		t.Errorf("rsync changed to 3.1.13: %v, want it refused", err)
	}
	if n := asked(); n != 2 {
		t.Errorf("rsync --version ran %d times, want twice (the binary changed)", n)
	}
	if err := c.Validate(); err == nil {
		t.Error("a refused rsync was remembered as good")
	}
}
