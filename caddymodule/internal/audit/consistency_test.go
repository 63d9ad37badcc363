package audit

import (
	"reflect"
	"strings"
	"testing"
)

var clawgateExpect = Expect{
	UserHeader: "x-forwarded-user",
	Users:      []string{"Alice@example.com", "bob@example.com"},
	Origins:    []string{"https://gw.tail1234.ts.net"},
	Port:       18789,
}

// goodGateway is the configuration clawgate's design asks for.
const goodGateway = `{gateway: {mode: 'local', bind: 'loopback', port: 18789, trustedProxies: ['127.0.0.1', '::1'],
  controlUi: {allowedOrigins: ['https://gw.tail1234.ts.net']},
  auth: {mode: 'trusted-proxy', trustedProxy: {userHeader: 'X-Forwarded-User', requiredHeaders: ['x-forwarded-proto', 'x-forwarded-host'],
    allowLoopback: true, allowUsers: ['alice@example.com']}}}}`

func consistencyOf(t *testing.T, config string, e Expect) []Finding {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"openclaw.json": config})
	cfg, err := loadDir(t, dir, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return Consistency(cfg, e)
}

func TestConsistency(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string // applied to goodGateway
		config  string    // used instead when set
		expect  *Expect
		want    []string
		fix     string // a remediation must contain this
	}{
		{name: "consistent", want: nil},
		{name: "auth none", replace: [2]string{"mode: 'trusted-proxy'", "mode: 'none'"}, want: []string{"clawgate.auth_mode critical"}, fix: `"trusted-proxy"`},
		{name: "token mode with a token is fine", config: `{gateway: {bind: 'loopback', trustedProxies: ['::1'], controlUi: {allowedOrigins: ['https://gw.tail1234.ts.net']}, auth: {mode: 'token', token: 'x'}}}`, want: nil},
		{name: "token mode without a token", config: `{gateway: {bind: 'loopback', trustedProxies: ['::1'], controlUi: {allowedOrigins: ['https://gw.tail1234.ts.net']}}}`, want: []string{"clawgate.auth_mode critical"}, fix: "gateway.auth.token"},
		{name: "bind lan", replace: [2]string{"bind: 'loopback'", "bind: 'lan'"}, want: []string{"clawgate.bind critical"}, fix: `Set gateway.bind to "loopback"`},
		{name: "bind unset", replace: [2]string{"bind: 'loopback', ", ""}, want: []string{"clawgate.bind critical"}, fix: `"loopback"`},
		{name: "no trusted proxies", replace: [2]string{"trustedProxies: ['127.0.0.1', '::1'],", ""}, want: []string{"clawgate.trusted_proxies critical"}, fix: `["127.0.0.1", "::1"]`},
		{name: "extra trusted proxy", replace: [2]string{"'::1']", "'::1', '10.0.0.0/8']"}, want: []string{"clawgate.trusted_proxies critical"}, fix: "exactly"},
		{name: "wrong user header", replace: [2]string{"X-Forwarded-User", "x-auth-request-email"}, want: []string{"clawgate.user_header critical"}, fix: `"x-forwarded-user"`},
		{name: "required header clawgate never sends", replace: [2]string{"'x-forwarded-host'", "'x-forwarded-host', 'x-pomerium-jwt'"}, want: []string{"clawgate.required_headers critical"}, fix: "x-forwarded-for"},
		{name: "loopback not allowed", replace: [2]string{"allowLoopback: true", "allowLoopback: false"}, want: []string{"clawgate.allow_loopback critical"}, fix: "allowLoopback to true"},
		{name: "allowUsers empty", replace: [2]string{"allowUsers: ['alice@example.com']", "allowUsers: []"}, want: []string{"clawgate.allow_users warn"}, fix: `"bob@example.com"`},
		{name: "allowUsers admits a stranger", replace: [2]string{"allowUsers: ['alice@example.com']", "allowUsers: ['alice@example.com', 'mallory@example.com']"}, want: []string{"clawgate.allow_users critical"}, fix: "allowUsers"},
		{name: "allowUsers wildcard", replace: [2]string{"allowUsers: ['alice@example.com']", "allowUsers: ['*']"}, want: []string{"clawgate.allow_users critical"}},
		{name: "origin missing", replace: [2]string{"'https://gw.tail1234.ts.net'", "'https://other.example.com'"}, want: []string{"clawgate.allowed_origins warn"}, fix: `Add ["https://gw.tail1234.ts.net"]`},
		{name: "origin wildcard", replace: [2]string{"'https://gw.tail1234.ts.net'", "'https://gw.tail1234.ts.net', '*'"}, want: []string{"clawgate.allowed_origins critical"}},
		{name: "tailscale serve", replace: [2]string{"port: 18789,", "port: 18789, tailscale: {mode: 'serve'},"}, want: []string{"clawgate.tailscale_managed critical"}, fix: `"off"`},
		{name: "real ip fallback", replace: [2]string{"port: 18789,", "port: 18789, allowRealIpFallback: true,"}, want: []string{"clawgate.real_ip_fallback critical"}, fix: "false"},
		{name: "port mismatch", replace: [2]string{"port: 18789", "port: 19001"}, want: []string{"clawgate.port critical"}, fix: "18789"},
		{name: "port check skipped", replace: [2]string{"port: 18789", "port: 19001"}, expect: &Expect{UserHeader: "x-forwarded-user", Users: []string{"alice@example.com"}, Origins: []string{"https://gw.tail1234.ts.net"}}, want: nil},
		{name: "auto-approval without edge pairing", replace: [2]string{"allowLoopback: true", "allowLoopback: true, deviceAutoApprove: {enabled: true, scopes: ['operator.read']}"},
			want: []string{"clawgate.device_auto_approve_without_edge_pairing critical"}, fix: "Turn on `pairing required` for this gateway, or turn deviceAutoApprove off"},
		{name: "auto-approval with edge pairing", replace: [2]string{"allowLoopback: true", "allowLoopback: true, deviceAutoApprove: {enabled: true, scopes: ['operator.read']}"},
			expect: withPairing(clawgateExpect), want: nil},
		{name: "auto-approval switched off without edge pairing", replace: [2]string{"allowLoopback: true", "allowLoopback: true, deviceAutoApprove: {enabled: false, scopes: ['operator.read']}"}, want: nil},
		{name: "edge pairing without auto-approval", expect: withPairing(clawgateExpect),
			want: []string{"clawgate.control_ui_double_pairing warn"}, fix: "gateway.auth.trustedProxy.deviceAutoApprove to {enabled: true"},
		{name: "edge pairing with auto-approval switched off", replace: [2]string{"allowLoopback: true", "allowLoopback: true, deviceAutoApprove: {enabled: false}"},
			expect: withPairing(clawgateExpect), want: []string{"clawgate.control_ui_double_pairing warn"}},
		{name: "edge pairing without a Control UI origin", replace: [2]string{"'https://gw.tail1234.ts.net'", "'https://other.example.com'"},
			expect: &Expect{UserHeader: "x-forwarded-user", Users: []string{"alice@example.com"}, EdgePairing: true}, want: nil},
		{name: "edge pairing on a line without deviceAutoApprove",
			expect: func() *Expect { e := withPairing(clawgateExpect); e.NoDeviceAutoApprove = true; return e }(), want: nil},
		{name: "many at once", config: `{gateway: {bind: 'lan', auth: {mode: 'trusted-proxy'}}}`,
			want: []string{"clawgate.bind critical", "clawgate.trusted_proxies critical", "clawgate.user_header critical", "clawgate.allow_loopback critical", "clawgate.allow_users warn", "clawgate.allowed_origins warn"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := tt.config
			if config == "" {
				config = goodGateway
				if tt.replace[0] != "" {
					if !strings.Contains(config, tt.replace[0]) {
						t.Fatalf("test bug: %q not in the base config", tt.replace[0])
					}
					config = strings.Replace(config, tt.replace[0], tt.replace[1], 1)
				}
			}
			e := clawgateExpect
			if tt.expect != nil {
				e = *tt.expect
			}
			got := consistencyOf(t, config, e)
			if ids := findingIDs(got); !reflect.DeepEqual(ids, tt.want) {
				t.Errorf("Consistency = %q, want %q", ids, tt.want)
			}
			if tt.fix != "" && (len(got) == 0 || !strings.Contains(got[0].Remediation, tt.fix)) {
				t.Errorf("remediation %q does not say %q", firstRemediation(got), tt.fix)
			}
			for _, f := range got {
				if f.Title == "" || f.Detail == "" || !strings.Contains(f.Remediation, "gateway.") {
					t.Errorf("finding %s does not name the key to change: %+v", f.CheckID, f)
				}
			}
		})
	}
}

