// Package openclawtest runs the real OpenClaw gateway and its security audit for clawgate's tests,
// and speaks the gateway's WebSocket protocol (Client) for the tests and the demo.
//
// OpenClaw is installed by scripts/openclaw.sh (a pinned Node 24 and OpenClaw from the npm registry)
// into $CLAWGATE_OPENCLAW_HOME or <repo>/.cache/openclaw. Tests that need it call Require, Start or
// Audit: outside CI they skip when it is missing, under CI=true they fail, so a CI run can never
// pass by silently skipping the real thing.
//
// A gateway costs about 1 GB of memory and 10–30 s to start, so start one per test suite and share
// it between subtests rather than one per test.
package openclawtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/suites"
)

// installCommand is what a developer runs to make the skipped tests run.
const installCommand = "scripts/openclaw.sh install"

// Gateway is a real OpenClaw gateway running isolated in Dir and listening on 127.0.0.1:Port.
type Gateway struct {
	// Dir holds openclaw.json, state/, home/, gw.log and pid.
	Dir string
	// URL is the gateway's HTTP base URL, http://127.0.0.1:<Port>, without a trailing slash.
	URL string
	// Port is the loopback port the gateway listens on (on 127.0.0.1 and [::1]).
	Port int

	t      testing.TB
	script string
	once   sync.Once
}

// Require returns the path of the openclaw wrapper that runs the pinned OpenClaw on the pinned
// Node. When OpenClaw is not installed it skips the test, or fails it under CI=true. Under -short
// it skips the test: it belongs to the real OpenClaw suite.
func Require(t testing.TB) (bin string) {
	t.Helper()
	return RequireVersion(t, "")
}

// RequireVersion is Require for OpenClaw release line version ("" for the pinned one); a test of
// another line belongs to the release lines suite.
func RequireVersion(t testing.TB, version string) (bin string) {
	t.Helper()
	if version == "" {
		suites.SkipShort(t, suites.OpenClaw)
	} else {
		suites.SkipShort(t, suites.ReleaseLines)
	}
	install := installCommand
	args := []string{"bin"}
	if version != "" {
		install += " " + version
		args = append(args, version)
	}
	script, err := scriptPath()
	if err == nil {
		var out []byte
		out, err = runScript(script, nil, args...)
		if err == nil {
			return strings.TrimSpace(string(out))
		}
	}
	if suites.InCI() {
		t.Fatalf("real OpenClaw %s is required under CI but unavailable: %v\nCI must run `%s` before the tests (./scripts/test does)", version, err, install)
	}
	t.Skipf("real OpenClaw %s is not installed (%v); run `%s` to enable this test", version, err, install)
	return ""
}

// Lines returns the OpenClaw release lines scripts/openclaw.sh supports, the pinned one first.
func Lines(t testing.TB) []string {
	t.Helper()
	script, err := scriptPath()
	if err != nil {
		t.Fatalf("listing openclaw release lines: %v", err)
	}
	out, err := runScript(script, nil, "lines")
	if err != nil {
		t.Fatalf("listing openclaw release lines: %v", err)
	}
	return strings.Fields(string(out))
}

// Start writes config to a fresh directory with mode 0600 and starts a gateway from it on
// 127.0.0.1:port (a free port when port is 0), returning once GET /healthz and /readyz answer 200. The
// gateway always binds loopback whatever config says, and is stopped when the test ends; if the
// test failed, the tail of its log is logged first.
func Start(t testing.TB, config []byte, port int) *Gateway {
	t.Helper()
	return StartVersion(t, "", config, port)
}

