package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// doctorWant is what one check must say.
type doctorWant struct {
	name, status, detail, fix string // detail and fix: substrings
}

// checkDoctor runs the doctor and compares the checks named in want; it
// returns the table as a user sees it.
func checkDoctor(t *testing.T, o doctorOptions, wantOK bool, want []doctorWant) string {
	t.Helper()
	r := runDoctor(o)
	var table bytes.Buffer
	if err := writeDoctor(&table, r, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("caddy clawgate doctor:\n%s", table.String())
	if r.OK != wantOK {
		t.Errorf("doctor OK = %v, want %v", r.OK, wantOK)
	}
	for _, w := range want {
		found := false
		for _, c := range r.Checks {
			if c.Name != w.name {
				continue
			}
			found = true
			if c.Status != w.status || !strings.Contains(c.Detail, w.detail) || !strings.Contains(c.Fix, w.fix) {
				t.Errorf("check %q = %s %q (fix %q); want %s %q (fix %q)", w.name, c.Status, c.Detail, c.Fix, w.status, w.detail, w.fix)
			}
		}
		if !found {
			t.Errorf("no check %q", w.name)
		}
	}
	// --json carries the same checks.
	var js bytes.Buffer
	if err := writeDoctor(&js, r, true); err != nil {
		t.Fatal(err)
	}
	var back doctorReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.OK != r.OK || len(back.Checks) != len(r.Checks) {
		t.Errorf("--json: %v\n%s", err, js.String())
	}
	return table.String()
}

// noHostAddrs stands for a host whose only addresses are loopback, as in the
// tests' network namespace.
func noHostAddrs() ([]netip.Addr, error) { return nil, nil }

// TestDoctorHealthy checks a healthy install: the real OpenClaw gateway
// with the config `setup --write` made, clawgate on the in-process tailnet
// with its admin endpoint on a private unix socket, device pairing on.
func TestDoctorHealthy(t *testing.T) {
	openclawtest.Require(t)
	port := openclawtest.FreePort(t)
	dir, err := os.MkdirTemp("", "cgdoc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ocConfig := filepath.Join(dir, "openclaw.json")
	if err := os.WriteFile(ocConfig, []byte(`{gateway: {mode: "local", port: 18789, bind: "loopback", auth: {mode: "token", token: "`+randToken(t, 32)+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tn := tailnettest.New(t)
	gwNode := tn.Config(t, "gw")
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin(ocAlice))
	sock := filepath.Join(dir, "admin.sock")
	caddyfile := func(config, stateDir string) string {
		return fmt.Sprintf(`{
	admin unix/%s|0600
	storage file_system %s
	auto_https off
	clawgate {
		node gw {
			control_url %s
			state_dir %s
			ephemeral
		}
		gateway home {
			config %s
			state_dir %s
			upstream 127.0.0.1:%d
			pairing required
		}
	}
}
http://gw.%s:%d {
	bind clawgate/gw
	clawgate 127.0.0.1:%d {
		gateway home
		allow user:%s scopes operator.read,operator.write
	}
}
`, sock, filepath.Join(dir, "storage"), tn.ControlURL, gwNode.StateDir, config, stateDir, port, tailnettest.Domain, ocSitePort, port, ocAlice)
	}
	caddyfilePath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfilePath, []byte(caddyfile(ocConfig, filepath.Join(dir, "state"))), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code, err := runSetupCommand(&out, setupOptions{config: caddyfilePath, write: true}); err != nil || code != 0 {
		t.Fatalf("setup --write = %d, %v\n%s", code, err, out.String())
	}
	rewritten, err := os.ReadFile(ocConfig)
	if err != nil {
		t.Fatal(err)
	}
	gw := openclawtest.Start(t, rewritten, port)
	cf := caddyfile(gw.ConfigPath(), gw.StateDir())
	if err := os.WriteFile(caddyfilePath, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	startCaddyTailnet(t, cf)
	tn.WaitPeer(t, alice, "gw")

	o := doctorOptions{config: caddyfilePath, hostAddrs: noHostAddrs}
	table := checkDoctor(t, o, true, []doctorWant{
		{"config", checkOK, "adapts and validates", ""},
		{"admin endpoint", checkOK, "unix socket " + sock + ", 0600, yours", ""},
		{"caddy running", checkOK, "answers on unix/" + sock + "|0600", ""},
		{"node gw", checkOK, "logged in: gw." + tailnettest.Domain + " on tailnet " + tailnettest.Domain, ""},
		{"node gw https", checkOK, "certificates for", ""},
		{"gateway home config", checkOK, gw.ConfigPath() + " is readable", ""},
		{"gateway home audit", checkOK, "passes", ""},
		{"gateway home setup", checkOK, "setup would change nothing", ""},
		{"gateway home up", checkOK, fmt.Sprintf("answers /readyz on 127.0.0.1:%d; OpenClaw", port), ""},
		{"gateway home loopback only", checkOK, "no address but loopback", ""},
		{"gateway home pairing", checkOK, "storage readable: 0 device(s)", ""},
	})
	if !strings.Contains(table, "all checks passed") {
		t.Errorf("the table does not end with all checks passed")
	}
	for _, c := range runDoctor(o).Checks {
		if c.Status != checkOK {
			t.Errorf("check %q: %s %s", c.Name, c.Status, c.Detail)
		}
	}

	// The same install with the gateway stopped.
	t.Run("gateway stopped", func(t *testing.T) {
		gw.Stop()
		checkDoctor(t, o, false, []doctorWant{
			{"gateway home up", checkFail, fmt.Sprintf("nothing answers on 127.0.0.1:%d", port), "start the OpenClaw gateway"},
		})
	})
}

// TestDoctorBroken checks that each failure the doctor claims to detect is
// detected, with its fix, on a real Caddy and tailnet.
func TestDoctorBroken(t *testing.T) {
	dir, err := os.MkdirTemp("", "cgdoc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	caddyfilePath := filepath.Join(dir, "Caddyfile")
	write := func(cf string) {
		t.Helper()
		if err := os.WriteFile(caddyfilePath, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("caddy not running", func(t *testing.T) {
		write(fmt.Sprintf("{\n\tadmin unix/%s/admin.sock|0600\n}\n", dir))
		checkDoctor(t, doctorOptions{config: caddyfilePath, hostAddrs: noHostAddrs}, false, []doctorWant{
			{"admin endpoint", checkOK, "not there now", ""},
			{"caddy running", checkFail, "no answer", "systemctl --user start clawgate"},
		})
	})

	t.Run("config does not validate", func(t *testing.T) {
		write(fmt.Sprintf("{\n\tadmin unix/%s/admin.sock|0600\n\tclawgate {\n\t\tgateway home {\n\t\t\tblock_on sometimes\n\t\t}\n\t}\n}\n", dir))
		checkDoctor(t, doctorOptions{config: caddyfilePath, hostAddrs: noHostAddrs}, false, []doctorWant{
			{"config", checkFail, `block_on: "sometimes" is not one of`, "caddy validate --config"},
		})
	})

	t.Run("node not logged in, TCP admin, gateway problems", func(t *testing.T) {
		tn := tailnettest.New(t, tailnettest.RequireAuth())
		gwNode := tn.Config(t, "gw")
		admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		// A gateway that answers on an address other than loopback: here
		// 127.0.0.2 stands for the host's LAN address.
		exposed := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		ln, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		exposed.Listener = ln
		exposed.Start()
		defer exposed.Close()
		exposedPort := ln.Addr().(*net.TCPAddr).Port
		downPort := freePort(t)
		okCfg, okState := gatewayDir(t, ocAlice)
		exCfg, exState := gatewayDir(t, ocAlice)
		// The gateway's generation key is a directory: Caddy's storage
		// cannot be read for its approvals.
		storage := filepath.Join(dir, "storage")
		if err := os.MkdirAll(filepath.Join(storage, "clawgate", "pairing", "exposed", "generation"), 0o700); err != nil {
			t.Fatal(err)
		}
		cf := fmt.Sprintf(`{
	admin %s
	storage file_system %s
	auto_https off
	clawgate {
		node gw {
			control_url %s
			state_dir %s
			ephemeral
		}
		gateway down {
			config %s
			state_dir %s
			upstream 127.0.0.1:%d
		}
		gateway missing {
			config %s/nope/openclaw.json
			state_dir %s/nope
			upstream 127.0.0.1:%d
		}
		gateway exposed {
			config %s
			state_dir %s
			upstream 127.0.0.1:%d
			pairing required
		}
	}
}
http://:%d {
	bind clawgate/gw
	handle /down/* {
		clawgate 127.0.0.1:%d {
			gateway down
			user_header x-other-user
			allow user:%s scopes operator.read
		}
	}
	handle /exposed/* {
		clawgate 127.0.0.1:%d {
			gateway exposed
			allow user:%s scopes operator.read
		}
	}
}
`, admin, storage, tn.ControlURL, gwNode.StateDir, okCfg, okState, downPort, dir, dir, downPort, exCfg, exState, exposedPort,
			ocSitePort, downPort, ocAlice, exposedPort, ocAlice)
		write(cf)
		startCaddyTailnet(t, cf)
		o := doctorOptions{config: caddyfilePath, hostAddrs: func() ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
		}}
		// The node asks for a login once it has reached the control server.
		deadline := time.Now().Add(60 * time.Second)
		for {
			var st nodeStatus
			if p := nodeByName("gw"); p != nil {
				st = nodeStatus{Started: true, Status: p.Node.Status(t.Context())}
			}
			if st.AuthURL != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node gw never showed a login URL: %+v", st)
			}
			time.Sleep(100 * time.Millisecond)
		}
		checkDoctor(t, o, false, []doctorWant{
			{"admin endpoint", checkFail, "the admin endpoint is " + admin + " (TCP), which every local user can reach", "admin unix/{$XDG_RUNTIME_DIR:/run/clawgate}/clawgate-admin.sock|0600"},
			{"caddy running", checkOK, "answers on " + admin, ""},
			{"node gw", checkFail, "not logged in to the tailnet", "open " + tn.ControlURL},
			{"gateway down up", checkFail, fmt.Sprintf("nothing answers on 127.0.0.1:%d", downPort), "start the OpenClaw gateway"},
			{"gateway down setup", checkFail, "gateway.auth.trustedProxy.userHeader", "caddy clawgate setup --config " + caddyfilePath + " --write"},
			{"gateway missing config", checkFail, "no such file or directory", "check the gateway block's config"},
			{"gateway missing audit", checkFail, "blocked", "caddy clawgate audit --config"},
			{"gateway exposed loopback only", checkFail, fmt.Sprintf("also answers on 127.0.0.2:%d", exposedPort), `gateway.bind to "loopback"`},
			{"gateway exposed up", checkOK, fmt.Sprintf("answers /readyz on 127.0.0.1:%d", exposedPort), ""},
			{"gateway exposed pairing", checkFail, "the approvals cannot be read", "Caddy's storage"},
		})
	})

	t.Run("tailnet without HTTPS certificates", func(t *testing.T) {
		tn := tailnettest.New(t, tailnettest.WithoutHTTPS())
		gwNode := tn.Config(t, "gw")
		alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin(ocAlice))
		sock := filepath.Join(dir, "admin.sock")
		cf := fmt.Sprintf(`{
	admin unix/%s|0600
	clawgate {
		node gw {
			control_url %s
			state_dir %s
			ephemeral
		}
	}
}
http://:%d {
	bind clawgate/gw
	respond ok
}
`, sock, tn.ControlURL, gwNode.StateDir, ocSitePort)
		write(cf)
		startCaddyTailnet(t, cf)
		tn.WaitPeer(t, alice, "gw")
		checkDoctor(t, doctorOptions{config: caddyfilePath, hostAddrs: noHostAddrs}, true, []doctorWant{
			{"node gw", checkOK, "logged in (100.64.", ""},
			{"node gw https", checkWarn, "the tailnet offers no HTTPS certificates", "turn on MagicDNS and HTTPS Certificates"},
		})
	})
}
