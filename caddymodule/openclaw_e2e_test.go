package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// The real OpenClaw gateway behind clawgate, reached over the in-process
// tailnet (issue #7). Each subtest starts exactly one gateway (15–30 s and
// about 1 GB each), one after the other, so at most one runs at a time.
//
// What these tests learnt about OpenClaw 2026.9.6, and rely on:
//   - hello-ok does not name the user (auth has method, role, scopes and an
//     opaque recoveryScope); `users.self` returns the profile OpenClaw made
//     for the trusted-proxy identity, with the login in profile.emails.
//   - x-openclaw-scopes caps the scopes of a device-less trusted-proxy
//     WebSocket client as it does for HTTP; identityScopes grants them.
//   - On HTTP, an absent x-openclaw-scopes means the default operator set
//     (admin included) while a present but empty one means no scopes, so
//     clawgate must always send it.
//   - In token mode a device-less client that comes through a proxy (not
//     direct-local) gets hello-ok with no scopes at all.
func TestOpenClawE2E(t *testing.T) {
	openclawtest.Require(t)
	begin := time.Now()
	t.Run("trusted-proxy", testOpenClawTrustedProxy)
	t.Run("token", testOpenClawToken)
	t.Logf("TestOpenClawE2E took %v", time.Since(begin).Round(100*time.Millisecond))
}

// testGateWithRealGateway (insecure edit of openclaw.json → 503 within a
// second and the open WebSocket closed; restored → traffic resumes) is not
// written yet: it needs the audit gate the lead is building. It belongs here,
// run against the trusted-proxy fixture of testOpenClawTrustedProxy.

const (
	ocSitePort = 18080
	ocAlice    = "alice@example.com"
	ocBob      = "bob@example.com"
	ocCIUser   = "token:ci" // the identity clawgate forwards for the ci token
)

var ocSiteURL = fmt.Sprintf("http://gw.%s:%d", tailnettest.Domain, ocSitePort)

// ocFixture is a real OpenClaw gateway on loopback, a real Caddy with
// clawgate on the tailnet node gw in front of it, and tailnet clients.
type ocFixture struct {
	gw             *openclawtest.Gateway
	tn             *tailnettest.Tailnet
	alice, bob, ci *tailnettest.Node
	tokCI          string
}

// newOCFixture starts the gateway from gatewayConfig (its "port" and
// "logging.file" are filled in here), then the tailnet and Caddy with
// guard as the body of the shortcut `clawgate 127.0.0.1:<port> { ... }`.
func newOCFixture(t *testing.T, gatewayConfig map[string]any, guard string) *ocFixture {
	t.Helper()
	f := &ocFixture{tokCI: randToken(t, 32)}
	t.Setenv("CG_TEST_TOKEN_CI", f.tokCI)

	port := openclawtest.FreePort(t)
	gatewayConfig["gateway"].(map[string]any)["port"] = port
	// Without logging.file the gateway's JSON log goes to /tmp/openclaw,
	// shared with every other gateway on the machine.
	gatewayConfig["logging"] = map[string]any{"file": filepath.Join(t.TempDir(), "openclaw.log")}
	cfg, err := json.Marshal(gatewayConfig)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f.gw = openclawtest.Start(t, cfg, port)
	t.Logf("OpenClaw gateway ready (/healthz and /readyz) in %v", time.Since(start).Round(100*time.Millisecond))

	start = time.Now()
	f.tn = tailnettest.New(t)
	gw := f.tn.Config(t, "gw")
	f.alice = f.tn.NewNode(t, "alice-laptop", tailnettest.WithLogin(ocAlice))
	f.bob = f.tn.NewNode(t, "bob-phone", tailnettest.WithLogin(ocBob))
	f.ci = f.tn.NewNode(t, "ci-bot", tailnettest.WithTags("tag:ci"))
	startCaddyTailnet(t, fmt.Sprintf(`{
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
	clawgate 127.0.0.1:%d {
%s
	}
}
`, f.tn.ControlURL, gw.StateDir, ocSitePort, port, guard))
	(&tailnetFixture{tn: f.tn, alice: f.alice, bob: f.bob, ci: f.ci}).waitGW(t)
	t.Logf("tailnet with 4 nodes and Caddy up in %v", time.Since(start).Round(10*time.Millisecond))
	return f
}

