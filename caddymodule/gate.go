package caddymodule

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
	"github.com/clawgate/clawgate/caddymodule/internal/watch"
)

// GatewayConfig is one OpenClaw gateway clawgate fronts, and its audit gate:
// the gateway's openclaw.json is audited the way `openclaw security audit`
// does, at load and again within a second of any change, and while it fails
// every guarded route of the gateway answers 503 with the reasons.
type GatewayConfig struct {
	// Config is the gateway's openclaw.json. Default: as OpenClaw finds it
	// (OPENCLAW_CONFIG_PATH, else <state dir>/openclaw.json).
	Config string `json:"config,omitempty"`

	// StateDir is the gateway's state directory, whose permissions are part of
	// the audit. Default: as OpenClaw finds it (OPENCLAW_STATE_DIR, else
	// ~/.openclaw).
	StateDir string `json:"state_dir,omitempty"`

	// Upstream is the gateway's loopback address, checked against the config's
	// gateway.port. Default: 127.0.0.1:18789.
	Upstream string `json:"upstream,omitempty"`

	// BlockOn is the lowest severity that blocks the gateway: critical, warn,
	// info, or never (audit and report only). Default: critical.
	BlockOn string `json:"block_on,omitempty"`

	// Expect lists check IDs that are expected by design and do not block, such
	// as gateway.trusted_proxy_auth. When clawgate's own consistency checks pass,
	// gateway.trusted_proxy_auth and gateway.trusted_proxy_allow_loopback are
	// expected without being listed. Default: none.
	Expect []string `json:"expect,omitempty"`

	// Origins are the browser origins the Control UI is served on through
	// clawgate (https://<node>.<tailnet>.ts.net), checked against
	// gateway.controlUi.allowedOrigins. Default: not checked.
	Origins []string `json:"origins,omitempty"`

	// Pairing requires each tailnet device to be approved once before it
	// reaches this gateway. Default: off.
	Pairing *PairingConfig `json:"pairing,omitempty"`

	// OpenClawVersion is the OpenClaw release the gateway runs, such as
	// 2026.7.35. It decides which keys setup writes and which
	// x-openclaw-scopes value a rule that grants no scopes sends. Default:
	// the version in OpenClawPackage's package.json, else the config's
	// meta.lastTouchedVersion, else unknown (the newest known line's rules,
	// with a scope cap that grants nothing on every known line).
	OpenClawVersion string `json:"openclaw_version,omitempty"`

	// OpenClawPackage is the directory of the installed openclaw package
	// (holding its package.json), read for the version when OpenClawVersion
	// is unset. Default: not read.
	OpenClawPackage string `json:"openclaw_package,omitempty"`
}

// pairingRequired reports whether clawgate holds each new device of the
// gateway until it is approved.
func (gc *GatewayConfig) pairingRequired() bool {
	return gc != nil && gc.Pairing != nil && strings.EqualFold(gc.Pairing.Mode, "required")
}

// port is the port the gateway named name listens on, as the gate audits it:
// its block's upstream, else OpenClaw's default.
func (gc *GatewayConfig) port(name string) (int, error) {
	if gc.Upstream == "" {
		return edge.DefaultGatewayPort, nil
	}
	ap, err := parseUpstream(gc.Upstream)
	if err != nil {
		return 0, fmt.Errorf("clawgate.gateways.%s.upstream: %w", name, err)
	}
	return int(ap.Port()), nil
}

