// Package demo is clawgate's offline demo, the command
// `go run ./cmd/clawgate-demo`: it brings up, inside one process and on
// loopback only, a Tailscale control server with DERP, tailnet nodes for two
// users, Caddy with clawgate on its own tailnet node, and an OpenClaw gateway
// behind it, then tours what clawgate does and prints a table.
//
// The gateway is the real OpenClaw, installed on first run by the project's
// scripts/openclaw.sh; when that cannot be done (no registry, not run from a
// checkout) the demo says how to fix it and carries on with a clearly
// labelled stand-in. The in-process tailnet is caddymodule/internal/tailnettest,
// which is why the demo is a command of its own: the caddy binary links none
// of it.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"tailscale.com/envknob"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// The cast and the names clawgate is configured with.
const (
	alice       = "alice@example.com" // allowed, with scopes operator.read and operator.write
	bob         = "bob@example.com"   // on the tailnet, but no rule lets him in
	aliceHost   = "alice-laptop"
	bobHost     = "bob-phone"
	nodeName    = "gw"   // clawgate's tailnet node
	gatewayName = "home" // the gateway in clawgate's config
	sitePort    = 80     // on the tailnet node only; nothing binds the host's port 80
)

// insecureCheck is the audit finding the insecure edit must trip:
// tools.elevated.allowFrom.<provider> holding "*" lets anyone on that channel
// run elevated exec. OpenClaw accepts it and hot-applies tools.* without a
// restart (see testGateWithRealGateway in caddymodule/openclaw_e2e_test.go),
// so the gateway keeps running while clawgate refuses its traffic.
const insecureCheck = "tools.elevated.allowFrom.whatsapp.wildcard"

// reactWithin bounds how long the tour waits for the gate to notice an edit.
// clawgate audits every 500 ms; the rest is slack for a busy machine.
const reactWithin = 3 * time.Second

var (
	// askedScopes is what the clients ask for in connect.
	askedScopes = []string{"operator.read", "operator.write", "operator.admin"}
	// allowedScopes is the cap of alice's rule; OpenClaw itself would grant
	// her operator.admin too (identityScopes), so her scopes show the cap.
	allowedScopes = []string{"operator.read", "operator.write"}
)

// siteHost is the name the clients dial, resolved by the tailnet's MagicDNS.
var siteHost = nodeName + "." + tailnettest.Domain

// Caddy drives the Caddy of this process.
type Caddy interface {
	// Start adapts and loads caddyfile, with Caddy's storage under dataDir.
	Start(caddyfile, dataDir string) error
	// Stop stops Caddy and returns once every clawgate node has closed.
	Stop() error
}

// Options configures Run.
type Options struct {
	// Caddy loads and stops Caddy; nil means a ProcessCaddy, verbose when
	// Log is set.
	Caddy Caddy
	// Out receives one line per setup stage and per step as they happen.
	Out io.Writer
	// Log, if set, receives the tailnet's logs, its nodes' included; the
	// default Caddy then logs to stderr.
	Log io.Writer
	// StandIn skips the real OpenClaw and uses the stand-in backend.
	StandIn bool
	// Dir is where the search for the clawgate checkout starts (for
	// scripts/openclaw.sh); empty means the working directory.
	Dir string
	// Browser keeps everything running after the tour, until ctx ends, and
	// serves the real Control UI as alice through clawgate on a loopback
	// URL an ordinary browser opens (see browser.go).
	Browser bool
	// BrowserReady, if set, is called with that URL once it serves.
	BrowserReady func(url string)
}

// Backends.
const (
	BackendOpenClaw = "openclaw"
	BackendStandIn  = "stand-in"
)

// Step is one row of the table.
type Step struct {
	Name     string        `json:"step"`
	Who      string        `json:"who"`
	Happened string        `json:"happened"`
	Expected string        `json:"expected"`
	OK       bool          `json:"ok"`
	Took     time.Duration `json:"tookNs"`
	// Details are extra lines printed under the step: reasons, timings.
	Details []string `json:"details,omitempty"`
}

