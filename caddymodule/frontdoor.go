package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/proxyproto"
)

func init() {
	caddy.RegisterModule(RemoteTransport{})
	httpcaddyfile.RegisterHandlerDirective("clawgate_remote", parseRemoteDirective)
	httpcaddyfile.RegisterDirectiveOrder("clawgate_remote", httpcaddyfile.After, "reverse_proxy")
}

// RemoteTransport is reverse_proxy's transport from a front door to the
// clawgate of a gateway host over the tailnet,
// `http.reverse_proxy.transport.clawgate_remote`. It dials through the front
// door's own clawgate node (never the host network), speaking plain HTTP
// inside the tailnet's WireGuard tunnel (encrypted, and authenticated by
// node keys at both ends), and opens each connection with a PROXY protocol
// v2 header naming the caller's tailnet address, so the host, which names this front door in its node's
// front_doors, looks the caller up with its own WhoIs and applies its own
// rules and audit gate. Connections are pooled per caller address.
//
// Only requests that reached the front door over one of its clawgate nodes
// are forwarded: the address it vouches for is always the connection's own
// peer. A host that cannot be reached answers 502 clawgate_gateway_unreachable
// naming the gateway; a host's own answers (its 503 when its gateway's audit
// fails, its refusals) pass through unchanged.
//
// The `clawgate_remote` directive writes the reverse_proxy around it:
//
//	clawgate_remote [<matcher>] <host:port> {
//	    gateway <name>          # the gateway's name on the host
//	    via <node>              # default: the node the site is bound to
//	    dial_timeout <duration> # default 5s
//	    state_interval <duration> # default 10s
//	}
type RemoteTransport struct {
	// Host is the gateway host's clawgate site on the tailnet, as
	// host:port; the host is its MagicDNS name or tailnet address. The site
	// there serves plain HTTP (`http://:8080`, bound to its clawgate node):
	// the hop stays inside WireGuard. It must equal the reverse_proxy
	// upstream. Required.
	Host string `json:"host,omitempty"`

	// Gateway is the gateway's name on the host: it names the gateway in
	// errors and picks its verdict from the host's state. Required.
	Gateway string `json:"gateway,omitempty"`

	// Via is the front door's clawgate node the connections go through.
	// Default: the node the site listens on (`bind clawgate/<node>`, or
	// `bind clawgate+service/<node>/<service>` for a front door on a
	// Tailscale Service); required when the site listens on no clawgate
	// node, or on more than one.
	Via string `json:"via,omitempty"`

	// DialTimeout bounds connecting to the host. Default: 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// StateInterval is how often the front door asks the host for its
	// gateways' verdicts (shown by GET /clawgate/gateways on the front
	// door's admin endpoint). Default: 10s.
	StateInterval caddy.Duration `json:"state_interval,omitempty"`

	hostName string
	rt       *http.Transport
	logger   *zap.Logger
	state    *remoteState

	conns *hostConns // open connections to the host, idle or not
}

type hostConns struct {
	mu  sync.Mutex
	set map[*hostConn]struct{}
}

// hostConn is a connection to the host that the transport can close when
// the host stops answering: a host that went away sends nothing more, and a
// request on its connection would wait forever.
type hostConn struct {
	net.Conn
	t    *RemoteTransport
	once sync.Once
}

func (c *hostConn) Close() error {
	c.once.Do(func() {
		c.t.conns.mu.Lock()
		delete(c.t.conns.set, c)
		c.t.conns.mu.Unlock()
	})
	return c.Conn.Close()
}

// closeHostConns closes every open connection to the host, idle or busy.
func (t *RemoteTransport) closeHostConns() int {
	t.conns.mu.Lock()
	conns := make([]*hostConn, 0, len(t.conns.set))
	for c := range t.conns.set {
		conns = append(conns, c)
	}
	t.conns.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// CaddyModule returns the Caddy module information.
func (RemoteTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.clawgate_remote",
		New: func() caddy.Module { return new(RemoteTransport) },
	}
}