// How the gate notices changes. It audits again when something the verdict
// depends on may have changed: inotify reports the config, its includes, the
// files and directories the checks read and the skills trees; a stat
// fingerprint of the non-tree inputs is compared now and then in case a
// notification never came; and a slow, jittered full audit is the safety net
// for inputs no notification covers (the skills trees rescanned included).
// Where inotify is unavailable or breaks, the gate polls the fingerprint.
const (
	// gatePoll is the fingerprint poll without working change notifications,
	// and the audit interval while the config cannot be loaded (fail closed:
	// the inputs of a config that does not load are not known).
	gatePoll = 500 * time.Millisecond
	// gateBackstop is the fingerprint poll while notifications work.
	gateBackstop = 5 * time.Second
	// gateSafety is the full audit safety net, the skills trees excepted.
	gateSafety = time.Minute
	// gateDeep is how often the skills trees are rescanned regardless of
	// notifications: a walk of a large tree is the one expensive part.
	gateDeep = 5 * time.Minute
	// gateTreePoll is how often a skills tree that could not be watched (the
	// watch budget is spent, or notifications are unavailable) is rescanned;
	// its checks are warn-level, and a change is seen within a minute.
	gateTreePoll = 45 * time.Second
	// gateTreeSettle and gateTreeGap space the rescans of a changing tree: a
	// rescan starts a second after the first change and at most once per
	// gateTreeGap, so a tree being rewritten costs a bounded share of a core.
	gateTreeSettle = time.Second
	gateTreeGap    = 10 * time.Second
	// gateDebounce gathers the burst of events of one save.
	gateDebounce = 20 * time.Millisecond
)

// gate audits one gateway and holds its verdict.
type gate struct {
	name     string
	cfg      GatewayConfig
	level    audit.Severity // "" = never block
	loadOpts audit.LoadOptions
	port     int
	logger   *zap.Logger
	metrics  *gateMetrics

	mu     sync.Mutex
	expect audit.Expect // what the guards of this gateway send and admit

	state   atomic.Pointer[gateState]
	audited chan struct{} // closed once the first audit has a verdict
	cancel  context.CancelFunc
	done    chan struct{}
	recheck chan struct{} // what the guards send or admit changed

	// Owned by the goroutine that runs check.
	w         *watch.Watcher // nil while polling
	polling   bool           // change notifications are unavailable or broke
	inputs    []watch.Input  // what the last verdict depended on
	fp        uint64         // inputs' fingerprint when they were last read
	skills    map[string]*skillScan
	unwatched map[string]bool // skills trees that could not be watched

	version string  // OpenClawVersion with placeholders replaced; "" when unset
	pkgPath string  // the package.json OpenClawPackage names, placeholders replaced; "" when unset
	pkg     pkgRead // the package version last read, reread when the file changes
}

// skillScan is a cached scan of one workspace's skills tree.
type skillScan struct {
	scan    audit.SkillScan
	valid   bool
	scanned time.Time
}

// pkgRead is one reading of the installed package's version.
type pkgRead struct {
	mod     time.Time
	size    int64
	version string
	err     string
}

// gateState is one audit verdict.
type gateState struct {
	Blocked  bool            `json:"blocked"`
	Reasons  []string        `json:"reasons,omitempty"` // "checkId: title", shown to callers
	Error    string          `json:"error,omitempty"`   // why the config could not be audited (no paths)
	Invalid  []string        `json:"invalid,omitempty"` // config paths OpenClaw's schema refuses (no values)
	Summary  audit.Summary   `json:"summary"`
	Findings []audit.Finding `json:"findings,omitempty"`
	Checked  time.Time       `json:"checked"`
	// OpenClaw is the release line assumed for the gateway, and why.
	OpenClaw release.Assumed `json:"openclaw"`
	key      string          // what changed between two verdicts
	config   *audit.Config   // the config this verdict is about; nil when it could not be loaded
	inputs   []watch.Input   // what the verdict depended on; nil when the config could not be loaded
}