func testOpenClawTrustedProxy(t *testing.T) {
	f := newOCFixture(t, map[string]any{"gateway": map[string]any{
		"mode":           "local",
		"bind":           "loopback",
		"trustedProxies": []string{"127.0.0.1", "::1"},
		"auth": map[string]any{
			"mode": "trusted-proxy",
			"trustedProxy": map[string]any{
				"userHeader":      "x-forwarded-user",
				"requiredHeaders": []string{"x-forwarded-proto", "x-forwarded-host"},
				// token:ci is let in so that the gateway, not its allowlist,
				// judges the empty scopes of the rule that matches it.
				"allowUsers":    []string{ocAlice, ocCIUser},
				"allowLoopback": true,
			},
			// OpenClaw grants alice admin too, so the scopes she ends up with
			// show clawgate's cap (x-openclaw-scopes), not OpenClaw's grant.
			"identityScopes": map[string]any{ocAlice: []string{"operator.read", "operator.write", "operator.admin"}},
		},
		"controlUi": map[string]any{"allowedOrigins": []string{ocSiteURL}},
	}}, `		gateway openclaw-tp
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow user:alice@example.com scopes operator.read,operator.write
		allow tag:ci token:ci`)
	asCI := http.Header{"Authorization": {"Bearer " + f.tokCI}}
	all := []string{"operator.read", "operator.write", "operator.admin"}
	capped := []string{"operator.read", "operator.write"}

	t.Run("alice gets hello-ok as herself with capped scopes", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.alice, nil)
		hello := oc.connect(ctx, all, "")
		if hello.Auth.Method != "trusted-proxy" || hello.Auth.Role != "operator" {
			t.Errorf("hello-ok auth method %q role %q, want trusted-proxy operator", hello.Auth.Method, hello.Auth.Role)
		}
		if got := sorted(hello.Auth.Scopes); !slices.Equal(got, capped) {
			t.Errorf("hello-ok scopes = %q, want %q (operator.admin asked for and capped away)", got, capped)
		}
		if got := oc.self(ctx); !slices.Equal(got, []string{ocAlice}) {
			t.Errorf("users.self emails = %q, want [%s]", got, ocAlice)
		}
		// status needs operator.read.
		var status struct {
			RuntimeVersion string `json:"runtimeVersion"`
		}
		if e := oc.call(ctx, "status", nil, &status); e != nil {
			t.Fatalf("status: %v", e)
		}
		if status.RuntimeVersion == "" {
			t.Errorf("status has no runtimeVersion")
		}
		// exec.approvals.* needs operator.admin, which the rule did not grant
		// (config.get, unlike the docs say, needs only operator.read).
		e := oc.call(ctx, "exec.approvals.get", nil, nil)
		if e == nil || e.Code != "FORBIDDEN" || e.Details.Code != "MISSING_SCOPE" || e.Details.MissingScope != "operator.admin" {
			t.Errorf("exec.approvals.get = %v, want FORBIDDEN MISSING_SCOPE operator.admin", e)
		}
	})

	t.Run("alice spoofing bob and admin is still alice, capped", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.alice, http.Header{
			"X-Forwarded-User":     {ocBob},
			"X-Openclaw-Scopes":    {"operator.admin"},
			"Tailscale-User-Login": {ocBob},
			"X-Forwarded-For":      {"203.0.113.9"},
		})
		hello := oc.connect(ctx, all, "")
		if got := sorted(hello.Auth.Scopes); !slices.Equal(got, capped) {
			t.Errorf("hello-ok scopes = %q, want %q", got, capped)
		}
		if got := oc.self(ctx); !slices.Equal(got, []string{ocAlice}) {
			t.Errorf("users.self emails = %q, want [%s]", got, ocAlice)
		}
	})

	t.Run("origin checks see the tailnet host", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.alice, http.Header{"Origin": {ocSiteURL}})
		oc.connect(ctx, []string{"operator.read"}, "")

		oc = dialOC(t, ctx, f.alice, http.Header{"Origin": {"http://evil.example"}})
		if e := oc.connectErr(ctx, []string{"operator.read"}, ""); e.Details.Code != "CONTROL_UI_ORIGIN_NOT_ALLOWED" {
			t.Errorf("connect from a foreign Origin = %v, want CONTROL_UI_ORIGIN_NOT_ALLOWED", e)
		}
		// The gateway logs the refusal with the client it attributed: alice's
		// tailnet address, from clawgate's X-Forwarded-For.
		waitGatewayLog(t, f.gw, "fwd="+f.alice.IPs[0].String()+" origin=http://evil.example")
	})

	bobHeaders := []struct {
		name string
		h    http.Header
	}{
		{"bob", nil},
		{"bob spoofing alice", http.Header{
			"X-Forwarded-User":     {ocAlice},
			"X-Openclaw-Scopes":    {"operator.admin"},
			"Tailscale-User-Login": {ocAlice},
			"X-Forwarded-For":      {f.alice.IPs[0].String()},
		}},
	}
	for _, tt := range bobHeaders {
		t.Run(tt.name+" is denied at the edge", func(t *testing.T) {
			ctx := testCtx(t)
			c, resp, err := websocket.Dial(ctx, wsURL(), &websocket.DialOptions{HTTPClient: f.bob.HTTPClient(), HTTPHeader: tt.h})
			if err == nil {
				c.CloseNow()
				t.Fatal("upgrade succeeded, want 403 from clawgate")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("upgrade: %v, response %v; want 403", err, resp)
			}
			body, _ := io.ReadAll(resp.Body)
			if got := errorType(t, string(body)); got != "clawgate_forbidden" {
				t.Errorf("upgrade denial type = %q, want clawgate_forbidden", got)
			}
			status, body2 := ocPost(t, f.bob, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, tt.h)
			if status != http.StatusForbidden || errorType(t, body2) != "clawgate_forbidden" {
				t.Errorf("POST /tools/invoke = %d %s, want 403 clawgate_forbidden", status, body2)
			}
		})
	}

	t.Run("the gateway never saw bob", func(t *testing.T) {
		// A connect of alice's after bob's attempts: once it is in gw.log,
		// anything bob's attempts caused at the gateway would be too.
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.alice, nil)
		hello := oc.connect(ctx, []string{"operator.read"}, "")
		oc.close()
		marker := "conn=" + hello.Server.ConnID + " user=" + ocAlice
		log := waitGatewayLog(t, f.gw, marker)
		bobIP := regexp.MustCompile(regexp.QuoteMeta(f.bob.IPs[0].String()) + `([^0-9]|$)`)
		if strings.Contains(log, ocBob) || bobIP.MatchString(log) {
			t.Errorf("gw.log mentions bob (%s, %s):\n%s", ocBob, f.bob.IPs[0], tailString(log, 20))
		}
	})

	t.Run("tools/invoke as alice", func(t *testing.T) {
		status, body := ocPost(t, f.alice, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, nil)
		var res struct {
			OK     bool `json:"ok"`
			Result *struct {
				Details map[string]any `json:"details"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			t.Fatalf("POST /tools/invoke = %d, body not JSON: %v: %q", status, err, body)
		}
		if status != http.StatusOK || !res.OK || res.Result == nil {
			t.Fatalf("POST /tools/invoke = %d %s, want 200 ok:true with a result", status, body)
		}
	})

	// The rule for the ci token grants no scopes, so clawgate sends an empty
	// x-openclaw-scopes, which OpenClaw must read as "none", not as the
	// operator defaults (admin included) it gives a request without one.
	t.Run("tools/invoke under a rule with no scopes", func(t *testing.T) {
		status, body := ocPost(t, f.ci, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, asCI)
		t.Logf("OpenClaw answered %d %s", status, strings.TrimSpace(body))
		var res struct {
			OK    bool     `json:"ok"`
			Error *ocError `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			t.Fatalf("POST /tools/invoke = %d, body not JSON: %v: %q", status, err, body)
		}
		if status != http.StatusForbidden || res.OK || res.Error == nil ||
			res.Error.Type != "forbidden" || res.Error.Details.Code != "MISSING_SCOPE" || res.Error.Details.MissingScope != "operator.write" {
			t.Errorf("POST /tools/invoke = %d %s, want 403 from OpenClaw: forbidden MISSING_SCOPE operator.write", status, body)
		}
	})

	t.Run("websocket under a rule with no scopes", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.ci, asCI)
		hello := oc.connect(ctx, all, "")
		if len(hello.Auth.Scopes) != 0 {
			t.Errorf("hello-ok scopes = %q, want none", hello.Auth.Scopes)
		}
		e := oc.call(ctx, "status", nil, nil)
		if e == nil || e.Details.Code != "MISSING_SCOPE" || e.Details.MissingScope != "operator.read" {
			t.Errorf("status = %v, want MISSING_SCOPE operator.read", e)
		}
		// health needs no scope: the connection itself works.
		if e := oc.call(ctx, "health", nil, nil); e != nil {
			t.Errorf("health: %v", e)
		}
	})

	t.Run("the gateway is reachable only through clawgate", func(t *testing.T) {
		// On loopback it listens (so a refused tailnet dial below means
		// something) ...
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.gw.Port)), 2*time.Second)
		if err != nil {
			t.Fatalf("the gateway does not listen on loopback: %v", err)
		}
		c.Close()
		// ... but not on the tailnet, from any node.
		gwIP := nodeByName("gw").tailnetIPs()[0]
		for _, n := range []*tailnettest.Node{f.alice, f.bob, f.ci} {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			c, err := n.Dial(ctx, "tcp", net.JoinHostPort(gwIP.String(), strconv.Itoa(f.gw.Port)))
			cancel()
			if err == nil {
				c.Close()
				t.Errorf("%s reached the gateway at %s:%d over the tailnet", n.Hostname, gwIP, f.gw.Port)
			}
		}
	})
}

