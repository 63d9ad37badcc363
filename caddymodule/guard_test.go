package caddymodule

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// guardFixture is a real Caddy on 127.0.0.1 with clawgate in front of a real
// HTTP + WebSocket backend. Caddy trusts 127.0.0.1 as a fronting proxy and takes
// the client address from X-Real-IP, so tests can speak as clients with
// distinct, non-loopback addresses (the guard strips X-Real-IP before the backend).
type guardFixture struct {
	be            *backend
	url, guardURL string // shortcut site; guard-only site followed by a plain reverse_proxy
	tokCI, tokOps string
	tokOld        string
	hsSecret      []byte
	edPriv        ed25519.PrivateKey
}

func randToken(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func newGuardFixture(t *testing.T) *guardFixture {
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

	port, guardPort := freePort(t), freePort(t)
	f.url = "http://127.0.0.1:" + itoa(port)
	f.guardURL = "http://127.0.0.1:" + itoa(guardPort)
	opts := fmt.Sprintf(`
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
		allow jwt
		rate_limit {
			failures 5
			window 1m
			lockout 1m
		}`, opsFile, pemFile)
	startCaddy(t, fmt.Sprintf(`{
	admin off
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
}
http://127.0.0.1:%d {
	clawgate %s {%s
	}
}
http://127.0.0.1:%d {
	clawgate {
		upstream %s%s
	}
	reverse_proxy %s
}
`, port, f.be.addr(), opts, guardPort, f.be.addr(), opts, f.be.addr()))
	waitHTTP(t, f.url)
	waitHTTP(t, f.guardURL)
	return f
}

func (f *guardFixture) jwt(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func stdClaims(sub string, extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "iss": "https://issuer.test", "aud": "clawgate", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

type reqOpts struct {
	bearer  string
	ip      string
	path    string
	headers map[string][]string // raw keys, sent exactly as written
	accept  string
}

func (f *guardFixture) do(t testing.TB, base string, o reqOpts) (*http.Response, string) {
	t.Helper()
	if o.path == "" {
		o.path = "/tools/invoke"
	}
	if o.ip == "" {
		o.ip = "203.0.113.7"
	}
	req, err := http.NewRequest("GET", base+o.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Real-IP", o.ip)
	if o.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+o.bearer)
	}
	if o.accept != "" {
		req.Header.Set("Accept", o.accept)
	}
	for k, v := range o.headers {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// errorType extracts error.type from a JSON denial.
func errorType(t testing.TB, body string) string {
	t.Helper()
	var v struct {
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("denial body is not JSON: %v: %q", err, body)
	}
	return v.Error.Type
}

// protectedNames are the normalised header names no client may set on the way to
// the gateway; the backend may see them only with the guard's own values.
var protectedNames = []string{"x-forwarded-user", "x-openclaw-scopes", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip", "tailscale-user-login", "tailscale-user-name"}

// assertForwarded checks the identity headers the backend received. xff is the
// exact X-Forwarded-For: the shortcut sends the client IP alone; the guard-only
// form leaves it to a plain reverse_proxy, which appends the trusted fronting
// proxy's own hop (127.0.0.1) after the guard's client IP — OpenClaw, trusting
// only loopback, walks right to left and still attributes the client.
func assertForwarded(t testing.TB, got seen, user, scopes, xff string) {
	t.Helper()
	want := map[string]string{
		"X-Forwarded-User":  user,
		"X-Openclaw-Scopes": scopes,
		"X-Forwarded-For":   xff,
		"X-Forwarded-Proto": "http",
	}
	for k, v := range want {
		vals, ok := got.Header[k]
		if !ok {
			t.Errorf("backend: header %s absent, want %q", k, v)
			continue
		}
		if len(vals) != 1 || vals[0] != v {
			t.Errorf("backend: %s = %q, want exactly [%q]", k, vals, v)
		}
	}
	if got.Header.Get("X-Forwarded-Host") == "" {
		t.Errorf("backend: X-Forwarded-Host absent")
	}
	// No other spelling of a protected name may survive, and none may carry a
	// client-chosen value.
	for name, vals := range got.Header {
		n := edge.NormalizeName(name)
		for _, p := range protectedNames {
			if n != p {
				continue
			}
			if _, canonical := want[name]; !canonical && name != "X-Forwarded-Host" {
				t.Errorf("backend: spoofable header %q = %q reached the gateway", name, vals)
			}
		}
		if strings.HasPrefix(n, "tailscale-") {
			t.Errorf("backend: header %q = %q reached the gateway", name, vals)
		}
		for _, v := range vals {
			if strings.Contains(v, "evil") || strings.Contains(v, "alice") && !strings.Contains(user, "alice") {
				t.Errorf("backend: client-chosen value %q in %s reached the gateway", v, name)
			}
		}
	}
	if a := got.Header.Get("Authorization"); a != "" {
		t.Errorf("backend: edge credential leaked upstream in Authorization")
	}
}

func TestGuardLoopback(t *testing.T) {
	f := newGuardFixture(t)
	xff := func(base string) string {
		if base == f.guardURL {
			return "203.0.113.7, 127.0.0.1"
		}
		return "203.0.113.7"
	}

	t.Run("denials never reach the backend", func(t *testing.T) {
		hs := func(claims jwt.MapClaims) string { return f.jwt(t, jwt.SigningMethodHS256, f.hsSecret, claims) }
		expiredBadSig := hs(jwt.MapClaims{"sub": "x", "iss": "https://issuer.test", "aud": "clawgate", "exp": time.Now().Add(-time.Hour).Unix()})
		expiredBadSig = expiredBadSig[:len(expiredBadSig)-4] + "AAAA"
		none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
			base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":"alice","iss":"https://issuer.test","aud":"clawgate","exp":%d}`, time.Now().Add(time.Hour).Unix()))) + "."
		tests := []struct {
			name     string
			o        reqOpts
			status   int
			wantType string
		}{
			{"no credential", reqOpts{}, 401, "clawgate_unauthenticated"},
			{"unknown token", reqOpts{bearer: randToken(t, 32), ip: "198.51.100.1"}, 401, "clawgate_bad_credential"},
			{"expired token", reqOpts{bearer: f.tokOld, ip: "198.51.100.2"}, 401, "clawgate_token_expired"},
			{"token in query string", reqOpts{path: "/tools/invoke?token=" + f.tokCI}, 401, "clawgate_query_token"},
			{"token in query string, encoded name", reqOpts{path: "/tools/invoke?%61ccess_token=" + f.tokCI, bearer: f.tokCI}, 401, "clawgate_query_token"},
			{"alg none", reqOpts{bearer: none, ip: "198.51.100.3"}, 401, "clawgate_bad_credential"},
			{"expired JWT with bad signature", reqOpts{bearer: expiredBadSig, ip: "198.51.100.4"}, 401, "clawgate_bad_credential"},
			{"JWT signed with another secret", reqOpts{bearer: f.jwt(t, jwt.SigningMethodHS256, []byte(randToken(t, 48)), stdClaims("mallory", nil)), ip: "198.51.100.5"}, 401, "clawgate_bad_credential"},
			{"JWT wrong audience", reqOpts{bearer: hs(jwt.MapClaims{"sub": "x", "iss": "https://issuer.test", "aud": "other", "exp": time.Now().Add(time.Hour).Unix()}), ip: "198.51.100.6"}, 401, "clawgate_bad_credential"},
			{"JWT wrong issuer", reqOpts{bearer: hs(jwt.MapClaims{"sub": "x", "iss": "https://evil.test", "aud": "clawgate", "exp": time.Now().Add(time.Hour).Unix()}), ip: "198.51.100.7"}, 401, "clawgate_bad_credential"},
			{"JWT nbf in the future", reqOpts{bearer: hs(stdClaims("x", map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})), ip: "198.51.100.8"}, 401, "clawgate_bad_credential"},
			{"JWT without exp", reqOpts{bearer: hs(jwt.MapClaims{"sub": "x", "iss": "https://issuer.test", "aud": "clawgate"}), ip: "198.51.100.10"}, 401, "clawgate_bad_credential"},
			{"JWT of many dots", reqOpts{bearer: strings.Repeat("a.", 2000) + "a", ip: "198.51.100.11"}, 401, "clawgate_bad_credential"},
			{"two Authorization headers", reqOpts{headers: map[string][]string{"Authorization": {"Bearer " + f.tokCI, "Bearer " + f.tokOps}}, ip: "198.51.100.12"}, 401, "clawgate_bad_credential"},
			{"basic auth scheme", reqOpts{headers: map[string][]string{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("a:"+f.tokCI))}}, ip: "198.51.100.13"}, 401, "clawgate_bad_credential"},
			{"spoofed identity headers alone", reqOpts{headers: map[string][]string{"X-Forwarded-User": {"alice"}, "Tailscale-User-Login": {"alice"}, "X-Openclaw-Scopes": {"operator.admin"}}}, 401, "clawgate_unauthenticated"},
		}
		for _, base := range []string{f.url, f.guardURL} {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					before := f.be.count()
					resp, body := f.do(t, base, tt.o)
					if resp.StatusCode != tt.status {
						t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.status, body)
					}
					if got := errorType(t, body); got != tt.wantType {
						t.Errorf("error.type = %q, want %q", got, tt.wantType)
					}
					if f.be.count() != before {
						t.Errorf("backend saw a denied request")
					}
				})
			}
		}
	})

	t.Run("browsers get a page", func(t *testing.T) {
		resp, body := f.do(t, f.url, reqOpts{accept: "text/html,application/xhtml+xml"})
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("got %d %s, want 401 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(body, "clawgate") {
			t.Errorf("page does not say who refused: %q", body)
		}
	})

	t.Run("allowed identities and scopes", func(t *testing.T) {
		tests := []struct {
			name         string
			bearer       string
			user, scopes string
		}{
			{"static token with user", f.tokCI, "ci-bot", "operator.read,operator.write"},
			{"token from file caps rule scopes", f.tokOps, "token:ops", "operator.read"},
			{"HS256 JWT with role claim", f.jwt(t, jwt.SigningMethodHS256, f.hsSecret, stdClaims("Carol@Example.com", map[string]any{"role": "operator"})), "carol@example.com", "operator.read"},
			// No gateway block, so no OpenClaw version: the value every known line reads as none.
			{"EdDSA JWT, no scopes: header present and granting none", f.jwt(t, jwt.SigningMethodEdDSA, f.edPriv, stdClaims("dave@example.com", nil)), "dave@example.com", release.NoScopesUnmeasured},
		}
		for _, base := range []string{f.url, f.guardURL} {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					resp, body := f.do(t, base, reqOpts{bearer: tt.bearer})
					if resp.StatusCode != 200 {
						t.Fatalf("status = %d, want 200; %s", resp.StatusCode, body)
					}
					assertForwarded(t, f.be.last(t), tt.user, tt.scopes, xff(base))
				})
			}
		}
	})

	t.Run("spoofed headers in every spelling are replaced", func(t *testing.T) {
		spoof := map[string][]string{
			"X-Forwarded-User":     {"alice"},
			"x_forwarded_user":     {"alice"},
			"X.Forwarded.User":     {"alice"},
			"x-FORWARDED-user":     {"alice", "alice2"},
			"X-Openclaw-Scopes":    {"operator.admin"},
			"x_openclaw_scopes":    {"operator.admin"},
			"X-Forwarded-For":      {"10.9.9.9, 127.0.0.1"},
			"X_Forwarded_For":      {"10.9.9.9"},
			"Forwarded":            {"for=10.9.9.9;host=evil.example;proto=https"},
			"X-Forwarded-Host":     {"evil.example"},
			"X-Forwarded-Proto":    {"https"},
			"X-Forwarded-Prefix":   {"/evil"},
			"Tailscale-User-Login": {"alice@example.com"},
			"tailscale_user_name":  {"alice"},
			"True-Client-Ip":       {"10.9.9.9"},
		}
		for _, base := range []string{f.url, f.guardURL} {
			resp, body := f.do(t, base, reqOpts{bearer: f.tokCI, headers: spoof})
			if resp.StatusCode != 200 {
				t.Fatalf("status = %d; %s", resp.StatusCode, body)
			}
			got := f.be.last(t)
			assertForwarded(t, got, "ci-bot", "operator.read,operator.write", xff(base))
			for _, h := range []string{"X-Forwarded-Prefix", "True-Client-Ip", "X-Real-Ip"} {
				if v := got.Header.Values(h); len(v) != 0 {
					t.Errorf("%s: backend saw %s = %q", base, h, v)
				}
			}
		}
	})

	t.Run("Connection header cannot delete identity headers", func(t *testing.T) {
		for _, base := range []string{f.url, f.guardURL} {
			for _, conn := range []string{
				"close, x-openclaw-scopes",
				"keep-alive, X-Forwarded-User, x-openclaw-scopes, X-Forwarded-For",
				"x_openclaw_scopes, x-forwarded-host",
			} {
				before := f.be.count()
				status := rawRequest(t, strings.TrimPrefix(base, "http://"), "GET /tools/invoke HTTP/1.1\r\n"+
					"Host: "+strings.TrimPrefix(base, "http://")+"\r\n"+
					"Authorization: Bearer "+f.tokCI+"\r\n"+
					"X-Real-IP: 203.0.113.7\r\n"+
					"Connection: "+conn+"\r\n\r\n")
				if status != 200 || f.be.count() != before+1 {
					t.Fatalf("Connection: %s → status %d", conn, status)
				}
				assertForwarded(t, f.be.last(t), "ci-bot", "operator.read,operator.write", xff(base))
			}
		}
	})

	t.Run("websocket frames both ways with identity", func(t *testing.T) {
		for _, base := range []string{f.url, f.guardURL} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			h := http.Header{"Authorization": {"Bearer " + f.tokCI}, "X-Real-IP": {"203.0.113.7"}, "X-Forwarded-User": {"alice"}, "X-Openclaw-Scopes": {"operator.admin"}}
			c, _, err := wsDial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", h)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			_, msg, err := c.Read(ctx)
			if err != nil || string(msg) != "hello ci-bot" {
				t.Fatalf("first frame = %q, %v; want hello ci-bot", msg, err)
			}
			for i := 0; i < 3; i++ {
				if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprint("ping", i))); err != nil {
					t.Fatal(err)
				}
				_, msg, err := c.Read(ctx)
				if err != nil || string(msg) != fmt.Sprint("echo:ping", i) {
					t.Fatalf("echo = %q, %v", msg, err)
				}
			}
			c.Close(websocket.StatusNormalClosure, "")
			assertForwarded(t, f.be.last(t), "ci-bot", "operator.read,operator.write", xff(base))

			before := f.be.count()
			_, resp, err := wsDial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", http.Header{"X-Real-IP": {"203.0.113.7"}, "X-Forwarded-User": {"alice"}})
			if err == nil || resp == nil || resp.StatusCode != 401 {
				t.Fatalf("unauthenticated upgrade: err %v, resp %v; want 401", err, resp)
			}
			if f.be.count() != before {
				t.Errorf("backend saw the refused upgrade")
			}
		}
	})

	t.Run("failed attempts are rate limited per client", func(t *testing.T) {
		ip := "192.0.2.77"
		for i := 0; i < 5; i++ {
			resp, _ := f.do(t, f.url, reqOpts{bearer: randToken(t, 32), ip: ip})
			if resp.StatusCode != 401 {
				t.Fatalf("attempt %d: status %d, want 401", i, resp.StatusCode)
			}
		}
		before := f.be.count()
		resp, body := f.do(t, f.url, reqOpts{bearer: f.tokCI, ip: ip})
		if resp.StatusCode != 429 || errorType(t, body) != "clawgate_rate_limited" {
			t.Fatalf("locked-out client with a good token: %d %s, want 429", resp.StatusCode, body)
		}
		if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("Retry-After = %q, want seconds", ra)
		}
		if f.be.count() != before {
			t.Errorf("backend saw a locked-out client")
		}
		resp, _ = f.do(t, f.url, reqOpts{bearer: f.tokCI, ip: "192.0.2.78"})
		if resp.StatusCode != 200 {
			t.Errorf("another client was locked out too: %d", resp.StatusCode)
		}
	})
}

