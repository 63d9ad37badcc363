package caddymodule

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/spf13/cobra"
)

// caddyValidate runs Caddy's own `caddy validate --config <file> --adapter
// caddyfile` command on a Caddyfile, in this process, and returns its error.
func caddyValidate(t testing.TB, caddyfile string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	caddyMu.Lock()
	defer caddyMu.Unlock()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	validate, ok := caddycmd.Commands()["validate"]
	if !ok {
		t.Fatal("caddy has no validate command")
	}
	cmd := &cobra.Command{Use: validate.Name, SilenceUsage: true, SilenceErrors: true}
	validate.CobraFunc(cmd)
	cmd.SetArgs([]string{"--config", path, "--adapter", "caddyfile"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	return cmd.Execute()
}

// refusedAlike checks that `caddy validate` and loading the config into the
// running Caddy both refuse it, with the same message, which says want.
func refusedAlike(t *testing.T, caddyfile, want string) {
	t.Helper()
	verr := caddyValidate(t, caddyfile)
	if verr == nil || !strings.Contains(verr.Error(), want) {
		t.Fatalf("caddy validate = %v, want an error saying %q\n%s", verr, want, caddyfile)
	}
	if lerr := loadCaddyErr(t, caddyfile); lerr == nil {
		t.Fatalf("caddy run loads what caddy validate refuses: %v", verr)
	}
}

// shadowDirectives is what each testdata/shadow_<name>.caddyfiletest puts
// next to the shortcut, and how the refusal names it.
var shadowDirectives = map[string]string{
	"respond":          "`respond`",
	"error":            "`error`",
	"abort":            "`abort`",
	"request_header":   "`request_header`",
	"encode":           "`encode`",
	"templates":        "`templates`",
	"handle":           "a `handle`, `handle_path` or `route` block",
	"handle_path":      "a `handle`, `handle_path` or `route` block",
	"route":            "a `handle`, `handle_path` or `route` block",
	"reverse_proxy":    "`reverse_proxy` (or `forward_auth`",
	"forward_auth":     "`reverse_proxy` (or `forward_auth`",
	"php_fastcgi":      "a `handle`, `handle_path` or `route` block",
	"file_server":      "`file_server`",
	"push":             "`push`",
	"metrics":          "`metrics`",
	"intercept":        "`intercept`",
	"clawgate_senders": "`clawgate_senders`",
}

// TestShortcutShadowingRefused: every handler directive Caddy orders after
// `clawgate` that shares a block with the shortcut is refused, by `caddy
// validate` and `caddy run` alike, naming the directive and the fix. The
// adapted JSON of each is a golden file (TestAdaptGolden): the shortcut's
// route comes first.
func TestShortcutShadowingRefused(t *testing.T) {
	t.Setenv("CG_TEST_TG_SECRET", randToken(t, 24))
	files, err := filepath.Glob("testdata/shadow_*.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(shadowDirectives) {
		t.Fatalf("%d shadow_*.caddyfiletest files, %d directives in the table", len(files), len(shadowDirectives))
	}
	for _, file := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "shadow_"), ".caddyfiletest")
		t.Run(name, func(t *testing.T) {
			want, ok := shadowDirectives[name]
			if !ok {
				t.Fatalf("no expectation for %s", file)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, _, ok := splitGolden(string(data))
			if !ok {
				t.Fatalf("%s: no line of dashes", file)
			}
			if !strings.Contains(input, "\t"+name) {
				t.Fatalf("%s does not use %s", file, name)
			}
			refusedAlike(t, input, "ahead of "+want)
			verr := caddyValidate(t, input)
			for _, fix := range []string{"in the same block, which would never run", "write the guard alone (`clawgate { upstream", "your own `reverse_proxy", "its own `handle` block"} {
				if !strings.Contains(verr.Error(), fix) {
					t.Errorf("the refusal does not give the fix %q: %v", fix, verr)
				}
			}
		})
	}
}

