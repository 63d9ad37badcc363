package caddymodule

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddypki"

	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"tailscale.com/tailcfg"
)

// userEdits makes the only changes to a shipped example that a user makes
// before running it, here pointed at the test's own world:
//  1. the node: control_url of the in-process control server (a node with no
//     block of its own gets one);
//  2. the tailnet name in site addresses: tail1234.ts.net becomes the test
//     tailnet's;
//  3. the TLS issuer of https sites: Caddy's internal CA (skip_install_trust),
//     since the test control server cannot issue certificates;
//  4. the admin address: admin (off, or a socket of the test's own), so
//     parallel test packages do not collide;
//  5. the user's own paths (/home/<user>, /etc/clawgate, /var/lib/clawgate):
//     rooted in the test's directory.
func userEdits(src, controlURL, root, admin string) string {
	src = regexp.MustCompile(`(?m)^(\s*)node ([a-z0-9-]+) \{$`).ReplaceAllString(src, "${1}node ${2} {\n${1}\tcontrol_url "+controlURL)
	src = regexp.MustCompile(`(?m)^(\s*)node ([a-z0-9-]+)$`).ReplaceAllString(src, "${1}node ${2} {\n${1}\tcontrol_url "+controlURL+"\n${1}}")
	src = strings.ReplaceAll(src, "tail1234.ts.net", tailnettest.Domain)
	// `admin <address>`, or `admin <address> {` opening a block of options.
	// The address may hold placeholders, as in
	// `admin unix/{$XDG_RUNTIME_DIR}/clawgate-admin.sock|0600`.
	adminLine := regexp.MustCompile(`(?m)^(\s*)admin(?:[ \t]+(?:[^\s{]|\{[^\s{}]+\})\S*)?([ \t]*\{)?[ \t]*$`)
	global := "{\n\tskip_install_trust\n"
	if adminLine.MatchString(src) {
		src = adminLine.ReplaceAllString(src, "${1}admin "+admin+"${2}")
	} else {
		global += "\tadmin " + admin + "\n"
	}
	src = regexp.MustCompile(`(?m)^\{$`).ReplaceAllLiteralString(src, global)
	src = regexp.MustCompile(`(?m)^(https://\S+) \{$`).ReplaceAllString(src, "${1} {\n\ttls internal")
	for _, p := range []string{"/home/", "/etc/clawgate/", "/var/lib/clawgate/"} {
		src = strings.ReplaceAll(src, " "+p, " "+root+p)
	}
	return src
}

// fixedBackend stands in for a gateway on the loopback port an example names.
type fixedBackend struct {
	mu   sync.Mutex
	seen []http.Header
}