// Result is what a run did.
type Result struct {
	// Backend is BackendOpenClaw or BackendStandIn ("" if setup failed
	// before choosing).
	Backend string `json:"backend"`
	// BackendDesc says which gateway, e.g. "OpenClaw 2026.9.6 on 127.0.0.1:41234".
	BackendDesc string `json:"backendDesc"`
	// InstallHint, when the stand-in was used, says how to get OpenClaw.
	InstallHint string `json:"installHint,omitempty"`
	// Dir is the run's temp dir, which held everything it wrote; it is
	// gone when Run returns.
	Dir string `json:"dir"`
	// Steps are setup, the tour, and cleanup, in order.
	Steps []Step `json:"steps"`
	// Durations of the phases.
	Setup   time.Duration `json:"setupNs"`
	Tour    time.Duration `json:"tourNs"`
	Cleanup time.Duration `json:"cleanupNs"`
}

// OK reports whether every step behaved as expected.
func (r *Result) OK() bool {
	if len(r.Steps) == 0 {
		return false
	}
	for _, s := range r.Steps {
		if !s.OK {
			return false
		}
	}
	return true
}

// run is one demo run's state.
type run struct {
	o   Options
	res *Result
	out io.Writer
	log logger

	root        string // the run's temp dir; everything it writes is under it
	gwDir       string // openclaw.json, state/, gw.log
	origConfig  []byte // openclaw.json as first written
	port        int    // the gateway's loopback port
	oc          *openclaw
	tn          *tailnettest.Tailnet
	alice, bob  *tailnettest.Node
	gatewayStop string         // what stopping the gateway said
	ui          net.Listener   // --browser: the loopback listener the Control UI is served on
	uiOrigin    string         // --browser: its origin, http://127.0.0.1:<port>
	caddyUp     bool           // Caddy was started and not yet stopped
	cleanups    []func() error // run last first by cleanup
}

// logger writes the demo's verbose log lines.
type logger struct{ w io.Writer }

func (l logger) logf(format string, args ...any) { fmt.Fprintf(l.w, format+"\n", args...) }

// Run runs the demo and returns what happened; it has stopped and removed
// everything it started by the time it returns.
func Run(ctx context.Context, o Options) *Result {
	if o.Out == nil {
		o.Out = io.Discard
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	if o.Caddy == nil {
		o.Caddy = &ProcessCaddy{Verbose: o.Log != nil}
	}
	// Outside a test binary, tsnet nodes upload their logs to
	// log.tailscale.com, and tailscale code logs through the standard
	// logger. The demo is offline: no uploads (clawgate's own nodes turn
	// them off the same way), and the standard logger is silenced unless
	// logs were asked for.
	envknob.SetNoLogsNoSupport()
	// The whole tailnet is on loopback. Without this, a node on a machine
	// with no other interface up (offline, or a container with only lo)
	// waits for a network it does not need, and never comes up.
	envknob.Setenv("TS_ASSUME_NETWORK_UP_FOR_TEST", "true")
	if o.Log == nil {
		prev := log.Writer()
		log.SetOutput(io.Discard)
		defer log.SetOutput(prev)
	}
	r := &run{o: o, res: &Result{}, out: o.Out, log: logger{logw}}
	fmt.Fprintf(r.out, "clawgate demo: a tailnet, clawgate in Caddy, and an OpenClaw gateway, all in this process and on loopback\n\n")

	start := time.Now()
	root, err := os.MkdirTemp("", "clawgate-demo-")
	if err != nil {
		r.res.Steps = append(r.res.Steps, Step{Name: "setup", Who: "-", Happened: "cannot make a temp dir: " + err.Error(), Expected: "everything starts"})
		return r.res
	}
	r.root = root
	r.res.Dir = root
	setupErr := r.setup(ctx)
	r.res.Setup = time.Since(start)
	setup := Step{Name: "setup", Who: "-", Expected: "everything starts", Took: r.res.Setup}
	if setupErr != nil {
		setup.Happened = "failed: " + setupErr.Error()
		r.res.Steps = append(r.res.Steps, setup)
		fmt.Fprintf(r.out, "[setup] ✗ %s\n", setup.Happened)
	} else {
		setup.OK = true
		setup.Happened = fmt.Sprintf("ready in %s; backend: the real %s", secs(r.res.Setup), r.res.BackendDesc)
		if r.res.Backend == BackendStandIn {
			setup.Happened = fmt.Sprintf("ready in %s; backend: STAND-IN, not OpenClaw", secs(r.res.Setup))
		}
		r.res.Steps = append(r.res.Steps, setup)
		fmt.Fprintf(r.out, "[setup] ready in %s\n\n", secs(r.res.Setup))
		tourStart := time.Now()
		r.tour(ctx)
		r.res.Tour = time.Since(tourStart)
		if r.o.Browser {
			r.res.Steps = append(r.res.Steps, r.serveBrowser(ctx))
		}
	}

	cleanStart := time.Now()
	r.res.Steps = append(r.res.Steps, r.cleanup())
	r.res.Cleanup = time.Since(cleanStart)
	return r.res
}

func (r *run) progress(format string, args ...any) {
	fmt.Fprintf(r.out, "[setup] "+format+"\n", args...)
}

// onCleanup registers f to run at cleanup, after everything registered
// later.
func (r *run) onCleanup(f func() error) { r.cleanups = append(r.cleanups, f) }

// setenv sets an environment variable of this process until cleanup.
func (r *run) setenv(key, value string) error {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		return fmt.Errorf("setting %s: %w", key, err)
	}
	r.onCleanup(func() error {
		if had {
			return os.Setenv(key, old)
		}
		return os.Unsetenv(key)
	})
	return nil
}

