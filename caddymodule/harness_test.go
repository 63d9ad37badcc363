package caddymodule

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "user": r.Header.Get("X-Forwarded-User")})
	}))
	t.Cleanup(b.srv.Close)
	return b
}

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
