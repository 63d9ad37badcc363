package caddymodule

import (
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/tsnet"
)

// caddyMu serialises tests that load Caddy: its running config is process-global.
var caddyMu sync.Mutex

// startCaddy adapts a Caddyfile, loads it into the real Caddy of this process and
// stops it when the test ends.
func startCaddy(t testing.TB, caddyfile string) {
	t.Helper()
	caddyMu.Lock()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		caddyMu.Unlock()
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Logf("caddyfile warning: %s", w.String())
	}
	cfg = quietConfig(t, cfg)
	if err := caddy.Load(cfg, true); err != nil {
		caddyMu.Unlock()
		t.Fatalf("loading Caddy: %v\n%s", err, cfg)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
		caddyMu.Unlock()
	})
}

// loadCaddyErr adapts and loads a Caddyfile that is expected to be refused.
// Whatever loading refuses, `caddy validate` must refuse too, with the same
// message (checked here for every caller).
func loadCaddyErr(t testing.TB, caddyfile string) error {
	t.Helper()
	err := loadCaddyErrOnly(t, caddyfile)
	if err != nil {
		verr := caddyValidate(t, caddyfile)
		switch {
		case verr == nil:
			t.Errorf("caddy validate accepts a config caddy run refuses: %v", err)
		case !strings.HasSuffix(err.Error(), innermostError(verr)):
			t.Errorf("caddy validate and caddy run refuse with different messages:\nvalidate: %v\nrun:      %v", verr, err)
		}
	}
	return err
}

// innermostError is a Caddy load error without the module path Caddy puts in
// front of the module's own message (which differs with the order Caddy
// happens to load its apps in).
func innermostError(err error) string {
	s := err.Error()
	i := strings.LastIndex(s, "provision ")
	j := strings.LastIndex(s, " app module: ")
	if i > j {
		if _, msg, ok := strings.Cut(s[i:], ": "); ok {
			return msg
		}
	} else if j >= 0 {
		return s[j+len(" app module: "):]
	}
	return s
}

// loadCaddyErrOnly is loadCaddyErr without the check against caddy validate.
func loadCaddyErrOnly(t testing.TB, caddyfile string) error {
	t.Helper()
	caddyMu.Lock()
	defer caddyMu.Unlock()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return err
	}
	err = caddy.Load(quietConfig(t, cfg), true)
	if err == nil {
		_ = caddy.Stop()
	}
	return err
}

