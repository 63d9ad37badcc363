package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"tailscale.com/tailcfg"

	"github.com/clawgate/clawgate/caddymodule/internal/browsertest"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// The real Control UI of the real OpenClaw gateway, loaded by a real
// headless Chromium through clawgate over the in-process tailnet.
//
// The browser reaches clawgate as a tailnet device does: Chromium resolves
// the site's tailnet name (--host-resolver-rules) to a loopback forwarder
// that dials through a tailnet client node, so clawgate sees that node's
// address and identity. The site is HTTPS with a certificate from Caddy's
// own internal CA (`tls internal`, the test control server issues no node
// certificates); Chromium accepts chains from that CA's keys alone
// (--ignore-certificate-errors-spki-list), so the page is a secure context
// on its real https://<node>.<tailnet>.ts.net origin. The node-certificate
// path itself is not exercised here.
func TestControlUIBrowser(t *testing.T) {
	suites.SkipShort(t, suites.Browser)
	chromium := browsertest.Chromium(t)
	openclawtest.Require(t)
	begin := time.Now()
	f := newBrowserFixture(t, false)

	// alice's tab stays open across the subtests, as a person's would.
	alice := f.browserAs(t, chromium, f.alice, 443)
	t.Run("alice sees the Control UI connected", func(t *testing.T) { testBrowserAlice(t, f, alice) })
	t.Run("bob gets clawgate's denial page", func(t *testing.T) { testBrowserBob(t, f, chromium) })
	t.Run("canvas: alice's page shows a canvas document through clawgate, bob is refused, no log holds the token", func(t *testing.T) { testBrowserCanvas(t, f, alice, chromium) })
	t.Run("an insecure openclaw.json disconnects the live UI until fixed", func(t *testing.T) { testBrowserGate(t, f, alice) })
	t.Run("a new device waits for clawgate's approval, then connects without OpenClaw's", func(t *testing.T) { testBrowserPairing(t, f, chromium) })
	t.Logf("TestControlUIBrowser took %v", time.Since(begin).Round(100*time.Millisecond))
}

// browserSite is the site's tailnet name; the browser's URL carries it.
var browserSite = "gw." + tailnettest.Domain

const (
	browserGate       = "openclaw-ui"     // pairing required, alice's laptop approved by the tailnet policy
	browserPairedGate = "openclaw-paired" // the same gateway, pairing required, approved by hand
	// browserDeviceCap is the application capability the tailnet policy
	// grants alice's laptop, which browserGate's pairing auto-approves.
	browserDeviceCap  = "example.com/cap/openclaw-browser"
	browserPairedPort = 8443
)

// browserFixture is the real gateway, Caddy with clawgate serving HTTPS on
// the tailnet node gw, and Chromium's way in for alice and bob.
type browserFixture struct {
	gw         *openclawtest.Gateway
	tn         *tailnettest.Tailnet
	alice, bob *tailnettest.Node
	tablet     *tailnettest.Node // alice's second device, for the site approved by hand
	spki       []string          // the keys of Caddy's internal CA, for Chromium
	siteURL    string            // https://gw.<tailnet>, devices approved by the tailnet policy
	pairedURL  string            // https://gw.<tailnet>:8443, devices approved by hand
	admin      string            // Caddy's admin endpoint, for `caddy clawgate devices`
	// baselineURL, when asked for, is a plain Caddy reverse_proxy to the
	// same gateway on 127.0.0.1, setting alice's identity headers itself:
	// the page without clawgate and the tailnet, for comparison.
	baselineURL string
	helloCanvas string // the canvas surface URL in alice's first hello-ok
	// canvasMarker is the text of the canvas document the gateway holds.
	canvasMarker string
	// accessLog and caddyLog are the site's access log and Caddy's own log
	// (clawgate's included), both through the capability log filter; empty
	// with the baseline, which measures without them.
	accessLog, caddyLog string
}

// browserCanvasDoc is the path of the test's canvas document under a canvas
// surface URL.
const browserCanvasDoc = "/__openclaw__/canvas/documents/cv_clawgate/index.html"

