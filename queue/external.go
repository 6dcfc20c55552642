package queue

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// MinServerVersion is the oldest external NATS server syncer accepts: older
// ones silently ignore newer stream settings and orphan work-queue jobs on
// failover.
const MinServerVersion = "2.11.0"

// ExternalOptions locate and authenticate to an external NATS server or cluster.
type ExternalOptions struct {
	// URLs are one or more nats:// or tls:// server URLs.
	URLs []string
	// TokenFile holds a token, read at connect time (never logged).
	TokenFile string
	// Timeout bounds the first connection.
	Timeout time.Duration
	Name    string
}

// ErrUnreachable means no server of the list answered.
var ErrUnreachable = errors.New("nats unreachable")

// ConnectExternal connects to an external server and checks its version.
func ConnectExternal(opts ExternalOptions) (*nats.Conn, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	nopts := []nats.Option{nats.Name(opts.Name), nats.Timeout(opts.Timeout), nats.MaxReconnects(-1)}
	if opts.TokenFile != "" {
		b, err := os.ReadFile(opts.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("nats token file: %w", err)
		}
		nopts = append(nopts, nats.Token(strings.TrimSpace(string(b))))
	}
	nc, err := nats.Connect(strings.Join(opts.URLs, ","), nopts...)
	if err != nil {
		if errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, strings.Join(opts.URLs, ","), err)
		}
		return nil, fmt.Errorf("connect nats %s: %w", strings.Join(opts.URLs, ","), err)
	}
	if v := nc.ConnectedServerVersion(); !atLeast(v, MinServerVersion) {
		nc.Close()
		return nil, fmt.Errorf("nats server %s is too old: syncer needs %s or newer", v, MinServerVersion)
	}
	return nc, nil
}

// atLeast compares dotted versions ("2.9.10" < "2.11.0").
func atLeast(v, min string) bool {
	a, b := strings.Split(strings.SplitN(v, "-", 2)[0], "."), strings.Split(min, ".")
	for i := range b {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		y, _ = strconv.Atoi(b[i])
		if x != y {
			return x > y
		}
	}
	return true
}
