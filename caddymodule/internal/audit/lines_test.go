package audit

import (
	"slices"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

func treeConfig(tree map[string]any) *Config {
	return &Config{Tree: tree, env: EnvMap(nil), Unresolved: map[string]bool{}}
}

func findingIDs2(r Report) []string {
	var ids []string
	for _, f := range r.Findings {
		ids = append(ids, f.CheckID+" "+string(f.Severity))
	}
	return ids
}

// A placeholder token: 2026.9.6's audit calls it critical, the older lines'
// audits only a short token. On an older line both are reported, the newer
// one as clawgate's, and it blocks as it would on 2026.9.6.
func TestRunOlderLineKeepsNewerChecks(t *testing.T) {
	tree := func() map[string]any {
		return map[string]any{"gateway": map[string]any{"mode": "local", "bind": "loopback", "auth": map[string]any{"mode": "token", "token": "null"}}}
	}
	tests := []struct {
		line      string
		want      []string
		wantNever []string
	}{
		{line: "", want: []string{"gateway.token_placeholder_value critical"}, wantNever: []string{"gateway.token_too_short warn"}},
		{line: "2026.9.6", want: []string{"gateway.token_placeholder_value critical"}, wantNever: []string{"gateway.token_too_short warn"}},
		{line: "2026.8.2", want: []string{"gateway.token_too_short warn", NewerPrefix + "gateway.token_placeholder_value critical"}, wantNever: []string{"gateway.token_placeholder_value critical"}},
		{line: "2026.7.35", want: []string{"gateway.token_too_short warn", NewerPrefix + "gateway.token_placeholder_value critical"}, wantNever: []string{"gateway.token_placeholder_value critical"}},
		// Not a supported line: the newest line's audit.
		{line: "2026.7.40", want: []string{"gateway.token_placeholder_value critical"}, wantNever: []string{"gateway.token_too_short warn"}},
	}
	for _, tt := range tests {
		got := Run(treeConfig(tree()), RunOptions{Line: tt.line, SkipFilesystem: true})
		ids := findingIDs2(got)
		for _, w := range tt.want {
			if !slices.Contains(ids, w) {
				t.Errorf("Run(line %q) = %q, want %q among them", tt.line, ids, w)
			}
		}
		for _, w := range tt.wantNever {
			if slices.Contains(ids, w) {
				t.Errorf("Run(line %q) = %q, want no %q", tt.line, ids, w)
			}
		}
		if n := len(got.Blocking(SeverityCritical, nil)); n != 1 {
			t.Errorf("Run(line %q): %d blocking critical findings, want 1 (the gate is never weaker on an older line)", tt.line, n)
		}
		if n := len(got.Blocking(SeverityCritical, []string{"gateway.token_placeholder_value"})); n != 0 {
			t.Errorf("Run(line %q): expecting gateway.token_placeholder_value leaves %d blocking, want 0", tt.line, n)
		}
	}

	// security.audit.suppressions name the plain check ID.
	sup := tree()
	sup["security"] = map[string]any{"audit": map[string]any{"suppressions": []any{map[string]any{"checkId": "gateway.token_placeholder_value", "reason": "test"}}}}
	got := Run(treeConfig(sup), RunOptions{Line: "2026.7.35", SkipFilesystem: true})
	if len(got.SuppressedFindings) != 1 || got.SuppressedFindings[0].CheckID != NewerPrefix+"gateway.token_placeholder_value" {
		t.Errorf("suppressed = %+v, want the clawgate.newer finding", got.SuppressedFindings)
	}
	for _, f := range got.Findings {
		if strings.Contains(f.CheckID, "placeholder") {
			t.Errorf("finding %s survived a suppression of its plain check ID", f.CheckID)
		}
	}
	if n := len(Run(treeConfig(sup), RunOptions{SkipFilesystem: true}).SuppressedFindings); n != 1 {
		t.Errorf("newest line: %d suppressed, want 1", n)
	}
}

// Behind clawgate, 2026.7.35's audit reports gateway.loopback_no_auth for a
// trusted-proxy gateway: expected by design there, and only there, and only
// in trusted-proxy mode.
func TestExpectedByDesignOn(t *testing.T) {
	trusted := treeConfig(map[string]any{"gateway": map[string]any{"mode": "local", "bind": "loopback", "auth": map[string]any{"mode": "trusted-proxy"}}})
	token := treeConfig(map[string]any{"gateway": map[string]any{"mode": "local", "bind": "loopback", "auth": map[string]any{"mode": "token", "token": strings.Repeat("x", 40)}}})
	critical := []Finding{{CheckID: "clawgate.bind", Severity: SeverityCritical}}
	tests := []struct {
		name string
		cfg  *Config
		line string
		cons []Finding
		want bool
	}{
		{"trusted-proxy on 2026.7.35", trusted, "2026.7.35", nil, true},
		{"trusted-proxy on 2026.8.2", trusted, "2026.8.2", nil, false},
		{"trusted-proxy on the newest line", trusted, "", nil, false},
		{"token on 2026.7.35", token, "2026.7.35", nil, false},
		{"trusted-proxy on 2026.7.35, inconsistent with the edge", trusted, "2026.7.35", critical, false},
	}
	for _, tt := range tests {
		got := slices.Contains(ExpectedByDesignOn(tt.cfg, tt.line, tt.cons), "gateway.loopback_no_auth")
		if got != tt.want {
			t.Errorf("%s: ExpectedByDesignOn excuses gateway.loopback_no_auth = %v, want %v", tt.name, got, tt.want)
		}
	}
	// And the real finding is there to excuse.
	ids := findingIDs2(Run(trusted, RunOptions{Line: "2026.7.35", SkipFilesystem: true}))
	if !slices.Contains(ids, "gateway.loopback_no_auth critical") {
		t.Errorf("2026.7.35 audit of a trusted-proxy gateway = %q, want gateway.loopback_no_auth critical", ids)
	}
}

func TestValidateLenient(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"gateway": map[string]any{"mode": "local", "bind": "loopback"}}
	}
	tests := []struct {
		name        string
		edit        func(map[string]any)
		wantUnknown []string
		wantIssues  []string
	}{
		{name: "valid", edit: func(map[string]any) {}},
		{
			name:        "unknown keys at several depths",
			edit:        func(m map[string]any) { m["futureTop"] = 1; m["gateway"].(map[string]any)["futureKnob"] = true },
			wantUnknown: []string{"futureTop", "gateway.futureKnob"},
		},
		{
			name: "an unknown channel and a channel's unknown key surface in a second round",
			edit: func(m map[string]any) {
				m["gateway"].(map[string]any)["futureKnob"] = true
				m["channels"] = map[string]any{"futurechat": map[string]any{}, "telegram": map[string]any{"botToken": "1:x", "futureOption": 1}}
			},
			wantUnknown: []string{"gateway.futureKnob", "channels.telegram.futureOption", "channels.futurechat"},
		},
		{
			name:        "a wrong value still makes the config invalid",
			edit:        func(m map[string]any) { m["gateway"].(map[string]any)["port"] = "high"; m["futureTop"] = 1 },
			wantUnknown: []string{"futureTop"},
			wantIssues:  []string{"gateway.port"},
		},
		{
			name:        "an unknown key holding a dot",
			edit:        func(m map[string]any) { m["gateway"].(map[string]any)["a.b"] = 1 },
			wantUnknown: []string{"gateway.a.b"},
		},
		{
			name: "an unknown key below a key holding a dot cannot be found again and stays an issue",
			edit: func(m map[string]any) {
				m["plugins"] = map[string]any{"entries": map[string]any{"my.plugin": map[string]any{"futureKnob": 1}}}
			},
			wantIssues: []string{"plugins.entries.my.plugin"},
		},
	}
	for _, tt := range tests {
		tree := base()
		tt.edit(tree)
		cfg := treeConfig(tree)
		unknown, issues, err := ValidateLenient(cfg)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		slices.Sort(unknown)
		want := slices.Clone(tt.wantUnknown)
		slices.Sort(want)
		if !slices.Equal(unknown, want) {
			t.Errorf("%s: unknown = %q, want %q", tt.name, unknown, want)
		}
		if got := IssuePaths(issues); !slices.Equal(got, tt.wantIssues) {
			t.Errorf("%s: issues = %+v, want paths %q", tt.name, issues, tt.wantIssues)
		}
		if _, ok := cfg.Tree["futureTop"]; tt.name == "unknown keys at several depths" && !ok {
			t.Errorf("%s: ValidateLenient changed the caller's config", tt.name)
		}
	}
}