// provisionGates prepares a gate per configured gateway.
func (a *App) provisionGates() error {
	a.gates = make(map[string]*gate, len(a.Gateways))
	for name, gc := range a.Gateways {
		g := &gate{name: name, cfg: *gc, logger: a.logger.With(zap.String("gateway", name)), metrics: a.metrics, done: make(chan struct{}), audited: make(chan struct{}), recheck: make(chan struct{}, 1)}
		switch strings.ToLower(gc.BlockOn) {
		case "", "critical":
			g.level = audit.SeverityCritical
		case "warn":
			g.level = audit.SeverityWarn
		case "info":
			g.level = audit.SeverityInfo
		case "never":
		default:
			return fmt.Errorf("clawgate.gateways.%s.block_on: %q is not one of critical, warn, info, never", name, gc.BlockOn)
		}
		lo, err := gatewayLoadOptions(name, gc)
		if err != nil {
			return err
		}
		g.loadOpts = lo
		if g.port, err = gc.port(name); err != nil {
			return err
		}
		if g.version, g.pkgPath, err = gatewayVersionSettings(name, gc); err != nil {
			return err
		}
		g.expect = audit.Expect{Origins: gc.Origins, Port: g.port, EdgePairing: gc.pairingRequired()}
		g.state.Store(&gateState{Blocked: true, Reasons: []string{"the audit has not run yet"}})
		a.gates[name] = g
	}
	return nil
}

