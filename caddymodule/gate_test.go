package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A trusted-proxy config that passes the audit behind clawgate: the only
// critical finding is gateway.trusted_proxy_auth, expected by design once
// clawgate's consistency checks pass.
const goodGatewayConfig = `{
  // JSON5, as OpenClaw reads it
  gateway: {
    mode: "local", bind: "loopback", port: 18789,
    trustedProxies: ["127.0.0.1", "::1"],
    auth: { mode: "trusted-proxy",
      trustedProxy: { userHeader: "x-forwarded-user", requiredHeaders: ["x-forwarded-proto", "x-forwarded-host"],
        allowUsers: ["ci-bot"], allowLoopback: true } },
  },
}`

// insecureGatewayConfig binds beyond loopback with no auth.
const insecureGatewayConfig = `{"gateway":{"mode":"local","bind":"lan","auth":{"mode":"none"}}}`

type gateFixture struct {
	*guardFixture
	cfgPath, stateDir string
	admin             string
}

func newGateFixture(t *testing.T) *gateFixture {
	dir := t.TempDir()
	f := &gateFixture{guardFixture: &guardFixture{be: newBackend(t)}, stateDir: filepath.Join(dir, "state")}
	if err := os.Mkdir(f.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	f.cfgPath = filepath.Join(f.stateDir, "openclaw.json")
	f.write(t, goodGatewayConfig)
	f.tokCI = randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", f.tokCI)
	port := freePort(t)
	f.url = "http://127.0.0.1:" + itoa(port)
	f.admin = "127.0.0.1:" + itoa(freePort(t))
	startCaddy(t, fmt.Sprintf(`{
	admin %s
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
	clawgate {
		gateway home {
			config %s
			state_dir %s
			upstream 127.0.0.1:18789
		}
	}
}
http://127.0.0.1:%d {
	clawgate %s {
		gateway home
		token ci {
			env CG_TEST_TOKEN_CI
			user ci-bot
		}
		allow token:ci scopes operator.read
	}
}`, f.admin, f.cfgPath, f.stateDir, port, f.be.addr()))
	waitHTTP(t, f.url)
	return f
}

func (f *gateFixture) write(t testing.TB, content string) {
	t.Helper()
	tmp := f.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.cfgPath); err != nil {
		t.Fatal(err)
	}
}

