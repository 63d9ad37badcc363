// Package suites names clawgate's heavy test suites and skips them under `go test -short`, so a
// quick run of the unit, fuzz-seed, golden and in-process Caddy tests takes seconds. The project's
// test command (scripts/test, which CI runs) never passes -short: it runs every suite.
package suites

import (
	"os"
	"strconv"
	"testing"
)

// The heavy suites, as a skipped test names them.
const (
	Tailnet         = "tailnet"                    // an in-process control server, DERP and real tsnet nodes
	BadInputTailnet = "bad input over the tailnet" // the bad-input cases again through a clawgate node
	LoadFault       = "load and fault"             // many sessions held through reloads and outages
	OpenClaw        = "real OpenClaw"              // the real gateway, its audit or its schema
	ReleaseLines    = "release lines"              // one real OpenClaw gateway per supported release line
	Browser         = "browser"                    // Chromium loading the real Control UI
	Demo            = "demo"                       // the whole demo: tailnet, Caddy and the real OpenClaw
	Processes       = "several processes"          // the built caddy binary run as separate processes
)

// SkipShort skips t under -short, naming the suite it belongs to and what runs it.
func SkipShort(t testing.TB, suite string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s suite: skipped under -short; ./scripts/test runs it (go test without -short)", suite)
	}
}

// InCI reports whether the tests run in CI (CI=true), where a real component a test needs
// (OpenClaw, Chromium) that is missing fails the test instead of skipping it: a CI run must never
// pass by leaving the real thing out.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}