// registerGuard tells a gateway's gate what one of its guards sends and admits.
func (a *App) registerGuard(gateway, userHeader string, users []string) error {
	g := a.gates[gateway]
	if g == nil {
		if a.logger != nil {
			a.logger.Warn("guard names a gateway with no `gateway` block in the clawgate app: its OpenClaw config is not audited", zap.String("gateway", gateway))
		}
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.expect.UserHeader != "" && !strings.EqualFold(g.expect.UserHeader, userHeader) {
		return fmt.Errorf("gateway %q: its guards send the user in different headers (%s and %s)", gateway, g.expect.UserHeader, userHeader)
	}
	g.expect.UserHeader = strings.ToLower(userHeader)
	for _, u := range users {
		if !slices.Contains(g.expect.Users, u) {
			g.expect.Users = append(g.expect.Users, u)
		}
	}
	sort.Strings(g.expect.Users)
	select {
	case g.recheck <- struct{}{}:
	default:
	}
	return nil
}

// gateStatus reports whether the named gateway is blocked by its audit, with
// the reasons to show.
func (a *App) gateStatus(gateway string) (bool, []string) {
	g := a.gates[gateway]
	if g == nil {
		return false, nil
	}
	st := g.state.Load()
	return st.Blocked, st.Reasons
}

// firstAuditWait bounds how long a request waits for its gateway's first
// audit. Caddy starts its apps in no fixed order, so the servers can take a
// request before the clawgate app has audited; the gateway is blocked until
// then (fail closed), and the request waits for the verdict rather than
// being refused because no audit has run yet.
const firstAuditWait = 10 * time.Second

// awaitFirstAudit returns once the named gateway's first audit has a
// verdict, ctx ends, or firstAuditWait passes; at once for a gateway
// without a gate.
func (a *App) awaitFirstAudit(ctx context.Context, gateway string) {
	g := a.gates[gateway]
	if g == nil {
		return
	}
	select {
	case <-g.audited:
		return
	default:
	}
	t := time.NewTimer(firstAuditWait)
	defer t.Stop()
	select {
	case <-g.audited:
	case <-ctx.Done():
	case <-t.C:
	}
}

// gateRefusal returns the refusal code and message for the named gateway
// while its gate blocks it, or an empty code while it serves.
func (a *App) gateRefusal(gateway string) (code, msg string) {
	g := a.gates[gateway]
	if g == nil {
		return "", ""
	}
	st := g.state.Load()
	switch {
	case !st.Blocked:
		return "", ""
	case len(st.Invalid) > 0:
		return "config_invalid", "this gateway's OpenClaw config is invalid, so OpenClaw will not load it; fix: " + strings.Join(st.Invalid, ", ")
	}
	return "audit_failed", "this gateway's OpenClaw config fails its security audit: " + strings.Join(st.Reasons, "; ")
}

// start runs the first audit now and then audits again whenever something the
// verdict depends on may have changed.
func (g *gate) start() {
	g.skills = map[string]*skillScan{}
	g.unwatched = map[string]bool{}
	w, err := watch.New()
	if err != nil {
		g.degrade(err)
	} else {
		g.w = w
	}
	// The first audit already sees what the guards registered so far.
	select {
	case <-g.recheck:
	default:
	}
	g.check()
	close(g.audited)
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go g.run(ctx)
}

func (g *gate) stop() {
	if g.cancel != nil {
		g.cancel()
		<-g.done
	}
}

// run waits for a reason to audit again.
func (g *gate) run(ctx context.Context) {
	defer close(g.done)
	defer func() {
		if g.w != nil {
			g.w.Close()
		}
	}()
	poll := time.NewTimer(g.pollInterval())
	safety := time.NewTimer(jitter(gateSafety))
	// The first deep rescan falls anywhere in the first period, so gateways
	// started together spread their walks.
	deep := time.NewTimer(time.Duration(rand.Int64N(int64(gateDeep))) + gateDeep/2)
	treePoll := time.NewTimer(jitter(gateTreePoll))
	defer poll.Stop()
	defer safety.Stop()
	defer deep.Stop()
	defer treePoll.Stop()
	var treeTimer *time.Timer
	var treeC <-chan time.Time
	dirty := map[string]bool{}
	for {
		var notified <-chan struct{}
		if g.w != nil {
			notified = g.w.C()
		}
		select {
		case <-ctx.Done():
			if treeTimer != nil {
				treeTimer.Stop()
			}
			return
		case <-notified:
			time.Sleep(gateDebounce)
			plain, trees, err := g.w.Take()
			if err != nil {
				g.degrade(err)
			}
			for _, t := range trees {
				dirty[t] = true
			}
			if len(dirty) > 0 && treeC == nil {
				treeTimer = time.NewTimer(g.treeDelay(dirty))
				treeC = treeTimer.C
			}
			if plain || err != nil {
				g.check()
			}
		case <-treeC:
			treeC = nil
			for t := range dirty {
				if g.w != nil {
					g.rewatchTree(t)
				}
				g.invalidateTree(t)
			}
			clear(dirty)
			g.check()
		case <-g.recheck:
			g.check()
		case <-poll.C:
			if g.state.Load().inputs == nil || watch.Fingerprint(g.inputs, os.Environ()) != g.fp {
				g.check()
			}
			poll.Reset(g.pollInterval())
		case <-safety.C:
			g.check()
			safety.Reset(jitter(gateSafety))
		case <-deep.C:
			for ws := range g.skills {
				t := filepath.Join(ws, "skills")
				if g.w != nil {
					// Also re-establishes any watch lost without a word.
					g.rewatchTree(t)
				}
				g.invalidateTree(t)
			}
			g.check()
			deep.Reset(jitter(gateDeep))
		case <-treePoll.C:
			if n := g.invalidatePolledTrees(); n > 0 {
				g.check()
			}
			treePoll.Reset(jitter(gateTreePoll))
		}
	}
}

// pollInterval is how often the fingerprint is compared.
func (g *gate) pollInterval() time.Duration {
	if g.polling || g.state.Load().inputs == nil {
		return gatePoll
	}
	return gateBackstop
}

// jitter spreads d over ±20%.
func jitter(d time.Duration) time.Duration {
	return d*4/5 + time.Duration(rand.Int64N(int64(d*2/5)))
}

// degrade gives up on change notifications: the gate polls from now on. It
// logs once.
func (g *gate) degrade(err error) {
	if g.polling {
		return
	}
	g.polling = true
	if g.w != nil {
		g.w.Close()
		g.w = nil
	}
	g.logger.Warn("cannot track changes of the gateway's files; polling them instead", zap.Duration("interval", gatePoll), zap.Error(err))
}

// treeDelay is how long to wait before rescanning the changed trees.
func (g *gate) treeDelay(trees map[string]bool) time.Duration {
	d := gateTreeSettle
	for t := range trees {
		if sc := g.skills[filepath.Dir(t)]; sc != nil {
			d = max(d, time.Until(sc.scanned.Add(gateTreeGap)))
		}
	}
	return d
}

// rewatchTree watches a changed tree again, new directories included.
func (g *gate) rewatchTree(root string) {
	err := g.w.RescanTree(root)
	switch {
	case err == nil:
		delete(g.unwatched, root)
	case errors.Is(err, watch.ErrBudget):
		g.treeUnwatched(root, err)
	default:
		g.degrade(err)
	}
}

func (g *gate) treeUnwatched(root string, err error) {
	if !g.unwatched[root] {
		g.unwatched[root] = true
		g.logger.Warn("cannot watch the gateway's skills tree; rescanning it periodically instead", zap.String("tree", root), zap.Duration("interval", gateTreePoll), zap.Error(err))
	}
}

// invalidateTree drops the cached scan of the tree at root.
func (g *gate) invalidateTree(root string) {
	if sc := g.skills[filepath.Dir(root)]; sc != nil {
		sc.valid = false
	}
}

// invalidatePolledTrees drops the scans of the trees no notification covers
// and returns how many.
func (g *gate) invalidatePolledTrees() int {
	n := 0
	for ws, sc := range g.skills {
		if g.polling || g.unwatched[filepath.Join(ws, "skills")] {
			sc.valid = false
			n++
		}
	}
	return n
}

// scanSkills is the audit's skills-tree scan, reused until the tree changes.
func (g *gate) scanSkills(ws string) audit.SkillScan {
	sc := g.skills[ws]
	if sc == nil {
		sc = &skillScan{}
		g.skills[ws] = sc
	}
	if !sc.valid {
		sc.scan = audit.ScanSkills(ws)
		sc.valid = true
		sc.scanned = time.Now()
	}
	return sc.scan
}

// check audits the gateway's config once and, when the verdict changed,
// records it, logs what changed and, when the gateway became blocked, closes
// its open WebSockets.
func (g *gate) check() {
	fp := watch.Fingerprint(g.inputs, os.Environ())
	st := g.audit()
	if st.inputs != nil && !slices.Equal(st.inputs, g.inputs) {
		known := map[string]bool{}
		for _, in := range g.inputs {
			known[in.Path] = in.Kind == watch.Tree
		}
		g.inputs = st.inputs
		if g.w != nil {
			unwatched, err := g.w.Watch(st.inputs)
			if err != nil {
				g.degrade(err)
			}
			for _, t := range unwatched {
				g.treeUnwatched(t, watch.ErrBudget)
			}
			// What changed while the new inputs were not yet watched.
			for _, in := range st.inputs {
				if in.Kind == watch.Tree && !known[in.Path] {
					g.invalidateTree(in.Path)
				}
			}
			st = g.audit()
		}
		fp = watch.Fingerprint(g.inputs, os.Environ())
	} else if st.inputs != nil && g.w != nil {
		// The same inputs, but a path that was absent may exist now (a
		// package installed, a directory created): watch it itself rather
		// than through its ancestor.
		unwatched, err := g.w.Watch(st.inputs)
		if err != nil {
			g.degrade(err)
		}
		for _, t := range unwatched {
			g.treeUnwatched(t, watch.ErrBudget)
		}
	}
	g.fp = fp
	if st.inputs != nil {
		// Forget the scans of workspaces the config no longer names.
		for ws := range g.skills {
			if !slices.Contains(st.inputs, watch.Input{Path: filepath.Join(ws, "skills"), Kind: watch.Tree}) {
				delete(g.skills, ws)
			}
		}
	}
	old := g.state.Swap(st)
	g.metrics.record(g.name, st)
	if old != nil && old.key == st.key {
		return
	}
	fields := []zap.Field{zap.Bool("blocked", st.Blocked), zap.Int("critical", st.Summary.Critical), zap.Int("warn", st.Summary.Warn), zap.Int("info", st.Summary.Info), zap.String("openclaw", st.OpenClaw.Why)}
	if st.Error != "" {
		fields = append(fields, zap.String("error", st.Error))
	}
	if len(st.Reasons) > 0 {
		fields = append(fields, zap.Strings("reasons", st.Reasons))
	}
	switch {
	case st.Blocked:
		g.logger.Error("gateway blocked by its OpenClaw config audit", fields...)
		if n := closeGatewayConns(g.name); n > 0 {
			g.logger.Warn("closed open WebSockets of the blocked gateway", zap.Int("count", n))
		}
	case old != nil && old.Blocked:
		g.logger.Info("gateway audit passes again; serving", fields...)
	default:
		g.logger.Info("gateway audit", fields...)
	}
}

// audit loads and audits the gateway's config; anything that stops the audit
// from running blocks the gateway (fail closed).
func (g *gate) audit() *gateState {
	st := &gateState{Checked: time.Now()}
	cfg, err := audit.Load(g.loadOpts)
	st.OpenClaw = g.assumeVersion(cfg)
	if err != nil {
		st.Blocked = g.level != ""
		st.Error = sanitizeAuditError(err)
		st.Reasons = []string{"the gateway's OpenClaw config cannot be audited: " + st.Error}
		st.key = "error:" + st.Error + "|" + st.OpenClaw.Why
		return st
	}
	// OpenClaw will not load (or hot-reload) a config its schema refuses, so
	// the file no longer says what the gateway runs: nothing to audit. The
	// schema is the assumed line's: a key only a newer line knows stops an
	// older gateway from starting. A version that is no supported line may
	// know keys the newest schema does not: those are a finding, not a block.
	var issues []audit.Issue
	var unknown []string
	if audit.UnsupportedVersion(st.OpenClaw) {
		unknown, issues, err = audit.ValidateLenient(cfg)
	} else {
		issues, err = audit.ValidateFor(cfg, st.OpenClaw)
	}
	if err != nil || len(issues) > 0 {
		st.Blocked = g.level != ""
		if err != nil {
			st.Error = sanitizeAuditError(err)
			st.Reasons = []string{"the gateway's OpenClaw config cannot be validated: " + st.Error}
		} else {
			st.Invalid = audit.IssuePaths(issues)
			st.Reasons = st.Invalid
		}
		st.key = "invalid:" + st.Error + strings.Join(st.Invalid, ",") + "|" + st.OpenClaw.Why
		return st
	}
	st.config = cfg
	report := audit.Run(cfg, g.runOptions(st))
	g.mu.Lock()
	expect := g.expect
	g.mu.Unlock()
	if expect.UserHeader == "" {
		expect.UserHeader = edge.DefaultUserHeader
	}
	expect.NoDeviceAutoApprove = !st.OpenClaw.Features().DeviceAutoApprove
	cons := audit.Consistency(cfg, expect)
	if len(unknown) > 0 {
		cons = append(cons, audit.UnknownKeysFinding(st.OpenClaw, unknown))
	}
	cons = append(cons, audit.LineFindings(st.OpenClaw)...)
	findings := append(slices.Clone(report.Findings), cons...)
	st.Findings = findings
	for _, f := range findings {
		switch f.Severity {
		case audit.SeverityCritical:
			st.Summary.Critical++
		case audit.SeverityWarn:
			st.Summary.Warn++
		default:
			st.Summary.Info++
		}
	}
	if g.level != "" {
		expected := append(slices.Clone(g.cfg.Expect), audit.ExpectedByDesignOn(cfg, st.OpenClaw.Line, cons)...)
		combined := audit.Report{Findings: findings}
		for _, f := range combined.Blocking(g.level, expected) {
			st.Reasons = append(st.Reasons, f.CheckID+": "+f.Title)
		}
		st.Blocked = len(st.Reasons) > 0
	}
	var key strings.Builder
	fmt.Fprintf(&key, "%v|%s|", st.Blocked, st.OpenClaw.Why)
	for _, f := range findings {
		key.WriteString(f.CheckID + "/" + string(f.Severity) + ";")
	}
	st.key = key.String()
	return st
}

// runOptions makes the audit reuse the gate's skills scans and record in st
// what its verdict depends on.
func (g *gate) runOptions(st *gateState) audit.RunOptions {
	cfg := st.config
	st.inputs = []watch.Input{{Path: cfg.Path, Kind: watch.Content}, {Path: filepath.Dir(cfg.Path), Kind: watch.Meta}}
	for _, inc := range cfg.Includes {
		st.inputs = append(st.inputs, watch.Input{Path: inc, Kind: watch.Content})
	}
	// OpenClaw reads ${VAR} values from these too.
	st.inputs = append(st.inputs, watch.Input{Path: filepath.Join(cfg.StateDir, ".env"), Kind: watch.Content})
	if wd, err := os.Getwd(); err == nil {
		st.inputs = append(st.inputs, watch.Input{Path: filepath.Join(wd, ".env"), Kind: watch.Content})
	}
	// An upgrade of the installed OpenClaw changes the assumed release line.
	if g.pkgPath != "" {
		st.inputs = append(st.inputs, watch.Input{Path: g.pkgPath, Kind: watch.Content})
	}
	return audit.RunOptions{
		Now:    st.Checked,
		Line:   st.OpenClaw.Line,
		Skills: g.scanSkills,
		Observe: func(path string, kind audit.InputKind) {
			st.inputs = append(st.inputs, watch.Input{Path: path, Kind: watchKinds[kind]})
		},
	}
}

var watchKinds = map[audit.InputKind]watch.Kind{
	audit.InputMeta:    watch.Meta,
	audit.InputContent: watch.Content,
	audit.InputDir:     watch.Dir,
	audit.InputTree:    watch.Tree,
}

// assumeVersion decides which OpenClaw release line the gateway runs, from
// openclaw_version, the installed package (reread only when its
// package.json changes) and the config's meta.lastTouchedVersion; cfg may be
// nil when the config could not be loaded.
func (g *gate) assumeVersion(cfg *audit.Config) release.Assumed {
	ev := release.Evidence{Configured: g.version}
	if g.pkgPath != "" {
		ev.Package, ev.PackageErr = g.packageVersion()
	}
	if cfg != nil {
		ev.Hint = release.ConfigHint(cfg.Tree)
	}
	return release.Assume(ev)
}

// packageVersion returns the installed package's version, or why it cannot
// be read (without the path: callers see it).
func (g *gate) packageVersion() (string, string) {
	path := g.pkgPath
	fi, err := os.Stat(path)
	if err != nil {
		g.pkg = pkgRead{}
		return "", sanitizeAuditError(err)
	}
	if g.pkg.mod.Equal(fi.ModTime()) && g.pkg.size == fi.Size() && (g.pkg.version != "" || g.pkg.err != "") {
		return g.pkg.version, g.pkg.err
	}
	v, err := release.PackageVersion(path)
	g.pkg = pkgRead{mod: fi.ModTime(), size: fi.Size(), version: v}
	if err != nil {
		g.pkg.err = sanitizeAuditError(err)
	}
	return g.pkg.version, g.pkg.err
}

// noScopesHeader is the x-openclaw-scopes value for a rule of the named
// gateway that grants no scopes: the value the gateway's assumed release line
// reads as "no scopes", or, without a gateway block, the one every known line
// does.
func (a *App) noScopesHeader(gateway string) string {
	g := a.gates[gateway]
	if g == nil {
		return release.NoScopesUnmeasured
	}
	st := g.state.Load()
	if st.OpenClaw.Line == "" { // not audited yet
		return release.NoScopesUnmeasured
	}
	return st.OpenClaw.NoScopes
}

// sanitizeAuditError keeps absolute paths out of what callers see: only base
// names remain.
func sanitizeAuditError(err error) string {
	fields := strings.Fields(err.Error())
	for i, f := range fields {
		trimmed := strings.Trim(f, `"':,()`)
		if filepath.IsAbs(trimmed) {
			fields[i] = strings.Replace(f, trimmed, filepath.Base(trimmed), 1)
		}
	}
	return strings.Join(fields, " ")
}

// gateConns tracks the upgraded (WebSocket) connections of each gateway, across
// config reloads, so a gateway that becomes blocked can close them.
var gateConns = struct {
	sync.Mutex
	m map[string]map[*trackedConn]struct{}
}{m: map[string]map[*trackedConn]struct{}{}}

type trackedConn struct {
	net.Conn
	gateway string
	nodeID  string // the tailnet device's stable node ID; "" off the tailnet
	untrack func() // set by poolNode.trackUpgrade
	once    sync.Once
	ws      wsWriter // what went to the client, for a clean close (wsclose.go)
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		close(c.ws.doneCh())
		gateConns.Lock()
		delete(gateConns.m[c.gateway], c)
		gateConns.Unlock()
		if c.untrack != nil {
			c.untrack()
		}
	})
	return c.Conn.Close()
}

