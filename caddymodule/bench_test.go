package caddymodule

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// benchGuard provisions a guard the way Caddy does, without a server around it,
// so the benchmark measures the guard alone.
func benchGuard(b *testing.B) (*Handler, string, string, string) {
	b.Helper()
	tok := randToken(b, 32)
	hs := []byte(randToken(b, 48))
	b.Setenv("CG_BENCH_TOKEN", tok)
	b.Setenv("CG_BENCH_HS", string(hs))
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemFile := filepath.Join(b.TempDir(), "ed.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	h := &Handler{
		Upstream: "127.0.0.1:18789",
		Tokens:   []TokenConfig{{Name: "ci", Secret: "{env.CG_BENCH_TOKEN}"}},
		JWT:      &JWTConfig{Algorithms: []string{"HS256", "EdDSA"}, HMACSecret: "{env.CG_BENCH_HS}", PublicKeyFiles: []string{pemFile}},
		Rules:    []string{"deny tag:untrusted", "allow token:ci scopes operator.read,operator.write", "allow jwt scopes operator.read"},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		b.Fatal(err)
	}
	claims := jwt.MapClaims{"sub": "alice@example.com", "exp": time.Now().Add(time.Hour).Unix()}
	hsTok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(hs)
	edTok, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(priv)
	return h, tok, hsTok, edTok
}

// statusWriter is a reusable ResponseWriter that remembers the last status.
type statusWriter struct {
	h    http.Header
	code int
}

func (w *statusWriter) Header() http.Header         { return w.h }
func (w *statusWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *statusWriter) WriteHeader(code int)        { w.code = code }

type nopNext struct{}

func (nopNext) ServeHTTP(http.ResponseWriter, *http.Request) error { return nil }

func benchGuardRequests(b *testing.B, h *Handler, bearer string, wantStatus int) {
	base := httptest.NewRequest("GET", "http://gw.tail-scale.ts.net/tools/invoke", nil)
	base.RemoteAddr = "100.64.0.7:41234"
	benchGuardRequestsTo(b, h, base, bearer, wantStatus)
}

// benchGuardRequestsTo runs base through the guard b.N times, as Caddy would
// hand it over (a replacer, the client IP variable).
func benchGuardRequestsTo(b *testing.B, h *Handler, orig *http.Request, bearer string, wantStatus int) {
	client, _, _ := net.SplitHostPort(orig.RemoteAddr)
	// Caddy gives every request a fresh replacer; the guard adds a provider
	// to it. One replacer for all b.N requests would grow without bound (and
	// make every GC scan it), so a fresh one is prepared every 256 requests:
	// its own few allocations, amortised, do not change allocs/op.
	var base *http.Request
	srv, _ := orig.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	prepare := func() {
		base = caddyhttp.PrepareRequest(orig, caddy.NewReplacer(), nil, srv)
		caddyhttp.SetVar(base.Context(), caddyhttp.ClientIPVarKey, client)
	}
	prepare()
	w := &statusWriter{h: http.Header{}}
	h.logger = zap.NewNop()
	var auth []string
	if bearer != "" {
		auth = []string{"Bearer " + bearer}
	}
	spoof := []string{"mallory"}
	hdr := make(http.Header, 16)
	r := new(http.Request) // reused, so the loop itself allocates nothing
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%256 == 255 {
			prepare()
		}
		// Reset the request's headers without allocating, so only the guard's
		// own allocations are counted.
		clear(hdr)
		if auth != nil {
			hdr["Authorization"] = auth
		}
		hdr["X-Forwarded-User"] = spoof
		*r = *base
		r.Header = hdr
		w.code = 200
		clear(w.h)
		if err := h.ServeHTTP(w, r, nopNext{}); err != nil {
			// A refusal handed to the server's error routes: its status is
			// the answer, as Caddy's server makes it.
			he, ok := err.(caddyhttp.HandlerError)
			if !ok {
				b.Fatal(err)
			}
			w.code = he.StatusCode
		}
		if w.code != wantStatus {
			b.Fatalf("status %d, want %d", w.code, wantStatus)
		}
	}
}

func BenchmarkGuardAllowStaticToken(b *testing.B) {
	h, tok, _, _ := benchGuard(b)
	benchGuardRequests(b, h, tok, 200)
}

func BenchmarkGuardAllowJWTHS256(b *testing.B) {
	h, _, hs, _ := benchGuard(b)
	benchGuardRequests(b, h, hs, 200)
}

func BenchmarkGuardAllowJWTEdDSA(b *testing.B) {
	h, _, _, ed := benchGuard(b)
	benchGuardRequests(b, h, ed, 200)
}

func BenchmarkGuardDenyBadToken(b *testing.B) {
	h, _, _, _ := benchGuard(b)
	// A generous limiter so the deny path is measured, not the lockout.
	h.ipLimit, h.idLimit = nil, nil
	h.RateLimit = &RateLimitConfig{Failures: 1 << 30}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	benchGuardRequests(b, h, randToken(b, 32), 401)
}

