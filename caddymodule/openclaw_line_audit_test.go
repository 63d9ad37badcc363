package caddymodule

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
)

// gatewayVerdict is what /clawgate/gateways says about the gateway home.
type gatewayVerdict struct {
	Blocked  bool            `json:"blocked"`
	Reasons  []string        `json:"reasons"`
	Invalid  []string        `json:"invalid"`
	Findings []audit.Finding `json:"findings"`
}

func (f *versionFixture) verdict(t testing.TB) gatewayVerdict {
	t.Helper()
	resp, err := http.Get("http://" + f.admin + "/clawgate/gateways")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]gatewayVerdict
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("/clawgate/gateways: %v", err)
	}
	home, ok := got["home"]
	if !ok {
		t.Fatalf("/clawgate/gateways has no gateway home: %v", got)
	}
	return home
}

func findingOf(fs []audit.Finding, id string) (audit.Finding, bool) {
	for _, f := range fs {
		if f.CheckID == id {
			return f, true
		}
	}
	return audit.Finding{}, false
}

// execFullConfig is the good gateway config with tools.exec.mode "full":
// 2026.9.6's and 2026.8.2's audits warn about it, 2026.7.35's does not read
// tools.exec.mode at all.
var execFullConfig = strings.TrimSuffix(goodGatewayConfig, "}") + `  tools: { exec: { mode: "full" } },
}`

// telegramOpenGroupsConfig is the good gateway config with a Telegram bot
// that answers any member of any group it is in: 2026.7.35's audit runs the
// Telegram plugin's own checks and calls that critical, the newer lines'
// audits do not run them.
var telegramOpenGroupsConfig = strings.TrimSuffix(goodGatewayConfig, "}") + `  tools: { profile: "messaging", deny: ["group:automation", "gateway"], elevated: { enabled: false } },
  channels: { telegram: { botToken: "123456:ABCDEF", groupPolicy: "open", groups: { "*": { requireMention: true } } } },
}`

