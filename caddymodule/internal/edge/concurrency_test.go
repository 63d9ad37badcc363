package edge

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestConcurrentUse drives the shared, mutable parts (JWT cache, limiter)
// from several goroutines; run with -race to check the locking.
func TestConcurrentUse(t *testing.T) {
	f := fixture()
	cfg := allAlgsConfig()
	cfg.CacheSize = 64
	v := newVerifier(t, cfg)
	toks := make([]string, 16)
	for i := range toks {
		toks[i] = sign(t, jwt.SigningMethodHS256, f.hs, with(map[string]any{"n": i}), nil)
	}
	l := NewLimiter(5, time.Minute, time.Minute, 50)
	p, err := NewPolicy([]string{"allow jwt scopes operator.read", "allow tailnet"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				c, err := v.Verify(toks[(g+i)%len(toks)], testNow.Add(time.Duration(i)*time.Second))
				if err != nil {
					t.Errorf("Verify() error = %v", err)
					return
				}
				if d := p.Decide(&Identity{JWT: c}); !d.Allowed {
					t.Errorf("Decide() = %+v", d)
				}
				key := strconv.Itoa((g*1000 + i) % 120)
				l.Fail(key, testNow)
				l.Blocked(key, testNow)
				_ = l.Len()
			}
		})
	}
	wg.Wait()
	if n := l.Len(); n > 50 {
		t.Errorf("limiter Len() = %d, want <= 50", n)
	}
	if n := v.cache.len(); n > 64 {
		t.Errorf("cache len = %d, want <= 64", n)
	}
}