func listenFixed(t *testing.T, addr string) *fixedBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the example's upstream %s: %v (run the test in its own network namespace)", addr, err)
	}
	b := &fixedBackend{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.seen = append(b.seen, r.Header.Clone())
		b.mu.Unlock()
		io.WriteString(w, "gateway at "+addr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// exampleRequest is one allowed request to one guarded site of an example.
type exampleRequest struct {
	url      string // with tail1234.ts.net, as the example writes it
	from     string // client node: "login:<email>", "tag:<tag>" or a hostname
	bearer   string // environment variable holding the bearer token, if any
	upstream string // the gateway address that must answer
	user     string // x-forwarded-user the gateway must see; none on Funnel
	funnel   []byte // a Telegram update POSTed to url through Funnel, from the internet
	service  string // "<node>/<service>": url names a Tailscale Service the node hosts, which the tailnet approves
}

// TestExamplesStart loads each example into a real Caddy on the in-process
// tailnet, with the gateway configs made by `setup --write` from an
// onboarded openclaw.json and the secrets the example documents in the
// environment, and sends one allowed request through each guarded site.
func TestExamplesStart(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	tests := []struct {
		file     string
		channels string // the gateway's channels as the example documents them, JSON5
		requests []exampleRequest
	}{
		{file: "../Caddyfile.example", requests: []exampleRequest{
			{url: "http://openclaw.tail1234.ts.net:8080/", from: "login:alice@example.com", upstream: "127.0.0.1:18789", user: "alice@example.com"},
		}},
		{file: "../examples/single-gateway.caddyfile", requests: []exampleRequest{
			{url: "http://openclaw.tail1234.ts.net:8080/", from: "login:alice@example.com", upstream: "127.0.0.1:18789", user: "alice@example.com"},
		}},
		{file: "../examples/remote-control-ui.caddyfile", requests: []exampleRequest{
			{url: "https://openclaw.tail1234.ts.net/", from: "login:alice@example.com", upstream: "127.0.0.1:18789", user: "alice@example.com"},
		}},
		{file: "../examples/automation-jwt-tags.caddyfile", requests: []exampleRequest{
			{url: "http://openclaw-api.tail1234.ts.net:8080/v1/models", from: "tag:ci", bearer: "CLAWGATE_TOKEN_CI", upstream: "127.0.0.1:18789", user: "ci-runner"},
			{url: "http://openclaw-api.tail1234.ts.net:8080/", from: "login:alice@example.com", upstream: "127.0.0.1:18789", user: "alice@example.com"},
		}},
		{file: "../examples/several-gateways-by-node.caddyfile", requests: []exampleRequest{
			{url: "https://alice-claw.tail1234.ts.net/", from: "login:alice@example.com", upstream: "127.0.0.1:18789", user: "alice@example.com"},
			{url: "https://bob-claw.tail1234.ts.net/", from: "login:bob@example.com", upstream: "127.0.0.1:19789", user: "bob@example.com"},
		}},
		{file: "../examples/several-gateways-by-identity.caddyfile", requests: []exampleRequest{
			{url: "https://claw.tail1234.ts.net/", from: "login:alice@example.com", upstream: "127.0.0.1:18789", user: "alice@example.com"},
			{url: "https://claw.tail1234.ts.net/", from: "login:bob@example.com", upstream: "127.0.0.1:19789", user: "bob@example.com"},
		}},
		{file: "../examples/service.caddyfile", requests: []exampleRequest{
			{url: "http://claw.tail1234.ts.net/", from: "login:alice@example.com", upstream: "127.0.0.1:18789", user: "alice@example.com", service: "claw-a/claw"},
		}},
		{file: "../examples/webhooks-funnel.caddyfile", channels: `telegram: {
      dmPolicy: "allowlist", allowFrom: [123456789],
      webhookUrl: "https://gw.tail1234.ts.net:8443/telegram-webhook",
      webhookSecret: "${TELEGRAM_WEBHOOK_SECRET}",
      webhookHost: "127.0.0.1", webhookPort: 8787, webhookPath: "/telegram-webhook",
    }`, requests: []exampleRequest{
			{url: "https://gw.tail1234.ts.net/", from: "login:alice@example.com", upstream: "127.0.0.1:18789", user: "alice@example.com"},
			{url: "https://gw.tail1234.ts.net:8443/telegram-webhook", upstream: "127.0.0.1:8787", funnel: tgMessage(1, 123456789, 123456789, "private", "hi")},
		}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			runExample(t, tt.file, tt.channels, tt.requests)
		})
	}
}

func runExample(t *testing.T, file, channels string, requests []exampleRequest) {
	root := t.TempDir()
	home := filepath.Join(root, "home", "user")
	t.Setenv("HOME", home)
	for _, k := range []string{"OPENCLAW_CONFIG_PATH", "OPENCLAW_STATE_DIR", "OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	// The secrets the examples document, where they document them.
	t.Setenv("CLAWGATE_TOKEN_CI", randToken(t, 32))
	t.Setenv("OPENCLAW_GATEWAY_TOKEN", randToken(t, 32))
	t.Setenv("TS_AUTHKEY", "tskey-auth-"+randToken(t, 16))
	t.Setenv("TELEGRAM_WEBHOOK_SECRET", randToken(t, 24))
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	mkdir(t, filepath.Join(root, "etc", "clawgate"))
	writeFile(t, filepath.Join(root, "etc", "clawgate", "idp-jwks.json"),
		fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":%q},{"kty":"RSA","kid":"k2","n":%q,"e":"AQAB"}]}`,
			b64(pub), b64(rsaKey.N.Bytes())))

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tn := tailnettest.New(t)
	cf := userEdits(string(data), tn.ControlURL, root, "off")
	caddyfile := filepath.Join(root, "Caddyfile")
	writeFile(t, caddyfile, cf)

	// Every gateway config the example names, as onboarding writes it, in
	// a state dir of its own; `setup --write` then makes it agree.
	cfgJSON, err := loadCaddyJSON(caddyfile, "")
	if err != nil {
		t.Fatal(err)
	}
	gateways, err := setupGateways(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(home, ".openclaw"))
	for name, g := range gateways {
		lo := gatewayLoadOptionsOrDefault(t, name, g.block, home)
		mkdir(t, filepath.Dir(lo))
		writeFile(t, lo, fmt.Sprintf(`// written by openclaw onboard
{
  gateway: {
    mode: "local",
    port: %d,
    bind: "loopback",
    auth: { mode: "token", token: %q },
  },
  channels: {
    %s
  },
}
`, upstreamPort(g), randToken(t, 24), strings.ReplaceAll(channels, "tail1234.ts.net", tailnettest.Domain)))
	}
	var out bytes.Buffer
	if code, err := runSetupCommand(&out, setupOptions{config: caddyfile, write: true}); code == 2 || err != nil {
		t.Fatalf("setup --write = %d, %v\n%s", code, err, out.String())
	}
	t.Logf("setup --write:\n%s", out.String())

	backends := map[string]*fixedBackend{}
	for _, r := range requests {
		if backends[r.upstream] == nil {
			backends[r.upstream] = listenFixed(t, r.upstream)
		}
	}
	nodes := map[string]*tailnettest.Node{}
	var funnel *funnelFixture
	var granted <-chan struct{}
	for i, r := range requests {
		if r.funnel != nil && funnel == nil {
			// The tailnet's side of the example's step 2: gw may use Funnel,
			// and a relay node plays Tailscale's Funnel ingress.
			granted = grantFunnel(tn, "gw")
			funnel = &funnelFixture{tn: tn, relay: tn.NewNode(t, "relay", tailnettest.WithCapMap(tailcfg.PeerCapMap{tailcfg.PeerCapabilityIngress: nil}))}
		}
		if r.funnel != nil || nodes[r.from] != nil {
			continue
		}
		host := fmt.Sprintf("client-%d", i)
		switch kind, v, _ := strings.Cut(r.from, ":"); kind {
		case "login":
			nodes[r.from] = tn.NewNode(t, host, tailnettest.WithLogin(v))
		case "tag":
			nodes[r.from] = tn.NewNode(t, host, tailnettest.WithTags(r.from))
		default:
			nodes[r.from] = tn.NewNode(t, r.from)
		}
	}

	startCaddyTailnet(t, cf)
	if funnel != nil {
		<-granted
		tn.WaitPeer(t, funnel.relay, "gw")
		funnel.awaitFunnel(t)
	}
	var roots *x509.CertPool
	if strings.Contains(cf, "tls internal") {
		app, err := caddy.ActiveContext().App("pki")
		if err != nil {
			t.Fatalf("Caddy's pki app: %v", err)
		}
		ca := app.(*caddypki.PKI).CAs[caddypki.DefaultCAID]
		if ca == nil {
			t.Fatal("Caddy's pki app has no local CA")
		}
		roots = x509.NewCertPool()
		roots.AddCert(ca.RootCertificate())
	}

	for _, r := range requests {
		url := strings.ReplaceAll(r.url, "tail1234.ts.net", tailnettest.Domain)
		if r.funnel != nil {
			be := backends[r.upstream]
			path := url[strings.Index(url, ":8443")+len(":8443"):]
			status, body := funnel.post(t, path, r.funnel, http.Header{"X-Telegram-Bot-Api-Secret-Token": {os.Getenv("TELEGRAM_WEBHOOK_SECRET")}})
			be.mu.Lock()
			n := len(be.seen)
			be.mu.Unlock()
			if status != http.StatusOK || body != "gateway at "+r.upstream || n != 1 {
				t.Errorf("POST %s through Funnel = %d %q, %d request(s) at the gateway; want 200 from the gateway at %s", url, status, body, n, r.upstream)
			}
			continue
		}
		from := nodes[r.from]
		site, _, _ := strings.Cut(strings.SplitN(url, "//", 2)[1], ".")
		if host, service, ok := strings.Cut(r.service, "/"); ok {
			// The tailnet's side: it approves the host, and the client
			// accepts the route to the Service's address.
			waitNodeUp(t, host)
			tn.ApproveService(t, host, service)
			from.AcceptRoutes(t)
			tn.WaitService(t, from, service)
			site = host
		}
		tn.WaitPeer(t, from, site)
		c := from.HTTPClient()
		if tr, ok := c.Transport.(*http.Transport); ok && roots != nil {
			tr = tr.Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: roots}
			c.Transport = tr
		}
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/json")
		if r.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+os.Getenv(r.bearer))
		}
		be := backends[r.upstream]
		be.mu.Lock()
		before := len(be.seen)
		be.mu.Unlock()
		var status int
		var body string
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s GET %s: %v", r.from, url, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status, body = resp.StatusCode, string(b)
			// The gate's first audit may still be running.
			if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.CloseIdleConnections()
		if status != http.StatusOK || body != "gateway at "+r.upstream {
			t.Errorf("%s GET %s = %d %q; want 200 from the gateway at %s", r.from, url, status, body, r.upstream)
			continue
		}
		be.mu.Lock()
		got := be.seen[before:]
		be.mu.Unlock()
		if len(got) != 1 || got[0].Get("X-Forwarded-User") != r.user {
			t.Errorf("%s GET %s: the gateway saw %v; want one request from %s", r.from, url, got, r.user)
		}
	}
}

// gatewayLoadOptionsOrDefault is the OpenClaw config a gateway's clawgate
// block names, else OpenClaw's default under home.
func gatewayLoadOptionsOrDefault(t *testing.T, name string, gc *GatewayConfig, home string) string {
	t.Helper()
	if gc == nil || gc.Config == "" {
		return filepath.Join(home, ".openclaw", "openclaw.json")
	}
	lo, err := gatewayLoadOptions(name, gc)
	if err != nil {
		t.Fatal(err)
	}
	return lo.ConfigPath
}

func upstreamPort(g *setupGateway) int {
	if g.in.Upstream != 0 {
		return g.in.Upstream
	}
	for _, gd := range g.in.Guards {
		if gd.Port != 0 {
			return gd.Port
		}
	}
	return 18789
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
