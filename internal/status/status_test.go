package status_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/metrics"
	"github.com/syncer/syncer/internal/status"
	"github.com/syncer/syncer/rsync"
)

func TestPrint(t *testing.T) {
	var buf bytes.Buffer
	status.Print(&buf, status.Report{Version: "v1", Source: "/data/prod", Dest: "/data/prod_backup", Started: time.Now(),
		Ready: true, NotReady: "held: project \"p\": ...", Held: []guard.Hold{{Project: "p", Deleting: 607, Of: 1008}},
		Projects: []metrics.Project{{Name: "p", State: "held"}, {Name: "q", State: "ok", Done: 3}}})
	out := buf.String()
	for _, want := range []string{"NOT READY: held", `HELD: project "p": deleting 607 of 1008 entries needs approval`, "\nq ", "PROJECT"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestFmtName(t *testing.T) {
	for in, want := range map[string]string{"Proj A": `"Proj A"`, "ProjB": "ProjB", "été": "été", "tab\there": `"tab\there"`,
		"": `""`, "bad\xff": `"bad\xff"`, `say"hi`: `"say\"hi"`} {
		if got := status.FmtName(in); got != want {
			t.Errorf("FmtName(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestFmtBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB",
		3 << 30: "3.0 GiB", 2 << 40: "2.0 TiB", 1 << 62: "4096.0 PiB"} {
		if got := status.FmtBytes(in); got != want {
			t.Errorf("FmtBytes(%d) = %s, want %s", in, got, want)
		}
	}
}

// TestFmtRoom: what a backup has free, inodes where the filesystem counts
// them, and the trash's floor when there is one.
func TestFmtRoom(t *testing.T) {
	for _, c := range []struct {
		m       rsync.Room
		minFree float64
		want    string
	}{
		{rsync.Room{FreeBytes: 1 << 30, Bytes: 4 << 30, FreeInodes: 90, Inodes: 100}, 0.05,
			"1.0 GiB free of 4.0 GiB (25.0 %), 90 of 100 inodes (90.0 %); under 5 % free the oldest versions go first"},
		{rsync.Room{FreeBytes: 0, Bytes: 4 << 30}, 0, "0 B free of 4.0 GiB (0.0 %)"},
		{rsync.Room{}, 0.025, "0 B free of 0 B (-); under 2.5 % free the oldest versions go first"},
	} {
		if got := status.FmtRoom(c.m, c.minFree); got != c.want {
			t.Errorf("FmtRoom(%+v, %v) = %q, want %q", c.m, c.minFree, got, c.want)
		}
	}
}
