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

// ExternalOptions locate and authenticate to an external NATS server or
// cluster. Secrets are read from files at connect time and never logged.
// At most one of TokenFile, User, NkeyFile and CredsFile may be set.
type ExternalOptions struct {
	// URLs are one or more nats:// or tls:// server URLs of one cluster.
	URLs []string
	// TokenFile holds a token.
	TokenFile string
	// User and PasswordFile are a user name and a file holding its password.
	User, PasswordFile string
	// NkeyFile holds an nkey user seed ("SU...").
	NkeyFile string
	// CredsFile is a decentralised-auth credentials file (user JWT and seed).
	CredsFile string
	// TLSCA is a CA bundle that verifies the servers; TLSCert and TLSKey are
	// a client certificate for servers that require one. Any of them turns
	// TLS on.
	TLSCA, TLSCert, TLSKey string
	// Timeout bounds the first connection.
	Timeout time.Duration
	Name    string

	onReconnect func() // set by Connect
}

// Check reports option combinations that cannot work and files that cannot
// be read, without connecting.
func (o ExternalOptions) Check() error {
	var errs []error
	n := 0
	for _, s := range []string{o.TokenFile, o.User, o.NkeyFile, o.CredsFile} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("nats: give one of token file, user, nkey file or creds file"))
	}
	if (o.User == "") != (o.PasswordFile == "") {
		errs = append(errs, errors.New("nats: user and password file go together"))
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		errs = append(errs, errors.New("nats: TLS cert and key go together"))
	}
	for _, f := range []struct{ what, path string }{{"token file", o.TokenFile}, {"password file", o.PasswordFile},
		{"nkey file", o.NkeyFile}, {"creds file", o.CredsFile}, {"TLS CA", o.TLSCA}, {"TLS cert", o.TLSCert}, {"TLS key", o.TLSKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			errs = append(errs, fmt.Errorf("nats %s: %w", f.what, err))
		}
	}
	return errors.Join(errs...)
}

func (o ExternalOptions) natsOptions() ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(o.Name), nats.Timeout(o.Timeout), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond), nats.RetryOnFailedConnect(false)}
	secret := func(what, path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("nats %s: %w", what, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	switch {
	case o.TokenFile != "":
		tok, err := secret("token file", o.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(tok))
	case o.User != "":
		pw, err := secret("password file", o.PasswordFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(o.User, pw))
	case o.NkeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey file: %w", err)
		}
		opts = append(opts, opt)
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	if o.TLSCA != "" || o.TLSCert != "" {
		opts = append(opts, nats.Secure())
	}
	if o.onReconnect != nil {
		opts = append(opts, nats.ReconnectHandler(func(*nats.Conn) { o.onReconnect() }))
	}
	return opts, nil
}

// ErrUnreachable means no server of the list answered.
var ErrUnreachable = errors.New("nats unreachable")

// connectExternal connects to an external server and checks its version.
// Once connected it reconnects forever: a cluster losing a server, or a
// restart of a lone one, is waited out, not an exit.
func connectExternal(opts ExternalOptions) (*nats.Conn, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if err := opts.Check(); err != nil {
		return nil, err
	}
	nopts, err := opts.natsOptions()
	if err != nil {
		return nil, err
	}
	urls := strings.Join(opts.URLs, ",")
	nc, err := nats.Connect(urls, nopts...)
	if err != nil {
		if errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) || strings.Contains(err.Error(), "connection refused") {
			return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, urls, err)
		}
		return nil, fmt.Errorf("connect nats %s: %w", urls, err)
	}
	if v := nc.ConnectedServerVersion(); !atLeast(v, MinServerVersion) {
		nc.Close()
		return nil, fmt.Errorf("nats server %s is too old: syncer needs %s or newer", v, MinServerVersion)
	}
	return nc, nil
}

// replicas is how many copies of each stream suit the servers nc sees: 3 in
// a cluster of three or more, else 1.
func replicas(nc *nats.Conn) int {
	if nc.ConnectedClusterName() != "" && len(nc.Servers()) >= 3 {
		return 3
	}
	return 1
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
