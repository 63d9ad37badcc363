package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
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

	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// The real OpenClaw gateway behind clawgate, reached over the in-process
// tailnet. Each subtest starts exactly one gateway (15–30 s and
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
//   - An atomic rewrite of openclaw.json that changes only tools.* is
//     hot-applied, no restart: "[reload] config hot reload applied (tools)"
//     about 0.7–0.9 s after the rename, which is after clawgate's gate has
//     already blocked the gateway (0.3–0.5 s here).
func TestOpenClawE2E(t *testing.T) {
	openclawtest.Require(t)
	begin := time.Now()
	t.Run("trusted-proxy", testOpenClawTrustedProxy)
	t.Run("token", testOpenClawToken)
	t.Logf("TestOpenClawE2E took %v", time.Since(begin).Round(100*time.Millisecond))
}

const (
	ocSitePort = 18080
	ocGateTP   = "openclaw-tp" // the trusted-proxy gateway, audited by clawgate's gate
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
// With gate set, the clawgate app audits the gateway's real openclaw.json
// and state dir under that gateway name, and the fixture fails unless the
// config as written passes the audit.
func newOCFixture(t *testing.T, gatewayConfig map[string]any, gate, guard string) *ocFixture {
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
	gateBlock := ""
	if gate != "" {
		gateBlock = fmt.Sprintf(`gateway %s {
	config %s
	state_dir %s
	upstream 127.0.0.1:%d
	origins %s
}`, gate, f.gw.ConfigPath(), f.gw.StateDir(), port, ocSiteURL)
	}
	startCaddyTailnet(t, globalOptions{nodes: []tsnet.Config{gw}, clawgate: gateBlock}.String()+fmt.Sprintf(`http://:%d {
	bind clawgate/gw
	clawgate 127.0.0.1:%d {
%s
	}
}
`, ocSitePort, port, guard))
	(&tailnetFixture{tn: f.tn, alice: f.alice, bob: f.bob, ci: f.ci}).waitGW(t)
	t.Logf("tailnet with 4 nodes and Caddy up in %v", time.Since(start).Round(10*time.Millisecond))
	if gate != "" {
		// The gate audits once at start, so its verdict is in already. Said
		// here, a config the gate refuses fails with the reasons rather than
		// as a puzzling 503 in whichever subtest comes first.
		if status, body := ocPost(t, f.alice, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, nil); status == http.StatusServiceUnavailable {
			t.Fatalf("the gateway's unmodified openclaw.json fails clawgate's gate: %s", body)
		}
	}
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
	}}, ocGateTP, `		gateway `+ocGateTP+`
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
		hello := connectOC(t, ctx, oc, all, "")
		if hello.Auth.Method != "trusted-proxy" || hello.Auth.Role != "operator" {
			t.Errorf("hello-ok auth method %q role %q, want trusted-proxy operator", hello.Auth.Method, hello.Auth.Role)
		}
		if got := sorted(hello.Auth.Scopes); !slices.Equal(got, capped) {
			t.Errorf("hello-ok scopes = %q, want %q (operator.admin asked for and capped away)", got, capped)
		}
		if got := selfOC(t, ctx, oc); !slices.Equal(got, []string{ocAlice}) {
			t.Errorf("users.self emails = %q, want [%s]", got, ocAlice)
		}
		// status needs operator.read.
		var status struct {
			RuntimeVersion string `json:"runtimeVersion"`
		}
		if e := callOC(t, ctx, oc, "status", nil, &status); e != nil {
			t.Fatalf("status: %v", e)
		}
		if status.RuntimeVersion == "" {
			t.Errorf("status has no runtimeVersion")
		}
		// exec.approvals.* needs operator.admin, which the rule did not grant
		// (config.get, unlike the docs say, needs only operator.read).
		e := callOC(t, ctx, oc, "exec.approvals.get", nil, nil)
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
		hello := connectOC(t, ctx, oc, all, "")
		if got := sorted(hello.Auth.Scopes); !slices.Equal(got, capped) {
			t.Errorf("hello-ok scopes = %q, want %q", got, capped)
		}
		if got := selfOC(t, ctx, oc); !slices.Equal(got, []string{ocAlice}) {
			t.Errorf("users.self emails = %q, want [%s]", got, ocAlice)
		}
	})

	t.Run("origin checks see the tailnet host", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.alice, http.Header{"Origin": {ocSiteURL}})
		connectOC(t, ctx, oc, []string{"operator.read"}, "")

		oc = dialOC(t, ctx, f.alice, http.Header{"Origin": {"http://evil.example"}})
		if e := refusedConnect(t, ctx, oc, []string{"operator.read"}, ""); e.Details.Code != "CONTROL_UI_ORIGIN_NOT_ALLOWED" {
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
			hc := f.bob.HTTPClient()
			defer hc.CloseIdleConnections()
			oc, err := openclawtest.Dial(ctx, hc, wsURL(), tt.h)
			if err == nil {
				oc.Close()
				t.Fatal("upgrade succeeded, want 403 from clawgate")
			}
			var ref *openclawtest.Refusal
			if !errors.As(err, &ref) || ref.Status != http.StatusForbidden {
				t.Fatalf("upgrade: %v; want 403", err)
			}
			if ref.Type != "clawgate_forbidden" {
				t.Errorf("upgrade denial type = %q, want clawgate_forbidden: %s", ref.Type, ref.Body)
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
		hello := connectOC(t, ctx, oc, []string{"operator.read"}, "")
		oc.Close()
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

	// The rule for the ci token grants no scopes, so clawgate sends the
	// x-openclaw-scopes value this gateway reads as "none", never an absent
	// header, which means the operator defaults (admin included).
	t.Run("tools/invoke under a rule with no scopes", func(t *testing.T) {
		status, body := ocPost(t, f.ci, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, asCI)
		t.Logf("OpenClaw answered %d %s", status, strings.TrimSpace(body))
		var res struct {
			OK    bool                `json:"ok"`
			Error *openclawtest.Error `json:"error"`
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
		hello := connectOC(t, ctx, oc, all, "")
		if len(hello.Auth.Scopes) != 0 {
			t.Errorf("hello-ok scopes = %q, want none", hello.Auth.Scopes)
		}
		e := callOC(t, ctx, oc, "status", nil, nil)
		if e == nil || e.Details.Code != "MISSING_SCOPE" || e.Details.MissingScope != "operator.read" {
			t.Errorf("status = %v, want MISSING_SCOPE operator.read", e)
		}
		// health needs no scope: the connection itself works.
		if e := callOC(t, ctx, oc, "health", nil, nil); e != nil {
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

	// Last: it edits the gateway's config, which the subtests above rely on.
	t.Run("an insecure openclaw.json closes the gateway until restored", func(t *testing.T) {
		testGateWithRealGateway(t, f)
	})
	t.Run("an openclaw.json OpenClaw refuses closes the gateway until restored", func(t *testing.T) {
		testInvalidConfigWithRealGateway(t, f)
	})
}

// gateInsecureCheck is what testGateWithRealGateway's edit should trip:
// tools.elevated.allowFrom.<provider> holding "*" lets anyone on that channel
// run elevated exec. OpenClaw accepts it (allowFrom is a free map of providers)
// and hot-applies "tools.*" without a restart, so the gateway keeps serving
// while clawgate blocks it.
const gateInsecureCheck = "tools.elevated.allowFrom.whatsapp.wildcard"

// gateWithin is how fast the gate must react to an edit: it promises a change
// is seen within a second (inotify reports the edit, or the fingerprint polled
// every 500 ms without it); the rest is slack for a busy 2-core machine.
const gateWithin = 1500 * time.Millisecond

// testGateWithRealGateway edits the real gateway's openclaw.json to an insecure
// setting while alice holds a WebSocket: clawgate closes it and answers 503
// with the reasons; restoring the original bytes lets her back in. The real
// `openclaw security audit` must report what clawgate blocked on as critical.
func testGateWithRealGateway(t *testing.T, f *ocFixture) {
	path := f.gw.ConfigPath()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := json.Unmarshal(orig, &tree); err != nil {
		t.Fatalf("the gateway's openclaw.json is not plain JSON: %v", err)
	}
	tree["tools"] = map[string]any{"elevated": map[string]any{
		"enabled":   true,
		"allowFrom": map[string]any{"whatsapp": []string{"*"}},
	}}
	insecure, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	// Whatever happens below, the gateway ends with the config it started with.
	t.Cleanup(func() { writeFileAtomic(t, path, orig) })
	logBefore := readGatewayLog(t, f.gw)

	ctx := testCtx(t)
	oc := dialOC(t, ctx, f.alice, nil)
	connectOC(t, ctx, oc, []string{"operator.read"}, "")
	wsClosed := make(chan time.Time, 1)
	go func() {
		oc.WaitClosed(ctx)
		wsClosed <- time.Now()
	}()

	edited := time.Now()
	writeFileAtomic(t, path, insecure)

	status, body, took := pollPost(t, f.alice, edited, http.StatusServiceUnavailable)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("%v after the insecure edit POST /tools/invoke still answers %d %s, want 503", gateWithin, status, body)
	}
	t.Logf("gate reaction: 503 after %v", took.Round(time.Millisecond))
	var denial struct {
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal([]byte(body), &denial); err != nil {
		t.Fatalf("503 body is not JSON: %v: %q", err, body)
	}
	if denial.Error.Type != "clawgate_audit_failed" {
		t.Errorf("503 error.type = %q, want clawgate_audit_failed", denial.Error.Type)
	}
	reasons := gateReasonIDs(denial.Error.Message)
	if !slices.Contains(reasons, gateInsecureCheck) {
		t.Errorf("503 reasons %q do not name %s: %s", reasons, gateInsecureCheck, body)
	}
	if strings.Contains(body, f.gw.Dir) {
		t.Errorf("503 body reveals the gateway's directory: %s", body)
	}

	select {
	case at := <-wsClosed:
		d := at.Sub(edited)
		t.Logf("gate reaction: alice's WebSocket closed after %v", d.Round(time.Millisecond))
		if d > gateWithin {
			t.Errorf("alice's WebSocket closed %v after the edit, want within %v", d, gateWithin)
		}
	case <-time.After(time.Until(edited.Add(gateWithin))):
		t.Fatalf("alice's WebSocket is still open %v after the insecure edit", gateWithin)
	}

	// A new WebSocket is refused at the edge too.
	hc := f.alice.HTTPClient()
	defer hc.CloseIdleConnections()
	if c, err := openclawtest.Dial(ctx, hc, wsURL(), nil); err == nil {
		c.Close()
		t.Errorf("a new WebSocket upgrade succeeded on a blocked gateway")
	} else if !openclawtest.IsRefusal(err, http.StatusServiceUnavailable) {
		t.Errorf("a new WebSocket upgrade on a blocked gateway: %v, want 503", err)
	}

	// OpenClaw took the edit as a hot reload: it neither refused the config
	// nor restarted, so what clawgate blocked was a live, running setting.
	const hotReload = "[reload] config hot reload applied (tools)"
	reload := waitGatewayLogAfter(t, f.gw, len(logBefore), hotReload)
	if strings.Contains(strings.ToLower(reload), "restart") || strings.Contains(strings.ToLower(reload), "invalid") {
		t.Errorf("gw.log after the edit speaks of a restart or an invalid config:\n%s", tailString(reload, 20))
	}
	for _, line := range strings.Split(reload, "\n") {
		if strings.Contains(line, "[reload]") {
			t.Logf("gw.log: %s", line)
		}
	}
	logBefore = readGatewayLog(t, f.gw)

	restored := time.Now()
	writeFileAtomic(t, path, orig)
	oc = dialUntilServed(t, ctx, f.alice, restored)
	if oc == nil {
		t.Fatalf("clawgate still refuses alice's WebSocket %v after openclaw.json was restored", gateWithin)
	}
	connectOC(t, ctx, oc, []string{"operator.read"}, "")
	if d := time.Since(restored); d > gateWithin {
		t.Errorf("alice's hello-ok came %v after the restore, want within %v", d, gateWithin)
	} else {
		t.Logf("gate recovery: alice's hello-ok %v after the restore", d.Round(time.Millisecond))
	}
	if status, body := ocPost(t, f.alice, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, nil); status != http.StatusOK {
		t.Errorf("POST /tools/invoke after the restore = %d %s, want 200", status, body)
	}
	// OpenClaw took the restore too: the gateway ends as it started.
	waitGatewayLogAfter(t, f.gw, len(logBefore), hotReload)

	// The oracle: the real CLI, on the same insecure config, must call every
	// OpenClaw check clawgate blocked on critical, and block-worthy findings
	// of the CLI must be among clawgate's reasons (but those expected of a
	// trusted proxy, which clawgate excuses once its own checks pass).
	dir := t.TempDir()
	cfgCopy := filepath.Join(dir, "openclaw.json")
	if err := os.WriteFile(cfgCopy, insecure, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := openclawtest.Audit(t, cfgCopy, filepath.Join(dir, "state"), nil)
	t.Logf("openclaw security audit on the insecure config took %v", time.Since(start).Round(100*time.Millisecond))
	var report struct {
		Findings []struct{ CheckID, Severity string }
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("decoding the audit JSON: %v", err)
	}
	critical := map[string]bool{}
	for _, fd := range report.Findings {
		if fd.Severity == "critical" {
			critical[fd.CheckID] = true
		}
	}
	t.Logf("openclaw security audit: critical %q; clawgate's reasons %q", slices.Sorted(maps.Keys(critical)), reasons)
	for _, id := range reasons {
		if !strings.HasPrefix(id, "clawgate.") && !critical[id] {
			t.Errorf("clawgate blocked on %s, which `openclaw security audit` does not report as critical (its critical: %q)", id, slices.Sorted(maps.Keys(critical)))
		}
	}
	for id := range critical {
		if id != "gateway.trusted_proxy_auth" && !slices.Contains(reasons, id) {
			t.Errorf("`openclaw security audit` reports %s as critical, but clawgate's reasons %q do not name it", id, reasons)
		}
	}
}

// writeFileAtomic replaces path with data (mode 0600) through a rename, as
// editors and config tools do, so no reader sees half a file.
func writeFileAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".clawgate-test.tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// pollPost POSTs /tools/invoke as from until it answers want or gateWithin has
// passed since since; it returns the last answer and when it came.
func pollPost(t testing.TB, from *tailnettest.Node, since time.Time, want int) (int, string, time.Duration) {
	t.Helper()
	for {
		status, body := ocPost(t, from, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, nil)
		took := time.Since(since)
		if status == want || took > gateWithin {
			return status, body, took
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialUntilServed retries alice's WebSocket upgrade until clawgate lets it
// through (a blocked gateway refuses it with 503) or gateWithin has passed
// since since; it returns the connection, or nil.
func dialUntilServed(t testing.TB, ctx context.Context, from *tailnettest.Node, since time.Time) *openclawtest.Client {
	t.Helper()
	for {
		hc := from.HTTPClient()
		oc, err := openclawtest.Dial(ctx, hc, wsURL(), nil)
		if err == nil {
			t.Cleanup(hc.CloseIdleConnections)
			t.Cleanup(oc.Close)
			return oc
		}
		hc.CloseIdleConnections()
		if !openclawtest.IsRefusal(err, http.StatusServiceUnavailable) {
			t.Fatalf("WebSocket upgrade after the restore: %v, want 503 or success", err)
		}
		if time.Since(since) > gateWithin {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gateReasonIDs returns the check IDs of a clawgate_audit_failed message,
// "...: <checkId>: <title>; <checkId>: <title>".
func gateReasonIDs(msg string) []string {
	_, list, ok := strings.Cut(msg, "fails its security audit: ")
	if !ok {
		return nil
	}
	var ids []string
	for _, r := range strings.Split(list, "; ") {
		if id, _, ok := strings.Cut(r, ": "); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

func readGatewayLog(t testing.TB, gw *openclawtest.Gateway) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(gw.Dir, "gw.log"))
	if err != nil {
		t.Fatalf("reading gw.log: %v", err)
	}
	return string(b)
}

// waitGatewayLogAfter waits until the part of gw.log past offset contains
// substr and returns that part.
func waitGatewayLogAfter(t testing.TB, gw *openclawtest.Gateway, offset int, substr string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		log := readGatewayLog(t, gw)[offset:]
		if strings.Contains(log, substr) {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("gw.log never showed %q after the edit; new lines:\n%s", substr, tailString(log, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testOpenClawToken(t *testing.T) {
	token := randToken(t, 32)
	f := newOCFixture(t, map[string]any{"gateway": map[string]any{
		"mode":           "local",
		"bind":           "loopback",
		"trustedProxies": []string{"127.0.0.1", "::1"},
		"auth":           map[string]any{"mode": "token", "token": token},
	}}, "", `		gateway openclaw-token
		allow user:alice@example.com scopes operator.read,operator.write`)

	t.Run("a browserless client with the token in connect gets hello-ok", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.alice, nil)
		hello := connectOC(t, ctx, oc, []string{"operator.read", "operator.write", "operator.admin"}, token)
		if hello.Auth.Method != "token" || hello.Auth.Role != "operator" {
			t.Errorf("hello-ok auth method %q role %q, want token operator", hello.Auth.Method, hello.Auth.Role)
		}
		// OpenClaw clears the scopes of a device-less client that is not
		// direct-local; through the edge the shared token is no admin pass.
		t.Logf("hello-ok scopes through clawgate: %q", hello.Auth.Scopes)
		if slices.Contains(hello.Auth.Scopes, "operator.admin") {
			t.Errorf("hello-ok scopes = %q: a device-less client through the edge got operator.admin", hello.Auth.Scopes)
		}
		if e := callOC(t, ctx, oc, "health", nil, nil); e != nil {
			t.Errorf("health: %v", e)
		}
	})

	t.Run("a wrong token in connect is refused by the gateway", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, f.alice, nil)
		if e := refusedConnect(t, ctx, oc, []string{"operator.read"}, randToken(t, 32)); e.Details.Code != "AUTH_TOKEN_MISMATCH" {
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

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wsURL() string { return "ws" + strings.TrimPrefix(ocSiteURL, "http") + "/" }

// dialOC opens a WebSocket to the gateway through clawgate from a tailnet
// node; it is closed when the test ends.
func dialOC(t testing.TB, ctx context.Context, from *tailnettest.Node, h http.Header) *openclawtest.Client {
	t.Helper()
	hc := from.HTTPClient()
	t.Cleanup(hc.CloseIdleConnections)
	oc, err := openclawtest.Dial(ctx, hc, wsURL(), h)
	if err != nil {
		var ref *openclawtest.Refusal
		if errors.As(err, &ref) {
			t.Fatalf("%s: WebSocket upgrade through clawgate: %v: %s", from.Hostname, err, ref.Body)
		}
		t.Fatalf("%s: WebSocket upgrade through clawgate: %v", from.Hostname, err)
	}
	t.Cleanup(oc.Close)
	return oc
}

// connectOC completes the gateway's handshake and returns hello-ok, failing
// the test if the gateway refuses.
func connectOC(t testing.TB, ctx context.Context, oc *openclawtest.Client, scopes []string, token string) *openclawtest.Hello {
	t.Helper()
	hello, err := oc.Connect(ctx, scopes, token)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return hello
}

// refusedConnect is a handshake the gateway must refuse; it returns the
// refusal.
func refusedConnect(t testing.TB, ctx context.Context, oc *openclawtest.Client, scopes []string, token string) *openclawtest.Error {
	t.Helper()
	hello, err := oc.Connect(ctx, scopes, token)
	var e *openclawtest.Error
	if !errors.As(err, &e) {
		t.Fatalf("connect = %+v, %v; want the gateway to refuse it", hello, err)
	}
	return e
}

// callOC makes a request and returns the gateway's refusal, or nil when it
// answered ok; anything else (a broken connection, a payload that does not
// decode into out) fails the test.
func callOC(t testing.TB, ctx context.Context, oc *openclawtest.Client, method string, params, out any) *openclawtest.Error {
	t.Helper()
	err := oc.Call(ctx, method, params, out)
	var e *openclawtest.Error
	if err != nil && !errors.As(err, &e) {
		t.Fatalf("%s: %v", method, err)
	}
	return e
}

// selfOC returns the emails of the profile OpenClaw ties the connection to.
func selfOC(t testing.TB, ctx context.Context, oc *openclawtest.Client) []string {
	t.Helper()
	emails, err := oc.Self(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return emails
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