// TestGatewayAuditPerLine: the gate audits a gateway by the rules of the
// OpenClaw line it runs, and is never weaker on an older line.
func TestGatewayAuditPerLine(t *testing.T) {
	if !strings.Contains(execFullConfig, `mode: "full"`) {
		t.Fatal("execFullConfig does not set tools.exec.mode")
	}
	t.Run("2026.7.35 serves a trusted-proxy gateway its own audit calls unauthenticated", func(t *testing.T) {
		f := newVersionFixture(t, "openclaw_version 2026.7.35")
		f.waitGuardStatus(t, http.StatusOK, reread)
		v := f.verdict(t)
		if _, ok := findingOf(v.Findings, "gateway.loopback_no_auth"); !ok {
			t.Errorf("2026.7.35 findings %+v lack gateway.loopback_no_auth, which its real audit reports behind a trusted proxy", v.Findings)
		}
		if v.Blocked {
			t.Errorf("blocked: %q", v.Reasons)
		}
		// That line does not cap paired devices: said, as a warning.
		fd, ok := findingOf(v.Findings, audit.PairedDevicesUncappedCheckID)
		if !ok || fd.Severity != audit.SeverityWarn || !strings.Contains(fd.Detail, "operator.admin") || !strings.Contains(fd.Remediation, "2026.8.2") {
			t.Errorf("2026.7.35 findings lack a %s warning naming operator.admin and the fix: %+v", audit.PairedDevicesUncappedCheckID, fd)
		}
	})
	t.Run("2026.9.6 does not report it", func(t *testing.T) {
		f := newVersionFixture(t, "openclaw_version 2026.9.6")
		f.waitGuardStatus(t, http.StatusOK, reread)
		for _, id := range []string{"gateway.loopback_no_auth", audit.PairedDevicesUncappedCheckID} {
			if fd, ok := findingOf(f.verdict(t).Findings, id); ok {
				t.Errorf("2026.9.6 reports %+v", fd)
			}
		}
	})
	for _, tt := range []struct {
		line    string
		blocked bool
	}{
		{"2026.7.35", true},
		{"2026.8.2", false},
		{"2026.9.6", false},
	} {
		t.Run(tt.line+" judges open Telegram groups by its own audit", func(t *testing.T) {
			f := newVersionFixture(t, "openclaw_version "+tt.line+"\n\t\t\texpect "+audit.PairedDevicesUncappedCheckID)
			f.waitGuardStatus(t, http.StatusOK, reread)
			writeFileAtomic(t, f.cfgPath, []byte(telegramOpenGroupsConfig))
			if !tt.blocked {
				// The config is read again on change; wait for the audit of
				// the new one, then check it is still served.
				for deadline := time.Now().Add(reread); ; time.Sleep(50 * time.Millisecond) {
					if _, ok := findingOf(f.verdict(t).Findings, "security.trust_model.multi_user_heuristic"); ok {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the gate did not audit the Telegram config within %v: %+v", reread, f.verdict(t).Findings)
					}
				}
				f.waitGuardStatus(t, http.StatusOK, reread)
				for _, fd := range f.verdict(t).Findings {
					if strings.HasPrefix(audit.PlainCheckID(fd.CheckID), "channels.telegram.") {
						t.Errorf("%s reports %+v, which only 2026.7.35's audit does", tt.line, fd)
					}
				}
				return
			}
			body := f.waitGuardStatus(t, http.StatusServiceUnavailable, reread)
			for _, id := range []string{"channels.telegram.warning.1", "channels.telegram.groups.allowFrom.missing"} {
				if !strings.Contains(body, id) {
					t.Errorf("503 body does not name %s: %s", id, body)
				}
				if fd, ok := findingOf(f.verdict(t).Findings, id); !ok || fd.Severity != audit.SeverityCritical {
					t.Errorf("/clawgate/gateways findings lack %s critical: %+v", id, f.verdict(t).Findings)
				}
			}
		})
	}
	for _, tt := range []struct{ line, id string }{
		{"2026.9.6", "tools.exec.security_full_configured"},
		{"2026.8.2", "tools.exec.security_full_configured"},
		{"2026.7.35", audit.NewerPrefix + "tools.exec.security_full_configured"},
	} {
		t.Run(tt.line+" blocks on a newer line's warning under block_on warn", func(t *testing.T) {
			// Expected: the paired-device warning 2026.7.35 always has.
			f := newVersionFixture(t, "openclaw_version "+tt.line+"\n\t\t\tblock_on warn\n\t\t\texpect "+audit.PairedDevicesUncappedCheckID)
			f.waitGuardStatus(t, http.StatusOK, reread)
			writeFileAtomic(t, f.cfgPath, []byte(execFullConfig))
			body := f.waitGuardStatus(t, http.StatusServiceUnavailable, reread)
			if !strings.Contains(body, tt.id) {
				t.Errorf("503 body does not name %s: %s", tt.id, body)
			}
			fd, ok := findingOf(f.verdict(t).Findings, tt.id)
			if !ok || fd.Severity != audit.SeverityWarn {
				t.Errorf("/clawgate/gateways findings lack %s warn: %+v", tt.id, f.verdict(t).Findings)
			}
			if strings.HasPrefix(tt.id, audit.NewerPrefix) && !strings.Contains(fd.Title, "OpenClaw "+tt.line+"'s own audit misses it") {
				t.Errorf("%s title %q does not say the line's audit misses it", tt.id, fd.Title)
			}
		})
	}
}

// unknownKeyConfig is the good gateway config with a key no recorded
// schema knows.
var unknownKeyConfig = strings.Replace(goodGatewayConfig, "mode: \"local\",", "mode: \"local\", futureKnob: true,", 1)

