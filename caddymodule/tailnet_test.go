package caddymodule

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/coder/websocket"
	"github.com/tailscale/tscert"

	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// tailnetFixture is a real in-process tailnet (control, DERP, tsnet nodes) with
// a real Caddy whose site is bound to the clawgate node "gw" (and, when the
// fixture hosts a Service, to that Service on gw too).
type tailnetFixture struct {
	tn             *tailnettest.Tailnet
	alice, bob, ci *tailnettest.Node
	be             *backend
	port           int
	tokCI          string
	caddyfile      func(extra string) string
	siteURL        string
	service        string // the Service gw hosts, or ""
	serviceURL     string // the site through the Service
}

func newTailnetFixture(t *testing.T, opts ...tailnettest.TailnetOption) *tailnetFixture {
	return newTailnetFixtureHosting(t, "", opts...)
}

// newTailnetFixtureHosting is newTailnetFixture with gw, tagged tag:gw,
// also hosting the Tailscale Service svc:<service> for both sites, approved
// by the tailnet, and the clients accepting routes to reach it. An empty
// service is newTailnetFixture.
func newTailnetFixtureHosting(t *testing.T, service string, opts ...tailnettest.TailnetOption) *tailnetFixture {
	begin := time.Now()
	f := &tailnetFixture{tn: tailnettest.New(t, opts...), be: newBackend(t), service: service}
	var gw tsnet.Config
	bind := "clawgate/gw"
	if service != "" {
		gw = f.tn.Config(t, "gw", tailnettest.WithTags("tag:gw"))
		bind += " " + serviceNetwork + "/gw/" + service
	} else {
		gw = f.tn.Config(t, "gw")
	}
	f.alice = f.tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	f.bob = f.tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))
	f.ci = f.tn.NewNode(t, "ci-bot", tailnettest.WithTags("tag:ci"))
	f.tokCI = randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", f.tokCI)
	f.port = 18080
	f.siteURL = fmt.Sprintf("http://gw.%s:%d", tailnettest.Domain, f.port)
	f.serviceURL = fmt.Sprintf("http://%s.%s:%d", service, tailnettest.Domain, f.port)
	f.caddyfile = func(nodeExtra string) string {
		return globalOptions{nodes: []tsnet.Config{gw}, nodeLines: nodeExtra}.String() + fmt.Sprintf(`http://:%d {
	bind %s
	clawgate %s {
		gateway home
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow user:alice@example.com scopes operator.read,operator.write
		allow tag:ci token:ci scopes operator.read
	}
}
http://:%d {
	bind %s
	clawgate {
		upstream %s
		allow user:alice@example.com scopes operator.read
		allow tag:ci scopes none
	}
	reverse_proxy %s {
		header_up X-Test-Auth-User {http.auth.user.id}
		header_up X-Test-Login {clawgate.login}
		header_up X-Test-Node {clawgate.node}
		header_up X-Test-Tags {clawgate.tags}
		header_up X-Test-Gateway {clawgate.gateway}
		header_up X-Test-Decision {clawgate.decision}
	}
}
`, f.port, bind, f.be.addr(), f.port+1, bind, f.be.addr(), f.be.addr())
	}
	startCaddyTailnet(t, f.caddyfile(""))
	f.waitGW(t)
	if service != "" {
		f.tn.ApproveService(t, "gw", service)
		for _, n := range []*tailnettest.Node{f.alice, f.bob, f.ci} {
			n.AcceptRoutes(t)
			f.tn.WaitService(t, n, service)
		}
	}
	t.Logf("tailnet with 4 nodes and Caddy up in %v", time.Since(begin))
	return f
}

// startCaddyTailnet is startCaddy plus waiting, at the end of the test, for
// every node Caddy started to have closed (a node writes its state while
// closing, and the test's temp dirs go right after).
func startCaddyTailnet(t *testing.T, caddyfile string) {
	t.Cleanup(func() { waitNodesClosed(t) }) // runs after startCaddy's Stop
	startCaddy(t, caddyfile)
}

