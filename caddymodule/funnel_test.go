package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/encode"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	"tailscale.com/tailcfg"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// Route builders for checkFunnelServer tables: handlers are zero values,
// which is all the check looks at besides matchers.
func fr(match string, handlers ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
	r := caddyhttp.Route{Handlers: handlers}
	if match != "" {
		r.MatcherSets = caddyhttp.MatcherSets{{caddyhttp.MatchPath{match}}}
	}
	return r
}

func grouped(group string, r caddyhttp.Route) caddyhttp.Route {
	r.Group = group
	return r
}

func sub(routes ...caddyhttp.Route) *caddyhttp.Subroute {
	return &caddyhttp.Subroute{Routes: routes}
}

func hostRoute(routes ...caddyhttp.Route) caddyhttp.Route {
	return caddyhttp.Route{
		MatcherSets: caddyhttp.MatcherSets{{caddyhttp.MatchHost{"gw.tail-scale.ts.net"}}},
		Handlers:    []caddyhttp.MiddlewareHandler{sub(routes...)},
		Terminal:    true,
	}
}

// rawRoutes turns provisioned routes back into the JSON form Caddy holds
// before provisioning them.
func rawRoutes(t *testing.T, routes caddyhttp.RouteList) caddyhttp.RouteList {
	t.Helper()
	out := make(caddyhttp.RouteList, len(routes))
	for i, r := range routes {
		raw := caddyhttp.Route{Group: r.Group, Terminal: r.Terminal}
		for _, set := range r.MatcherSets {
			mm := caddy.ModuleMap{}
			for _, m := range set {
				mm[caddy.GetModuleName(m)] = caddyconfig.JSON(m, nil)
			}
			raw.MatcherSetsRaw = append(raw.MatcherSetsRaw, mm)
		}
		for _, h := range r.Handlers {
			if sr, ok := h.(*caddyhttp.Subroute); ok {
				cp := &caddyhttp.Subroute{Routes: rawRoutes(t, sr.Routes)}
				if sr.Errors != nil {
					cp.Errors = &caddyhttp.HTTPErrorConfig{Routes: rawRoutes(t, sr.Errors.Routes)}
				}
				h = cp
			}
			raw.HandlersRaw = append(raw.HandlersRaw, caddyconfig.JSONModuleObject(h, "handler", caddy.GetModuleName(h), nil))
		}
		out[i] = raw
	}
	return out
}

