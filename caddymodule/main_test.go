package caddymodule

import (
	"os"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/multiproc"
)

// TestMain removes the caddy binary the multi-process tests build. Started
// as the Service forger (forgerEnv), the test binary plays another local
// process instead, and runs no test.
func TestMain(m *testing.M) {
	if addr := os.Getenv(forgerEnv); addr != "" {
		os.Exit(runForger(addr, os.Getenv(forgerClaimEnv)))
	}
	code := m.Run()
	multiproc.Cleanup()
	os.Exit(code)
}
