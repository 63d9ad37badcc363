// Command clawbench measures what clawgate costs next to the proxy it sits
// in. One process runs a small HTTP + WebSocket backend, one real Caddy
// (adapted from a Caddyfile and loaded as `caddy run` would) serving plain
// reverse_proxy sites and clawgate sites, on loopback and on a tsnet node of
// an offline in-process tailnet, and a load generator. Every path is
// measured in the same run, in interleaved rounds, so each ratio compares
// two paths under the same machine conditions.
//
// Scenarios (baseline in brackets):
//
//	direct          the backend itself
//	caddy           plain reverse_proxy on 127.0.0.1            [direct]
//	clawgate token    the clawgate shortcut (guard + reverse_proxy), static token [caddy]
//	guard-only token  the guard alone, then a plain reverse_proxy, static token   [caddy]
//	clawgate HS256    the shortcut, HS256 JWT (cached after first use)            [caddy]
//	clawgate EdDSA    the shortcut, EdDSA JWT (cached after first use)            [caddy]
//	tsnet caddy       plain site bound to clawgate/gw                             [caddy]
//	tsnet clawgate    the shortcut with a device-identity user rule               [tsnet caddy]
//
// For each: HTTP req/s and p50/p99 latency at a fixed concurrency,
// WebSocket echo round trip (one connection) and throughput (several), and
// memory per idle WebSocket. With -gates it measures the audit gate of an
// idle Caddy instead (see gates.go). Usage:
//
//	go run ./cmd/clawbench [-duration 3s] [-concurrency 16] [-markdown FILE]
//	go run ./cmd/clawbench -gates [-gate-window 10s] [-gate-rounds 3] [-gate-long 6m] [-markdown FILE]
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
	"tailscale.com/envknob"
	"tailscale.com/net/netns"
	"tailscale.com/types/logger"
)

// options are the command's flags.
type options struct {
	duration    time.Duration // HTTP measurement per scenario, over all rounds
	warmup      time.Duration
	wsDuration  time.Duration // per WebSocket measurement per scenario, over all rounds
	rounds      int
	concurrency int
	wsConns     int
	idleConns   int
	idleRounds  int
	msgSize     int
	tailnet     bool
	markdown    string
	scenarios   string // comma-separated names; empty for all
	cpuprofile  string
	verbose     bool
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 2400*time.Millisecond, "HTTP load per scenario, split over the rounds")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "HTTP warm-up per scenario before the first round")
	flag.DurationVar(&o.wsDuration, "ws-duration", 1200*time.Millisecond, "WebSocket round-trip and throughput time per scenario, each split over the rounds")
	flag.IntVar(&o.rounds, "rounds", 8, "interleaved rounds: every scenario is measured once per round")
	flag.IntVar(&o.concurrency, "concurrency", 16, "concurrent HTTP clients")
	flag.IntVar(&o.wsConns, "ws-conns", 16, "WebSocket connections for the throughput measurement")
	flag.IntVar(&o.idleConns, "idle", 200, "idle WebSockets opened per scenario and round for the memory measurement")
	flag.IntVar(&o.idleRounds, "idle-rounds", 2, "rounds of the idle memory measurement")
	flag.IntVar(&o.msgSize, "msg-size", 128, "WebSocket message size in bytes")
	flag.BoolVar(&o.tailnet, "tailnet", true, "also measure over the in-process tailnet")
	flag.StringVar(&o.markdown, "markdown", "", "also write the tables as Markdown to this file")
	flag.StringVar(&o.scenarios, "scenarios", "", "comma-separated scenarios to measure, with their baselines (default all)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the measurements (not of the setup) to this file")
	flag.BoolVar(&o.verbose, "v", false, "show tailnet and library logs")
	var g gateOptions
	gates := flag.Bool("gates", false, "measure the audit gate while idle instead: CPU against gateways and skills-tree size, and reaction times")
	flag.DurationVar(&g.window, "gate-window", 10*time.Second, "with -gates: idle measurement per configuration and round")
	flag.IntVar(&g.rounds, "gate-rounds", 3, "with -gates: interleaved rounds")
	flag.DurationVar(&g.settle, "gate-settle", 5*time.Second, "with -gates: wait after loading a configuration")
	flag.DurationVar(&g.long, "gate-long", 6*time.Minute, "with -gates: long run of the 20,000-dir gateway in 20 s windows (0 skips it)")
	flag.IntVar(&g.reacts, "gate-reactions", 3, "with -gates: repetitions of each reaction-time measurement (0 skips them)")
	flag.Parse()
	if *gates {
		g.markdown, g.verbose = o.markdown, o.verbose
		if g.window <= 0 || g.rounds < 1 || g.settle < 0 || g.long < 0 || g.reacts < 0 {
			fmt.Fprintln(os.Stderr, "clawbench: -gate-window and -gate-rounds must be positive; -gate-settle, -gate-long and -gate-reactions not negative")
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		rp, err := runGates(ctx, g, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "clawbench:", err)
			os.Exit(1)
		}
		rp.writeText(os.Stdout)
		if g.markdown != "" {
			f, err := os.Create(g.markdown)
			if err == nil {
				rp.writeMarkdown(f)
				err = f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "clawbench: writing markdown:", err)
				os.Exit(1)
			}
		}
		return
	}
	if o.rounds < 1 || o.idleRounds < 1 || o.concurrency < 1 || o.wsConns < 1 || o.idleConns < 1 || o.msgSize < 1 {
		fmt.Fprintln(os.Stderr, "clawbench: -rounds, -idle-rounds, -concurrency, -ws-conns, -idle and -msg-size must be positive")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rp, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clawbench:", err)
		os.Exit(1)
	}
	rp.writeText(os.Stdout, o.wsConns)
	if o.markdown != "" {
		f, err := os.Create(o.markdown)
		if err == nil {
			rp.writeMarkdown(f, o.wsConns)
			err = f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "clawbench: writing markdown:", err)
			os.Exit(1)
		}
	}
}

