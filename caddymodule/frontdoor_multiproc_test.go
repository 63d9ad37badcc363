package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/multiproc"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/proxyproto"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// TestFrontDoorAcrossProcesses runs a front door and two gateway hosts as
// three separate Caddy processes (the caddy binary of this module) on one
// in-process tailnet: alice's host fronts the real OpenClaw, bob's a
// loopback backend. Everything goes over the tailnet; each Caddy's admin
// endpoint is a unix socket.
func TestFrontDoorAcrossProcesses(t *testing.T) {
	suites.SkipShort(t, suites.Processes)
	openclawtest.Require(t)
	begin := time.Now()
	tn := tailnettest.New(t)
	door := tn.Config(t, "door", tailnettest.WithTags("tag:door"))
	aliceHost := tn.Config(t, "alice-mini", tailnettest.WithTags("tag:gateway-host"))
	bobHost := tn.Config(t, "bob-server", tailnettest.WithTags("tag:gateway-host"))
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	bob := tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))
	mallory := tn.NewNode(t, "mallory-pc", tailnettest.WithLogin("mallory@example.com"))
	rogue := tn.NewNode(t, "rogue-door", tailnettest.WithTags("tag:door"))
	const port = 18080
	doorURL := fmt.Sprintf("http://door.%s:%d", tailnettest.Domain, port)

	// alice's gateway: the real OpenClaw, trusting its host's clawgate.
	ocPort := openclawtest.FreePort(t)
	// OpenClaw grants alice admin too, so the scopes she ends up with show
	// her host's cap, not OpenClaw's grant.
	ocCfg := aliceTrustedProxyConfig(t, ocPort, []string{"operator.read", "operator.write", "operator.admin"}, doorURL)
	oc := openclawtest.Start(t, ocCfg, ocPort)

	// bob's gateway: a loopback backend with an openclaw.json for the gate.
	beB := newBackend(t)
	cfgB, stateB := gatewayDir(t, "bob@example.com")

	node := func(name string, cfg string, extra string) string {
		return fmt.Sprintf("\t\tnode %s {\n\t\t\tcontrol_url %s\n\t\t\tstate_dir %s\n\t\t\tephemeral\n%s\t\t}\n", name, tn.ControlURL, cfg, extra)
	}
	global := func(p *multiproc.Process, nodes string) string {
		return fmt.Sprintf("{\n\tadmin unix/%s\n\tauto_https off\n\tlog {\n\t\tlevel INFO\n\t}\n\tclawgate {\n%s", p.AdminSocket, nodes)
	}
	hostP := map[string]*multiproc.Process{}
	hostP["alice"] = multiproc.Start(t, "alice-mini", func(p *multiproc.Process) string {
		return global(p, node("alice-mini", aliceHost.StateDir, "\t\t\ttags tag:gateway-host\n\t\t\tfront_doors tag:door\n")) +
			fmt.Sprintf(`		gateway alice {
			config %s
			state_dir %s
			upstream 127.0.0.1:%d
			origins %s
		}
	}
}
http://:%d {
	bind clawgate/alice-mini
	clawgate 127.0.0.1:%d {
		gateway alice
		allow user:alice@example.com scopes operator.read,operator.write
	}
}
`, oc.ConfigPath(), oc.StateDir(), ocPort, doorURL, port, ocPort)
	}, multiproc.Options{})
	hostP["bob"] = multiproc.Start(t, "bob-server", func(p *multiproc.Process) string {
		return global(p, node("bob-server", bobHost.StateDir, "\t\t\ttags tag:gateway-host\n\t\t\tfront_doors tag:door\n")) +
			fmt.Sprintf(`		gateway bob {
			config %s
			state_dir %s
		}
	}
}
http://:%d {
	bind clawgate/bob-server
	clawgate {
		gateway bob
		upstream %s
		allow user:bob@example.com scopes operator.read
	}
	reverse_proxy %s {
		header_up X-Test-Node {clawgate.node}
		header_up X-Test-Login {clawgate.login}
	}
}
`, cfgB, stateB, port, beB.addr(), beB.addr())
	}, multiproc.Options{})
	doorP := multiproc.Start(t, "door", func(p *multiproc.Process) string {
		return global(p, node("door", door.StateDir, "\t\t\ttags tag:door\n")) + fmt.Sprintf(`	}
}
http://:%d {
	bind clawgate/door
	@alice clawgate_identity user:alice@example.com
	handle @alice {
		clawgate_remote alice-mini:%d {
			gateway alice
			state_interval 1s
		}
	}
	@bob clawgate_identity user:bob@example.com
	handle @bob {
		clawgate_remote bob-server:%d {
			gateway bob
			state_interval 1s
		}
	}
	handle {
		clawgate_remote bob-server:%d {
			gateway bob
			state_interval 1s
		}
	}
}
`, port, port, port, port)
	}, multiproc.Options{})
	for _, p := range []*multiproc.Process{hostP["alice"], hostP["bob"], doorP} {
		p.WaitLog(t, "node is up on the tailnet", 90*time.Second)
	}
	for _, n := range []*tailnettest.Node{alice, bob, mallory, rogue} {
		tn.WaitPeer(t, n, "door")
		tn.WaitPeer(t, n, "alice-mini")
		tn.WaitPeer(t, n, "bob-server")
	}
	t.Logf("tailnet, OpenClaw and three Caddy processes up in %v", time.Since(begin).Round(100*time.Millisecond))

	// Each host's gate audits its gateway once at start; until then it
	// refuses (503), and the front door's state says so.
	waitDoorGateway(t, doorP, "alice", 30*time.Second, doorGateway.serving)
	waitDoorGateway(t, doorP, "bob", 30*time.Second, doorGateway.serving)

	t.Run("alice reaches her OpenClaw as herself over WebSocket", func(t *testing.T) {
		ctx := testCtx(t)
		hc := alice.HTTPClient()
		defer hc.CloseIdleConnections()
		c, err := openclawtest.Dial(ctx, hc, "ws"+strings.TrimPrefix(doorURL, "http")+"/", nil)
		if err != nil {
			t.Fatalf("WebSocket through the front door: %v", err)
		}
		defer c.Close()
		hello, err := c.Connect(ctx, []string{"operator.read", "operator.write", "operator.admin"}, "")
		if err != nil {
			t.Fatalf("connect through the front door: %v", err)
		}
		if hello.Auth.Method != "trusted-proxy" {
			t.Errorf("hello-ok auth method %q, want trusted-proxy", hello.Auth.Method)
		}
		if got := sorted(hello.Auth.Scopes); !slices.Equal(got, []string{"operator.read", "operator.write"}) {
			t.Errorf("hello-ok scopes = %q, want alice's host's cap [operator.read operator.write]", got)
		}
		emails, err := c.Self(ctx)
		if err != nil || !slices.Equal(emails, []string{"alice@example.com"}) {
			t.Errorf("users.self on alice's OpenClaw = %q, %v, want [alice@example.com]", emails, err)
		}
	})

	t.Run("bob reaches only his gateway, which sees his device and address", func(t *testing.T) {
		code, body := tailnetGet(t, bob, doorURL+"/v1/models")
		if code != http.StatusOK || !strings.Contains(body, `"user":"bob@example.com"`) {
			t.Fatalf("bob through the front door = %d %s", code, body)
		}
		got := beB.last(t)
		if xff := got.Header.Get("X-Forwarded-For"); xff != bob.IPs[0].String() {
			t.Errorf("bob's gateway saw X-Forwarded-For %q, want bob-phone's %s", xff, bob.IPs[0])
		}
		if n := got.Header.Get("X-Test-Node"); n != "bob-phone" {
			t.Errorf("bob's host identified the device as %q, want bob-phone", n)
		}
		ctx := testCtx(t)
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(doorURL, "http")+"/ws", &websocket.DialOptions{HTTPClient: bob.HTTPClient()})
		if err != nil {
			t.Fatalf("bob's WebSocket through the front door: %v", err)
		}
		defer ws.CloseNow()
		if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "hello bob@example.com" {
			t.Errorf("bob's WebSocket greeting = %q, %v", msg, err)
		}
		// Going to alice's host directly, bob meets alice's rules.
		code, body = tailnetGet(t, bob, fmt.Sprintf("http://alice-mini.%s:%d/v1/models", tailnettest.Domain, port))
		if code != http.StatusForbidden {
			t.Errorf("bob straight at alice's host = %d %s, want 403", code, body)
		}
	})

	t.Run("a peer that is not a front door cannot forge an address or identity", func(t *testing.T) {
		before := beB.count()
		// A PROXY header from mallory's own device, claiming bob.
		if got := rawProxied(t, mallory, "bob-server", port, bob.IPs[0]); got != "" {
			t.Errorf("a PROXY header from mallory-pc was answered, want the connection closed:\n%s", got)
		}
		// Forwarded headers sent to the front door.
		req, _ := http.NewRequest("GET", doorURL+"/v1/models", nil)
		req.Header.Set("X-Forwarded-For", bob.IPs[0].String())
		req.Header.Set("X-Forwarded-User", "bob@example.com")
		req.Header.Set("Forwarded", "for="+bob.IPs[0].String())
		resp, err := mallory.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("mallory claiming bob in forwarded headers = %d %s, want 403 from bob's host", resp.StatusCode, body)
		}
		if beB.count() != before {
			t.Errorf("bob's gateway received %d requests from forgeries", beB.count()-before)
		}
		if !strings.Contains(hostP["bob"].Log(), "not a front door of this node") {
			t.Errorf("bob's host did not log the refused PROXY header")
		}
	})

	t.Run("a front door can claim only devices that exist", func(t *testing.T) {
		before := beB.count()
		for _, claim := range []netip.Addr{
			netip.MustParseAddr("100.100.100.100"), // on no device
			netip.MustParseAddr("192.168.1.10"),    // not a tailnet address
			tailnetIP(t, tn, "bob-server"),         // the host itself
		} {
			if got := rawProxied(t, rogue, "bob-server", port, claim); got != "" {
				t.Errorf("a front door claiming %s was answered, want the connection closed:\n%s", claim, got)
			}
		}
		// Without a header at all.
		if got := rawTailnetRequest(t, rogue, "bob-server", port, nil); got != "" {
			t.Errorf("a front door's connection without a PROXY header was answered:\n%s", got)
		}
		if beB.count() != before {
			t.Errorf("bob's gateway received %d requests from a front door's false claims", beB.count()-before)
		}
		// Claiming a device that exists, it gets that device's identity as
		// the host derives it, under the host's own rules.
		if got := rawProxied(t, rogue, "bob-server", port, bob.IPs[0]); !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Errorf("a front door vouching for bob-phone = %q, want 200", got)
		}
		if got := beB.last(t).Header.Get("X-Test-Node"); got != "bob-phone" {
			t.Errorf("bob's host saw device %q, want bob-phone (its own WhoIs)", got)
		}
	})

	t.Run("an insecure config on bob's host blocks only bob's gateway", func(t *testing.T) {
		writeAtomic(t, cfgB, insecureGatewayConfig)
		e := waitDoorGateway(t, doorP, "bob", 30*time.Second, func(e doorGateway) bool { return e.Blocked })
		if len(e.Reasons) == 0 {
			t.Errorf("front door shows bob blocked without reasons")
		}
		code, body := tailnetGet(t, bob, doorURL+"/v1/models")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "clawgate_audit_failed") {
			t.Errorf("bob through the front door with an insecure gateway = %d %s, want bob's host's 503 clawgate_audit_failed", code, body)
		}
		code, body = ocPostAt(t, alice, doorURL, "/tools/invoke", `{"tool":"sessions_list","args":{}}`)
		if code != http.StatusOK {
			t.Errorf("alice meanwhile = %d %s, want 200", code, body)
		}
		writeAtomic(t, cfgB, gatewayConfigFor("bob@example.com"))
		waitDoorGateway(t, doorP, "bob", 30*time.Second, doorGateway.serving)
	})

	t.Run("a host that is down answers unreachable; the other keeps serving", func(t *testing.T) {
		hostP["bob"].Stop(t)
		// The front door notices within its state interval (1s here) and
		// drops the connections it held to the host.
		waitDoorGateway(t, doorP, "bob", 30*time.Second, func(e doorGateway) bool { return !e.Remote.Reachable && e.Remote.Error != "" })
		code, body := tailnetGet(t, bob, doorURL+"/v1/models")
		if code != http.StatusBadGateway || !strings.Contains(body, "clawgate_gateway_unreachable") || !strings.Contains(body, `\"bob\"`) {
			t.Errorf("bob with his host down = %d %s, want 502 clawgate_gateway_unreachable naming bob", code, body)
		}
		code, body = ocPostAt(t, alice, doorURL, "/tools/invoke", `{"tool":"sessions_list","args":{}}`)
		if code != http.StatusOK {
			t.Errorf("alice with bob's host down = %d %s, want 200", code, body)
		}
	})

	t.Run("no admin endpoint on the tailnet", func(t *testing.T) {
		for _, host := range []string{"door", "alice-mini"} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := alice.Dial(ctx, "tcp", net.JoinHostPort(host, "2019"))
			cancel()
			if err == nil {
				c.Close()
				t.Errorf("%s:2019 accepts connections over the tailnet", host)
			}
		}
	})
	t.Logf("TestFrontDoorAcrossProcesses took %v", time.Since(begin).Round(100*time.Millisecond))
}