// Provision prepares the pooled transport and starts following the host's
// state.
func (t *RemoteTransport) Provision(ctx caddy.Context) error {
	t.logger = ctx.Logger()
	if t.DialTimeout == 0 {
		t.DialTimeout = caddy.Duration(5 * time.Second)
	}
	if t.StateInterval == 0 {
		t.StateInterval = caddy.Duration(10 * time.Second)
	}
	if t.Via == "" {
		if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
			node, err := siteNode(srv)
			if err != nil {
				return fmt.Errorf("clawgate_remote %s: via: %w", t.Gateway, err)
			}
			t.Via = node
		}
	}
	if err := t.Validate(); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(t.Host)
	t.hostName = host
	t.rt = &http.Transport{
		DialContext:           t.dialForClient,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // the gateway streams; Caddy's own timeouts apply
		// The host's answer passes through as the host sent it: asking it
		// for gzip on behalf of a caller that did not, and decompressing,
		// would drop the answer's Content-Encoding and Content-Length.
		DisableCompression: true,
	}
	t.state = &remoteState{Host: t.Host, Via: t.Via}
	t.conns = &hostConns{set: make(map[*hostConn]struct{})}
	registerRemote(t)
	go t.followState(ctx)
	return nil
}

// Validate checks the transport's settings.
func (t *RemoteTransport) Validate() error {
	switch {
	case t.Gateway == "":
		return errors.New("clawgate_remote: gateway: required: the gateway's name on its host")
	case t.Via == "":
		return fmt.Errorf("clawgate_remote %s: via: required when the site is not bound to a clawgate node: the front door's clawgate node the connections go through", t.Gateway)
	case t.Host == "":
		return fmt.Errorf("clawgate_remote %s: host: required: the gateway host's clawgate site, as host:port", t.Gateway)
	}
	host, port, err := net.SplitHostPort(t.Host)
	if err != nil || host == "" {
		return fmt.Errorf("clawgate_remote %s: host %q: want host:port (the host's MagicDNS name or tailnet address)", t.Gateway, t.Host)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("clawgate_remote %s: host %q: bad port", t.Gateway, t.Host)
	}
	if ip, err := netip.ParseAddr(host); err == nil && !isTailnetAddr(ip) {
		return fmt.Errorf("clawgate_remote %s: host %q: not a tailnet address; a front door reaches gateway hosts over the tailnet only", t.Gateway, t.Host)
	}
	if t.DialTimeout < 0 || t.StateInterval < 0 {
		return fmt.Errorf("clawgate_remote %s: dial_timeout and state_interval must be positive", t.Gateway)
	}
	return nil
}

// Cleanup stops following the host's state.
func (t *RemoteTransport) Cleanup() error {
	unregisterRemote(t)
	if t.rt != nil {
		t.rt.CloseIdleConnections()
	}
	return nil
}

// frontDoorClientVar holds the caller's tailnet address for the dialer.
const frontDoorClientVar = "clawgate.front_door_client"

// RoundTrip forwards one request for the tailnet peer that sent it.
func (t *RemoteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	client, err := t.caller(req)
	if err != nil {
		t.logger.Warn("not forwarding a request the front door cannot vouch for", zap.String("gateway", t.Gateway), zap.String("remote", req.RemoteAddr), zap.Error(err))
		return t.refusal(req, http.StatusForbidden, "unattributable",
			"the front door forwards only requests that reached it over the tailnet")
	}
	if di, ok := reverseproxy.GetDialInfo(req.Context()); ok && di.Address != t.Host {
		return t.refusal(req, http.StatusBadGateway, "gateway_unreachable",
			fmt.Sprintf("gateway %q: the upstream %s is not this transport's host %s", t.Gateway, di.Address, t.Host))
	}
	caddyhttp.SetVar(req.Context(), frontDoorClientVar, client)
	req.URL.Scheme = "http"
	req.Host = t.hostName
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		if req.Context().Err() != nil {
			return nil, err
		}
		t.logger.Warn("gateway host unreachable", zap.String("gateway", t.Gateway), zap.String("host", t.Host), zap.String("via", t.Via), zap.Error(err))
		return t.refusal(req, http.StatusBadGateway, "gateway_unreachable",
			fmt.Sprintf("gateway %q is unreachable: its host %s did not answer over the tailnet", t.Gateway, t.Host))
	}
	return resp, nil
}

