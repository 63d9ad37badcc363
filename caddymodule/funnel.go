package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/clawgate/clawgate/tsnet"
)

func init() {
	caddy.RegisterNetwork(funnelNetwork, listenFunnel)
	// Funnel relays TCP only; sites on it are offered no HTTP/3.
	caddy.RegisterNetwork(funnelNetwork+"+udp", listenPacketOnNode)
	caddyhttp.RegisterNetworkHTTP3(funnelNetwork, funnelNetwork+"+udp")
}

// funnelNetwork is the listener network for the public internet:
// `bind clawgate+funnel/<node>` serves a site through Tailscale Funnel on that
// node's public name (ports 443, 8443 and 10000 only).
//
// Funnel is how webhook providers (Telegram, Slack, LINE, …) reach a gateway
// that is otherwise tailnet-only, so a server on this network may carry
// channel webhook routes and nothing else: every handler that could reach a
// backend must run after a clawgate_senders check. The check runs when Caddy
// opens the listener, on the provisioned routes of every server listening
// there, and a server that fails it is refused with the route at fault; see
// checkFunnelRoutes for the rules and their limits.
//
// Funnel connections carry the internet client as their remote address and
// the node's public name as their local address (tsnet.FunnelConn), never a
// tailnet IP: the guard's tailnet identity lookup, which goes by the local
// address, never runs for them.
const funnelNetwork = networkName + "+funnel"

// listenFunnel is the ListenerFunc for `clawgate+funnel/<node>`.
func listenFunnel(ctx context.Context, network, host, portRange string, portOffset uint, _ net.ListenConfig) (any, error) {
	cctx, ok := ctx.(caddy.Context)
	if !ok {
		return nil, errors.New("clawgate+funnel listener: not called from a Caddy config")
	}
	if host == "" {
		return nil, errors.New("clawgate+funnel listener: missing node name; bind clawgate+funnel/<node>")
	}
	na, err := caddy.ParseNetworkAddress("tcp/:" + portRange)
	if err != nil {
		return nil, fmt.Errorf("clawgate+funnel listener: bad port %q: %w", portRange, err)
	}
	port := na.StartPort + portOffset
	addr := fmt.Sprintf("%s/%s:%d", funnelNetwork, host, port)

	appIface, err := cctx.App("http")
	if err != nil {
		return nil, fmt.Errorf("%s: loading the http app: %w", addr, err)
	}
	servers := serversListeningOn(appIface.(*caddyhttp.App), network, host, port)
	if len(servers) == 0 {
		return nil, fmt.Errorf("%s: only servers of Caddy's http app can listen on a Funnel, where clawgate can check their routes", addr)
	}
	if !tsnet.IsFunnelPort(int(port)) {
		// Caddy's automatic HTTP->HTTPS redirect for a Funnel site asks for
		// port 80 on the same network. Funnel cannot serve it, and a server
		// that only answers (redirects) on it loses nothing by not being
		// reachable, so it gets a listener that never accepts.
		if onlyAnswers(servers) {
			caddy.Log().Named("clawgate.funnel").Info("Tailscale Funnel serves only ports 443, 8443 and 10000; this port is not reachable from the internet (Caddy's automatic HTTP->HTTPS redirect, for instance)",
				zap.String("address", addr))
			return newIdleListener(tsnet.FunnelAddr(fmt.Sprintf("%s:%d", host, port))), nil
		}
		return nil, fmt.Errorf("%s: Tailscale Funnel serves only ports 443, 8443 and 10000", addr)
	}
	for name, srv := range servers {
		if err := checkFunnelServer(srv); err != nil {
			return nil, fmt.Errorf("http.servers.%s listens on %s (Tailscale Funnel, the public internet), which may carry only channel webhook routes checked by clawgate_senders: %w", name, addr, err)
		}
	}

	p, err := acquireNode(ctx, host)
	if err != nil {
		return nil, err
	}
	portStr := strconv.FormatUint(uint64(port), 10)
	return sharedNodeListener(p, "funnel/"+portStr, func() (net.Listener, error) {
		return p.Node.ListenFunnel("tcp", ":"+portStr)
	})
}

