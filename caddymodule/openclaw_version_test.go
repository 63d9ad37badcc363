package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// versionFixture is a real Caddy whose clawgate app audits one gateway
// config, with a guard in front of a recording backend whose only rule
// grants no scopes.
type versionFixture struct {
	*guardFixture
	cfgPath, pkgDir, admin string
}

func newVersionFixture(t *testing.T, gatewayLines string) *versionFixture {
	t.Helper()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := &versionFixture{guardFixture: &guardFixture{be: newBackend(t)}, cfgPath: filepath.Join(stateDir, "openclaw.json"), pkgDir: filepath.Join(dir, "openclaw")}
	writeFileAtomic(t, f.cfgPath, []byte(goodGatewayConfig))
	f.tokCI = randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", f.tokCI)
	port := freePort(t)
	f.url = "http://127.0.0.1:" + itoa(port)
	f.admin = "127.0.0.1:" + itoa(freePort(t))
	startCaddy(t, fmt.Sprintf(`{
	admin %s
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
	clawgate {
		gateway home {
			config %s
			state_dir %s
			upstream 127.0.0.1:18789
			%s
		}
	}
}
http://127.0.0.1:%d {
	clawgate %s {
		gateway home
		token ci {
			env CG_TEST_TOKEN_CI
			user ci-bot
		}
		allow token:ci
	}
}`, f.admin, f.cfgPath, stateDir, strings.ReplaceAll(gatewayLines, "$PKG", f.pkgDir), port, f.be.addr()))
	waitHTTP(t, f.url)
	return f
}

// writePackage writes the package.json of an installed openclaw package.
func (f *versionFixture) writePackage(t testing.TB, version string) {
	t.Helper()
	if err := os.MkdirAll(f.pkgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, filepath.Join(f.pkgDir, "package.json"), []byte(`{"name":"openclaw","version":"`+version+`"}`))
}

// assumed returns what /clawgate/gateways says about the gateway's version.
func (f *versionFixture) assumed(t testing.TB) release.Assumed {
	t.Helper()
	resp, err := http.Get("http://" + f.admin + "/clawgate/gateways")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]struct {
		Blocked  bool            `json:"blocked"`
		Reasons  []string        `json:"reasons"`
		OpenClaw release.Assumed `json:"openclaw"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("/clawgate/gateways: %v", err)
	}
	home, ok := got["home"]
	if !ok {
		t.Fatalf("/clawgate/gateways has no gateway home: %v", got)
	}
	if home.Blocked {
		t.Fatalf("gateway home is blocked: %q", home.Reasons)
	}
	return home.OpenClaw
}

// waitScopes waits (up to 2 s: the gate rereads within a second) until a
// request under the no-scope rule reaches the backend with x-openclaw-scopes
// exactly want, and returns what /clawgate/gateways says then.
func (f *versionFixture) waitScopes(t testing.TB, want string) release.Assumed {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, body := f.do(t, f.url, reqOpts{bearer: f.tokCI})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200: %s", resp.StatusCode, body)
		}
		got, present := f.be.last(t).Header["X-Openclaw-Scopes"]
		if present && len(got) == 1 && got[0] == want {
			return f.assumed(t)
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend: X-Openclaw-Scopes = %q (present %v), want exactly [%q]; /clawgate/gateways says %+v", got, present, want, f.assumed(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGatewayOpenClawVersion(t *testing.T) {
	t.Run("configured line", func(t *testing.T) {
		f := newVersionFixture(t, "openclaw_version 2026.7.35")
		got := f.waitScopes(t, "")
		if got.Version != "2026.7.35" || got.Source != release.SourceConfigured || got.Line != "2026.7.35" || !got.Known {
			t.Errorf("/clawgate/gateways openclaw = %+v, want 2026.7.35 from openclaw_version, known", got)
		}
	})

	t.Run("unknown until the config names the version that wrote it", func(t *testing.T) {
		f := newVersionFixture(t, "")
		got := f.waitScopes(t, release.NoScopesUnmeasured)
		if got.Source != release.SourceNone || got.Known || !strings.Contains(got.Why, "set openclaw_version") {
			t.Errorf("/clawgate/gateways openclaw = %+v, want no version, saying how to set one", got)
		}
		writeFileAtomic(t, f.cfgPath, []byte(strings.Replace(goodGatewayConfig, "gateway: {", `meta: { lastTouchedVersion: "2026.8.2" }, gateway: {`, 1)))
		got = f.waitScopes(t, "")
		if got.Version != "2026.8.2" || got.Source != release.SourceConfigHint || !got.Known {
			t.Errorf("/clawgate/gateways openclaw = %+v, want 2026.8.2 from meta.lastTouchedVersion", got)
		}
	})

	t.Run("installed package, then an upgrade to an unknown line", func(t *testing.T) {
		f := newVersionFixture(t, "openclaw_package $PKG")
		// Not installed yet: said, and no version assumed.
		got := f.waitScopes(t, release.NoScopesUnmeasured)
		if !strings.Contains(got.Why, "could not be read") || strings.Contains(got.Why, f.pkgDir) {
			t.Errorf("/clawgate/gateways openclaw.why = %q, want the read error without the path", got.Why)
		}
		f.writePackage(t, "2026.9.6")
		got = f.waitScopes(t, "")
		if got.Version != "2026.9.6" || got.Source != release.SourcePackage || !got.Known {
			t.Errorf("/clawgate/gateways openclaw = %+v, want 2026.9.6 from the package", got)
		}
		// A newer OpenClaw than any measured: still served, the unmeasured
		// cap, the newest line's rules.
		f.writePackage(t, "2027.1.0")
		got = f.waitScopes(t, release.NoScopesUnmeasured)
		if got.Version != "2027.1.0" || got.Known || got.Line != release.Newest().Version.String() || !strings.Contains(got.Why, "every check stays on") {
			t.Errorf("/clawgate/gateways openclaw = %+v, want 2027.1.0 unknown, the newest line's rules", got)
		}
	})

	t.Run("configured and installed disagree", func(t *testing.T) {
		dir := t.TempDir()
		pkg := filepath.Join(dir, "openclaw")
		if err := os.MkdirAll(pkg, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFileAtomic(t, filepath.Join(pkg, "package.json"), []byte(`{"name":"openclaw","version":"2026.7.35"}`))
		f := newVersionFixture(t, "openclaw_version 2026.9.6\n\t\t\topenclaw_package "+pkg)
		got := f.waitScopes(t, release.NoScopesUnmeasured)
		if got.Version != "2026.9.6" || !strings.Contains(got.Why, "package says 2026.7.35") {
			t.Errorf("/clawgate/gateways openclaw = %+v, want 2026.9.6 with the disagreement said", got)
		}
	})

	t.Run("a version that is not one is refused", func(t *testing.T) {
		err := loadCaddyErr(t, `{
	admin off
	clawgate {
		gateway home {
			openclaw_version latest
		}
	}
}`)
		want := `clawgate.gateways.home.openclaw_version: "latest" is not an OpenClaw version (want YYYY.M.N, e.g. 2026.9.6)`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("loading openclaw_version latest: %v, want %q", err, want)
		}
	})
}