// newBrowserFixture starts the gateway, the tailnet and Caddy; with baseline
// Caddy also serves baselineURL.
func newBrowserFixture(t testing.TB, baseline bool) *browserFixture {
	t.Helper()
	f := &browserFixture{
		siteURL:   "https://" + browserSite,
		pairedURL: "https://" + browserSite + ":" + strconv.Itoa(browserPairedPort),
		admin:     fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	origins := []string{f.siteURL, f.pairedURL}
	baselineSite := ""
	if baseline {
		f.baselineURL = fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
		origins = append(origins, f.baselineURL)
	}
	port := openclawtest.FreePort(t)
	cfg, err := json.Marshal(map[string]any{
		"gateway": map[string]any{
			"mode":           "local",
			"bind":           "loopback",
			"port":           port,
			"trustedProxies": []string{"127.0.0.1", "::1"},
			"auth": map[string]any{
				"mode": "trusted-proxy",
				"trustedProxy": map[string]any{
					"userHeader":      "x-forwarded-user",
					"requiredHeaders": []string{"x-forwarded-proto", "x-forwarded-host"},
					"allowUsers":      []string{ocAlice},
					"allowLoopback":   true,
					// A browser presents a device identity and would otherwise
					// wait on OpenClaw's own manual pairing. Both sites have
					// clawgate's pairing, so a device is approved once.
					"deviceAutoApprove": map[string]any{"enabled": true, "scopes": []string{"operator.read", "operator.write"}},
				},
				// OpenClaw grants alice admin too, so what she ends up with
				// shows clawgate's cap.
				"identityScopes": map[string]any{ocAlice: []string{"operator.read", "operator.write", "operator.admin"}},
			},
			"controlUi": map[string]any{"allowedOrigins": origins},
		},
		"logging": map[string]any{"file": filepath.Join(t.TempDir(), "openclaw.log")},
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f.gw = openclawtest.Start(t, cfg, port)
	t.Logf("OpenClaw gateway ready in %v", time.Since(start).Round(100*time.Millisecond))
	// A canvas document, where OpenClaw's canvas tool would write one.
	f.canvasMarker = "canvas through clawgate " + randToken(t, 8)
	doc := filepath.Join(f.gw.StateDir(), "canvas", "documents", "cv_clawgate")
	if err := os.MkdirAll(doc, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(doc, "index.html"), []byte("<!doctype html><title>canvas</title><p>"+f.canvasMarker+"</p>\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	f.tn = tailnettest.New(t)
	gw := f.tn.Config(t, "gw")
	f.alice = f.tn.NewNode(t, "alice-laptop", tailnettest.WithLogin(ocAlice),
		tailnettest.WithCapMap(tailcfg.PeerCapMap{browserDeviceCap: {tailcfg.RawMessage(`{}`)}}))
	f.bob = f.tn.NewNode(t, "bob-phone", tailnettest.WithLogin(ocBob))
	f.tablet = f.tn.NewNode(t, "alice-tablet", tailnettest.WithLogin(ocAlice))
	storage := t.TempDir()
	protocols := ""
	if baseline {
		// Over the tailnet clawgate serves no HTTP/3; nor does the baseline,
		// so both pages load over the same protocols.
		protocols = "servers {\n\t\tprotocols h1 h2\n\t}"
		// The headers clawgate would send for alice, her tailnet address
		// included: OpenClaw refuses a proxied client it cannot attribute.
		baselineSite = fmt.Sprintf(`
%s {
	bind 127.0.0.1
	tls internal
	reverse_proxy 127.0.0.1:%d {
		header_up X-Forwarded-For %s
		header_up X-Forwarded-User %s
		header_up X-Openclaw-Scopes operator.read,operator.write
	}
}
`, f.baselineURL, port, f.alice.IPs[0], ocAlice)
	}
	logging, siteLog := "", ""
	if !baseline {
		// The test reads the logs the config writes.
		t.Setenv("CLAWGATE_TEST_CADDY_LOGS", "1")
		dir := t.TempDir()
		f.accessLog, f.caddyLog = filepath.Join(dir, "access.log"), filepath.Join(dir, "caddy.log")
		filter := fmt.Sprintf("format filter {\n\t\t\trequest>uri regexp `%[1]s` /__openclaw__/REDACTED\n\t\t\trequest>headers>Referer regexp `%[1]s` /__openclaw__/REDACTED\n\t\t}", capabilityURIPattern)
		logging = fmt.Sprintf("log {\n\t\toutput file %s\n\t\tlevel DEBUG\n\t\t%s\n\t}", f.caddyLog, filter)
		siteLog = fmt.Sprintf("log {\n\t\toutput file %s\n\t\t%s\n\t}", f.accessLog, filter)
	}
	t.Cleanup(func() { waitNodesClosed(t) }) // runs after startCaddy's Stop
	// The gateway blocks and the sites share one list of values.
	args := []any{browserGate, f.gw.ConfigPath(), f.gw.StateDir(), port, f.siteURL,
		browserPairedGate, f.pairedURL, ocAlice, baselineSite, logging, siteLog, browserDeviceCap}
	gateways := fmt.Sprintf(`gateway %[1]s {
	config %[2]s
	state_dir %[3]s
	upstream 127.0.0.1:%[4]d
	origins %[5]s
	pairing required {
		auto_approve cap:%[12]s
	}
}
gateway %[6]s {
	config %[2]s
	state_dir %[3]s
	upstream 127.0.0.1:%[4]d
	origins %[7]s
	pairing required
}`, args...)
	global := globalOptions{nodes: []tsnet.Config{gw}, admin: f.admin, tlsInternal: true, clawgate: gateways,
		extra: "auto_https disable_redirects\nstorage file_system " + storage + "\n" + protocols + "\n" + logging}
	startCaddy(t, global.String()+fmt.Sprintf(`%[5]s {
	bind clawgate/gw
	tls internal
	%[11]s
	clawgate 127.0.0.1:%[4]d {
		gateway %[1]s
		capability_urls
		allow user:%[8]s scopes operator.read,operator.write
	}
}
%[7]s {
	bind clawgate/gw
	tls internal
	clawgate 127.0.0.1:%[4]d {
		gateway %[6]s
		allow user:%[8]s scopes operator.read,operator.write
	}
}
%[9]s`, args...))
	waitNodeUp(t, "gw")
	for _, n := range []*tailnettest.Node{f.alice, f.bob, f.tablet} {
		f.tn.WaitPeer(t, n, "gw")
	}
	// Caddy writes its internal CA as it provisions the site.
	for _, name := range []string{"root.crt", "intermediate.crt"} {
		h, err := browsertest.SPKIHash(filepath.Join(storage, "pki", "authorities", "local", name))
		if err != nil {
			t.Fatalf("Caddy's internal CA: %v", err)
		}
		f.spki = append(f.spki, h)
	}
	t.Logf("tailnet and Caddy up in %v", time.Since(start).Round(10*time.Millisecond))
	return f
}

// browserAs starts Chromium as a device of node's: the site's name resolves
// to a forwarder that carries the browser's connections over the tailnet
// from node to clawgate's port.
func (f *browserFixture) browserAs(t testing.TB, chromium string, node *tailnettest.Node, port int) *browsertest.Browser {
	t.Helper()
	fw, err := node.Forward(net.JoinHostPort(browserSite, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	return browsertest.New(t, chromium, browsertest.Options{
		HostRules: "MAP " + browserSite + " " + fw.Addr(),
		TrustSPKI: f.spki,
	})
}

// helloOK is the part of the gateway's hello-ok the test reads.
type helloOK struct {
	Type    string `json:"type"`
	OK      bool   `json:"ok"`
	Payload struct {
		Type string `json:"type"`
		Auth struct {
			Role   string   `json:"role"`
			Scopes []string `json:"scopes"`
		} `json:"auth"`
		Server struct {
			ConnID string `json:"connId"`
		} `json:"server"`
		PluginSurfaceURLs map[string]string `json:"pluginSurfaceUrls"`
	} `json:"payload"`
}

func testBrowserAlice(t *testing.T, f *browserFixture, b *browsertest.Browser) {
	b.ReportOnFailure(t)
	navStart := time.Now()
	if _, err := browsertest.Run(b, 60*time.Second, chromedp.Navigate(f.siteURL+"/")); err != nil {
		t.Fatalf("navigating to %s: %v", f.siteURL, err)
	}
	secure, err := browsertest.Run(b, 10*time.Second, chromedp.Evaluate[bool](`window.isSecureContext && location.protocol === "https:"`))
	if err != nil || !secure {
		t.Fatalf("the page is not a secure https context (%v, %v)", secure, err)
	}
	frame, _, err := b.WaitFrame(60*time.Second, 0, func(fr browsertest.Frame) bool {
		return !fr.Sent && strings.Contains(fr.Data, `"hello-ok"`)
	})
	if err != nil {
		t.Fatalf("the page's WebSocket never got hello-ok: %v", err)
	}
	t.Logf("navigation to hello-ok: %v", time.Since(navStart).Round(10*time.Millisecond))
	var hello helloOK
	if err := json.Unmarshal([]byte(frame.Data), &hello); err != nil {
		t.Fatalf("hello-ok does not decode: %v: %.500s", err, frame.Data)
	}
	if got, want := sorted(hello.Payload.Auth.Scopes), []string{"operator.read", "operator.write"}; !slices.Equal(got, want) {
		t.Errorf("the page's hello-ok scopes = %q, want %q (admin capped away by the rule)", got, want)
	}
	if !strings.HasPrefix(frame.Socket, "wss://"+browserSite) {
		t.Errorf("the page's WebSocket is %q, want wss://%s…", frame.Socket, browserSite)
	}
	// What she sees: her name on the sidebar's identity card, and its
	// status saying Connected.
	waitUIStatus(t, b, 30*time.Second, "alice", "Connected")
	// The gateway tied the page's connection to alice.
	waitGatewayLog(t, f.gw, "conn="+hello.Payload.Server.ConnID+" user="+ocAlice)

	f.helloCanvas = hello.Payload.PluginSurfaceURLs["canvas"]
}

// testBrowserCanvas loads a canvas document through the canvas surface URL
// alice's UI holds, in a frame of her page as the UI shows a canvas: the URL
// is on the site's own HTTPS origin (no mixed content), clawgate passes it
// to the gateway (the site's guard has capability_urls), and the document
// shows. bob's browser gets clawgate's refusal for the same URL, and neither
// Caddy's logs nor clawgate's nor the gateway's record the token.
func testBrowserCanvas(t *testing.T, f *browserFixture, alice *browsertest.Browser, chromium string) {
	alice.ReportOnFailure(t)
	canvas := uiCanvasURL(t, alice)
	prefix := f.siteURL + "/__openclaw__/cap/"
	if !strings.HasPrefix(canvas, prefix) || strings.Contains(strings.TrimPrefix(canvas, prefix), "/") {
		t.Fatalf("the UI's canvas surface URL = %q, want %s<token>", redactCap(canvas), prefix)
	}
	token := strings.TrimPrefix(canvas, prefix)
	page := canvas + browserCanvasDoc
	gwBefore := len(readGatewayLog(t, f.gw))

	show := fmt.Sprintf(`new Promise(resolve => {
	const frame = document.createElement("iframe");
	frame.id = "clawgate-canvas";
	frame.onload = () => {
		try { resolve(frame.contentDocument.body.innerText); } catch (e) { resolve("unreadable frame: " + e); }
	};
	frame.src = %q;
	document.body.appendChild(frame);
})`, page)
	got, err := browsertest.Run(alice, 30*time.Second, chromedp.Evaluate[string](show, chromedp.EvalAwaitPromise))
	if err != nil || !strings.Contains(got, f.canvasMarker) {
		t.Errorf("alice's page shows %.300q (%v) in the canvas frame, want the document's %q", redactCap(got), err, f.canvasMarker)
	}
	if _, err := browsertest.Run(alice, 10*time.Second, chromedp.Evaluate[bool](`document.getElementById("clawgate-canvas").remove(), true`)); err != nil {
		t.Errorf("removing the canvas frame: %v", err)
	}
	// The token in hello-ok was replaced by the UI's refresh; OpenClaw no
	// longer honours it. What it answers is OpenClaw's own business.
	if f.helloCanvas != "" && f.helloCanvas != canvas {
		stale, _ := browsertest.Run(alice, 20*time.Second, chromedp.Evaluate[string](
			fmt.Sprintf(`fetch(%q).then(r => String(r.status))`, f.helloCanvas+browserCanvasDoc), chromedp.EvalAwaitPromise))
		t.Logf("hello-ok's canvas URL, replaced by the UI's refresh, now answers %s", stale)
	}

	bob := f.browserAs(t, chromium, f.bob, 443)
	if _, err := browsertest.Run(bob, 60*time.Second, chromedp.Navigate(page)); err != nil {
		t.Fatalf("navigating bob to the canvas URL: %v", err)
	}
	if _, err := bob.WaitText(30*time.Second, "403 Forbidden", "clawgate_forbidden"); err != nil {
		t.Errorf("bob's page for the canvas URL: %v; want clawgate's denial", err)
	}
	if text, _ := bob.Text(); strings.Contains(text, f.canvasMarker) {
		t.Error("bob's page shows the canvas document")
	}
	gwLog := readGatewayLog(t, f.gw)[gwBefore:]
	if strings.Contains(gwLog, ocBob) {
		t.Errorf("gw.log mentions bob after his canvas request:\n%s", tailString(gwLog, 20))
	}

	// Both requests are in the logs, redacted: alice's in the access log,
	// bob's denial in clawgate's log.
	redacted := "/__openclaw__/cap/REDACTED" + browserCanvasDoc
	caddyLog := waitFileContains(t, f.caddyLog, `"path":"`+redacted+`"`)
	access := waitFileContains(t, f.accessLog, `"uri":"/__openclaw__/REDACTED"`)
	for name, data := range map[string]string{"Caddy's access log": access, "Caddy's and clawgate's log": caddyLog, "gw.log": readGatewayLog(t, f.gw)} {
		if strings.Contains(data, token) {
			t.Errorf("%s records the capability token", name)
		}
		if tok := strings.TrimPrefix(f.helloCanvas, prefix); tok != "" && strings.Contains(data, tok) {
			t.Errorf("%s records hello-ok's capability token", name)
		}
	}
}

// uiCanvasURL returns the canvas surface URL the page holds now. Right after
// hello-ok the Control UI asks for a fresh canvas capability
// (plugin.surface.refresh) and OpenClaw honours only the new token from
// then on, so the URL is the one in the latest answer that carries one.
func uiCanvasURL(t testing.TB, b *browsertest.Browser) string {
	t.Helper()
	if _, _, err := b.WaitFrame(30*time.Second, 0, func(fr browsertest.Frame) bool {
		return !fr.Sent && strings.Contains(fr.Data, `"surface":"canvas"`) && strings.Contains(fr.Data, `"pluginSurfaceUrls"`)
	}); err != nil {
		t.Fatalf("the page never got a refreshed canvas surface URL: %v", err)
	}
	url := ""
	for _, fr := range b.Frames() {
		if fr.Sent || !strings.Contains(fr.Data, `"pluginSurfaceUrls"`) {
			continue
		}
		var m struct {
			Payload struct {
				PluginSurfaceURLs map[string]string `json:"pluginSurfaceUrls"`
			} `json:"payload"`
		}
		if json.Unmarshal([]byte(fr.Data), &m) == nil && m.Payload.PluginSurfaceURLs["canvas"] != "" {
			url = m.Payload.PluginSurfaceURLs["canvas"]
		}
	}
	return url
}

// waitFileContains waits until the file at path contains substr and returns
// its content.
func waitFileContains(t testing.TB, path, substr string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), substr) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q; it ends:\n%s", filepath.Base(path), substr, tailString(redactCap(string(b)), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// redactCap hides the token of a capability URL, for messages.
func redactCap(u string) string {
	return regexp.MustCompile(`/__openclaw__/cap/[^/?#]+`).ReplaceAllString(u, "/__openclaw__/cap/<token>")
}

// uiStatus returns the name on the Control UI's identity card and the
// connection status next to it ("" when the page has none yet).
func uiStatus(b *browsertest.Browser) (name, status string, err error) {
	names, err := b.DeepText(".sidebar-identity-card__name")
	if err != nil {
		return "", "", err
	}
	statuses, err := b.DeepText(".sidebar-footer-bar > [role=status]")
	if err != nil {
		return "", "", err
	}
	if len(names) > 0 {
		name = names[0]
	}
	if len(statuses) > 0 {
		status = statuses[0]
	}
	return name, status, nil
}

// waitUIStatus waits until the identity card shows name with status.
func waitUIStatus(t testing.TB, b *browsertest.Browser, timeout time.Duration, name, status string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		gotName, gotStatus, err := uiStatus(b)
		if err == nil && gotName == name && gotStatus == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the Control UI's identity card shows %q %q (%v), want %q %q", timeout, gotName, gotStatus, err, name, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testBrowserGate makes the gateway's openclaw.json insecure while alice's
// tab is connected: clawgate closes the page's WebSocket and the UI shows
// it is disconnected; restoring the file lets the tab reconnect by itself.
func testBrowserGate(t *testing.T, f *browserFixture, b *browsertest.Browser) {
	b.ReportOnFailure(t)
	waitUIStatus(t, b, 30*time.Second, "alice", "Connected")
	path := f.gw.ConfigPath()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := json.Unmarshal(orig, &tree); err != nil {
		t.Fatal(err)
	}
	tree["tools"] = map[string]any{"elevated": map[string]any{
		"enabled":   true,
		"allowFrom": map[string]any{"whatsapp": []string{"*"}},
	}}
	insecure, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writeFileAtomic(t, path, orig) })
	framesBefore := len(b.Frames())
	writeFileAtomic(t, path, insecure)
	// The UI says so on the identity card and in a banner, and keeps
	// retrying; clawgate refuses each retry while the config is insecure.
	waitUIStatus(t, b, 30*time.Second, "alice", "Reconnecting…")
	if _, err := b.WaitText(10*time.Second, "Connection to the Gateway was interrupted"); err != nil {
		t.Error(err)
	}
	for _, s := range b.Sockets() {
		if !s.Closed && s.Status == 101 {
			t.Errorf("the page's WebSocket %s is still open after the insecure edit", s.URL)
		}
	}
	if _, _, err := b.WaitFrame(time.Second, framesBefore, func(fr browsertest.Frame) bool {
		return !fr.Sent && strings.Contains(fr.Data, `"hello-ok"`)
	}); err == nil {
		t.Errorf("the page got a hello-ok while the config was insecure")
	}

	framesBefore = len(b.Frames())
	writeFileAtomic(t, path, orig)
	if _, _, err := b.WaitFrame(60*time.Second, framesBefore, func(fr browsertest.Frame) bool {
		return !fr.Sent && strings.Contains(fr.Data, `"hello-ok"`)
	}); err != nil {
		t.Fatalf("after the fix the page never reconnected: %v", err)
	}
	waitUIStatus(t, b, 30*time.Second, "alice", "Connected")
}

func testBrowserBob(t *testing.T, f *browserFixture, chromium string) {
	logBefore := len(readGatewayLog(t, f.gw))
	b := f.browserAs(t, chromium, f.bob, 443)
	if _, err := browsertest.Run(b, 60*time.Second, chromedp.Navigate(f.siteURL+"/")); err != nil {
		t.Fatalf("navigating to %s: %v", f.siteURL, err)
	}
	text, err := b.WaitText(30*time.Second, "403 Forbidden", "clawgate_forbidden")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bob's page: %.400s", text)
	if len(b.Sockets()) != 0 {
		t.Errorf("bob's page opened WebSockets %+v, want none", b.Sockets())
	}
	after := readGatewayLog(t, f.gw)[logBefore:]
	bobIP := regexp.MustCompile(regexp.QuoteMeta(f.bob.IPs[0].String()) + `([^0-9]|$)`)
	if strings.Contains(after, ocBob) || bobIP.MatchString(after) {
		t.Errorf("gw.log mentions bob (%s, %s):\n%s", ocBob, f.bob.IPs[0], tailString(after, 20))
	}
}

// waitNodeUp waits until clawgate's node name has its tailnet addresses.
func waitNodeUp(t testing.TB, name string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p := nodeByName(name); p != nil && len(p.tailnetIPs()) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clawgate node %s never came up", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testBrowserPairing opens the Control UI from a new device of alice's on
// the site whose gateway requires device pairing: clawgate's pairing page
// shows a code; `caddy clawgate devices approve <code>` lets the same tab
// in (the page refreshes itself) and the UI connects with no approval asked
// of OpenClaw (its deviceAutoApprove pairs the browser); `devices revoke`
// closes the live UI.
func testBrowserPairing(t *testing.T, f *browserFixture, chromium string) {
	b := f.browserAs(t, chromium, f.tablet, browserPairedPort)
	b.ReportOnFailure(t)
	if _, err := browsertest.Run(b, 60*time.Second, chromedp.Navigate(f.pairedURL+"/")); err != nil {
		t.Fatalf("navigating to %s: %v", f.pairedURL, err)
	}
	text, err := b.WaitText(30*time.Second, "This device is waiting for approval", "caddy clawgate devices approve")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`caddy clawgate devices approve ([A-Z0-9]{4}-[A-Z0-9]{4})`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("the pairing page shows no code: %.500s", text)
	}
	code := m[1]
	if len(b.Sockets()) != 0 {
		t.Errorf("the pairing page opened WebSockets %+v, want none", b.Sockets())
	}
	out := f.devices(t, "approve", code)
	if !strings.Contains(out, "approved alice-tablet") {
		t.Errorf("devices approve %s said %q", code, out)
	}
	// The test does not navigate again: the pairing page reloads itself.
	frame, _, err := b.WaitFrame(60*time.Second, 0, func(fr browsertest.Frame) bool {
		return !fr.Sent && strings.Contains(fr.Data, `"hello-ok"`)
	})
	if err != nil {
		t.Fatalf("after the approval the tab never connected: %v", err)
	}
	var hello helloOK
	if err := json.Unmarshal([]byte(frame.Data), &hello); err != nil {
		t.Fatalf("hello-ok does not decode: %v", err)
	}
	if got, want := sorted(hello.Payload.Auth.Scopes), []string{"operator.read", "operator.write"}; !slices.Equal(got, want) {
		t.Errorf("hello-ok scopes = %q, want %q", got, want)
	}
	waitUIStatus(t, b, 30*time.Second, "alice", "Connected")

	out = f.devices(t, "revoke", stableID(t, f.tablet))
	if !strings.Contains(out, "revoked alice-tablet") || !strings.Contains(out, "closed 1 open WebSocket") {
		t.Errorf("devices revoke said %q", out)
	}
	waitUIStatus(t, b, 30*time.Second, "alice", "Reconnecting…")

	// OpenClaw's own record of the browser (its deviceAutoApprove pairing)
	// outlives clawgate's revoke: the edge, not OpenClaw, now keeps the
	// device out, and approving it again at the edge is all it takes.
	connect, _, err := b.WaitFrame(time.Second, 0, func(fr browsertest.Frame) bool {
		return fr.Sent && strings.Contains(fr.Data, `"method":"connect"`)
	})
	if err != nil {
		t.Fatalf("the page never sent connect: %v", err)
	}
	var req struct {
		Params struct {
			Device struct {
				ID string `json:"id"`
			} `json:"device"`
		} `json:"params"`
	}
	if err := json.Unmarshal([]byte(connect.Data), &req); err != nil || req.Params.Device.ID == "" {
		t.Fatalf("the page's connect carries no device id (%v): %.300s", err, connect.Data)
	}
	if where := filesHolding(t, f.gw.StateDir(), req.Params.Device.ID); len(where) == 0 {
		t.Errorf("OpenClaw's state holds no record of the browser's device %s", req.Params.Device.ID)
	} else {
		t.Logf("after the revoke OpenClaw still holds the browser's device %s in %q", req.Params.Device.ID, where)
	}
}

// filesHolding returns the files under dir (relative) that contain s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), s) {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	return out
}

// devices runs `caddy clawgate devices <args>` against the fixture's Caddy.
func (f *browserFixture) devices(t *testing.T, args ...string) string {
	t.Helper()
	cmd := newDevicesCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--address", f.admin))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("caddy clawgate devices %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	t.Logf("caddy clawgate devices %s: %s", strings.Join(args, " "), strings.TrimSpace(out.String()))
	return out.String()
}