// withPairing is e for a gateway with `pairing required`.
func withPairing(e Expect) *Expect {
	e.EdgePairing = true
	return &e
}

func firstRemediation(fs []Finding) string {
	if len(fs) == 0 {
		return ""
	}
	return fs[0].Remediation
}

func TestExpectedByDesign(t *testing.T) {
	want := []string{"gateway.trusted_proxy_auth", "gateway.trusted_proxy_allow_loopback"}
	if got := ExpectedByDesign(nil); !reflect.DeepEqual(got, want) {
		t.Errorf("ExpectedByDesign(nil) = %q, want %q", got, want)
	}
	if got := ExpectedByDesign([]Finding{{CheckID: "clawgate.allow_users", Severity: SeverityWarn}}); !reflect.DeepEqual(got, want) {
		t.Errorf("ExpectedByDesign(warn) = %q, want %q", got, want)
	}
	if got := ExpectedByDesign([]Finding{{CheckID: "clawgate.bind", Severity: SeverityCritical}}); got != nil {
		t.Errorf("ExpectedByDesign(critical) = %q, want nil", got)
	}
}

// TestGateOnClawgateConfig ties the pieces together the way the gate uses
// them: a consistent trusted-proxy config passes once the by-design
// findings are expected, and an inconsistent one does not.
func TestGateOnClawgateConfig(t *testing.T) {
	for _, tt := range []struct {
		name    string
		config  string
		blocked []string
	}{
		{"consistent", goodGateway, nil},
		{"inconsistent", strings.Replace(goodGateway, "allowLoopback: true", "allowLoopback: true, deviceAutoApprove: {enabled: true, scopes: ['operator.admin']}", 1), []string{"gateway.trusted_proxy_device_auto_approve_admin"}},
		{"bind lan", strings.Replace(goodGateway, "bind: 'loopback'", "bind: 'lan'", 1), []string{"gateway.trusted_proxy_auth"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{"openclaw.json": tt.config})
			chmod(t, dir, 0o700)
			cfg, err := loadDir(t, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Edge pairing, so that auto-approval itself is consistent.
			expect := ExpectedByDesign(Consistency(cfg, *withPairing(clawgateExpect)))
			var got []string
			for _, f := range Run(cfg, RunOptions{}).Blocking(SeverityCritical, expect) {
				got = append(got, f.CheckID)
			}
			if !reflect.DeepEqual(got, tt.blocked) {
				t.Errorf("blocking = %q, want %q", got, tt.blocked)
			}
		})
	}
}

func TestConsistencyNamesSetup(t *testing.T) {
	cfg := &Config{Tree: map[string]any{"gateway": map[string]any{"bind": "lan"}}}
	found := Consistency(cfg, Expect{UserHeader: "x-forwarded-user"})
	if len(found) == 0 {
		t.Fatal("no clawgate.* finding for a lan bind")
	}
	for _, f := range found {
		if !strings.HasSuffix(f.Remediation, SetupRemediation) {
			t.Errorf("%s: remediation %q does not name caddy clawgate setup", f.CheckID, f.Remediation)
		}
	}
}
