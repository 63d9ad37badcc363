package edge

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func BenchmarkTokenLookup(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			specs := make([]TokenSpec, n)
			for i := range specs {
				specs[i] = TokenSpec{Name: fmt.Sprintf("t%d", i), Secret: fmt.Appendf(nil, "secret-%04d-abcdefghijklmnop", i)}
			}
			set, err := NewTokenSet(specs)
			if err != nil {
				b.Fatal(err)
			}
			secret := string(specs[n-1].Secret)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := set.Lookup(secret, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchVerify measures Verify on one token, with the cache on or off.
func benchVerify(b *testing.B, method jwt.SigningMethod, key any) {
	for _, cached := range []bool{false, true} {
		b.Run(fmt.Sprintf("cached=%v", cached), func(b *testing.B) {
			cfg := allAlgsConfig()
			if !cached {
				cfg.CacheSize = -1
			}
			v := newVerifier(b, cfg)
			tok := sign(b, method, key, baseClaims(), nil)
			if _, err := v.Verify(tok, testNow); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkJWTVerifyHS256(b *testing.B) {
	benchVerify(b, jwt.SigningMethodHS256, fixture().hs)
}

func BenchmarkJWTVerifyEdDSA(b *testing.B) {
	benchVerify(b, jwt.SigningMethodEdDSA, fixture().ed)
}

func BenchmarkJWTVerifyRejectManyDots(b *testing.B) {
	cfg := allAlgsConfig()
	cfg.MaxLength = 1 << 20
	v := newVerifier(b, cfg)
	tok := make([]byte, 100000)
	for i := range tok {
		tok[i] = '.'
	}
	s := string(tok)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(s, testNow); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	p, err := NewPolicy([]string{
		"deny node:quarantine,lost-phone",
		"allow tag:ci token:ci scopes operator.read,operator.write",
		"allow tag:ci scopes none",
		"allow jwt claim:role=operator scopes operator.read,operator.write",
		"allow user:admin@example.com scopes operator.admin,operator.read,operator.write",
		"allow user:@example.org scopes operator.read",
		"allow cap:example.com/cap/openclaw scopes operator.read",
		"allow user:alice@example.com,bob@example.com scopes operator.read,operator.write,operator.approvals",
	})
	if err != nil {
		b.Fatal(err)
	}
	id := &Identity{OnTailnet: true, Login: "bob@example.com", Node: "bob-laptop", Tailnet: "t.ts.net", HomeTailnet: "t.ts.net"}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(id); !d.Allowed {
			b.Fatal("denied")
		}
	}
}

func BenchmarkCleanRequestHeaders(b *testing.B) {
	base := http.Header{
		"Accept":          {"text/html,application/xhtml+xml"},
		"Accept-Encoding": {"gzip, br"},
		"Accept-Language": {"en"},
		"Cookie":          {"a=b"},
		"User-Agent":      {"Mozilla/5.0"},
		"Origin":          {"https://gw.example.ts.net"},
		"Sec-Fetch-Mode":  {"navigate"},
		"Authorization":   {"Bearer abc"},
	}
	evil := map[string][]string{
		"X-Forwarded-For":   {"1.2.3.4"},
		"X_Forwarded_User":  {"admin"},
		"X-Openclaw-Scopes": {"operator.admin"},
	}
	extra := []string{"x-forwarded-user", "x-forwarded-proto", "x-forwarded-host"}
	b.Run("func", func(b *testing.B) {
		h := base.Clone()
		b.ReportAllocs()
		for b.Loop() {
			for k, v := range evil {
				h[k] = v
			}
			if n := CleanRequestHeaders(h, extra); n != len(evil) {
				b.Fatalf("removed %d", n)
			}
		}
	})
	b.Run("cleaner", func(b *testing.B) {
		hc := NewHeaderCleaner(extra)
		h := base.Clone()
		b.ReportAllocs()
		for b.Loop() {
			for k, v := range evil {
				h[k] = v
			}
			if n := hc.Clean(h); n != len(evil) {
				b.Fatalf("removed %d", n)
			}
		}
	})
}

func BenchmarkLimiterBlocked(b *testing.B) {
	l := NewLimiter(0, 0, 0, 0)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("100.64.%d.%d", i/256, i%256)
		if i%2 == 0 {
			l.Fail(keys[i], testNow)
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Blocked(keys[i&1023], testNow)
			i++
		}
	})
}
