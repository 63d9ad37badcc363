package caddymodule

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
		Tokens:   []TokenConfig{{Name: "ci", Env: "CG_BENCH_TOKEN"}},
		JWT:      &JWTConfig{Algorithms: []string{"HS256", "EdDSA"}, HMACSecretEnv: "CG_BENCH_HS", PublicKeyFiles: []string{pemFile}},
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
	repl := caddy.NewReplacer()
	base := httptest.NewRequest("GET", "http://gw.tail-scale.ts.net/tools/invoke", nil)
	base.RemoteAddr = "100.64.0.7:41234"
	base = caddyhttp.PrepareRequest(base, repl, nil, nil)
	caddyhttp.SetVar(base.Context(), caddyhttp.ClientIPVarKey, "100.64.0.7")
	w := &statusWriter{h: http.Header{}}
	h.logger = zap.NewNop()
	auth, spoof := []string{"Bearer " + bearer}, []string{"mallory"}
	hdr := make(http.Header, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Reset the request's headers without allocating, so only the guard's
		// own allocations are counted.
		clear(hdr)
		hdr["Authorization"] = auth
		hdr["X-Forwarded-User"] = spoof
		r := *base
		r.Header = hdr
		w.code = 200
		clear(w.h)
		if err := h.ServeHTTP(w, &r, nopNext{}); err != nil {
			b.Fatal(err)
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
