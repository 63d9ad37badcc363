package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/clawgate/clawgate/caddymodule/internal/proxyproto"
)

// A gateway host behind a front door. The host's node names the front doors
// it trusts (NodeConfig.FrontDoors: `tag:<tag>` or `node:<name>`, checked
// with the node's own WhoIs of the connection's peer). A connection from a
// named front door must open with a PROXY protocol v2 header; the header's
// source address becomes the connection's remote address, and everything
// else (user, device, tags, grants) the host derives again with its own
// WhoIs of that address. So a front door can claim only devices that exist
// on the tailnet, only toward hosts that name it, and the host's own rules
// still decide what such a device may do. A PROXY header from any other peer
// closes the connection.

// frontDoorHeaderTimeout bounds how long a front door has to send its
// header after connecting.
const frontDoorHeaderTimeout = 10 * time.Second

// frontDoorStatePath is the one request a front door may make for itself
// (a LOCAL header): the host's gateways and their audit verdicts.
const frontDoorStatePath = "/clawgate/front-door/gateways"

// frontDoorSelectors checks a node's front_doors entries.
func frontDoorSelectors(list []string) error {
	for i, s := range list {
		kind, val, ok := strings.Cut(s, ":")
		if !ok || val == "" || (kind != "tag" && kind != "node") {
			return fmt.Errorf("front_doors[%d]: %q: want tag:<tag> or node:<name>", i, s)
		}
		if strings.ContainsAny(val, " \t,") {
			return fmt.Errorf("front_doors[%d]: %q: one tag or node name per entry", i, s)
		}
	}
	return nil
}

// isFrontDoor reports whether a peer (its tags, short and full node names)
// is one of the front doors in list.
func isFrontDoor(list []string, tags []string, node, fqdn string) bool {
	for _, s := range list {
		kind, val, _ := strings.Cut(s, ":")
		switch kind {
		case "tag":
			if slices.Contains(tags, s) {
				return true
			}
		case "node":
			if strings.EqualFold(val, node) || strings.EqualFold(val, fqdn) {
				return true
			}
		}
	}
	return false
}

// frontDoors returns the front doors node name trusts in this config.
func (a *App) frontDoors(name string) []string {
	if a == nil {
		return nil
	}
	if nc := a.Nodes[name]; nc != nil {
		return nc.FrontDoors
	}
	return nil
}

// withFrontDoors wraps ln, the config's listener on node p, so that it
// accepts connections from the front doors the config names for the node.
func withFrontDoors(ctx context.Context, p *poolNode, ln net.Listener) net.Listener {
	var app *App
	if cctx, ok := ctx.(caddy.Context); ok {
		if a, err := cctx.App(appID); err == nil {
			app = a.(*App)
		}
	}
	return newFrontDoorListener(ln, p, app, app.frontDoors(p.name), caddy.Log().Named("clawgate.front_door").With(zap.String("node", p.name)))
}

// frontDoorListener is one config's view of a node's TCP listener: it
// accepts connections from the front doors the config names (reading their
// PROXY header) and keeps every other peer from sending one.
type frontDoorListener struct {
	net.Listener
	node   *poolNode
	doors  []string
	app    *App
	logger *zap.Logger

	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newFrontDoorListener(ln net.Listener, node *poolNode, app *App, doors []string, logger *zap.Logger) *frontDoorListener {
	l := &frontDoorListener{Listener: ln, node: node, doors: doors, app: app, logger: logger,
		conns: make(chan net.Conn), closed: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *frontDoorListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.Close()
			return
		}
		if len(l.doors) == 0 {
			l.deliver(l.guard(c, addrString(c.RemoteAddr())))
			continue
		}
		go func() {
			if c := l.classify(c); c != nil {
				l.deliver(c)
			}
		}()
	}
}

func (l *frontDoorListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

// classify returns the connection as the HTTP server should see it, or nil
// when it was refused (closed and logged) or answered here.
func (l *frontDoorListener) classify(c net.Conn) net.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), frontDoorHeaderTimeout)
	defer cancel()
	peer := addrString(c.RemoteAddr())
	who, err := l.node.WhoIs(ctx, peer)
	if err != nil {
		// The handler would refuse this peer too; without knowing whether
		// it is a front door, the connection cannot be read either way.
		l.logger.Warn("front door check: the peer cannot be identified; closing the connection", zap.String("peer", peer), zap.Error(err))
		c.Close()
		return nil
	}
	if !isFrontDoor(l.doors, who.Tags, who.Node, who.NodeFQDN) {
		return l.guard(c, peer)
	}
	_ = c.SetReadDeadline(time.Now().Add(frontDoorHeaderTimeout))
	br := bufio.NewReaderSize(c, 512)
	hdr, err := proxyproto.Read(br)
	if err != nil {
		l.logger.Warn("front door connection without a valid PROXY v2 header; closing it", zap.String("front_door", who.Node), zap.String("peer", peer), zap.Error(err))
		c.Close()
		return nil
	}
	_ = c.SetReadDeadline(time.Time{})
	if hdr.Command == proxyproto.Local {
		l.serveState(c, br, who.Node)
		return nil
	}
	src := hdr.Source.Addr().Unmap()
	if reason := l.badSource(ctx, src); reason != "" {
		l.logger.Warn("front door claims a client address the host does not accept; closing the connection",
			zap.String("front_door", who.Node), zap.String("peer", peer), zap.Stringer("claimed", src), zap.String("why", reason))
		c.Close()
		return nil
	}
	return &forwardedConn{Conn: c, r: br, remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, hdr.Source.Port()))}
}