// tailnetIP is the IPv4 tailnet address of the node named host.
func tailnetIP(t testing.TB, tn *tailnettest.Tailnet, host string) netip.Addr {
	t.Helper()
	for _, n := range tn.Control.AllNodes() {
		if n.Hostinfo.Hostname() == host {
			for _, p := range n.Addresses {
				if p.Addr().Is4() {
					return p.Addr()
				}
			}
		}
	}
	t.Fatalf("no tailnet node %s", host)
	return netip.Addr{}
}

// rawProxied sends, from node from, a PROXY header claiming claim and a GET
// to host:port, and returns what came back ("" when the connection was
// closed without an answer).
func rawProxied(t testing.TB, from *tailnettest.Node, host string, port int, claim netip.Addr) string {
	t.Helper()
	hdr, err := proxyproto.Append(nil, proxyproto.Header{Command: proxyproto.Proxy, Source: netip.AddrPortFrom(claim, 40000)})
	if err != nil {
		t.Fatal(err)
	}
	return rawTailnetRequest(t, from, host, port, hdr)
}

func rawTailnetRequest(t testing.TB, from *tailnettest.Node, host string, port int, prefix []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := from.Dial(ctx, "tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		t.Fatalf("%s dialing %s: %v", from.Hostname, host, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, _ = c.Write(append(prefix, "GET /v1/models HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"...))
	got, _ := io.ReadAll(c)
	return string(got)
}

// ocPostAt POSTs a JSON body to base+path from a tailnet node.
func ocPostAt(t testing.TB, from *tailnettest.Node, base, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	c := from.HTTPClient()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: POST %s: %v", from.Hostname, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// TestExamplesFrontDoor runs the two front-door examples as a user would:
// gateway-host.caddyfile on alice's machine and, with her names changed to
// bob's, on bob's, and front-door-across-machines.caddyfile on a third,
// each its own Caddy process, after `clawgate setup --write` made each
// gateway's onboarded openclaw.json agree with its host's Caddyfile. One
// request of each user goes through the front door to their own gateway.
func TestExamplesFrontDoor(t *testing.T) {
	suites.SkipShort(t, suites.Processes)
	tn := tailnettest.New(t)
	tn.Config(t, "claw", tailnettest.WithTags("tag:clawgate-door"))
	tn.Config(t, "alice-mini", tailnettest.WithTags("tag:gateway-host"))
	tn.Config(t, "bob-server", tailnettest.WithTags("tag:gateway-host"))
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	bob := tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))

	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	hostSrc := read("gateway-host.caddyfile")
	hosts := map[string]string{
		"alice": hostSrc,
		"bob": strings.NewReplacer("alice-mini", "bob-server", "gateway alice", "gateway bob", "/home/alice", "/home/bob",
			"alice@example.com", "bob@example.com", "127.0.0.1:18789", "127.0.0.1:19789").Replace(hostSrc),
	}
	upstream := map[string]string{"alice": "127.0.0.1:18789", "bob": "127.0.0.1:19789"}
	backends := map[string]*fixedBackend{}
	for user, src := range hosts {
		root := t.TempDir()
		cf := userEdits(src, tn.ControlURL, root, "off")
		cfPath := filepath.Join(root, "Caddyfile")
		writeFile(t, cfPath, cf)
		ocPath := filepath.Join(root, "home", user, ".openclaw", "openclaw.json")
		mkdir(t, filepath.Dir(ocPath))
		port := strings.TrimPrefix(upstream[user], "127.0.0.1:")
		writeFile(t, ocPath, fmt.Sprintf(`// written by openclaw onboard
{ gateway: { mode: "local", port: %s, bind: "loopback", auth: { mode: "token", token: %q } } }
`, port, randToken(t, 24)))
		var out strings.Builder
		if code, err := runSetupCommand(&out, setupOptions{config: cfPath, write: true}); code == 2 || err != nil {
			t.Fatalf("setup --write for %s's host = %d, %v\n%s", user, code, err, out.String())
		}
		backends[user] = listenFixed(t, upstream[user])
		multiproc.Start(t, user+"-host", func(*multiproc.Process) string { return cf }, multiproc.Options{}).
			WaitLog(t, "node is up on the tailnet", 90*time.Second)
	}
	door := multiproc.Start(t, "claw", func(*multiproc.Process) string {
		return userEdits(read("front-door-across-machines.caddyfile"), tn.ControlURL, t.TempDir(), "off")
	}, multiproc.Options{})
	door.WaitLog(t, "node is up on the tailnet", 90*time.Second)

	// The front door's https site uses Caddy's internal CA in the test.
	rootPEM := filepath.Join(door.Dir, "data", "caddy", "pki", "authorities", "local", "root.crt")
	var pem []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if pem, err = os.ReadFile(rootPEM); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the front door's internal CA never appeared: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("the front door's root.crt holds no certificate")
	}

	for _, tt := range []struct {
		user string
		from *tailnettest.Node
	}{{"alice", alice}, {"bob", bob}} {
		tn.WaitPeer(t, tt.from, "claw")
		c := tt.from.HTTPClient()
		tr := c.Transport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
		c.Transport = tr
		url := "https://claw." + tailnettest.Domain + "/"
		var code int
		var body string
		deadline := time.Now().Add(30 * time.Second)
		for {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Accept", "application/json")
			resp, err := c.Do(req)
			if err != nil {
				// The front door obtains its certificate from Caddy's
				// internal CA in the background after it starts.
				if time.Now().After(deadline) {
					t.Fatalf("%s GET %s: %v", tt.user, url, err)
				}
				time.Sleep(200 * time.Millisecond)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, string(b)
			// The host's first audit, or the front door's first dial, may
			// still be under way.
			if code == http.StatusOK || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		c.CloseIdleConnections()
		if code != http.StatusOK || body != "gateway at "+upstream[tt.user] {
			t.Errorf("%s through the front door = %d %q, want 200 from the gateway at %s", tt.user, code, body, upstream[tt.user])
			continue
		}
		be := backends[tt.user]
		be.mu.Lock()
		got := be.seen[len(be.seen)-1]
		be.mu.Unlock()
		if u := got.Get("X-Forwarded-User"); u != tt.user+"@example.com" {
			t.Errorf("%s's gateway saw user %q", tt.user, u)
		}
		if xff := got.Get("X-Forwarded-For"); xff != tt.from.IPs[0].String() {
			t.Errorf("%s's gateway saw X-Forwarded-For %q, want %s", tt.user, xff, tt.from.IPs[0])
		}
	}
}

// doorGateway is one gateway as a front door's GET /clawgate/gateways shows
// it.
type doorGateway struct {
	Blocked bool     `json:"blocked"`
	Reasons []string `json:"reasons"`
	Remote  struct {
		Host      string `json:"host"`
		Reachable bool   `json:"reachable"`
		Error     string `json:"error"`
	} `json:"remote"`
}

// serving reports whether the front door reaches the gateway's host and the
// host's gate lets the gateway be served.
func (g doorGateway) serving() bool { return g.Remote.Reachable && !g.Blocked }

// waitDoorGateway asks the front door process for its gateways until the one
// named name is in a state ok accepts, for at most d.
func waitDoorGateway(t *testing.T, door *multiproc.Process, name string, d time.Duration, ok func(doorGateway) bool) doorGateway {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code, body, err := door.Admin(ctx, "GET", "/clawgate/gateways", nil)
		cancel()
		var gws map[string]json.RawMessage
		var g doorGateway
		if err == nil && code == http.StatusOK && json.Unmarshal(body, &gws) == nil && json.Unmarshal(gws[name], &g) == nil && ok(g) {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("the front door's /clawgate/gateways never showed the wanted state of %s: %d %s, %v", name, code, body, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// aliceTrustedProxyConfig is an openclaw.json for the real gateway on port
// behind a clawgate on its host: trusted-proxy auth for alice from loopback,
// with OpenClaw's own grant of scopes to her and the Control UI's origins.
func aliceTrustedProxyConfig(tb testing.TB, port int, scopes []string, origins ...string) []byte {
	tb.Helper()
	cfg, err := json.Marshal(map[string]any{
		"gateway": map[string]any{
			"mode": "local", "bind": "loopback", "port": port,
			"trustedProxies": []string{"127.0.0.1", "::1"},
			"auth": map[string]any{"mode": "trusted-proxy", "trustedProxy": map[string]any{
				"userHeader": "x-forwarded-user", "requiredHeaders": []string{"x-forwarded-proto", "x-forwarded-host"},
				"allowUsers": []string{"alice@example.com"}, "allowLoopback": true},
				"identityScopes": map[string]any{"alice@example.com": scopes}},
			"controlUi": map[string]any{"allowedOrigins": origins},
		},
		"logging": map[string]any{"file": filepath.Join(tb.TempDir(), "openclaw.log")},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}