func TestFunnelRouteCheck(t *testing.T) {
	var (
		senders = func() caddyhttp.MiddlewareHandler { return &Senders{} }
		proxy   = func() caddyhttp.MiddlewareHandler { return &reverseproxy.Handler{} }
		static  = func() caddyhttp.MiddlewareHandler { return &caddyhttp.StaticResponse{} }
		files   = func() caddyhttp.MiddlewareHandler { return &fileserver.FileServer{} }
		guard   = func() caddyhttp.MiddlewareHandler { return &Handler{} }
		hdrs    = func() caddyhttp.MiddlewareHandler { return &headers.Handler{} }
		rw      = func() caddyhttp.MiddlewareHandler { return &rewrite.Rewrite{} }
		enc     = func() caddyhttp.MiddlewareHandler { return &encode.Encode{} }
	)
	tests := []struct {
		name   string
		routes caddyhttp.RouteList
		errors caddyhttp.RouteList
		want   string // "" accepted, else part of the error
	}{
		{name: "directive per route with the same matcher (Caddyfile)", routes: caddyhttp.RouteList{hostRoute(
			fr("/tg", senders()), fr("/tg", proxy()), fr("", static()))}},
		{name: "handle block", routes: caddyhttp.RouteList{hostRoute(
			grouped("g0", fr("/tg", sub(fr("", senders()), fr("", proxy())))),
			grouped("g0", fr("", sub(fr("", static())))))}},
		{name: "one route, checked first", routes: caddyhttp.RouteList{fr("/tg", hdrs(), senders(), proxy())}},
		{name: "two webhooks, checks first", routes: caddyhttp.RouteList{
			fr("/tg", senders()), fr("/slack", senders()), fr("/tg", proxy()), fr("/slack", proxy())}},
		{name: "matcherless check covers every later route", routes: caddyhttp.RouteList{
			fr("", senders()), fr("/a", rw()), fr("/b", files())}},
		{name: "answers and quiet handlers need no check", routes: caddyhttp.RouteList{
			fr("", enc()), fr("", hdrs()), fr("/x", static())}, errors: caddyhttp.RouteList{fr("", static())}},

		{name: "proxy without a check", routes: caddyhttp.RouteList{fr("", proxy())}, want: "routes[0].handle[0]: reverse_proxy could reach a backend"},
		{name: "file server without a check", routes: caddyhttp.RouteList{hostRoute(fr("", files()))}, want: "routes[0].handle[0].routes[0].handle[0]: file_server"},
		{name: "the tailnet guard", routes: caddyhttp.RouteList{fr("/ui", guard(), proxy())}, want: "tailnet guard"},
		{name: "the tailnet guard even after a check", routes: caddyhttp.RouteList{fr("", senders(), guard(), proxy())}, want: "tailnet guard"},
		{name: "check on another path", routes: caddyhttp.RouteList{fr("/tg", senders()), fr("/ui", proxy())}, want: "routes[1].handle[0]: reverse_proxy"},
		{name: "check after the proxy", routes: caddyhttp.RouteList{fr("/tg", proxy()), fr("/tg", senders())}, want: "routes[0].handle[0]: reverse_proxy"},
		{name: "check after the proxy in one route", routes: caddyhttp.RouteList{fr("/tg", proxy(), senders())}, want: "reverse_proxy"},
		{name: "proxy with handle_response between check and proxy", routes: caddyhttp.RouteList{
			fr("/tg", senders()), fr("/slack", senders()),
			fr("/slack", &reverseproxy.Handler{HandleResponse: []caddyhttp.ResponseHandler{{}}}), fr("/tg", proxy())}, want: "routes[3].handle[0]: reverse_proxy"},
		{name: "another webhook's handle block between check and proxy", routes: caddyhttp.RouteList{
			fr("/tg", senders()), grouped("g0", fr("/wa", sub(fr("", senders()), fr("", proxy())))), fr("/tg", proxy())}},
		{name: "a handle block that rewrites between check and proxy", routes: caddyhttp.RouteList{
			fr("/tg", senders()), grouped("g0", fr("/wa", sub(fr("", rw())))), fr("/tg", proxy())}, want: "routes[2].handle[0]: reverse_proxy"},
		{name: "rewrite between check and proxy", routes: caddyhttp.RouteList{fr("/tg", senders()), fr("", rw()), fr("/tg", proxy())}, want: "routes[2].handle[0]: reverse_proxy"},
		{name: "check not first of its group", routes: caddyhttp.RouteList{
			grouped("g", fr("/a", static())), grouped("g", fr("", senders())), fr("", proxy())}, want: "routes[2].handle[0]: reverse_proxy"},
		{name: "unchecked proxy in a subroute", routes: caddyhttp.RouteList{fr("/tg", sub(fr("", proxy()), fr("", senders())))}, want: "routes[0].handle[0].routes[0].handle[0]: reverse_proxy"},
		{name: "proxy in error routes", routes: caddyhttp.RouteList{fr("", senders(), proxy())}, errors: caddyhttp.RouteList{fr("", proxy())}, want: "errors.routes[0].handle[0]: reverse_proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &caddyhttp.Server{Routes: tt.routes}
			if tt.errors != nil {
				srv.Errors = &caddyhttp.HTTPErrorConfig{Routes: tt.errors}
			}
			err := checkFunnelServer(srv)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("checkFunnelServer = %v, want accepted", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("checkFunnelServer = %v, want an error saying %q", err, tt.want)
			}
			// The same routes as JSON, as Caddy holds them before it
			// provisions them: the same verdict.
			rawSrv := &caddyhttp.Server{Routes: rawRoutes(t, tt.routes)}
			if tt.errors != nil {
				rawSrv.Errors = &caddyhttp.HTTPErrorConfig{Routes: rawRoutes(t, tt.errors)}
			}
			rawErr := checkFunnelServer(rawSrv)
			if fmt.Sprint(rawErr) != fmt.Sprint(err) {
				t.Errorf("checkFunnelServer on the routes' JSON = %v, on the provisioned routes = %v", rawErr, err)
			}
		})
	}
}

