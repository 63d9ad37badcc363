package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestGatewayTokenBrokering: the gateway's own token is injected only into
// admitted requests to its HTTP APIs, never elsewhere and never upstream of a
// refusal.
func TestGatewayTokenBrokering(t *testing.T) {
	be := newBackend(t)
	ci, gwTok := randToken(t, 32), randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", ci)
	t.Setenv("CG_TEST_GATEWAY_TOKEN", gwTok)
	port := freePort(t)
	base := "http://127.0.0.1:" + itoa(port)
	startCaddy(t, fmt.Sprintf(`{
	admin off
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
}
http://127.0.0.1:%d {
	clawgate %s {
		token ci {
			env CG_TEST_TOKEN_CI
		}
		gateway_token {
			env CG_TEST_GATEWAY_TOKEN
		}
		allow token:ci scopes operator.read
	}
}`, port, be.addr()))
	waitHTTP(t, base)
	f := &guardFixture{be: be}
	tests := []struct {
		name, path, bearer string
		status             int
		wantBrokered       bool
	}{
		{"tools invoke", "/tools/invoke", ci, 200, true},
		{"openai api", "/v1/chat/completions", ci, 200, true},
		{"admin rpc", "/api/v1/admin/rpc", ci, 200, true},
		{"control ui", "/", ci, 200, false},
		{"look-alike path", "/tools/invoke2", ci, 200, false},
		{"v1 without slash", "/v1", ci, 200, false},
		{"dot segments out of /v1/", "/v1/../sessions/abc/kill", ci, 400, false},
		{"encoded dot segments out of /v1/", "/v1/%2e%2e/sessions/abc/kill", ci, 400, false},
		{"upper-case encoded dot segments", "/v1/%2E%2E/sessions/abc/kill", ci, 400, false},
		{"half-encoded dot segments", "/v1/.%2e/sessions/abc/kill", ci, 400, false},
		{"other half-encoded dot segments", "/v1/%2e./sessions/abc/kill", ci, 400, false},
		{"single dot segment", "/v1/./chat/completions", ci, 400, false},
		{"encoded single dot segment", "/v1/%2e/chat/completions", ci, 400, false},
		{"dot segments into /v1/", "/x/../v1/chat/completions", ci, 400, false},
		{"trailing dot segment", "/v1/chat/..", ci, 400, false},
		{"encoded slash around dots", "/v1/..%2fsessions/abc/kill", ci, 400, false},
		{"double-encoded dots", "/v1/%252e%252e/sessions/abc/kill", ci, 400, false},
		{"encoded slash in tools invoke", "/tools%2finvoke", ci, 200, false},
		{"encoded slash after v1", "/v1%2fchat/completions", ci, 200, false},
		{"encoded letter in tools invoke", "/%74ools/invoke", ci, 200, false},
		{"dot-dot inside a segment name", "/v1/..models", ci, 200, true},
		{"refused caller", "/tools/invoke", randToken(t, 32), 401, false},
		{"no caller", "/tools/invoke", "", 401, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := be.count()
			resp, body := f.do(t, base, reqOpts{bearer: tt.bearer, path: tt.path, ip: "198.51.100." + itoa(len(tt.name))})
			if resp.StatusCode != tt.status {
				if resp.StatusCode == 200 && be.last(t).Header.Get("Authorization") != "" {
					t.Errorf("the gateway token was sent on %s, which OpenClaw routes to %s", tt.path, whatwgPathname(tt.path))
				}
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.status != 200 {
				if be.count() != before {
					t.Fatal("a refused request reached the gateway")
				}
				return
			}
			got := be.last(t).Header.Get("Authorization")
			if tt.wantBrokered && got != "Bearer "+gwTok {
				t.Errorf("Authorization = %q, want the gateway token", got)
			}
			if !tt.wantBrokered && got != "" {
				t.Errorf("the gateway token was sent on %s", tt.path)
			}
		})
	}
	t.Run("not on websocket upgrades", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		before := be.count()
		// The backend only upgrades /ws; the upgrade request still reaches it.
		if c, _, err := wsDial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws", http.Header{"Authorization": {"Bearer " + ci}, "X-Real-IP": {"203.0.113.9"}}); err == nil {
			c.CloseNow()
		}
		got := be.last(t)
		if be.count() != before+1 || got.Path != "/v1/ws" || got.Header.Get("Upgrade") == "" {
			t.Fatalf("the upgrade did not reach the backend as one")
		}
		if got := got.Header.Get("Authorization"); got != "" {
			t.Errorf("gateway token sent on an upgrade")
		}
	})
}
