package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/clawgate/clawgate/tsnet"
)

func init() {
	caddy.RegisterNetwork(networkName, listenOnNode)
	caddy.RegisterNetwork(networkName+"+udp", listenPacketOnNode)
	caddyhttp.RegisterNetworkHTTP3(networkName, networkName+"+udp")
}

// networkName is the listener network: `bind clawgate/<node>` serves a site on
// that node's tailnet addresses only. (caddy-tailscale registers `tailscale`;
// both plugins can be linked into one binary.)
const networkName = "clawgate"

// nodes holds the running tailnet nodes across config reloads. Keys are the
// node name and a fingerprint of its configuration, so a reload with an
// unchanged node keeps it, and a changed one gets a new node (the old one is
// closed when the new one starts, as both use the same state directory).
var nodes = caddy.NewUsagePool()

// poolNode is a node in the pool.
type poolNode struct {
	*tsnet.Node
	name, key string
	logger    *zap.Logger
	ips       atomic.Pointer[[]netip.Addr] // tailnet IPs once known

	homeUnknownLogged atomic.Bool // the node's own tailnet was unknown once; said once

	// upgrades are the open WebSockets admitted through this node, each
	// re-decided when the tailnet changes a grant or an identity.
	upgradesMu   sync.Mutex
	upgrades     map[*trackedConn]func() bool
	stopWatching func()
}

// Destruct closes the node once its last listener is gone, and returns when it
// has shut down (state written, listeners closed). Its WebSockets get a
// close frame first: the node's own shutdown would drop them silently.
func (p *poolNode) Destruct() error {
	p.closeUpgrades()
	err := p.Node.Close()
	liveNodes.Delete(p.key)
	openNodes.Add(-1)
	return err
}

// liveNodes maps pool keys to *poolNode for lookups by IP and name.
var liveNodes sync.Map

// openNodes counts nodes not yet fully closed; tests wait for it to drop.
var openNodes atomic.Int64

// nodeByIP returns the live node with the given tailnet IP, or nil.
func nodeByIP(ip netip.Addr) *poolNode {
	var found *poolNode
	liveNodes.Range(func(_, v any) bool {
		p := v.(*poolNode)
		if slices.Contains(p.tailnetIPs(), ip) {
			found = p
			return false
		}
		return true
	})
	return found
}

// nodeByName returns the newest live node with the given name, or nil.
func nodeByName(name string) *poolNode {
	var found *poolNode
	liveNodes.Range(func(_, v any) bool {
		p := v.(*poolNode)
		if p.name == name {
			found = p
			return false
		}
		return true
	})
	return found
}

func (p *poolNode) tailnetIPs() []netip.Addr {
	if ips := p.ips.Load(); ips != nil {
		return *ips
	}
	ips := p.Node.TailnetIPs()
	if len(ips) > 0 {
		p.ips.Store(&ips)
	}
	return ips
}

// configKey names a node configuration in the pool without revealing its auth
// key.
func configKey(name string, cfg tsnet.Config) string {
	b, _ := json.Marshal(struct {
		H, S, C string
		E       bool
		T       []string
		P       uint16
		K       [32]byte
	}{cfg.Hostname, cfg.StateDir, cfg.ControlURL, cfg.Ephemeral, cfg.Tags, cfg.Port, sha256.Sum256([]byte(cfg.AuthKey))})
	sum := sha256.Sum256(b)
	return name + "#" + hex.EncodeToString(sum[:8])
}

