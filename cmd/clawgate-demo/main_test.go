package main

import (
	"os/exec"
	"strings"
	"testing"
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