// caller is the tailnet address the request came from: the peer of the
// front door node's connection, which is also the address reverse_proxy
// pools the connection by.
func (t *RemoteTransport) caller(req *http.Request) (netip.AddrPort, error) {
	if tailnetNode(req) == nil {
		return netip.AddrPort{}, errors.New("the request did not arrive on a clawgate node")
	}
	ap, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("remote address %q: %w", req.RemoteAddr, err)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !isTailnetAddr(ap.Addr()) {
		return netip.AddrPort{}, fmt.Errorf("remote address %s is not a tailnet address", ap.Addr())
	}
	// reverse_proxy keys its connection pool by the client IP it
	// determined; it must be this one, or a pooled connection would carry
	// another caller's header.
	if s, _ := caddyhttp.GetVar(req.Context(), caddyhttp.ClientIPVarKey).(string); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Unmap() != ap.Addr() {
			return netip.AddrPort{}, fmt.Errorf("client IP %q differs from the connection's peer %s", s, ap.Addr())
		}
	}
	return ap, nil
}

// dialForClient opens a connection to the host through the front door's
// node and sends the PROXY header for the caller the context names.
func (t *RemoteTransport) dialForClient(ctx context.Context, _, _ string) (net.Conn, error) {
	client, ok := caddyhttp.GetVar(ctx, frontDoorClientVar).(netip.AddrPort)
	if !ok {
		return nil, errors.New("clawgate_remote: no caller address for this connection")
	}
	c, err := t.dial(ctx, proxyproto.Header{Command: proxyproto.Proxy, Source: client})
	if err != nil {
		return nil, err
	}
	hc := &hostConn{Conn: c, t: t}
	t.conns.mu.Lock()
	t.conns.set[hc] = struct{}{}
	t.conns.mu.Unlock()
	return hc, nil
}

// dial connects to the host through the Via node and writes hdr.
func (t *RemoteTransport) dial(ctx context.Context, hdr proxyproto.Header) (net.Conn, error) {
	node := nodeByName(t.Via)
	if node == nil {
		return nil, fmt.Errorf("the front door's node %q is not running", t.Via)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t.DialTimeout))
	defer cancel()
	c, err := node.Dial(ctx, "tcp", t.Host)
	if err != nil {
		return nil, fmt.Errorf("dialing %s through %q: %w", t.Host, t.Via, err)
	}
	b, err := proxyproto.Append(make([]byte, 0, 52), hdr)
	if err == nil {
		_, err = c.Write(b)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("sending the PROXY header to %s: %w", t.Host, err)
	}
	return c, nil
}

