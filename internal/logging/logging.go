// Package logging builds syncer's zap logger: ISO 8601 times, durations
// in seconds, JSON for machines and colour for terminals, a level that a
// reload can change, and a syslog priority prefix on every line when
// stderr is systemd's journal, so that `journalctl -p err` finds errors.
package logging

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/mattn/go-isatty"
	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// New builds the one logger of a syncer process, writing to w at level
// (debug, info, warn, error) in format: json, console, or auto (console on
// a terminal, else JSON). The returned level changes the logger's level
// in place. When w is the stream systemd's journal reads ($JOURNAL_STREAM
// names its device and inode), each line starts with its syslog priority
// ("<3>" for errors), which journald strips and files the line under.
func New(level, format string, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zap.ParseAtomicLevel(level)
	if err != nil {
		return nil, lvl, err
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.SecondsDurationEncoder
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	if format == "console" {
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		ec.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	if Journal(w) {
		enc = prioritized{enc}
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)), lvl, nil
}

// Journal reports whether w is the stream systemd connected to the
// journal: an *os.File whose device and inode are those $JOURNAL_STREAM
// gives ("DEV:INO"), as sd_journal_stream_fd(3) describes.
func Journal(w io.Writer) bool {
	f, ok := w.(*os.File)
	env := os.Getenv("JOURNAL_STREAM")
	if !ok || env == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return env == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// Priority is the syslog priority of a zap level: debug 7, info 6, warn
// 4, error 3, and 2 (critical) for the levels that end the process.
func Priority(l zapcore.Level) int {
	switch {
	case l <= zapcore.DebugLevel:
		return 7
	case l == zapcore.InfoLevel:
		return 6
	case l == zapcore.WarnLevel:
		return 4
	case l == zapcore.ErrorLevel:
		return 3
	}
	return 2
}

// prioritized prefixes each encoded line with "<N>", its priority.
type prioritized struct{ zapcore.Encoder }

// lines recycles the prefixed lines' buffers, as zap does its own.
var lines = buffer.NewPool()

func (p prioritized) Clone() zapcore.Encoder { return prioritized{p.Encoder.Clone()} }

func (p prioritized) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	line, err := p.Encoder.EncodeEntry(ent, fields)
	if err != nil {
		return line, err
	}
	out := lines.Get()
	out.AppendByte('<')
	out.AppendInt(int64(Priority(ent.Level)))
	out.AppendByte('>')
	_, _ = out.Write(line.Bytes())
	line.Free()
	return out, nil
}
