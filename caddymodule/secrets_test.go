package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

func writeSecretFile(t testing.TB, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadSecret(t *testing.T) {
	value := randToken(t, 32)
	t.Setenv("CG_TEST_SECRET", "  "+value+"\n")
	t.Setenv("CG_TEST_EMPTY", "   ")
	good := writeSecretFile(t, value+"\n", 0o600)
	groupReadable := writeSecretFile(t, value, 0o640)
	worldReadable := writeSecretFile(t, value, 0o644)
	empty := writeSecretFile(t, " \n", 0o600)
	tests := []struct {
		placeholder string
		want        string // "" when an error is wanted
		wantErr     string
	}{
		{"{env.CG_TEST_SECRET}", value, ""},
		{" {env.CG_TEST_SECRET} ", value, ""},
		{"{file." + good + "}", value, ""},
		{"{file." + groupReadable + "}", value, ""},
		{"{env.CG_TEST_UNSET}", "", "{env.CG_TEST_UNSET} is empty or unset"},
		{"{env.CG_TEST_EMPTY}", "", "{env.CG_TEST_EMPTY} is empty or unset"},
		{"{file." + worldReadable + "}", "", "readable by every user (mode 0644); chmod 600 it"},
		{"{file." + empty + "}", "", "is empty"},
		{"{file./nonexistent/secret}", "", "{file./nonexistent/secret}: reading secret file"},
		{"{file." + filepath.Dir(good) + "}", "", "is not a regular file"},
		{value, "", "must be a placeholder, {env.VAR} or {file./path}, not a literal secret"},
		{"tskey-auth-{env.CG_TEST_SECRET}", "", "not a literal secret"},
		{"{env.CG_TEST_SECRET}{env.CG_TEST_SECRET}", "", "not a literal secret"},
		{"{http.request.header.X-Secret}", "", "is not a secret placeholder; use {env.VAR} or {file./path}"},
		{"{env.}", "", "names no environment variable"},
		{"{file.}", "", "names no file"},
		{"", "", "required"},
	}
	for _, tt := range tests {
		got, err := readSecret(tt.placeholder)
		switch {
		case tt.wantErr == "" && (err != nil || string(got) != tt.want):
			t.Errorf("readSecret(%q) = %q, %v; want the secret", tt.placeholder, got, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("readSecret(%q) = %q, %v; want an error saying %q", tt.placeholder, got, err, tt.wantErr)
		case err != nil && strings.Contains(err.Error(), value) && tt.placeholder != value:
			t.Errorf("readSecret(%q): the error shows the secret: %v", tt.placeholder, err)
		}
	}
}

func TestSecretSourceJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    SecretSource
		out     string
		wantErr bool
	}{
		{`"{env.GW_TOKEN}"`, SecretSource{Placeholder: "{env.GW_TOKEN}"}, `"{env.GW_TOKEN}"`, false},
		{`{"env":"GW_TOKEN"}`, SecretSource{Env: "GW_TOKEN"}, `{"env":"GW_TOKEN"}`, false},
		{`{"file":"/etc/gw"}`, SecretSource{File: "/etc/gw"}, `{"file":"/etc/gw"}`, false},
		{`{"envv":"GW_TOKEN"}`, SecretSource{}, "", true},
		{`42`, SecretSource{}, "", true},
	}
	for _, tt := range tests {
		var got SecretSource
		err := json.Unmarshal([]byte(tt.in), &got)
		if tt.wantErr {
			if err == nil {
				t.Errorf("Unmarshal(%s) = %+v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Unmarshal(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		out, err := json.Marshal(got)
		if err != nil || string(out) != tt.out {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", got, out, err, tt.out)
		}
	}
}

// validateLogging adapts a Caddyfile and runs Caddy's validation of it with
// warnings logged to a file, and returns the error and the log.
func validateLogging(t *testing.T, caddyfile string) (error, string) {
	t.Helper()
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, caddyfile)
	}
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	var m map[string]any
	if err := json.Unmarshal(cfgJSON, &m); err != nil {
		t.Fatal(err)
	}
	m["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{
		"level": "WARN", "writer": map[string]any{"output": "file", "filename": logFile}}}}
	out, _ := json.Marshal(m)
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	caddyMu.Lock()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	verr := caddy.Validate(&cfg)
	caddyMu.Unlock()
	logged, _ := os.ReadFile(logFile)
	return verr, string(logged)
}

// secretFixture holds one secret of each kind, in the environment and in
// files only their owner can read.
type secretFixture struct {
	values map[string]string // by environment variable
	files  map[string]string // path by environment variable
}

func newSecretFixture(t *testing.T) *secretFixture {
	f := &secretFixture{values: map[string]string{}, files: map[string]string{}}
	for _, name := range []string{"CG_TEST_TS_AUTHKEY", "CG_TEST_TOKEN_CI", "CG_TEST_GATEWAY_TOKEN", "CG_TEST_JWT_HS", "CG_TEST_TG_SECRET"} {
		v := randToken(t, 40)
		f.values[name] = v
		t.Setenv(name, v)
		f.files[name] = writeSecretFile(t, v+"\n", 0o600)
	}
	return f
}

// config is a site using every secret setting; form picks how each is
// written.
func (f *secretFixture) config(form func(setting, env string) string) string {
	return fmt.Sprintf(`{
	admin off
	auto_https off
	clawgate {
		node gw {
			%s
		}
	}
}
http://127.0.0.1:1 {
	clawgate 127.0.0.1:18789 {
		token ci {
			%s
		}
		jwt {
			algorithms HS256
			%s
		}
		%s
		allow token:ci jwt scopes operator.read
	}
}
http://127.0.0.1:2 {
	clawgate_senders telegram {
		allow 111
		%s
	}
	reverse_proxy 127.0.0.1:8787
}
`, form("auth_key", "CG_TEST_TS_AUTHKEY"), form("token", "CG_TEST_TOKEN_CI"), form("hmac_secret", "CG_TEST_JWT_HS"),
		form("gateway_token", "CG_TEST_GATEWAY_TOKEN"), form("secret", "CG_TEST_TG_SECRET"))
}