// serversListeningOn returns the http app's servers with a listener address
// on network/host that covers port, by name.
func serversListeningOn(app *caddyhttp.App, network, host string, port uint) map[string]*caddyhttp.Server {
	repl := caddy.NewReplacer()
	out := make(map[string]*caddyhttp.Server)
	for name, srv := range app.Servers {
		for _, l := range srv.Listen {
			na, err := caddy.ParseNetworkAddress(repl.ReplaceKnown(l, ""))
			if err != nil {
				continue
			}
			if na.Network == network && na.Host == host && na.StartPort <= port && port <= na.EndPort {
				out[name] = srv
			}
		}
	}
	return out
}

// Handlers by what they can do to a request on a Funnel listener, by module
// name. Any handler not listed here may reach a backend (reverse_proxy,
// file_server, php_fastcgi, templates, invoke, intercept, third-party
// modules, …) and is allowed only after a clawgate_senders check.
var (
	// funnelAnswers answer without reaching anything.
	funnelAnswers = map[string]bool{"static_response": true, "error": true}
	// funnelQuiet reach nothing and leave what later matchers see as it was.
	funnelQuiet = map[string]bool{"encode": true, "log_append": true, "clawgate_senders": true}
	// funnelRewriting reach nothing but change the request later matchers see.
	funnelRewriting = map[string]bool{"headers": true, "rewrite": true, "vars": true, "map": true, "request_body": true}
)

// checkFunnelServer applies checkFunnelRoutes to a server's routes and error
// routes.
func checkFunnelServer(srv *caddyhttp.Server) error {
	if err := checkFunnelRoutes(srv.Routes, false, "routes"); err != nil {
		return err
	}
	if srv.Errors != nil {
		// Error routes run after a handler failed, which may be before any
		// check: they count as unchecked.
		return checkFunnelRoutes(srv.Errors.Routes, false, "errors.routes")
	}
	return nil
}

// checkFunnelRoutes reports the first handler of routes that could pass a
// request to a backend without a clawgate_senders check before it. checked
// says whether the request has passed one on the way to routes.
//
// Within one route, every handler after clawgate_senders is checked, and
// subroutes inherit that. Across routes of one list (the Caddyfile makes a
// route per directive), a route with clawgate_senders among its handlers
// checks a later route when every request reaching the later route has
// passed through it:
//   - it has no matcher, or exactly the same matchers as the later route and
//     nothing between the two can change the request (see quietBetween), so
//     the matchers see the same request twice; and
//   - it is the first route of its group (or has none), so no earlier route
//     of its group can have been chosen instead of it.
//
// The `clawgate` guard is refused anywhere: Funnel traffic has no tailnet
// identity, and its token and JWT rules would open the gateway's Control UI
// and API to the internet.
//
// Limits: matchers are compared as provisioned values, so matchers that are
// equal in effect but not in value (two CEL expressions, a path matcher
// written two ways) do not count as the same and the config is refused;
// matchers are assumed to depend on the request alone. Routes reached only
// through other modules' embedded routes (reverse_proxy's handle_response,
// intercept, named routes behind invoke) are not inspected, which is why
// those modules are allowed only after a check.
func checkFunnelRoutes(routes caddyhttp.RouteList, checked bool, where string) error {
	for j := range routes {
		at := fmt.Sprintf("%s[%d]", where, j)
		if err := checkFunnelHandlers(routes[j].Handlers, checked || checkedByEarlier(routes, j), at); err != nil {
			return err
		}
	}
	return nil
}

func checkFunnelHandlers(handlers []caddyhttp.MiddlewareHandler, checked bool, where string) error {
	for k, h := range handlers {
		name := caddy.GetModuleName(h)
		at := fmt.Sprintf("%s.handle[%d]", where, k)
		switch {
		case name == "clawgate":
			return fmt.Errorf("%s: the tailnet guard `clawgate` cannot serve Funnel traffic, which has no tailnet identity, and its token and JWT rules would open the gateway to the internet; serve the Control UI and API on a `bind clawgate/<node>` site", at)
		case name == "clawgate_senders":
			checked = true
		case name == "subroute":
			sub, ok := h.(*caddyhttp.Subroute)
			if !ok {
				return fmt.Errorf("%s: unexpected subroute type %T", at, h)
			}
			if err := checkFunnelRoutes(sub.Routes, checked, at+".routes"); err != nil {
				return err
			}
			if sub.Errors != nil {
				if err := checkFunnelRoutes(sub.Errors.Routes, checked, at+".errors.routes"); err != nil {
					return err
				}
			}
		case funnelAnswers[name], funnelQuiet[name], funnelRewriting[name], checked:
		default:
			return fmt.Errorf("%s: %s could reach a backend without a clawgate_senders check; put `clawgate_senders` before it with the same matcher, or both in one `handle` block", at, name)
		}
	}
	return nil
}

