package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/clawgate/clawgate/caddymodule/internal/proxyproto"
	"github.com/clawgate/clawgate/tsnet"
)

func init() {
	caddy.RegisterNetwork(serviceNetwork, listenOnService)
	// Services are served over TCP only; their sites are offered no HTTP/3.
	caddy.RegisterNetwork(serviceNetwork+"+udp", listenPacketOnNode)
	caddyhttp.RegisterNetworkHTTP3(serviceNetwork, serviceNetwork+"+udp")
}

// serviceNetwork is the listener network for a Tailscale Service:
// `bind clawgate+service/<node>/<service>` serves a site on the Service
// `svc:<service>` (its own tailnet name and address, `<service>.<tailnet>`),
// hosted by the clawgate node <node>; the site's port is the Service's
// port. Several clawgate instances on several hosts can host one Service,
// and the tailnet sends each client to one that is up.
//
// The node must be tagged, and the tailnet must approve it as a host of the
// Service (an admin, or an autoApprovers "services" rule). tsnet forwards the
// Service's connections to a socket on the host's loopback interface, each
// opening with a PROXY protocol v2 header that names the tailnet client.
// The header is required; its source becomes the connection's remote
// address, and the guard identifies the caller with the node's WhoIs of that
// address, as on the node's own listener. Nothing is taken from HTTP
// headers.
const serviceNetwork = networkName + "+service"

// serviceHeaderTimeout bounds how long the node's forwarder has to send
// the PROXY header after connecting.
const serviceHeaderTimeout = 10 * time.Second

// serviceApprovalWait is how long a node may advertise a Service without
// the tailnet assigning it an address before the log says how to approve
// it.
var serviceApprovalWait = 30 * time.Second

// serviceApprovalPoll is how often the node's Service addresses are read
// while the Service waits for approval.
var serviceApprovalPoll = time.Second

// parseServiceHost splits the host of a `clawgate+service/<node>/<service>`
// address into the node's name and the Service's full name ("svc:<name>").
func parseServiceHost(host string) (node, service string, err error) {
	node, name, ok := strings.Cut(host, "/")
	switch {
	case node == "" && !ok:
		return "", "", fmt.Errorf("%s listener: missing node and Service names; bind %s/<node>/<service>", serviceNetwork, serviceNetwork)
	case node == "":
		return "", "", fmt.Errorf("%s listener: %q: missing node name; bind %s/<node>/<service>", serviceNetwork, host, serviceNetwork)
	case name == "":
		return "", "", fmt.Errorf("%s listener: %q: missing Service name; bind %s/<node>/<service>", serviceNetwork, host, serviceNetwork)
	case strings.Contains(name, "/"):
		return "", "", fmt.Errorf("%s listener: %q: one node and one Service; bind %s/<node>/<service>", serviceNetwork, host, serviceNetwork)
	case strings.HasPrefix(name, "svc:"):
		// Cannot happen through Caddy's address parser (the colon starts
		// the port), but a JSON config could say it.
		return "", "", fmt.Errorf("%s listener: %q: write the Service name without svc:", serviceNetwork, host)
	}
	service, err = tsnet.ServiceName(name)
	if err != nil {
		return "", "", fmt.Errorf("%s listener: %w", serviceNetwork, err)
	}
	return node, service, nil
}

// checkServiceAddress judges a Service listener address as its listener
// does when Caddy opens it: the names, a single port, and a node with tags.
// app is the clawgate app of the config (an empty one when it has none).
func checkServiceAddress(app *App, na caddy.NetworkAddress) error {
	node, service, err := parseServiceHost(na.Host)
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("%s/%s", serviceNetwork, na.Host)
	if na.StartPort != na.EndPort {
		return fmt.Errorf("%s: port range %d-%d: a Service listener takes one port (bind one site per Service port)", addr, na.StartPort, na.EndPort)
	}
	if na.StartPort == 0 {
		return fmt.Errorf("%s: a Service needs a port", addr)
	}
	cfg, err := app.nodeConfig(node)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	if len(cfg.Tags) == 0 {
		return fmt.Errorf("%s: %w", addr, untaggedHostError(node, service))
	}
	return nil
}

// untaggedHostError is the refusal of a Service host without tags.
func untaggedHostError(node, service string) error {
	return fmt.Errorf("node %q cannot host Tailscale Service %s: %w; give the node tags in the clawgate app (Caddyfile: `node %s { tags tag:clawgate }`; with a tagged auth key, list the key's tags), and let the tailnet policy's tagOwners grant that tag",
		node, service, tsnet.ErrUntaggedServiceHost, node)
}

