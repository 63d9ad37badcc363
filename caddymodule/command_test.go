package caddymodule

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

func TestAuditCommand(t *testing.T) {
	if _, ok := caddycmd.Commands()["clawgate"]; !ok {
		t.Fatal("caddy clawgate is not registered")
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(state, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token.json", `{gateway: {mode: "local", bind: "loopback", auth: {mode: "token", token: "`+strings.Repeat("x", 40)+`"}}}`, 0o600)
	insecure := write("insecure.json", insecureGatewayConfig, 0o600)
	touched := write("touched.json", `{meta: {lastTouchedVersion: "2026.7.35"}, gateway: {mode: "local", bind: "loopback", auth: {mode: "token", token: "`+strings.Repeat("x", 40)+`"}}}`, 0o600)
	tests := []struct {
		name, config, failOn string
		asJSON               bool
		wantCode             int
		wantOut              string
	}{
		{"clean config, table", token, "critical", false, 0, "gateway.trusted_proxies_missing"},
		{"warn findings fail on warn", token, "warn", false, 1, "SEVERITY"},
		{"insecure config fails", insecure, "critical", false, 1, "gateway.bind_no_auth"},
		{"table says which OpenClaw the config names", touched, "critical", false, 0, "OpenClaw version assumed: OpenClaw 2026.7.35, from meta.lastTouchedVersion"},
		{"table says when no OpenClaw version is known", token, "critical", false, 0, "OpenClaw version assumed: no OpenClaw version is known"},
		{"insecure config, never fails", insecure, "never", true, 0, `"checkId": "gateway.bind_no_auth"`},
		{"missing config", filepath.Join(state, "nope.json"), "critical", false, 2, ""},
		{"bad --fail-on", token, "sometimes", false, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code, err := runAuditCommand(&out, tt.config, state, tt.failOn, tt.asJSON)
			if code != tt.wantCode {
				t.Fatalf("exit %d (%v), want %d; output:\n%s", code, err, tt.wantCode, out.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
			if tt.asJSON {
				var v struct {
					TS       int64
					Summary  map[string]int
					Findings []map[string]any
				}
				if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.TS == 0 || v.Summary == nil || len(v.Findings) == 0 {
					t.Errorf("JSON output not in the real CLI's shape: %v\n%s", err, out.String())
				}
			}
		})
	}
}