// acquireNode returns the pooled node for name, creating and starting it if
// needed. The caller must release it with nodes.Delete(p.key).
func acquireNode(ctx context.Context, name string) (*poolNode, error) {
	cctx, ok := ctx.(caddy.Context)
	if !ok {
		return nil, errors.New("clawgate listener: not called from a Caddy config")
	}
	appIface, err := cctx.App(appID)
	if err != nil {
		return nil, fmt.Errorf("loading clawgate app: %w", err)
	}
	app := appIface.(*App)
	cfg, err := app.nodeConfig(name)
	if err != nil {
		return nil, err
	}
	key := configKey(name, cfg)
	logger := caddy.Log().Named("clawgate.node").With(zap.String("node", name))
	val, _, err := nodes.LoadOrNew(key, func() (caddy.Destructor, error) {
		// A node whose configuration changed replaces the old one: they share
		// a state directory and a name on the tailnet, so the old one goes first.
		liveNodes.Range(func(k, v any) bool {
			if old := v.(*poolNode); old.name == name && old.key != key {
				logger.Info("node configuration changed; replacing the node")
				old.closeUpgrades()
				_ = old.Node.Close()
			}
			return true
		})
		logf := func(format string, args ...any) {
			if ce := logger.Check(zap.DebugLevel, "tsnet"); ce != nil {
				ce.Write(zap.String("msg", fmt.Sprintf(format, args...)))
			}
		}
		userLogf := func(format string, args ...any) {
			logger.Info(strings.TrimSpace(fmt.Sprintf(format, args...)))
		}
		n, err := tsnet.New(cfg, logf, userLogf)
		if err != nil {
			return nil, err
		}
		p := &poolNode{Node: n, name: name, key: key, logger: logger}
		liveNodes.Store(key, p)
		openNodes.Add(1)
		go p.start(logger)
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*poolNode), nil
}

// start brings the node up in the background so a node that cannot start (no
// auth key, control server unreachable) holds up only its own sites, and says
// why in the log.
func (p *poolNode) start(logger *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	begin := time.Now()
	err := p.Node.Start(ctx)
	switch {
	case err == nil:
		logger.Info("node is up on the tailnet", zap.Duration("took", time.Since(begin)), zap.Any("ips", p.tailnetIPs()))
	case errors.Is(err, tsnet.ErrClosed):
	default:
		logger.Error("node did not come up; its sites do not serve until it does", zap.Error(err))
	}
}

// trackUpgrade keeps c, a WebSocket admitted through this node, open only
// while still admits it: still is asked again after every change the node
// reports (OnPolicyChange), and c is closed once it says no.
func (p *poolNode) trackUpgrade(c *trackedConn, still func() bool) {
	p.upgradesMu.Lock()
	defer p.upgradesMu.Unlock()
	if p.upgrades == nil {
		p.upgrades = make(map[*trackedConn]func() bool)
	}
	p.upgrades[c] = still
	c.untrack = func() { p.untrackUpgrade(c) }
	if p.stopWatching == nil {
		p.stopWatching = p.OnPolicyChange(func() { go p.recheckUpgrades() })
	}
}

func (p *poolNode) untrackUpgrade(c *trackedConn) {
	p.upgradesMu.Lock()
	defer p.upgradesMu.Unlock()
	delete(p.upgrades, c)
	if len(p.upgrades) == 0 && p.stopWatching != nil {
		p.stopWatching()
		p.stopWatching = nil
	}
}

// recheckUpgrades closes the tracked WebSockets the tailnet no longer
// admits.
func (p *poolNode) recheckUpgrades() {
	p.upgradesMu.Lock()
	checks := make(map[*trackedConn]func() bool, len(p.upgrades))
	for c, still := range p.upgrades {
		checks[c] = still
	}
	p.upgradesMu.Unlock()
	closed := 0
	for c, still := range checks {
		if !still() {
			_ = c.Close()
			closed++
		}
	}
	if closed > 0 && p.logger != nil {
		p.logger.Warn("closed WebSockets that the tailnet no longer admits (a grant or an identity changed)", zap.Int("count", closed))
	}
}

// Tailscale's address ranges: every tailnet peer's address is in one.
var tailnetRanges = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fd7a:115c:a1e0::/48"),
}