// listenOnService is the ListenerFunc for `clawgate+service/<node>/<service>`.
func listenOnService(ctx context.Context, network, host, portRange string, portOffset uint, _ net.ListenConfig) (any, error) {
	cctx, ok := ctx.(caddy.Context)
	if !ok {
		return nil, errors.New("clawgate+service listener: not called from a Caddy config")
	}
	na, err := caddy.ParseNetworkAddress(network + "/" + host + ":" + portRange)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", serviceNetwork, err)
	}
	app := new(App)
	if a, err := cctx.App(appID); err == nil {
		app = a.(*App)
	}
	if err := checkServiceAddress(app, na); err != nil {
		return nil, err
	}
	port := na.StartPort + portOffset
	if h, err := cctx.App("http"); err == nil {
		for name, srv := range serversListeningOn(h.(*caddyhttp.App), network, host, port) {
			if err := checkTailnetTrustedProxies(srv, name); err != nil {
				return nil, err
			}
		}
	}
	nodeName, service, _ := parseServiceHost(host)
	p, err := acquireNode(ctx, nodeName)
	if err != nil {
		return nil, err
	}
	portStr := strconv.FormatUint(uint64(port), 10)
	ln, err := sharedNodeListener(p, "service/"+service+"/"+portStr, func() (net.Listener, error) {
		return newServiceListener(p, service, uint16(port)), nil
	})
	if err != nil {
		return nil, err
	}
	return withFrontDoors(ctx, p, ln), nil
}

// serviceListener is a node's listener for one Service port: it advertises
// the Service once the node runs, and accepts the connections the node
// forwards, each with a valid PROXY header from a process of this user (on
// Linux; see fromOwnUser). The pool (sharedNodeListener) keeps one per node,
// Service and port across reloads, since tsnet refuses a second handler on
// the same Service port.
type serviceListener struct {
	node    *poolNode
	service string
	port    uint16
	addr    serviceAddr

	conns   chan net.Conn
	closed  chan struct{}
	cancel  context.CancelFunc
	done    chan struct{} // the goroutine that opens and serves has returned
	once    sync.Once
	mu      sync.Mutex
	ln      *tsnet.ServiceListener // once advertised
	stopped bool

	admitted atomic.Int64 // connections handed on
}

func newServiceListener(p *poolNode, service string, port uint16) *serviceListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &serviceListener{
		node:    p,
		service: service,
		port:    port,
		addr:    serviceAddr(service + ":" + strconv.Itoa(int(port))),
		conns:   make(chan net.Conn),
		closed:  make(chan struct{}),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go l.run(ctx)
	return l
}

// logger returns the running config's clawgate logger, so lines go where
// that config sends clawgate's: the listener outlives the config that
// opened it.
func (l *serviceListener) logger() *zap.Logger {
	base := caddy.Log().Named("clawgate")
	if a := runningApp.Load(); a != nil && a.logger != nil {
		base = a.logger
	}
	return base.Named("service").With(zap.String("node", l.node.name),
		zap.String("service", l.service), zap.Uint16("port", l.port))
}

// run advertises the Service once the node runs, then accepts its
// connections until the listener closes.
func (l *serviceListener) run(ctx context.Context) {
	defer close(l.done)
	ln, err := l.node.ListenService(ctx, l.service, l.port)
	if err != nil {
		switch {
		case ctx.Err() != nil || errors.Is(err, tsnet.ErrClosed):
		case errors.Is(err, tsnet.ErrUntaggedServiceHost):
			l.logger().Error("the site does not serve", zap.Error(untaggedHostError(l.node.name, l.service)), zap.NamedError("tsnet", err))
		default:
			l.logger().Error("advertising the Tailscale Service failed; the site does not serve", zap.Error(err))
		}
		return
	}
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		_ = ln.Close()
		return
	}
	l.ln = ln
	liveServiceListeners.Store(l, struct{}{})
	l.mu.Unlock()
	l.logger().Info("advertising the Tailscale Service", zap.String("name", ln.FQDN), zap.Stringer("local_socket", ln.LocalAddr()))
	go l.watchApproval(ctx)
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
			return
		}
		if err != nil {
			// Out of file descriptors, for instance: the Service must not
			// stop serving for good over it.
			l.logger().Warn("accepting on the Service's local socket", zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		go l.admit(c)
	}
}

