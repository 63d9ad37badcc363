package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// auditConfig loads a JSON5 config from a private temp state dir and audits it.
func auditConfig(t *testing.T, config string, env map[string]string) Report {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"openclaw.json": config})
	chmod(t, dir, 0o700)
	cfg, err := loadDir(t, dir, env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return Run(cfg, RunOptions{Now: time.UnixMilli(1700000000000)})
}

func findingIDs(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.CheckID+" "+string(f.Severity))
	}
	return out
}

const longToken = "tok_3f9c2a7b8e1d4c6f9a0b5e2d7c8f1a3b"

func TestRunChecks(t *testing.T) {
	tests := []struct {
		name   string
		config string
		env    map[string]string
		want   []string // in report order
	}{
		{
			name:   "hardened trusted proxy behind clawgate",
			config: `{gateway: {mode: 'local', bind: 'loopback', trustedProxies: ['127.0.0.1', '::1/128'], auth: {mode: 'trusted-proxy', trustedProxy: {userHeader: 'x-forwarded-user', allowLoopback: true, allowUsers: ['a@b.c']}}}}`,
			want:   []string{"summary.attack_surface info", "gateway.trusted_proxy_auth critical", "gateway.trusted_proxy_allow_loopback warn"},
		},
		{
			name:   "env token counts as auth and is judged for length",
			config: `{gateway: {bind: 'lan', controlUi: {allowedOrigins: ['https://x']}, auth: {rateLimit: {maxAttempts: 3}}}}`,
			env:    map[string]string{"OPENCLAW_GATEWAY_TOKEN": "shorty"},
			want:   []string{"summary.attack_surface info", "gateway.token_too_short warn"},
		},
		{
			name:   "env SecretRef resolves from the environment",
			config: `{gateway: {auth: {mode: 'token', token: {source: 'env', provider: 'default', id: 'GW_TOK'}}}}`,
			env:    map[string]string{"GW_TOK": longToken},
			want:   []string{"summary.attack_surface info", "gateway.trusted_proxies_missing warn"},
		},
		{
			name:   "unresolved token is not auth",
			config: `{gateway: {auth: {mode: 'token', token: '${NOT_SET}'}}}`,
			want:   []string{"summary.attack_surface info", "gateway.trusted_proxies_missing warn", "gateway.loopback_no_auth critical", "gateway.http.no_auth warn"},
		},
		{
			name:   "open DM policy under an account reaches exec",
			config: `{gateway: {auth: {token: '` + longToken + `'}, trustedProxies: ['127.0.0.1']}, tools: {exec: {mode: 'ask'}, elevated: {enabled: false}, profile: 'minimal'}, channels: {signal: {accounts: {a: {dmPolicy: 'open', allowFrom: ['*']}}}}}`,
			want: []string{"summary.attack_surface info", "security.exposure.open_channels_with_exec warn",
				"security.exposure.open_groups_with_control_plane_tools critical", "security.trust_model.multi_user_heuristic warn"},
		},
		{
			name:   "sandbox all keeps runtime tools guarded",
			config: `{gateway: {auth: {token: '` + longToken + `'}, trustedProxies: ['::1']}, tools: {elevated: {enabled: false}, deny: ['group:automation'], fs: {workspaceOnly: true}}, agents: {defaults: {sandbox: {mode: 'all'}}}, channels: {telegram: {groupPolicy: 'open'}}}`,
			want:   []string{"summary.attack_surface info", "security.trust_model.multi_user_heuristic warn"},
		},
		{
			name:   "legacy dm.policy open",
			config: `{gateway: {auth: {token: '` + longToken + `'}, trustedProxies: ['::1']}, tools: {elevated: {enabled: false}, profile: 'messaging', deny: ['gateway']}, channels: {irc: {dm: {policy: 'open'}}}}`,
			want:   []string{"summary.attack_surface info", "security.trust_model.multi_user_heuristic warn"},
		},
		{
			name:   "hooks on a funnel are critical",
			config: `{gateway: {auth: {mode: 'password', password: 'pw_9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b'}, tailscale: {mode: 'funnel'}}, hooks: {enabled: true, token: 'hk_8f7e6d5c4b3a29180f7e6d5c4b3a2918'}}`,
			want: []string{"summary.attack_surface info", "gateway.trusted_proxies_missing warn", "gateway.tailscale_funnel critical",
				"hooks.default_session_key_unset warn", "hooks.allowed_agent_ids_unrestricted critical",
				"config.secrets.gateway_password_in_config warn", "config.secrets.hooks_token_in_config info"},
		},
		{
			name:   "plugin entry disabling the browser",
			config: `{gateway: {auth: {token: '` + longToken + `'}, trustedProxies: ['::1']}, plugins: {entries: {browser: {enabled: false}}}}`,
			want:   []string{"summary.attack_surface info"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := findingIDs(auditConfig(t, tt.config, tt.env).Findings)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("findings = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRunFilesystemChecks(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"openclaw.json":                      `{gateway: {auth: {token: '` + longToken + `'}, trustedProxies: ['::1']}, logging: {file: '` + filepath.Join(dir, "gw.log") + `'}, $include: 'extra.json'}`,
		"extra.json":                         `{}`,
		"gw.log":                             "",
		"agents/main/sessions/sessions.json": "{}",
		"credentials/x.json":                 "{}",
	})
	for p, mode := range map[string]os.FileMode{"": 0o770, "openclaw.json": 0o640, "extra.json": 0o604, "gw.log": 0o644, "agents/main/sessions/sessions.json": 0o660, "credentials": 0o750} {
		if err := os.Chmod(filepath.Join(dir, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := loadDir(t, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := findingIDs(Run(cfg, RunOptions{}).Findings)
	want := []string{"summary.attack_surface info",
		"fs.state_dir.perms_group_writable warn", "fs.config.perms_group_readable warn",
		"fs.config_include.perms_world_readable critical", "fs.credentials_dir.perms_readable warn",
		"fs.sessions_store.perms_readable warn", "fs.log_file.perms_readable warn"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("findings = %q, want %q", got, want)
	}
	if got := findingIDs(Run(cfg, RunOptions{SkipFilesystem: true}).Findings); !reflect.DeepEqual(got, want[:1]) {
		t.Errorf("SkipFilesystem findings = %q, want %q", got, want[:1])
	}
}

func TestSuppressions(t *testing.T) {
	r := auditConfig(t, `{gateway: {auth: {token: 'short'}}, security: {audit: {suppressions: [
		{checkId: 'gateway.token_too_short', detailIncludes: '5 CHARS', reason: ' accepted '},
		{checkId: 'gateway.trusted_proxies_missing', titleIncludes: 'nope'},
		{checkId: ' '},
	]}}}`, nil)
	got := findingIDs(r.Findings)
	want := []string{"summary.attack_surface info", "gateway.trusted_proxies_missing warn", "config.insecure_or_dangerous_flags warn", "security.audit.suppressions.active info"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("findings = %q, want %q", got, want)
	}
	if len(r.SuppressedFindings) != 1 || r.SuppressedFindings[0].CheckID != "gateway.token_too_short" || r.SuppressedFindings[0].Suppression.Reason != "accepted" {
		t.Errorf("suppressedFindings = %+v", r.SuppressedFindings)
	}
	if r.Summary != (Summary{Critical: 0, Warn: 2, Info: 2}) {
		t.Errorf("summary = %+v", r.Summary)
	}
	if last := r.Findings[len(r.Findings)-1]; last.Detail != "security.audit.suppressions has 3 configured suppression(s); 1 finding(s) moved to suppressedFindings." {
		t.Errorf("suppressions.active detail = %q", last.Detail)
	}
}

func TestReportJSONShape(t *testing.T) {
	r := auditConfig(t, `{gateway: {auth: {token: 'short'}, trustedProxies: ['::1']}}`, nil)
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ts":1700000000000,"summary":{"critical":0,"warn":1,"info":1},"findings":[{"checkId":"summary.attack_surface","severity":"info","title":"Attack surface summary","detail":"groups: open=0, allowlist=0\ntools.elevated: enabled\nhooks.webhooks: disabled\nhooks.internal: disabled\nbrowser control: enabled\ntrust model: personal assistant (one trusted operator boundary), not hostile multi-tenant on one shared gateway. For multiple users or organizations, run one isolated Gateway cell per tenant: https://docs.openclaw.ai/gateway/multi-tenant-hosting"},{"checkId":"gateway.token_too_short","severity":"warn","title":"Gateway token looks short","detail":"gateway auth token is 5 chars; prefer a long random token."}]}`
	if string(data) != want {
		t.Errorf("json = %s\nwant   %s", data, want)
	}
}

func TestBlocking(t *testing.T) {
	r := Report{Findings: []Finding{
		{CheckID: "a", Severity: SeverityInfo},
		{CheckID: "b", Severity: SeverityWarn},
		{CheckID: "c", Severity: SeverityCritical},
		{CheckID: "gateway.trusted_proxy_auth", Severity: SeverityCritical},
		{CheckID: "odd", Severity: "bogus"},
	}}
	tests := []struct {
		level  Severity
		expect []string
		want   []string
	}{
		{SeverityCritical, nil, []string{"c", "gateway.trusted_proxy_auth", "odd"}},
		{SeverityCritical, []string{"gateway.trusted_proxy_auth"}, []string{"c", "odd"}},
		{SeverityWarn, []string{"c"}, []string{"b", "gateway.trusted_proxy_auth", "odd"}},
		{SeverityInfo, []string{"a", "b", "c", "gateway.trusted_proxy_auth", "odd"}, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, f := range r.Blocking(tt.level, tt.expect) {
			got = append(got, f.CheckID)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Blocking(%s, %q) = %q, want %q", tt.level, tt.expect, got, tt.want)
		}
	}
}

func TestParseSeverity(t *testing.T) {
	for in, want := range map[string]Severity{"info": SeverityInfo, " WARN": SeverityWarn, "warning": SeverityWarn, "Critical": SeverityCritical} {
		if got, ok := ParseSeverity(in); !ok || got != want {
			t.Errorf("ParseSeverity(%q) = %q, %v, want %q", in, got, ok, want)
		}
	}
	if _, ok := ParseSeverity("high"); ok {
		t.Error(`ParseSeverity("high") accepted`)
	}
}

func TestIsStrictLoopbackProxy(t *testing.T) {
	tests := map[string]bool{"127.0.0.1": true, " ::1 ": true, "::1/128": true, "127.0.0.1/32": true, "::1/127": false,
		"127.0.0.1/8": false, "127.0.0.2": false, "0:0:0:0:0:0:0:1": false, "10.0.0.1": false, "": false, "127.0.0.1/": false, "127.0.0.1/x": false}
	for in, want := range tests {
		if got := isStrictLoopbackProxy(in); got != want {
			t.Errorf("isStrictLoopbackProxy(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestInferParamB(t *testing.T) {
	tests := map[string]float64{"ollama/llama3.1-8b": 8, "qwen2.5-72b-instruct": 72, "mixtral-8x7b": 0, "a3b-70B": 70,
		"gpt-5.4": 0, "deepseek-r1:1.5b": 1.5, "model-405b": 405, "x-8bit": 0, "phi-3b-mini-128b": 128}
	for in, want := range tests {
		if got := inferParamB(in); got != want {
			t.Errorf("inferParamB(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestBlockedBindReason(t *testing.T) {
	home := "/home/alice"
	tests := []struct{ bind, kind, path string }{
		{"/var/run/docker.sock:/var/run/docker.sock", "targets", "/var/run"},
		{"/run/docker.sock:/s", "targets", "/run"},
		{"/:/host", "covers", "/"},
		{"/var:/v", "covers", "/var/run"},
		{"/etc/ssl/certs:/certs:ro", "targets", "/etc"},
		{"/home/alice/.ssh:/ssh", "targets", "/home/alice/.ssh"},
		{"/home/alice:/h", "covers", "/home/alice/.aws"},
		{"data:/data", "non_absolute", "data"},
		{"./rel:/x", "non_absolute", "./rel"},
		{"/srv/project:/project", "", ""},
		{"/srv//project/../x/:/y", "", ""},
	}
	for _, tt := range tests {
		kind, path := blockedBindReason(tt.bind, home)
		if kind != tt.kind || path != tt.path {
			t.Errorf("blockedBindReason(%q) = %q, %q, want %q, %q", tt.bind, kind, path, tt.kind, tt.path)
		}
	}
}

func TestToolPolicy(t *testing.T) {
	tests := []struct {
		name   string
		policy *toolPolicy
		tool   string
		want   bool
	}{
		{"nil allows", nil, "exec", true},
		{"deny group", &toolPolicy{deny: []string{"group:runtime"}}, "exec", false},
		{"alias bash", &toolPolicy{deny: []string{"bash"}}, "exec", false},
		{"cron alias", &toolPolicy{deny: []string{"cron"}}, "automations", false},
		{"glob deny", &toolPolicy{deny: []string{"sessions_*"}}, "sessions_send", false},
		{"allow list excludes", &toolPolicy{allow: []string{"read"}, hasAllow: true}, "exec", false},
		{"write implies apply_patch", &toolPolicy{allow: []string{"write"}, hasAllow: true}, "apply_patch", true},
		{"deny beats allow", &toolPolicy{allow: []string{"*"}, hasAllow: true, deny: []string{"EXEC"}}, "exec", false},
		{"empty allow allows", &toolPolicy{allow: []string{}, hasAllow: true}, "exec", true},
	}
	for _, tt := range tests {
		if got := tt.policy.allows(tt.tool); got != tt.want {
			t.Errorf("%s: allows(%q) = %v, want %v", tt.name, tt.tool, got, tt.want)
		}
	}
}

func TestOutOfScopeIsDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range OutOfScope {
		if o.CheckID == "" || strings.TrimSpace(o.Reason) == "" {
			t.Errorf("OutOfScope entry %+v lacks an id or a reason", o)
		}
		if seen[o.CheckID] {
			t.Errorf("OutOfScope lists %s twice", o.CheckID)
		}
		seen[o.CheckID] = true
	}
}

// FuzzAudit feeds arbitrary config text through Load and Run: whatever the
// config, the audit must return a report or a load error, never panic.
func FuzzAudit(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*", "openclaw.json"))
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, in := range []string{
		"// comments\n{gateway: {bind: 'loopback', port: 0x4965, auth: {mode: 'token', token: '${X}',},},}",
		`{gateway: {$include: './gw.json5'}, "tools": {profile: 'full', allow: ['exec',]}}`,
		`{env: {vars: {X: "2"}}, gateway: {controlUi: {allowedOrigins: ['*']}, port: +Infinity}}`,
	} {
		f.Add([]byte(in))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "openclaw.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(LoadOptions{ConfigPath: p, StateDir: dir, Env: EnvMap(map[string]string{"X": "1"}), Home: dir})
		if err != nil {
			return
		}
		r := Run(cfg, RunOptions{})
		if s := summarize(r.Findings); s != r.Summary {
			t.Fatalf("summary %+v does not count findings %+v", r.Summary, s)
		}
		_ = Consistency(cfg, Expect{UserHeader: "x-forwarded-user", Users: []string{"a@b.c"}, Origins: []string{"https://n.t.ts.net"}, Port: 18789})
	})
}
