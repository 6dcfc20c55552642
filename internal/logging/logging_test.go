package logging_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/syncer/syncer/internal/logging"
)

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	log, err := logging.New("warn", "auto", &buf) // not a terminal: JSON
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
	if log, err = logging.New("info", "console", &buf); err != nil {
		t.Fatal(err)
	}
	log.Info("hello")
	if !strings.Contains(buf.String(), "hello") || strings.HasPrefix(buf.String(), "{") {
		t.Errorf("console output %q", buf.String())
	}
	if _, err := logging.New("loud", "json", &buf); err == nil {
		t.Error("a bad level accepted")
	}
}
