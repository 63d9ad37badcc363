package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// TestOpenClawReleaseLines runs the trusted-proxy group against the real
// gateway of every supported release line, one after the other (each takes
// about 1 GB): `caddy clawgate setup --write` turns an onboarding config into
// one that line starts on, and over the tailnet alice gets hello-ok with the
// scopes that line grants, bob is refused at the edge, spoofed identity and
// scope headers are ignored, and a rule that grants no scopes is refused by
// the gateway on POST /tools/invoke. What the test expects of each line comes
// from package release, so a wrong entry there fails here.
func TestOpenClawReleaseLines(t *testing.T) {
	suites.SkipShort(t, suites.ReleaseLines)
	var want []string
	for _, l := range release.Lines() {
		want = append(want, l.Version.String())
	}
	if got := openclawtest.Lines(t); !slices.Equal(got, want) {
		t.Fatalf("scripts/openclaw.sh lines = %q, package release knows %q: keep them in step", got, want)
	}
	for _, l := range release.Lines() {
		v := l.Version.String()
		t.Run(v, func(t *testing.T) {
			begin := time.Now()
			testReleaseLine(t, l)
			t.Logf("OpenClaw %s group took %v", v, time.Since(begin).Round(100*time.Millisecond))
		})
	}
}

func testReleaseLine(t *testing.T, line release.Line) {
	version := line.Version.String()
	openclawtest.RequireVersion(t, version)
	tokCI := randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", tokCI)
	port := openclawtest.FreePort(t)
	dir := t.TempDir()
	const gateName = "line"

	// The onboarding default: bound beyond loopback, a shared token. setup
	// must turn it into a trusted-proxy config this line starts on.
	ocConfig := filepath.Join(dir, "openclaw.json")
	start := fmt.Sprintf(`{
  // as onboarding leaves it
  gateway: { mode: "local", port: 18789, bind: "lan", auth: { mode: "token", token: %q } },
  logging: { file: %q },
}
`, randToken(t, 32), filepath.Join(dir, "openclaw.log"))
	if err := os.WriteFile(ocConfig, []byte(start), 0o600); err != nil {
		t.Fatal(err)
	}
	caddyfile := func(config, stateDir string, nodes ...tsnet.Config) string {
		gateway := fmt.Sprintf("gateway %s {\n\tconfig %s\n\tstate_dir %s\n\tupstream 127.0.0.1:%d\n\torigins %s\n\topenclaw_version %s\n}",
			gateName, config, stateDir, port, ocSiteURL, version)
		return globalOptions{nodes: nodes, clawgate: gateway}.String() + fmt.Sprintf(`http://gw.%s:%d {
	bind clawgate/gw
	clawgate 127.0.0.1:%d {
		gateway %s
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow user:%s scopes operator.read,operator.write
		allow tag:ci token:ci
	}
}
`, tailnettest.Domain, ocSitePort, port, gateName, ocAlice)
	}
	setupFile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(setupFile, []byte(caddyfile(ocConfig, filepath.Join(dir, "state"))), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code, err := runSetupCommand(&out, setupOptions{config: setupFile, write: true})
	if err != nil || code != 0 {
		t.Fatalf("setup --write = %d, %v:\n%s", code, err, out.String())
	}
	t.Logf("setup --write for OpenClaw %s:\n%s", version, out.String())
	if !strings.Contains(out.String(), "planned for OpenClaw "+version+", from openclaw_version") {
		t.Errorf("setup does not say it planned for OpenClaw %s:\n%s", version, out.String())
	}
	written, err := os.ReadFile(ocConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"identityScopes", "deviceAutoApprove", "publicOrigin", "roles"} {
		if !line.IdentityScopes && strings.Contains(string(written), key) {
			t.Errorf("setup wrote %s, which OpenClaw %s does not know:\n%s", key, version, written)
		}
	}

	// The line's own gateway starts on exactly what setup wrote.
	startAt := time.Now()
	gw := openclawtest.StartVersion(t, version, written, port)
	t.Logf("OpenClaw %s started on setup's config in %v", version, time.Since(startAt).Round(100*time.Millisecond))

	tn := tailnettest.New(t)
	gwNode := tn.Config(t, "gw")
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin(ocAlice))
	bob := tn.NewNode(t, "bob-phone", tailnettest.WithLogin(ocBob))
	ci := tn.NewNode(t, "ci-bot", tailnettest.WithTags("tag:ci"))
	startCaddyTailnet(t, caddyfile(gw.ConfigPath(), gw.StateDir(), gwNode))
	(&tailnetFixture{tn: tn, alice: alice, bob: bob, ci: ci}).waitGW(t)

	asCI := http.Header{"Authorization": {"Bearer " + tokCI}}
	all := []string{"operator.read", "operator.write", "operator.admin"}
	// What a device-less client gets: the rule's cap on what identityScopes
	// grants, or nothing on a line without identityScopes.
	aliceScopes := []string{}
	if line.IdentityScopes {
		aliceScopes = []string{"operator.read", "operator.write"}
	}

	t.Run("the gate passes setup's config", func(t *testing.T) {
		status, body := ocPost(t, alice, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, nil)
		if status == http.StatusServiceUnavailable {
			t.Fatalf("clawgate's gate refuses the config setup wrote: %s", body)
		}
		if status == http.StatusForbidden {
			t.Errorf("alice: POST /tools/invoke = %d %s, want past the scope check (she has operator.write)", status, body)
		}
	})

	t.Run("alice gets hello-ok with the scopes this line grants", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, alice, nil)
		hello := connectOC(t, ctx, oc, all, "")
		// 2026.7.35's hello-ok does not name the auth method.
		if hello.Auth.Role != "operator" || (hello.Auth.Method != "" && hello.Auth.Method != "trusted-proxy") {
			t.Errorf("hello-ok auth method %q role %q, want trusted-proxy (or unnamed) operator", hello.Auth.Method, hello.Auth.Role)
		}
		if got := sorted(hello.Auth.Scopes); !slices.Equal(got, aliceScopes) {
			t.Errorf("hello-ok scopes = %q, want %q", got, aliceScopes)
		}
		if !strings.HasPrefix(hello.Server.Version, version) {
			t.Errorf("hello-ok server version = %q, want %s", hello.Server.Version, version)
		}
	})

	t.Run("alice spoofing bob and admin is still alice, capped", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, alice, http.Header{
			"X-Forwarded-User":     {ocBob},
			"X-Openclaw-Scopes":    {"operator.admin"},
			"Tailscale-User-Login": {ocBob},
			"X-Forwarded-For":      {"203.0.113.9"},
		})
		hello := connectOC(t, ctx, oc, all, "")
		if got := sorted(hello.Auth.Scopes); !slices.Equal(got, aliceScopes) {
			t.Errorf("hello-ok scopes = %q, want %q", got, aliceScopes)
		}
		// Over HTTP too: were bob (not in allowUsers) or operator.read alone
		// passed on, the gateway would refuse; as alice with her rule's
		// scopes, the request gets past authentication and the scope check.
		status, body := ocPost(t, alice, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, http.Header{
			"X-Forwarded-User":  {ocBob},
			"X-Openclaw-Scopes": {"operator.read"},
		})
		if status == http.StatusForbidden || status == http.StatusUnauthorized {
			t.Errorf("alice spoofing bob and operator.read: POST /tools/invoke = %d %s, want past the scope check", status, body)
		}
	})

	// A device (the Control UI's key, or a CLI's) that alice pairs once
	// with `openclaw devices approve` asks for everything: what it gets is
	// capped by her clawgate rule (x-openclaw-scopes) on a line that caps
	// paired devices, and is everything it was approved for on one that does
	// not (which clawgate then reports; see TestGatewayAuditPerLine).
	t.Run("a device alice paired gets what this line grants it", func(t *testing.T) {
		ctx := testCtx(t)
		dev, err := openclawtest.NewDevice()
		if err != nil {
			t.Fatal(err)
		}
		oc := dialOC(t, ctx, alice, http.Header{"X-Openclaw-Scopes": {"operator.admin"}})
		_, err = oc.ConnectDevice(ctx, all, dev)
		requestID := openclawtest.PairingRequestID(err)
		if requestID == "" {
			t.Fatalf("first connect of a new device: %v; want pairing required with a request id", err)
		}
		out, err := gw.ApproveDevice(t, version, requestID)
		if err != nil {
			t.Fatalf("openclaw devices approve %s: %v\n%s", requestID, err, out)
		}
		// The CLI takes a while on a busy machine: a fresh deadline.
		ctx = testCtx(t)
		oc = dialOC(t, ctx, alice, http.Header{"X-Openclaw-Scopes": {"operator.admin"}})
		hello, err := oc.ConnectDevice(ctx, all, dev)
		if err != nil {
			t.Fatalf("connect of the paired device: %v", err)
		}
		t.Logf("OpenClaw %s: alice's paired device asking for %q through clawgate (rule: operator.read, operator.write) got hello-ok scopes %q", version, all, hello.Auth.Scopes)
		if got := sorted(hello.Auth.Scopes); !slices.Equal(got, pairedScopes(line)) {
			t.Errorf("paired device: hello-ok scopes = %q, want %q", got, pairedScopes(line))
		}
		// The cap holds for calls too, not just in hello-ok: exec.approvals.get
		// needs operator.admin.
		e := callOC(t, ctx, oc, "exec.approvals.get", nil, nil)
		t.Logf("OpenClaw %s: paired device exec.approvals.get: %v", version, e)
		if line.PairedDeviceCapped && (e == nil || e.Details.MissingScope != "operator.admin") {
			t.Errorf("paired device: exec.approvals.get = %v, want MISSING_SCOPE operator.admin", e)
		}
		if !line.PairedDeviceCapped && e != nil {
			t.Errorf("paired device: exec.approvals.get = %v; this line was measured to give a paired device operator.admin (release.Line.PairedDeviceCapped is wrong?)", e)
		}
	})

	t.Run("bob is refused at the edge", func(t *testing.T) {
		ctx := testCtx(t)
		hc := bob.HTTPClient()
		defer hc.CloseIdleConnections()
		oc, err := openclawtest.Dial(ctx, hc, wsURL(), http.Header{"X-Forwarded-User": {ocAlice}})
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
		status, body2 := ocPost(t, bob, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, nil)
		if status != http.StatusForbidden || errorType(t, body2) != "clawgate_forbidden" {
			t.Errorf("POST /tools/invoke = %d %s, want 403 clawgate_forbidden", status, body2)
		}
	})

	// The rule for the ci token grants no scopes: whatever x-openclaw-scopes
	// value clawgate sends for that on this line, the gateway must read it
	// as none, spoofed scope headers or not.
	for _, spoof := range []http.Header{nil, {"X-Openclaw-Scopes": {"operator.admin"}, "X-Forwarded-User": {ocAlice}}} {
		name := "POST /tools/invoke under a rule with no scopes is refused"
		if spoof != nil {
			name += ", spoofed headers too"
		}
		t.Run(name, func(t *testing.T) {
			h := asCI.Clone()
			for k, v := range spoof {
				h[k] = v
			}
			status, body := ocPost(t, ci, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, h)
			t.Logf("OpenClaw %s answered %d %s", version, status, strings.TrimSpace(body))
			if status != http.StatusForbidden || !strings.Contains(body, `"type":"forbidden"`) || !strings.Contains(body, "missing scope: operator.write") {
				t.Errorf("POST /tools/invoke = %d %s, want 403 from OpenClaw: forbidden, missing scope: operator.write", status, body)
			}
		})
	}

	t.Run("websocket under a rule with no scopes has none", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, ci, asCI)
		hello := connectOC(t, ctx, oc, all, "")
		if len(hello.Auth.Scopes) != 0 {
			t.Errorf("hello-ok scopes = %q, want none", hello.Auth.Scopes)
		}
		if e := callOC(t, ctx, oc, "status", nil, nil); e == nil {
			t.Errorf("status succeeded with no scopes, want it refused")
		}
	})

	// Every value each line was measured to read as none, sent straight to
	// the gateway (as clawgate would, from loopback): the table in package
	// release and the unmeasured fallback must both hold on this line.
	t.Run("the no-scope values read as none", func(t *testing.T) {
		for _, value := range []string{line.NoScopes, release.NoScopesUnmeasured} {
			status, body := directInvoke(t, gw, ocCIUser, &value)
			if status != http.StatusForbidden || !strings.Contains(body, "missing scope: operator.write") {
				t.Errorf("x-openclaw-scopes: %q: POST /tools/invoke = %d %s, want 403 missing scope: operator.write", value, status, body)
			}
		}
		// And, so that the refusals above mean something: the same request
		// with no header at all passes the scope check on this line.
		if status, body := directInvoke(t, gw, ocCIUser, nil); status == http.StatusForbidden {
			t.Errorf("no x-openclaw-scopes: POST /tools/invoke = %d %s, want past the scope check (the default operator set)", status, body)
		}
	})
}

// pairedScopes is what a device alice paired, asking for read, write and
// admin, gets through clawgate: her rule's scopes (the cap clawgate sends in
// x-openclaw-scopes), or, on a line that does not cap paired devices, all
// it was approved for.
func pairedScopes(line release.Line) []string {
	if !line.PairedDeviceCapped {
		return []string{"operator.admin", "operator.read", "operator.write"}
	}
	return []string{"operator.read", "operator.write"}
}

// directInvoke POSTs /tools/invoke to the gateway on loopback with the
// headers clawgate sends, as user from a tailnet address, with
// x-openclaw-scopes set to *scopes (absent when scopes is nil).
func directInvoke(t testing.TB, gw *openclawtest.Gateway, user string, scopes *string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gw.URL+"/tools/invoke", strings.NewReader(`{"tool":"sessions_list","args":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "100.64.0.9")
	req.Header.Set("X-Forwarded-Proto", "http")
	req.Header.Set("X-Forwarded-Host", strings.TrimPrefix(ocSiteURL, "http://"))
	req.Header.Set("X-Forwarded-User", user)
	if scopes != nil {
		req.Header["X-Openclaw-Scopes"] = []string{*scopes}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s/tools/invoke: %v", gw.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
