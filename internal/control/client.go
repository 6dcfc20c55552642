package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
)

// ErrNoDaemon is Do's error when nothing answers: no daemon runs there.
var ErrNoDaemon = errors.New("no syncer daemon answers")

// Client talks to the control API: on the socket, or on a TCP listener
// with the token.
type Client struct {
	Socket string // the control socket's path; when empty, Addr
	Addr   string // host:port of the TCP listener
	Token  string // bearer token for Addr
}

// Do sends a request with an optional JSON body and decodes the JSON
// answer into v; an error names the daemon it tried and why.
func (c Client) Do(ctx context.Context, method, path string, body, v any) error {
	client, base, where := http.DefaultClient, "http://"+c.Addr, c.Addr
	if c.Socket != "" {
		sock := c.Socket
		where, base = sock, "http://syncer"
		client = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		}}
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return err
	}
	if c.Token != "" && c.Socket == "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("no permission to use the control socket %s: run as root or as a member of control_group", where)
		}
		return fmt.Errorf("%w at %s: %v", ErrNoDaemon, where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("daemon at %s: %s: %s", where, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Flags are how a CLI command finds the daemon: its control socket in the
// state dir, or with Listen its TCP listener and the token in TokenFile.
type Flags struct {
	Listen, TokenFile, StateDir, Config string
}

// Add registers the flags on fs; defaultStateDir is what --help shows.
func (f *Flags) Add(fs *pflag.FlagSet, defaultStateDir string) {
	fs.StringVar(&f.Listen, "listen", "", "reach the daemon over TCP at this address instead of its control socket (needs --token-file)")
	fs.StringVar(&f.TokenFile, "token-file", "", "the daemon's control_token_file, for --listen")
	fs.StringVar(&f.StateDir, "state-dir", "", "the daemon's state dir (default: from --config, else "+defaultStateDir+")")
	fs.StringVarP(&f.Config, "config", "c", "", "the daemon's config file")
}

// Client is the client the flags say; stateDir gives the configured state
// dir when --state-dir is not set. Its errors are the caller's usage errors.
func (f *Flags) Client(stateDir func() (string, error), socket string) (Client, error) {
	if f.Listen != "" {
		c := Client{Addr: f.Listen}
		if f.TokenFile != "" {
			var err error
			if c.Token, err = ReadToken(f.TokenFile); err != nil {
				return c, fmt.Errorf("token-file: %w", err)
			}
		}
		return c, nil
	}
	dir := f.StateDir
	if dir == "" {
		var err error
		if dir, err = stateDir(); err != nil {
			return Client{}, err
		}
	}
	return Client{Socket: filepath.Join(dir, socket)}, nil
}