// badSource says why a claimed client address is refused, or "".
func (l *frontDoorListener) badSource(ctx context.Context, src netip.Addr) string {
	switch {
	case !isTailnetAddr(src):
		return "not a tailnet address"
	case slices.Contains(l.node.tailnetIPs(), src):
		return "the host's own address"
	}
	if _, err := l.node.WhoIs(ctx, netip.AddrPortFrom(src, 0).String()); err != nil {
		return "no device on the tailnet has this address"
	}
	return ""
}

// serveState answers a front door's one request for the host's gateways
// and closes the connection. Nothing else is served to a LOCAL connection.
func (l *frontDoorListener) serveState(c net.Conn, br *bufio.Reader, door string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(frontDoorHeaderTimeout))
	req, err := http.ReadRequest(br)
	if err != nil {
		l.logger.Debug("front door state request unreadable", zap.String("front_door", door), zap.Error(err))
		return
	}
	status, body := http.StatusOK, []byte(nil)
	switch {
	case req.Method != http.MethodGet:
		status, body = http.StatusMethodNotAllowed, []byte(`{"error":"method not allowed"}`)
	case req.URL.Path != frontDoorStatePath:
		status, body = http.StatusNotFound, []byte(`{"error":"a front door may ask only for `+frontDoorStatePath+`"}`)
	default:
		snapshot := map[string]*gateState{}
		if l.app != nil {
			snapshot = l.app.gateSnapshot()
		}
		body, err = json.Marshal(snapshot)
		if err != nil {
			status, body = http.StatusInternalServerError, []byte(`{"error":"encoding the state failed"}`)
		}
	}
	resp := &http.Response{StatusCode: status, ProtoMajor: 1, ProtoMinor: 1, Close: true,
		Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: int64(len(body)),
		Body: http.NoBody}
	if len(body) > 0 {
		resp.Body = nopCloser{bytes.NewReader(body)}
	}
	_ = resp.Write(c)
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// guard returns c, from a peer that is not a front door, as a connection
// that is closed if it opens with a PROXY header.
func (l *frontDoorListener) guard(c net.Conn, peer string) net.Conn {
	return &signatureGuard{Conn: c, refused: func() {
		l.logger.Warn("a PROXY header from a peer that is not a front door of this node; closing the connection", zap.String("peer", peer))
	}}
}

// addrString is a.String(), or "" for a nil address (a connection the
// peer already reset may have none).
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func (l *frontDoorListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *frontDoorListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.Listener.Close()
	})
	return err
}

// forwardedConn is a front door's connection on behalf of a client: its
// remote address is the client's, as the front door's header says.
type forwardedConn struct {
	net.Conn
	r      *bufio.Reader // holds what followed the header
	remote net.Addr
}

func (c *forwardedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *forwardedConn) RemoteAddr() net.Addr       { return c.remote }

// errProxyHeaderRefused ends a connection whose peer sent a PROXY header
// without being a front door.
var errProxyHeaderRefused = errors.New("clawgate: PROXY protocol header from a peer that is not a front door")

// signatureGuard passes a connection through unchanged unless it opens with
// the PROXY v2 signature, which only a front door may send: then it is
// closed. The check costs nothing but reading the first bytes a little
// apart (no goroutine, no deadline): HTTP and TLS never start with it.
type signatureGuard struct {
	net.Conn
	refused func()
	checked bool
	held    []byte // bytes read while checking, not yet returned
}

func (c *signatureGuard) Read(p []byte) (int, error) {
	for !c.checked {
		var tmp [12]byte
		n, err := c.Conn.Read(tmp[:len(proxyproto.Signature)-len(c.held)])
		c.held = append(c.held, tmp[:n]...)
		switch {
		case !bytes.HasPrefix(proxyproto.Signature, c.held):
			c.checked = true
		case len(c.held) == len(proxyproto.Signature):
			c.refused()
			c.Conn.Close()
			return 0, errProxyHeaderRefused
		case err != nil:
			return 0, err
		}
	}
	if len(c.held) > 0 {
		n := copy(p, c.held)
		c.held = c.held[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
