package setup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// A config that an earlier setup wrote for a newer line: identityScopes,
// deviceAutoApprove, publicOrigin and roles, all unknown to 2026.7.35.
const newerLineConfig = `{
  meta: { lastTouchedVersion: "2026.9.6" },
  gateway: {
    mode: "local", bind: "loopback", port: 18789,
    trustedProxies: ["127.0.0.1", "::1"],
    publicOrigin: "https://gw.tail1234.ts.net",
    roles: { viewer: { scopes: ["operator.read"] } },
    auth: { mode: "trusted-proxy",
      trustedProxy: { userHeader: "x-forwarded-user", requiredHeaders: ["x-forwarded-proto", "x-forwarded-host"],
        allowUsers: ["alice@example.com", "token:ci"], allowLoopback: true,
        deviceAutoApprove: { enabled: true, scopes: ["operator.read", "operator.write"] } },
      identityScopes: { "alice@example.com": ["operator.read", "operator.write"], "token:ci": ["operator.read"] } },
    controlUi: { allowedOrigins: ["https://gw.tail1234.ts.net"] },
  },
}`

func TestPlanPerReleaseLine(t *testing.T) {
	const (
		rmIDScopes = "remove gateway.auth.identityScopes"
		rmAuto     = "remove gateway.auth.trustedProxy.deviceAutoApprove"
		rmOrigin   = "remove gateway.publicOrigin"
		rmRoles    = "remove gateway.roles"
	)
	tests := []struct {
		name       string
		config     string
		opts       Options
		paired     bool     // the gateway has `pairing required`
		want       []string // the exact diff
		line       string
		notesHave  []string
		notesLack  []string
		wantSource release.Source
	}{
		{name: "2026.7.35 from openclaw_version removes what it does not know", config: newerLineConfig,
			opts: Options{Version: release.Evidence{Configured: "2026.7.35"}},
			want: []string{rmAuto, rmIDScopes, rmOrigin, rmRoles}, line: "2026.7.35", wantSource: release.SourceConfigured,
			notesHave: []string{"planned for OpenClaw 2026.7.35, from openclaw_version", "the config was last written by OpenClaw 2026.9.6",
				"OpenClaw 2026.7.35 has no gateway.auth.identityScopes", "openclaw devices approve <requestId>",
				"keeps every scope it asked for at pairing, operator.admin included", "Approve devices only for users whose clawgate rule grants every scope the device asks for",
				"upgrade OpenClaw to 2026.8.2 or newer", "clawgate.paired_devices_uncapped"}},
		{name: "2026.7.35 with pairing required writes no deviceAutoApprove and says so", config: `{gateway: {port: 18789}}`,
			opts: Options{Version: release.Evidence{Configured: "2026.7.35"}}, paired: true,
			want: cat(addLoopbackB, addProxies, addTP, addHeader, addRequired, addLoopback, addUsers, addOrigins), line: "2026.7.35",
			wantSource: release.SourceConfigured,
			notesHave: []string{"OpenClaw 2026.7.35 has no deviceAutoApprove: approve each new browser once with openclaw devices approve",
				"keeps every scope it asked for at pairing, operator.admin included"}},
		{name: "2026.8.2 from the config's hint keeps them", config: strings.Replace(newerLineConfig, `"2026.9.6"`, `"2026.8.2"`, 1),
			paired: true, want: nil, line: "2026.8.2", wantSource: release.SourceConfigHint,
			notesHave: []string{"planned for OpenClaw 2026.8.2, from meta.lastTouchedVersion"},
			notesLack: []string{"has no gateway.auth.identityScopes", "clawgate.paired_devices_uncapped"}},
		{name: "no version: the newest line, and how to say otherwise", config: `{gateway: {port: 18789}}`,
			want: cat(addLoopbackB, addProxies, addTP, trustedTail, addOrigins), line: "2026.9.6", wantSource: release.SourceNone,
			notesHave: []string{"planned for OpenClaw 2026.9.6", "set openclaw_version in its clawgate gateway block"},
			notesLack: []string{"clawgate.paired_devices_uncapped"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "openclaw.json")
			if err := os.WriteFile(path, []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			e := testEdge(t)
			e.EdgePairing = tt.paired
			p, err := Prepare(loadOpts(t, path), e, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := diffLines(p); !slices.Equal(got, tt.want) {
				t.Errorf("diff =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if p.OpenClaw.Line != tt.line || p.OpenClaw.Source != tt.wantSource {
				t.Errorf("OpenClaw = %+v, want line %s from %s", p.OpenClaw, tt.line, tt.wantSource)
			}
			notes := strings.Join(p.Notes, "\n")
			for _, w := range tt.notesHave {
				if !strings.Contains(notes, w) {
					t.Errorf("notes do not say %q:\n%s", w, notes)
				}
			}
			for _, w := range tt.notesLack {
				if strings.Contains(notes, w) {
					t.Errorf("notes say %q:\n%s", w, notes)
				}
			}
			if len(tt.want) == 0 {
				return
			}
			if _, err := p.Write(time.Date(2026, 7, 3, 12, 0, 0, 0, time.UTC)); err != nil {
				t.Fatalf("Write: %v", err)
			}
			again, err := Prepare(loadOpts(t, path), e, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := diffLines(again); len(got) != 0 {
				t.Errorf("after writing, the plan still has changes: %q", got)
			}
		})
	}
}

// TestPrepareValidatesAgainstTheLine: setup refuses a result the target line
// would not start on, judged by that line's schema: a key only 2026.7.35
// knows is written for 2026.7.35 and refused for 2026.9.6.
func TestPrepareValidatesAgainstTheLine(t *testing.T) {
	const config = `{gateway: {port: 18789}, agents: {defaults: {contextTokens: 100000}}}`
	tests := []struct {
		version    string
		unwritable []string // what Unwritable must say; none when the plan is written
	}{
		{"2026.7.35", nil},
		{"2026.9.6", []string{"OpenClaw would refuse", `agents.defaults: Unrecognized key: "contextTokens"`, "check that this OpenClaw is 2026.9.6"}},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "openclaw.json")
			if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := Prepare(loadOpts(t, path), testEdge(t), Options{Version: release.Evidence{Configured: tt.version}})
			if err != nil {
				t.Fatal(err)
			}
			if !p.Pending() {
				t.Fatal("the plan is empty")
			}
			if tt.unwritable == nil {
				if p.Unwritable != "" {
					t.Fatalf("Unwritable = %q, want the plan written", p.Unwritable)
				}
				if _, err := p.Write(time.Now()); err != nil {
					t.Fatalf("Write: %v", err)
				}
				return
			}
			for _, want := range tt.unwritable {
				if !strings.Contains(p.Unwritable, want) {
					t.Errorf("Unwritable = %q, want it to say %q", p.Unwritable, want)
				}
			}
			if _, err := p.Write(time.Now()); err == nil {
				t.Errorf("Write succeeded on a plan the line's schema refuses")
			}
			if now, _ := os.ReadFile(path); string(now) != config {
				t.Errorf("the file changed")
			}
		})
	}
}

