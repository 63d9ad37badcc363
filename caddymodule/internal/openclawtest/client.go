package openclawtest

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

// The client side of OpenClaw's gateway protocol, as much as clawgate's tests
// and demo need. What OpenClaw 2026.9.6 does: the server opens with a
// connect.challenge event carrying a nonce; the client answers with a connect
// request; the server replies hello-ok, or an error. After that the client
// sends requests ({"type":"req","id","method","params"}) and reads responses
// ({"type":"res","id","ok","payload"|"error"}) with events (ticks, health)
// interleaved. hello-ok does not name the user; `users.self` does.

// ProtocolVersion is the gateway protocol version the client speaks.
const ProtocolVersion = 4

// Error is an error OpenClaw answered with: in a WebSocket response, or in
// the body of an HTTP answer (where it also has a Type).
type Error struct {
	Code    string `json:"code"`
	Type    string `json:"type"`
	Message string `json:"message"`
	Details struct {
		Code         string `json:"code"`
		MissingScope string `json:"missingScope"`
		RequestID    string `json:"requestId"`
	} `json:"details"`
}

func (e *Error) Error() string {
	return strings.TrimSpace(fmt.Sprintf("%s%s %s: %s", e.Code, e.Type, e.Details.Code, e.Message))
}

// Hello is the part of hello-ok that clawgate's tests and demo read.
type Hello struct {
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

// Refusal is an HTTP answer to the WebSocket upgrade instead of a switch of
// protocols; Type and Message are those of clawgate's JSON denial
// ({"error":{"type","message"}}), empty when the body is not one.
type Refusal struct {
	Status  int
	Type    string
	Message string
	Body    string // at most 64 KiB
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("upgrade refused: %d %s", r.Status, r.Type)
}

// Client is one WebSocket to an OpenClaw gateway. Its methods are not safe
// for concurrent use, but WaitClosed may run on another goroutine once the
// handshake is done and no more calls are made.
type Client struct {
	ws   *websocket.Conn
	next int
}

// Dial opens a WebSocket to url (ws://host/) with the extra headers h. When
// the server answers the upgrade with an HTTP status, the error is a
// *Refusal.
func Dial(ctx context.Context, hc *http.Client, url string, h http.Header) (*Client, error) {
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	if err != nil {
		if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("websocket upgrade: %w", err)
		}
		r := &Refusal{Status: resp.StatusCode}
		if resp.Body != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			r.Body = string(body)
			var d struct {
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if json.Unmarshal(body, &d) == nil {
				r.Type, r.Message = d.Error.Type, d.Error.Message
			}
		}
		return nil, r
	}
	// hello-ok alone is about 20 KB, and status and health answers grow
	// with the gateway's state.
	ws.SetReadLimit(4 << 20)
	return &Client{ws: ws}, nil
}

// Close closes the WebSocket with a normal closure.
func (c *Client) Close() { c.ws.Close(websocket.StatusNormalClosure, "") }

// Connect answers the server's challenge with a connect request as an
// operator asking for scopes, with the shared token if not empty, and returns
// hello-ok. A refusal by the gateway is an *Error.
func (c *Client) Connect(ctx context.Context, scopes []string, token string) (*Hello, error) {
	if _, err := c.challenge(ctx); err != nil {
		return nil, err
	}
	params := connectParams(map[string]any{"id": "cli", "version": "0.0.1", "platform": "linux", "mode": "cli"}, scopes)
	if token != "" {
		params["auth"] = map[string]any{"token": token}
	}
	return c.hello(ctx, params)
}

// challenge reads the server's first frame, which must be a
// connect.challenge event, and returns its nonce.
func (c *Client) challenge(ctx context.Context) (string, error) {
	var challenge struct {
		Type    string `json:"type"`
		Event   string `json:"event"`
		Payload struct {
			Nonce string `json:"nonce"`
		} `json:"payload"`
	}
	if err := c.read(ctx, &challenge); err != nil {
		return "", err
	}
	if challenge.Type != "event" || challenge.Event != "connect.challenge" || challenge.Payload.Nonce == "" {
		return "", fmt.Errorf("first frame is %q %q, want a connect.challenge event with a nonce", challenge.Type, challenge.Event)
	}
	return challenge.Payload.Nonce, nil
}