func testOpenClawToken(t *testing.T) {
	token := randToken(t, 32)
	f := newOCFixture(t, map[string]any{"gateway": map[string]any{
		"mode":           "local",
		"bind":           "loopback",
		"trustedProxies": []string{"127.0.0.1", "::1"},
		"auth":           map[string]any{"mode": "token", "token": token},
	}}, `		gateway openclaw-token
		allow user:alice@example.com scopes operator.read,operator.write`)

	t.Run("a browserless client with the token in connect gets hello-ok", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.alice, nil)
		hello := oc.connect(ctx, []string{"operator.read", "operator.write", "operator.admin"}, token)
		if hello.Auth.Method != "token" || hello.Auth.Role != "operator" {
			t.Errorf("hello-ok auth method %q role %q, want token operator", hello.Auth.Method, hello.Auth.Role)
		}
		// OpenClaw clears the scopes of a device-less client that is not
		// direct-local; through the edge the shared token is no admin pass.
		t.Logf("hello-ok scopes through clawgate: %q", hello.Auth.Scopes)
		if slices.Contains(hello.Auth.Scopes, "operator.admin") {
			t.Errorf("hello-ok scopes = %q: a device-less client through the edge got operator.admin", hello.Auth.Scopes)
		}
		if e := oc.call(ctx, "health", nil, nil); e != nil {
			t.Errorf("health: %v", e)
		}
	})

	t.Run("a wrong token in connect is refused by the gateway", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.alice, nil)
		if e := oc.connectErr(ctx, []string{"operator.read"}, randToken(t, 32)); e.Details.Code != "AUTH_TOKEN_MISMATCH" {
			t.Errorf("connect with a wrong token = %v, want AUTH_TOKEN_MISMATCH", e)
		}
	})

	t.Run("the gateway token over HTTP passes the edge with alice's identity", func(t *testing.T) {
		bearer := http.Header{"Authorization": {"Bearer " + token}}
		status, body := ocPost(t, f.alice, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, bearer)
		if status != http.StatusOK || !strings.Contains(body, `"ok":true`) {
			t.Errorf("alice: POST /tools/invoke = %d %s, want 200 ok:true", status, body)
		}
		status, body = ocPost(t, f.bob, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, bearer)
		if status != http.StatusForbidden || errorType(t, body) != "clawgate_forbidden" {
			t.Errorf("bob with the gateway token: POST /tools/invoke = %d %s, want 403 clawgate_forbidden", status, body)
		}
	})
}