// TestWriteAuditsByTheLine: the audit of the written config follows the
// plan's OpenClaw line as the gate's does. 2026.7.35's audit calls a
// trusted-proxy gateway on loopback unauthenticated
// (gateway.loopback_no_auth), which a consistent clawgate front door
// expects there; newer lines count trusted-proxy auth as auth.
func TestWriteAuditsByTheLine(t *testing.T) {
	tests := []struct {
		version      string
		wantLoopback bool
	}{
		{"2026.7.35", true},
		{"2026.8.2", false},
		{"2026.9.6", false},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "openclaw.json")
			if err := os.WriteFile(path, []byte(`{gateway: {port: 18789}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := Prepare(loadOpts(t, path), testEdge(t), Options{Version: release.Evidence{Configured: tt.version}})
			if err != nil {
				t.Fatal(err)
			}
			res, err := p.Write(time.Date(2026, 7, 3, 12, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if len(res.Consistency) != 0 {
				t.Errorf("Consistency = %+v, want none", res.Consistency)
			}
			var got bool
			for _, f := range res.Report.Findings {
				if f.CheckID == "gateway.loopback_no_auth" {
					got = f.Severity == "critical"
				}
			}
			if got != tt.wantLoopback {
				t.Errorf("the audit reports gateway.loopback_no_auth critical: %v, want %v (findings %+v)", got, tt.wantLoopback, res.Report.Findings)
			}
			if expected := slices.Contains(res.Expected, "gateway.loopback_no_auth"); expected != tt.wantLoopback {
				t.Errorf("Expected = %q: holds gateway.loopback_no_auth %v, want %v", res.Expected, expected, tt.wantLoopback)
			}
			if !slices.Contains(res.Expected, "gateway.trusted_proxy_auth") {
				t.Errorf("Expected = %q, want gateway.trusted_proxy_auth in it", res.Expected)
			}
		})
	}
}