// quietConfig keeps tests quiet and self-contained: errors-only logs and no
// autosaved config in the user's home.
func quietConfig(t testing.TB, cfg []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("CLAWGATE_TEST_CADDY_LOGS") == "" {
		m["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}}
	}
	admin, _ := m["admin"].(map[string]any)
	if admin == nil {
		admin = map[string]any{}
	}
	admin["config"] = map[string]any{"persist": false}
	m["admin"] = admin
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// globalOptions is the global options block a test's Caddyfile starts with,
// clawgate's nodes on the in-process tailnet included. Its zero value is what
// most tests want: the admin endpoint off, so that test packages running at
// once never meet on Caddy's default admin port, and automatic HTTPS off, for
// plain http:// sites.
type globalOptions struct {
	// nodes are clawgate's tailnet nodes, as tailnettest.Tailnet.Config
	// returns them: each joins its tailnet's control server with its own
	// state directory. Default: none.
	nodes []tsnet.Config
	// nodeLines are further lines in every node block, such as `port 41641`.
	nodeLines string
	// lines are further lines in one node's block, by the node's name, such
	// as `front_doors tag:door`.
	lines map[string]string
	// admin is the admin endpoint's address. Default: off.
	admin string
	// tlsInternal leaves automatic HTTPS on for https:// sites, which get
	// certificates from Caddy's internal CA (`tls internal`; the test control
	// server issues none) without it being installed in the system's trust
	// store.
	tlsInternal bool
	// extra holds further global options, verbatim: a servers, log or
	// storage block.
	extra string
	// clawgate holds further lines of the clawgate block: its gateway blocks.
	clawgate string
}

// String renders the block, ending in a newline, for the sites to follow.
func (g globalOptions) String() string {
	var b strings.Builder
	b.WriteString("{\n")
	if g.admin == "" {
		b.WriteString("\tadmin off\n")
	} else {
		b.WriteString("\tadmin " + g.admin + "\n")
	}
	if g.tlsInternal {
		b.WriteString("\tskip_install_trust\n")
	} else {
		b.WriteString("\tauto_https off\n")
	}
	if extra := strings.Trim(g.extra, "\n"); extra != "" {
		b.WriteString(indentLines(extra, "\t") + "\n")
	}
	if len(g.nodes) > 0 || strings.TrimSpace(g.clawgate) != "" {
		b.WriteString("\tclawgate {\n")
		for _, n := range g.nodes {
			b.WriteString("\t\tnode " + n.Hostname + " {\n")
			b.WriteString("\t\t\tcontrol_url " + n.ControlURL + "\n")
			b.WriteString("\t\t\tstate_dir " + n.StateDir + "\n")
			if n.Ephemeral {
				b.WriteString("\t\t\tephemeral\n")
			}
			if len(n.Tags) > 0 {
				b.WriteString("\t\t\ttags " + strings.Join(n.Tags, " ") + "\n")
			}
			for _, lines := range []string{g.nodeLines, g.lines[n.Hostname]} {
				if lines := strings.Trim(lines, "\n"); lines != "" {
					b.WriteString(indentLines(lines, "\t\t\t") + "\n")
				}
			}
			b.WriteString("\t\t}\n")
		}
		if lines := strings.Trim(g.clawgate, "\n"); lines != "" {
			b.WriteString(indentLines(lines, "\t\t") + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// TestGlobalOptions checks the Caddy config each form of the preamble adapts
// to: the tailnet tests rely on every node joining the test's control server
// from its own state directory, and on the admin endpoint being off.
func TestGlobalOptions(t *testing.T) {
	gw := tsnet.Config{Hostname: "gw", ControlURL: "http://127.0.0.1:9911", StateDir: "/tmp/state/gw", Ephemeral: true}
	claw := tsnet.Config{Hostname: "claw", ControlURL: "http://127.0.0.1:9911", StateDir: "/tmp/state/claw"}
	type node struct {
		ControlURL string `json:"control_url"`
		StateDir   string `json:"state_dir"`
		Ephemeral  bool   `json:"ephemeral"`
		Port       int    `json:"port"`
		AuthKey    string `json:"auth_key"`
	}
	type adapted struct {
		Admin struct {
			Disabled bool   `json:"disabled"`
			Listen   string `json:"listen"`
		} `json:"admin"`
		Apps struct {
			Clawgate *struct {
				Nodes    map[string]node            `json:"nodes"`
				Gateways map[string]json.RawMessage `json:"gateways"`
			} `json:"clawgate"`
			HTTP struct {
				Servers map[string]struct {
					AutoHTTPS *struct {
						Disable bool `json:"disable"`
					} `json:"automatic_https"`
					Protocols []string `json:"protocols"`
				} `json:"servers"`
			} `json:"http"`
			PKI *struct {
				CAs map[string]struct {
					InstallTrust *bool `json:"install_trust"`
				} `json:"certificate_authorities"`
			} `json:"pki"`
		} `json:"apps"`
	}
	tests := []struct {
		name  string
		g     globalOptions
		check func(t *testing.T, a adapted)
	}{
		{"zero value", globalOptions{}, func(t *testing.T, a adapted) {
			if !a.Admin.Disabled {
				t.Error("admin endpoint on, want off")
			}
			if a.Apps.Clawgate != nil {
				t.Error("a clawgate app without nodes or gateways")
			}
			if s := a.Apps.HTTP.Servers["srv0"]; s.AutoHTTPS == nil || !s.AutoHTTPS.Disable {
				t.Error("automatic HTTPS on, want off")
			}
		}},
		{"nodes, admin, gateways and more options", globalOptions{
			nodes: []tsnet.Config{gw, claw}, nodeLines: "port 41641", lines: map[string]string{"claw": "auth_key tskey-test"}, admin: "127.0.0.1:2999",
			extra: "servers {\n\tprotocols h1 h2\n}", clawgate: "gateway home {\n\tconfig /tmp/openclaw.json\n}",
		}, func(t *testing.T, a adapted) {
			if a.Admin.Disabled || a.Admin.Listen != "127.0.0.1:2999" {
				t.Errorf("admin = %+v, want listening on 127.0.0.1:2999", a.Admin)
			}
			if a.Apps.Clawgate == nil {
				t.Fatal("no clawgate app")
			}
			want := map[string]node{
				"gw":   {ControlURL: gw.ControlURL, StateDir: gw.StateDir, Ephemeral: true, Port: 41641},
				"claw": {ControlURL: claw.ControlURL, StateDir: claw.StateDir, Port: 41641, AuthKey: "tskey-test"},
			}
			if !maps.Equal(a.Apps.Clawgate.Nodes, want) {
				t.Errorf("nodes = %+v, want %+v", a.Apps.Clawgate.Nodes, want)
			}
			if _, ok := a.Apps.Clawgate.Gateways["home"]; !ok || len(a.Apps.Clawgate.Gateways) != 1 {
				t.Errorf("gateways = %s, want home alone", a.Apps.Clawgate.Gateways)
			}
			if got := a.Apps.HTTP.Servers["srv0"].Protocols; !slices.Equal(got, []string{"h1", "h2"}) {
				t.Errorf("the servers option did not reach the server: protocols %q", got)
			}
		}},
		{"internal CA", globalOptions{tlsInternal: true}, func(t *testing.T, a adapted) {
			if s := a.Apps.HTTP.Servers["srv0"]; s.AutoHTTPS != nil && s.AutoHTTPS.Disable {
				t.Error("automatic HTTPS off, want on for tls internal")
			}
			if a.Apps.PKI == nil || a.Apps.PKI.CAs["local"].InstallTrust == nil || *a.Apps.PKI.CAs["local"].InstallTrust {
				t.Error("the internal CA would be installed in the system's trust store")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caddyfile := tt.g.String() + "http://:8080 {\n\trespond ok\n}\n"
			var a adapted
			if err := json.Unmarshal([]byte(adaptJSON(t, caddyfile)), &a); err != nil {
				t.Fatal(err)
			}
			tt.check(t, a)
			if t.Failed() {
				t.Logf("Caddyfile:\n%s", caddyfile)
			}
		})
	}
}

// indentLines puts indent before every line of s but empty ones. Blocks are
// written flush left and land at the depth they belong at; the Caddyfile
// does not depend on it, but a failing test prints the config.
func indentLines(s, indent string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = indent + l
		}
	}
	return strings.Join(lines, "\n")
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// seen is one request as the backend received it.
type seen struct {
	Method, Path, Query string
	Header              http.Header
}

// backend is a real HTTP + WebSocket server on loopback standing in for the
// gateway; it records every request that reaches it.
type backend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newBackend(t testing.TB) *backend {
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.reqs = append(b.reqs, seen{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone()})
		b.mu.Unlock()
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			defer c.CloseNow()
			// Tell the client which user the upgrade carried, then echo.
			_ = c.Write(r.Context(), websocket.MessageText, []byte("hello "+r.Header.Get("X-Forwarded-User")))
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, append([]byte("echo:"), msg...)); err != nil {
					return
				}
			}
		}
		if r.URL.Path == "/large" {
			// Large enough for Caddy's encode to compress it, with its
			// length declared, which a decompressing proxy drops.
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(len(largeBody)))
			_, _ = w.Write(largeBody)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "user": r.Header.Get("X-Forwarded-User")})
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// largeBody is what the backend answers on /large.
var largeBody = []byte(strings.Repeat("clawgate passes the gateway's answer through as it was sent.\n", 64))

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

func (b *backend) last(t testing.TB) seen {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		t.Fatal("backend received no request")
	}
	return b.reqs[len(b.reqs)-1]
}

// waitHTTP polls url until the server answers at all.
func waitHTTP(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}

func itoa(n int) string { return strconv.Itoa(n) }

func wsDial(ctx context.Context, url string, h http.Header) (*websocket.Conn, *http.Response, error) {
	return websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
}
