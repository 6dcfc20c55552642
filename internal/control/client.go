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
	"strings"
)

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
		return fmt.Errorf("no syncer daemon answers at %s: %v", where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("daemon at %s: %s: %s", where, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
