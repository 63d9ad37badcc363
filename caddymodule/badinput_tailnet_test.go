package caddymodule

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"tailscale.com/wgengine/netstack"

	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// The bad-input suite's sites (badinput_test.go) live in one Caddy: the
// guard fixture's configuration (newGuardFixture) in its shortcut and guard-only
// forms, and the routes site, each once on loopback and once bound to the
// clawgate node "gw" of a real in-process tailnet. The tailnet client is the
// node "probe", tagged tag:probe, which no rule admits on its own: only a
// case's own credentials admit its request, so the identities a case expects
// (the token's or the JWT's) are the same on both listeners. The differences
// are each site's refusal and client address (biSite.refusal, .clientIP).

// Fixed tailnet ports: they are the node's own (netstack), not the host's.
const (
	biTailnetPort       = 18090 // shortcut; +1 guard-only; +2 routes
	biTailnetRateLimits = `
		rate_limit {
			failures 1000000
			window 1m
			lockout 1m
		}`
)

// biFixture is the suite's Caddy and the sites it serves.
type biFixture struct {
	f                 *guardFixture
	r                 *routesFixture
	loopback, tailnet []*biSite // the guard fixture's sites
	routes            []*biSite // loopback, tailnet
}

// guardFixtureOpts is newGuardFixture's guard configuration, word for word
// but for the rate limit, which is passed in. TestBadInput checks that the
// guards it makes are configured as newGuardFixture's are (checkGuards).
func guardFixtureOpts(opsFile, pemFile, rateLimit string) string {
	return fmt.Sprintf(`
		gateway home
		token ci {
			env CG_TEST_TOKEN_CI
			user ci-bot
		}
		token ops {
			file %s
			scopes operator.read
		}
		token old {
			env CG_TEST_TOKEN_OLD
			expires 2020-01-01T00:00:00Z
		}
		jwt {
			algorithms HS256 EdDSA
			hmac_secret_env CG_TEST_HS
			public_key_file %s
			issuer https://issuer.test
			audience clawgate
			leeway 5s
		}
		allow token:ci scopes operator.read,operator.write
		allow token:ops scopes operator.read,operator.admin
		allow claim:role=operator scopes operator.read
		allow jwt%s`, opsFile, pemFile, rateLimit)
}

const guardFixtureRateLimit = `
		rate_limit {
			failures 5
			window 1m
			lockout 1m
		}`