// rawRequest writes a request byte for byte and returns the response status.
func rawRequest(t testing.TB, addr, raw string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestGuardRefusesLoopbackClients(t *testing.T) {
	be := newBackend(t)
	tok := randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", tok)
	port := freePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin off
	auto_https off
}
http://127.0.0.1:%d {
	clawgate %s {
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow token:ci
	}
}`, port, be.addr()))
	url := "http://127.0.0.1:" + itoa(port)
	waitHTTP(t, url)
	req, _ := http.NewRequest("GET", url+"/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Real-IP", "203.0.113.7") // not trusted here: must change nothing
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || errorType(t, string(body)) != "clawgate_unattributable" {
		t.Fatalf("loopback client: %d %s, want 403 clawgate_unattributable", resp.StatusCode, body)
	}
	if be.count() != 0 {
		t.Errorf("backend saw a request from a loopback client")
	}
}

func TestGuardConfigRefused(t *testing.T) {
	t.Setenv("CG_TEST_TOKEN_CI", randToken(t, 32))
	t.Setenv("CG_TEST_SHORT_HS", "only-sixteen-byt")
	t.Setenv("CG_TEST_EMPTY", "")
	dir := t.TempDir()
	worldReadable := filepath.Join(dir, "tok")
	if err := os.WriteFile(worldReadable, []byte(randToken(t, 32)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, site, wantErr string
	}{
		{"remote upstream", `clawgate 192.0.2.10:18789 {
			token ci {
				env CG_TEST_TOKEN_CI
			}
			allow token:ci
		}`, "not a loopback address"},
		{"localhost upstream", `clawgate localhost:18789 {
			token ci {
				env CG_TEST_TOKEN_CI
			}
			allow token:ci
		}`, "use 127.0.0.1"},
		{"no rules", `clawgate 127.0.0.1:18789 {
			token ci {
				env CG_TEST_TOKEN_CI
			}
		}`, "no rules"},
		{"short HMAC secret", `clawgate 127.0.0.1:18789 {
			jwt {
				algorithms HS256
				hmac_secret_env CG_TEST_SHORT_HS
			}
			allow jwt
		}`, "32 bytes"},
		{"unset token env", `clawgate 127.0.0.1:18789 {
			token ci {
				env CG_TEST_EMPTY
			}
			allow token:ci
		}`, "empty or unset"},
		{"world-readable token file", `clawgate 127.0.0.1:18789 {
			token ci {
				file ` + worldReadable + `
			}
			allow token:ci
		}`, "chmod 600"},
		{"missing token file", `clawgate 127.0.0.1:18789 {
			token ci {
				file ` + filepath.Join(dir, "nope") + `
			}
			allow token:ci
		}`, "no such file"},
		{"bad rule", `clawgate 127.0.0.1:18789 {
			token ci {
				env CG_TEST_TOKEN_CI
			}
			allow frobnicate:yes
		}`, "rules[0]"},
		{"jwt rule without jwt block", `clawgate 127.0.0.1:18789 {
			allow claim:role=admin
		}`, "no jwt block"},
		{"alg none", `clawgate 127.0.0.1:18789 {
			jwt {
				algorithms none
				hmac_secret_env CG_TEST_TOKEN_CI
			}
			allow jwt
		}`, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := loadCaddyErr(t, "{\n\tadmin off\n\tauto_https off\n}\nhttp://127.0.0.1:"+itoa(freePort(t))+" {\n\t"+tt.site+"\n}\n")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("load error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	t.Run("remote upstream allowed explicitly", func(t *testing.T) {
		err := loadCaddyErr(t, "{\n\tadmin off\n\tauto_https off\n}\nhttp://127.0.0.1:"+itoa(freePort(t))+` {
	clawgate 192.0.2.10:18789 {
		allow_remote_upstream
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow token:ci
	}
}`)
		if err != nil {
			t.Fatalf("load: %v", err)
		}
	})
}