// refusal answers a request the transport will not forward: through the
// server's error routes when one would answer, or with clawgate's own body.
func (t *RemoteTransport) refusal(req *http.Request, status int, reason, msg string) (*http.Response, error) {
	ref := &refusal{status: status, reason: reason, message: msg, gateway: t.Gateway}
	if srv, _ := req.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		err := caddyhttp.Error(status, ref)
		if repl, ok := req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Set("clawgate.reason", reason)
			repl.Set("clawgate.message", msg)
			repl.Set("clawgate.status", status)
			repl.Set("clawgate.gateway", t.Gateway)
		}
		if errorRoutesAnswer(srv.Errors.Routes, asErrorRoutesSee(req, srv, err)) {
			return nil, err
		}
	}
	rec := &responseRecorder{header: http.Header{}}
	edge.WriteDenial(rec, req, status, reason, msg, 0)
	return &http.Response{
		StatusCode: rec.status, Status: fmt.Sprintf("%d %s", rec.status, http.StatusText(rec.status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: rec.header,
		Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// responseRecorder collects a response clawgate writes, for a transport to
// return.
type responseRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *responseRecorder) Header() http.Header { return r.header }
func (r *responseRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *responseRecorder) WriteHeader(status int) { r.status = status }

// siteNode returns the clawgate node a site's listeners are on, from its
// `clawgate/<node>` and `clawgate+service/<node>/<service>` addresses: the
// node a front door's connections to its hosts go through. It is "" when
// the site listens on no clawgate node, and an error when its listeners are
// on different nodes, since no one of them is the obvious choice.
func siteNode(srv *caddyhttp.Server) (string, error) {
	repl := caddy.NewReplacer()
	var node, from string
	for _, l := range srv.Listen {
		na, err := caddy.ParseNetworkAddress(repl.ReplaceKnown(l, ""))
		if err != nil {
			continue
		}
		var n string
		switch na.Network {
		case networkName:
			n = na.Host
		case serviceNetwork:
			if n, _, err = parseServiceHost(na.Host); err != nil {
				continue // the listener itself refuses it, with the reason
			}
		default:
			continue
		}
		addr := na.Network + "/" + na.Host
		switch {
		case node == "":
			node, from = n, addr
		case n != node:
			return "", fmt.Errorf("the site listens on %s and %s, two different clawgate nodes; name the one the front door dials its hosts through with `via <node>`", from, addr)
		}
	}
	return node, nil
}

// remoteState is what the front door knows of a remote gateway.
type remoteState struct {
	Host      string          `json:"host"`
	Via       string          `json:"via"`
	Reachable bool            `json:"reachable"`
	Error     string          `json:"error,omitempty"`
	Fetched   time.Time       `json:"fetched,omitzero"`
	verdict   json.RawMessage // the host's entry for the gateway
}

// maxStateBody bounds a host's answer to a state request.
const maxStateBody = 1 << 20

// followState asks the host for its gateways' state until the config is
// unloaded: first at once, then every StateInterval.
func (t *RemoteTransport) followState(ctx context.Context) {
	for {
		st, dialed := t.fetchState(ctx)
		if !dialed && ctx.Err() == nil {
			// The host cannot be reached at all: its open connections
			// are dead too, and requests waiting on them get an answer.
			if n := t.closeHostConns(); n > 0 {
				t.logger.Warn("gateway host unreachable; closed its connections", zap.String("gateway", t.Gateway), zap.String("host", t.Host), zap.Int("count", n))
			}
		}
		remotesMu.Lock()
		*t.state = st
		remotesMu.Unlock()
		// An unreachable host is asked again sooner, so a host (or this
		// node) coming up shows within a couple of seconds.
		wait := time.Duration(t.StateInterval)
		if !st.Reachable {
			wait = min(wait, 2*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// fetchState makes one state request (a LOCAL PROXY header, then GET) and
// returns what it learnt, and whether the host accepted the connection.
func (t *RemoteTransport) fetchState(ctx context.Context) (remoteState, bool) {
	st, err := t.fetchStateOnce(ctx)
	if err != nil {
		st.Error = err.Error()
	}
	return st, !errors.Is(err, errHostDial)
}

// errHostDial marks a failure to connect to the host at all.
var errHostDial = errors.New("connecting")

func (t *RemoteTransport) fetchStateOnce(ctx context.Context) (remoteState, error) {
	st := remoteState{Host: t.Host, Via: t.Via, Fetched: time.Now().UTC()}
	fail := func(err error) (remoteState, error) { return st, err }
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t.DialTimeout)+5*time.Second)
	defer cancel()
	c, err := t.dial(ctx, proxyproto.Header{Command: proxyproto.Local})
	if err != nil {
		return fail(fmt.Errorf("%w: %w", errHostDial, err))
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+t.Host+frontDoorStatePath, nil)
	req.Close = true
	if err := req.Write(c); err != nil {
		return fail(fmt.Errorf("asking %s for its state: %w", t.Host, err))
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return fail(fmt.Errorf("reading %s's state: %w", t.Host, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStateBody+1))
	switch {
	case err != nil:
		return fail(fmt.Errorf("reading %s's state: %w", t.Host, err))
	case len(body) > maxStateBody:
		return fail(fmt.Errorf("%s's state is larger than %d bytes", t.Host, maxStateBody))
	case resp.StatusCode != http.StatusOK:
		return fail(fmt.Errorf("%s answered the state request with %s (is this front door in its node's front_doors?)", t.Host, resp.Status))
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(body, &all); err != nil {
		return fail(fmt.Errorf("%s's state: %w", t.Host, err))
	}
	st.Reachable = true
	v, ok := all[t.Gateway]
	if !ok {
		return fail(fmt.Errorf("the host has no gateway %q", t.Gateway))
	}
	st.verdict = v
	return st, nil
}

var (
	remotesMu sync.Mutex
	remotes   = map[string]*RemoteTransport{} // by gateway name, the newest config's
)

func registerRemote(t *RemoteTransport) {
	remotesMu.Lock()
	remotes[t.Gateway] = t
	remotesMu.Unlock()
}

func unregisterRemote(t *RemoteTransport) {
	remotesMu.Lock()
	if remotes[t.Gateway] == t {
		delete(remotes, t.Gateway)
	}
	remotesMu.Unlock()
}

// remoteSnapshot is each remote gateway's entry for GET /clawgate/gateways:
// the host's own verdict for it, with a "remote" member saying where it is
// and whether the host answered.
func remoteSnapshot() map[string]any {
	remotesMu.Lock()
	defer remotesMu.Unlock()
	out := make(map[string]any, len(remotes))
	for name, t := range remotes {
		entry := map[string]any{}
		if len(t.state.verdict) > 0 {
			_ = json.Unmarshal(t.state.verdict, &entry)
		}
		entry["remote"] = *t.state
		out[name] = entry
	}
	return out
}

// parseRemoteDirective sets up a reverse_proxy with the clawgate_remote
// transport; see RemoteTransport for the syntax.
func parseRemoteDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	t := new(RemoteTransport)
	if err := t.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return &reverseproxy.Handler{
		TransportRaw: caddyconfig.JSONModuleObject(t, "protocol", "clawgate_remote", nil),
		Upstreams:    reverseproxy.UpstreamPool{{Dial: t.Host}},
	}, nil
}

// UnmarshalCaddyfile reads `clawgate_remote <host:port> { ... }`.
func (t *RemoteTransport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if !d.NextArg() {
		return d.Errf("clawgate_remote: want the gateway host's address, host:port")
	}
	t.Host = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "gateway":
			err = oneArg(d, &t.Gateway)
		case "via":
			err = oneArg(d, &t.Via)
		case "dial_timeout", "state_interval":
			key := d.Val()
			var s string
			if err = oneArg(d, &s); err == nil {
				dst := &t.DialTimeout
				if key == "state_interval" {
					dst = &t.StateInterval
				}
				err = parseDuration(d, s, dst)
			}
		default:
			err = d.Errf("clawgate_remote: unknown option %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if t.Gateway == "" {
		return d.Errf("clawgate_remote %s: gateway: required: the gateway's name on its host", t.Host)
	}
	return nil
}

// ProxyProtocolEnabled reports whether reverse_proxy must pool this
// transport's connections per client: always, as each carries one
// caller's address.
func (t *RemoteTransport) ProxyProtocolEnabled() bool { return true }

// Interface guards
var (
	_ caddy.Provisioner                   = (*RemoteTransport)(nil)
	_ caddy.Validator                     = (*RemoteTransport)(nil)
	_ caddy.CleanerUpper                  = (*RemoteTransport)(nil)
	_ http.RoundTripper                   = (*RemoteTransport)(nil)
	_ reverseproxy.ProxyProtocolTransport = (*RemoteTransport)(nil)
	_ caddyfile.Unmarshaler               = (*RemoteTransport)(nil)
)