// TestGatewayUnknownVersion: a version that is no supported line gets the
// newest schema, and a key that schema does not know is a finding, not an
// outage; a supported line still refuses it, as does a config with no
// version to go by.
func TestGatewayUnknownVersion(t *testing.T) {
	if !strings.Contains(unknownKeyConfig, "futureKnob") {
		t.Fatal("unknownKeyConfig does not hold futureKnob")
	}
	for _, v := range []string{"2027.1.0", "2026.6.35"} {
		t.Run(v+" serves, with the unknown key as a finding", func(t *testing.T) {
			f := newVersionFixture(t, "openclaw_version "+v)
			f.waitGuardStatus(t, http.StatusOK, reread)
			writeFileAtomic(t, f.cfgPath, []byte(unknownKeyConfig))
			// The gate sees the change within a second; it keeps serving.
			var fd audit.Finding
			var ok bool
			for deadline := time.Now().Add(reread); ; {
				f.waitGuardStatus(t, http.StatusOK, reread)
				if fd, ok = findingOf(f.verdict(t).Findings, audit.UnknownKeysCheckID); ok || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			f.waitGuardStatus(t, http.StatusOK, reread)
			if !ok {
				t.Fatalf("/clawgate/gateways findings lack %s: %+v", audit.UnknownKeysCheckID, f.verdict(t).Findings)
			}
			for _, s := range []string{"gateway.futureKnob", v, "2026.9.6", "not a supported release line"} {
				if !strings.Contains(fd.Detail, s) {
					t.Errorf("finding detail %q does not name %q", fd.Detail, s)
				}
			}
			if fd.Severity != audit.SeverityWarn {
				t.Errorf("finding severity %s, want warn", fd.Severity)
			}
			// Every security check still runs.
			if _, ok := findingOf(f.verdict(t).Findings, "gateway.trusted_proxy_auth"); !ok {
				t.Errorf("the audit did not run: %+v", f.verdict(t).Findings)
			}
		})
	}
	t.Run("2027.1.0 with a wrong value still blocks", func(t *testing.T) {
		f := newVersionFixture(t, "openclaw_version 2027.1.0")
		f.waitGuardStatus(t, http.StatusOK, reread)
		writeFileAtomic(t, f.cfgPath, []byte(strings.Replace(unknownKeyConfig, "port: 18789", `port: "high"`, 1)))
		body := f.waitGuardStatus(t, http.StatusServiceUnavailable, reread)
		if got := errorType(t, body); got != "clawgate_config_invalid" {
			t.Errorf("error.type = %q, want clawgate_config_invalid: %s", got, body)
		}
	})
	for _, lines := range []string{"openclaw_version 2026.9.6", "openclaw_version 2026.7.35", ""} {
		t.Run("known line or none ("+lines+") refuses the unknown key", func(t *testing.T) {
			f := newVersionFixture(t, lines)
			f.waitGuardStatus(t, http.StatusOK, reread)
			writeFileAtomic(t, f.cfgPath, []byte(unknownKeyConfig))
			body := f.waitGuardStatus(t, http.StatusServiceUnavailable, reread)
			if got := errorType(t, body); got != "clawgate_config_invalid" {
				t.Errorf("error.type = %q, want clawgate_config_invalid: %s", got, body)
			}
			after := f.be.count()
			f.do(t, f.url, reqOpts{bearer: f.tokCI})
			if f.be.count() != after {
				t.Errorf("a request reached a gateway whose config its line refuses")
			}
		})
	}
}

// TestAuditCommandUnknownVersion: `caddy clawgate audit` on a config last
// written by an unsupported version lists the unknown key as a finding.
func TestAuditCommandUnknownVersion(t *testing.T) {
	state := t.TempDir()
	cfgPath := filepath.Join(state, "openclaw.json")
	cfg := strings.Replace(unknownKeyConfig, "{\n", "{\n  meta: { lastTouchedVersion: \"2027.1.0\" },\n", 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code, err := runAuditCommand(&out, cfgPath, state, "never", true, nil)
	if err != nil || code != 0 {
		t.Fatalf("runAuditCommand = %d, %v: %s", code, err, out.String())
	}
	var report audit.Report
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatalf("report: %v: %s", err, out.String())
	}
	fd, ok := findingOf(report.Findings, audit.UnknownKeysCheckID)
	if !ok || !strings.Contains(fd.Detail, "gateway.futureKnob") {
		t.Errorf("report findings %+v lack %s naming gateway.futureKnob", report.Findings, audit.UnknownKeysCheckID)
	}
	if report.Summary.Warn == 0 {
		t.Errorf("summary %+v does not count the warning", report.Summary)
	}

	// Without the version hint the newest line's schema refuses the key.
	if err := os.WriteFile(cfgPath, []byte(unknownKeyConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	code, err = runAuditCommand(&out, cfgPath, state, "never", true, nil)
	if err != nil || code != 2 {
		t.Errorf("runAuditCommand without a version = %d, %v, want 2 (invalid): %s", code, err, out.String())
	}
}
