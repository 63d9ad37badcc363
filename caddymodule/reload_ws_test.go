package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// TestReloadClosesRemovedUsersWebSockets: a reload that removes a user's rule
// ends that user's open WebSockets (Caddy's reverse_proxy closes the
// upgraded connections of the config it replaces, everyone's), and the user
// is refused from then on while the users still allowed reconnect.
func TestReloadClosesRemovedUsersWebSockets(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	tn := tailnettest.New(t)
	gw := tn.Config(t, "gw")
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	bob := tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))
	be := newBackend(t)
	const port = 18080
	caddyfile := func(rules string) string {
		return fmt.Sprintf(`{
	admin off
	auto_https off
	clawgate {
		node gw {
			control_url %s
			state_dir %s
			ephemeral
		}
	}
}
http://:%d {
	bind clawgate/gw
	clawgate %s {
		%s
	}
}
`, tn.ControlURL, gw.StateDir, port, be.addr(), rules)
	}
	const aliceRule = "allow user:alice@example.com scopes operator.read"
	const bobRule = "allow user:bob@example.com scopes operator.read"
	startCaddyTailnet(t, caddyfile(aliceRule+"\n\t\t"+bobRule))
	tn.WaitPeer(t, alice, "gw")
	tn.WaitPeer(t, bob, "gw")
	wsURL := fmt.Sprintf("ws://gw.%s:%d/ws", tailnettest.Domain, port)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dial := func(n *tailnettest.Node) (*websocket.Conn, *http.Response, error) {
		var c *websocket.Conn
		var resp *http.Response
		var err error
		// The node may still be finding its path to gw.
		for range 50 {
			c, resp, err = websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: n.HTTPClient()})
			if err == nil || resp != nil {
				return c, resp, err
			}
			time.Sleep(200 * time.Millisecond)
		}
		return c, resp, err
	}
	open := func(n *tailnettest.Node, login string) *websocket.Conn {
		t.Helper()
		c, _, err := dial(n)
		if err != nil {
			t.Fatalf("%s: WebSocket: %v", n.Hostname, err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello "+login {
			t.Fatalf("%s: first frame %q, %v", n.Hostname, msg, err)
		}
		return c
	}
	aliceWS := open(alice, "alice@example.com")
	defer aliceWS.CloseNow()
	bobWS := open(bob, "bob@example.com")
	defer bobWS.CloseNow()

	// Both sessions work before the reload.
	for _, c := range []*websocket.Conn{aliceWS, bobWS} {
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "echo:ping" {
			t.Fatalf("echo before the reload: %q, %v", msg, err)
		}
	}

	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile(aliceRule)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(quietConfig(t, cfg), true); err != nil {
		t.Fatalf("reload: %v", err)
	}

	// closed waits for the server to end c.
	closed := func(name string, c *websocket.Conn) {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		defer rcancel()
		_, msg, err := c.Read(rctx)
		switch {
		case err == nil:
			t.Errorf("%s's WebSocket still delivers frames after the reload: %q", name, msg)
		case errors.Is(err, context.DeadlineExceeded):
			t.Errorf("%s's WebSocket is still open 20s after the reload", name)
		}
	}
	closed("bob", bobWS)
	closed("alice", aliceWS)

	if _, resp, err := dial(bob); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Errorf("bob's new WebSocket after the reload: status %d, %v; want 403", status, err)
	}
	resp, err := bob.HTTPClient().Get(fmt.Sprintf("http://gw.%s:%d/", tailnettest.Domain, port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's request after the reload: %d, want 403", resp.StatusCode)
	}
	again := open(alice, "alice@example.com")
	again.Close(websocket.StatusNormalClosure, "")
}