// TestShortcutPlacementAccepted: the forms the refusal recommends load, and
// directives Caddy orders before the guard (header, redir, rewrite, uri) do
// not count.
func TestShortcutPlacementAccepted(t *testing.T) {
	data, err := os.ReadFile("testdata/shortcut_placement.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	input, _, _ := splitGolden(string(data))
	if err := caddyValidate(t, input); err != nil {
		t.Fatalf("caddy validate: %v", err)
	}
}

// TestShortcutAdminExample: `respond /admin* 403` next to the shortcut must
// not become an allow. The shortcut form is refused with a message naming
// respond; the guard-only form it recommends answers 403 on /admin, from the
// respond, to a caller the guard admits, and proxies the rest.
func TestShortcutAdminExample(t *testing.T) {
	refusedAlike(t, `{
	admin off
	auto_https off
}
http://:9999 {
	respond /admin* 403
	clawgate 127.0.0.1:18789 {
		allow anyone scopes operator.read
	}
}
`, "ahead of `respond` in the same block")

	be := newBackend(t)
	ci := randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", ci)
	port := freePort(t)
	base := "http://127.0.0.1:" + itoa(port)
	startCaddy(t, fmt.Sprintf(`{
	admin off
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
}
http://127.0.0.1:%d {
	respond /admin* 403
	clawgate {
		upstream %s
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow token:ci scopes operator.read
	}
	reverse_proxy %s
}`, port, be.addr(), be.addr()))
	waitHTTP(t, base)
	f := &guardFixture{be: be}
	tests := []struct {
		name, path, bearer string
		status             int
		reaches            bool
	}{
		{"admitted caller, /admin", "/admin", ci, http.StatusForbidden, false},
		{"admitted caller, /admin/rpc", "/admin/rpc", ci, http.StatusForbidden, false},
		{"admitted caller, the Control UI", "/", ci, http.StatusOK, true},
		{"no credential, /admin", "/admin", "", http.StatusUnauthorized, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := be.count()
			resp, body := f.do(t, base, reqOpts{bearer: tt.bearer, path: tt.path})
			if resp.StatusCode != tt.status {
				t.Fatalf("GET %s = %d, want %d: %s", tt.path, resp.StatusCode, tt.status, body)
			}
			if got := be.count() > before; got != tt.reaches {
				t.Errorf("GET %s reached the gateway: %v, want %v", tt.path, got, tt.reaches)
			}
		})
	}
}