func closeGatewayConns(gateway string) int {
	gateConns.Lock()
	conns := gateConns.m[gateway]
	delete(gateConns.m, gateway)
	gateConns.Unlock()
	for c := range conns {
		_ = c.Close()
	}
	return len(conns)
}

// hijackTracker records the connection when a WebSocket upgrade is hijacked by
// the proxy behind the guard.
type hijackTracker struct {
	*caddyhttp.ResponseWriterWrapper
	gateway string
	nodeID  string
	// onHijack, when set, is told of the connection (the tailnet's re-checks).
	onHijack func(*trackedConn)
}

func (w *hijackTracker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriterWrapper).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// The response header goes out before anything else can: what the
	// tracked connection writes from here on is WebSocket frames.
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	tc := &trackedConn{Conn: conn, gateway: w.gateway, nodeID: w.nodeID}
	if w.onHijack != nil {
		w.onHijack(tc) // first: it completes tc before anything can close it
	}
	gateConns.Lock()
	if gateConns.m[w.gateway] == nil {
		gateConns.m[w.gateway] = map[*trackedConn]struct{}{}
	}
	gateConns.m[w.gateway][tc] = struct{}{}
	gateConns.Unlock()
	return tc, brw, nil
}

// gateMetrics exports audit verdicts through Caddy's metrics.
type gateMetrics struct {
	blocked  *prometheus.GaugeVec
	findings *prometheus.GaugeVec
}

