package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clawgate/clawgate/caddymodule/internal/browsertest"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
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
	if testing.Short() {
		t.Skip("starts the real OpenClaw gateway and Chromium; skipped under -short")
	}
	chromium := browsertest.Chromium(t)
	openclawtest.Require(t)
	begin := time.Now()
	f := newBrowserFixture(t)

	// alice's tab stays open across the subtests, as a person's would.
	alice := f.browserAs(t, chromium, f.alice)
	t.Run("alice sees the Control UI connected", func(t *testing.T) { testBrowserAlice(t, f, alice) })
	t.Run("bob gets clawgate's denial page", func(t *testing.T) { testBrowserBob(t, f, chromium) })
	t.Run("an insecure openclaw.json disconnects the live UI until fixed", func(t *testing.T) { testBrowserGate(t, f, alice) })
	t.Logf("TestControlUIBrowser took %v", time.Since(begin).Round(100*time.Millisecond))
}

// browserSite is the site's tailnet name; the browser's URL carries it.
var browserSite = "gw." + tailnettest.Domain

const browserGate = "openclaw-ui"

// browserFixture is the real gateway, Caddy with clawgate serving HTTPS on
// the tailnet node gw, and Chromium's way in for alice and bob.
type browserFixture struct {
	gw         *openclawtest.Gateway
	tn         *tailnettest.Tailnet
	alice, bob *tailnettest.Node
	spki       []string // the keys of Caddy's internal CA, for Chromium
	siteURL    string   // https://gw.<tailnet>
}

func newBrowserFixture(t *testing.T) *browserFixture {
	t.Helper()
	f := &browserFixture{siteURL: "https://" + browserSite}
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
					// wait on OpenClaw's own manual pairing.
					"deviceAutoApprove": map[string]any{"enabled": true, "scopes": []string{"operator.read", "operator.write"}},
				},
				// OpenClaw grants alice admin too, so what she ends up with
				// shows clawgate's cap.
				"identityScopes": map[string]any{ocAlice: []string{"operator.read", "operator.write", "operator.admin"}},
			},
			"controlUi": map[string]any{"allowedOrigins": []string{f.siteURL}},
		},
		"logging": map[string]any{"file": filepath.Join(t.TempDir(), "openclaw.log")},
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f.gw = openclawtest.Start(t, cfg, port)
	t.Logf("OpenClaw gateway ready in %v", time.Since(start).Round(100*time.Millisecond))

	start = time.Now()
	f.tn = tailnettest.New(t)
	gw := f.tn.Config(t, "gw")
	f.alice = f.tn.NewNode(t, "alice-laptop", tailnettest.WithLogin(ocAlice))
	f.bob = f.tn.NewNode(t, "bob-phone", tailnettest.WithLogin(ocBob))
	storage := t.TempDir()
	startCaddyTailnet(t, fmt.Sprintf(`{
	admin off
	skip_install_trust
	auto_https disable_redirects
	storage file_system %s
	clawgate {
		node gw {
			control_url %s
			state_dir %s
			ephemeral
		}
		gateway %s {
			config %s
			state_dir %s
			upstream 127.0.0.1:%d
			origins %s
		}
	}
}
%s {
	bind clawgate/gw
	tls internal
	clawgate 127.0.0.1:%d {
		gateway %s
		allow user:%s scopes operator.read,operator.write
	}
}
`, storage, f.tn.ControlURL, gw.StateDir, browserGate, f.gw.ConfigPath(), f.gw.StateDir(), port, f.siteURL,
		f.siteURL, port, browserGate, ocAlice))
	waitNodeUp(t, "gw")
	f.tn.WaitPeer(t, f.alice, "gw")
	f.tn.WaitPeer(t, f.bob, "gw")
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
// from node to clawgate's port 443.
func (f *browserFixture) browserAs(t *testing.T, chromium string, node *tailnettest.Node) *browsertest.Browser {
	t.Helper()
	fw, err := node.Forward(net.JoinHostPort(browserSite, "443"))
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
	b := f.browserAs(t, chromium, f.bob)
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
