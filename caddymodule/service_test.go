package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/service"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// requireSystemdAnalyze returns systemd's systemd-analyze; without it the
// test skips, and fails under CI=true (scripts/test installs it).
func requireSystemdAnalyze(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if inCI() {
			t.Fatal("systemd-analyze is missing (Debian package systemd; scripts/test installs it)")
		}
		t.Skip("systemd-analyze is missing (Debian package systemd)")
	}
	return bin
}

// serviceHome makes a home directory for the service's owner with a
// Caddyfile and an OpenClaw state dir, and points this process's HOME,
// XDG_CONFIG_HOME, XDG_DATA_HOME and XDG_RUNTIME_DIR at it, as the owner's
// login would.
func serviceHome(t *testing.T, caddyfile string) (home, runtimeDir, caddyfilePath string) {
	t.Helper()
	// Short, so the admin socket's path fits a unix socket address.
	home, err := os.MkdirTemp("", "cgsvc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	runtimeDir = filepath.Join(home, "run")
	for _, d := range []string{runtimeDir, filepath.Join(home, ".openclaw")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeAtomic(t, filepath.Join(home, ".openclaw", "openclaw.json"), gatewayConfigFor("alice@example.com"))
	caddyfilePath = filepath.Join(home, "Caddyfile")
	if err := os.WriteFile(caddyfilePath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, ".local", "share"))
	t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
	return home, runtimeDir, caddyfilePath
}

const serviceCaddyfile = `{
	admin unix/{$XDG_RUNTIME_DIR:/run/clawgate}/clawgate-admin.sock|0600
	clawgate {
		gateway home {
			config {env.HOME}/.openclaw/openclaw.json
			state_dir {env.HOME}/.openclaw
		}
	}
}
`

// TestServiceUnitsVerify renders the system and the user unit for a
// Caddyfile and has systemd check them: `systemd-analyze verify` accepts
// them, and `systemd-analyze security --offline=yes` scores their exposure.
func TestServiceUnitsVerify(t *testing.T) {
	analyze := requireSystemdAnalyze(t)
	_, runtimeDir, caddyfile := serviceHome(t, serviceCaddyfile)
	bin, err := exec.LookPath("true") // stands for caddy: verify checks that ExecStart's binary exists
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    serviceOptions
		args []string
	}{
		{"system unit", serviceOptions{owner: "daemon"}, nil}, // an account every Debian system has
		{"user unit", serviceOptions{user: true}, []string{"--user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.config, tt.o.kind, tt.o.binary = caddyfile, "systemd", bin
			f, err := renderServiceFile(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			unit := filepath.Join(dir, service.Name+".service")
			if err := os.WriteFile(unit, []byte(f.content), 0o644); err != nil {
				t.Fatal(err)
			}
			run := func(args ...string) (string, error) {
				cmd := exec.Command(analyze, append(tt.args, args...)...)
				cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtimeDir, "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0")
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			out, err := run("verify", unit)
			if err != nil {
				t.Fatalf("systemd-analyze verify: %v\n%s\n%s", err, out, f.content)
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, service.Name+".service") {
					t.Errorf("systemd-analyze verify warns: %s", line)
				}
			}
			score := exposure(t, run, unit)
			t.Logf("%s: systemd-analyze security exposure %.1f", tt.name, score)
			if score > 3.0 {
				t.Errorf("%s: exposure %.1f, want at most 3.0 (systemd calls up to 3.9 OK)", tt.name, score)
			}
		})
	}
	// The score is read from the real output: an unhardened unit scores
	// far worse.
	t.Run("an unhardened unit scores worse", func(t *testing.T) {
		dir := t.TempDir()
		unit := filepath.Join(dir, "plain.service")
		if err := os.WriteFile(unit, []byte("[Service]\nExecStart="+bin+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		run := func(args ...string) (string, error) {
			out, err := exec.Command(analyze, args...).CombinedOutput()
			return string(out), err
		}
		if score := exposure(t, run, unit); score < 8 {
			t.Errorf("an unhardened unit scores %.1f, want at least 8", score)
		}
	})
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func exposure(t *testing.T, run func(...string) (string, error), unit string) float64 {
	t.Helper()
	out, err := run("security", "--offline=yes", unit)
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return score
}

// TestServiceRefusesAdmin: install refuses a config whose admin endpoint
// others can reach, or which it could not reload through.
func TestServiceRefusesAdmin(t *testing.T) {
	_, _, caddyfile := serviceHome(t, serviceCaddyfile)
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, admin, wantErr string
	}{
		{"Caddy's default", "", "the admin endpoint is localhost:2019 (TCP), which every local user can reach"},
		{"loopback TCP", "admin 127.0.0.1:2019", "the admin endpoint is 127.0.0.1:2019 (TCP)"},
		{"off", "admin off", "the admin endpoint is off, so the service cannot be reloaded"},
		{"socket open to the group", "admin unix/{$XDG_RUNTIME_DIR}/a.sock|0660", "is mode 0660, so others can open it"},
		{"abstract socket", "admin unix/@clawgate-admin", "abstract unix socket, which has no permissions"},
		{"unset runtime dir", "admin unix/{$CLAWGATE_TEST_UNSET}/clawgate-admin.sock|0600", "is not in a directory of its own (is $XDG_RUNTIME_DIR unset?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf := "{\n\t" + tt.admin + "\n}\n:8080 {\n\trespond ok\n}\n"
			if err := os.WriteFile(caddyfile, []byte(cf), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			err := runServiceCommand(&out, &errOut, serviceOptions{action: "install", user: true, print: true, config: caddyfile, kind: "systemd", binary: bin})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("install = %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "admin unix/{$XDG_RUNTIME_DIR:/run/clawgate}/clawgate-admin.sock|0600") {
				t.Errorf("the refusal does not say what to write: %v", err)
			}
			if out.Len() != 0 {
				t.Errorf("printed a unit anyway:\n%s", out.String())
			}
		})
	}
}

// TestServiceCommand installs, reinstalls and uninstalls the user unit
// through the command, and leaves a changed unit alone.
func TestServiceCommand(t *testing.T) {
	home, _, caddyfile := serviceHome(t, serviceCaddyfile)
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	o := serviceOptions{user: true, config: caddyfile, kind: "systemd", binary: bin}
	do := func(action string, print bool) (string, string, error) {
		o.action, o.print = action, print
		var out, errOut bytes.Buffer
		err := runServiceCommand(&out, &errOut, o)
		return out.String(), errOut.String(), err
	}
	printed, kind, err := do("install", true)
	if err != nil {
		t.Fatal(err)
	}
	unitPath := filepath.Join(home, ".config", "systemd", "user", "clawgate.service")
	if !strings.Contains(kind, "systemd user unit") || !strings.Contains(kind, unitPath) {
		t.Errorf("--print says %q, want the kind and %s", kind, unitPath)
	}
	if _, err := os.Stat(unitPath); !os.IsNotExist(err) {
		t.Errorf("--print wrote the unit: %v", err)
	}
	for _, want := range []string{
		"ExecStart=" + bin + " run --config " + caddyfile + "\n",
		"ExecReload=" + bin + " reload --config " + caddyfile + " --force\n",
		"ReadWritePaths=" + filepath.Join(home, ".local", "share", "caddy") + "\n",
		"ReadWritePaths=" + filepath.Join(home, ".config", "caddy") + "\n",
		"ReadWritePaths=" + filepath.Join(home, "run") + "\n",
		"Environment=HOME=" + home + "\n",
		"WantedBy=default.target\n",
	} {
		if !strings.Contains(printed, want) {
			t.Errorf("the unit lacks %q:\n%s", want, printed)
		}
	}
	out, _, err := do("install", false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote the systemd user unit") || !strings.Contains(out, "loginctl enable-linger") {
		t.Errorf("install said:\n%s", out)
	}
	written, err := os.ReadFile(unitPath)
	if err != nil || string(written) != printed {
		t.Fatalf("the written unit differs from the printed one (%v)", err)
	}
	for _, dir := range []string{filepath.Join(home, ".local", "share", "caddy"), filepath.Join(home, ".config", "caddy")} {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, want a 0700 directory made for ReadWritePaths", dir, err)
		}
	}
	if out, _, err := do("install", false); err != nil || !strings.Contains(out, "already up to date") {
		t.Errorf("install again: %q, %v", out, err)
	}
	if err := os.WriteFile(unitPath, append(written, "Environment=EXTRA=1\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := do("install", false); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("install over a changed unit: %v", err)
	}
	if _, _, err := do("uninstall", false); err == nil || !strings.Contains(err.Error(), "not removing") {
		t.Errorf("uninstall of a changed unit: %v", err)
	}
	if err := os.WriteFile(unitPath, written, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := do("uninstall", false); err != nil || !strings.Contains(out, "removed "+unitPath) {
		t.Errorf("uninstall: %q, %v", out, err)
	}
	if out, _, err := do("uninstall", false); err != nil || !strings.Contains(out, "not installed") {
		t.Errorf("uninstall again: %q, %v", out, err)
	}
}

// TestServiceStartsAndServes installs the user unit for a real caddy binary
// and a Caddyfile like Caddyfile.example, then runs the unit's ExecStart
// command line as the service manager would (its environment, its working
// directory): clawgate joins the in-process tailnet and serves alice; the
// unit's ExecReload reloads through the admin socket; SIGTERM stops it.
func TestServiceStartsAndServes(t *testing.T) {
	suites.SkipShort(t, suites.Processes)
	// Built first, while HOME (and so Go's caches) is the real one.
	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command("go", "build", "-o", bin, "../cmd/caddy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building caddy: %v\n%s", err, out)
	}
	tn := tailnettest.New(t)
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	bob := tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))
	be := newBackend(t)
	const port = 18080
	site := func(rules string) string {
		return fmt.Sprintf(`{
	admin unix/{$XDG_RUNTIME_DIR:/run/clawgate}/clawgate-admin.sock|0600
	clawgate {
		node gw {
			control_url %s
			ephemeral
		}
		gateway home {
			config {env.HOME}/.openclaw/openclaw.json
			state_dir {env.HOME}/.openclaw
		}
	}
}
http://:%d {
	bind clawgate/gw
	clawgate %s {
		gateway home
		%s
	}
}
`, tn.ControlURL, port, be.addr(), rules)
	}
	home, runtimeDir, caddyfile := serviceHome(t, site("allow user:alice@example.com scopes operator.read"))
	// The node's state lands in Caddy's data dir, as with no state_dir.
	if _, err := tn.NodeConfig(filepath.Join(home, ".local", "share", "caddy", "clawgate", "gw"), "gw"); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := runServiceCommand(&out, &errOut, serviceOptions{action: "install", user: true, config: caddyfile, kind: "systemd", binary: bin}); err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(home, ".config", "systemd", "user", "clawgate.service"))
	if err != nil {
		t.Fatal(err)
	}
	execStart, execReload, env := unitCommand(t, string(unit))
	// What a user manager gives every service, then the unit's own.
	env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "USER=" + os.Getenv("USER"), "LOGNAME=" + os.Getenv("USER"),
		"XDG_RUNTIME_DIR=" + runtimeDir}, env...)
	// The one addition: the tests run in a network namespace with loopback
	// alone, where Tailscale would otherwise wait for a network to come up.
	env = append(env, "TS_ASSUME_NETWORK_UP_FOR_TEST=1")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proc := exec.CommandContext(ctx, execStart[0], execStart[1:]...)
	proc.Env, proc.Dir = env, home
	var logs syncBuffer
	proc.Stdout, proc.Stderr = &logs, &logs
	proc.Cancel = func() error { return proc.Process.Signal(syscall.SIGTERM) }
	proc.WaitDelay = 30 * time.Second
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	defer func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("caddy's log:\n%s", logs.String())
		}
	}()

	tn.WaitPeer(t, alice, "gw")
	tn.WaitPeer(t, bob, "gw")
	url := fmt.Sprintf("http://gw.%s:%d/", tailnettest.Domain, port)
	status := func(n *tailnettest.Node) int {
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := n.HTTPClient().Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: GET %s: %v", n.Hostname, url, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if got := status(alice); got != http.StatusOK {
		t.Fatalf("alice through the service: %d, want 200", got)
	}
	if got := be.last(t).Header.Get("X-Forwarded-User"); got != "alice@example.com" {
		t.Errorf("the gateway saw user %q, want alice@example.com", got)
	}
	if got := status(bob); got != http.StatusForbidden {
		t.Errorf("bob through the service: %d, want 403", got)
	}
	sock := filepath.Join(runtimeDir, "clawgate-admin.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the admin socket: %v, want mode 0600", err)
	}

	// ExecReload, after an edit that admits bob.
	if err := os.WriteFile(caddyfile, []byte(site("allow user:alice@example.com scopes operator.read\n\t\tallow user:bob@example.com scopes operator.read")), 0o600); err != nil {
		t.Fatal(err)
	}
	// bob is not in the gateway's allowUsers yet: admit him there too.
	writeAtomic(t, filepath.Join(home, ".openclaw", "openclaw.json"), gatewayConfigFor("alice@example.com", "bob@example.com"))
	reload := exec.Command(execReload[0], execReload[1:]...)
	reload.Env, reload.Dir = env, home
	if out, err := reload.CombinedOutput(); err != nil {
		t.Fatalf("ExecReload: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for status(bob) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("bob still refused after the reload")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := status(alice); got != http.StatusOK {
		t.Errorf("alice after the reload: %d", got)
	}

	// SIGTERM, as systemctl stop sends it.
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("caddy after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("caddy did not stop within 30s of SIGTERM (the unit gives it 5s)")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the admin socket after stop: %v, want it removed", err)
	}
}

