package edge

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWriteDenial(t *testing.T) {
	tests := []struct {
		name      string
		header    http.Header
		method    string
		status    int
		reason    string
		msg       string
		retry     time.Duration
		wantHTML  bool
		wantRetry string
	}{
		{name: "api client", header: http.Header{"Accept": {"application/json"}}, status: 403, reason: "no_rule", msg: "not allowed"},
		{name: "no accept", status: 401, reason: "bad_token", msg: "invalid bearer token"},
		{name: "browser", header: http.Header{"Accept": {"text/html,application/xhtml+xml,*/*;q=0.8"}}, status: 403, reason: "no_rule", msg: "<script>alert(1)</script> & \"x\"", wantHTML: true},
		{name: "browser websocket", header: http.Header{"Accept": {"text/html"}, "Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}, status: 403, reason: "no_rule", msg: "no"},
		{name: "rate limited rounds up", header: http.Header{"Accept": {"*/*"}}, status: 429, reason: "rate_limited", msg: "slow down", retry: 1500 * time.Millisecond, wantRetry: "2"},
		{name: "rate limited whole seconds", status: 429, reason: "rate_limited", msg: "slow down", retry: 300 * time.Second, wantRetry: "300"},
		{name: "rate limited tiny", status: 429, reason: "rate_limited", msg: "slow down", retry: time.Nanosecond, wantRetry: "1"},
		{name: "retry ignored on 403", status: 403, reason: "no_rule", msg: "no", retry: time.Minute},
		{name: "rate limited browser", header: http.Header{"Accept": {"TEXT/HTML"}}, status: 429, reason: "rate_limited", msg: "slow", retry: time.Second, wantHTML: true, wantRetry: "1"},
		{name: "reason sanitised", status: 503, reason: "Audit Failed!", msg: "gateway config failed its audit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(cmp(tt.method, "GET"), "https://gw.example.ts.net/", nil)
			for k, v := range tt.header {
				r.Header[k] = v
			}
			w := httptest.NewRecorder()
			WriteDenial(w, r, tt.status, tt.reason, tt.msg, tt.retry)
			res := w.Result()
			if res.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.status)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if got := res.Header.Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
			}
			wantType := "clawgate_" + strings.ToLower(strings.NewReplacer(" ", "_", "!", "_").Replace(tt.reason))
			body := w.Body.String()
			if tt.wantHTML {
				if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
					t.Errorf("Content-Type = %q, want text/html", ct)
				}
				if strings.Contains(body, "<script>") || !strings.Contains(body, html.EscapeString(tt.msg)) || !strings.Contains(body, wantType) {
					t.Errorf("HTML body not escaped or missing type: %s", body)
				}
				return
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var got struct {
				Error struct{ Type, Message string }
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", body, err)
			}
			if got.Error.Type != wantType || got.Error.Message != tt.msg {
				t.Errorf("body = %+v, want type %q message %q", got.Error, wantType, tt.msg)
			}
		})
	}
}

// cmp returns a unless it is empty.
func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestIsWebSocketUpgrade(t *testing.T) {
	tests := []struct {
		name   string
		method string
		h      http.Header
		want   bool
	}{
		{"plain", "GET", http.Header{}, false},
		{"upgrade", "GET", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"token list", "GET", http.Header{"Connection": {"keep-alive, upgrade"}, "Upgrade": {"WebSocket"}}, true},
		{"repeated connection", "GET", http.Header{"Connection": {"keep-alive", "Upgrade"}, "Upgrade": {"websocket"}}, true},
		{"h2c not websocket", "GET", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"h2c"}}, false},
		{"no connection", "GET", http.Header{"Upgrade": {"websocket"}}, false},
		{"substring is not a token", "GET", http.Header{"Connection": {"notupgrade"}, "Upgrade": {"websocketx"}}, false},
		{"h2 extended connect", "CONNECT", http.Header{":protocol": {"websocket"}}, true},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, "https://gw.example.ts.net/", nil)
		r.Header = tt.h
		if got := IsWebSocketUpgrade(r); got != tt.want {
			t.Errorf("IsWebSocketUpgrade(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if IsWebSocketUpgrade(nil) {
		t.Errorf("IsWebSocketUpgrade(nil) = true")
	}
}
