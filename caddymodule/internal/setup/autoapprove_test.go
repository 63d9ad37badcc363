package setup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// TestPlanDeviceAutoApprove: setup turns OpenClaw's deviceAutoApprove on
// only where clawgate pairs each device and a browser comes (pairing
// required, origins set), with the non-admin scopes the rules grant; turns it
// off where clawgate does not pair; and on a line without the key writes
// nothing but says what to do instead.
func TestPlanDeviceAutoApprove(t *testing.T) {
	const (
		on       = `add gateway.auth.trustedProxy.deviceAutoApprove.enabled = true`
		scopes   = `add gateway.auth.trustedProxy.deviceAutoApprove.scopes = ["operator.read","operator.write"]`
		off      = `set gateway.auth.trustedProxy.deviceAutoApprove.enabled = false`
		manual   = "OpenClaw 2026.7.35 has no deviceAutoApprove: approve each new browser once with openclaw devices approve"
		noPair   = "--device-auto-approve: the gateway has no `pairing required` in clawgate, so nothing is written"
		noScopes = "deviceAutoApprove: clawgate's rules grant no non-admin operator scope"
		base     = `{gateway: {port: 18789, auth: {mode: "trusted-proxy", trustedProxy: {}}}}`
		enabled  = `{gateway: {port: 18789, auth: {mode: "trusted-proxy", trustedProxy: {deviceAutoApprove: {enabled: true, scopes: ["operator.read", "operator.admin"]}}}}}`
		double   = "clawgate.control_ui_double_pairing warn"
		single   = "clawgate.device_auto_approve_without_edge_pairing critical"
	)
	tests := []struct {
		name      string
		config    string
		paired    bool
		origins   bool
		adminOnly bool // the rules grant operator.admin and nothing else
		opts      Options
		want      []string // auto-approval changes, in order
		before    string   // the pairing finding before the change, if any
		notes     []string
		noNotes   []string
	}{
		{name: "pairing required and origins", paired: true, origins: true, want: []string{on, scopes}, before: double, noNotes: []string{manual}},
		{name: "pairing required, no origin", paired: true},
		{name: "pairing required, no origin, asked for", paired: true, opts: Options{DeviceAutoApprove: true}, want: []string{on, scopes}},
		{name: "no pairing", origins: true, noNotes: []string{noPair}},
		{name: "no pairing, asked for", origins: true, opts: Options{DeviceAutoApprove: true}, notes: []string{noPair}},
		{name: "no pairing, already on", origins: true, config: enabled, want: []string{off}, before: single},
		{name: "pairing required, already on with admin", paired: true, origins: true, config: enabled,
			want: []string{`set gateway.auth.trustedProxy.deviceAutoApprove.scopes = ["operator.read","operator.write"]`}},
		{name: "pairing required, rules grant only admin", paired: true, origins: true, adminOnly: true, notes: []string{noScopes}},
		{name: "2026.7.35, pairing required and origins", paired: true, origins: true,
			opts: Options{Version: release.Evidence{Configured: "2026.7.35"}}, notes: []string{manual}},
		{name: "2026.7.35, no pairing", origins: true,
			opts: Options{Version: release.Evidence{Configured: "2026.7.35"}}, noNotes: []string{manual}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{
				Guards: []Guard{{Port: 18789, Rules: []string{"allow user:alice@example.com scopes operator.read,operator.write,operator.admin"}}},
				Gated:  true, EdgePairing: tt.paired,
			}
			if tt.adminOnly {
				in.Guards[0].Rules = []string{"allow user:alice@example.com scopes operator.admin"}
			}
			if tt.origins {
				in.Origins = []string{"https://gw.tail1234.ts.net"}
			}
			e, err := Derive(in)
			if err != nil {
				t.Fatal(err)
			}
			config := tt.config
			if config == "" {
				config = base
			}
			path := filepath.Join(t.TempDir(), "openclaw.json")
			if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := Prepare(loadOpts(t, path), e, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range diffLines(p) {
				if strings.Contains(l, "deviceAutoApprove") {
					got = append(got, l)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("auto-approval changes = %q, want %q", got, tt.want)
			}
			for _, c := range p.Changes {
				if strings.Contains(c.Path, "deviceAutoApprove") && strings.Contains(c.New, "operator.admin") {
					t.Errorf("%s = %s grants admin", c.Path, c.New)
				}
			}
			notes := strings.Join(p.Notes, "\n")
			for _, n := range tt.notes {
				if !strings.Contains(notes, n) {
					t.Errorf("notes lack %q:\n%s", n, notes)
				}
			}
			for _, n := range tt.noNotes {
				if strings.Contains(notes, n) {
					t.Errorf("notes say %q:\n%s", n, notes)
				}
			}
			// The finding the change answers is there before it and gone
			// after it.
			if len(tt.want) == 0 {
				return
			}
			cfg, err := audit.Load(loadOpts(t, path))
			if err != nil {
				t.Fatal(err)
			}
			before := pairingFindings(audit.Consistency(cfg, e.Expect()))
			if want := []string{tt.before}; tt.before == "" && len(before) > 0 || tt.before != "" && !slices.Equal(before, want) {
				t.Errorf("before the change: pairing findings %q, want %q", before, tt.before)
			}
			res, err := p.Write(time.Date(2026, 7, 3, 12, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if after := pairingFindings(res.Consistency); len(after) > 0 {
				t.Errorf("after the write: pairing findings %q", after)
			}
		})
	}
}

// pairingFindings are the IDs of the device-pairing consistency findings.
func pairingFindings(fs []audit.Finding) []string {
	var out []string
	for _, f := range fs {
		if f.CheckID == "clawgate.device_auto_approve_without_edge_pairing" || f.CheckID == "clawgate.control_ui_double_pairing" {
			out = append(out, f.CheckID+" "+string(f.Severity))
		}
	}
	return out
}
