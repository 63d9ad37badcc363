package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
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
			code, err := runAuditCommand(&out, tt.config, state, tt.failOn, tt.asJSON, nil)
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

// TestAuditCommandInvalidConfig: on a config OpenClaw's schema refuses,
// `caddy clawgate audit` prints what the real CLI prints (recorded in the
// audit package's invalid corpus) and exits 2, whatever --fail-on says.
func TestAuditCommandInvalidConfig(t *testing.T) {
	caseDir := filepath.Join("internal", "audit", "testdata", "invalid", "many-issues")
	src, err := os.ReadFile(filepath.Join(caseDir, "openclaw.json"))
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := os.ReadFile(filepath.Join(caseDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	type cliOutput struct {
		OK    *bool `json:"ok"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		Issues []struct {
			Path    string `json:"path"`
			Message string `json:"message"`
		} `json:"issues"`
	}
	var want cliOutput
	if err := json.Unmarshal(recorded, &want); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(state, "openclaw.json")
	if err := os.WriteFile(cfgPath, src, 0o600); err != nil {
		t.Fatal(err)
	}
	paths := func(o cliOutput) []string {
		var out []string
		for _, i := range o.Issues {
			out = append(out, i.Path)
		}
		sort.Strings(out)
		return out
	}

	var out bytes.Buffer
	code, err := runAuditCommand(&out, cfgPath, state, "never", true, nil)
	if code != 2 || err != nil {
		t.Fatalf("exit %d (%v), want 2; output:\n%s", code, err, out.String())
	}
	var got cliOutput
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if got.OK == nil || *got.OK || got.Error.Type != "cli_error" || got.Error.Message != "OpenClaw config is invalid: "+cfgPath {
		t.Errorf("ok/error = %v/%+v, want false/cli_error \"OpenClaw config is invalid: %s\"", got.OK, got.Error, cfgPath)
	}
	if g, w := paths(got), paths(want); !reflect.DeepEqual(g, w) {
		t.Errorf("issue paths = %q, the real CLI's %q", g, w)
	}

	out.Reset()
	code, err = runAuditCommand(&out, cfgPath, state, "critical", false, nil)
	if code != 2 || err != nil {
		t.Fatalf("table: exit %d (%v), want 2", code, err)
	}
	for _, want := range append([]string{"OpenClaw config is invalid", "PATH", "PROBLEM"}, paths(want)...) {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestAuditCommandSchemaPerLine: `caddy clawgate audit` validates against
// the schema of the line the config says last wrote it, both ways: a key
// only newer lines know, and one only the older line knows.
func TestAuditCommandSchemaPerLine(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	const gateway = `gateway: {mode: "local", bind: "loopback", auth: {mode: "token", token: "tok_3f9c2a7b8e1d4c6f9a0b5e2d7c8f1a3b"%s}}`
	idScopes := fmt.Sprintf(gateway, `, identityScopes: {"alice@example.com": ["operator.read"]}`)
	contextTokens := fmt.Sprintf(gateway, "") + `, agents: {defaults: {contextTokens: 100000}}`
	tests := []struct {
		line, body string
		wantPath   string // "" when the config is valid on that line
	}{
		{"2026.7.35", idScopes, "gateway.auth"},
		{"2026.8.2", idScopes, ""},
		{"2026.9.6", idScopes, ""},
		{"2026.7.35", contextTokens, ""},
		{"2026.9.6", contextTokens, "agents.defaults"},
	}
	for i, tt := range tests {
		path := filepath.Join(state, fmt.Sprintf("c%d.json", i))
		conf := `{meta: {lastTouchedVersion: "` + tt.line + `"}, ` + tt.body + `}`
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		code, err := runAuditCommand(&out, path, state, "never", true, nil)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.line, conf, err)
		}
		if tt.wantPath == "" {
			if code != 0 {
				t.Errorf("on %s, %s: exit %d, want 0:\n%s", tt.line, conf, code, out.String())
			}
			continue
		}
		var got struct {
			Issues []audit.Issue `json:"issues"`
		}
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out.String())
		}
		if code != 2 || len(got.Issues) != 1 || got.Issues[0].Path != tt.wantPath {
			t.Errorf("on %s, %s: exit %d, issues %+v; want 2 and one issue at %s", tt.line, conf, code, got.Issues, tt.wantPath)
		}
	}
}
