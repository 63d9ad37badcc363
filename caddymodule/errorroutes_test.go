package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// errorRouteFixture is a real Caddy with three guarded sites in front of one
// backend: one whose handle_errors answers clawgate's refusals with the
// placeholders, one whose handle_errors proxies every error to a second
// backend, and one whose only handle_errors handles 404.
type errorRouteFixture struct {
	*guardFixture
	echo    string // handle_errors 401 403 429 503 { respond ... }
	proxied string // handle_errors { reverse_proxy <errBE> }
	only404 string // handle_errors 404 { respond ... }
	errBE   *backend
}

func newErrorRouteFixture(t *testing.T) *errorRouteFixture {
	f := &errorRouteFixture{guardFixture: &guardFixture{be: newBackend(t)}, errBE: newBackend(t)}
	f.tokCI = randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", f.tokCI)
	ports := []int{freePort(t), freePort(t), freePort(t)}
	f.echo = "http://127.0.0.1:" + itoa(ports[0])
	f.proxied = "http://127.0.0.1:" + itoa(ports[1])
	f.only404 = "http://127.0.0.1:" + itoa(ports[2])
	guard := fmt.Sprintf(`clawgate %s {
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow token:ci scopes operator.read
		rate_limit {
			failures 2
			window 1m
			lockout 1m
		}
	}`, f.be.addr())
	startCaddy(t, fmt.Sprintf(`{
	admin off
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
}
http://127.0.0.1:%d {
	%s
	handle_errors 401 403 429 503 {
		respond "site page: status={http.error.status_code} reason={clawgate.reason} message={clawgate.message} retry={clawgate.retry_after} user=[{header.X-Forwarded-User}] scopes=[{header.X-Openclaw-Scopes}] auth=[{header.Authorization}] real=[{header.X-Real-IP}] path={path}" {http.error.status_code}
	}
}
http://127.0.0.1:%d {
	%s
	handle_errors {
		reverse_proxy %s
	}
}
http://127.0.0.1:%d {
	%s
	handle_errors 404 {
		respond "site 404 page" 404
	}
}`, ports[0], guard, ports[1], guard, f.errBE.addr(), ports[2], guard))
	waitHTTP(t, f.echo)
	return f
}

