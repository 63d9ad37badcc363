package tsnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"tailscale.com/ipn"
	ts "tailscale.com/tsnet"
)

// funnelPorts are the TCP ports Tailscale Funnel relays from the internet.
var funnelPorts = [...]uint16{443, 8443, 10000}

// IsFunnelPort reports whether Tailscale Funnel can relay the TCP port.
func IsFunnelPort(port int) bool {
	for _, p := range funnelPorts {
		if int(p) == port {
			return true
		}
	}
	return false
}

// funnelRetry bounds the wait between two attempts to turn Funnel on; the
// first retry comes after funnelRetryFirst.
const (
	funnelRetryFirst = 500 * time.Millisecond
	funnelRetryMax   = 30 * time.Second
)

// ListenFunnel returns a listener for connections that reach the node from
// the public internet through Tailscale Funnel on addr's port, such as
// ListenFunnel("tcp", ":443"). Only TCP ports 443, 8443 and 10000 can be
// funnelled; any other address is an error. Tailnet peers cannot connect
// to it: Funnel traffic and tailnet traffic never share a listener.
//
// Like Listen, it does not wait for the node: it returns at once, and the
// listener turns Funnel on in the background once the node is Running,
// retrying (and logging to the node's user log, once per distinct error)
// while the tailnet refuses, for example because the node lacks the
// "funnel" node attribute or the tailnet has HTTPS off. The returned value
// is a *FunnelListener.
//
// Connections are handed over before any TLS: the caller terminates TLS
// (with GetCertificate for the node's *.ts.net name), as it does on its
// tailnet listeners. Each is a *FunnelConn whose RemoteAddr is the internet
// client and whose LocalAddr is a FunnelAddr naming the public host:port,
// never a tailnet IP, so code that recognises tailnet traffic by the local
// address it arrived on never mistakes Funnel traffic for it.
func (n *Node) ListenFunnel(network, addr string) (net.Listener, error) {
	if network != "tcp" {
		return nil, fmt.Errorf("%v: Funnel listener on %q: only tcp is supported", n, network)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%v: Funnel listener on %q: %w", n, addr, err)
	}
	if host != "" {
		return nil, fmt.Errorf("%v: Funnel listener on %q: the host must be empty (Funnel serves the node's own name)", n, addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || !IsFunnelPort(port) {
		return nil, fmt.Errorf("%v: Funnel listener on %q: Tailscale Funnel serves only TCP ports 443, 8443 and 10000", n, addr)
	}
	if _, err := n.launch(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(n.closing)
	fl := &FunnelListener{
		node:   n,
		port:   portStr,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(chan net.Conn),
		done:   make(chan struct{}),
	}
	go fl.run()
	return fl, nil
}

// FunnelListener is a listener on a node's Funnel port; see
// [Node.ListenFunnel].
type FunnelListener struct {
	node   *Node
	port   string
	ctx    context.Context // cancelled by Close or when the node closes
	cancel context.CancelFunc
	conns  chan net.Conn
	done   chan struct{} // closed when run returns

	mu      sync.Mutex
	ln      net.Listener // tsnet's Funnel listener, once on
	lastErr error        // why Funnel is not on yet
	closed  bool
	once    sync.Once
}

// Err returns why Funnel is not on yet, or nil.
func (fl *FunnelListener) Err() error {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.lastErr
}

// Accept waits for the next connection from the internet.
func (fl *FunnelListener) Accept() (net.Conn, error) {
	select {
	case c := <-fl.conns:
		return c, nil
	case <-fl.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops listening and turns Funnel off for the port again.
func (fl *FunnelListener) Close() error {
	var err error
	fl.once.Do(func() {
		fl.cancel()
		fl.mu.Lock()
		fl.closed = true
		ln := fl.ln
		fl.mu.Unlock()
		if ln != nil {
			// tsnet removes the port from the node's Funnel config here.
			err = ln.Close()
		}
		<-fl.done
	})
	return err
}

// Addr is the public port, as a FunnelAddr (":8443"): the node's public
// name is known only once it runs.
func (fl *FunnelListener) Addr() net.Addr { return FunnelAddr(":" + fl.port) }

// run turns Funnel on, retrying until it is or the listener closes, and
// then passes connections on.
func (fl *FunnelListener) run() {
	defer close(fl.done)
	ln, ok := fl.activate()
	if !ok {
		return
	}
	fl.node.ulogf.logf("tailnet node %q: Funnel is on for public port %s", fl.node.cfg.Hostname, fl.port)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fc, err := newFunnelConn(c)
		if err != nil {
			// Not a connection tsnet got from a Funnel relay: it cannot be
			// vouched for as internet traffic, so it is not served at all.
			fl.node.logf.logf("clawgate: Funnel listener on port %s: dropping connection: %v", fl.port, err)
			c.Close()
			continue
		}
		select {
		case fl.conns <- fc:
		case <-fl.ctx.Done():
			fc.Close()
			return
		}
	}
}

// activate waits for the node and asks tsnet for the Funnel listener,
// retrying with backoff. It reports false when the listener closed first.
func (fl *FunnelListener) activate() (net.Listener, bool) {
	wait := funnelRetryFirst
	var lastMsg string
	for {
		ln, err := fl.listen()
		if err == nil {
			fl.mu.Lock()
			defer fl.mu.Unlock()
			fl.lastErr = nil
			if fl.closed {
				ln.Close()
				return nil, false
			}
			fl.ln = ln
			return ln, true
		}
		if fl.ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return nil, false
		}
		fl.mu.Lock()
		fl.lastErr = err
		fl.mu.Unlock()
		if msg := err.Error(); msg != lastMsg {
			lastMsg = msg
			fl.node.ulogf.logf("tailnet node %q: Funnel on public port %s is not on yet (retrying): %v", fl.node.cfg.Hostname, fl.port, err)
		}
		select {
		case <-fl.ctx.Done():
			return nil, false
		case <-time.After(wait):
		}
		wait = min(2*wait, funnelRetryMax)
	}
}

func (fl *FunnelListener) listen() (net.Listener, error) {
	// Wait for the node's own bus watcher to see it Running rather than
	// calling Start: a LocalAPI watch cancelled half-way (the listener
	// closing early) holds up the node's Close for seconds.
	srv, err := fl.node.launch()
	if err != nil {
		return nil, err
	}
	select {
	case <-fl.node.running:
	case <-fl.ctx.Done():
		return nil, fl.ctx.Err()
	}
	// FunnelOnly: tailnet peers keep reaching the node's tailnet listeners,
	// never this one. The TLS config is never used: newFunnelConn takes
	// the connection from under tsnet's TLS wrapper before any handshake.
	ln, err := srv.ListenFunnel("tcp", ":"+fl.port, ts.FunnelOnly(), ts.FunnelTLSConfig(&tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("clawgate terminates Funnel TLS itself")
		},
	}))
	if err != nil {
		return nil, fmt.Errorf("%v: turning Funnel on for port %s: %w", fl.node, fl.port, err)
	}
	return ln, nil
}

// FunnelConn is a connection that came from the internet through Tailscale
// Funnel.
type FunnelConn struct {
	net.Conn
	src    netip.AddrPort
	target string
}

// newFunnelConn unwraps a connection accepted from tsnet's Funnel listener
// (tsnet wraps it in TLS, but the handshake only starts on the first Read,
// and none has happened) and checks that it is one a Funnel relay brought.
func newFunnelConn(c net.Conn) (*FunnelConn, error) {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	ic, ok := raw.(*ipn.FunnelConn)
	if !ok {
		return nil, fmt.Errorf("a %T is not a Funnel connection", raw)
	}
	if !ic.Src.IsValid() {
		return nil, errors.New("Funnel connection without a source address")
	}
	host, _, err := net.SplitHostPort(string(ic.Target))
	if err != nil {
		return nil, fmt.Errorf("Funnel target %q: %w", ic.Target, err)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		// Funnel targets are the node's DNS name; an IP literal here could
		// pass for a tailnet address.
		return nil, fmt.Errorf("Funnel target %q is an IP address, not the node's name", ic.Target)
	}
	return &FunnelConn{Conn: ic.Conn, src: ic.Src, target: string(ic.Target)}, nil
}

// RemoteAddr is the internet client's address, as the Funnel relay saw it.
func (c *FunnelConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.src) }

// LocalAddr is the public host:port the client connected to, as a
// FunnelAddr.
func (c *FunnelConn) LocalAddr() net.Addr { return FunnelAddr(c.target) }

// Source is the internet client's address.
func (c *FunnelConn) Source() netip.AddrPort { return c.src }

// FunnelAddr is the local address of Funnel traffic: the node's public
// name and port, such as "gw.tail1234.ts.net:443". It is never an IP
// address, so it never matches a tailnet IP.
type FunnelAddr string

// Network returns "funnel".
func (FunnelAddr) Network() string { return "funnel" }

func (a FunnelAddr) String() string { return string(a) }
