package release

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Version
		bad  bool
	}{
		{in: "2026.9.6", want: Version{2026, 9, 6}},
		{in: " v2026.7.35 ", want: Version{2026, 7, 35}},
		{in: "2026.8.2-beta.1", want: Version{2026, 8, 2}},
		{in: "2026.10.0+abc", want: Version{2026, 10, 0}},
		{in: "", bad: true},
		{in: "2026.9", bad: true},
		{in: "2026.9.6.1", bad: true},
		{in: "2026.13.1", bad: true},
		{in: "2026.0.1", bad: true},
		{in: "2026.09.6", bad: true},
		{in: "1999.9.6", bad: true},
		{in: "latest", bad: true},
		{in: "2026.9.-1", bad: true},
		{in: "99999999.1.1", bad: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", tt.in, got)
			} else if !strings.Contains(err.Error(), "is not an OpenClaw version") {
				t.Errorf("Parse(%q) error %q does not say what is wrong", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestCompare(t *testing.T) {
	order := []string{"2026.6.35", "2026.7.35", "2026.8.2", "2026.9.6", "2026.10.1", "2027.1.0"}
	for i := range order {
		for j := range order {
			a, _ := Parse(order[i])
			b, _ := Parse(order[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("%s.Compare(%s) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestLines(t *testing.T) {
	ls := Lines()
	if len(ls) != 3 || ls[0].Version.String() != "2026.9.6" {
		t.Fatalf("Lines() = %v, want 2026.9.6 (pinned) first of three", ls)
	}
	for i := 1; i < len(ls); i++ {
		if ls[i].Version.Compare(ls[i-1].Version) >= 0 {
			t.Errorf("Lines() not newest first: %s after %s", ls[i].Version, ls[i-1].Version)
		}
	}
	old, _ := Lookup(Version{2026, 7, 35})
	if old.IdentityScopes || old.DeviceAutoApprove || old.PublicOrigin || old.Roles {
		t.Errorf("2026.7.35 = %+v, want none of identityScopes, deviceAutoApprove, publicOrigin, roles", old)
	}
	ls[0].NoScopes = "changed"
	if Newest().NoScopes == "changed" {
		t.Error("Lines() returned the package's own slice")
	}
}

func TestAssume(t *testing.T) {
	tests := []struct {
		name     string
		ev       Evidence
		version  string
		source   Source
		line     string
		known    bool
		noScopes string
		whyHas   []string
		identity bool
	}{
		{name: "nothing known", ev: Evidence{}, source: SourceNone, line: "2026.9.6", noScopes: NoScopesUnmeasured, identity: true,
			whyHas: []string{"no OpenClaw version is known", "openclaw_version", "clawgate.none"}},
		{name: "configured known line", ev: Evidence{Configured: "2026.7.35"}, version: "2026.7.35", source: SourceConfigured, line: "2026.7.35", known: true, noScopes: "",
			whyHas: []string{"OpenClaw 2026.7.35, from openclaw_version"}},
		{name: "package wins over the hint", ev: Evidence{Package: "2026.8.2", Hint: "2026.7.35"}, version: "2026.8.2", source: SourcePackage, line: "2026.8.2", known: true, noScopes: "", identity: true,
			whyHas: []string{"from package", "last written by OpenClaw 2026.7.35"}},
		{name: "hint alone", ev: Evidence{Hint: "2026.9.6"}, version: "2026.9.6", source: SourceConfigHint, line: "2026.9.6", known: true, noScopes: "", identity: true},
		{name: "configured and package disagree", ev: Evidence{Configured: "2026.9.6", Package: "2026.7.35"}, version: "2026.9.6", source: SourceConfigured, line: "2026.9.6", known: true, noScopes: NoScopesUnmeasured, identity: true,
			whyHas: []string{"package says 2026.7.35"}},
		{name: "newer than every line", ev: Evidence{Configured: "2027.1.4"}, version: "2027.1.4", source: SourceConfigured, line: "2026.9.6", noScopes: NoScopesUnmeasured, identity: true,
			whyHas: []string{"not a supported line", "every check stays on"}},
		{name: "between lines", ev: Evidence{Hint: "2026.8.1"}, version: "2026.8.1", source: SourceConfigHint, line: "2026.7.35", noScopes: NoScopesUnmeasured},
		{name: "older than every line", ev: Evidence{Hint: "2026.6.35"}, version: "2026.6.35", source: SourceConfigHint, line: "2026.7.35", noScopes: NoScopesUnmeasured},
		{name: "unparsable hint", ev: Evidence{Hint: "next"}, version: "next", source: SourceConfigHint, line: "2026.9.6", noScopes: NoScopesUnmeasured, identity: true,
			whyHas: []string{`"next" is not an OpenClaw version`}},
		{name: "unreadable package falls back to the hint", ev: Evidence{PackageErr: "open package.json: no such file", Hint: "2026.7.35"}, version: "2026.7.35", source: SourceConfigHint, line: "2026.7.35", known: true, noScopes: "",
			whyHas: []string{"could not be read: open package.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Assume(tt.ev)
			if got.Version != tt.version || got.Source != tt.source || got.Line != tt.line || got.Known != tt.known || got.NoScopes != tt.noScopes {
				t.Errorf("Assume(%+v) = %+v, want version %q source %q line %q known %v no-scopes %q", tt.ev, got, tt.version, tt.source, tt.line, tt.known, tt.noScopes)
			}
			if got.Features().IdentityScopes != tt.identity {
				t.Errorf("Assume(%+v).Features().IdentityScopes = %v, want %v", tt.ev, got.Features().IdentityScopes, tt.identity)
			}
			for _, w := range tt.whyHas {
				if !strings.Contains(got.Why, w) {
					t.Errorf("Assume(%+v).Why = %q, want it to mention %q", tt.ev, got.Why, w)
				}
			}
		})
	}
}

func TestPackageVersion(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "package.json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("openclaw", `{"name":"openclaw","version":"2026.7.35","type":"module"}`)
	if v, err := PackageVersion(good); err != nil || v != "2026.7.35" {
		t.Errorf("PackageVersion(dir) = %q, %v; want 2026.7.35", v, err)
	}
	if v, err := PackageVersion(filepath.Join(good, "package.json")); err != nil || v != "2026.7.35" {
		t.Errorf("PackageVersion(package.json) = %q, %v; want 2026.7.35", v, err)
	}
	bad := []struct {
		name, dir, want string
	}{
		{"missing", filepath.Join(dir, "nowhere"), "no such file"},
		{"other package", write("other", `{"name":"left-pad","version":"1.3.0"}`), `names package "left-pad"`},
		{"not json", write("broken", `{"name":`), "package.json"},
		{"bad version", write("badver", `{"name":"openclaw","version":"latest"}`), "is not an OpenClaw version"},
	}
	for _, tt := range bad {
		if v, err := PackageVersion(tt.dir); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("PackageVersion(%s) = %q, %v; want an error mentioning %q", tt.name, v, err, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"2026.9.6", "v2026.7.35", "2026.8.2-beta.1", "", "2026.13.1", "..", "2026.09.6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(v.String())
		if err != nil || again != v {
			t.Fatalf("Parse(%q) = %v, but Parse(%q) = %v, %v", s, v, v.String(), again, err)
		}
	})
}

func TestConfigHint(t *testing.T) {
	tests := []struct {
		tree map[string]any
		want string
	}{
		{map[string]any{"meta": map[string]any{"lastTouchedVersion": "2026.8.2"}}, "2026.8.2"},
		{map[string]any{"meta": map[string]any{"lastTouchedVersion": 2026}}, ""},
		{map[string]any{"meta": "2026.8.2"}, ""},
		{map[string]any{}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := ConfigHint(tt.tree); got != tt.want {
			t.Errorf("ConfigHint(%v) = %q, want %q", tt.tree, got, tt.want)
		}
	}
}