// setup starts everything, registering how to stop each part as it goes,
// and returns the first failure.
func (r *run) setup(ctx context.Context) error {
	// Caddy's paths that do not come from its config (instance ID, default
	// storage) follow XDG; keep them in the run's directory too.
	if err := r.setenv("XDG_DATA_HOME", filepath.Join(r.root, "xdg-data")); err != nil {
		return err
	}
	if err := r.setenv("XDG_CONFIG_HOME", filepath.Join(r.root, "xdg-config")); err != nil {
		return err
	}

	r.chooseBackend(ctx)

	var err error
	if r.o.Browser {
		if err := r.reserveUI(); err != nil {
			return err
		}
	}
	if r.port, err = openclawtest.FindFreePort(); err != nil {
		return err
	}
	r.gwDir = filepath.Join(r.root, "gateway")
	// The state dir exists from the start, private as OpenClaw makes it: the
	// gate audits its permissions before the gateway has run.
	if err := os.MkdirAll(filepath.Join(r.gwDir, "state"), 0o700); err != nil {
		return fmt.Errorf("making the gateway's directory: %w", err)
	}
	if r.origConfig, err = r.gatewayConfig(); err != nil {
		return err
	}
	if err := os.WriteFile(r.configPath(), r.origConfig, 0o600); err != nil {
		return fmt.Errorf("writing openclaw.json: %w", err)
	}
	ready, err := r.startBackend(ctx)
	if err != nil {
		return err
	}

	t0 := time.Now()
	if r.tn, err = tailnettest.Start(r.log.logf); err != nil {
		return fmt.Errorf("starting the tailnet: %w", err)
	}
	r.onCleanup(func() error { r.tn.Close(); return nil })
	gw, err := r.tn.NodeConfig(filepath.Join(r.root, "nodes", nodeName), nodeName)
	if err != nil {
		return err
	}
	nctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range []struct {
		node        **tailnettest.Node
		host, login string
	}{{&r.alice, aliceHost, alice}, {&r.bob, bobHost, bob}} {
		opts := []tailnettest.NodeOption{tailnettest.WithLogin(n.login)}
		if r.o.Browser && n.login == alice {
			opts = append(opts, r.browserNodeOptions()...)
		}
		node, err := r.tn.StartNode(nctx, filepath.Join(r.root, "nodes", n.host), n.host, opts...)
		if err != nil {
			return fmt.Errorf("starting the tailnet: %w", err)
		}
		r.onCleanup(node.Close)
		*n.node = node
	}
	r.progress("tailnet: control server and DERP on 127.0.0.1, nodes %s (%s) and %s (%s)  %s", aliceHost, alice, bobHost, bob, secs(time.Since(t0)))

	t0 = time.Now()
	// Registered first: Stop must also run after a Start that failed half way.
	r.onCleanup(func() error {
		r.caddyUp = false
		if err := r.o.Caddy.Stop(); err != nil {
			return fmt.Errorf("stopping Caddy: %w", err)
		}
		return nil
	})
	r.caddyUp = true
	if err := r.o.Caddy.Start(r.caddyfile(gw.ControlURL, gw.StateDir), filepath.Join(r.root, "caddy")); err != nil {
		return fmt.Errorf("starting Caddy: %w", err)
	}
	// Both clients reach clawgate's node: it is up on the tailnet, and the
	// first packets of the tour are not lost.
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range []*tailnettest.Node{r.alice, r.bob} {
		if err := r.tn.AwaitPeer(wctx, n, nodeName); err != nil {
			return fmt.Errorf("waiting for clawgate's tailnet node %s: %w", nodeName, err)
		}
	}
	r.progress("Caddy with clawgate on tailnet node %s, serving http://%s  %s", nodeName, siteHost, secs(time.Since(t0)))

	t0 = time.Now()
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("starting the gateway: %w", err)
		}
	case <-ctx.Done():
		return errors.New("interrupted while the gateway started")
	}
	if r.res.Backend == BackendOpenClaw {
		r.progress("OpenClaw gateway ready (/healthz and /readyz)  %s more", secs(time.Since(t0)))
	}
	return nil
}