// newBIFixture starts the tailnet, the probe node and the suite's Caddy.
func newBIFixture(t *testing.T) *biFixture {
	suites.SkipShort(t, suites.BadInputTailnet)
	tn := tailnettest.New(t)
	gw := tn.Config(t, "gw")
	probe := tn.NewNode(t, "probe", tailnettest.WithTags("tag:probe"))
	shortTimeWait(t, probe)

	// The guard fixture's secrets, made as newGuardFixture makes them.
	f := &guardFixture{be: newBackend(t)}
	f.tokCI, f.tokOps, f.tokOld = randToken(t, 32), randToken(t, 32), randToken(t, 32)
	f.hsSecret = []byte(randToken(t, 48))
	t.Setenv("CG_TEST_TOKEN_CI", f.tokCI)
	t.Setenv("CG_TEST_TOKEN_OLD", f.tokOld)
	t.Setenv("CG_TEST_HS", string(f.hsSecret))
	dir := t.TempDir()
	opsFile := filepath.Join(dir, "ops.token")
	if err := os.WriteFile(opsFile, []byte(f.tokOps+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.edPriv = priv
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(dir, "ed.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRoutes(t)

	port, guardPort, routesPort := freePort(t), freePort(t), freePort(t)
	f.url = "http://127.0.0.1:" + itoa(port)
	f.guardURL = "http://127.0.0.1:" + itoa(guardPort)
	opts := guardFixtureOpts(opsFile, pemFile, guardFixtureRateLimit)
	// The probe's failed attempts all count against its one address; a
	// limit out of reach keeps one case from locking out the next.
	tnOpts := guardFixtureOpts(opsFile, pemFile, biTailnetRateLimits)
	tnHost := "gw." + tailnettest.Domain
	be := f.be.addr()
	cfg := biGlobal(gw) + fmt.Sprintf(`http://127.0.0.1:%d {
	clawgate %s {%s
	}
}
http://127.0.0.1:%d {
	clawgate {
		upstream %s%s
	}
	reverse_proxy %s
}
http://%s:%d {
	bind clawgate/gw
	clawgate %s {%s
	}
}
http://%s:%d {
	bind clawgate/gw
	clawgate {
		upstream %s%s
	}
	reverse_proxy %s
}
`, port, be, opts, guardPort, be, opts, be,
		tnHost, biTailnetPort, be, tnOpts, tnHost, biTailnetPort+1, be, tnOpts, be) +
		r.siteBlock(fmt.Sprintf("http://:%d", routesPort), "127.0.0.1", "") +
		r.siteBlock(fmt.Sprintf("http://:%d", biTailnetPort+2), "clawgate/gw", biTailnetRateLimits)
	startCaddyTailnet(t, cfg)
	waitHTTP(t, f.url)
	waitHTTP(t, f.guardURL)
	routesHP := "127.0.0.1:" + itoa(routesPort)
	waitHTTP(t, "http://"+routesHP+"/")

	deadline := time.Now().Add(60 * time.Second)
	for nodeByName("gw") == nil || len(nodeByName("gw").tailnetIPs()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("clawgate node gw never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	gwIP := nodeByName("gw").tailnetIPs()[0].String()
	tn.WaitPeer(t, probe, "gw")

	// overTailnet makes st a tailnet site: the probe dials gw, the guard
	// forwards the probe's address, refusals are tailnetRefusal's.
	overTailnet := func(st *biSite, name string, port int) *biSite {
		st.name = name
		st.addr = net.JoinHostPort(gwIP, strconv.Itoa(port))
		st.host = fmt.Sprintf("%s:%d", tnHost, port)
		st.dial = probe.Dial
		st.clientIP = probe.IPs[0].String()
		st.refusal = tailnetRefusal
		return st
	}
	x := &biFixture{f: f, r: r}
	x.loopback = []*biSite{fixtureSite(f, f.url, "shortcut"), fixtureSite(f, f.guardURL, "guard-only")}
	// The guard-only form's reverse_proxy does not trust a tailnet peer as
	// a proxy, so it sets X-Forwarded-For to the peer's address alone
	// rather than appending its own hop: no suffix.
	tnGuardOnly := overTailnet(fixtureSite(f, f.guardURL, ""), "tailnet guard-only", biTailnetPort+1)
	tnGuardOnly.xffSuffix = ""
	x.tailnet = []*biSite{overTailnet(fixtureSite(f, f.url, ""), "tailnet shortcut", biTailnetPort), tnGuardOnly}
	r.site = r.newSite("routes", routesHP, routesHP)
	x.routes = []*biSite{r.site, overTailnet(r.newSite("", "", ""), "tailnet routes", biTailnetPort+2)}

	// The premise of every tailnet run: the probe reaches gw, is known as
	// itself, and is admitted by nothing but a credential.
	for _, st := range []*biSite{x.tailnet[0], x.routes[1]} {
		res := exchange(st, "GET / HTTP/1.1\r\nHost: "+st.host+"\r\n\r\n", 1)[0]
		if res.err != nil || res.status != http.StatusForbidden || denialType(res.body) != "clawgate_forbidden" {
			t.Fatalf("%s: the probe without a credential got %d %v %q, want 403 clawgate_forbidden", st.name, res.status, res.err, res.body)
		}
	}
	return x
}

// shortTimeWait gives a plain tsnet node the 1 s TCP TIME_WAIT clawgate's
// own nodes have (tsnet/node.go, shortenTimeWait): the probe closes every
// connection first, and with gVisor's 60 s it ends the suite with hundreds
// of endpoints in TIME_WAIT, more than the 512 resets its Close can queue
// once nothing drains them, so Close never returns (tailscale.com v1.102.5).
func shortTimeWait(t *testing.T, n *tailnettest.Node) {
	t.Helper()
	impl, ok := n.Sys().Netstack.Get().(*netstack.Impl)
	if !ok {
		t.Fatalf("%s: no netstack", n.Hostname)
	}
	opt := tcpip.TCPTimeWaitTimeoutOption(time.Second)
	if err := impl.SetTransportProtocolOption(tcp.ProtocolNumber, &opt); err != nil {
		t.Fatalf("%s: setting TCP TIME_WAIT: %v", n.Hostname, err)
	}
}

// tailnetRefusal is how the tailnet sites refuse a request the loopback
// sites refuse with status and errType. A tailnet device is identified by
// the tailnet, so a request without a credential, or with a well-formed
// bearer the edge does not know (it may be the gateway's own token), is not
// refused at the edge: the rules decide, and none admits the probe alone
// (403 clawgate_forbidden). Everything refused before identity matters (a
// malformed Authorization, an expired token, a query token, oversize
// headers, ...) is refused alike.
func tailnetRefusal(status int, errType string, unknownBearer bool) (int, string) {
	if status == http.StatusUnauthorized &&
		(errType == "clawgate_unauthenticated" || errType == "clawgate_bad_credential" && unknownBearer) {
		return http.StatusForbidden, "clawgate_forbidden"
	}
	return status, errType
}

// biGuardConfigs is the configuration of every clawgate guard of gateway in
// the running Caddy, as JSON with what differs between fixtures by design
// taken out: the upstream, the directories of key files, and, with
// noRateLimit, the rate limit.
func biGuardConfigs(t *testing.T, gateway string, noRateLimit bool) []string {
	t.Helper()
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(routes caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, r := range routes {
			for _, h := range r.Handlers {
				switch h := h.(type) {
				case *caddyhttp.Subroute:
					walk(h.Routes)
				case *Handler:
					if h.Gateway == gateway {
						out = append(out, normalGuardConfig(t, h, noRateLimit))
					}
				}
			}
		}
	}
	for _, srv := range app.(*caddyhttp.App).Servers {
		walk(srv.Routes)
	}
	slices.Sort(out)
	return out
}

func normalGuardConfig(t *testing.T, h *Handler, noRateLimit bool) string {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "upstream")
	if noRateLimit {
		delete(m, "rate_limit")
	}
	if toks, ok := m["tokens"].([]any); ok {
		for _, tok := range toks {
			if tm, ok := tok.(map[string]any); ok {
				if file, ok := tm["file"].(string); ok {
					tm["file"] = filepath.Base(file)
				}
			}
		}
	}
	if j, ok := m["jwt"].(map[string]any); ok {
		if files, ok := j["public_key_files"].([]any); ok {
			for i, file := range files {
				if s, ok := file.(string); ok {
					files[i] = filepath.Base(s)
				}
			}
		}
	}
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkGuards fails the test unless the suite's four guards of the guard
// fixture's configuration are configured as newGuardFixture (from
// biGuardConfigs) says, the tailnet ones but for their rate limit.
func (x *biFixture) checkGuards(t *testing.T, fixture []string) {
	t.Helper()
	if len(fixture) != 2 || fixture[0] != fixture[1] {
		t.Fatalf("newGuardFixture's guards: want two alike, got %q", fixture)
	}
	got := biGuardConfigs(t, "home", false)
	if len(got) != 4 {
		t.Fatalf("the suite's Caddy has %d guards of gateway home, want 4", len(got))
	}
	var loopback int
	for _, g := range got {
		if g == fixture[0] {
			loopback++
		}
	}
	if loopback != 2 {
		t.Errorf("%d of the suite's guards are configured as newGuardFixture's, want the 2 loopback ones:\nfixture: %s\nsuite: %q", loopback, fixture[0], got)
	}
	// Only the rate limit may differ on the tailnet: compare without it.
	fixtureNoRL := biGuardConfigsFrom(t, fixture[:1])[0]
	for _, g := range biGuardConfigs(t, "home", true) {
		if g != fixtureNoRL {
			t.Errorf("a guard of the suite differs from newGuardFixture's in more than its rate limit:\nfixture: %s\nsuite: %s", fixtureNoRL, g)
		}
	}
}

// biGuardConfigsFrom removes the rate limit from configurations that
// biGuardConfigs rendered with it.
func biGuardConfigsFrom(t *testing.T, cfgs []string) []string {
	t.Helper()
	out := make([]string, len(cfgs))
	for i, c := range cfgs {
		var m map[string]any
		if err := json.Unmarshal([]byte(c), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "rate_limit")
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = string(b)
	}
	return out
}