func TestPathsDisjoint(t *testing.T) {
	set := func(paths ...string) caddyhttp.MatcherSet { return caddyhttp.MatcherSet{caddyhttp.MatchPath(paths)} }
	tests := []struct {
		name string
		a, b caddyhttp.MatcherSets
		want bool
	}{
		{"prefix and other exact", caddyhttp.MatcherSets{set("/api/*")}, caddyhttp.MatcherSets{set("/telegram-webhook")}, true},
		{"two prefixes apart", caddyhttp.MatcherSets{set("/api/*")}, caddyhttp.MatcherSets{set("/ui/*", "/assets/*")}, true},
		{"prefix holds the exact path", caddyhttp.MatcherSets{set("/api/*")}, caddyhttp.MatcherSets{set("/api/admin")}, false},
		{"nested prefixes", caddyhttp.MatcherSets{set("/admin*")}, caddyhttp.MatcherSets{set("/admin/rpc*")}, false},
		{"case differs only", caddyhttp.MatcherSets{set("/Admin")}, caddyhttp.MatcherSets{set("/admin")}, false},
		{"no matcher matches all", nil, caddyhttp.MatcherSets{set("/admin*")}, false},
		{"one side without a path", caddyhttp.MatcherSets{set("/api/*")}, caddyhttp.MatcherSets{{caddyhttp.MatchMethod{"GET"}}}, false},
		{"a middle wildcard is not read", caddyhttp.MatcherSets{set("/api/*/x")}, caddyhttp.MatcherSets{set("/ui/*")}, false},
		{"an escaped pattern is not read", caddyhttp.MatcherSets{set("/api%2F*")}, caddyhttp.MatcherSets{set("/ui/*")}, false},
		{"path with other matchers still disjoint", caddyhttp.MatcherSets{{caddyhttp.MatchPath{"/api/*"}, caddyhttp.MatchMethod{"POST"}}}, caddyhttp.MatcherSets{set("/hook")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pathsDisjoint(tt.a, tt.b); got != tt.want {
				t.Errorf("pathsDisjoint(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := pathsDisjoint(tt.b, tt.a); got != tt.want {
				t.Errorf("pathsDisjoint(%v, %v) = %v, want %v (reversed)", tt.b, tt.a, got, tt.want)
			}
		})
	}
}

// TestShortcutOverlappingPathRefused: a later handler on a path the
// shortcut's matcher also covers is refused; one on a path apart is not.
func TestShortcutOverlappingPathRefused(t *testing.T) {
	site := func(later string) string {
		return fmt.Sprintf(`http://:9999 {
	clawgate /api/* 127.0.0.1:18789 {
		allow anyone scopes operator.read
	}
	%s
}
`, later)
	}
	refusedAlike(t, site("respond /api/admin* 403"), "ahead of `respond`")
	refusedAlike(t, site("respond 404"), "ahead of `respond`")
	if err := caddyValidate(t, site("reverse_proxy /telegram-webhook 127.0.0.1:8787")); err != nil {
		t.Errorf("a proxy on a path apart from the shortcut's: %v", err)
	}
}

// TestExamplesValidate: `caddy validate` accepts every example and
// Caddyfile.example as written, given the secrets and files they name.
func TestExamplesValidate(t *testing.T) {
	for _, v := range []string{"TS_AUTHKEY", "CLAWGATE_TOKEN_CI", "OPENCLAW_GATEWAY_TOKEN", "TELEGRAM_WEBHOOK_SECRET"} {
		t.Setenv(v, randToken(t, 32))
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := filepath.Join(t.TempDir(), "idp-jwks.json")
	if err := os.WriteFile(jwks, fmt.Appendf(nil, `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":%q},{"kty":"RSA","kid":"k2","n":%q,"e":"AQAB"}]}`,
		b64(pub), b64(rsaKey.N.Bytes())), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("../examples/*.caddyfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, file := range append(files, "../Caddyfile.example") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cf := strings.ReplaceAll(string(data), "/etc/clawgate/idp-jwks.json", jwks)
			if err := caddyValidate(t, cf); err != nil {
				t.Errorf("caddy validate %s: %v", file, err)
			}
		})
	}
}

// TestListenerChecksInValidate: what Caddy's clawgate listener refuses when
// it opens is refused by `caddy validate` too, with the same message, for a
// server with a clawgate handler.
func TestListenerChecksInValidate(t *testing.T) {
	const withApp = " # with the clawgate app"
	t.Setenv("CG_TEST_TG_SECRET", randToken(t, 24))
	guard := `clawgate 127.0.0.1:18789 {
		allow tailnet scopes operator.read
	}`
	tests := []struct {
		name, bind, body, want string
	}{
		{"a node name the tailnet cannot take", "clawgate/-gw", guard, `hostname "-gw"`},
		{"a Funnel listener without a node", "clawgate+funnel/", `clawgate_senders telegram {
		allow 111
		secret {env.CG_TEST_TG_SECRET}
	}
	reverse_proxy 127.0.0.1:8787`, "clawgate+funnel listener: missing node name; bind clawgate+funnel/<node>"},
		{"the guard on a Funnel", "clawgate+funnel/gw", guard, "tailnet guard `clawgate` cannot serve Funnel traffic"},
		// With the clawgate app configured, servers with no clawgate
		// handler are judged too.
		{"an unchecked proxy on a Funnel, clawgate app configured", "clawgate+funnel/gw", "reverse_proxy 127.0.0.1:18789" + withApp,
			"routes[0].handle[0]: reverse_proxy could reach a backend without a clawgate_senders check"},
		{"a bad node name, clawgate app configured", "clawgate/-gw", "respond 404" + withApp, `hostname "-gw"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			global := ""
			if body, ok := strings.CutSuffix(tt.body, withApp); ok {
				tt.body, global = body, "\tclawgate {\n\t\tgateway home {\n\t\t\tupstream 127.0.0.1:18789\n\t\t}\n\t}\n"
			}
			cf := fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n%s}\nhttp://:8443 {\n\tbind %s\n\t%s\n}\n", global, tt.bind, tt.body)
			refusedAlike(t, cf, tt.want)
		})
	}
}