// TestFunnelLoadRefusesGatewayRoutes loads Caddyfiles whose Funnel site
// reaches a gateway other than through clawgate_senders: Caddy must refuse
// them when it opens the listener, before any tailnet node is started.
func TestFunnelLoadRefusesGatewayRoutes(t *testing.T) {
	t.Setenv("CG_TEST_TG_SECRET", randToken(t, 24))
	t.Setenv("CG_TEST_TOKEN_CI", randToken(t, 32))
	webhook := `
	clawgate_senders /telegram-webhook telegram {
		allow 111
		secret {env.CG_TEST_TG_SECRET}
	}
	reverse_proxy /telegram-webhook 127.0.0.1:8787`
	tests := []struct {
		name, site, body, want string
	}{
		{"the Control UI through the guard", ":8443", webhook + `
	clawgate /ui/* 127.0.0.1:18789 {
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow token:ci scopes operator.read
	}`, "tailnet guard `clawgate` cannot serve Funnel traffic"},
		{"a proxy to the gateway without a check", ":8443", webhook + `
	reverse_proxy /v1/* 127.0.0.1:18789`, "reverse_proxy could reach a backend without a clawgate_senders check"},
		{"a catch-all proxy", ":10000", `
	reverse_proxy 127.0.0.1:18789`, "reverse_proxy could reach a backend"},
		{"static files", ":8443", webhook + `
	file_server /docs/*`, "file_server could reach a backend"},
		{"error pages through a proxy", ":8443", webhook + `
	handle_errors {
		reverse_proxy 127.0.0.1:18789
	}`, "errors.routes"},
		{"a port Funnel cannot serve", ":8080", webhook, "Tailscale Funnel serves only ports 443, 8443 and 10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf := fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n}\nhttp://%s {\n\tbind clawgate+funnel/gw\n%s\n}\n", tt.site, strings.TrimPrefix(tt.body, "\n"))
			// caddy validate opens no listener: it refuses the config while
			// Caddy provisions a clawgate handler of the Funnel server, with
			// the same message (loadCaddyErr checks). A server with none is
			// judged when its listener opens only.
			var err error
			if strings.Contains(tt.body, "clawgate") {
				err = loadCaddyErr(t, cf)
			} else {
				err = loadCaddyErrOnly(t, cf)
				if verr := caddyValidate(t, cf); verr != nil {
					t.Errorf("caddy validate = %v, want it to accept (no clawgate handler runs there)", verr)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("load = %v, want an error saying %q\n%s", err, tt.want, cf)
			}
			if !strings.Contains(err.Error(), "clawgate+funnel/gw:") {
				t.Errorf("the error does not name the listener: %v", err)
			}
			if n := openNodes.Load(); n != 0 {
				t.Errorf("%d tailnet node(s) started for a refused config", n)
			}
		})
	}
}

// funnelFixture is a real in-process tailnet with clawgate's node "gw"
// serving a Telegram webhook over Funnel (port 8443) next to a tailnet-only
// site (port 18080), a node "relay" that plays Tailscale's Funnel ingress
// (it holds the ingress capability and brings internet connections in
// through gw's peer API, as Tailscale's relays do), and a tailnet client.
type funnelFixture struct {
	tn           *tailnettest.Tailnet
	relay, alice *tailnettest.Node
	be           *bodyBackend
	ui           *backend
	secret       string
	peerAPI      string // gw's peer API host:port, as the relay sees it
}

