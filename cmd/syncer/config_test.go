package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer/config"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "syncer.yaml")
	if err := os.WriteFile(file, []byte("source: /from/file\ndebounce: 250ms\nworkers: 3\nexclude: ['*.tmp', '.cache']\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SYNCER_WORKERS", "5")
	t.Setenv("SYNCER_MAX_DELAY", "20s")
	cmd := newDaemonCmd("run", &bytes.Buffer{})
	if err := cmd.ParseFlags([]string{"--source", "/from/flag", "--config", file}); err != nil {
		t.Fatal(err)
	}
	var flagged config.Config
	// Re-read the flag values the way RunE sees them.
	flagged.Source, _ = cmd.Flags().GetString("source")
	got, err := loadConfig(file, cmd.Flags(), flagged)
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "/from/flag" {
		t.Errorf("source = %q, want the flag's value", got.Source)
	}
	if got.Debounce != 250*time.Millisecond {
		t.Errorf("debounce = %v, want the file's 250ms", got.Debounce)
	}
	if got.Workers != 5 || got.MaxDelay != 20*time.Second {
		t.Errorf("workers, max_delay = %d, %v, want the environment's 5, 20s", got.Workers, got.MaxDelay)
	}
	if len(got.Exclude) != 2 || got.Batch != config.Default().Batch {
		t.Errorf("exclude = %q, batch = %d", got.Exclude, got.Batch)
	}
}

// TestMain_BadInput checks that each bad input gives one clear error line,
// exit code 2, and leaves the backup untouched.
func TestMain_BadInput(t *testing.T) {
	src, dst, state := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "f")
	_ = os.WriteFile(file, nil, 0o644)
	cfgFile := func(body string) string {
		p := filepath.Join(t.TempDir(), "syncer.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := []string{"--source", src, "--dest", dst, "--state-dir", state}
	oldRsync := filepath.Join(t.TempDir(), "rsync")
	if err := os.WriteFile(oldRsync, []byte("#!/bin/sh\necho 'rsync  version 3.1.3  protocol version 31'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no source", []string{"--dest", dst, "--state-dir", state}, "source: required"},
		{"missing source", []string{"--source", src + "/nope", "--dest", dst, "--state-dir", state}, "does not exist"},
		{"source is a file", []string{"--source", file, "--dest", dst, "--state-dir", state}, "not a directory"},
		{"missing dest", []string{"--source", src, "--dest", dst + "/nope", "--state-dir", state}, "dest " + dst + "/nope: does not exist"},
		{"same path", []string{"--source", src, "--dest", src, "--state-dir", state}, "the same directory"},
		{"dest inside source", []string{"--source", filepath.Dir(src), "--dest", dst, "--state-dir", state}, "is inside source"},
		{"source inside dest", []string{"--source", src, "--dest", filepath.Dir(src), "--state-dir", state}, "is inside dest"},
		{"bad duration flag", append(ok, "--debounce", "soon"), "invalid argument"},
		{"negative duration", append(ok, "--debounce", "-1s"), "want a positive duration"},
		{"max delay under debounce", append(ok, "--debounce", "2s", "--max-delay", "1s"), "shorter than debounce"},
		{"unknown config key", append(ok, "--config", cfgFile("sorce: /x\n")), "field sorce not found"},
		{"bad duration in config", append(ok, "--config", cfgFile("debounce: often\n")), "often"},
		{"unwritable state dir", []string{"--source", src, "--dest", dst, "--state-dir", file + "/sub"}, "not a directory"},
		{"rsync missing", append(ok, "--rsync-path", "/nonexistent/rsync"), "not found: install it"},
		{"rsync too old", append(ok, "--rsync-path", oldRsync), "needs 3.2 or newer"},
		{"bad exclude", append(ok, "--exclude", "cache/"), "drop the trailing"},
		{"bad exclude negation", append(ok, "--exclude", "!keep"), "negations are not supported"},
		{"bad max delete", append(ok, "--max-delete", "-1"), "max_delete"},
		{"bad delete fraction", append(ok, "--max-delete-fraction", "1.5"), "max_delete_fraction"},
		{"bad trash floor", append(ok, "--trash-min-free", "1"), "trash_min_free"},
		{"unknown flag", append(ok, "--frobnicate"), "unknown flag"},
		{"bad remote dest", []string{"--source", src, "--dest", "nas2:", "--state-dir", state}, "want [user@]host:/path"},
		{"ssh settings for a daemon", []string{"--source", src, "--dest", "rsync://nas2/backup", "--state-dir", state, "--ssh-port", "22"}, "ssh_* settings"},
		{"missing ssh identity", []string{"--source", src, "--dest", "nas2:/b", "--state-dir", state, "--ssh-identity", "/nonexistent/id"}, "ssh_identity"},
		{"nats auth without url", append(ok, "--nats-user", "u", "--nats-password-file", file), "need nats_url"},
		{"two nats auths", append(ok, "--nats-url", "nats://127.0.0.1:1", "--nats-token-file", file, "--nats-creds-file", file), "one of"},
		{"tls cert without key", append(ok, "--nats-url", "nats://127.0.0.1:1", "--nats-tls-cert", file), "go together"},
		{"bad replicas", append(ok, "--nats-url", "nats://127.0.0.1:1", "--nats-replicas", "7"), "nats_replicas"},
		{"state dir inside dest", []string{"--source", src, "--dest", dst, "--state-dir", dst + "/state"}, "is inside dest"},
		{"state dir inside source", []string{"--source", src, "--dest", dst, "--state-dir", src + "/state"}, "is inside source"},
		{"state dir holds the trees", []string{"--source", src, "--dest", dst, "--state-dir", filepath.Dir(src)}, "holds the source or the dest"},
		{"too many workers", append(ok, "--workers", "1000000"), "workers: 1000000"},
		{"reconcile too often", append(ok, "--reconcile-interval", "1ms"), "reconcile_interval: 1ms"},
		{"ack wait too long", append(ok, "--job-ack-wait", "1000000h"), "job_ack_wait"},
		{"batch too large", append(ok, "--batch", "1000000"), "batch"},
		{"trash with dots", append(ok, "--trash", ".."), "trash"},
		{"marker with a path", append(ok, "--marker", "../m"), "marker"},
		{"unknown control group", append(ok, "--control-group", "no-such-group-syncer"), "control_group"},
		{"token readable by others", append(ok, "--control-token-file", file), "readable by others"},
		{"missing token file", append(ok, "--control-token-file", file+".nope"), "control_token_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), append([]string{"run"}, tt.args...), &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit code = %d, want %d", code, exitUsage)
			}
			out := stderr.String()
			if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "syncer: ") {
				t.Errorf("stderr = %q, want one line starting with 'syncer: '", out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("stderr = %q, want it to mention %q", out, tt.want)
			}
		})
	}
	t.Run("AllErrorsAtOnce", func(t *testing.T) {
		var stderr bytes.Buffer
		Main(context.Background(), []string{"run", "--source", src + "/nope", "--dest", dst + "/nope", "--workers", "-1"}, &bytes.Buffer{}, &stderr)
		for _, w := range []string{"source", "dest", "workers"} {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("stderr = %q, want it to mention %s", stderr.String(), w)
			}
		}
	})
	ents, _ := os.ReadDir(dst)
	if len(ents) != 1 {
		t.Errorf("backup has %d entries after bad runs, want the 1 it had", len(ents))
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("state dir has %d entries after bad runs, want none", len(ents))
	}
}