// scenario is one named path with the baseline it is compared against.
type scenario struct {
	name, path, baseline string
	target               *target
	// What the backend must see on /whoami through this path: the
	// forwarded user and scopes (empty for the unguarded paths).
	wantUser, wantScopes string
	// guardedLoopback marks the loopback guard, which must refuse a request
	// without credentials.
	guardedLoopback bool
}

// prepareProcess readies this process for a measuring run: logs (the node's
// only with verbose), no log upload and no socket marking for the tailnet
// nodes, and a temporary directory, returned, that also holds Caddy's data
// and config dirs so nothing lands in the user's home. The caller removes
// the directory.
func prepareProcess(prefix string, verbose bool) (string, logger.Logf, error) {
	logf := logger.Discard
	if verbose {
		logf = log.Printf
	} else {
		// The STUN server and net/http report to the standard logger.
		log.SetOutput(io.Discard)
	}
	// No log upload from the client node (the clawgate node does the same
	// itself), and no socket marking, which needs privileges and only slows
	// an unprivileged node down (as in tsnet's own tests).
	envknob.SetNoLogsNoSupport()
	netns.SetEnabled(false)

	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	for _, v := range []string{"XDG_DATA_HOME", "XDG_CONFIG_HOME"} {
		if err := os.Setenv(v, filepath.Join(dir, strings.ToLower(v))); err != nil {
			os.RemoveAll(dir)
			return "", nil, err
		}
	}
	return dir, logf, nil
}