func TestUnsupportedVersion(t *testing.T) {
	tests := []struct {
		ev   release.Evidence
		want bool
	}{
		{release.Evidence{}, false},
		{release.Evidence{Configured: "2026.9.6"}, false},
		{release.Evidence{Configured: "2026.7.35"}, false},
		{release.Evidence{Configured: "2027.1.0"}, true},
		{release.Evidence{Hint: "2026.6.35"}, true},
		{release.Evidence{Package: "2026.9.6", Hint: "2027.1.0"}, false},
	}
	for _, tt := range tests {
		a := release.Assume(tt.ev)
		if got := UnsupportedVersion(a); got != tt.want {
			t.Errorf("UnsupportedVersion(%+v) = %v, want %v", a, got, tt.want)
		}
	}
	f := UnknownKeysFinding(release.Assume(release.Evidence{Configured: "2027.1.0"}), []string{"gateway.futureKnob"})
	for _, s := range []string{"2027.1.0", "openclaw_version", release.Newest().Version.String(), "gateway.futureKnob", "not a supported release line"} {
		if !strings.Contains(f.Detail, s) {
			t.Errorf("UnknownKeysFinding detail %q does not name %q", f.Detail, s)
		}
	}
	if f.Severity != SeverityWarn || f.CheckID != UnknownKeysCheckID {
		t.Errorf("UnknownKeysFinding = %s %s, want %s warn", f.CheckID, f.Severity, UnknownKeysCheckID)
	}
}

// BenchmarkAuditLines is BenchmarkAudit following each release line: an
// older line runs the checks twice (its own rules and the newest line's,
// for the clawgate.newer findings).
func BenchmarkAuditLines(b *testing.B) {
	opts := benchLoadOptions(b)
	for _, l := range release.Lines() {
		line := l.Version.String()
		b.Run(line, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cfg, err := Load(opts)
				if err != nil {
					b.Fatal(err)
				}
				if r := Run(cfg, RunOptions{Line: line}); len(r.Findings) == 0 {
					b.Fatal("no findings")
				}
			}
		})
	}
}
