package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// readmeSection is the text of the README's section with this heading, up
// to the next heading of the same level.
func readmeSection(t *testing.T, readme, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("README has no section %q", heading)
	}
	section, _, _ := strings.Cut(rest, "\n## ")
	return section
}

// readmeFirstCommands is the sh block of the README's "The first two
// commands", one command a line, comments dropped.
func readmeFirstCommands(t *testing.T, readme string) []string {
	t.Helper()
	section := readmeSection(t, readme, "The first two commands")
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal("the section has no sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	var cmds []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		c, _, _ := strings.Cut(l, "#")
		cmds = append(cmds, strings.TrimSpace(c))
	}
	if len(cmds) != 2 {
		t.Fatalf("the first block holds %d commands, want 2: %q", len(cmds), cmds)
	}
	return cmds
}

// realUseCommands is what the README's real-use paragraph tells a user to
// run, each as written there.
type realUseCommands struct {
	run   string // starts Caddy on the example
	plan  string // shows what setup would change
	write string // applies it
	audit string // audits the result as the running gate does
}

// readmeRealUse reads the commands of the real-use paragraph that follows
// the first two commands.
func readmeRealUse(t *testing.T, readme string) realUseCommands {
	t.Helper()
	section := readmeSection(t, readme, "The first two commands")
	_, realUse, ok := strings.Cut(section, "For real use")
	if !ok {
		t.Fatal("the section has no real-use paragraph")
	}
	var c realUseCommands
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(realUse, -1) {
		cmd := m[1]
		args, ok := strings.CutPrefix(cmd, "go run ./cmd/caddy ")
		switch {
		case !ok:
		case strings.HasPrefix(args, "run "):
			c.run = cmd
		case strings.HasPrefix(args, "clawgate setup ") && slices.Contains(strings.Fields(args), "--write"):
			c.write = cmd
		case strings.HasPrefix(args, "clawgate setup "):
			c.plan = cmd
		case strings.HasPrefix(args, "clawgate audit "):
			c.audit = cmd
		}
	}
	if c.run == "" || c.plan == "" || c.write == "" || c.audit == "" {
		t.Fatalf("the real-use paragraph lacks `go run ./cmd/caddy run ...`, `... clawgate setup ...`, `... clawgate setup ... --write` or `... clawgate audit ...`:\n%s", realUse)
	}
	// setup must read the file `caddy run` was given.
	config := func(cmd string) string {
		args := strings.Fields(cmd)
		if i := slices.Index(args, "--config"); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return "Caddyfile"
	}
	for _, cmd := range []string{c.plan, c.write, c.audit} {
		if config(cmd) != config(c.run) {
			t.Errorf("`%s` reads %s, but `%s` runs %s", cmd, config(cmd), c.run, config(c.run))
		}
	}
	return c
}