const (
	funnelHost = "gw." + tailnettest.Domain
	funnelSrc  = "203.0.113.7:40123" // the internet client
)

func newFunnelFixture(t *testing.T) *funnelFixture {
	begin := time.Now()
	f := &funnelFixture{tn: tailnettest.New(t), be: newBodyBackend(t), ui: newBackend(t), secret: randToken(t, 24)}
	t.Setenv("CG_TEST_TG_SECRET", f.secret)
	gw := f.tn.Config(t, "gw")
	f.relay = f.tn.NewNode(t, "relay", tailnettest.WithCapMap(tailcfg.PeerCapMap{tailcfg.PeerCapabilityIngress: nil}))
	f.alice = f.tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))

	granted := grantFunnel(f.tn, "gw")
	startCaddyTailnet(t, globalOptions{nodes: []tsnet.Config{gw}, tlsInternal: true}.String()+fmt.Sprintf(`https://%s:8443 {
	bind clawgate+funnel/gw
	tls internal
	handle /telegram-webhook {
		clawgate_senders telegram {
			allow 111
			secret {env.CG_TEST_TG_SECRET}
		}
		reverse_proxy %s {
			header_up X-Seen-Local {http.request.local}
		}
	}
	handle {
		respond 404
	}
}
http://:18080 {
	bind clawgate/gw
	clawgate %s {
		allow user:alice@example.com scopes operator.read
	}
}
`, funnelHost, f.be.addr(), f.ui.addr()))
	<-granted
	(&tailnetFixture{tn: f.tn, alice: f.alice, bob: f.relay, ci: f.relay}).waitGW(t)

	f.awaitFunnel(t)
	t.Logf("tailnet, Caddy and Funnel up in %v", time.Since(begin))
	return f
}