func waitNodesClosed(t testing.TB) {
	deadline := time.Now().Add(30 * time.Second)
	for openNodes.Load() > 0 {
		if time.Now().After(deadline) {
			t.Errorf("%d clawgate node(s) still open after Caddy stopped", openNodes.Load())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGW waits until gw is up and every client can reach it.
func (f *tailnetFixture) waitGW(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p := nodeByName("gw"); p != nil && len(p.tailnetIPs()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("clawgate node gw never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range []*tailnettest.Node{f.alice, f.bob, f.ci} {
		f.tn.WaitPeer(t, n, "gw")
	}
}

func (f *tailnetFixture) get(t testing.TB, from *tailnettest.Node, path string, h http.Header) (int, string) {
	t.Helper()
	return f.getURL(t, from, f.siteURL+path, h)
}

func (f *tailnetFixture) getURL(t testing.TB, from *tailnettest.Node, url string, h http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	c := from.HTTPClient()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", from.Hostname, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// checkGuardCases runs the guard's cases through host ("gw", the node's
// own name, or the name of a Service gw hosts): allowed users and tokens
// pass with their identity, others are refused, over HTTP and WebSocket,
// and identity or forwarding headers a client sends change nothing.
func (f *tailnetFixture) checkGuardCases(t *testing.T, host string) {
	siteURL := fmt.Sprintf("http://%s.%s:%d", host, tailnettest.Domain, f.port)
	bearer := http.Header{"Authorization": {"Bearer " + f.tokCI}}
	spoof := http.Header{
		"X-Forwarded-User":     {"alice@example.com"},
		"x_forwarded_user":     {"alice@example.com"},
		"Tailscale-User-Login": {"alice@example.com"},
		"X-Openclaw-Scopes":    {"operator.admin"},
		"X-Forwarded-For":      {"10.1.2.3"},
	}
	withSpoof := func(h http.Header) http.Header {
		out := spoof.Clone()
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name    string
		from    *tailnettest.Node
		h       http.Header
		status  int
		user    string
		scopes  string
		errType string
	}{
		{"alice", f.alice, nil, 200, "alice@example.com", "operator.read,operator.write", ""},
		{"alice spoofing", f.alice, spoof, 200, "alice@example.com", "operator.read,operator.write", ""},
		{"bob is not allowed", f.bob, nil, 403, "", "", "clawgate_forbidden"},
		{"bob spoofing alice", f.bob, spoof, 403, "", "", "clawgate_forbidden"},
		{"bob with the ci token", f.bob, bearer, 403, "", "", "clawgate_forbidden"},
		{"tagged ci-bot without token", f.ci, nil, 403, "", "", "clawgate_forbidden"},
		{"tagged ci-bot with token", f.ci, bearer, 200, "token:ci", "operator.read", ""},
		{"tagged ci-bot with token, spoofing", f.ci, withSpoof(bearer), 200, "token:ci", "operator.read", ""},
		{"tagged ci-bot with a wrong token", f.ci, http.Header{"Authorization": {"Bearer " + randToken(t, 32)}}, 403, "", "", "clawgate_forbidden"},
	}
	ips := map[*tailnettest.Node]string{f.alice: f.alice.IPs[0].String(), f.bob: f.bob.IPs[0].String(), f.ci: f.ci.IPs[0].String()}
	for _, tt := range tests {
		t.Run("http/"+tt.name, func(t *testing.T) {
			before := f.be.count()
			status, body := f.getURL(t, tt.from, siteURL+"/tools/invoke", tt.h)
			if status != tt.status {
				t.Fatalf("status = %d, want %d; %s", status, tt.status, body)
			}
			if tt.status != 200 {
				if got := errorType(t, body); got != tt.errType {
					t.Errorf("error.type = %q, want %q", got, tt.errType)
				}
				if f.be.count() != before {
					t.Errorf("backend saw a denied request")
				}
				return
			}
			assertForwarded(t, f.be.last(t), tt.user, tt.scopes, ips[tt.from])
		})
		t.Run("websocket/"+tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			before := f.be.count()
			c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(siteURL, "http")+"/ws", &websocket.DialOptions{
				HTTPClient: tt.from.HTTPClient(), HTTPHeader: tt.h,
			})
			if tt.status != 200 {
				if err == nil || resp == nil || resp.StatusCode != tt.status {
					t.Fatalf("upgrade: err %v, resp %v; want %d", err, resp, tt.status)
				}
				if f.be.count() != before {
					t.Errorf("backend saw a denied upgrade")
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.CloseNow()
			_, msg, err := c.Read(ctx)
			if err != nil || string(msg) != "hello "+tt.user {
				t.Fatalf("first frame = %q, %v; want %q", msg, err, "hello "+tt.user)
			}
			if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, msg, err = c.Read(ctx); err != nil || string(msg) != "echo:ping" {
				t.Fatalf("echo = %q, %v", msg, err)
			}
			c.Close(websocket.StatusNormalClosure, "")
			assertForwarded(t, f.be.last(t), tt.user, tt.scopes, ips[tt.from])
		})
	}

	t.Run("placeholders carry the identity", func(t *testing.T) {
		tests := []struct {
			from *tailnettest.Node
			want map[string]string
		}{
			{f.alice, map[string]string{"X-Test-Auth-User": "alice@example.com", "X-Test-Login": "alice@example.com", "X-Test-Node": "alice-laptop", "X-Test-Tags": "", "X-Test-Gateway": "default", "X-Test-Decision": "0"}},
			{f.ci, map[string]string{"X-Test-Auth-User": "node:ci-bot", "X-Test-Node": "ci-bot", "X-Test-Tags": "tag:ci", "X-Test-Decision": "1"}},
		}
		for _, tt := range tests {
			client := tt.from.HTTPClient()
			resp, err := client.Get(fmt.Sprintf("http://%s.%s:%d/", host, tailnettest.Domain, f.port+1))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			client.CloseIdleConnections()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: status %d", tt.from.Hostname, resp.StatusCode)
			}
			got := f.be.last(t).Header
			for k, v := range tt.want {
				if got.Get(k) != v {
					t.Errorf("%s: %s = %q, want %q", tt.from.Hostname, k, got.Get(k), v)
				}
			}
		}
	})

}

func TestTailnetFrontDoor(t *testing.T) {
	f := newTailnetFixture(t)
	f.checkGuardCases(t, "gw")

	t.Run("only the site's port is reachable", func(t *testing.T) {
		gwIP := nodeByName("gw").tailnetIPs()[0]
		_, bePort, _ := net.SplitHostPort(f.be.addr())
		for _, port := range []string{bePort, "18789", "22", "2019", "443"} {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c, err := f.alice.Dial(ctx, "tcp", net.JoinHostPort(gwIP.String(), port))
			cancel()
			if err == nil {
				c.Close()
				t.Errorf("alice reached gw on port %s", port)
			}
		}
	})

	t.Run("nothing listens on the host", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.port), time.Second)
		if err == nil {
			c.Close()
			t.Errorf("the tailnet site is reachable on the host's loopback")
		}
	})
}

func TestTailnetReload(t *testing.T) {
	f := newTailnetFixture(t)
	reload := func(caddyfile string) {
		t.Helper()
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := caddy.Load(quietConfig(t, cfg), true); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	first := nodeByName("gw")
	if status, body := f.get(t, f.alice, "/", nil); status != 200 {
		t.Fatalf("before reload: %d %s", status, body)
	}
	f.be.srv.CloseClientConnections()
	goroutines := settledGoroutines(0)
	beforeStacks := make([]byte, 1<<20)
	beforeStacks = beforeStacks[:runtime.Stack(beforeStacks, true)]

	reload(f.caddyfile(""))
	if got := nodeByName("gw"); got != first {
		t.Errorf("an unchanged node config replaced the node")
	}
	if n := openNodes.Load(); n != 1 {
		t.Errorf("%d nodes open after an unchanged reload, want 1", n)
	}
	if status, body := f.get(t, f.alice, "/", nil); status != 200 {
		t.Fatalf("after unchanged reload: %d %s", status, body)
	}

	reload(f.caddyfile(fmt.Sprintf("port %d", 40000+freePort(t)%20000)))
	deadline := time.Now().Add(30 * time.Second)
	for nodeByName("gw") == first || openNodes.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("changed node config: node replaced %v, %d open", nodeByName("gw") != first, openNodes.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the old node did not close")
	}
	f.waitGW(t)
	if status, body := f.get(t, f.alice, "/", nil); status != 200 {
		t.Fatalf("after changed reload: %d %s", status, body)
	}

	// Back to the first config and compare goroutines: reloads must not leak.
	reload(f.caddyfile(""))
	f.waitGW(t)
	if status, _ := f.get(t, f.alice, "/", nil); status != 200 {
		t.Fatalf("after second changed reload: %d", status)
	}
	// A leaked node would add about sixty goroutines (measured: 63; WireGuard, netstack,
	// control client); a leaked shared listener adds an accept loop per reload.
	// Keep-alive connections to the backend and new WireGuard peer sessions are
	// not leaks, so the count is checked loosely and the accept loops exactly.
	f.be.srv.CloseClientConnections()
	now := settledGoroutines(goroutines + 40)
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	// One accept loop per site port of the fixture (18080 and 18081).
	if loops := strings.Count(string(buf), "caddymodule.(*sharedListener).acceptLoop"); loops != 2 {
		t.Errorf("%d tailnet accept loops after reloads, want 2", loops)
	}
	if now > goroutines+40 {
		t.Errorf("goroutines: %d after reloads, %d before", now, goroutines)
		t.Logf("%s", goroutineDiff(beforeStacks, buf))
	}
}

// settledGoroutines waits up to 15 s for the goroutine count to drop to want
// (0: just let it settle for a moment) and returns it.
func settledGoroutines(want int) int {
	deadline := time.Now().Add(15 * time.Second)
	if want == 0 {
		deadline = time.Now().Add(time.Second)
	}
	n := runtime.NumGoroutine()
	for time.Now().Before(deadline) {
		runtime.GC()
		if n = runtime.NumGoroutine(); want > 0 && n <= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

// goroutineDiff lists the goroutine creation sites whose count grew.
func goroutineDiff(before, after []byte) string {
	count := func(b []byte) map[string]int {
		m := map[string]int{}
		for _, g := range strings.Split(string(b), "\n\n") {
			lines := strings.Split(g, "\n")
			key := ""
			for i, l := range lines {
				if strings.HasPrefix(l, "created by ") && i+1 < len(lines) {
					created, _, _ := strings.Cut(l, " in goroutine")
					top, _, _ := strings.Cut(strings.TrimSpace(lines[1]), "(0x")
					key = created + " @ " + top
				}
			}
			m[key]++
		}
		return m
	}
	b, a := count(before), count(after)
	var out []string
	for k, n := range a {
		if n > b[k] {
			out = append(out, fmt.Sprintf("+%d %s", n-b[k], k))
		}
	}
	return strings.Join(out, "\n")
}

func TestTailnetCertificates(t *testing.T) {
	// Never reach Let's Encrypt from a test: the node's ACME client gets a
	// closed port, so a certificate request fails after routing is proven.
	t.Setenv("TS_DEBUG_ACME_DIRECTORY_URL", "http://127.0.0.1:1/directory")
	newTailnetFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	domain := "gw." + tailnettest.Domain

	t.Run("caddy's tailscale manager sees the node's domains", func(t *testing.T) {
		st, err := tscert.GetStatus(ctx)
		if err != nil {
			t.Fatalf("tscert.GetStatus: %v", err)
		}
		if !slices.Contains(st.CertDomains, domain) {
			t.Fatalf("CertDomains = %v, want %s", st.CertDomains, domain)
		}
	})
	t.Run("certificate requests go to the node", func(t *testing.T) {
		_, _, err := tscert.CertPair(ctx, domain)
		if err == nil {
			t.Fatal("got a certificate with no ACME server")
		}
		if strings.Contains(err.Error(), "tailscaled") || !strings.Contains(err.Error(), domain) {
			t.Errorf("error does not come from the node's own ACME attempt: %v", err)
		}
	})
	t.Run("get_certificate clawgate names the node", func(t *testing.T) {
		_, err := CertGetter{Node: "gw"}.GetCertificate(ctx, &tls.ClientHelloInfo{ServerName: domain})
		if err == nil || !strings.Contains(err.Error(), domain) {
			t.Errorf("GetCertificate error = %v", err)
		}
		_, err = CertGetter{Node: "nope"}.GetCertificate(ctx, &tls.ClientHelloInfo{ServerName: domain})
		if err == nil || !strings.Contains(err.Error(), "no running clawgate node") {
			t.Errorf("unknown node: %v", err)
		}
	})
}

func TestTailnetCertificatesHTTPSOff(t *testing.T) {
	newTailnetFixture(t, tailnettest.WithoutHTTPS())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := CertGetter{Node: "gw"}.GetCertificate(ctx, &tls.ClientHelloInfo{ServerName: "gw.example.ts.net"})
	if err == nil || !strings.Contains(err.Error(), "HTTPS") {
		t.Fatalf("error = %v, want one saying HTTPS certificates are off and how to fix it", err)
	}
	t.Logf("the user sees: %v", err)
}
