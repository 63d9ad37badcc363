package caddymodule

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// writeOnboardedHome makes a HOME holding OpenClaw's config as onboarding
// writes it (token mode, loopback, 0600) and points the process at it.
func writeOnboardedHome(t *testing.T) (home, ocConfig string) {
	t.Helper()
	home = t.TempDir()
	t.Setenv("HOME", home)
	for _, k := range []string{"OPENCLAW_CONFIG_PATH", "OPENCLAW_STATE_DIR", "OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	stateDir := filepath.Join(home, ".openclaw")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ocConfig = filepath.Join(stateDir, "openclaw.json")
	const oc = `// written by openclaw onboard
{
  gateway: {
    mode: "local",
    port: 18789,
    bind: "loopback",
    auth: { mode: "token", token: "tok-onboard-0123456789abcdef012345" },
  },
}
`
	if err := os.WriteFile(ocConfig, []byte(oc), 0o600); err != nil {
		t.Fatal(err)
	}
	return home, ocConfig
}

// TestSetupReadsCaddyfileExample runs setup on the README's own example: its
// `config {env.HOME}/...` must name the file a running Caddy audits.
func TestSetupReadsCaddyfileExample(t *testing.T) {
	_, ocConfig := writeOnboardedHome(t)
	var out bytes.Buffer
	code, err := runSetupCommand(&out, setupOptions{config: filepath.Join("..", "Caddyfile.example")})
	if err != nil || code != 1 {
		t.Fatalf("setup --config Caddyfile.example = %d, %v; want 1 (changes pending)\n%s", code, err, out.String())
	}
	for _, want := range []string{
		`gateway "home": ` + ocConfig,
		`~ gateway.auth.mode: "token" -> "trusted-proxy"`,
		`+ gateway.auth.trustedProxy.allowUsers = ["alice@example.com"]`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "tok-onboard") {
		t.Errorf("the output shows the token:\n%s", out.String())
	}
}

// TestSetupResolvesPlaceholders covers each placeholder form a running Caddy
// resolves in the settings setup reads, and the errors for those it cannot.
func TestSetupResolvesPlaceholders(t *testing.T) {
	home, ocConfig := writeOnboardedHome(t)
	pathFile := filepath.Join(home, "config-path")
	if err := os.WriteFile(pathFile, []byte(ocConfig+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CG_TEST_OC_DIR", filepath.Join(home, ".openclaw"))
	os.Unsetenv("CG_TEST_UNSET")
	const site = `
http://:8080 {
	bind clawgate/gw
	clawgate 127.0.0.1:18789 {
		gateway home
		token ci {
			secret {env.CG_TEST_UNSET}
			user ci-bot
			scopes operator.read
		}
		allow user:alice@example.com scopes operator.read
		allow token:ci scopes operator.read
	}
}
`
	tests := []struct {
		name, config, stateDir string
		wantCode               int
		wantErr                []string // all in the error; none means success
	}{
		{name: "env", config: "{env.CG_TEST_OC_DIR}/openclaw.json", stateDir: "{env.CG_TEST_OC_DIR}", wantCode: 1},
		{name: "adapt-time env", config: "{$CG_TEST_OC_DIR}/openclaw.json", stateDir: "{$CG_TEST_OC_DIR}", wantCode: 1},
		{name: "file", config: "{file." + pathFile + "}", stateDir: "{env.HOME}/.openclaw", wantCode: 1},
		{name: "unset env", config: "{env.CG_TEST_UNSET}/openclaw.json", wantCode: 2,
			wantErr: []string{"clawgate.gateways.home.config", "{env.CG_TEST_UNSET}", "not set"}},
		{name: "unset env in state_dir", config: ocConfig, stateDir: "{env.CG_TEST_UNSET}", wantCode: 2,
			wantErr: []string{"clawgate.gateways.home.state_dir", "{env.CG_TEST_UNSET}"}},
		{name: "missing file", config: "{file." + filepath.Join(home, "nope") + "}", wantCode: 2,
			wantErr: []string{"clawgate.gateways.home.config", "{file." + filepath.Join(home, "nope") + "}", "no such file"}},
		{name: "unknown placeholder", config: "{http.request.host}/openclaw.json", wantCode: 2,
			wantErr: []string{"clawgate.gateways.home.config", "{http.request.host}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block := "\t\t\tconfig " + tt.config + "\n"
			if tt.stateDir != "" {
				block += "\t\t\tstate_dir " + tt.stateDir + "\n"
			}
			caddyfile := filepath.Join(t.TempDir(), "Caddyfile")
			src := "{\n\tclawgate {\n\t\tgateway home {\n" + block + "\t\t}\n\t}\n}\n" + site
			if err := os.WriteFile(caddyfile, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			code, err := runSetupCommand(&out, setupOptions{config: caddyfile})
			if code != tt.wantCode {
				t.Fatalf("setup = %d, %v; want %d\n%s", code, err, tt.wantCode, out.String())
			}
			msg := out.String()
			if err != nil {
				msg += err.Error()
			}
			if len(tt.wantErr) == 0 {
				if err != nil || !strings.Contains(msg, `gateway "home": `+ocConfig) {
					t.Errorf("setup did not plan for %s: %v\n%s", ocConfig, err, msg)
				}
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(msg, want) {
					t.Errorf("setup's error lacks %q:\n%s", want, msg)
				}
			}
		})
	}
}

// TestAdminAddress finds the admin endpoint where `caddy run` would put it.
func TestAdminAddress(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	custom := filepath.Join(dir, "custom.caddyfile")
	if err := os.WriteFile(custom, []byte("{\n\tadmin localhost:2999\n}\n:8080 {\n\trespond ok\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, flag, config, adapter string
		adjacent                    string // ./Caddyfile's content; none when empty
		want                        string
	}{
		{name: "default", want: "localhost:2019"},
		{name: "flag wins", flag: "unix//run/caddy-admin.sock", config: custom, want: "unix//run/caddy-admin.sock"},
		{name: "config", config: custom, want: "localhost:2999"},
		{name: "adjacent Caddyfile", adjacent: "{\n\tadmin 127.0.0.1:2888\n}\n", want: "127.0.0.1:2888"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(filepath.Join(dir, "Caddyfile"))
			if tt.adjacent != "" {
				if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(tt.adjacent), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := adminAddress(tt.flag, tt.config, tt.adapter)
			if err != nil || got != tt.want {
				t.Errorf("adminAddress(%q, %q) = %q, %v; want %q", tt.flag, tt.config, got, err, tt.want)
			}
		})
	}
	if _, err := adminAddress("", filepath.Join(dir, "missing.caddyfile"), ""); err == nil || !strings.Contains(err.Error(), "missing.caddyfile") {
		t.Errorf("adminAddress on a missing config = %v; want an error naming the file", err)
	}
}

// TestGateRefusesUnresolvedPaths: caddy run and caddy validate refuse a
// gateway whose config path names a variable that is not set, with the
// message setup gives, instead of auditing a path that lost a part.
func TestGateRefusesUnresolvedPaths(t *testing.T) {
	os.Unsetenv("CG_TEST_UNSET")
	const cf = `{
	admin off
	clawgate {
		gateway home {
			config {env.CG_TEST_UNSET}/.openclaw/openclaw.json
		}
	}
}
`
	err := loadCaddyErr(t, cf)
	want := "clawgate.gateways.home.config: placeholder {env.CG_TEST_UNSET}: the environment variable CG_TEST_UNSET is not set"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("loading = %v; want an error saying %q", err, want)
	}
}

// TestAuditGatewaysOfCaddyfile audits the configs a Caddyfile's gateway
// blocks name, at the paths the running gate audits.
func TestAuditGatewaysOfCaddyfile(t *testing.T) {
	home, ocConfig := writeOnboardedHome(t)
	var out bytes.Buffer
	code, err := runAuditGateways(&out, io.Discard, filepath.Join("..", "Caddyfile.example"), "", "", "never", false)
	if code != 0 || err != nil {
		t.Fatalf("audit --config Caddyfile.example --fail-on never = %d, %v\n%s", code, err, out.String())
	}
	if _, rest, _ := strings.Cut(out.String(), "\n"); !strings.HasPrefix(rest, "gateway \"home\":\n") || !strings.Contains(out.String(), ocConfig) {
		t.Errorf("the audit does not name gateway home and %s:\n%s", ocConfig, out.String())
	}

	two := filepath.Join(home, "Caddyfile")
	writeFile(t, two, `{
	clawgate {
		gateway alice {
			config {env.HOME}/.openclaw/openclaw.json
		}
		gateway bob {
			config {env.CG_TEST_UNSET}/openclaw.json
		}
	}
}
`)
	os.Unsetenv("CG_TEST_UNSET")
	tests := []struct {
		name, only string
		asJSON     bool
		wantCode   int
		wantErr    string
	}{
		{name: "one gateway", only: "alice", wantCode: 0},
		{name: "json, one gateway", only: "alice", asJSON: true, wantCode: 0},
		{name: "unset variable", only: "bob", wantCode: 2, wantErr: `gateway "bob": clawgate.gateways.bob.config: placeholder {env.CG_TEST_UNSET}: the environment variable CG_TEST_UNSET is not set`},
		{name: "every gateway", wantCode: 2, wantErr: "CG_TEST_UNSET is not set"},
		{name: "json, two gateways", asJSON: true, wantCode: 2, wantErr: "--json audits one gateway: name it with --gateway (gateways: alice, bob)"},
		{name: "unknown gateway", only: "carol", wantCode: 2, wantErr: `no gateway "carol"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			var errOut bytes.Buffer
			code, err := runAuditGateways(&out, &errOut, two, "", tt.only, "never", tt.asJSON)
			if code != tt.wantCode || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("runAuditGateways(%q) = %d, %v; want %d, %q\n%s", tt.only, code, err, tt.wantCode, tt.wantErr, out.String())
			}
			if tt.asJSON && code == 0 && !strings.HasPrefix(out.String(), "{") {
				t.Errorf("--json output is not the audit's JSON:\n%s", out.String())
			}
		})
	}
}

// TestSetupReadsNoSecrets: setup resolves only the settings it uses, so a
// token secret, a gateway token and a node auth key whose files cannot be
// read (not there yet, or another user's) do not stop it, and no secret's
// value is needed to plan.
func TestSetupReadsNoSecrets(t *testing.T) {
	home, ocConfig := writeOnboardedHome(t)
	missing := filepath.Join(home, "secrets", "missing")
	caddyfile := filepath.Join(home, "Caddyfile")
	writeFile(t, caddyfile, `{
	admin off
	clawgate {
		node gw {
			auth_key {file.`+missing+`-authkey}
		}
		gateway home {
			config {env.HOME}/.openclaw/openclaw.json
			state_dir {env.HOME}/.openclaw
		}
	}
}
http://:8080 {
	bind clawgate/gw
	clawgate 127.0.0.1:18789 {
		gateway home
		gateway_token {file.`+missing+`-gateway}
		token ci {
			secret {file.`+missing+`-ci}
			user ci-bot
			scopes operator.read
		}
		allow user:alice@example.com scopes operator.read
		allow token:ci scopes operator.read
	}
}
`)
	var out bytes.Buffer
	code, err := runSetupCommand(&out, setupOptions{config: caddyfile})
	if code != 1 || err != nil {
		t.Fatalf("setup = %d, %v; want 1 (changes pending)\n%s", code, err, out.String())
	}
	for _, want := range []string{
		`gateway "home": ` + ocConfig,
		`+ gateway.auth.trustedProxy.allowUsers = ["alice@example.com","ci-bot"]`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("setup's plan lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), missing) {
		t.Errorf("setup's output names a secret's file; it should not have looked:\n%s", out.String())
	}
}

// TestCommandsUseRunningInstancePaths: `setup` and `audit --config` take a
// gateway's paths from the running Caddy that serves the same config, whose
// environment (here its HOME) differs from the command's, and say so; with
// no instance answering, or one running other settings, they resolve the
// paths themselves and say that.
func TestCommandsUseRunningInstancePaths(t *testing.T) {
	serviceHome, serviceConfig := writeOnboardedHome(t)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	admin := "unix/" + sock
	caddyfile := func(config string) string {
		return `{
	admin ` + admin + `
	clawgate {
		gateway home {
			config ` + config + `
			state_dir {env.HOME}/.openclaw
		}
	}
}
http://127.0.0.1:` + itoa(freePort(t)) + ` {
	clawgate 127.0.0.1:18789 {
		gateway home
		allow user:alice@example.com scopes operator.read
	}
}
`
	}
	dir := t.TempDir()
	same := filepath.Join(dir, "Caddyfile")
	writeFile(t, same, caddyfile("{env.HOME}/.openclaw/openclaw.json"))
	other := filepath.Join(dir, "other.caddyfile")
	writeFile(t, other, caddyfile("{env.HOME}/.openclaw/other.json"))

	// The shell's HOME: an OpenClaw config of its own, which is not the
	// one the service audits.
	shellHome, shellConfig := writeOnboardedHome(t)
	setup := func(t *testing.T, config string, write bool) (int, string) {
		t.Helper()
		var out bytes.Buffer
		code, err := runSetupCommand(&out, setupOptions{config: config, write: write})
		if err != nil {
			t.Fatalf("setup: %v\n%s", err, out.String())
		}
		return code, out.String()
	}
	auditOut := func(t *testing.T, config string) string {
		t.Helper()
		var out bytes.Buffer
		if _, err := runAuditGateways(&out, io.Discard, config, "", "", "never", false); err != nil {
			t.Fatalf("audit --config: %v\n%s", err, out.String())
		}
		return out.String()
	}

	t.Run("no instance", func(t *testing.T) {
		_, out := setup(t, same, false)
		wantLine := "paths: resolved by this command in its own environment; no running Caddy with clawgate answered at " + admin
		if !strings.HasPrefix(out, wantLine) || !strings.Contains(out, `gateway "home": `+shellConfig) {
			t.Errorf("setup without a running Caddy: want %q and the shell's %s:\n%s", wantLine, shellConfig, out)
		}
		if out := auditOut(t, same); !strings.HasPrefix(out, wantLine) || !strings.Contains(out, shellConfig) {
			t.Errorf("audit without a running Caddy: want %q and the shell's %s:\n%s", wantLine, shellConfig, out)
		}
	})

	// The service: started with its own HOME, which its placeholders
	// resolve against; the commands then run with the shell's.
	t.Setenv("HOME", serviceHome)
	data, err := os.ReadFile(same)
	if err != nil {
		t.Fatal(err)
	}
	startCaddy(t, string(data))
	t.Setenv("HOME", shellHome)

	wantLine := "paths: as the running Caddy at " + admin + " resolved them in its own environment"
	t.Run("instance", func(t *testing.T) {
		if out := auditOut(t, same); !strings.HasPrefix(out, wantLine+"\n") || !strings.Contains(out, serviceConfig) || strings.Contains(out, shellConfig) {
			t.Errorf("audit with a running Caddy: want %q and the service's %s:\n%s", wantLine, serviceConfig, out)
		}
		code, out := setup(t, same, true)
		if code != 0 || !strings.HasPrefix(out, wantLine+"\n") || !strings.Contains(out, "wrote "+serviceConfig) {
			t.Errorf("setup --write with a running Caddy = %d; want %q and %s written:\n%s", code, wantLine, serviceConfig, out)
		}
		shell, err := os.ReadFile(shellConfig)
		if err != nil || strings.Contains(string(shell), "trusted-proxy") {
			t.Errorf("setup --write changed the shell's %s, which the service does not read: %v\n%s", shellConfig, err, shell)
		}
	})

	t.Run("instance runs other settings", func(t *testing.T) {
		writeFile(t, filepath.Join(shellHome, ".openclaw", "other.json"), `{ gateway: { mode: "local", bind: "loopback", auth: { mode: "token", token: "tok-other-0123456789abcdef0123456" } } }`)
		_, out := setup(t, other, false)
		note := `note: the running Caddy at ` + admin + ` runs other settings for gateway "home" (config "{env.HOME}/.openclaw/openclaw.json", state_dir "{env.HOME}/.openclaw"); its paths are resolved here from the file's`
		if !strings.Contains(out, note) || !strings.Contains(out, `gateway "home": `+filepath.Join(shellHome, ".openclaw", "other.json")) {
			t.Errorf("setup on a config the running Caddy does not run: want %q and the shell's other.json:\n%s", note, out)
		}
	})

	t.Run("admin API", func(t *testing.T) {
		body, err := adminCall(admin, http.MethodGet, "/clawgate/gateways", nil)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]struct {
			Paths gatewayPaths `json:"paths"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		want := gatewayPaths{
			Config:   resolvedPath{Setting: "{env.HOME}/.openclaw/openclaw.json", Resolved: serviceConfig},
			StateDir: resolvedPath{Setting: "{env.HOME}/.openclaw", Resolved: filepath.Join(serviceHome, ".openclaw")},
		}
		if got["home"].Paths != want {
			t.Errorf("/clawgate/gateways paths = %+v, want %+v", got["home"].Paths, want)
		}
	})
}

// TestAuditJudgesAsGate: audit --config judges a gateway's config as the
// gate does: clawgate's own checks fail the onboarded config, and once
// setup has made it agree, the trusted-proxy findings OpenClaw's audit
// always raises are accepted, so the command passes where the gate serves.
func TestAuditJudgesAsGate(t *testing.T) {
	_, ocConfig := writeOnboardedHome(t)
	example := filepath.Join("..", "Caddyfile.example")
	audit := func() (int, string) {
		var out bytes.Buffer
		code, err := runAuditGateways(&out, io.Discard, example, "", "", "critical", false)
		if err != nil {
			t.Fatalf("audit --config: %v\n%s", err, out.String())
		}
		return code, out.String()
	}
	code, out := audit()
	if code != 1 || !strings.Contains(out, "clawgate.trusted_proxies") {
		t.Errorf("audit of the onboarded config = %d; want 1 with clawgate.trusted_proxies:\n%s", code, out)
	}
	var setupOut bytes.Buffer
	if code, err := runSetupCommand(&setupOut, setupOptions{config: example, write: true}); code != 0 || err != nil {
		t.Fatalf("setup --write = %d, %v\n%s", code, err, setupOut.String())
	}
	code, out = audit()
	if code != 0 || !strings.Contains(out, ocConfig) || !regexp.MustCompile(`(?m)^critical +gateway\.trusted_proxy_auth +.*\(accepted behind clawgate\)$`).MatchString(out) ||
		regexp.MustCompile(`(?m)^\S+ +clawgate\.`).MatchString(out) || strings.Contains(out, "To fix the critical findings") {
		t.Errorf("audit after setup --write = %d; want 0, gateway.trusted_proxy_auth accepted, no clawgate.* finding:\n%s", code, out)
	}
}
