package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"tailscale.com/tailcfg"

	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// identityFixture is a real tailnet and a real Caddy on the clawgate node
// "gw" with three sites: "home" requires device pairing and lets a request
// header choose Caddy's client_ip (what a trusted_proxies list that covers
// tailnet peers does), "caps" admits devices by a Tailscale app capability
// that the test grants and revokes, and "paired" requires pairing and
// approves devices with that capability automatically.
type identityFixture struct {
	tn                 *tailnettest.Tailnet
	be                 *backend
	alice, bob, carol  *tailnettest.Node
	admin              string
	homeURL, capsURL   string
	pairedURL          string
	pairing            *pairingFixture // for its admin and device helpers
	aliceIP, bobIP     string
	aliceID, bobID     string
	capsPort, homePort int
}

const (
	identityCap   = "example.com/cap/openclaw"
	spoofedClient = "X-Spoof-Client"
)

func newIdentityFixture(t *testing.T) *identityFixture {
	begin := time.Now()
	f := &identityFixture{tn: tailnettest.New(t), be: newBackend(t), homePort: 18080, capsPort: 18081}
	gw := f.tn.Config(t, "gw")
	f.alice = f.tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	f.bob = f.tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))
	f.carol = f.tn.NewNode(t, "carol-desk", tailnettest.WithLogin("carol@example.com"),
		tailnettest.WithCapMap(tailcfg.PeerCapMap{identityCap: {tailcfg.RawMessage(`{}`)}}))
	cfgPath, stateDir := gatewayDir(t, "alice@example.com", "bob@example.com")
	pairedCfg, pairedState := gatewayDir(t, "carol@example.com")
	dir := t.TempDir()
	f.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	f.homeURL = fmt.Sprintf("http://gw.%s:%d", tailnettest.Domain, f.homePort)
	f.capsURL = fmt.Sprintf("http://gw.%s:%d", tailnettest.Domain, f.capsPort)
	f.pairedURL = fmt.Sprintf("http://gw.%s:%d", tailnettest.Domain, f.capsPort+1)
	gateways := fmt.Sprintf(`gateway home {
	config %s
	state_dir %s
	pairing required {
		storage %s
	}
}
gateway paired {
	config %s
	state_dir %s
	pairing required {
		storage %s
		auto_approve cap:%s
	}
}`, cfgPath, stateDir, filepath.Join(dir, "pairing-home.json"),
		pairedCfg, pairedState, filepath.Join(dir, "pairing-paired.json"), identityCap)
	caddyfile := globalOptions{nodes: []tsnet.Config{gw}, admin: f.admin, clawgate: gateways}.String() + fmt.Sprintf(`http://:%d {
	bind clawgate/gw
	vars client_ip {http.request.header.%s}
	clawgate %s {
		gateway home
		allow user:alice@example.com scopes operator.read
		allow user:bob@example.com scopes operator.read
	}
}
http://:%d {
	bind clawgate/gw
	clawgate %s {
		gateway caps
		allow cap:%s scopes operator.read
	}
}
http://:%d {
	bind clawgate/gw
	clawgate %s {
		gateway paired
		allow user:carol@example.com scopes operator.read
	}
}
`, f.homePort, spoofedClient, f.be.addr(), f.capsPort, f.be.addr(), identityCap, f.capsPort+1, f.be.addr())
	startPairingCaddy(t, caddyfile, filepath.Join(dir, "clawgate.log"))
	f.pairing = &pairingFixture{tn: f.tn, be: f.be, admin: f.admin, siteURL: f.homeURL}
	deadline := time.Now().Add(60 * time.Second)
	for p := nodeByName("gw"); p == nil || len(p.tailnetIPs()) == 0; p = nodeByName("gw") {
		if time.Now().After(deadline) {
			t.Fatal("clawgate node gw never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range []*tailnettest.Node{f.alice, f.bob, f.carol} {
		f.tn.WaitPeer(t, n, "gw")
	}
	f.aliceIP, f.bobIP = f.alice.IPs[0].String(), f.bob.IPs[0].String()
	f.aliceID, f.bobID = stableID(t, f.alice), stableID(t, f.bob)
	t.Logf("tailnet with 4 nodes and Caddy up in %v", time.Since(begin))
	return f
}

// do sends one request from a tailnet node and returns the status and body.
func (f *identityFixture) do(t *testing.T, from *tailnettest.Node, url string, h http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	c := from.HTTPClient()
	c.Timeout = 30 * time.Second
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", from.Hostname, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// dialWS opens a WebSocket through the guard from a tailnet node and reads
// the backend's greeting.
func dialWS(t *testing.T, from *tailnettest.Node, url string, h http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", &websocket.DialOptions{HTTPClient: from.HTTPClient(), HTTPHeader: h})
	if err != nil {
		t.Fatalf("%s: WebSocket: %v", from.Hostname, err)
	}
	if _, msg, err := c.Read(ctx); err != nil || !strings.HasPrefix(string(msg), "hello ") {
		t.Fatalf("%s: WebSocket greeting %q, %v", from.Hostname, msg, err)
	}
	return c
}

// wsOpen reports whether c still echoes.
func wsOpen(c *websocket.Conn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		return false
	}
	_, msg, err := c.Read(ctx)
	return err == nil && string(msg) == "echo:ping"
}

// wsClosedWithin reports whether c stops working within d.
func wsClosedWithin(c *websocket.Conn, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			return true
		}
		if _, _, err := c.Read(ctx); err != nil {
			return ctx.Err() == nil || !errorsIsDeadline(err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func errorsIsDeadline(err error) bool {
	return strings.Contains(err.Error(), "context deadline exceeded")
}

// TestTailnetClientAddressIsThePeer: on a tailnet listener the address the
// guard forwards, records for pairing and tracks upgrades by is the
// connection's own peer, whatever Caddy's client_ip says; a revoke closes
// exactly the revoked device's WebSockets.
func TestTailnetClientAddressIsThePeer(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	f := newIdentityFixture(t)
	spoof := http.Header{spoofedClient: {f.aliceIP}}

	// Both devices are recorded on their first request, bob while naming
	// alice's address, and approved.
	if st, body := f.do(t, f.alice, f.homeURL+"/", nil); st != http.StatusForbidden {
		t.Fatalf("alice's first request: %d %s, want 403 (held)", st, body)
	}
	if st, body := f.do(t, f.bob, f.homeURL+"/", spoof); st != http.StatusForbidden {
		t.Fatalf("bob's first request: %d %s, want 403 (held)", st, body)
	}
	for _, id := range []string{f.aliceID, f.bobID} {
		if st, _ := f.pairing.adminPost(t, "approve", deviceRequest{Device: id, Gateway: "home"}); st != http.StatusOK {
			t.Fatalf("approving %s: status %d", id, st)
		}
	}

	t.Run("forwarded address is the peer", func(t *testing.T) {
		before := f.be.count()
		if st, body := f.do(t, f.bob, f.homeURL+"/", spoof); st != http.StatusOK || f.be.count() != before+1 {
			t.Fatalf("bob: %d %s", st, body)
		}
		got := f.be.last(t).Header
		if xff := got.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != f.bobIP {
			t.Errorf("X-Forwarded-For = %q, want bob's tailnet address %s (alice's is %s)", xff, f.bobIP, f.aliceIP)
		}
		if u := got.Get("X-Forwarded-User"); u != "bob@example.com" {
			t.Errorf("user %q, want bob@example.com", u)
		}
	})

	t.Run("device record holds the peer's address", func(t *testing.T) {
		d := f.pairing.device(t, "bob-phone")
		if slices.Contains(d.IPs, f.aliceIP) || !slices.Contains(d.IPs, f.bobIP) {
			t.Errorf("bob-phone's recorded addresses %q, want %s and never alice's %s", d.IPs, f.bobIP, f.aliceIP)
		}
	})

	t.Run("revoke closes exactly that device's WebSockets", func(t *testing.T) {
		aws := dialWS(t, f.alice, f.homeURL, nil)
		defer aws.CloseNow()
		bws := dialWS(t, f.bob, f.homeURL, spoof)
		defer bws.CloseNow()
		st, res := f.pairing.adminPost(t, "revoke", deviceRequest{Device: f.bobID, Gateway: "home"})
		if st != http.StatusOK {
			t.Fatalf("revoking bob-phone: status %d", st)
		}
		if res.ClosedWebSockets != 1 {
			t.Errorf("revoke closed %d WebSockets, want 1 (bob's)", res.ClosedWebSockets)
		}
		if !wsClosedWithin(bws, 5*time.Second) {
			t.Error("bob's WebSocket is still open after bob-phone was revoked")
		}
		if !wsOpen(aws) {
			t.Error("alice's WebSocket was closed when bob-phone was revoked")
		}
	})
}

// TestTailnetGrantRevokedMidSession: a capability grant withdrawn by the
// tailnet policy stops admitting, over HTTP and on an open WebSocket,
// within a second: where a rule admits by it (cap:) and where pairing
// approved the device by it (auto_approve cap:).
func TestTailnetGrantRevokedMidSession(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	f := newIdentityFixture(t)
	if st, body := f.do(t, f.carol, f.capsURL+"/", nil); st != http.StatusOK {
		t.Fatalf("carol with the grant: %d %s, want 200", st, body)
	}
	// A second request is answered from the WhoIs cache.
	if st, body := f.do(t, f.carol, f.capsURL+"/", nil); st != http.StatusOK {
		t.Fatalf("carol with the grant, again: %d %s, want 200", st, body)
	}
	ws := dialWS(t, f.carol, f.capsURL, nil)
	defer ws.CloseNow()
	if st, body := f.do(t, f.carol, f.pairedURL+"/", nil); st != http.StatusOK {
		t.Fatalf("carol, auto-approved by the grant: %d %s, want 200", st, body)
	}
	pws := dialWS(t, f.carol, f.pairedURL, nil)
	defer pws.CloseNow()

	revoked := time.Now()
	f.tn.SetCapMap(t, "carol-desk", nil)

	closedAfter := func(c *websocket.Conn) chan time.Duration {
		ch := make(chan time.Duration, 1)
		go func() {
			if wsClosedWithin(c, 10*time.Second) {
				ch <- time.Since(revoked)
			}
			close(ch)
		}()
		return ch
	}
	wsClosed, pwsClosed := closedAfter(ws), closedAfter(pws)
	var httpAfter time.Duration
	for {
		st, _ := f.do(t, f.carol, f.capsURL+"/", nil)
		if st == http.StatusForbidden {
			httpAfter = time.Since(revoked)
			break
		}
		if time.Since(revoked) > 10*time.Second {
			t.Fatalf("carol is still admitted %v after her grant was revoked", time.Since(revoked))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("HTTP refused %v after the revocation", httpAfter)
	if d, ok := <-wsClosed; !ok {
		t.Error("carol's WebSocket is still open 10s after her grant was revoked")
	} else {
		t.Logf("WebSocket closed %v after the revocation", d)
	}
	if d, ok := <-pwsClosed; !ok {
		t.Error("carol's WebSocket on the paired gateway is still open 10s after the grant that approved her device was revoked")
	} else {
		t.Logf("WebSocket on the paired gateway closed %v after the revocation", d)
	}
	if st, body := f.do(t, f.carol, f.pairedURL+"/", nil); st != http.StatusForbidden || !strings.Contains(body, "clawgate_pairing_pending") {
		t.Errorf("carol on the paired gateway after the revocation: %d %s, want 403 clawgate_pairing_pending", st, body)
	}
	// The grant restored admits again.
	f.tn.SetCapMap(t, "carol-desk", tailcfg.PeerCapMap{identityCap: {tailcfg.RawMessage(`{}`)}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, _ := f.do(t, f.carol, f.capsURL+"/", nil); st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("carol is not admitted again after her grant was restored")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTailnetTrustedProxiesRefused: a server bound to a clawgate node whose
// trusted_proxies covers tailnet addresses is refused at load, naming the
// range; ranges that stay off the tailnet load.
func TestTailnetTrustedProxiesRefused(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	tn := tailnettest.New(t)
	gw := tn.Config(t, "gw")
	be := newBackend(t)
	config := func(trusted, bind string, guarded bool) string {
		handler := fmt.Sprintf(`clawgate %s {
		allow tailnet scopes none
	}`, be.addr())
		if !guarded {
			handler = "respond ok"
		}
		node := gw
		node.StateDir = filepath.Join(t.TempDir(), "gw") // each case's node starts afresh
		return globalOptions{nodes: []tsnet.Config{node}, extra: "servers {\n\ttrusted_proxies " + trusted + "\n}"}.String() + fmt.Sprintf(`http://:18080 {
	bind %s
	%s
}
`, bind, handler)
	}
	tests := []struct {
		name, trusted, bind string
		want                []string // nil for a config that loads
		unguarded           bool     // no clawgate handler: refused when the listener opens, not by caddy validate
	}{
		{"private ranges", "static private_ranges", "clawgate/gw", []string{"fd00::/8", "fd7a:115c:a1e0::/48", "clawgate/gw"}, false},
		{"tailnet IPv4 range", "static 100.64.0.0/10", "clawgate/gw", []string{"100.64.0.0/10"}, false},
		{"one tailnet address", "static 100.101.102.103", "clawgate/gw", []string{"100.101.102.103", "100.64.0.0/10"}, false},
		{"one tailnet IPv6 address", "static fd7a:115c:a1e0::1", "clawgate/gw", []string{"fd7a:115c:a1e0::1", "fd7a:115c:a1e0::/48"}, false},
		{"everything", "static 0.0.0.0/0 ::/0", "clawgate/gw", []string{"0.0.0.0/0", "100.64.0.0/10"}, false},
		{"a wider CGNAT block", "static 100.0.0.0/8", "clawgate/gw", []string{"100.0.0.0/8"}, false},
		{"tailnet and loopback listeners", "static private_ranges", "clawgate/gw 127.0.0.1", []string{"fd00::/8"}, false},
		{"loopback proxy", "static 127.0.0.1/32 ::1", "clawgate/gw", nil, false},
		{"LAN proxies", "static 10.0.0.0/8 192.168.0.0/16 172.16.0.0/12", "clawgate/gw", nil, false},
		{"private ranges on a loopback-only server", "static private_ranges", "127.0.0.1", nil, false},
		{"private ranges on a tailnet server without a guard", "static private_ranges", "clawgate/gw", []string{"fd00::/8", "fd7a:115c:a1e0::/48"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(tt.trusted, tt.bind, !tt.unguarded)
			verr := caddyValidate(t, cfg)
			err := loadCaddyErrOnly(t, cfg)
			if tt.want == nil {
				if err != nil || verr != nil {
					t.Fatalf("refused: load: %v; validate: %v", err, verr)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded; want it refused")
			}
			t.Logf("refused: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q: %v", w, err)
				}
			}
			switch {
			case tt.unguarded:
			case verr == nil:
				t.Error("caddy validate accepts what caddy run refuses")
			case !strings.HasSuffix(err.Error(), innermostError(verr)):
				t.Errorf("caddy validate refuses with %q, caddy run with %q", verr, err)
			}
		})
	}
	waitNodesClosed(t)
}
