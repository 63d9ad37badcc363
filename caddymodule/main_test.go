package caddymodule

import (
	"os"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/multiproc"
)

// TestMain removes the caddy binary the multi-process tests build.
func TestMain(m *testing.M) {
	code := m.Run()
	multiproc.Cleanup()
	os.Exit(code)
}