// TestSecretPlaceholders: every secret setting takes {env.VAR} and
// {file./path}, loads without a warning, and no secret reaches the log.
func TestSecretPlaceholders(t *testing.T) {
	f := newSecretFixture(t)
	for _, kind := range []string{"env", "file"} {
		t.Run(kind, func(t *testing.T) {
			cf := f.config(func(setting, env string) string {
				ph := "{env." + env + "}"
				if kind == "file" {
					ph = "{file." + f.files[env] + "}"
				}
				if setting == "token" {
					setting = "secret"
				}
				return setting + " " + ph
			})
			err, logged := validateLogging(t, cf)
			if err != nil {
				t.Fatalf("validate: %v\n%s", err, cf)
			}
			if strings.Contains(logged, "deprecated") {
				t.Errorf("a deprecation warning for the placeholder form:\n%s", logged)
			}
			for name, v := range f.values {
				if strings.Contains(logged, v) {
					t.Errorf("the log holds %s's secret", name)
				}
			}
		})
	}
}

// TestSecretLegacyForms: the older forms still load, each with a warning
// that gives the new spelling, and no secret reaches the log.
func TestSecretLegacyForms(t *testing.T) {
	f := newSecretFixture(t)
	cf := f.config(func(setting, env string) string {
		switch setting {
		case "auth_key":
			return "auth_key_file " + f.files[env]
		case "token":
			return "env " + env
		case "hmac_secret":
			return "hmac_secret_file " + f.files[env]
		case "gateway_token":
			return "gateway_token {\n\t\t\tfile " + f.files[env] + "\n\t\t}"
		}
		return "secret_file " + f.files[env]
	})
	err, logged := validateLogging(t, cf)
	if err != nil {
		t.Fatalf("validate: %v\n%s", err, cf)
	}
	wants := []string{
		"auth_key {file." + f.files["CG_TEST_TS_AUTHKEY"] + "}",
		"secret {env.CG_TEST_TOKEN_CI}",
		"hmac_secret {file." + f.files["CG_TEST_JWT_HS"] + "}",
		"gateway_token {file." + f.files["CG_TEST_GATEWAY_TOKEN"] + "}",
		"secret {file." + f.files["CG_TEST_TG_SECRET"] + "}",
	}
	for _, want := range wants {
		if !strings.Contains(logged, `"caddyfile":"`+want+`"`) {
			t.Errorf("no deprecation warning giving %q:\n%s", want, logged)
		}
	}
	if n := strings.Count(logged, "deprecated secret setting"); n != len(wants) {
		t.Errorf("%d deprecation warnings, want %d:\n%s", n, len(wants), logged)
	}
	for name, v := range f.values {
		if strings.Contains(logged, v) {
			t.Errorf("the log holds %s's secret", name)
		}
	}
}

// TestSecretRefusals: a missing, unreadable, world-readable or literal
// secret fails the load, in caddy validate and caddy run alike, naming the
// setting and the placeholder.
func TestSecretRefusals(t *testing.T) {
	f := newSecretFixture(t)
	open := writeSecretFile(t, randToken(t, 40), 0o644)
	tests := []struct {
		name, setting, written, want string
	}{
		{"unset auth key", "auth_key", "auth_key {env.CG_TEST_UNSET}", "clawgate.nodes.gw: auth_key: {env.CG_TEST_UNSET} is empty or unset"},
		{"literal auth key", "auth_key", "auth_key tskey-auth-k123", "clawgate.nodes.gw: auth_key: must be a placeholder"},
		{"world-readable auth key file", "auth_key", "auth_key {file." + open + "}", "clawgate.nodes.gw: auth_key: {file." + open + "}: secret file " + open + " is readable by every user"},
		{"unset token", "token", "secret {env.CG_TEST_UNSET}", `clawgate.tokens[0]: token "ci": secret: {env.CG_TEST_UNSET} is empty or unset`},
		{"literal token", "token", "secret hunter2hunter2", `clawgate.tokens[0]: token "ci": secret: must be a placeholder`},
		{"unset token, older form", "token", "env CG_TEST_UNSET", `clawgate.tokens[0]: token "ci": {env.CG_TEST_UNSET} is empty or unset`},
		{"missing hmac file", "hmac_secret", "hmac_secret {file./nonexistent/hs}", "clawgate.jwt: hmac_secret: {file./nonexistent/hs}: reading secret file"},
		{"unset gateway token", "gateway_token", "gateway_token {env.CG_TEST_UNSET}", "clawgate.gateway_token: {env.CG_TEST_UNSET} is empty or unset"},
		{"literal gateway token", "gateway_token", "gateway_token s3cr3t-value", "clawgate.gateway_token: must be a placeholder"},
		{"unset webhook secret", "secret", "secret {env.CG_TEST_UNSET}", "clawgate_senders.secret: {env.CG_TEST_UNSET} is empty or unset"},
		{"world-readable webhook secret file, older form", "secret", "secret_file " + open, "clawgate_senders.secret_file: {file." + open + "}: secret file " + open + " is readable by every user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf := f.config(func(setting, env string) string {
				if setting == tt.setting {
					return tt.written
				}
				if setting == "token" {
					setting = "secret"
				}
				return setting + " {env." + env + "}"
			})
			refusedAlike(t, cf, tt.want)
		})
	}
}