func newGateMetrics(reg *prometheus.Registry) *gateMetrics {
	m := &gateMetrics{
		blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "clawgate", Name: "gateway_blocked",
			Help: "1 while the gateway's OpenClaw config fails its audit and clawgate refuses to serve it.",
		}, []string{"gateway"}),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "clawgate", Name: "gateway_audit_findings",
			Help: "Findings of the gateway's latest OpenClaw config audit, by severity.",
		}, []string{"gateway", "severity"}),
	}
	if reg != nil {
		m.blocked = registerGauge(reg, m.blocked)
		m.findings = registerGauge(reg, m.findings)
	}
	return m
}

// registerGauge registers g, or returns the one already registered under its
// name.
func registerGauge(reg *prometheus.Registry, g *prometheus.GaugeVec) *prometheus.GaugeVec {
	if err := reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
				return existing
			}
		}
	}
	return g
}

func (m *gateMetrics) record(gateway string, st *gateState) {
	if m == nil {
		return
	}
	b := 0.0
	if st.Blocked {
		b = 1
	}
	m.blocked.WithLabelValues(gateway).Set(b)
	m.findings.WithLabelValues(gateway, "critical").Set(float64(st.Summary.Critical))
	m.findings.WithLabelValues(gateway, "warn").Set(float64(st.Summary.Warn))
	m.findings.WithLabelValues(gateway, "info").Set(float64(st.Summary.Info))
}

// gatewayConfig returns the named gateway's OpenClaw config as last loaded by
// its gate (re-read within a second of any change), or nil when the gateway is
// not configured or its config could not be loaded. Callers must not modify it.
func (a *App) gatewayConfig(gateway string) *audit.Config {
	g := a.gates[gateway]
	if g == nil {
		return nil
	}
	return g.state.Load().config
}

// gateSnapshot is what the admin endpoint shows.
func (a *App) gateSnapshot() map[string]*gateState {
	out := make(map[string]*gateState, len(a.gates))
	for name, g := range a.gates {
		out[name] = g.state.Load()
	}
	return out
}
