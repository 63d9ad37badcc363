package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNoTestFlags checks that the demo links the in-process tailnet without
// Tailscale's integration test package, whose init registers test flags
// (-run-windows-service-tests, -verbose-tailscaled) in every program that
// links it.
func TestNoTestFlags(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	var tailnet bool
	for _, pkg := range deps {
		if pkg == "tailscale.com/tstest/integration" {
			t.Errorf("clawgate-demo links %s", pkg)
		}
		tailnet = tailnet || pkg == "github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	}
	if !tailnet {
		t.Errorf("go list -deps lacks the in-process tailnet; its output:\n%s", out)
	}
}

// TestCommand builds the demo and runs it as a user does, with the stand-in
// backend (the real OpenClaw is the business of caddymodule/demo's tests).
// Unlike a test binary, the command gets none of Tailscale's allowances for
// tests: run where no interface but loopback is up (as in a private network
// namespace), its nodes must still come up.
func TestCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the demo")
	}
	bin := filepath.Join(t.TempDir(), "clawgate-demo")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-stand-in", "-json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Minute
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("clawgate-demo -stand-in -json: %v\nstderr:\n%s", err, &stderr)
		}
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("clawgate-demo still runs after 5 minutes; stderr:\n%s", &stderr)
	}
	var res struct {
		OK      bool   `json:"ok"`
		Backend string `json:"backend"`
		Steps   []struct {
			Step     string `json:"step"`
			OK       bool   `json:"ok"`
			Happened string `json:"happened"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("stdout is not the result as JSON: %v\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	if !res.OK || res.Backend != "stand-in" || len(res.Steps) != 7 {
		t.Errorf("result ok=%v backend=%q with %d steps, want ok, stand-in and 7 steps:\n%s", res.OK, res.Backend, len(res.Steps), &stdout)
	}
	for _, s := range res.Steps {
		if !s.OK {
			t.Errorf("step %q: %s", s.Step, s.Happened)
		}
	}
}
