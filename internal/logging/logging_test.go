package logging_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap/zapcore"

	"github.com/syncer/syncer/internal/logging"
)

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	log, _, err := logging.New("warn", "auto", &buf) // not a terminal: JSON
	if err != nil {
		t.Fatal(err)
	}
	log.Info("dropped")
	log.Warn("kept")
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil || line["msg"] != "kept" || line["ts"] == nil {
		t.Errorf("output %q (%v): want one JSON warning with a time", buf.String(), err)
	}
	buf.Reset()
	if log, _, err = logging.New("info", "console", &buf); err != nil {
		t.Fatal(err)
	}
	log.Info("hello")
	if !strings.Contains(buf.String(), "hello") || strings.HasPrefix(buf.String(), "{") {
		t.Errorf("console output %q", buf.String())
	}
	if _, _, err := logging.New("loud", "json", &buf); err == nil {
		t.Error("a bad level accepted")
	}
}

// TestNew_Journal: on the stream $JOURNAL_STREAM names, every line starts
// with its syslog priority; elsewhere none does.
func TestNew_Journal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "journal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	log, lvl, err := logging.New("info", "json", f)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("i")
	log.Warn("w")
	log.Error("e")
	lvl.SetLevel(zapcore.DebugLevel)
	log.Debug("d")
	b, _ := os.ReadFile(f.Name())
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		prio, rest, _ := strings.Cut(l, "{")
		var m map[string]any
		if err := json.Unmarshal([]byte("{"+rest), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, prio+m["msg"].(string))
	}
	if want := []string{"<6>i", "<4>w", "<3>e", "<7>d"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("journal lines %q, want %q", got, want)
	}
	var buf bytes.Buffer
	log, _, _ = logging.New("info", "json", &buf)
	log.Error("e")
	if strings.HasPrefix(buf.String(), "<") {
		t.Errorf("a priority prefix off the journal: %q", buf.String())
	}
}