// waitStatus polls until the guarded route answers want, within 1.5 s (the gate
// promises a change is seen within a second), and returns the last body.
func (f *gateFixture) waitStatus(t testing.TB, want int) string {
	t.Helper()
	deadline := time.Now().Add(1500 * time.Millisecond)
	for {
		resp, body := f.do(t, f.url, reqOpts{bearer: f.tokCI})
		if resp.StatusCode == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("status stayed %d (want %d) for 1.5 s: %s", resp.StatusCode, want, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGate(t *testing.T) {
	f := newGateFixture(t)
	f.waitStatus(t, 200)

	t.Run("insecure config blocks with reasons, fixed config serves", func(t *testing.T) {
		f.write(t, insecureGatewayConfig)
		body := f.waitStatus(t, 503)
		if got := errorType(t, body); got != "clawgate_audit_failed" {
			t.Errorf("error.type = %q", got)
		}
		for _, id := range []string{"gateway.bind_no_auth", "clawgate.bind"} {
			if !strings.Contains(body, id) {
				t.Errorf("503 body does not name %s: %s", id, body)
			}
		}
		if strings.Contains(body, f.stateDir) {
			t.Errorf("503 body reveals an absolute path: %s", body)
		}
		before := f.be.count()
		f.do(t, f.url, reqOpts{bearer: f.tokCI})
		if f.be.count() != before {
			t.Errorf("a blocked gateway received a request")
		}
		f.write(t, goodGatewayConfig)
		f.waitStatus(t, 200)
	})

	t.Run("a config OpenClaw's schema refuses blocks with its issue paths, then recovers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := wsDial(ctx, "ws"+strings.TrimPrefix(f.url, "http")+"/ws", http.Header{"Authorization": {"Bearer " + f.tokCI}, "X-Real-IP": {"203.0.113.7"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello ci-bot" {
			t.Fatalf("first frame %q, %v", msg, err)
		}
		readErr := make(chan error, 1)
		go func() {
			_, _, err := c.Read(ctx)
			readErr <- err
		}()
		// The good config with an unknown key, a wrong type holding a value
		// that must not leak, and a refinement OpenClaw checks in code.
		invalid := strings.Replace(goodGatewayConfig, `mode: "local", bind: "loopback", port: 18789,`,
			`mode: "local", bind: "loopback", port: "secret-port-value-1234", controlUi: { allowInsecureAuth: true },`, 1)
		invalid = strings.Replace(invalid, "  },\n}", `  }, agents: { defaults: { sandbox: { docker: { network: "host" } } } } }`, 1)
		f.write(t, invalid)
		body := f.waitStatus(t, 503)
		if got := errorType(t, body); got != "clawgate_config_invalid" {
			t.Errorf("error.type = %q, want clawgate_config_invalid: %s", got, body)
		}
		for _, p := range []string{"gateway.controlUi", "gateway.port", "agents.defaults.sandbox.docker.network"} {
			if !strings.Contains(body, p) {
				t.Errorf("503 body does not name %s: %s", p, body)
			}
		}
		for _, leak := range []string{"secret-port-value-1234", f.stateDir, "allowInsecureAuth"} {
			if strings.Contains(body, leak) {
				t.Errorf("503 body reveals %q: %s", leak, body)
			}
		}
		select {
		case err := <-readErr:
			if err == nil {
				t.Fatal("read succeeded on an invalid gateway's WebSocket")
			}
		case <-time.After(1500 * time.Millisecond):
			t.Fatal("the WebSocket stayed open 1.5 s after the config became invalid")
		}
		before := f.be.count()
		f.do(t, f.url, reqOpts{bearer: f.tokCI})
		if f.be.count() != before {
			t.Errorf("a gateway with an invalid config received a request")
		}
		f.write(t, goodGatewayConfig)
		f.waitStatus(t, 200)
	})

	t.Run("permissions are audited", func(t *testing.T) {
		if err := os.Chmod(f.cfgPath, 0o644); err != nil {
			t.Fatal(err)
		}
		body := f.waitStatus(t, 503)
		if !strings.Contains(body, "fs.config.perms_world_readable") {
			t.Errorf("503 body: %s", body)
		}
		if err := os.Chmod(f.cfgPath, 0o600); err != nil {
			t.Fatal(err)
		}
		f.waitStatus(t, 200)
	})

	t.Run("unparsable and missing configs block", func(t *testing.T) {
		f.write(t, `{gateway: {bind: "loopback",`)
		body := f.waitStatus(t, 503)
		if !strings.Contains(body, "cannot be audited") || strings.Contains(body, f.stateDir) {
			t.Errorf("503 body: %s", body)
		}
		if err := os.Remove(f.cfgPath); err != nil {
			t.Fatal(err)
		}
		f.waitStatus(t, 503)
		f.write(t, goodGatewayConfig)
		f.waitStatus(t, 200)
	})

	t.Run("an open WebSocket is closed when the gateway becomes blocked", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := wsDial(ctx, "ws"+strings.TrimPrefix(f.url, "http")+"/ws", http.Header{"Authorization": {"Bearer " + f.tokCI}, "X-Real-IP": {"203.0.113.7"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello ci-bot" {
			t.Fatalf("first frame %q, %v", msg, err)
		}
		f.write(t, insecureGatewayConfig)
		readErr := make(chan error, 1)
		go func() {
			_, _, err := c.Read(ctx)
			readErr <- err
		}()
		select {
		case err := <-readErr:
			if err == nil {
				t.Fatal("read succeeded on a blocked gateway's WebSocket")
			}
		case <-time.After(1500 * time.Millisecond):
			t.Fatal("the WebSocket stayed open 1.5 s after the gateway was blocked")
		}
		f.write(t, goodGatewayConfig)
		f.waitStatus(t, 200)
	})

	t.Run("a flood of changes does not wedge the gate", func(t *testing.T) {
		for i := 0; i < 300; i++ {
			if i%2 == 0 {
				f.write(t, insecureGatewayConfig)
			} else {
				f.write(t, goodGatewayConfig)
			}
		}
		f.write(t, goodGatewayConfig)
		f.waitStatus(t, 200)
		f.write(t, insecureGatewayConfig)
		f.waitStatus(t, 503)
		f.write(t, goodGatewayConfig)
		f.waitStatus(t, 200)
	})

	t.Run("admin endpoint and metrics show the verdict", func(t *testing.T) {
		get := func(path string) string {
			resp, err := http.Get("http://" + f.admin + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
			}
			return string(b)
		}
		var gw map[string]struct {
			Blocked bool
			Reasons []string
			Summary struct{ Critical int }
		}
		if err := json.Unmarshal([]byte(get("/clawgate/gateways")), &gw); err != nil {
			t.Fatal(err)
		}
		if home, ok := gw["home"]; !ok || home.Blocked || home.Summary.Critical == 0 {
			t.Errorf("admin /clawgate/gateways: %+v", gw)
		}
		if m := get("/metrics"); !strings.Contains(m, `clawgate_gateway_blocked{gateway="home"} 0`) || !strings.Contains(m, `clawgate_gateway_audit_findings{gateway="home",severity="critical"}`) {
			t.Errorf("metrics lack the gate's gauges")
		}
		f.write(t, insecureGatewayConfig)
		f.waitStatus(t, 503)
		if m := get("/metrics"); !strings.Contains(m, `clawgate_gateway_blocked{gateway="home"} 1`) {
			t.Errorf("metrics do not show the gateway blocked")
		}
		f.write(t, goodGatewayConfig)
		f.waitStatus(t, 200)
	})

	t.Run("browsers get a page with the reasons", func(t *testing.T) {
		f.write(t, insecureGatewayConfig)
		f.waitStatus(t, 503)
		resp, body := f.do(t, f.url, reqOpts{bearer: f.tokCI, accept: "text/html"})
		if resp.StatusCode != 503 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "gateway.bind_no_auth") {
			t.Errorf("got %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		f.write(t, goodGatewayConfig)
		f.waitStatus(t, 200)
	})

}

// TestAwaitFirstAudit: a request that reaches a gateway before its first
// audit waits for the verdict instead of being refused for the audit that
// has not run; it stops waiting when its own context ends.
func TestAwaitFirstAudit(t *testing.T) {
	g := &gate{audited: make(chan struct{})}
	a := &App{gates: map[string]*gate{"home": g}}

	returned := make(chan struct{})
	go func() {
		a.awaitFirstAudit(context.Background(), "home")
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatal("returned before the first audit had a verdict")
	case <-time.After(100 * time.Millisecond):
	}
	close(g.audited)
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the first audit")
	}

	// A request that goes away stops waiting.
	g2 := &gate{audited: make(chan struct{})}
	a.gates["other"] = g2
	ctx, cancel := context.WithCancel(context.Background())
	returned = make(chan struct{})
	go func() {
		a.awaitFirstAudit(ctx, "other")
		close(returned)
	}()
	cancel()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the request's context ended")
	}

	// A gateway with no gate does not wait.
	a.awaitFirstAudit(context.Background(), "unknown")
}