// StartVersion is Start with OpenClaw release line version ("" for the pinned one), installed by
// `scripts/openclaw.sh install VERSION`.
func StartVersion(t testing.TB, version string, config []byte, port int) *Gateway {
	t.Helper()
	RequireVersion(t, version)
	script, err := scriptPath()
	if err != nil {
		t.Fatalf("starting openclaw gateway: %v", err)
	}
	if port == 0 {
		port = FreePort(t)
	}
	g := &Gateway{
		Dir:    t.TempDir(),
		URL:    "http://127.0.0.1:" + strconv.Itoa(port),
		Port:   port,
		t:      t,
		script: script,
	}
	if err := os.WriteFile(g.ConfigPath(), config, 0o600); err != nil {
		t.Fatalf("writing openclaw gateway config: %v", err)
	}
	// Registered before the start so a half-started gateway is stopped too. Cleanups run last in,
	// first out, so this runs before t.TempDir removes the directory under the gateway.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", g.logPath(), tail(g.logPath(), 40))
		}
		g.Stop()
	})
	// The watch PID makes the script stop the gateway if this test binary dies before its
	// cleanups run (a timeout, a kill), so no 1 GB gateway outlives the run.
	env := []string{"CLAWGATE_OPENCLAW_WATCH_PID=" + strconv.Itoa(os.Getpid()), "CLAWGATE_OPENCLAW_VERSION=" + version}
	if out, err := runScript(script, env, "run", g.Dir, "--port", strconv.Itoa(port)); err != nil {
		t.Fatalf("starting openclaw gateway in %s: %v", g.Dir, err)
	} else {
		t.Logf("%s", bytes.TrimSpace(out))
	}
	return g
}

// ConfigPath returns the gateway's config file. OpenClaw watches it and hot-applies edits.
func (g *Gateway) ConfigPath() string { return filepath.Join(g.Dir, "openclaw.json") }

// StateDir returns the gateway's OPENCLAW_STATE_DIR, for Audit.
func (g *Gateway) StateDir() string { return filepath.Join(g.Dir, "state") }

func (g *Gateway) logPath() string { return filepath.Join(g.Dir, "gw.log") }

// Stop stops the gateway (SIGTERM, SIGKILL after 15 s). Calling it again does nothing.
func (g *Gateway) Stop() {
	g.once.Do(func() {
		if _, err := runScript(g.script, nil, "stop", g.Dir); err != nil {
			g.t.Errorf("stopping openclaw gateway in %s: %v", g.Dir, err)
		}
	})
}

// Audit runs `openclaw security audit --json` on the config at configPath with the state dir
// stateDir and returns its JSON. env entries (KEY=value) are added to the audit's environment.
// OpenClaw exits 0 even with critical findings, so callers judge the JSON's summary and findings.
func Audit(t testing.TB, configPath, stateDir string, env []string) []byte {
	t.Helper()
	Require(t)
	script, err := scriptPath()
	if err != nil {
		t.Fatalf("running openclaw security audit: %v", err)
	}
	out, err := runScript(script, env, "audit", configPath, stateDir)
	if err != nil {
		t.Fatalf("running openclaw security audit on %s: %v", configPath, err)
	}
	if !json.Valid(out) {
		t.Fatalf("openclaw security audit on %s printed no JSON: %.500q", configPath, out)
	}
	return out
}

// FreePort is FindFreePort for the test t, which fails if there is none.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := FindFreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FindFreePort returns a TCP port that is free on 127.0.0.1 and, where the
// host has IPv6, on [::1]: the gateway listens on both, and fails to start
// if either is taken.
func FindFreePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l6, err6 := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
		l.Close()
		if err6 == nil {
			l6.Close()
			return port, nil
		}
		if !isAddrInUse(err6) {
			return port, nil // no IPv6 loopback here; the gateway will not use it either
		}
	}
	return 0, errors.New("finding a free port: none free on both 127.0.0.1 and [::1] after 20 tries")
}

// isAddrInUse reports whether err says the address is taken, as opposed to IPv6 being unavailable.
func isAddrInUse(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && strings.Contains(strings.ToLower(opErr.Err.Error()), "address already in use")
}

// scriptPath finds scripts/openclaw.sh at the repository root, the nearest directory above the
// working directory (the package under test) holding go.mod.
func scriptPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "scripts", "openclaw.sh"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// runScript runs scripts/openclaw.sh and returns its stdout; on failure the error carries stderr,
// which is where the script explains itself (and prints the gateway log tail).
func runScript(script string, env []string, args ...string) ([]byte, error) {
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("scripts/openclaw.sh %s: %w\n%s", args[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// tail returns the last n lines of the file at path, or why it cannot.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