// isTailnetAddr reports whether ip is in one of Tailscale's address ranges;
// an IPv4-mapped IPv6 address counts as its IPv4 address.
func isTailnetAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, r := range tailnetRanges {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

// checkTailnetTrustedProxies refuses a server that listens on a clawgate
// node (or a Tailscale Service it hosts) and trusts proxies in the tailnet's ranges. Nothing stands between a
// tailnet peer and the node's listener, so such a setting only lets a
// device choose the client address Caddy reports ({client_ip}, client_ip
// matchers, access logs) with X-Forwarded-For. The guard never reads it on
// a tailnet listener, but routes and logs a user writes do. A source whose
// ranges cannot be known at load is refused too: it cannot be shown safe.
// name is the server's name, or "" when unknown.
func checkTailnetTrustedProxies(srv *caddyhttp.Server, name string) error {
	if srv == nil {
		return nil
	}
	bind := listenAddrOn(srv, networkName)
	if bind == "" {
		bind = listenAddrOn(srv, serviceNetwork)
	}
	if bind == "" {
		return nil
	}
	where := "http.servers"
	if name != "" {
		where += "." + name
	}
	v := reflect.ValueOf(srv).Elem().FieldByName("trustedProxies")
	if !v.IsValid() || v.Kind() != reflect.Interface {
		return fmt.Errorf("%s listens on %s: its trusted_proxies cannot be checked in this Caddy version", where, bind)
	}
	if v.IsNil() {
		return nil
	}
	src := v.Elem()
	if src.Type() != reflect.TypeFor[*caddyhttp.StaticIPRange]() {
		return fmt.Errorf("%s listens on %s, where no proxy stands in front of a connection, and its trusted_proxies source %s cannot be checked for tailnet addresses at load: list static ranges that stay off the tailnet (%s, %s), or give the tailnet site a server of its own",
			where, bind, src.Type(), tailnetRanges[0], tailnetRanges[1])
	}
	ranges := src.Elem().FieldByName("Ranges")
	for i := range ranges.Len() {
		expr := ranges.Index(i).String()
		prefix, err := caddyhttp.CIDRExpressionToPrefix(expr)
		if err != nil {
			return fmt.Errorf("%s: trusted_proxies: %w", where, err)
		}
		for _, tr := range tailnetRanges {
			if prefix.Overlaps(tr) {
				return fmt.Errorf("%s: trusted_proxies range %s overlaps the tailnet range %s, but the server listens on %s, where no proxy stands in front of a connection: any tailnet device could choose the client address Caddy reports with X-Forwarded-For; list only the proxies in front of the server's other listeners (such as 127.0.0.1/32), or give the tailnet site a server of its own",
					where, expr, tr, bind)
			}
		}
	}
	return nil
}

// listenAddrOn returns the first of the server's listener addresses on
// network (`clawgate/<node>`, `clawgate+service/<node>/<service>`), or "".
func listenAddrOn(srv *caddyhttp.Server, network string) string {
	repl := caddy.NewReplacer()
	for _, l := range srv.Listen {
		na, err := caddy.ParseNetworkAddress(repl.ReplaceKnown(l, ""))
		if err == nil && na.Network == network {
			return network + "/" + na.Host
		}
	}
	return ""
}

// serverName returns the name the http app gave srv, or "".
func serverName(srv *caddyhttp.Server) string {
	if srv == nil {
		return ""
	}
	if v := reflect.ValueOf(srv).Elem().FieldByName("name"); v.IsValid() && v.Kind() == reflect.String {
		return v.String()
	}
	return ""
}

// listenOnNode is the ListenerFunc for `clawgate/<node>`: a listener on the
// node's tailnet addresses only. It never falls back to another network.
func listenOnNode(ctx context.Context, network, host, portRange string, portOffset uint, _ net.ListenConfig) (any, error) {
	if cctx, ok := ctx.(caddy.Context); ok {
		// Servers with a guard are checked when it is provisioned, so that
		// `caddy validate` refuses them too; this catches the others.
		if app, err := cctx.App("http"); err == nil {
			if na, err := caddy.ParseNetworkAddress("tcp/:" + portRange); err == nil {
				for name, srv := range serversListeningOn(app.(*caddyhttp.App), network, host, na.StartPort+portOffset) {
					if err := checkTailnetTrustedProxies(srv, name); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	p, port, err := nodeForListener(ctx, host, portRange, portOffset)
	if err != nil {
		return nil, err
	}
	ln, err := sharedNodeListener(p, "tcp/"+port, func() (net.Listener, error) {
		return p.Listen("tcp", ":"+port)
	})
	if err != nil {
		return nil, err
	}
	return withFrontDoors(ctx, p, ln), nil
}

// sharedNodeListener returns this config's view of the node's listener named
// kind ("tcp/443", "funnel/8443"), opening it with open the first time. It
// takes over the caller's reference to the node p: the shared listener holds
// one node reference for as long as it is open.
func sharedNodeListener(p *poolNode, kind string, open func() (net.Listener, error)) (net.Listener, error) {
	lnKey := p.key + "/" + kind
	val, loaded, err := tailnetListeners.LoadOrNew(lnKey, func() (caddy.Destructor, error) {
		ln, err := open()
		if err != nil {
			return nil, err
		}
		s := &sharedListener{ln: ln, key: lnKey, nodeKey: p.key}
		go s.acceptLoop()
		return s, nil
	})
	if err != nil || loaded {
		_, _ = nodes.Delete(p.key)
	}
	if err != nil {
		return nil, err
	}
	return val.(*sharedListener).newFake(), nil
}

// tailnetListeners shares one tsnet listener per node and port between the
// configs that overlap during a reload (a tsnet node refuses a second listener
// on a port): each config gets its own listener, and new connections go to the
// newest open one.
var tailnetListeners = caddy.NewUsagePool()

type sharedListener struct {
	ln           net.Listener
	key, nodeKey string
	mu           sync.Mutex
	fakes        []*fakeListener // open ones, oldest first
}

func (s *sharedListener) newFake() *fakeListener {
	f := &fakeListener{shared: s, conns: make(chan net.Conn), closed: make(chan struct{})}
	s.mu.Lock()
	s.fakes = append(s.fakes, f)
	s.mu.Unlock()
	return f
}

func (s *sharedListener) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.deliver(c)
	}
}

// deliver hands c to the newest open listener, or closes it when none is open.
func (s *sharedListener) deliver(c net.Conn) {
	for {
		s.mu.Lock()
		var f *fakeListener
		if n := len(s.fakes); n > 0 {
			f = s.fakes[n-1]
		}
		s.mu.Unlock()
		if f == nil {
			c.Close()
			return
		}
		select {
		case f.conns <- c:
			return
		case <-f.closed:
			// closed meanwhile: try the next newest
		}
	}
}

func (s *sharedListener) remove(f *fakeListener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, g := range s.fakes {
		if g == f {
			s.fakes = append(s.fakes[:i], s.fakes[i+1:]...)
			return
		}
	}
}

// Destruct closes the tsnet listener once no config uses it, and releases the
// node. When Caddy is exiting, the node's WebSockets get their close frame
// first, while every path to their clients still works: once a Service
// listener has closed, the node no longer delivers the packets of the
// Service's open connections, so the clients' answers would be lost.
func (s *sharedListener) Destruct() error {
	if caddy.Exiting() {
		if v, ok := liveNodes.Load(s.nodeKey); ok {
			v.(*poolNode).closeUpgrades()
		}
	}
	err := s.ln.Close()
	_, _ = nodes.Delete(s.nodeKey)
	return err
}

// fakeListener is one config's view of a shared tailnet listener.
type fakeListener struct {
	shared *sharedListener
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (f *fakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-f.conns:
		return c, nil
	case <-f.closed:
		return nil, net.ErrClosed
	}
}

func (f *fakeListener) Close() error {
	f.once.Do(func() {
		close(f.closed)
		f.shared.remove(f)
		_, _ = tailnetListeners.Delete(f.shared.key)
	})
	return nil
}

func (f *fakeListener) Addr() net.Addr { return f.shared.ln.Addr() }

// listenPacketOnNode answers Caddy's HTTP/3 listener request for sites on
// `clawgate/<node>` with a packet conn that never receives: HTTP/3 is not
// served over the tailnet (a tsnet node can only open UDP once it has its
// address, and a site must not fail to load while its node comes up), so
// browsers use HTTP/2 there.
func listenPacketOnNode(ctx context.Context, network, host, portRange string, portOffset uint, _ net.ListenConfig) (any, error) {
	return newInertPacketConn(host), nil
}

func nodeForListener(ctx context.Context, host, portRange string, portOffset uint) (*poolNode, string, error) {
	name := host
	if name == "" {
		return nil, "", missingNodeError(networkName)
	}
	na, err := caddy.ParseNetworkAddress("tcp/:" + portRange)
	if err != nil {
		return nil, "", fmt.Errorf("clawgate listener: bad port %q: %w", portRange, err)
	}
	port := fmt.Sprint(na.StartPort + portOffset)
	p, err := acquireNode(ctx, name)
	if err != nil {
		return nil, "", err
	}
	return p, port, nil
}

// inertPacketConn is a PacketConn that delivers nothing until closed.
type inertPacketConn struct {
	addr   net.Addr
	closed chan struct{}
	once   sync.Once
}

func newInertPacketConn(node string) *inertPacketConn {
	return &inertPacketConn{addr: inertAddr(node), closed: make(chan struct{})}
}

func (c *inertPacketConn) ReadFrom([]byte) (int, net.Addr, error) {
	<-c.closed
	return 0, nil, net.ErrClosed
}

func (c *inertPacketConn) WriteTo([]byte, net.Addr) (int, error) {
	return 0, errors.New("clawgate: HTTP/3 is not served over the tailnet")
}

func (c *inertPacketConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *inertPacketConn) LocalAddr() net.Addr              { return c.addr }
func (c *inertPacketConn) SetDeadline(time.Time) error      { return nil }
func (c *inertPacketConn) SetReadDeadline(time.Time) error  { return nil }
func (c *inertPacketConn) SetWriteDeadline(time.Time) error { return nil }

type inertAddr string

func (a inertAddr) Network() string { return networkName + "+udp" }
func (a inertAddr) String() string  { return string(a) }