// chooseBackend installs the real OpenClaw, or settles for the stand-in and
// says why.
func (r *run) chooseBackend(ctx context.Context) {
	standIn := func(why, hint string) {
		r.res.Backend = BackendStandIn
		r.res.InstallHint = hint
		r.progress("%s", why)
		if hint != "" {
			r.progress("for the real gateway: %s", hint)
		}
		r.progress("continuing with a STAND-IN backend: a tiny server that answers like OpenClaw and echoes what clawgate forwards")
	}
	if r.o.StandIn {
		standIn("--stand-in: not using the real OpenClaw", "")
		return
	}
	dir := r.o.Dir
	if dir == "" {
		dir = "."
	}
	repo, err := findRepo(dir)
	if err != nil {
		standIn("cannot install the real OpenClaw: "+err.Error(),
			"run the demo from a clawgate checkout: go run ./cmd/clawgate-demo")
		return
	}
	oc := &openclaw{repo: repo}
	t0 := time.Now()
	r.progress("installing OpenClaw if needed: %s (the first time takes a few minutes and about 1 GB)", installCommand)
	version, err := oc.install(ctx)
	if err != nil {
		why := err.Error()
		var se *scriptError
		if errors.As(err, &se) {
			why = fmt.Sprintf("%v\n%s", se.err, se.summary())
		}
		standIn("installing OpenClaw failed: "+strings.ReplaceAll(why, "\n", "\n          "),
			fmt.Sprintf("cd %s && %s, then run the demo again", repo, installCommand))
		return
	}
	r.res.Backend = BackendOpenClaw
	r.oc = oc
	r.progress("OpenClaw %s is installed  %s", version, secs(time.Since(t0)))
	r.res.BackendDesc = "OpenClaw " + version
}

// startBackend starts the gateway in the background and returns a channel
// that yields once it serves (nil) or has failed.
func (r *run) startBackend(ctx context.Context) (<-chan error, error) {
	ready := make(chan error, 1)
	if r.res.Backend == BackendStandIn {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(r.port))
		if err != nil {
			return nil, fmt.Errorf("starting the stand-in: %w", err)
		}
		s := startStandIn(l)
		r.onCleanup(func() error {
			s.close()
			r.gatewayStop = "stand-in stopped"
			return nil
		})
		r.res.BackendDesc = "stand-in on 127.0.0.1:" + strconv.Itoa(r.port)
		r.progress("stand-in backend serving on 127.0.0.1:%d", r.port)
		ready <- nil
		return ready, nil
	}
	// Started now and waited for at the end of setup: OpenClaw takes
	// 15–30 s to be ready, time the tailnet and Caddy use to come up.
	runCtx, cancelRun := context.WithCancel(ctx)
	done := make(chan struct{})
	// Registered before the start, so a half-started gateway is stopped too.
	r.onCleanup(func() error {
		cancelRun()
		<-done
		msg, err := r.oc.stop(r.gwDir)
		r.gatewayStop = msg
		if err != nil {
			return fmt.Errorf("stopping the OpenClaw gateway: %w", err)
		}
		return nil
	})
	go func() {
		defer close(done)
		ready <- r.oc.run(runCtx, r.gwDir, r.port)
	}()
	r.res.BackendDesc += " on 127.0.0.1:" + strconv.Itoa(r.port)
	r.progress("starting the OpenClaw gateway on 127.0.0.1:%d (trusted-proxy auth, loopback only) in the background", r.port)
	return ready, nil
}

