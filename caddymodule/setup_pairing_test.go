package caddymodule

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
)

// TestSetupRealOpenClawPairing: for a gateway with `pairing required` that
// serves the Control UI, `caddy clawgate setup --write` turns on OpenClaw's
// deviceAutoApprove with the non-admin scopes the rules grant; the real
// OpenClaw starts from what setup wrote, and clawgate's gate serves it with
// neither device-pairing finding. One gateway (about 1 GB, 15–30 s).
func TestSetupRealOpenClawPairing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real OpenClaw gateway; skipped under -short")
	}
	openclawtest.Require(t)
	port := openclawtest.FreePort(t)
	dir := t.TempDir()
	start := fmt.Sprintf(`// my gateway
{
  gateway: {
    mode: "local",
    port: %d,
    bind: "loopback",
    auth: { mode: "token", token: "%s" },
  },
  logging: { file: %q },
}
`, port, randToken(t, 32), filepath.Join(dir, "openclaw.log"))
	ocConfig := filepath.Join(dir, "openclaw.json5")
	if err := os.WriteFile(ocConfig, []byte(start), 0o600); err != nil {
		t.Fatal(err)
	}
	const gateName = "paired"
	origin := "https://gw.example.ts.net"
	site := freePort(t)
	caddyfile := func(config, stateDir string) string {
		return fmt.Sprintf(`{
	admin off
	auto_https off
	clawgate {
		gateway %[1]s {
			config %[2]s
			state_dir %[3]s
			upstream 127.0.0.1:%[4]d
			origins %[5]s
			pairing required {
				storage %[6]s
			}
		}
	}
}
http://127.0.0.1:%[7]d {
	clawgate 127.0.0.1:%[4]d {
		gateway %[1]s
		allow user:%[8]s scopes operator.read,operator.write
		allow user:ops@example.com scopes operator.admin,operator.read
	}
}
`, gateName, config, stateDir, port, origin, filepath.Join(dir, "pairing.json"), site, ocAlice)
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
	if !strings.Contains(out.String(), "clawgate's device pairing approves each machine; OpenClaw pairs the browser it lets in, so a device is approved once") {
		t.Errorf("setup does not give the reason for deviceAutoApprove:\n%s", out.String())
	}

	cfg, err := audit.Load(audit.LoadOptions{ConfigPath: ocConfig, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatalf("loading what setup wrote: %v", err)
	}
	gw, _ := cfg.Tree["gateway"].(map[string]any)
	auth, _ := gw["auth"].(map[string]any)
	tp, _ := auth["trustedProxy"].(map[string]any)
	daa, _ := tp["deviceAutoApprove"].(map[string]any)
	var scopes []string
	list, _ := daa["scopes"].([]any)
	for _, s := range list {
		str, _ := s.(string)
		scopes = append(scopes, str)
	}
	if daa["enabled"] != true || !slices.Equal(sorted(scopes), []string{"operator.read", "operator.write"}) {
		t.Fatalf("deviceAutoApprove = %v, want enabled with operator.read and operator.write (never admin)", daa)
	}

	rewritten, err := os.ReadFile(ocConfig)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	ocgw := openclawtest.Start(t, rewritten, port)
	t.Logf("OpenClaw started from the rewritten config in %v", time.Since(begin).Round(100*time.Millisecond))

	startCaddy(t, caddyfile(ocgw.ConfigPath(), ocgw.StateDir()))
	app := runningApp.Load()
	if app == nil || app.gates[gateName] == nil {
		t.Fatal("no running clawgate app with the gateway's gate")
	}
	deadline := time.Now().Add(60 * time.Second)
	var st *gateState
	for st = app.gates[gateName].state.Load(); st.Checked.IsZero(); st = app.gates[gateName].state.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("the gate never audited the config: %q", st.Reasons)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Blocked {
		t.Errorf("clawgate's gate refuses the config setup wrote: %q", st.Reasons)
	}
	for _, f := range st.Findings {
		if f.CheckID == "clawgate.control_ui_double_pairing" || f.CheckID == "clawgate.device_auto_approve_without_edge_pairing" {
			t.Errorf("the gate finds %s (%s) in the config setup wrote", f.CheckID, f.Severity)
		}
	}
}