// watchApproval logs, once, that the tailnet has not assigned the Service
// an address on this node after serviceApprovalWait, with how to approve
// it, and logs when it does.
func (l *serviceListener) watchApproval(ctx context.Context) {
	deadline := time.NewTimer(serviceApprovalWait)
	defer deadline.Stop()
	tick := time.NewTicker(serviceApprovalPoll)
	defer tick.Stop()
	warned := false
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := l.node.ServiceAddrs(qctx, l.service)
		cancel()
		if err == nil && len(addrs) > 0 {
			l.logger().Info("the tailnet approved this node as a host of the Tailscale Service", zap.Any("addresses", addrs))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			if !warned {
				warned = true
				fields := []zap.Field{zap.Duration("waited", serviceApprovalWait)}
				if err != nil {
					fields = append(fields, zap.Error(err))
				}
				l.logger().Warn("the tailnet has not approved this node as a host of the Tailscale Service: no address is assigned to it here, and no client reaches it; "+
					"approve the host on the Services page of the Tailscale admin console (https://login.tailscale.com/admin/services), "+
					"or add an autoApprovers rule to the tailnet policy: \"autoApprovers\": {\"services\": {\""+l.service+"\": [\"tag:<the node's tag>\"]}}",
					fields...)
			}
		case <-tick.C:
		}
	}
}

// admit checks one forwarded connection and hands it on, or closes it and
// says why.
func (l *serviceListener) admit(c net.Conn) {
	refuse := func(msg string, fields ...zap.Field) {
		l.logger().Warn(msg+"; closing the connection", append(fields, zap.String("peer", addrString(c.RemoteAddr())))...)
		c.Close()
	}
	peer, err := netip.ParseAddrPort(addrString(c.RemoteAddr()))
	if err != nil || !peer.Addr().Unmap().IsLoopback() {
		refuse("a connection to the Service's local socket from outside the loopback interface")
		return
	}
	if err := fromOwnUser(c); err != nil {
		refuse("a connection to the Service's local socket from another user's process", zap.Error(err))
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(serviceHeaderTimeout))
	// proxyproto.Read reads exactly the header, so c carries on with the
	// first byte after it.
	hdr, err := proxyproto.Read(c)
	if err != nil {
		refuse("a Service connection without a valid PROXY v2 header", zap.Error(err))
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if hdr.Command != proxyproto.Proxy {
		refuse("a Service connection with a LOCAL PROXY header, which names no client")
		return
	}
	src := hdr.Source.Addr().Unmap()
	if !isTailnetAddr(src) {
		refuse("a Service connection whose PROXY header names a client outside the tailnet's address ranges", zap.Stringer("claimed", src))
		return
	}
	local, ok := l.localAddr(src)
	if !ok {
		// The guard finds the node by the connection's local address;
		// without one, it could not tell this connection came from the
		// tailnet.
		refuse("a Service connection before the node knows its own tailnet address")
		return
	}
	sc := &serviceConn{Conn: c,
		remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, hdr.Source.Port())),
		local:  net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, l.port))}
	select {
	case l.conns <- sc:
		l.admitted.Add(1)
	case <-l.closed:
		c.Close()
	}
}

// localAddr returns the node's own tailnet address of src's family: what
// the connection's local address is on the node's own listener, and what
// the guard finds the node by.
func (l *serviceListener) localAddr(src netip.Addr) (netip.Addr, bool) {
	for _, ip := range l.node.tailnetIPs() {
		if ip.Is4() == src.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func (l *serviceListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close withdraws the node's advertisement of the Service port and closes
// the local socket; it returns once both are done, so the node can be
// closed after it.
func (l *serviceListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		l.cancel()
		l.mu.Lock()
		l.stopped = true
		ln := l.ln
		liveServiceListeners.Delete(l)
		l.mu.Unlock()
		if ln != nil {
			err = ln.Close()
		}
		select {
		case <-l.done:
		case <-time.After(serviceHeaderTimeout):
		}
	})
	return err
}

func (l *serviceListener) Addr() net.Addr { return l.addr }

// liveServiceListeners holds the Service listeners that advertise their
// Service, as keys.
var liveServiceListeners sync.Map

// serviceSocket returns the loopback address the node forwards the
// Service's port to, while a listener advertises it (nil otherwise), and
// how many connections the listener has admitted.
func serviceSocket(node, service string, port uint16) (net.Addr, int64) {
	var addr net.Addr
	var n int64
	liveServiceListeners.Range(func(k, _ any) bool {
		l := k.(*serviceListener)
		if l.node.name == node && l.service == service && l.port == port {
			l.mu.Lock()
			if l.ln != nil {
				addr = l.ln.LocalAddr()
				n = l.admitted.Load()
			}
			l.mu.Unlock()
		}
		return addr == nil
	})
	return addr, n
}

// serviceAddr names a Service listener ("svc:claw:80").
type serviceAddr string

func (a serviceAddr) Network() string { return "tcp" }
func (a serviceAddr) String() string  { return string(a) }

// serviceConn is a connection the tailnet sent to a Service: its remote
// address is the client's, from the PROXY header, and its local address the
// node's own tailnet address with the Service's port, as on the node's own
// listener.
type serviceConn struct {
	net.Conn
	remote, local net.Addr
}

func (c *serviceConn) RemoteAddr() net.Addr { return c.remote }
func (c *serviceConn) LocalAddr() net.Addr  { return c.local }
