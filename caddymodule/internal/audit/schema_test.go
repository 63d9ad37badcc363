package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// validateResult is `openclaw config validate --json` as recorded by
// scripts/audit-corpus.sh record-validate.
type validateResult struct {
	OK    bool `json:"ok"`
	Valid bool `json:"valid"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	Issues []Issue `json:"issues"`
}

func pathSet(issues []Issue) []string {
	out := IssuePaths(issues)
	sort.Strings(out)
	return out
}

// validateCorpusCase loads a built case as the real CLI would and validates it.
func validateCorpusCase(t *testing.T, dir string) []Issue {
	t.Helper()
	_, env := buildCorpusCase(t, dir)
	cfg, err := Load(LoadOptions{Env: EnvMap(env), Home: env["HOME"]})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	issues, err := Validate(cfg)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return issues
}

// TestSchemaCorpus compares clawgate's validation with the real CLI's on
// every recorded case: the invalid half (testdata/invalid, each recorded as
// refused) and the audit corpus (testdata/corpus, each with the real
// validate's verdict in validate.json), on the set of issue paths.
func TestSchemaCorpus(t *testing.T) {
	invalid, _ := filepath.Glob(filepath.Join("testdata", "invalid", "*", "expected.json"))
	valid, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*", "validate.json"))
	if len(invalid) < 30 {
		t.Fatalf("invalid corpus has %d recorded cases, want at least 30", len(invalid))
	}
	cases, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*", "openclaw.json"))
	if len(valid) != len(cases) {
		t.Fatalf("%d of %d corpus cases have a recorded validate.json (run: scripts/audit-corpus.sh record-validate)", len(valid), len(cases))
	}
	agree := map[string]int{}
	total := map[string]int{}
	refusedByCLI, messages, sameMessages := 0, 0, 0
	for _, half := range []struct {
		name  string
		files []string
	}{{"invalid", invalid}, {"corpus", valid}} {
		for _, file := range half.files {
			dir := filepath.Dir(file)
			t.Run(half.name+"/"+filepath.Base(dir), func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				var want validateResult
				if err := json.Unmarshal(data, &want); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				if half.name == "invalid" && want.Valid {
					t.Fatalf("%s: the real CLI accepts this config; an invalid case must be refused", file)
				}
				if !want.Valid {
					refusedByCLI++
				}
				got := validateCorpusCase(t, dir)
				total[half.name]++
				gotMsg := map[string]bool{}
				for _, i := range got {
					gotMsg[i.Path+"\x00"+i.Message] = true
				}
				for _, i := range want.Issues {
					messages++
					if gotMsg[i.Path+"\x00"+i.Message] {
						sameMessages++
					}
				}
				if w, g := pathSet(want.Issues), pathSet(got); reflect.DeepEqual(w, g) {
					agree[half.name]++
				} else {
					t.Errorf("issue paths = %q, real CLI %q\n  clawgate: %v", g, w, got)
				}
			})
		}
	}
	fmt.Printf("TestSchemaCorpus total: invalid half %d/%d cases with the real CLI's issue paths; corpus %d/%d (%d refused by the real CLI); %d/%d of the real CLI's issue messages word for word\n",
		agree["invalid"], total["invalid"], agree["corpus"], total["corpus"], refusedByCLI-total["invalid"], sameMessages, messages)
}

// TestValidateUnresolvedEnvIsNotInvalid: OpenClaw keeps an unresolved
// ${VAR} as written and only warns, so a string field holding one is valid.
func TestValidateUnresolvedEnvIsNotInvalid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "openclaw.json")
	conf := `{gateway: {mode: "local", bind: "loopback", auth: {mode: "token", token: "${MISSING_TOKEN}"}}}`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(LoadOptions{ConfigPath: path, StateDir: dir, Env: EnvMap(map[string]string{})})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) == 0 {
		t.Errorf("Load warnings = none, want one for MISSING_TOKEN")
	}
	issues, err := Validate(cfg)
	if err != nil || len(issues) != 0 {
		t.Errorf("Validate = %v, %v; want no issues", issues, err)
	}
}

func TestLoadSchemaOncePerVersion(t *testing.T) {
	a, err := LoadSchema(DefaultSchemaVersion)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := LoadSchema(DefaultSchemaVersion)
	if a != b {
		t.Errorf("LoadSchema compiled the schema twice")
	}
	if _, err := LoadSchema("2000.1.1"); err == nil || !strings.Contains(err.Error(), DefaultSchemaVersion) {
		t.Errorf("LoadSchema(unknown) error = %v, want one naming the recorded versions", err)
	}
	if got := SchemaVersions(); !reflect.DeepEqual(got, []string{"2026.7.35", "2026.8.2", "2026.9.6"}) {
		t.Errorf("SchemaVersions() = %q", got)
	}
}

// TestEveryLineHasSchema: each supported release line has a recorded schema
// that decompresses, compiles and accepts a minimal config, and the pinned
// line's is the default.
func TestEveryLineHasSchema(t *testing.T) {
	if got, want := DefaultSchemaVersion, release.Newest().Version.String(); got != want {
		t.Errorf("DefaultSchemaVersion = %q, want the pinned line %q", got, want)
	}
	recorded := SchemaVersions()
	for _, l := range release.Lines() {
		v := l.Version.String()
		t.Run(v, func(t *testing.T) {
			if !slices.Contains(recorded, v) {
				t.Fatalf("no recorded schema for %s (recorded: %q); run: scripts/openclaw-schema.sh record %s", v, recorded, v)
			}
			s, err := LoadSchema(v)
			if err != nil {
				t.Fatalf("LoadSchema(%q): %v", v, err)
			}
			if s.Version != v {
				t.Errorf("LoadSchema(%q).Version = %q", v, s.Version)
			}
			tree := map[string]any{"gateway": map[string]any{"mode": "local", "bind": "loopback"}}
			if issues := s.Validate(tree); len(issues) != 0 {
				t.Errorf("%s: minimal config: issues %v, want none", v, issues)
			}
			bad := map[string]any{"gateway": map[string]any{"mode": "local", "bind": "everywhere"}}
			if issues := s.Validate(bad); !slices.Equal(IssuePaths(issues), []string{"gateway.bind"}) {
				t.Errorf("%s: bind \"everywhere\": issues %v, want one at gateway.bind", v, issues)
			}
		})
	}
}

// TestValidateVersionKeysPerLine: a key only newer lines know is refused by
// an older line's schema and accepted by the lines that have it.
func TestValidateVersionKeysPerLine(t *testing.T) {
	tree := map[string]any{"gateway": map[string]any{
		"mode": "local", "bind": "loopback",
		"auth": map[string]any{
			"mode":           "trusted-proxy",
			"trustedProxy":   map[string]any{"userHeader": "x-forwarded-user"},
			"identityScopes": map[string]any{"alice@example.com": []any{"operator.read"}},
		},
		"trustedProxies": []any{"127.0.0.1"},
	}}
	tests := []struct {
		version string
		want    []string
	}{
		{"2026.9.6", nil},
		{"2026.8.2", nil},
		{"2026.7.35", []string{"gateway.auth"}},
	}
	for _, tt := range tests {
		issues, err := ValidateVersion(&Config{Tree: tree}, tt.version)
		if err != nil {
			t.Fatalf("ValidateVersion(%s): %v", tt.version, err)
		}
		if got := IssuePaths(issues); !slices.Equal(got, tt.want) {
			t.Errorf("ValidateVersion(%s) = %v, want issues at %q", tt.version, issues, tt.want)
		}
		if tt.want != nil && !strings.Contains(issues[0].Message, `"identityScopes"`) {
			t.Errorf("ValidateVersion(%s) message = %q, want it to name identityScopes", tt.version, issues[0].Message)
		}
	}
	if _, err := ValidateVersion(&Config{Tree: tree}, "2026.1.1"); err == nil {
		t.Errorf("ValidateVersion(unrecorded) = nil error, want a refusal")
	}
}

func TestSchemaVersionFor(t *testing.T) {
	tests := []struct {
		name string
		ev   release.Evidence
		want string
	}{
		{"known older line", release.Evidence{Configured: "2026.7.35"}, "2026.7.35"},
		{"known middle line", release.Evidence{Configured: "2026.8.2"}, "2026.8.2"},
		{"pinned line", release.Evidence{Configured: "2026.9.6"}, "2026.9.6"},
		{"newer than every line", release.Evidence{Configured: "2027.1.1"}, "2026.9.6"},
		{"between lines", release.Evidence{Configured: "2026.8.5"}, "2026.9.6"},
		{"older than every line", release.Evidence{Configured: "2026.6.35"}, "2026.9.6"},
		{"unparsable", release.Evidence{Configured: "latest"}, "2026.9.6"},
		{"none", release.Evidence{}, "2026.9.6"},
		{"config hint only", release.Evidence{Hint: "2026.7.35"}, "2026.7.35"},
	}
	for _, tt := range tests {
		if got := SchemaVersionFor(release.Assume(tt.ev)); got != tt.want {
			t.Errorf("%s: SchemaVersionFor(Assume(%+v)) = %q, want %q", tt.name, tt.ev, got, tt.want)
		}
	}
	if got := SchemaVersionFor(release.Assumed{}); got != DefaultSchemaVersion {
		t.Errorf("SchemaVersionFor(zero Assumed) = %q, want %q", got, DefaultSchemaVersion)
	}
}

func TestSchemaRegexpLookahead(t *testing.T) {
	tests := []struct {
		pattern string
		in      string
		want    bool
	}{
		{`^(?!(?:constructor|prototype)$)[a-z0-9][a-z0-9_-]{0,63}$`, "main", true},
		{`^(?!(?:constructor|prototype)$)[a-z0-9][a-z0-9_-]{0,63}$`, "prototype", false},
		{`^(?!\*$)(?![Gg][Rr][Oo][Uu][Pp]:).+`, "*", false},
		{`^(?!\*$)(?![Gg][Rr][Oo][Uu][Pp]:).+`, "Group:x", false},
		{`^(?!\*$)(?![Gg][Rr][Oo][Uu][Pp]:).+`, "exec", true},
		{`^(?!\s*-)`, "  -x", false},
		{`^(?!\s*-)`, "vault", true},
		{`^[Hh][Tt][Tt][Pp][Ss]?:\/\/(?![^/?#]*@)`, "https://user@host/", false},
		{`^[Hh][Tt][Tt][Pp][Ss]?:\/\/(?![^/?#]*@)`, "https://host/a@b", true},
		{`^\/(?!\/)[^\0]*[^/\0]$`, "/run/x.sock", true},
		{`^\/(?!\/)[^\0]*[^/\0]$`, "//run/x.sock", false},
		{`^(?:[1-9][0-9]*[hd]|(?:[6-9][0-9]|[1-9][0-9]{2,})m)(?![\s\S])`, "12h", true},
		{`^(?:[1-9][0-9]*[hd]|(?:[6-9][0-9]|[1-9][0-9]{2,})m)(?![\s\S])`, "12hx", false},
		{`^(?!\s)(?![\s\S]*\s$)(?![\s\S]*\.\.)[^\p{Cc}\p{Cs}/\\]{1,512}$`, "a..b", false},
		{`^(?!\s)(?![\s\S]*\s$)(?![\s\S]*\.\.)[^\p{Cc}\p{Cs}/\\]{1,512}$`, "notes.md", true},
	}
	for _, tt := range tests {
		re, err := compileSchemaRegexp(tt.pattern)
		if err != nil {
			t.Fatalf("compileSchemaRegexp(%q): %v", tt.pattern, err)
		}
		if got := re.MatchString(tt.in); got != tt.want {
			t.Errorf("%q.MatchString(%q) = %v, want %v", tt.pattern, tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{`a(?!b)c(?=d)`, `^a+(?!b)c`, `^(?!a)b(?!c)`} {
		if _, err := compileSchemaRegexp(bad); err == nil {
			t.Errorf("compileSchemaRegexp(%q) succeeded; a pattern it cannot match exactly must fail the schema", bad)
		}
	}
	// A long value costs one pass per possible prefix length, not one per byte.
	re, err := compileSchemaRegexp(`^\/(?!\/)[^\0]*[^/\0]$`)
	if err != nil {
		t.Fatal(err)
	}
	if !re.MatchString("/" + strings.Repeat("a", 1<<20)) {
		t.Errorf("a long absolute path did not match")
	}
}

// FuzzValidate feeds arbitrary config text through Load and Validate:
// whatever the config, validation returns issues (each with a path and a
// message) or nothing, never panics, and is deterministic.
func FuzzValidate(f *testing.F) {
	for _, glob := range []string{"invalid", "corpus"} {
		paths, _ := filepath.Glob(filepath.Join("testdata", glob, "*", "openclaw.json"))
		for _, p := range paths {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "openclaw.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(LoadOptions{ConfigPath: p, StateDir: dir, Env: EnvMap(map[string]string{}), Home: dir})
		if err != nil {
			return
		}
		first, err := Validate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range first {
			if i.Path == "" || i.Message == "" {
				t.Fatalf("issue without a path or message: %+v", i)
			}
		}
		again, _ := Validate(cfg)
		if !reflect.DeepEqual(pathSet(first), pathSet(again)) {
			t.Fatalf("Validate is not deterministic: %v then %v", first, again)
		}
	})
}

func TestIsDuration(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"30", true}, {"500ms", true}, {"1.5h", true}, {"1h30m", true}, {" 2D ", true},
		{"", false}, {"5 minutes", false}, {"1h 30m", false}, {"h", false}, {"-5m", false},
		{"99999999999999999999d", false},
	}
	for _, tt := range tests {
		if got := isDuration(tt.in); got != tt.want {
			t.Errorf("isDuration(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