// TestReadmeFirstCommands: the README's second command is the one .ci/run
// runs, and its first names the demo's main package. Not run here: the
// second would run this test again; TestReadmeWalkthrough runs the first.
func TestReadmeFirstCommands(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmds := readmeFirstCommands(t, string(readme))
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^exec (.+)$`).FindStringSubmatch(string(ci))
	if m == nil || strings.TrimSpace(m[1]) != cmds[1] {
		t.Errorf(".ci/run runs %q, the README's second command is %q", m, cmds[1])
	}
	pkg, ok := strings.CutPrefix(cmds[0], "go run ./")
	if !ok {
		t.Fatalf("the first command %q is not a go run of a package in this repository", cmds[0])
	}
	main, err := os.ReadFile(filepath.Join("..", pkg, "main.go"))
	if err != nil || !bytes.Contains(main, []byte("package main\n")) {
		t.Errorf("the first command runs %s, which has no main package: %v", pkg, err)
	}
}

// TestReadmeWalkthrough follows the README as a new user does, reading each
// command from the README itself: the first command (the demo) runs and
// passes its tour; then the real-use path, on Caddyfile.example with only
// the edits listed in walkthroughEdits, in a fresh HOME holding OpenClaw's
// config as onboarding writes it: `caddy run` starts (and blocks the
// gateway, whose config does not agree yet), `setup` shows the plan,
// `setup --write` applies it, the audit passes, the real OpenClaw gateway
// starts on the written file, and the running Caddy serves it to the user
// the example allows, over HTTP and WebSocket, and refuses a stranger.
//
// Caddy and the commands run as the `caddy` binary, as separate processes
// with the user's environment; the tailnet is the in-process test control
// server, with alice and bob as client nodes.
func TestReadmeWalkthrough(t *testing.T) {
	suites.SkipShort(t, suites.Processes)
	readmeBytes, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(readmeBytes)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("command 1", func(t *testing.T) {
		openclawtest.Require(t)
		demo := readmeFirstCommands(t, readme)[0]
		args := strings.Fields(demo)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = repo
		endWithTest(cmd)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("`%s`: %v\n%s", demo, err, out)
		}
		if !bytes.Contains(out, []byte("backend: the real OpenClaw")) {
			t.Errorf("`%s` did not tour the real OpenClaw:\n%s", demo, out)
		}
		t.Logf("`%s`:\n%s", demo, out)
	})
	t.Run("real use", func(t *testing.T) { testReadmeRealUse(t, repo, readme) })
}

// walkthroughEdits makes the only changes to Caddyfile.example a user makes
// before the walkthrough, here pointed at the test's own world: those of
// userEdits (control_url of the in-process control server, the tailnet
// name in site addresses, the TLS issuer of https sites, the user's own
// paths), with the admin endpoint on a socket of the test's own, so
// parallel test packages do not collide and the commands can ask the
// running Caddy for its paths. Whatever admin line the example has is
// replaced.
func walkthroughEdits(src, controlURL, root, adminSocket string) string {
	return userEdits(src, controlURL, root, "unix/"+adminSocket)
}

// onboardedConfig is OpenClaw's config as onboarding writes it: token mode
// on loopback, JSON5 with comments, and a Telegram channel whose bot token
// is a ${VAR} reference to the environment.
const onboardedConfig = `// OpenClaw config, written by openclaw onboard.
{
  gateway: {
    mode: "local",
    port: 18789,
    bind: "loopback", // only this machine
    auth: {
      mode: "token",
      token: "%s",
    },
  },
  channels: {
    telegram: {
      enabled: true,
      botToken: "${TELEGRAM_BOT_TOKEN}", // from the environment, not this file
      dmPolicy: "pairing",
      groups: { "*": { requireMention: true } },
    },
  },
}
`

func testReadmeRealUse(t *testing.T, repo, readme string) {
	openclawBin := openclawtest.Require(t)
	cmds := readmeRealUse(t, readme)

	// The caddy binary the README's `go run ./cmd/caddy` runs, built with the
	// developer's build cache before HOME changes.
	caddyBin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	goEnv := map[string]string{}
	for _, k := range []string{"GOCACHE", "GOMODCACHE"} {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", k, err)
		}
		goEnv[k] = strings.TrimSpace(string(out))
	}

	// A fresh HOME, as a new user's: OpenClaw's config as onboarding writes
	// it, 0600 in a 0700 dir.
	root := t.TempDir()
	home := filepath.Join(root, "home", "user")
	ocDir := filepath.Join(home, ".openclaw")
	mkdir(t, ocDir)
	ocConfig := filepath.Join(ocDir, "openclaw.json")
	gatewayToken := randToken(t, 24)
	botToken := "123456:" + randToken(t, 16)
	onboarded := fmt.Sprintf(onboardedConfig, gatewayToken)
	writeFile(t, ocConfig, onboarded)
	env := []string{
		"HOME=" + home,
		"TELEGRAM_BOT_TOKEN=" + botToken,
		// A machine with no network interface up but loopback (a test in
		// its own network namespace) makes a tsnet node wait for the
		// network forever; nodes inside a test binary skip that wait, and
		// this knob makes the caddy process skip it too.
		"TS_ASSUME_NETWORK_UP_FOR_TEST=1",
	}
	for k, v := range goEnv {
		env = append(env, k+"="+v)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME" || k == "TELEGRAM_BOT_TOKEN" || goEnv[k] != "":
		case strings.HasPrefix(k, "XDG_") || strings.HasPrefix(k, "OPENCLAW_") || strings.HasPrefix(k, "CADDY") || strings.HasPrefix(k, "TS_"):
			// Caddy's and OpenClaw's defaults, as on a fresh machine.
		default:
			env = append(env, kv)
		}
	}

	// The user's clone, with Caddyfile.example edited.
	clone := filepath.Join(root, "clawgate")
	mkdir(t, clone)
	example, err := os.ReadFile(filepath.Join(repo, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	tn := tailnettest.New(t)
	adminSocket := filepath.Join(root, "admin.sock")
	edited := walkthroughEdits(string(example), tn.ControlURL, root, adminSocket)
	writeFile(t, filepath.Join(clone, "Caddyfile.example"), edited)
	t.Logf("Caddyfile.example as edited:\n%s", edited)
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	bob := tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))

	user := userShell{t: t, dir: clone, env: env, caddy: caddyBin}

	// `caddy run`, left running.
	caddyLog := filepath.Join(root, "caddy.log")
	user.start(cmds.run, caddyLog)
	admin := "unix/" + adminSocket
	gateways := waitAdmin(t, admin, caddyLog)
	if got := gateways["home"].Paths.Config.Resolved; got != ocConfig {
		t.Fatalf("the running Caddy audits %q, want %s", got, ocConfig)
	}
	if !gateways["home"].Blocked {
		t.Errorf("the running Caddy does not block the onboarded config (token mode): %+v", gateways["home"])
	}
	site := "http://openclaw." + tailnettest.Domain + ":8080"
	tn.WaitPeer(t, alice, "openclaw")
	tn.WaitPeer(t, bob, "openclaw")
	if status, body := walkthroughGet(t, alice, site+"/"); status != http.StatusServiceUnavailable || !strings.Contains(body, "clawgate_audit_failed") {
		t.Errorf("alice before setup: GET / = %d %s; want 503 clawgate_audit_failed", status, body)
	}

	// `setup`: the plan, nothing written.
	code, out := user.run(cmds.plan)
	for _, want := range []string{
		"paths: as the running Caddy at " + admin + " resolved them",
		`gateway "home": ` + ocConfig,
		`~ gateway.auth.mode: "token" -> "trusted-proxy"`,
		`+ gateway.auth.trustedProxy.allowUsers = ["alice@example.com"]`,
		"Run `caddy clawgate setup --config Caddyfile.example --write`",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("`%s` lacks %q:\n%s", cmds.plan, want, out)
		}
	}
	if code != 1 {
		t.Errorf("`%s` exited %d, want 1 (changes pending)", cmds.plan, code)
	}
	if now, err := os.ReadFile(ocConfig); err != nil || string(now) != onboarded {
		t.Errorf("`%s` changed %s: %v", cmds.plan, ocConfig, err)
	}

	// `setup --write`: applied, comments and the ${VAR} reference kept,
	// no secret printed.
	code, out = user.run(cmds.write)
	if code != 0 || !strings.Contains(out, "wrote "+ocConfig) {
		t.Fatalf("`%s` = %d; want 0 and %s written:\n%s", cmds.write, code, ocConfig, out)
	}
	for _, secret := range []string{gatewayToken, botToken} {
		if strings.Contains(out, secret) {
			t.Errorf("`%s` printed a secret:\n%s", cmds.write, out)
		}
	}
	written, err := os.ReadFile(ocConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"// only this machine", `botToken: "${TELEGRAM_BOT_TOKEN}", // from the environment, not this file`, `"trusted-proxy"`} {
		if !bytes.Contains(written, []byte(want)) {
			t.Errorf("the written config lacks %q:\n%s", want, written)
		}
	}
	if bytes.Contains(written, []byte(botToken)) {
		t.Errorf("the written config holds the bot token's value:\n%s", written)
	}
	if fi, err := os.Stat(ocConfig); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the written config's mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	// The audit now passes: the command's, on the same Caddyfile, and the
	// running gate's, which re-audits within a second of the write.
	code, out = user.run(cmds.audit)
	if code != 0 || !strings.Contains(out, ocConfig) {
		t.Errorf("`%s` = %d; want 0 for %s:\n%s", cmds.audit, code, ocConfig, out)
	}
	// From a shell whose HOME is not the service's, the same command audits
	// the file the running Caddy resolved, and says so.
	otherHome := filepath.Join(root, "home", "other")
	mkdir(t, otherHome)
	other := user
	other.env = append(slices.Clone(user.env), "HOME="+otherHome)
	code, out = other.run(cmds.audit)
	if want := "paths: as the running Caddy at " + admin + " resolved them in its own environment"; code != 0 || !strings.Contains(out, want) || !strings.Contains(out, ocConfig) {
		t.Errorf("`%s` with HOME=%s = %d; want 0, %q and %s:\n%s", cmds.audit, otherHome, code, want, ocConfig, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for gateways = waitAdmin(t, admin, caddyLog); gateways["home"].Blocked; gateways = waitAdmin(t, admin, caddyLog) {
		if time.Now().After(deadline) {
			t.Fatalf("the running Caddy still blocks the written config: %q %s", gateways["home"].Reasons, gateways["home"].Error)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The real OpenClaw gateway, started as its user starts it, on the
	// written file.
	startUserGateway(t, openclawBin, home, env, filepath.Join(root, "openclaw.log"))

	t.Run("alice", func(t *testing.T) {
		status, body := walkthroughGet(t, alice, site+"/")
		if status != http.StatusOK || !strings.Contains(strings.ToLower(body), "openclaw") {
			t.Errorf("alice: GET / = %d %.300s; want 200 from OpenClaw's Control UI", status, body)
		}
		ctx := testCtx(t)
		hc := alice.HTTPClient()
		defer hc.CloseIdleConnections()
		oc, err := openclawtest.Dial(ctx, hc, "ws://openclaw."+tailnettest.Domain+":8080/", nil)
		if err != nil {
			t.Fatalf("alice: WebSocket upgrade through clawgate: %v", err)
		}
		defer oc.Close()
		hello, err := oc.Connect(ctx, []string{"operator.admin", "operator.read", "operator.write", "operator.approvals"}, "")
		if err != nil {
			t.Fatalf("alice: connect: %v", err)
		}
		if got, want := sorted(hello.Auth.Scopes), []string{"operator.approvals", "operator.read", "operator.write"}; hello.Auth.Method != "trusted-proxy" || !slices.Equal(got, want) {
			t.Errorf("alice: hello-ok auth %s scopes %q; want trusted-proxy with %q", hello.Auth.Method, got, want)
		}
		emails, err := oc.Self(ctx)
		if err != nil || !slices.Contains(emails, "alice@example.com") {
			t.Errorf("alice: the gateway ties the connection to %q, %v; want alice@example.com", emails, err)
		}
	})
	t.Run("stranger", func(t *testing.T) {
		if status, body := walkthroughGet(t, bob, site+"/"); status != http.StatusForbidden {
			t.Errorf("bob: GET / = %d %.300s; want 403", status, body)
		}
		ctx := testCtx(t)
		hc := bob.HTTPClient()
		defer hc.CloseIdleConnections()
		oc, err := openclawtest.Dial(ctx, hc, "ws://openclaw."+tailnettest.Domain+":8080/", nil)
		if err == nil {
			oc.Close()
		}
		if !openclawtest.IsRefusal(err, http.StatusForbidden) {
			t.Errorf("bob: WebSocket upgrade = %v; want 403", err)
		}
	})
}

// userShell runs the README's commands as its reader does: from the clone,
// in the user's environment, `go run ./cmd/caddy` being the caddy binary.
type userShell struct {
	t     *testing.T
	dir   string
	env   []string
	caddy string
}

func (s userShell) command(ctx context.Context, line string) *exec.Cmd {
	s.t.Helper()
	args, ok := strings.CutPrefix(line, "go run ./cmd/caddy ")
	if !ok {
		s.t.Fatalf("%q is not a command of the caddy binary", line)
	}
	cmd := exec.CommandContext(ctx, s.caddy, strings.Fields(args)...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	endWithTest(cmd)
	return cmd
}

// run runs line to its end and returns its exit status and output.
func (s userShell) run(line string) (int, string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := s.command(ctx, line).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	case err != nil:
		s.t.Fatalf("`%s`: %v\n%s", line, err, out)
	}
	s.t.Logf("`%s`:\n%s", line, out)
	return 0, string(out)
}

// start starts line, logging to logPath, and stops it when the test ends.
func (s userShell) start(line, logPath string) {
	s.t.Helper()
	startLogged(s.t, s.command(context.Background(), line), logPath)
}

// startLogged starts cmd with its output in logPath; when the test ends it
// is stopped (SIGTERM, SIGKILL after 20 s), and the log's tail shown if the
// test failed. The channel is closed when the process has exited.
func startLogged(t *testing.T, cmd *exec.Cmd, logPath string) <-chan struct{} {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", cmd, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logFile.Close()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", logPath, tailFile(logPath, 40))
		}
	})
	return done
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// walkthroughGateway is what /clawgate/gateways says of one gateway.
type walkthroughGateway struct {
	Blocked bool         `json:"blocked"`
	Reasons []string     `json:"reasons"`
	Error   string       `json:"error"`
	Paths   gatewayPaths `json:"paths"`
}

