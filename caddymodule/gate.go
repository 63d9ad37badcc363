package caddymodule

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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
}

// gateInterval is how often a gateway's config is audited again; a change is
// seen within a second.
const gateInterval = 500 * time.Millisecond

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

	state  atomic.Pointer[gateState]
	cancel context.CancelFunc
	done   chan struct{}
}

// gateState is one audit verdict.
type gateState struct {
	Blocked  bool            `json:"blocked"`
	Reasons  []string        `json:"reasons,omitempty"` // "checkId: title", shown to callers
	Error    string          `json:"error,omitempty"`   // why the config could not be audited (no paths)
	Summary  audit.Summary   `json:"summary"`
	Findings []audit.Finding `json:"findings,omitempty"`
	Checked  time.Time       `json:"checked"`
	key      string          // what changed between two verdicts
	config   *audit.Config   // the config this verdict is about; nil when it could not be loaded
}

// provisionGates prepares a gate per configured gateway.
func (a *App) provisionGates() error {
	a.gates = make(map[string]*gate, len(a.Gateways))
	for name, gc := range a.Gateways {
		g := &gate{name: name, cfg: *gc, logger: a.logger.With(zap.String("gateway", name)), metrics: a.metrics, done: make(chan struct{})}
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
		g.port = 18789
		if gc.Upstream != "" {
			ap, err := parseUpstream(gc.Upstream)
			if err != nil {
				return fmt.Errorf("clawgate.gateways.%s.upstream: %w", name, err)
			}
			g.port = int(ap.Port())
		}
		g.expect = audit.Expect{RequiredHeaders: audit.DefaultRequiredHeaders, Origins: gc.Origins, Port: g.port}
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

// start runs the first audit now and then watches the gateway's files.
func (g *gate) start() {
	g.check()
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		defer close(g.done)
		t := time.NewTicker(gateInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.check()
			}
		}
	}()
}

func (g *gate) stop() {
	if g.cancel != nil {
		g.cancel()
		<-g.done
	}
}

// check audits the gateway's config once and, when the verdict changed,
// records it, logs what changed and, when the gateway became blocked, closes
// its open WebSockets.
func (g *gate) check() {
	st := g.audit()
	old := g.state.Swap(st)
	g.metrics.record(g.name, st)
	if old != nil && old.key == st.key {
		return
	}
	fields := []zap.Field{zap.Bool("blocked", st.Blocked), zap.Int("critical", st.Summary.Critical), zap.Int("warn", st.Summary.Warn), zap.Int("info", st.Summary.Info)}
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
	if err != nil {
		st.Blocked = g.level != ""
		st.Error = sanitizeAuditError(err)
		st.Reasons = []string{"the gateway's OpenClaw config cannot be audited: " + st.Error}
		st.key = "error:" + st.Error
		return st
	}
	st.config = cfg
	report := audit.Run(cfg, audit.RunOptions{Now: st.Checked})
	g.mu.Lock()
	expect := g.expect
	g.mu.Unlock()
	if expect.UserHeader == "" {
		expect.UserHeader = "x-forwarded-user"
	}
	cons := audit.Consistency(cfg, expect)
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
		expected := append(slices.Clone(g.cfg.Expect), audit.ExpectedByDesign(cons)...)
		combined := audit.Report{Findings: findings}
		for _, f := range combined.Blocking(g.level, expected) {
			st.Reasons = append(st.Reasons, f.CheckID+": "+f.Title)
		}
		st.Blocked = len(st.Reasons) > 0
	}
	var key strings.Builder
	fmt.Fprintf(&key, "%v|", st.Blocked)
	for _, f := range findings {
		key.WriteString(f.CheckID + "/" + string(f.Severity) + ";")
	}
	st.key = key.String()
	return st
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
	once    sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		gateConns.Lock()
		delete(gateConns.m[c.gateway], c)
		gateConns.Unlock()
	})
	return c.Conn.Close()
}

func closeGatewayConns(gateway string) int {
	gateConns.Lock()
	conns := gateConns.m[gateway]
	delete(gateConns.m, gateway)
	gateConns.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return len(conns)
}

// hijackTracker records the connection when a WebSocket upgrade is hijacked by
// the proxy behind the guard.
type hijackTracker struct {
	*caddyhttp.ResponseWriterWrapper
	gateway string
}

func (w *hijackTracker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriterWrapper).Hijack()
	if err != nil {
		return nil, nil, err
	}
	tc := &trackedConn{Conn: conn, gateway: w.gateway}
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
