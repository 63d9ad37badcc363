package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
)

// tourSteps are the behaviours the demo shows, by the words their rows are
// named with.
var tourSteps = []string{"allowed user", "stranger", "spoofed headers", "insecure config", "config fixed"}

// TestDemo runs the demo in this process as the README's first command,
// `go run ./cmd/clawgate-demo`, does: with the real OpenClaw (required under
// CI=true), with the stand-in, and with a Caddy config broken on purpose,
// whose wrong step must show as ✗ and fail the exit status.
func TestDemo(t *testing.T) {
	suites.SkipShort(t, suites.Demo)
	t.Run("openclaw", func(t *testing.T) {
		openclawtest.Require(t)
		code, res, out := runDemo(t, flags{})
		if res.Backend != BackendOpenClaw {
			t.Errorf("backend = %q (%s), want the real OpenClaw", res.Backend, res.BackendDesc)
		}
		checkDemoPassed(t, code, res, out)
		// Nothing of the gateway outlives the demo: no process runs from
		// the state dir it was given. The script's watchdog may leave its
		// last `sleep 1` behind for a moment, hence the wait.
		kv := "OPENCLAW_STATE_DIR=" + filepath.Join(res.Dir, "gateway", "state")
		deadline := time.Now().Add(3 * time.Second)
		for procs := procsWithEnv(t, kv); len(procs) > 0; procs = procsWithEnv(t, kv) {
			if time.Now().After(deadline) {
				t.Errorf("processes of the demo's gateway still run 3s after it ended: %q", procs)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("stand-in", func(t *testing.T) {
		code, res, out := runDemo(t, flags{standIn: true})
		if res.Backend != BackendStandIn || !strings.Contains(out, "STAND-IN") {
			t.Errorf("backend = %q, and the table must say STAND-IN:\n%s", res.Backend, out)
		}
		checkDemoPassed(t, code, res, out)
	})

	t.Run("a misbehaving step fails the demo", func(t *testing.T) {
		// A rule that lets the stranger in: the tour must notice.
		const rule = "allow user:alice@example.com scopes operator.read,operator.write"
		broken := &rewritingCaddy{old: rule, new: rule + "\n\t\tallow user:bob@example.com"}
		code, res, out := runDemo(t, flags{standIn: true, json: true, caddy: broken})
		if !broken.rewrote {
			t.Fatalf("the demo's Caddyfile no longer holds %q; update this test", rule)
		}
		if code != 1 || res.OK() {
			t.Errorf("exit status %d, OK() = %v; want 1 and false", code, res.OK())
		}
		var got struct {
			OK    bool
			Steps []struct {
				Step string
				OK   bool
			}
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("--json output: %v\n%s", err, out)
		}
		if got.OK {
			t.Error(`--json says "ok": true`)
		}
		for _, s := range got.Steps {
			if want := !strings.Contains(s.Step, "stranger"); s.OK != want {
				t.Errorf("step %q ok = %v, want %v", s.Step, s.OK, want)
			}
		}
	})
}

// runDemo runs the demo as the clawgate-demo command would, and returns the
// exit status, the result and stdout.
func runDemo(t *testing.T, f flags) (int, *Result, string) {
	t.Helper()
	envBefore := []string{os.Getenv("XDG_DATA_HOME"), os.Getenv("XDG_CONFIG_HOME")}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	code, res := runCommand(ctx, &stdout, &stderr, f)
	t.Logf("demo took %v (setup %v, tour %v, cleanup %v); its output:\n%s%s", time.Since(start).Round(100*time.Millisecond),
		res.Setup.Round(100*time.Millisecond), res.Tour.Round(10*time.Millisecond), res.Cleanup.Round(10*time.Millisecond),
		stderr.String(), stdout.String())

	// It cleaned up everything it started.
	nctx, ncancel := context.WithTimeout(context.Background(), time.Second)
	defer ncancel()
	if err := caddymodule.WaitNodesClosed(nctx); err != nil {
		t.Errorf("after the demo: %v", err)
	}
	if _, err := os.Stat(res.Dir); res.Dir == "" || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %q after the demo: %v, want it removed", res.Dir, err)
	}
	if envAfter := []string{os.Getenv("XDG_DATA_HOME"), os.Getenv("XDG_CONFIG_HOME")}; envAfter[0] != envBefore[0] || envAfter[1] != envBefore[1] {
		t.Errorf("XDG dirs after the demo = %q, want them restored to %q", envAfter, envBefore)
	}
	return code, res, stdout.String()
}

// rowRE is a table row that names a step: the step in the first column
// (no leading space), and the mark in the last.
var rowRE = regexp.MustCompile(`^(\S.*?)\s{2,}.*\s([✓✗])$`)

// checkDemoPassed checks what the README promises: exit status 0, and a
// table with setup, every behaviour of the tour and cleanup, all ✓.
func checkDemoPassed(t *testing.T, code int, res *Result, out string) {
	t.Helper()
	if code != 0 || !res.OK() {
		t.Errorf("exit status %d, OK() = %v; want 0 and true", code, res.OK())
	}
	if strings.Contains(out, "✗") {
		t.Errorf("the output has a ✗:\n%s", out)
	}
	_, table, ok := strings.Cut(out, "\nSTEP ")
	if !ok {
		t.Fatalf("no table in the output:\n%s", out)
	}
	table, _, _ = strings.Cut(table, "\n\n")
	var rows []string
	for _, line := range strings.Split(table, "\n")[1:] {
		line = strings.TrimRight(line, " ")
		if strings.HasPrefix(line, " ") || line == "" {
			continue // a wrapped cell's continuation
		}
		m := rowRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("table row %q has no ✓ or ✗ at its end", line)
			continue
		}
		rows = append(rows, m[1])
		if m[2] != "✓" {
			t.Errorf("table row %q is not ✓", line)
		}
	}
	if len(rows) != len(res.Steps) {
		t.Errorf("the table has %d rows %q, the result %d steps", len(rows), rows, len(res.Steps))
	}
	want := append(append([]string{"setup"}, tourSteps...), "cleanup")
	for _, w := range want {
		found := false
		for _, r := range rows {
			found = found || strings.Contains(r, w)
		}
		if !found {
			t.Errorf("the table has no row for %q; rows %q", w, rows)
		}
	}
	if !strings.Contains(out, "all "+strconv.Itoa(len(res.Steps))+" steps behaved as expected") {
		t.Errorf("the output lacks the verdict line:\n%s", out)
	}
}

// rewritingCaddy is the demo's Caddy with one edit to the Caddyfile.
type rewritingCaddy struct {
	ProcessCaddy
	old, new string
	rewrote  bool
}

func (c *rewritingCaddy) Start(caddyfile, dataDir string) error {
	c.rewrote = strings.Contains(caddyfile, c.old)
	return c.ProcessCaddy.Start(strings.Replace(caddyfile, c.old, c.new, 1), dataDir)
}

// procsWithEnv returns "<pid> <command line>" for each process whose
// environment holds the entry kv.
func procsWithEnv(t *testing.T, kv string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, e := range bytes.Split(b, []byte{0}) {
			if string(e) == kv {
				cmd, _ := os.ReadFile(filepath.Join(d, "cmdline"))
				pids = append(pids, filepath.Base(d)+" "+string(bytes.ReplaceAll(bytes.TrimRight(cmd, "\x00"), []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return pids
}
