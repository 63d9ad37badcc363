package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// TestTransport checks the clawgate transport through a real Caddy: it sends
// the guard's decision whatever ran between the guard and the proxy, and it
// refuses to forward a request no guard admitted.
func TestTransport(t *testing.T) {
	be := newBackend(t)
	t.Setenv("CG_TRANSPORT_TOKEN", "transport-test-token-0123456789abcdef")
	guarded, bare := freePort(t), freePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin off
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
}
http://127.0.0.1:%d {
	route {
		clawgate {
			upstream %[2]s
			token ci {
				env CG_TRANSPORT_TOKEN
			}
			allow token:ci scopes operator.read
		}
		# A handler after the guard that tries to change what the gateway
		# is told; the transport has the last word.
		request_header X-Forwarded-User mallory
		# Caddy edits the header's value slice in place for a find/replace;
		# the guard's own slice is what it edits here.
		request_header X-Openclaw-Scopes operator.read operator.admin
		request_header X-Forwarded-For 198.51.100.66
		request_header X_Forwarded_User mallory
		reverse_proxy %[2]s {
			transport clawgate
		}
	}
}
http://127.0.0.1:%[3]d {
	reverse_proxy %[2]s {
		transport clawgate
	}
}
`, guarded, be.addr(), bare))
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", guarded))

	get := func(port int, bearer string) (int, string) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/tools/invoke", port), nil)
		req.Header.Set("X-Real-IP", "203.0.113.7")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	t.Run("last word after other handlers", func(t *testing.T) {
		before := be.count()
		if code, body := get(guarded, "transport-test-token-0123456789abcdef"); code != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", code, body)
		}
		if be.count() != before+1 {
			t.Fatalf("backend saw %d requests, want 1", be.count()-before)
		}
		assertForwarded(t, be.last(t), "token:ci", "operator.read", "203.0.113.7")
	})

	t.Run("refused without a guard", func(t *testing.T) {
		before := be.count()
		code, _ := get(bare, "")
		if code != http.StatusBadGateway {
			t.Errorf("status %d, want 502", code)
		}
		if n := be.count() - before; n != 0 {
			t.Errorf("backend saw %d requests through an unguarded clawgate transport, want 0", n)
		}
	})
}