// TestRefusalsReachErrorRoutes: a refusal goes through Caddy's error
// handling, so handle_errors shapes it, with the refusal's placeholders and
// headers; a site whose error routes do not answer it keeps clawgate's body.
func TestRefusalsReachErrorRoutes(t *testing.T) {
	f := newErrorRouteFixture(t)
	forged := map[string][]string{
		"X-Forwarded-User":  {"admin@example.com"},
		"X-Openclaw-Scopes": {"operator.admin"},
	}

	t.Run("handle_errors shapes a 401 and keeps WWW-Authenticate", func(t *testing.T) {
		resp, body := f.do(t, f.echo, reqOpts{path: "/", ip: "198.51.100.1"})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401: %s", resp.StatusCode, body)
		}
		for _, want := range []string{"site page: status=401", "reason=unauthenticated", "message=authentication required"} {
			if !strings.Contains(body, want) {
				t.Errorf("body %q does not say %q", body, want)
			}
		}
		if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="clawgate"` {
			t.Errorf("WWW-Authenticate = %q, want the guard's challenge", got)
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", got)
		}
	})

	t.Run("handle_errors shapes a 429 and keeps Retry-After", func(t *testing.T) {
		ip := "198.51.100.2"
		for range 2 {
			if resp, body := f.do(t, f.echo, reqOpts{path: "/", ip: ip, bearer: randToken(t, 32)}); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("bad token: status %d, want 401: %s", resp.StatusCode, body)
			}
		}
		resp, body := f.do(t, f.echo, reqOpts{path: "/", ip: ip, bearer: f.tokCI})
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("status %d, want 429: %s", resp.StatusCode, body)
		}
		ra := resp.Header.Get("Retry-After")
		if ra == "" || ra == "0" {
			t.Errorf("Retry-After = %q, want the lockout's remaining seconds", ra)
		}
		if !strings.Contains(body, "reason=rate_limited") || !strings.Contains(body, "retry="+ra+" ") {
			t.Errorf("body %q does not carry the reason and retry_after %s", body, ra)
		}
	})

	t.Run("no client-sent identity header reaches the error route", func(t *testing.T) {
		// Refused before the guard's own header cleaning: credentials in the
		// query string.
		h := map[string][]string{"Authorization": {"Bearer " + f.tokCI}}
		for k, v := range forged {
			h[k] = v
		}
		resp, body := f.do(t, f.echo, reqOpts{path: "/?token=abc", ip: "198.51.100.3", headers: h})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "reason=query_token") {
			t.Fatalf("status %d, want the query_token 401: %s", resp.StatusCode, body)
		}
		for _, want := range []string{"user=[]", "scopes=[]", "auth=[]", "real=[]", "path=/"} {
			if !strings.Contains(body, want) {
				t.Errorf("the error route saw a client-sent header: body %q lacks %q", body, want)
			}
		}
	})

	t.Run("an error route that proxies gets no client-sent identity", func(t *testing.T) {
		before, gwBefore := f.errBE.count(), f.be.count()
		h := map[string][]string{"x_forwarded_user": {"admin@example.com"}, "Authorization": {"Bearer " + randToken(t, 32)}}
		for k, v := range forged {
			h[k] = v
		}
		resp, body := f.do(t, f.proxied, reqOpts{path: "/tools/invoke", ip: "198.51.100.4", headers: h})
		if resp.StatusCode != http.StatusOK || f.errBE.count() != before+1 {
			t.Fatalf("status %d, want the error backend's 200: %s", resp.StatusCode, body)
		}
		if f.be.count() != gwBefore {
			t.Fatal("the refused request reached the gateway")
		}
		got := f.errBE.last(t)
		for _, name := range []string{"X-Forwarded-User", "X-Openclaw-Scopes", "Authorization", "X_forwarded_user"} {
			if v := got.Header.Values(name); len(v) != 0 {
				t.Errorf("the error route passed on client-sent %s: %q", name, v)
			}
		}
	})

	t.Run("error routes that do not answer keep clawgate's body", func(t *testing.T) {
		resp, body := f.do(t, f.only404, reqOpts{path: "/__openclaw__/cap/x/y", bearer: f.tokCI, ip: "198.51.100.5"})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403: %s", resp.StatusCode, body)
		}
		if got := errorType(t, body); got != "clawgate_capability_path" {
			t.Errorf("error.type = %q, want clawgate_capability_path", got)
		}
		resp, body = f.do(t, f.only404, reqOpts{path: "/", ip: "198.51.100.6", accept: "text/html"})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "<h1>401 Unauthorized</h1>") {
			t.Errorf("a browser got %d %q, want clawgate's 401 page", resp.StatusCode, body)
		}
		if got := resp.Header.Get("WWW-Authenticate"); got == "" {
			t.Error("WWW-Authenticate lost")
		}
	})

	t.Run("admitted requests are untouched", func(t *testing.T) {
		for _, base := range []string{f.echo, f.proxied, f.only404} {
			if resp, body := f.do(t, base, reqOpts{path: "/", bearer: f.tokCI, ip: "198.51.100.7"}); resp.StatusCode != http.StatusOK {
				t.Errorf("%s: status %d, want 200: %s", base, resp.StatusCode, body)
			}
		}
	})
}

// TestAuditRefusalReachesErrorRoutes: a gateway blocked by its audit is
// refused through handle_errors, with the failing check IDs as
// {clawgate.audit_checks}.
func TestAuditRefusalReachesErrorRoutes(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(stateDir, "openclaw.json")
	if err := os.WriteFile(cfgPath, []byte(insecureGatewayConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &guardFixture{be: newBackend(t), tokCI: randToken(t, 32)}
	t.Setenv("CG_TEST_TOKEN_CI", f.tokCI)
	port := freePort(t)
	base := "http://127.0.0.1:" + itoa(port)
	startCaddy(t, fmt.Sprintf(`{
	admin off
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
	handle_errors 503 {
		respond "maintenance: gateway={clawgate.gateway} checks={clawgate.audit_checks}" 503
	}
}`, cfgPath, stateDir, port, f.be.addr()))
	waitHTTP(t, base)
	resp, body := f.do(t, base, reqOpts{path: "/", bearer: f.tokCI})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", resp.StatusCode, body)
	}
	checks, ok := strings.CutPrefix(body, "maintenance: gateway=home checks=")
	if !ok || checks == "" || strings.ContainsAny(checks, " :") {
		t.Fatalf("body %q, want the error route's page with the failing check IDs", body)
	}
	for _, id := range strings.Split(checks, ",") {
		if !strings.Contains(id, ".") {
			t.Errorf("%q does not look like an audit check ID", id)
		}
	}
	if f.be.count() != 0 {
		t.Error("a request reached the blocked gateway")
	}
}

// TestPairingHoldReachesErrorRoutes: a device held for approval is refused
// through handle_errors, on a real tailnet, with its pairing code as
// {clawgate.pairing_code} and in X-Clawgate-Pairing-Code.
func TestPairingHoldReachesErrorRoutes(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	tn := tailnettest.New(t)
	gw := tn.Config(t, "gw")
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	be := newBackend(t)
	cfgPath, stateDir := gatewayDir(t, "alice@example.com")
	storage := t.TempDir()
	startCaddyTailnet(t, globalOptions{nodes: []tsnet.Config{gw}, extra: "storage file_system " + storage, clawgate: fmt.Sprintf(`gateway home {
	config %s
	state_dir %s
	pairing required
}`, cfgPath, stateDir)}.String()+fmt.Sprintf(`http://:18080 {
	bind clawgate/gw
	clawgate %s {
		gateway home
		allow user:alice@example.com scopes operator.read
	}
	handle_errors 403 {
		respond "held: code={clawgate.pairing_code} reason={clawgate.reason}" 403
	}
}
`, be.addr()))
	(&tailnetFixture{tn: tn, alice: alice, bob: alice, ci: alice}).waitGW(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://gw.%s:18080/", tailnettest.Domain), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := alice.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	code := resp.Header.Get("X-Clawgate-Pairing-Code")
	if resp.StatusCode != http.StatusForbidden || code == "" {
		t.Fatalf("status %d, pairing code header %q: %s", resp.StatusCode, code, body)
	}
	if want := "held: code=" + code + " reason=pairing_pending"; string(body) != want {
		t.Errorf("body %q, want the error route's %q", body, want)
	}
	if be.count() != 0 {
		t.Error("a held device reached the gateway")
	}
}
