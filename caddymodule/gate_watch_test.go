package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/watch"
)

// The gateway section of goodGatewayConfig, kept in an $include file.
const (
	gatewayInclude = `{
  mode: "local", bind: "loopback", port: 18789,
  trustedProxies: ["127.0.0.1", "::1"],
  auth: { mode: "trusted-proxy",
    trustedProxy: { userHeader: "x-forwarded-user", requiredHeaders: ["x-forwarded-proto", "x-forwarded-host"],
      allowUsers: ["ci-bot"], allowLoopback: true } },
}`
	insecureGatewayInclude = `{ mode: "local", bind: "lan", auth: { mode: "none" } }`
	configWithInclude      = `{ gateway: { $include: "./gateway.json5" } }`
)

// watchedGate is a real Caddy fronting one gateway whose config pulls its
// gateway section from an $include file, with the gate blocking on warn so
// the skills-tree check (warn-level) blocks too.
type watchedGate struct {
	*guardFixture
	dir, stateDir, cfgPath, incPath, admin, log string
}

func newWatchedGate(t *testing.T) *watchedGate {
	t.Helper()
	dir := t.TempDir()
	f := &watchedGate{guardFixture: &guardFixture{be: newBackend(t)}, dir: dir, stateDir: filepath.Join(dir, "state")}
	if err := os.Mkdir(f.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	f.cfgPath = filepath.Join(f.stateDir, "openclaw.json")
	f.incPath = filepath.Join(f.stateDir, "gateway.json5")
	writeMode(t, f.cfgPath, configWithInclude, 0o600)
	writeMode(t, f.incPath, gatewayInclude, 0o600)
	if err := os.MkdirAll(filepath.Join(f.stateDir, "workspace", "skills", "local"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeMode(t, filepath.Join(f.stateDir, "workspace", "skills", "local", "SKILL.md"), "# local", 0o600)
	f.tokCI = randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", f.tokCI)
	port := freePort(t)
	f.url = "http://127.0.0.1:" + itoa(port)
	f.admin = "127.0.0.1:" + itoa(freePort(t))
	f.log = startCaddyLogged(t, fmt.Sprintf(`{
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
			block_on warn
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
		allow token:ci scopes operator.read
	}
}`, f.admin, f.cfgPath, f.stateDir, port, f.be.addr()))
	waitHTTP(t, f.url)
	return f
}

func writeMode(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls the guarded route until it answers want. The timeout is
// generous: how fast a change is seen is measured by clawbench, not here.
func (f *watchedGate) waitFor(t testing.TB, want int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, body := f.do(t, f.url, reqOpts{bearer: f.tokCI})
		if resp.StatusCode == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("status stayed %d (want %d) for %v: %s", resp.StatusCode, want, timeout, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checked returns when the gate last audited the gateway, from the admin API.
func (f *watchedGate) checked(t testing.TB) time.Time {
	t.Helper()
	resp, err := http.Get("http://" + f.admin + "/clawgate/gateways")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var gw map[string]struct{ Checked time.Time }
	if err := json.Unmarshal(body, &gw); err != nil {
		t.Fatalf("admin /clawgate/gateways: %v: %s", err, body)
	}
	return gw["home"].Checked
}

// changeKinds are the changes the gate must notice: each breaks the gateway's
// audit and then repairs it, and names the check that must block.
func changeKinds(f *watchedGate) []struct {
	name         string
	break_, fix  func(t *testing.T)
	check        string
	skillsChange bool
} {
	chmod := func(p string, m os.FileMode) func(t *testing.T) {
		return func(t *testing.T) {
			if err := os.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	outside := filepath.Join(f.dir, "shared-skills", "evil")
	link := filepath.Join(f.stateDir, "workspace", "skills", "evil")
	creds := filepath.Join(f.stateDir, "credentials")
	return []struct {
		name         string
		break_, fix  func(t *testing.T)
		check        string
		skillsChange bool
	}{
		{
			name:   "config written in place",
			break_: func(t *testing.T) { writeMode(t, f.cfgPath, insecureGatewayConfig, 0o600) },
			fix:    func(t *testing.T) { writeMode(t, f.cfgPath, configWithInclude, 0o600) },
			check:  "gateway.bind_no_auth",
		},
		{
			name: "config saved by atomic rename",
			break_: func(t *testing.T) {
				writeMode(t, f.cfgPath+".tmp", insecureGatewayConfig, 0o600)
				if err := os.Rename(f.cfgPath+".tmp", f.cfgPath); err != nil {
					t.Fatal(err)
				}
			},
			fix: func(t *testing.T) {
				writeMode(t, f.cfgPath+".tmp", configWithInclude, 0o600)
				if err := os.Rename(f.cfgPath+".tmp", f.cfgPath); err != nil {
					t.Fatal(err)
				}
			},
			check: "gateway.bind_no_auth",
		},
		{
			name:   "config made world-readable",
			break_: chmod(f.cfgPath, 0o644),
			fix:    chmod(f.cfgPath, 0o600),
			check:  "fs.config.perms_world_readable",
		},
		{
			name:   "$include edited",
			break_: func(t *testing.T) { writeMode(t, f.incPath, insecureGatewayInclude, 0o600) },
			fix:    func(t *testing.T) { writeMode(t, f.incPath, gatewayInclude, 0o600) },
			check:  "gateway.bind_no_auth",
		},
		{
			name:   "$include made group-writable",
			break_: chmod(f.incPath, 0o620),
			fix:    chmod(f.incPath, 0o600),
			check:  "fs.config_include.perms_writable",
		},
		{
			name:   "state dir made world-writable",
			break_: chmod(f.stateDir, 0o777),
			fix:    chmod(f.stateDir, 0o700),
			check:  "fs.state_dir.perms_world_writable",
		},
		{
			name: "credentials dir appears writable by others",
			break_: func(t *testing.T) {
				if err := os.Mkdir(creds, 0o700); err != nil {
					t.Fatal(err)
				}
				chmod(creds, 0o777)(t)
			},
			fix:   func(t *testing.T) { os.Remove(creds) },
			check: "fs.credentials_dir.perms_writable",
		},
		{
			name: "a symlinked skill escapes the workspace",
			break_: func(t *testing.T) {
				if err := os.MkdirAll(outside, 0o700); err != nil {
					t.Fatal(err)
				}
				writeMode(t, filepath.Join(outside, "SKILL.md"), "# evil", 0o600)
				if err := os.Symlink(outside, link); err != nil {
					t.Fatal(err)
				}
			},
			fix:          func(t *testing.T) { os.Remove(link) },
			check:        "skills.workspace.symlink_escape",
			skillsChange: true,
		},
	}
}

func TestGateFollowsEachKindOfChange(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Caddy and waits for the gate; run without -short")
	}
	f := newWatchedGate(t)
	f.waitFor(t, 200, 30*time.Second)

	t.Run("an idle gateway is not audited again", func(t *testing.T) {
		first := f.checked(t)
		time.Sleep(3 * time.Second)
		if got := f.checked(t); !got.Equal(first) {
			t.Errorf("the gate audited an unchanged gateway again (checked %v, then %v)", first, got)
		}
	})

	for _, k := range changeKinds(f) {
		t.Run(k.name, func(t *testing.T) {
			timeout := 30 * time.Second
			if k.skillsChange {
				timeout = 90 * time.Second
			}
			k.break_(t)
			if body := f.waitFor(t, 503, timeout); !strings.Contains(body, k.check) {
				t.Errorf("503 body does not name %s: %s", k.check, body)
			}
			k.fix(t)
			f.waitFor(t, 200, timeout)
		})
	}
}

func TestGateWithoutChangeNotificationsPolls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Caddy and waits for the gate; run without -short")
	}
	// No inotify watch fits: the gate cannot track changes and must poll.
	defer watch.SetBudget(watch.SetBudget(0))
	f := newWatchedGate(t)
	f.waitFor(t, 200, 30*time.Second)
	if got := logEntries(t, f.log, "cannot track changes of the gateway's files; polling them instead"); len(got) != 1 {
		t.Errorf("logged the fallback %d times, want once", len(got))
	}
	for _, k := range changeKinds(f) {
		t.Run(k.name, func(t *testing.T) {
			timeout := 30 * time.Second
			if k.skillsChange {
				timeout = 120 * time.Second
			}
			k.break_(t)
			if body := f.waitFor(t, 503, timeout); !strings.Contains(body, k.check) {
				t.Errorf("503 body does not name %s: %s", k.check, body)
			}
			k.fix(t)
			f.waitFor(t, 200, timeout)
		})
	}
	if got := logEntries(t, f.log, "cannot track changes of the gateway's files; polling them instead"); len(got) != 1 {
		t.Errorf("logged the fallback %d times, want once", len(got))
	}
}