// grantFunnel lets node use Funnel on ports 443, 8443 and 10000 as soon as it
// registers, as an admin's nodeAttrs would; the channel closes when it has.
func grantFunnel(tn *tailnettest.Tailnet, node string) <-chan struct{} {
	granted := make(chan struct{})
	go func() {
		defer close(granted)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			for _, n := range tn.Control.AllNodes() {
				if n.Hostinfo.Valid() && n.Hostinfo.Hostname() == node {
					tn.Control.SetNodeCapMap(n.Key, tailcfg.NodeCapMap{
						tailcfg.CapabilityHTTPS:                                 nil,
						tailcfg.NodeAttrFunnel:                                  nil,
						tailcfg.CapabilityFunnelPorts + "?ports=443,8443,10000": nil,
					})
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return granted
}

// awaitFunnel finds gw's peer API as the relay sees it and waits until the
// ingress handshake succeeds.
func (f *funnelFixture) awaitFunnel(t testing.TB) {
	t.Helper()
	lc, err := f.relay.LocalClient()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for f.peerAPI == "" {
		st, err := lc.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Peer {
			if p.HostName == "gw" && len(p.PeerAPIURL) > 0 {
				f.peerAPI = strings.TrimPrefix(p.PeerAPIURL[0], "http://")
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay never saw gw's peer API")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Wait until Funnel is on: the ingress handshake succeeds.
	deadline = time.Now().Add(30 * time.Second)
	for {
		c, err := f.ingress(t)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Funnel never came on: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ingress opens a connection to gw's Funnel port the way Tailscale's Funnel
// relays do: a POST to the peer API's /v0/ingress naming the internet
// client and the public target, answered with 101, after which the
// connection carries the client's bytes (TLS first).
func (f *funnelFixture) ingress(t testing.TB) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := f.relay.Dial(ctx, "tcp", f.peerAPI)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "POST /v0/ingress HTTP/1.1\r\nHost: %s\r\nTailscale-Ingress-Src: %s\r\nTailscale-Ingress-Target: %s:8443\r\nContent-Length: 0\r\n\r\n", f.peerAPI, funnelSrc, funnelHost)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, err
	}
	if !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		conn.Close()
		return nil, fmt.Errorf("ingress answered %q", strings.TrimSpace(status))
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, err
		}
		if l == "\r\n" {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	if br.Buffered() > 0 {
		conn.Close()
		return nil, errors.New("bytes after the 101 answer")
	}
	return conn, nil
}

// post sends a webhook through Funnel, as the internet client.
func (f *funnelFixture) post(t testing.TB, path string, body []byte, h http.Header) (int, string) {
	t.Helper()
	conn, err := f.ingress(t)
	if err != nil {
		t.Fatalf("ingress: %v", err)
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{ServerName: funnelHost, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
	req, err := http.NewRequest("POST", "https://"+funnelHost+":8443"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if err := req.Write(tc); err != nil {
		t.Fatalf("writing the request through Funnel: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		t.Fatalf("reading the answer through Funnel: %v", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func TestFunnelWebhookEndToEnd(t *testing.T) {
	f := newFunnelFixture(t)
	tg := http.Header{"X-Telegram-Bot-Api-Secret-Token": {f.secret}}

	t.Run("an allowed sender reaches the gateway byte for byte", func(t *testing.T) {
		body := tgMessage(1, 111, 111, "private", "hello over Funnel")
		before := f.be.count()
		status, out := f.post(t, "/telegram-webhook", body, tg)
		if status != 200 || f.be.count() != before+1 {
			t.Fatalf("status %d %q, backend got %d requests; want 200 and 1", status, out, f.be.count()-before)
		}
		got := f.be.last()
		if !bytes.Equal(got.Body, body) {
			t.Errorf("body differs at the backend:\n got %q\nwant %q", got.Body, body)
		}
		if xff := got.Header.Get("X-Forwarded-For"); xff != "203.0.113.7" {
			t.Errorf("X-Forwarded-For = %q, want the internet client 203.0.113.7", xff)
		}
		local := got.Header.Get("X-Seen-Local")
		if local != funnelHost+":8443" {
			t.Errorf("the request's local address = %q, want %s:8443", local, funnelHost)
		}

		// That local address is what the guard identifies callers by: it
		// matches no node, so a Funnel request never has a tailnet identity,
		// even while gw is running with its tailnet IPs.
		if p := nodeByName("gw"); p == nil || len(p.tailnetIPs()) == 0 {
			t.Fatal("gw is not running")
		}
		r := httptest.NewRequest("POST", "/", nil)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, tsnet.FunnelAddr(local)))
		r.RemoteAddr = funnelSrc
		id := &edge.Identity{}
		node, err := identify(r, id)
		if node != nil || err != nil || id.OnTailnet || id.Login != "" {
			t.Errorf("identify(Funnel request) = %v, %v, identity %+v; want no tailnet identity", node, err, id)
		}
	})

	t.Run("a stranger is acknowledged and dropped", func(t *testing.T) {
		before := f.be.count()
		status, out := f.post(t, "/telegram-webhook", tgMessage(2, 333, 333, "private", secretText), tg)
		if status != 200 || out != "" || f.be.count() != before {
			t.Errorf("status %d %q, backend got %d; want 200, empty, nothing forwarded", status, out, f.be.count()-before)
		}
	})

	t.Run("a forged secret is refused", func(t *testing.T) {
		before := f.be.count()
		status, _ := f.post(t, "/telegram-webhook", tgMessage(3, 111, 111, "private", "hi"), http.Header{"X-Telegram-Bot-Api-Secret-Token": {"guess"}})
		if status != 401 || f.be.count() != before {
			t.Errorf("status %d, backend got %d; want 401 and nothing", status, f.be.count()-before)
		}
	})

	t.Run("other paths answer 404", func(t *testing.T) {
		if status, _ := f.post(t, "/v1/chat/completions", []byte(`{}`), nil); status != 404 {
			t.Errorf("status %d, want 404", status)
		}
	})

	t.Run("the tailnet reaches the tailnet site, not the Funnel port", func(t *testing.T) {
		c := f.alice.HTTPClient()
		defer c.CloseIdleConnections()
		resp, err := c.Get(fmt.Sprintf("http://%s:18080/", funnelHost))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || f.ui.last(t).Header.Get("X-Forwarded-User") != "alice@example.com" {
			t.Errorf("tailnet site: status %d, user %q", resp.StatusCode, f.ui.last(t).Header.Get("X-Forwarded-User"))
		}
		gwIP := nodeByName("gw").tailnetIPs()[0]
		// answers reports whether anything on gw's port answers a tailnet
		// peer. A connection may be accepted by the network stack and reset
		// at once, so only an answer counts.
		answers := func(port int) bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := f.alice.Dial(ctx, "tcp", net.JoinHostPort(gwIP.String(), itoa(port)))
			if err != nil {
				return false
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
			_, _ = conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
			n, _ := conn.Read(make([]byte, 1))
			return n > 0
		}
		if !answers(18080) {
			t.Fatal("the tailnet site does not answer a raw connection: the probe is broken")
		}
		if answers(8443) {
			t.Error("a tailnet peer got an answer from the Funnel port")
		}
	})
}

// TestFunnelExample keeps examples/webhooks-funnel.caddyfile runnable (its
// adapted JSON is a golden file of TestAdaptExamples): it loads against a real tailnet
// (only its tailnet name and node settings swapped for the test's), which
// includes passing the Funnel route check; with a proxy to the gateway's
// API added to the Funnel site, it is refused.
func TestFunnelExample(t *testing.T) {
	example, err := os.ReadFile("../examples/webhooks-funnel.caddyfile")
	if err != nil {
		t.Fatal(err)
	}

	tn := tailnettest.New(t)
	gw := tn.Config(t, "gw")
	stateDir := filepath.Join(t.TempDir(), "openclaw")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(stateDir, "openclaw.json")
	if err := os.WriteFile(cfgPath, []byte(`{ channels: { telegram: { allowFrom: [123456789] } } }`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OPENCLAW_CONFIG_PATH", cfgPath)
	t.Setenv("OPENCLAW_STATE_DIR", stateDir)
	t.Setenv("TS_AUTHKEY", "tskey-auth-test")
	t.Setenv("TELEGRAM_WEBHOOK_SECRET", randToken(t, 24))
	cf := strings.ReplaceAll(string(example), "tail1234.ts.net", tailnettest.Domain)
	cf = strings.Replace(cf, "\t\tnode gw {\n", fmt.Sprintf("\t\tnode gw {\n\t\t\tcontrol_url %s\n\t\t\tstate_dir %s\n\t\t\tephemeral\n", tn.ControlURL, gw.StateDir), 1)
	cf = strings.Replace(cf, "{\n\tclawgate {", "{\n\tadmin off\n\tclawgate {", 1)

	refused := strings.Replace(cf, "\thandle {\n\t\trespond 404\n\t}\n", "\treverse_proxy /v1/* 127.0.0.1:18789\n\thandle {\n\t\trespond 404\n\t}\n", 1)
	if refused == cf {
		t.Fatal("the example's catch-all handle block moved; update this test")
	}
	if err := loadCaddyErr(t, refused); err == nil || !strings.Contains(err.Error(), "reverse_proxy could reach a backend") {
		t.Errorf("the example with /v1/* proxied over Funnel loaded (err %v), want it refused", err)
	}

	startCaddyTailnet(t, cf)
	deadline := time.Now().Add(60 * time.Second)
	for p := nodeByName("gw"); p == nil || len(p.tailnetIPs()) == 0; p = nodeByName("gw") {
		if time.Now().After(deadline) {
			t.Fatal("the example's node never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
