package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/coder/websocket"
)

// The client side of OpenClaw's gateway protocol, as much as the tour needs:
// the server opens with a connect.challenge event, the client answers with a
// connect request, and the server replies hello-ok (see
// caddymodule/openclaw_e2e_test.go for what OpenClaw 2026.9.6 does).

// protocolVersion is the gateway protocol version the client speaks.
const protocolVersion = 4

// gwError is an error a gateway answered a request with.
type gwError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details struct {
		Code string `json:"code"`
	} `json:"details"`
}

func (e *gwError) Error() string {
	return strings.TrimSpace(fmt.Sprintf("%s %s: %s", e.Code, e.Details.Code, e.Message))
}

// hello is the part of hello-ok the tour reads.
type hello struct {
	Type     string `json:"type"`
	Protocol int    `json:"protocol"`
	Server   struct {
		Version string `json:"version"`
		ConnID  string `json:"connId"`
	} `json:"server"`
	Auth struct {
		Method string   `json:"method"`
		Role   string   `json:"role"`
		Scopes []string `json:"scopes"`
	} `json:"auth"`
}

// refusal is an HTTP answer that refused a WebSocket upgrade.
type refusal struct {
	Status int
	Type   string // error.type of clawgate's JSON denial, if any
	Msg    string // error.message
}

func (r *refusal) Error() string {
	return fmt.Sprintf("upgrade refused: %d %s", r.Status, r.Type)
}

// gwConn is one WebSocket to a gateway.
type gwConn struct {
	c    *websocket.Conn
	next int
}

// dial opens a WebSocket to url. When the server answers the upgrade with
// an HTTP status, the error is a *refusal carrying clawgate's denial.
func dial(ctx context.Context, hc *http.Client, url string, h http.Header) (*gwConn, error) {
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	if err != nil {
		if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("websocket upgrade: %w", err)
		}
		r := &refusal{Status: resp.StatusCode}
		if resp.Body != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			r.Type, r.Msg = denial(body)
		}
		return nil, r
	}
	// hello-ok alone is about 20 KB, and events grow with state.
	c.SetReadLimit(4 << 20)
	return &gwConn{c: c}, nil
}

// denial decodes clawgate's {"error":{"type","message"}} body.
func denial(body []byte) (typ, msg string) {
	var d struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &d) != nil {
		return "", ""
	}
	return d.Error.Type, d.Error.Message
}

func (g *gwConn) close() { g.c.Close(websocket.StatusNormalClosure, "") }

// connect answers the server's challenge asking for scopes and returns
// hello-ok, or the gateway's refusal as a *gwError.
func (g *gwConn) connect(ctx context.Context, scopes []string) (*hello, error) {
	var challenge struct {
		Type    string `json:"type"`
		Event   string `json:"event"`
		Payload struct {
			Nonce string `json:"nonce"`
		} `json:"payload"`
	}
	if err := g.read(ctx, &challenge); err != nil {
		return nil, err
	}
	if challenge.Type != "event" || challenge.Event != "connect.challenge" || challenge.Payload.Nonce == "" {
		return nil, fmt.Errorf("first frame is %s %s, want a connect.challenge event with a nonce", challenge.Type, challenge.Event)
	}
	params := map[string]any{
		"minProtocol": protocolVersion,
		"maxProtocol": protocolVersion,
		"client":      map[string]any{"id": "cli", "version": "0.0.1", "platform": "linux", "mode": "cli"},
		"role":        "operator",
		"scopes":      scopes,
		"caps":        []string{},
		"commands":    []string{},
		"permissions": map[string]any{},
	}
	var h hello
	if err := g.call(ctx, "connect", params, &h); err != nil {
		return nil, err
	}
	if h.Type != "hello-ok" || h.Server.ConnID == "" {
		return nil, fmt.Errorf("connect answered %q with connId %q, want hello-ok", h.Type, h.Server.ConnID)
	}
	return &h, nil
}

// self returns the login the gateway ties this connection to: the first
// email of the profile `users.self` returns.
func (g *gwConn) self(ctx context.Context) (string, error) {
	var res struct {
		Profile struct {
			Emails []string `json:"emails"`
		} `json:"profile"`
	}
	if err := g.call(ctx, "users.self", nil, &res); err != nil {
		return "", fmt.Errorf("users.self: %w", err)
	}
	if len(res.Profile.Emails) == 0 {
		return "", errors.New("users.self: the profile has no email")
	}
	return res.Profile.Emails[0], nil
}

// call sends a request and waits for its response, skipping the events that
// interleave; a refusal comes back as a *gwError.
func (g *gwConn) call(ctx context.Context, method string, params, out any) error {
	g.next++
	id := "r" + strconv.Itoa(g.next)
	if params == nil {
		params = map[string]any{}
	}
	req, err := json.Marshal(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	if err := g.c.Write(ctx, websocket.MessageText, req); err != nil {
		return fmt.Errorf("sending %s: %w", method, err)
	}
	for {
		var res struct {
			Type    string          `json:"type"`
			ID      string          `json:"id"`
			OK      bool            `json:"ok"`
			Payload json.RawMessage `json:"payload"`
			Error   *gwError        `json:"error"`
		}
		if err := g.read(ctx, &res); err != nil {
			return fmt.Errorf("waiting for the answer to %s: %w", method, err)
		}
		if res.Type != "res" || res.ID != id {
			continue
		}
		if !res.OK {
			if res.Error == nil {
				return &gwError{Code: "NO_ERROR_GIVEN"}
			}
			return res.Error
		}
		if out != nil {
			if err := json.Unmarshal(res.Payload, out); err != nil {
				return fmt.Errorf("decoding the answer to %s: %w", method, err)
			}
		}
		return nil
	}
}

func (g *gwConn) read(ctx context.Context, v any) error {
	typ, msg, err := g.c.Read(ctx)
	if err != nil {
		return fmt.Errorf("reading a frame: %w", err)
	}
	if typ != websocket.MessageText {
		return fmt.Errorf("got a %v frame, want text", typ)
	}
	if err := json.Unmarshal(msg, v); err != nil {
		return fmt.Errorf("frame is not JSON: %w", err)
	}
	return nil
}

// auditReasons splits the message of a clawgate_audit_failed denial,
// "...fails its security audit: <checkId>: <title>; <checkId>: <title>", into
// check IDs and titles.
func auditReasons(msg string) (ids, titles []string) {
	_, list, ok := strings.Cut(msg, "fails its security audit: ")
	if !ok {
		return nil, nil
	}
	for _, r := range strings.Split(list, "; ") {
		id, title, ok := strings.Cut(r, ": ")
		if !ok || id == "" {
			continue
		}
		ids = append(ids, id)
		titles = append(titles, title)
	}
	return ids, titles
}