// ocError is an OpenClaw error, as in WebSocket responses and HTTP bodies.
type ocError struct {
	Code    string `json:"code"`
	Type    string `json:"type"` // HTTP bodies
	Message string `json:"message"`
	Details struct {
		Code         string `json:"code"`
		MissingScope string `json:"missingScope"`
	} `json:"details"`
}

func (e *ocError) String() string {
	if e == nil {
		return "ok"
	}
	return fmt.Sprintf("%s%s %s: %s", e.Code, e.Type, e.Details.Code, e.Message)
}

// ocHello is the part of hello-ok the tests read.
type ocHello struct {
	Type     string `json:"type"`
	Protocol int    `json:"protocol"`
	Server   struct {
		Version string `json:"version"`
		ConnID  string `json:"connId"`
	} `json:"server"`
	Auth struct {
		Method string   `json:"method"`
		Role   string   `json:"role"`
		Scopes []string `json:"scopes"`
	} `json:"auth"`
}

// ocClient speaks OpenClaw's gateway protocol over one WebSocket.
type ocClient struct {
	t    testing.TB
	c    *websocket.Conn
	next int
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wsURL() string { return "ws" + strings.TrimPrefix(ocSiteURL, "http") + "/" }

// dialOC opens a WebSocket to the gateway through clawgate from a tailnet node.
func dialOC(t testing.TB, ctx context.Context, from *tailnettest.Node, h http.Header) *ocClient {
	t.Helper()
	hc := from.HTTPClient()
	t.Cleanup(hc.CloseIdleConnections)
	c, resp, err := websocket.Dial(ctx, wsURL(), &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	if err != nil {
		var body []byte
		if resp != nil {
			body, _ = io.ReadAll(resp.Body)
		}
		t.Fatalf("%s: WebSocket upgrade through clawgate: %v %s", from.Hostname, err, body)
	}
	// hello-ok alone is about 20 KB; status and health answers grow with state.
	c.SetReadLimit(4 << 20)
	oc := &ocClient{t: t, c: c}
	t.Cleanup(oc.close)
	return oc
}

func (oc *ocClient) close() { oc.c.Close(websocket.StatusNormalClosure, "") }

// connect answers the server's connect.challenge with a connect request and
// returns hello-ok, failing the test if the gateway refuses.
func (oc *ocClient) connect(ctx context.Context, scopes []string, token string) *ocHello {
	oc.t.Helper()
	var hello ocHello
	if e := oc.handshake(ctx, scopes, token, &hello); e != nil {
		oc.t.Fatalf("connect refused: %v", e)
	}
	if hello.Type != "hello-ok" || hello.Protocol != 4 || hello.Server.ConnID == "" {
		oc.t.Fatalf("connect answered type %q protocol %d connId %q, want hello-ok, 4 and a connId", hello.Type, hello.Protocol, hello.Server.ConnID)
	}
	return &hello
}

// connectErr is connect for a handshake the gateway must refuse; it returns
// the refusal.
func (oc *ocClient) connectErr(ctx context.Context, scopes []string, token string) *ocError {
	oc.t.Helper()
	e := oc.handshake(ctx, scopes, token, nil)
	if e == nil {
		oc.t.Fatal("connect succeeded, want it refused")
	}
	return e
}

func (oc *ocClient) handshake(ctx context.Context, scopes []string, token string, hello *ocHello) *ocError {
	oc.t.Helper()
	var challenge struct {
		Type    string `json:"type"`
		Event   string `json:"event"`
		Payload struct {
			Nonce string `json:"nonce"`
		} `json:"payload"`
	}
	oc.read(ctx, &challenge)
	if challenge.Type != "event" || challenge.Event != "connect.challenge" || challenge.Payload.Nonce == "" {
		oc.t.Fatalf("first frame = %+v, want a connect.challenge event with a nonce", challenge)
	}
	params := map[string]any{
		"minProtocol": 4,
		"maxProtocol": 4,
		"client":      map[string]any{"id": "cli", "version": "0.0.1", "platform": "linux", "mode": "cli"},
		"role":        "operator",
		"scopes":      scopes,
		"caps":        []string{},
		"commands":    []string{},
		"permissions": map[string]any{},
	}
	if token != "" {
		params["auth"] = map[string]any{"token": token}
	}
	return oc.call(ctx, "connect", params, hello)
}

// call sends a request and waits for its response, skipping events; it
// decodes the payload into out (if not nil) and returns the error the
// gateway answered with, if any.
func (oc *ocClient) call(ctx context.Context, method string, params any, out any) *ocError {
	oc.t.Helper()
	oc.next++
	id := "r" + strconv.Itoa(oc.next)
	if params == nil {
		params = map[string]any{}
	}
	req, err := json.Marshal(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	if err != nil {
		oc.t.Fatal(err)
	}
	if err := oc.c.Write(ctx, websocket.MessageText, req); err != nil {
		oc.t.Fatalf("sending %s: %v", method, err)
	}
	for {
		var res struct {
			Type    string          `json:"type"`
			ID      string          `json:"id"`
			OK      bool            `json:"ok"`
			Payload json.RawMessage `json:"payload"`
			Error   *ocError        `json:"error"`
		}
		oc.read(ctx, &res)
		if res.Type != "res" || res.ID != id {
			continue // events (health, tick, ...) interleave freely
		}
		if !res.OK {
			if res.Error == nil {
				return &ocError{Code: "NO_ERROR_GIVEN"}
			}
			return res.Error
		}
		if out != nil {
			if err := json.Unmarshal(res.Payload, out); err != nil {
				oc.t.Fatalf("%s: decoding payload: %v", method, err)
			}
		}
		return nil
	}
}

func (oc *ocClient) read(ctx context.Context, v any) {
	oc.t.Helper()
	typ, msg, err := oc.c.Read(ctx)
	if err != nil {
		oc.t.Fatalf("reading a frame: %v", err)
	}
	if typ != websocket.MessageText {
		oc.t.Fatalf("got a %v frame, want text", typ)
	}
	if err := json.Unmarshal(msg, v); err != nil {
		oc.t.Fatalf("frame is not JSON: %v: %.300q", err, msg)
	}
}

// self returns the emails of the profile OpenClaw ties this connection to.
func (oc *ocClient) self(ctx context.Context) []string {
	oc.t.Helper()
	var res struct {
		Profile struct {
			Emails []string `json:"emails"`
		} `json:"profile"`
	}
	if e := oc.call(ctx, "users.self", nil, &res); e != nil {
		oc.t.Fatalf("users.self: %v", e)
	}
	return res.Profile.Emails
}

// ocPost POSTs a JSON body through clawgate from a tailnet node.
func ocPost(t testing.TB, from *tailnettest.Node, path, body string, h http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ocSiteURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	c := from.HTTPClient()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: POST %s: %v", from.Hostname, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s: POST %s: reading body: %v", from.Hostname, path, err)
	}
	return resp.StatusCode, string(b)
}

// waitGatewayLog waits until the gateway's gw.log contains substr and
// returns the log.
func waitGatewayLog(t testing.TB, gw *openclawtest.Gateway, substr string) string {
	t.Helper()
	path := filepath.Join(gw.Dir, "gw.log")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("reading gw.log: %v", err)
		}
		if strings.Contains(string(b), substr) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("gw.log never showed %q; last lines:\n%s", substr, tailString(string(b), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
