package caddymodule

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// identityScopesConfig is the good gateway config with per-identity scopes,
// a key 2026.8.2 added: 2026.7.35 refuses to start with it.
var identityScopesConfig = strings.Replace(goodGatewayConfig, "allowLoopback: true } },",
	`allowLoopback: true }, identityScopes: { "ci-bot": ["operator.read"] } },`, 1)

// reread is how long a test waits for the gate to see a changed config: it
// promises a second; the machine may be busy.
const reread = 3 * time.Second

// waitGuardStatus polls the guarded route until it answers want, within
// limit, and returns the last body.
func (f *versionFixture) waitGuardStatus(t testing.TB, want int, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		resp, body := f.do(t, f.url, reqOpts{bearer: f.tokCI})
		if resp.StatusCode == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("status stayed %d (want %d) for %v: %s", resp.StatusCode, want, limit, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGatewaySchemaPerLine: the gate validates a gateway's config against
// the schema of the OpenClaw line it assumes for that gateway.
func TestGatewaySchemaPerLine(t *testing.T) {
	if !strings.Contains(identityScopesConfig, "identityScopes") {
		t.Fatal("identityScopesConfig does not hold identityScopes")
	}
	t.Run("2026.7.35 refuses identityScopes", func(t *testing.T) {
		f := newVersionFixture(t, "openclaw_version 2026.7.35")
		f.waitGuardStatus(t, http.StatusOK, reread)
		writeFileAtomic(t, f.cfgPath, []byte(identityScopesConfig))
		body := f.waitGuardStatus(t, http.StatusServiceUnavailable, reread)
		if got := errorType(t, body); got != "clawgate_config_invalid" {
			t.Errorf("error.type = %q, want clawgate_config_invalid: %s", got, body)
		}
		if !strings.Contains(body, "gateway.auth") {
			t.Errorf("503 body does not name gateway.auth: %s", body)
		}
		before := f.be.count()
		f.do(t, f.url, reqOpts{bearer: f.tokCI})
		if f.be.count() != before {
			t.Errorf("a request reached the gateway whose config its line refuses")
		}
		writeFileAtomic(t, f.cfgPath, []byte(goodGatewayConfig))
		f.waitGuardStatus(t, http.StatusOK, reread)
	})

	for _, v := range []string{"2026.9.6", "2026.8.2"} {
		t.Run(v+" accepts identityScopes", func(t *testing.T) {
			f := newVersionFixture(t, "openclaw_version "+v)
			writeFileAtomic(t, f.cfgPath, []byte(identityScopesConfig))
			// Past the gate's reread, the same config keeps serving.
			time.Sleep(1500 * time.Millisecond)
			f.waitGuardStatus(t, http.StatusOK, reread)
			if got := f.assumed(t); got.Line != v || !got.Known {
				t.Errorf("/clawgate/gateways openclaw = %+v, want line %s, known", got, v)
			}
		})
	}

	// A version that is not a supported line is checked by the newest
	// schema, whichever line's other rules apply to it.
	for _, tt := range []struct {
		version, line string
		want          int
	}{
		{"2026.7.40", "2026.7.35", http.StatusOK},
		{"2027.1.0", "2026.9.6", http.StatusOK},
	} {
		t.Run("unmeasured "+tt.version+" gets the newest schema", func(t *testing.T) {
			f := newVersionFixture(t, "openclaw_version "+tt.version)
			f.waitGuardStatus(t, http.StatusOK, reread)
			if got := f.assumed(t); got.Known || got.Line != tt.line {
				t.Errorf("/clawgate/gateways openclaw = %+v, want %s unknown under %s's rules", got, tt.version, tt.line)
			}
			writeFileAtomic(t, f.cfgPath, []byte(identityScopesConfig))
			time.Sleep(1500 * time.Millisecond)
			f.waitGuardStatus(t, tt.want, reread)
		})
	}

	t.Run("an upgrade of the installed package lifts the block", func(t *testing.T) {
		f := newVersionFixture(t, "openclaw_package $PKG")
		f.writePackage(t, "2026.7.35")
		writeFileAtomic(t, f.cfgPath, []byte(identityScopesConfig))
		f.waitGuardStatus(t, http.StatusServiceUnavailable, reread)
		// The package is not watched: the gate's backstop poll (5 s) sees it.
		f.writePackage(t, "2026.9.6")
		f.waitGuardStatus(t, http.StatusOK, 12*time.Second)
	})
}