// checkedByEarlier reports whether every request reaching routes[j] has
// passed a clawgate_senders check in an earlier route of the same list.
func checkedByEarlier(routes caddyhttp.RouteList, j int) bool {
	for i := j - 1; i >= 0; i-- {
		ri := &routes[i]
		if !hasHandler(ri.Handlers, "clawgate_senders") || !firstOfGroup(routes, i) {
			continue
		}
		if len(ri.MatcherSets) == 0 {
			return true
		}
		if reflect.DeepEqual(ri.MatcherSets, routes[j].MatcherSets) && quietBetween(routes, i, j) {
			return true
		}
	}
	return false
}

func hasHandler(handlers []caddyhttp.MiddlewareHandler, name string) bool {
	for _, h := range handlers {
		if caddy.GetModuleName(h) == name {
			return true
		}
	}
	return false
}

// firstOfGroup reports whether routes[i] has no group or is the first route
// of its group.
func firstOfGroup(routes caddyhttp.RouteList, i int) bool {
	g := routes[i].Group
	if g == "" {
		return true
	}
	for k := range i {
		if routes[k].Group == g {
			return false
		}
	}
	return true
}

// quietBetween reports whether the routes strictly between i and j cannot
// change the request later matchers see (see passesUnchanged).
func quietBetween(routes caddyhttp.RouteList, i, j int) bool {
	for k := i + 1; k < j; k++ {
		for _, h := range routes[k].Handlers {
			if !passesUnchanged(h) {
				return false
			}
		}
	}
	return true
}

// passesUnchanged reports whether h either does not pass the request on to
// the rest of the chain, or passes it on unchanged for matchers: handlers
// that answer or are quiet, reverse proxies without handle_response routes
// (they always answer; another webhook's proxy, typically), and subroutes
// made only of such handlers (a `handle` block of another webhook). A
// subroute's error routes never pass the request on.
func passesUnchanged(h caddyhttp.MiddlewareHandler) bool {
	switch h := h.(type) {
	case *reverseproxy.Handler:
		return len(h.HandleResponse) == 0
	case *caddyhttp.Subroute:
		for _, r := range h.Routes {
			for _, sh := range r.Handlers {
				if !passesUnchanged(sh) {
					return false
				}
			}
		}
		return true
	}
	name := caddy.GetModuleName(h)
	return funnelAnswers[name] || funnelQuiet[name]
}

// onlyAnswers reports whether every handler of the servers (error routes
// included) answers by itself, as the redirects of Caddy's automatic HTTPS do.
func onlyAnswers(servers map[string]*caddyhttp.Server) bool {
	var answers func(routes caddyhttp.RouteList) bool
	answers = func(routes caddyhttp.RouteList) bool {
		for _, r := range routes {
			for _, h := range r.Handlers {
				if sub, ok := h.(*caddyhttp.Subroute); ok {
					if !answers(sub.Routes) || (sub.Errors != nil && !answers(sub.Errors.Routes)) {
						return false
					}
					continue
				}
				if !funnelAnswers[caddy.GetModuleName(h)] {
					return false
				}
			}
		}
		return true
	}
	for _, srv := range servers {
		if !answers(srv.Routes) || (srv.Errors != nil && !answers(srv.Errors.Routes)) {
			return false
		}
	}
	return true
}

// idleListener accepts nothing until it is closed.
type idleListener struct {
	addr   net.Addr
	closed chan struct{}
	once   sync.Once
}

func newIdleListener(addr net.Addr) *idleListener {
	return &idleListener{addr: addr, closed: make(chan struct{})}
}

func (l *idleListener) Accept() (net.Conn, error) {
	<-l.closed
	return nil, net.ErrClosed
}

func (l *idleListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *idleListener) Addr() net.Addr { return l.addr }

// Interface guards
var (
	_ net.Listener = (*idleListener)(nil)
)