// run sets everything up, measures, and tears it down again.
func run(ctx context.Context, o options, progress io.Writer) (*report, error) {
	begin := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(progress, "clawbench: "+format+"\n", args...)
	}
	dir, logf, err := prepareProcess("clawbench-", o.verbose)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	be, err := startBackend()
	if err != nil {
		return nil, fmt.Errorf("starting the backend: %w", err)
	}
	defer be.close()

	cr, err := mintCredentials(dir)
	if err != nil {
		return nil, err
	}

	st := sites{backend: be.addr(), tailnet: o.tailnet, tokenEnv: cr.tokenEnv, hmacEnv: cr.hmacEnv, edPath: cr.edPath}
	if st.plainPort, err = freePort(); err != nil {
		return nil, err
	}
	if st.guardPort, err = freePort(); err != nil {
		return nil, err
	}
	if st.guardOnlyPort, err = freePort(); err != nil {
		return nil, err
	}
	var tn *tailnet
	if o.tailnet {
		t0 := time.Now()
		upCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if tn, err = startTailnet(upCtx, dir, logf); err != nil {
			return nil, fmt.Errorf("starting the tailnet: %w", err)
		}
		defer func() {
			// A tsnet node closing with connections still open resets them
			// all, and can block on a full outbound queue once its engine
			// has stopped; the process is about to exit, so do not wait.
			done := make(chan struct{})
			go func() { tn.close(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				// Known: tsnet cannot close a node with hundreds of
				// lingering connections (see BENCHMARKS.md).
			}
		}()
		st.controlURL, st.stateDir, st.login = tn.controlURL, filepath.Join(dir, "gw"), tn.login
		st.tsPlainPort, st.tsGuardPort = 18080, 18081
		say("tailnet control, DERP, STUN and client node up in %v (client login %s)", time.Since(t0).Round(time.Millisecond), tn.login)
	}

	t0 := time.Now()
	if err := loadCaddy(st.caddyfile()); err != nil {
		return nil, err
	}
	defer func() {
		if err := caddy.Stop(); err != nil {
			say("stopping Caddy: %v", err)
		}
	}()

	loop := func() *http.Transport { return newTransport(o.concurrency, (&net.Dialer{}).DialContext) }
	realIP := http.Header{"X-Real-Ip": {"203.0.113.7"}}
	withBearer := func(tok string) http.Header {
		h := realIP.Clone()
		h.Set("Authorization", "Bearer "+tok)
		return h
	}
	// Every loopback path gets the same request (the plain ones carry the
	// static token too, which they forward untouched), so a ratio compares
	// paths, not workloads.
	scs := []*scenario{
		{name: "direct", path: "loopback", target: &target{base: "http://" + be.addr(), header: withBearer(cr.token), transport: loop()}},
		{name: "caddy", path: "loopback", baseline: "direct", target: &target{base: fmt.Sprintf("http://127.0.0.1:%d", st.plainPort), header: withBearer(cr.token), transport: loop()}},
		{name: "clawgate token", path: "loopback", baseline: "caddy", target: &target{base: fmt.Sprintf("http://127.0.0.1:%d", st.guardPort), header: withBearer(cr.token), transport: loop()},
			wantUser: "token:bench", wantScopes: "operator.read,operator.write", guardedLoopback: true},
		{name: "guard-only token", path: "loopback", baseline: "caddy", target: &target{base: fmt.Sprintf("http://127.0.0.1:%d", st.guardOnlyPort), header: withBearer(cr.token), transport: loop()},
			wantUser: "token:bench", wantScopes: "operator.read,operator.write", guardedLoopback: true},
		{name: "clawgate HS256", path: "loopback", baseline: "caddy", target: &target{base: fmt.Sprintf("http://127.0.0.1:%d", st.guardPort), header: withBearer(cr.hsJWT), transport: loop()},
			wantUser: jwtSubject, wantScopes: "operator.read", guardedLoopback: true},
		{name: "clawgate EdDSA", path: "loopback", baseline: "caddy", target: &target{base: fmt.Sprintf("http://127.0.0.1:%d", st.guardPort), header: withBearer(cr.edJWT), transport: loop()},
			wantUser: jwtSubject, wantScopes: "operator.read", guardedLoopback: true},
	}
	for _, sc := range scs[1:] {
		if err := waitOK(ctx, sc.target, 10*time.Second); err != nil {
			return nil, fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	if o.tailnet {
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		gw, err := tn.waitPeer(wctx, "gw")
		if err != nil {
			return nil, err
		}
		ts := func() *http.Transport { return newTransport(o.concurrency, tn.client.Dial) }
		scs = append(scs,
			&scenario{name: "tsnet caddy", path: "tailnet", baseline: "caddy", target: &target{base: fmt.Sprintf("http://%s:%d", gw, st.tsPlainPort), header: http.Header{}, transport: ts()}},
			&scenario{name: "tsnet clawgate", path: "tailnet", baseline: "tsnet caddy", target: &target{base: fmt.Sprintf("http://%s:%d", gw, st.tsGuardPort), header: http.Header{}, transport: ts()},
				wantUser: tn.login, wantScopes: "operator.read,operator.write"},
		)
		for _, sc := range scs[len(scs)-2:] {
			if err := waitOK(wctx, sc.target, 60*time.Second); err != nil {
				return nil, fmt.Errorf("%s: %w", sc.name, err)
			}
		}
	}
	say("Caddy up with %d sites in %v", len(scs)-1, time.Since(t0).Round(time.Millisecond))
	for _, sc := range scs {
		if err := preflight(ctx, sc, o.msgSize); err != nil {
			return nil, fmt.Errorf("preflight %s: %w", sc.name, err)
		}
	}

	if scs, err = selectScenarios(scs, o.scenarios); err != nil {
		return nil, err
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	results := measure(ctx, o, scs, say)
	pprof.StopCPUProfile()
	for _, sc := range scs {
		sc.target.transport.CloseIdleConnections()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &report{
		results:  results,
		machine:  machine(),
		settings: settings(o),
		took:     time.Since(begin),
	}, nil
}

// measure runs every scenario once per round, alternating the order of the
// scenarios between rounds so no scenario always runs first or last.
func measure(ctx context.Context, o options, scs []*scenario, say func(string, ...any)) []*result {
	results := make([]*result, len(scs))
	for i, sc := range scs {
		results[i] = &result{name: sc.name, path: sc.path, baseline: sc.baseline}
		_ = runHTTP(ctx, sc.target, o.concurrency, o.warmup)
	}
	settle := func() {
		for _, sc := range scs {
			sc.target.transport.CloseIdleConnections()
		}
		time.Sleep(50 * time.Millisecond)
	}
	httpD := o.duration / time.Duration(o.rounds)
	wsD := o.wsDuration / time.Duration(o.rounds)
	for round := range o.rounds {
		order := make([]int, len(scs))
		for i := range order {
			order[i] = i
			if round%2 == 1 {
				order[i] = len(scs) - 1 - i
			}
		}
		say("round %d/%d", round+1, o.rounds)
		for _, i := range order {
			sc, r := scs[i], results[i]
			h := runHTTP(ctx, sc.target, o.concurrency, httpD)
			r.rounds = append(r.rounds, newRoundHTTP(h))
			r.http.add(h)
			r.wsRTT.add(runWS(ctx, sc.target, 1, wsD, o.msgSize))
			w := runWS(ctx, sc.target, o.wsConns, wsD, o.msgSize)
			r.wsThr.add(w)
			r.wsRate = append(r.wsRate, w.rate())
		}
	}
	// Idle memory after the timed rounds: it closes every pooled connection,
	// and its figures do not depend on time.
	for round := range o.idleRounds {
		say("idle WebSocket memory, round %d/%d", round+1, o.idleRounds)
		for i, sc := range scs {
			results[i].idle = append(results[i].idle, measureIdle(ctx, sc.target, o.idleConns, o.msgSize, settle))
		}
	}
	return results
}

// selectScenarios keeps the named scenarios and, transitively, their
// baselines, in the original order.
func selectScenarios(all []*scenario, names string) ([]*scenario, error) {
	if names == "" {
		return all, nil
	}
	keep := map[string]bool{}
	byName := map[string]*scenario{}
	for _, sc := range all {
		byName[sc.name] = sc
	}
	var add func(string) error
	add = func(name string) error {
		sc, ok := byName[name]
		if !ok {
			known := make([]string, 0, len(all))
			for _, sc := range all {
				known = append(known, sc.name)
			}
			return fmt.Errorf("-scenarios: unknown scenario %q (known: %s)", name, strings.Join(known, ", "))
		}
		keep[name] = true
		if sc.baseline != "" {
			return add(sc.baseline)
		}
		return nil
	}
	for _, name := range strings.Split(names, ",") {
		if err := add(strings.TrimSpace(name)); err != nil {
			return nil, err
		}
	}
	return slices.DeleteFunc(slices.Clone(all), func(sc *scenario) bool { return !keep[sc.name] }), nil
}

func newTransport(conc int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: conc, // one keep-alive connection per worker
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// waitOK polls GET /bench until it answers 200.
func waitOK(ctx context.Context, t *target, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	c := t.client()
	c.Timeout = 5 * time.Second
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", t.base+"/bench", nil)
		if err != nil {
			return err
		}
		req.Header = t.header.Clone()
		if last = get(c, req); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never answered 200: %w", t.base, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// preflight proves each path does what its name says before it is timed:
// the guarded paths forward the expected user and scopes and strip the edge
// credential, the loopback guard refuses a request without one, the plain
// paths forward no identity, and WebSockets echo.
func preflight(ctx context.Context, sc *scenario, msgSize int) error {
	body, status, err := fetch(ctx, sc.target, "/whoami", sc.target.header)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET /whoami: status %d: %s", status, body)
	}
	lines := strings.SplitN(body, "\n", 3)
	for len(lines) < 3 {
		lines = append(lines, "")
	}
	if lines[0] != sc.wantUser || lines[1] != sc.wantScopes {
		return fmt.Errorf("backend saw user %q scopes %q, want %q %q", lines[0], lines[1], sc.wantUser, sc.wantScopes)
	}
	if sc.wantUser != "" && lines[2] != "" {
		return errors.New("the edge credential reached the backend")
	}
	if sc.guardedLoopback {
		h := sc.target.header.Clone()
		h.Del("Authorization")
		_, status, err := fetch(ctx, sc.target, "/whoami", h)
		if err != nil {
			return err
		}
		if status != http.StatusUnauthorized {
			return fmt.Errorf("without a credential: status %d, want 401", status)
		}
	}
	c, err := dialWS(ctx, sc.target, make([]byte, msgSize))
	if err != nil {
		return err
	}
	c.CloseNow()
	return nil
}

func fetch(ctx context.Context, t *target, path string, h http.Header) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", t.base+path, nil)
	if err != nil {
		return "", 0, err
	}
	req.Header = h.Clone()
	resp, err := t.client().Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

// jwtSubject is the user the benchmark's JWTs name.
const jwtSubject = "alice@example.com"

// credentials are the secrets of one run, minted fresh; the Caddyfile names
// only the environment variables and the public key file.
type credentials struct {
	token, hsJWT, edJWT       string
	tokenEnv, hmacEnv, edPath string
}

func mintCredentials(dir string) (*credentials, error) {
	cr := &credentials{tokenEnv: "CLAWBENCH_TOKEN", hmacEnv: "CLAWBENCH_HS256_SECRET", edPath: filepath.Join(dir, "ed25519.pem")}
	cr.token = randString(32)
	hs := randString(48)
	if err := os.Setenv(cr.tokenEnv, cr.token); err != nil {
		return nil, err
	}
	if err := os.Setenv(cr.hmacEnv, hs); err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(cr.edPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	claims := jwt.MapClaims{
		"sub": jwtSubject, "iss": "https://issuer.bench", "aud": "clawgate",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}
	if cr.hsJWT, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(hs)); err != nil {
		return nil, fmt.Errorf("signing the HS256 token: %w", err)
	}
	if cr.edJWT, err = jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(priv); err != nil {
		return nil, fmt.Errorf("signing the EdDSA token: %w", err)
	}
	return cr, nil
}

func randString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// machine describes where the run happened, load average included: the
// machine may be shared, and the load says how much.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	return fmt.Sprintf("Machine: %d CPUs (%s), GOMAXPROCS %d, %s %s/%s; load average at the end %s.",
		runtime.NumCPU(), cpu, runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
}

func settings(o options) string {
	return fmt.Sprintf("Settings: %d rounds, interleaved; per scenario %v of HTTP GET at concurrency %d after a %v warm-up, "+
		"%v of %d-byte WebSocket echoes on 1 connection (RTT) and %v on %d connections (throughput), "+
		"and %d idle WebSockets in each of %d rounds for memory. Ratios to the baseline are medians of per-round ratios ± their median absolute deviation.",
		o.rounds, o.duration, o.concurrency, o.warmup, o.wsDuration, o.msgSize, o.wsDuration, o.wsConns, o.idleConns, o.idleRounds)
}