// BenchmarkGuardDenyErrorRoutes is BenchmarkGuardDenyBadToken's refusal on
// a server without error routes (clawgate writes its body), with error routes
// that do not answer a 401 (`handle_errors 404`: clawgate checks their
// matchers, then writes its body) and with one that does (the refusal goes
// to Caddy's error handling, which is not measured here).
func BenchmarkGuardDenyErrorRoutes(b *testing.B) {
	h, _, _, _ := benchGuard(b)
	h.ipLimit, h.idLimit = nil, nil
	h.RateLimit = &RateLimitConfig{Failures: 1 << 30}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	errorRoutes := func(status string) *caddyhttp.HTTPErrorConfig {
		m := &caddyhttp.MatchExpression{Expr: "{http.error.status_code} in [" + status + "]"}
		if err := m.Provision(ctx); err != nil {
			b.Fatal(err)
		}
		return &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{{
			MatcherSets: caddyhttp.MatcherSets{{m}},
			Handlers:    []caddyhttp.MiddlewareHandler{&caddyhttp.StaticResponse{}},
		}}}
	}
	for _, bc := range []struct {
		name   string
		errors *caddyhttp.HTTPErrorConfig
	}{
		{"error_routes=none", nil},
		{"error_routes=404_only", errorRoutes("404")},
		{"error_routes=answering", errorRoutes("401")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			base := httptest.NewRequest("GET", "http://gw.tail-scale.ts.net/tools/invoke", nil)
			base.RemoteAddr = "100.64.0.7:41234"
			base = base.WithContext(context.WithValue(base.Context(), caddyhttp.ServerCtxKey, &caddyhttp.Server{Errors: bc.errors}))
			benchGuardRequestsTo(b, h, base, randToken(b, 32), 401)
		})
	}
}

// BenchmarkGuardAllowTailnet is the guard's allow path for a tailnet device
// with a cached WhoIs answer: a real node "gw" started by a real Caddy on an
// in-process tailnet, a real peer alice whose first request fills the cache,
// then the guard alone (provisioned like the others, with a user: rule) on
// requests that look to it exactly like alice's did: arriving at gw's tailnet
// address from alice's.
func BenchmarkGuardAllowTailnet(b *testing.B) {
	tn := tailnettest.New(b)
	gw := tn.Config(b, "gw")
	alice := tn.NewNode(b, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	be := newBackend(b)
	port := freePort(b)
	b.Cleanup(func() { waitNodesClosed(b) }) // after startCaddy's Stop
	startCaddy(b, globalOptions{nodes: []tsnet.Config{gw}}.String()+fmt.Sprintf(`http://:%d {
	bind clawgate/gw
	clawgate %s {
		allow user:alice@example.com scopes operator.read,operator.write
	}
}
`, port, be.addr()))
	var gwIP netip.Addr
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if p := nodeByName("gw"); p != nil && len(p.tailnetIPs()) > 0 {
			gwIP = p.tailnetIPs()[0]
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("clawgate node gw never came up")
		}
	}
	tn.WaitPeer(b, alice, "gw")
	// One real request fills gw's WhoIs cache for alice.
	c := alice.HTTPClient()
	defer c.CloseIdleConnections()
	resp, err := c.Get(fmt.Sprintf("http://%s/", netip.AddrPortFrom(gwIP, uint16(port))))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("alice's first request: status %d, want 200", resp.StatusCode)
	}
	before := nodeByName("gw").WhoIsCacheStats()

	h := &Handler{
		Upstream: be.addr(),
		Rules:    []string{"deny tag:untrusted", "allow user:alice@example.com scopes operator.read,operator.write"},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	base := httptest.NewRequest("GET", "http://gw.tail-scale.ts.net/tools/invoke", nil)
	base.RemoteAddr = netip.AddrPortFrom(alice.IPs[0], 41234).String()
	base = base.WithContext(context.WithValue(base.Context(), http.LocalAddrContextKey,
		&net.TCPAddr{IP: gwIP.AsSlice(), Port: port}))
	benchGuardRequestsTo(b, h, base, "", 200)
	b.StopTimer()
	// A new packet filter on gw that changed alice's grants would make the
	// cached answer stale (none is expected here); every other request is
	// a hit.
	after := nodeByName("gw").WhoIsCacheStats()
	if got, stale := after.Hits-before.Hits, after.Stale-before.Stale; got+stale < uint64(b.N) {
		b.Fatalf("%d WhoIs cache hits and %d stale answers for %d requests: the identity was not cached (cache: %+v)", got, stale, b.N, after)
	}
}

// BenchmarkTransportForward is what the clawgate transport adds to each
// proxied request: cleaning the outgoing headers (as reverse_proxy prepared
// them: its own X-Forwarded-* set, a browser's usual headers) and setting the
// guard's five again.
func BenchmarkTransportForward(b *testing.B) {
	st := &guardState{user: "alice@example.com", scopes: "operator.read,operator.write", clientIP: "100.64.0.7",
		proto: "https", host: "gw.tail1234.ts.net", userKey: "X-Forwarded-User", cleaner: edge.NewHeaderCleaner([]string{"x-forwarded-user"})}
	outbound := http.Header{
		"Accept": {"*/*"}, "Accept-Encoding": {"gzip, deflate, br"}, "Accept-Language": {"en-GB,en;q=0.9"},
		"User-Agent": {"Mozilla/5.0"}, "Cookie": {"a=b"}, "X-Forwarded-For": {"100.64.0.7"},
		"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"gw.tail1234.ts.net"},
		"X-Forwarded-User": {"alice@example.com"}, "X-Openclaw-Scopes": {"operator.read,operator.write"},
	}
	// The loop refills the header map each time; "refill only" measures that
	// alone, so the transport's share is the difference between the two.
	for _, forward := range []bool{false, true} {
		name := "refill only"
		if forward {
			name = "refill and forward"
		}
		b.Run(name, func(b *testing.B) {
			h := make(http.Header, 16)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				clear(h)
				maps.Copy(h, outbound)
				if forward {
					st.forwardOutbound(h)
				}
			}
			b.StopTimer()
			if got := h.Get("X-Forwarded-User"); got != "alice@example.com" {
				b.Fatalf("X-Forwarded-User = %q", got)
			}
		})
	}
}
