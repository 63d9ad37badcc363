package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testOnly reports whether pkg, a Go import path, is test code that the
// production binary must not link: the testing package and Tailscale's test
// servers and helpers.
func testOnly(pkg string) bool {
	return pkg == "testing" || strings.HasPrefix(pkg, "testing/") ||
		strings.Contains(pkg, "tstest") || strings.Contains(pkg, "testcontrol") ||
		strings.Contains(pkg, "stuntest") || pkg == "net/http/httptest"
}

func TestTestOnly(t *testing.T) {
	for pkg, want := range map[string]bool{
		"testing":                      true,
		"testing/iotest":               true,
		"tailscale.com/tstest":         true,
		"tailscale.com/tstest/tkatest": true,
		"tailscale.com/tstest/integration/testcontrol": true,
		"tailscale.com/net/stun/stuntest":              true,
		"net/http/httptest":                            true,
		"tailscale.com/tsnet":                          false,
		"tailscale.com/net/stun":                       false,
		"github.com/clawgate/clawgate/caddymodule":     false,
		"testingfoo":                                   false,
	} {
		if got := testOnly(pkg); got != want {
			t.Errorf("testOnly(%q) = %v, want %v", pkg, got, want)
		}
	}
}

// TestNoTestCodeInTheBinary lists what the caddy binary links: Caddy,
// clawgate and Tailscale's tsnet, and none of the test code the demo and the
// tests use (the in-process tailnet is Tailscale's test control server).
func TestNoTestCodeInTheBinary(t *testing.T) {
	out := goCommand(t, "list", "-deps", ".")
	deps := strings.Fields(out)
	var bad []string
	for _, pkg := range deps {
		if testOnly(pkg) {
			bad = append(bad, pkg)
		}
	}
	if len(bad) > 0 {
		t.Errorf("cmd/caddy links test code: %q", bad)
	}
	// The list is the real one: it holds what the binary is made of.
	for _, want := range []string{"github.com/clawgate/clawgate/caddymodule", "github.com/caddyserver/caddy/v2/modules/standard", "tailscale.com/tsnet"} {
		found := false
		for _, pkg := range deps {
			found = found || pkg == want
		}
		if !found {
			t.Errorf("go list -deps lacks %s; its output:\n%s", want, out)
		}
	}
}

// TestCommandLine builds the caddy binary and runs `caddy clawgate` as a
// user does: the help lists each subcommand once, and the exit status says
// how a command went (0 fine, 1 a problem found, 2 could not run).
func TestCommandLine(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the caddy binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "caddy")
	goCommand(t, "build", "-o", bin, ".")

	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	// Flags that Tailscale's integration test package registers in every
	// program that links it.
	for _, flag := range []string{"run-windows-service-tests", "verbose-tailscaled"} {
		if bytes.Contains(b, []byte(flag)) {
			t.Errorf("the caddy binary holds the test flag %q", flag)
		}
	}

	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(state, "openclaw.json")
	// Clean at critical, with warn findings (no trusted proxies).
	if err := os.WriteFile(config, []byte(`{gateway: {mode: "local", bind: "loopback", auth: {mode: "token", token: "`+strings.Repeat("x", 40)+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	env := append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"OPENCLAW_STATE_DIR=", "OPENCLAW_CONFIG_PATH=")

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    []string // in stdout
		wantNotOut []string
		wantErr    string // in stderr
	}{
		{"help", []string{"clawgate", "--help"}, 0,
			[]string{"audit ", "setup ", "devices ", "go run ./cmd/clawgate-demo"}, []string{"\n  demo "}, ""},
		{"demo points to its command", []string{"clawgate", "demo"}, 2, nil, nil, "go run ./cmd/clawgate-demo"},
		{"audit, clean", []string{"clawgate", "audit", "--state-dir", state, config}, 0, []string{"gateway.trusted_proxies_missing"}, nil, ""},
		{"audit, a finding", []string{"clawgate", "audit", "--fail-on", "warn", "--state-dir", state, config}, 1, []string{"SEVERITY"}, nil, "at or above --fail-on warn"},
		{"audit, no config", []string{"clawgate", "audit", "--state-dir", state, filepath.Join(state, "nope.json")}, 2, nil, nil, "nope.json"},
		{"audit, bad flag value", []string{"clawgate", "audit", "--fail-on", "sometimes", config}, 2, nil, nil, "sometimes"},
		{"audit, two configs", []string{"clawgate", "audit", config, config}, 1, nil, nil, "accepts at most 1 arg"},
		{"setup, no config", []string{"clawgate", "setup", "--config", filepath.Join(dir, "Caddyfile")}, 2, nil, nil, "Caddyfile"},
		{"devices, no admin endpoint", []string{"clawgate", "devices", "list", "--address", "127.0.0.1:1"}, 1, nil, nil, "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			cmd.Dir = dir
			cmd.Env = env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.WaitDelay = time.Minute
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("caddy %s: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tt.args, " "), code, tt.wantCode, &stdout, &stderr)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("caddy %s: stdout lacks %q:\n%s", strings.Join(tt.args, " "), w, &stdout)
				}
			}
			for _, w := range tt.wantNotOut {
				if strings.Contains(stdout.String(), w) {
					t.Errorf("caddy %s: stdout holds %q:\n%s", strings.Join(tt.args, " "), w, &stdout)
				}
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("caddy %s: stderr lacks %q:\n%s", strings.Join(tt.args, " "), tt.wantErr, &stderr)
			}
			if tt.name == "help" {
				long, _, _ := strings.Cut(stdout.String(), "Usage:")
				for _, sub := range []string{"audit", "setup", "devices"} {
					if n := strings.Count(long, "caddy clawgate "+sub+" "); n != 1 {
						t.Errorf("the help's description names caddy clawgate %s %d times, want once:\n%s", sub, n, long)
					}
				}
				_, cmds, _ := strings.Cut(stdout.String(), "Available Commands:")
				cmds, _, _ = strings.Cut(cmds, "\n\n")
				if n := strings.Count(cmds, "\n  setup "); n != 1 {
					t.Errorf("Available Commands lists setup %d times:\n%s", n, cmds)
				}
			}
		})
	}
}

// goCommand runs the go command in this package's directory and returns its
// stdout.
func goCommand(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, &stderr)
	}
	return stdout.String()
}
