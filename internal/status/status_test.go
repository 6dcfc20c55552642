package status_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/syncer/syncer/guard"
	"github.com/syncer/syncer/internal/metrics"
	"github.com/syncer/syncer/internal/status"
)

func TestPrint(t *testing.T) {
	var buf bytes.Buffer
	status.Print(&buf, status.Report{Version: "v1", Source: "/data/prod", Dest: "/data/prod_backup", Started: time.Now(),
		Ready: true, NotReady: "held: project \"p\": ...", Held: []guard.Hold{{Project: "p", Deleting: 607, Of: 1008}},
		Projects: []metrics.Project{{Name: "p", State: "held"}, {Name: "q", State: "ok", Done: 3}}})
	out := buf.String()
	for _, want := range []string{"NOT READY: held", `HELD: project "p": deleting 607 of 1008 entries needs approval`, `"q"`, "PROJECT"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