// connectParams are the parameters of a connect request as an operator
// asking for scopes, from client.
func connectParams(client map[string]any, scopes []string) map[string]any {
	return map[string]any{
		"minProtocol": ProtocolVersion,
		"maxProtocol": ProtocolVersion,
		"client":      client,
		"role":        "operator",
		"scopes":      scopes,
		"caps":        []string{},
		"commands":    []string{},
		"permissions": map[string]any{},
	}
}

// hello sends the connect request and returns its hello-ok.
func (c *Client) hello(ctx context.Context, params map[string]any) (*Hello, error) {
	var h Hello
	if err := c.Call(ctx, "connect", params, &h); err != nil {
		return nil, err
	}
	if h.Type != "hello-ok" || h.Protocol != ProtocolVersion || h.Server.ConnID == "" {
		return nil, fmt.Errorf("connect answered type %q protocol %d connId %q, want hello-ok, %d and a connId", h.Type, h.Protocol, h.Server.ConnID, ProtocolVersion)
	}
	return &h, nil
}

// Self returns the emails of the profile the gateway ties this connection
// to (`users.self`); for a trusted-proxy identity, its login.
func (c *Client) Self(ctx context.Context) ([]string, error) {
	var res struct {
		Profile struct {
			Emails []string `json:"emails"`
		} `json:"profile"`
	}
	if err := c.Call(ctx, "users.self", nil, &res); err != nil {
		return nil, fmt.Errorf("users.self: %w", err)
	}
	return res.Profile.Emails, nil
}

// Call sends a request and waits for its response, skipping the events that
// interleave, and decodes the payload into out (if not nil). A refusal by
// the gateway is an *Error.
func (c *Client) Call(ctx context.Context, method string, params, out any) error {
	c.next++
	id := "r" + strconv.Itoa(c.next)
	if params == nil {
		params = map[string]any{}
	}
	req, err := json.Marshal(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	if err != nil {
		return fmt.Errorf("encoding %s: %w", method, err)
	}
	if err := c.ws.Write(ctx, websocket.MessageText, req); err != nil {
		return fmt.Errorf("sending %s: %w", method, err)
	}
	for {
		var res struct {
			Type    string          `json:"type"`
			ID      string          `json:"id"`
			OK      bool            `json:"ok"`
			Payload json.RawMessage `json:"payload"`
			Error   *Error          `json:"error"`
		}
		if err := c.read(ctx, &res); err != nil {
			return fmt.Errorf("waiting for the answer to %s: %w", method, err)
		}
		if res.Type != "res" || res.ID != id {
			continue
		}
		if !res.OK {
			if res.Error == nil {
				return &Error{Code: "NO_ERROR_GIVEN"}
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

// WaitClosed reads and drops frames (events) until the connection ends or
// ctx does, and returns the error that ended it: websocket.CloseStatus of
// it is the close code, or -1 when the connection was cut without a close
// frame.
func (c *Client) WaitClosed(ctx context.Context) error {
	for {
		if _, _, err := c.ws.Read(ctx); err != nil {
			return err
		}
	}
}

func (c *Client) read(ctx context.Context, v any) error {
	typ, msg, err := c.ws.Read(ctx)
	if err != nil {
		return fmt.Errorf("reading a frame: %w", err)
	}
	if typ != websocket.MessageText {
		return fmt.Errorf("got a %v frame, want text", typ)
	}
	if err := json.Unmarshal(msg, v); err != nil {
		return fmt.Errorf("frame is not JSON: %w: %.300q", err, msg)
	}
	return nil
}

// IsRefusal reports whether err is a refused upgrade with the given status.
func IsRefusal(err error, status int) bool {
	var r *Refusal
	return errors.As(err, &r) && r.Status == status
}
