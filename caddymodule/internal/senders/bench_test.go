package senders

import (
	"net/http"
	"testing"
	"time"
)

// Each benchmark judges a realistic payload on the path that does the most work (authentic,
// parsed, allowed) and on the cheapest refusal (a forged signature, where the body is never parsed).
// go test ./caddymodule/internal/senders -run '^$' -bench . -benchmem

func benchCheck(b *testing.B, c *Checker, allowed, forged http.Header, body string, now time.Time) {
	b.Helper()
	data := []byte(body)
	for _, bc := range []struct {
		name   string
		h      http.Header
		wantOK bool
	}{{"allowed", allowed, true}, {"forged", forged, false}} {
		b.Run(bc.name, func(b *testing.B) {
			if v := c.Check(bc.h, data, now); v.Allowed != bc.wantOK {
				b.Fatalf("Check = %s, want allowed=%v", fmtVerdict(v), bc.wantOK)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				c.Check(bc.h, data, now)
			}
		})
	}
}

func BenchmarkTelegram(b *testing.B) {
	secret := newSecret(b)
	c := mustNew(b, telegramConfig(secret))
	benchCheck(b, c, tgHeader(secret), tgHeader(newSecret(b)), tgGroupMessage, time.Now())
}

func BenchmarkSlack(b *testing.B) {
	secret := newSecret(b)
	c := mustNew(b, slackConfig(secret))
	benchCheck(b, c, slackHeader(secret, slackNow, slackEventIM), slackHeader(newSecret(b), slackNow, slackEventIM), slackEventIM, slackNow)
}

func BenchmarkLINE(b *testing.B) {
	secret := newSecret(b)
	c := mustNew(b, lineConfig(secret))
	benchCheck(b, c, lineHeader(secret, lineMessage), lineHeader(newSecret(b), lineMessage), lineMessage, time.Now())
}

func BenchmarkGeneric(b *testing.B) {
	secret := newSecret(b)
	c := mustNew(b, waConfig(secret, nil))
	benchCheck(b, c, hubHeader(secret, waMessage), hubHeader(newSecret(b), waMessage), waMessage, time.Now())
}
