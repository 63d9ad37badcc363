package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// modulePath is the module whose checkout holds scripts/openclaw.sh.
const modulePath = "github.com/clawgate/clawgate"

// installCommand is what the demo tells people to run, from the repo root.
const installCommand = "scripts/openclaw.sh install"

// findRepo returns the nearest directory at or above dir whose go.mod
// declares clawgate's module, so a go.mod of some other module (a vendored
// example, a user's own project) is passed over.
func findRepo(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("finding the clawgate checkout: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && goModModule(b) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("finding the clawgate checkout: no go.mod of %s at or above the working directory", modulePath)
		}
		dir = parent
	}
}

// goModModule returns the module path a go.mod declares, or "".
func goModModule(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t' && rest[0] != '"') {
			continue
		}
		rest = strings.TrimSpace(rest)
		if unq, err := strconv.Unquote(rest); err == nil {
			rest = unq
		}
		// A quoted path can spell control characters (`"\x0a"`); no valid
		// module path holds one, so such a line names no module.
		if strings.ContainsFunc(rest, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return ""
		}
		return rest
	}
	return ""
}

// openclaw drives the project's scripts/openclaw.sh.
type openclaw struct {
	repo string // the checkout; the script lives in repo/scripts
}

// versionRE finds the version in the script's install message, e.g.
// "OpenClaw 2026.9.6 on Node 24.21.0 already installed in ...".
var versionRE = regexp.MustCompile(`OpenClaw (\d[0-9A-Za-z.+-]*)`)

// install runs `scripts/openclaw.sh install`, which returns at once when the
// pinned version is in place, and returns the installed version.
func (o openclaw) install(ctx context.Context) (version string, err error) {
	out, err := o.script(ctx, nil, "install")
	if err != nil {
		return "", err
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("scripts/openclaw.sh install printed no version: %q", bytes.TrimSpace(out))
	}
	return string(m[1]), nil
}

// run starts a gateway isolated in dir on 127.0.0.1:port and returns once it
// answers /healthz and /readyz. The watch PID makes the script's watchdog stop
// the gateway if this process dies before its cleanup runs.
func (o openclaw) run(ctx context.Context, dir string, port int) error {
	env := []string{"CLAWGATE_OPENCLAW_WATCH_PID=" + strconv.Itoa(os.Getpid())}
	_, err := o.script(ctx, env, "run", dir, "--port", strconv.Itoa(port))
	return err
}

// stop stops the gateway started in dir and returns what the script said
// ("gateway <pid> stopped (exit status N)"), or "" if none was running.
func (o openclaw) stop(dir string) (string, error) {
	out, err := o.script(context.Background(), nil, "stop", dir)
	return string(bytes.TrimSpace(out)), err
}

// script runs scripts/openclaw.sh and returns its stdout; on failure the
// error carries the tail of stderr, where the script explains itself.
func (o openclaw) script(ctx context.Context, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(o.repo, "scripts", "openclaw.sh")}, args...)...)
	cmd.Dir = o.repo
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &scriptError{cmd: args[0], err: err, stderr: stderr.String()}
	}
	return out, nil
}

// scriptError is a failed run of scripts/openclaw.sh.
type scriptError struct {
	cmd    string // install, run, ...
	err    error
	stderr string // where the script, npm and the gateway log tail explain
}

func (e *scriptError) Error() string {
	return fmt.Sprintf("scripts/openclaw.sh %s: %v\n%s", e.cmd, e.err, tailLines(e.stderr, 15))
}

func (e *scriptError) Unwrap() error { return e.err }

// summary is the few lines of stderr that say why: the script's own
// messages and npm's error code and cause, or else the last lines.
func (e *scriptError) summary() string {
	var keep []string
	for _, line := range strings.Split(e.stderr, "\n") {
		if strings.HasPrefix(line, "openclaw.sh:") || strings.HasPrefix(line, "npm error code") ||
			strings.HasPrefix(line, "npm error network") || strings.HasPrefix(line, "npm error FetchError") {
			keep = append(keep, line)
		}
	}
	if len(keep) == 0 {
		return tailLines(e.stderr, 4)
	}
	return strings.Join(keep, "\n")
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
