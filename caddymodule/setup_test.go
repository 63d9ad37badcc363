package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/setup"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// setupCaddyfile is a clawgate config with two gateways: "home" with a block
// in the app and a tailnet site, "lab" guarded but without a block.
const setupCaddyfile = `{
	clawgate {
		gateway home {
			config %s
			state_dir %s
			upstream 127.0.0.1:18789
		}
	}
}
https://gw.tail1234.ts.net {
	bind clawgate/gw
	handle /api/* {
		clawgate 127.0.0.1:18789 {
			gateway home
			user_header X-Forwarded-User
			token ci {
				env CG_SETUP_TOKEN
				scopes operator.read
			}
			allow user:alice@example.com scopes operator.read,operator.write
			allow tag:ci token:ci scopes operator.read,operator.write
		}
	}
	clawgate 127.0.0.1:18789 {
		gateway home
		allow user:bob@example.com scopes operator.read
	}
}
http://127.0.0.1:8080 {
	clawgate 127.0.0.1:19789 {
		gateway lab
		allow tailnet
	}
}
`

func writeSetupFixture(t *testing.T) (caddyfile, ocConfig string) {
	t.Helper()
	dir := t.TempDir()
	ocConfig = filepath.Join(dir, "openclaw.json5")
	const oc = `// the gateway as onboarding left it
{
  gateway: {
    mode: "local",
    bind: "lan", // reachable on the LAN
    auth: {
      mode: "token",
      token: "tok-setup-0123456789abcdef0123456789",
    },
    tailscale: { mode: "serve" },
  },
}
`
	if err := os.WriteFile(ocConfig, []byte(oc), 0o600); err != nil {
		t.Fatal(err)
	}
	caddyfile = filepath.Join(dir, "Caddyfile")
	cf := fmt.Sprintf(setupCaddyfile, ocConfig, filepath.Join(dir, "state"))
	if err := os.WriteFile(caddyfile, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	return caddyfile, ocConfig
}

func TestSetupGatewaysFromCaddyfile(t *testing.T) {
	caddyfile, ocConfig := writeSetupFixture(t)
	cfgJSON, err := loadCaddyJSON(caddyfile, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := setupGateways(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	if names := sortedKeysOf(got); !slices.Equal(names, []string{"home", "lab"}) {
		t.Fatalf("gateways = %q, want [home lab]", names)
	}
	home := got["home"]
	if home.block == nil || home.block.Config != ocConfig || !home.in.Gated || home.in.Upstream != 18789 {
		t.Errorf("home block = %+v, input %+v", home.block, home.in)
	}
	wantGuards := []setup.Guard{
		{UserHeader: "X-Forwarded-User", Port: 18789, Rules: []string{
			"allow user:alice@example.com scopes operator.read,operator.write",
			"allow tag:ci token:ci scopes operator.read,operator.write"},
			Tokens: []setup.Token{{Name: "ci", Scopes: []string{"operator.read"}}}},
		{Port: 18789, Rules: []string{"allow user:bob@example.com scopes operator.read"}},
	}
	slices.SortFunc(home.in.Guards, func(a, b setup.Guard) int { return strings.Compare(a.Rules[0], b.Rules[0]) })
	if !reflect.DeepEqual(home.in.Guards, wantGuards) {
		t.Errorf("home guards =\n%+v\nwant\n%+v", home.in.Guards, wantGuards)
	}
	if want := []string{"https://gw.tail1234.ts.net", "https://gw.tail1234.ts.net"}; !slices.Equal(home.in.SiteOrigins, want) {
		t.Errorf("home site origins = %q, want %q", home.in.SiteOrigins, want)
	}
	lab := got["lab"]
	if lab.block != nil || len(lab.in.Guards) != 1 || lab.in.Guards[0].Port != 19789 || len(lab.in.SiteOrigins) != 0 {
		t.Errorf("lab = block %+v, input %+v", lab.block, lab.in)
	}
}

func sortedKeysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The users setup writes into allowUsers are the users the gate expects
// there (admittedUsers), so a config setup wrote passes the gate.
func TestSetupUsersMatchTheGate(t *testing.T) {
	tests := []struct {
		name   string
		rules  []string
		tokens []TokenConfig
	}{
		{"logins", []string{"allow user:Alice@Example.com,bob@example.com", "deny user:eve@example.com", "allow tailnet"}, nil},
		{"domains are not users", []string{"allow user:@example.com scopes operator.read", "allow user:carol@example.com"}, nil},
		{"tokens", []string{"allow token:ci scopes operator.read", "allow tag:x"},
			[]TokenConfig{{Name: "CI"}, {Name: "deploy", User: "Deploy-Bot"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			guard := setup.Guard{Rules: tt.rules}
			for _, tc := range tt.tokens {
				guard.Tokens = append(guard.Tokens, setup.Token{Name: tc.Name, User: tc.User})
			}
			e, err := setup.Derive(setup.Input{Guards: []setup.Guard{guard}})
			if err != nil {
				t.Fatal(err)
			}
			policy, err := edge.NewPolicy(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Compact(slices.Sorted(slices.Values(admittedUsers(policy, tt.tokens))))
			if !slices.Equal(e.Users, want) {
				t.Errorf("setup users = %q, gate expects %q", e.Users, want)
			}
		})
	}
}

func TestSetupCommand(t *testing.T) {
	caddyfile, ocConfig := writeSetupFixture(t)
	orig, _ := os.ReadFile(ocConfig)
	isolated := func(name string, gc *GatewayConfig) audit.LoadOptions {
		lo := audit.LoadOptions{Env: audit.EnvMap(map[string]string{}), Home: t.TempDir()}
		if gc != nil {
			lo.ConfigPath, lo.StateDir = gc.Config, gc.StateDir
		} else {
			lo.ConfigPath = filepath.Join(t.TempDir(), "missing.json")
		}
		return lo
	}
	now := func() time.Time { return time.Date(2026, 7, 3, 12, 0, 0, 0, time.UTC) }
	run := func(o setupOptions) (int, string, error) {
		o.config, o.loadOpts, o.now = caddyfile, isolated, now
		var out bytes.Buffer
		code, err := runSetupCommand(&out, o)
		if strings.Contains(out.String(), "tok-setup-0123456789abcdef") {
			t.Errorf("the output shows the token:\n%s", out.String())
		}
		return code, out.String(), err
	}

	t.Run("plan", func(t *testing.T) {
		code, out, err := run(setupOptions{gateway: "home"})
		if err != nil || code != 1 {
			t.Fatalf("runSetupCommand = %d, %v; want 1 (changes pending)\n%s", code, err, out)
		}
		for _, want := range []string{
			`~ gateway.bind: "lan" -> "loopback"`,
			`+ gateway.trustedProxies = ["127.0.0.1","::1"]`,
			`~ gateway.auth.mode: "token" -> "trusted-proxy"`,
			`> gateway.auth.token moved to gateway.auth.password (<secret, 36 chars>)`,
			`~ gateway.tailscale.mode: "serve" -> "off"`,
			`+ gateway.auth.trustedProxy.userHeader = "x-forwarded-user"`,
			`+ gateway.auth.trustedProxy.allowUsers = ["alice@example.com","bob@example.com","token:ci"]`,
			`+ gateway.auth.identityScopes["alice@example.com"] = ["operator.read","operator.write"]`,
			`+ gateway.auth.identityScopes["bob@example.com"] = ["operator.read"]`,
			`+ gateway.auth.identityScopes["token:ci"] = ["operator.read"]`,
			`+ gateway.controlUi.allowedOrigins = ["https://gw.tail1234.ts.net"]`,
			"Run `caddy clawgate setup --config " + shellWord(caddyfile) + " --gateway home --write`",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if now, _ := os.ReadFile(ocConfig); !bytes.Equal(now, orig) {
			t.Errorf("a plan without --write changed the file")
		}
	})

	t.Run("json", func(t *testing.T) {
		code, out, err := run(setupOptions{asJSON: true})
		if err != nil || code != 2 {
			t.Fatalf("runSetupCommand = %d, %v; want 2 (lab's config is missing)\n%s", code, err, out)
		}
		var got struct {
			Gateways []struct {
				Gateway string         `json:"gateway"`
				Config  string         `json:"config"`
				Changes []setup.Change `json:"changes"`
				Notes   []string       `json:"notes"`
				Error   string         `json:"error"`
			} `json:"gateways"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if len(got.Gateways) != 2 || got.Gateways[0].Gateway != "home" || got.Gateways[1].Gateway != "lab" {
			t.Fatalf("gateways = %+v", got.Gateways)
		}
		if home := got.Gateways[0]; home.Config != ocConfig || len(home.Changes) == 0 {
			t.Errorf("home = %+v", home)
		}
		// lab has no block: OpenClaw's default config, missing here.
		if lab := got.Gateways[1]; !strings.Contains(lab.Error, "no such file") {
			t.Errorf("lab error = %q, want the missing config", lab.Error)
		}
	})

	t.Run("write", func(t *testing.T) {
		code, out, err := run(setupOptions{gateway: "home", write: true})
		if err != nil || code != 0 {
			t.Fatalf("runSetupCommand --write = %d, %v; want 0\n%s", code, err, out)
		}
		for _, want := range []string{"wrote " + ocConfig, "backup: " + ocConfig + ".clawgate-backup-20260703T120000Z", "gateway.trusted_proxy_auth", "(expected behind clawgate)"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		written, _ := os.ReadFile(ocConfig)
		for _, comment := range []string{"// the gateway as onboarding left it", "// reachable on the LAN"} {
			if !bytes.Contains(written, []byte(comment)) {
				t.Errorf("comment %q lost:\n%s", comment, written)
			}
		}
		code, out, err = run(setupOptions{gateway: "home"})
		if err != nil || code != 0 || !strings.Contains(out, "nothing to change") {
			t.Errorf("after --write: %d, %v\n%s", code, err, out)
		}
	})

	t.Run("unknown gateway", func(t *testing.T) {
		code, _, err := run(setupOptions{gateway: "nope"})
		if code != 2 || err == nil || !strings.Contains(err.Error(), `no gateway "nope"`) {
			t.Errorf("runSetupCommand = %d, %v", code, err)
		}
	})
}

// A config rewritten by `setup --write` is accepted by the real OpenClaw
// gateway (which exits at startup on an invalid config), and a WebSocket
// connect through clawgate over the tailnet then gets hello-ok with the
// scopes the rules grant: alice's rule grants read and write, and only
// because setup wrote them into identityScopes does OpenClaw give them to a
// device-less trusted-proxy client. One gateway (about 1 GB, 15–30 s).
func TestSetupRealOpenClaw(t *testing.T) {
	openclawtest.Require(t)
	tokCI := randToken(t, 32)
	t.Setenv("CG_SETUP_TOKEN_CI", tokCI)
	port := openclawtest.FreePort(t)
	dir := t.TempDir()

	// The onboarding default, plus everything that keeps a proxy out.
	start := fmt.Sprintf(`// my gateway
{
  gateway: {
    mode: "local",
    port: 18789,
    bind: "lan", // so the phone can reach it
    auth: {
      mode: "token",
      token: "%s", // for the CLI
    },
    tailscale: { mode: "serve" },
    controlUi: { allowedOrigins: ["*"] },
  },
  logging: { file: %q },
}
`, randToken(t, 32), filepath.Join(dir, "openclaw.log"))
	ocConfig := filepath.Join(dir, "openclaw.json5")
	if err := os.WriteFile(ocConfig, []byte(start), 0o600); err != nil {
		t.Fatal(err)
	}
	const gateName = "real"
	guard := fmt.Sprintf(`	clawgate 127.0.0.1:%d {
		gateway %s
		token ci {
			env CG_SETUP_TOKEN_CI
		}
		allow user:%s scopes operator.read,operator.write
		allow tag:ci token:ci scopes operator.read
	}`, port, gateName, ocAlice)
	caddyfile := func(config, stateDir string, nodes ...tsnet.Config) string {
		gateway := fmt.Sprintf("gateway %s {\n\tconfig %s\n\tstate_dir %s\n\tupstream 127.0.0.1:%d\n}", gateName, config, stateDir, port)
		return globalOptions{nodes: nodes, clawgate: gateway}.String() + fmt.Sprintf(`http://gw.%s:%d {
	bind clawgate/gw
%s
}
`, tailnettest.Domain, ocSitePort, guard)
	}
	setupFile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(setupFile, []byte(caddyfile(ocConfig, filepath.Join(dir, "state"))), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code, err := runSetupCommand(&out, setupOptions{config: setupFile, write: true})
	if err != nil || code != 0 {
		t.Fatalf("setup --write = %d, %v\n%s", code, err, out.String())
	}
	t.Logf("setup --write:\n%s", out.String())
	rewritten, err := os.ReadFile(ocConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rewritten, []byte("// so the phone can reach it")) || !bytes.Contains(rewritten, []byte("// my gateway")) {
		t.Errorf("comments lost:\n%s", rewritten)
	}

	begin := time.Now()
	gw := openclawtest.Start(t, rewritten, port)
	t.Logf("OpenClaw started from the rewritten config in %v", time.Since(begin).Round(100*time.Millisecond))

	tn := tailnettest.New(t)
	gwNode := tn.Config(t, "gw")
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin(ocAlice))
	ci := tn.NewNode(t, "ci-bot", tailnettest.WithTags("tag:ci"))
	startCaddyTailnet(t, caddyfile(gw.ConfigPath(), gw.StateDir(), gwNode))
	deadline := time.Now().Add(60 * time.Second)
	for p := nodeByName("gw"); p == nil || len(p.tailnetIPs()) == 0; p = nodeByName("gw") {
		if time.Now().After(deadline) {
			t.Fatal("clawgate node gw never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tn.WaitPeer(t, alice, "gw")
	tn.WaitPeer(t, ci, "gw")
	if blocked, reasons := runningApp.Load().gateStatus(gateName); blocked {
		t.Fatalf("clawgate's gate refuses the config setup wrote: %q", reasons)
	}

	all := []string{"operator.admin", "operator.read", "operator.write"}
	t.Run("alice", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, alice, http.Header{"Origin": {ocSiteURL}})
		hello := connectOC(t, ctx, oc, all, "")
		if hello.Auth.Method != "trusted-proxy" {
			t.Errorf("hello-ok auth method = %q, want trusted-proxy", hello.Auth.Method)
		}
		if got, want := sorted(hello.Auth.Scopes), []string{"operator.read", "operator.write"}; !slices.Equal(got, want) {
			t.Errorf("hello-ok scopes = %q, want %q", got, want)
		}
	})
	t.Run("ci token", func(t *testing.T) {
		ctx := testCtx(t)
		oc := dialOC(t, ctx, ci, http.Header{"Authorization": {"Bearer " + tokCI}})
		hello := connectOC(t, ctx, oc, all, "")
		if got, want := sorted(hello.Auth.Scopes), []string{"operator.read"}; !slices.Equal(got, want) {
			t.Errorf("hello-ok scopes = %q, want %q", got, want)
		}
	})
}

func TestShellWord(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/etc/caddy/Caddyfile", "/etc/caddy/Caddyfile"},
		{"Caddyfile.example", "Caddyfile.example"},
		{"/home/al ice/Caddyfile", "'/home/al ice/Caddyfile'"},
		{"it's", `'it'\''s'`},
		{"$HOME/x", "'$HOME/x'"},
		{"", "''"},
	}
	for _, tt := range tests {
		if got := shellWord(tt.in); got != tt.want {
			t.Errorf("shellWord(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