// unitCommand reads a unit's ExecStart and ExecReload command lines and its
// Environment= settings, undoing the unit file's quoting.
func unitCommand(t *testing.T, unit string) (start, reload, env []string) {
	t.Helper()
	for _, line := range strings.Split(unit, "\n") {
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch key {
		case "ExecStart":
			start = splitSystemd(t, value)
		case "ExecReload":
			reload = splitSystemd(t, value)
		case "Environment":
			env = append(env, splitSystemd(t, value)...)
		}
	}
	if len(start) == 0 || len(reload) == 0 {
		t.Fatalf("the unit has no ExecStart or ExecReload:\n%s", unit)
	}
	return start, reload, env
}

// splitSystemd splits a unit file's command line as systemd does, for the
// quoting service.SystemdUnit writes: double quotes with backslash escapes,
// %% and $$.
func splitSystemd(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			quoted, inWord = !quoted, true
		case !quoted && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case (c == '%' || c == '$') && i+1 < len(s) && s[i+1] == c:
			cur.WriteByte(c)
			i++
			inWord = true
		case c == '%' || c == '$':
			t.Fatalf("%q: an unescaped %c would be expanded by systemd", s, c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("%q: unclosed quote", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// syncBuffer is a bytes.Buffer safe for a process's stdout and stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// inCI reports whether the tests run under CI=true, where a missing
// prerequisite fails a test instead of skipping it.
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}