func (r *run) configPath() string { return filepath.Join(r.gwDir, "openclaw.json") }

// gatewayConfig is the gateway's openclaw.json: trusted-proxy auth behind
// clawgate on the same host, as the README's real-use section sets it up,
// admitting alice only.
func (r *run) gatewayConfig() ([]byte, error) {
	cfg := map[string]any{
		"gateway": map[string]any{
			"mode":           "local",
			"bind":           "loopback",
			"port":           r.port,
			"trustedProxies": []string{"127.0.0.1", "::1"},
			"auth": map[string]any{
				"mode": "trusted-proxy",
				"trustedProxy": map[string]any{
					"userHeader":      edge.DefaultUserHeader,
					"requiredHeaders": edge.GatewayRequiredHeaders(),
					"allowUsers":      []string{alice},
					"allowLoopback":   true,
				},
				// OpenClaw would give alice admin; clawgate's rule caps it.
				"identityScopes": map[string]any{alice: askedScopes},
			},
			"controlUi": map[string]any{"allowedOrigins": r.origins()},
		},
		// Without it the gateway logs to /tmp/openclaw, shared machine-wide.
		"logging": map[string]any{"file": filepath.Join(r.gwDir, "openclaw.log")},
	}
	if r.o.Browser {
		r.browserGatewayConfig(cfg)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding openclaw.json: %w", err)
	}
	return append(b, '\n'), nil
}

// caddyfile is clawgate's config: one tailnet node, one audited gateway, and
// a site on the node that lets alice in with two scopes and nobody else.
func (r *run) caddyfile(controlURL, nodeState string) string {
	return fmt.Sprintf(`{
	admin off
	auto_https off
	clawgate {
		node %s {
			control_url %s
			state_dir %s
			ephemeral
		}
		gateway %s {
			config %s
			state_dir %s
			upstream 127.0.0.1:%d
			origins %s%s
		}
	}
}

http://:%d {
	bind clawgate/%s
	clawgate 127.0.0.1:%d {
		gateway %s
		allow user:%s scopes %s
	}
}
`, nodeName, controlURL, strconv.Quote(nodeState),
		gatewayName, strconv.Quote(r.configPath()), strconv.Quote(filepath.Join(r.gwDir, "state")), r.port, strings.Join(r.origins(), " "), r.browserPairing(),
		sitePort, nodeName, r.port, gatewayName, alice, strings.Join(allowedScopes, ","))
}

// cleanup stops everything (last started, first stopped; a failure does
// not stop the rest), removes the run's directory and checks nothing is
// left.
func (r *run) cleanup() Step {
	s := Step{Name: "cleanup", Who: "-", Expected: "everything stopped and removed"}
	t0 := time.Now()
	hadCaddy := r.caddyUp
	var errs []error
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, r.cleanups[i]())
	}
	r.cleanups = nil
	if err := os.RemoveAll(r.root); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", r.root, err))
	}
	err := errors.Join(errs...)
	s.Took = time.Since(t0)
	var did []string
	if hadCaddy {
		did = append(did, "Caddy stopped, node "+nodeName+" closed")
	}
	if r.gatewayStop != "" {
		did = append(did, r.gatewayStop)
	}
	if r.tn != nil {
		did = append(did, "tailnet closed")
	}
	_, statErr := os.Stat(r.root)
	switch {
	case err != nil:
		s.Happened = "failed: " + strings.ReplaceAll(err.Error(), "\n", "; ")
	case !errors.Is(statErr, os.ErrNotExist):
		s.Happened = r.root + " is still there"
	default:
		s.OK = true
		did = append(did, "temp dir removed")
		s.Happened = strings.Join(did, "; ")
	}
	mark := "✓"
	if !s.OK {
		mark = "✗"
	}
	fmt.Fprintf(r.out, "[cleanup] %s %s  %s\n", mark, s.Happened, secs(s.Took))
	fmt.Fprintln(r.out)
	return s
}

// secs formats d as seconds with one decimal.
func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s" }

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// httpGet returns the status of GET url, for the gateway's own /healthz.
func httpGet(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