// waitAdmin waits for the running Caddy's admin endpoint to show gateway
// home (the endpoint answers before the config is loaded) and returns its
// gateways.
func waitAdmin(t *testing.T, admin, caddyLog string) map[string]walkthroughGateway {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		body, err := adminCall(admin, http.MethodGet, "/clawgate/gateways", nil)
		if err == nil {
			var got map[string]walkthroughGateway
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("/clawgate/gateways: %v: %s", err, body)
			}
			if _, ok := got["home"]; ok {
				return got
			}
			err = fmt.Errorf("no gateway home yet: %s", body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running Caddy's admin endpoint %s: %v\n%s", admin, err, tailFile(caddyLog, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// walkthroughGet GETs url from a tailnet node as a program does (JSON
// refusals).
func walkthroughGet(t *testing.T, from *tailnettest.Node, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := from.HTTPClient()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", from.Hostname, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// startUserGateway starts the real OpenClaw gateway as its user does, with
// HOME and nothing else telling it where its config is (so it reads
// ~/.openclaw/openclaw.json), always on loopback, and waits until it is
// ready; it is stopped when the test ends.
func startUserGateway(t *testing.T, bin, home string, env []string, logPath string) {
	t.Helper()
	// Anything already there would answer the readiness probes below.
	ln, err := net.Listen("tcp", "127.0.0.1:18789")
	if err != nil {
		t.Fatalf("the example's upstream 127.0.0.1:18789 is taken (run the test in its own network namespace): %v", err)
	}
	ln.Close()
	cmd := exec.Command(bin, "gateway", "run", "--bind", "loopback")
	cmd.Dir = home
	// No LAN discovery, respawning, self-update or telemetry, and plain
	// text logs.
	cmd.Env = append(slices.Clone(env), "OPENCLAW_DISABLE_BONJOUR=1", "OPENCLAW_NO_RESPAWN=1", "OPENCLAW_NO_AUTO_UPDATE=1", "DO_NOT_TRACK=1", "NO_COLOR=1")
	endWithTest(cmd)
	begin := time.Now()
	exited := startLogged(t, cmd, logPath)
	deadline := time.Now().Add(3 * time.Minute)
	for _, path := range []string{"/healthz", "/readyz"} {
		for {
			resp, err := http.Get("http://127.0.0.1:18789" + path)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-exited:
				t.Fatalf("the OpenClaw gateway exited before %s answered 200:\n%s", path, tailFile(logPath, 40))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the OpenClaw gateway gave no 200 on %s within 3 minutes:\n%s", path, tailFile(logPath, 40))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	t.Logf("the OpenClaw gateway is ready on the written config in %v", time.Since(begin).Round(100*time.Millisecond))
}

// TestReadmeFrontDoorOnService: the README's Caddyfile for a front door on a
// Tailscale Service passes `caddy validate`, its site is bound only to the
// Service, and clawgate_remote leaves via to its default, the Service's node.
func TestReadmeFrontDoorOnService(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := readmeSection(t, string(readme), "One name on several hosts: a Tailscale Service")
	_, para, ok := strings.Cut(section, "**A front door on a Service.**")
	if !ok {
		t.Fatal("the Service section has no paragraph \"A front door on a Service\"")
	}
	_, block, ok := strings.Cut(para, "```caddyfile\n")
	if !ok {
		t.Fatal("the paragraph has no caddyfile block")
	}
	block, _, _ = strings.Cut(block, "```")
	if err := caddyValidate(t, block); err != nil {
		t.Fatalf("caddy validate of the README's front door on a Service: %v\n%s", err, block)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(block), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	var adapted struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &adapted); err != nil {
		t.Fatal(err)
	}
	var listens [][]string
	for _, srv := range adapted.Apps.HTTP.Servers {
		listens = append(listens, srv.Listen)
	}
	if want := [][]string{{"clawgate+service/door-a/claw:80"}}; fmt.Sprint(listens) != fmt.Sprint(want) {
		t.Errorf("the example's servers listen on %q, want %q", listens, want)
	}
	if n := bytes.Count(cfg, []byte(`"transport":{"gateway":`)); n != 2 {
		t.Errorf("the example has %d clawgate_remote transports, want 2:\n%s", n, cfg)
	}
	if bytes.Contains(cfg, []byte(`"via"`)) {
		t.Errorf("the example sets via; it shows the default:\n%s", cfg)
	}
}
