package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"reflect"
	"slices"
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
		return nil, missingNodeError(funnelNetwork)
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
	idle, err := checkFunnelListener(appIface.(*caddyhttp.App), network, host, port)
	if err != nil {
		return nil, err
	}
	if idle {
		caddy.Log().Named("clawgate.funnel").Info("Tailscale Funnel serves only ports 443, 8443 and 10000; this port is not reachable from the internet (Caddy's automatic HTTP->HTTPS redirect, for instance)",
			zap.String("address", addr))
		return newIdleListener(tsnet.FunnelAddr(fmt.Sprintf("%s:%d", host, port))), nil
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

// checkFunnelListener applies the Funnel rules to the servers of the http
// app that listen on network/host:port, and reports whether the listener
// is one that never accepts (a port Funnel cannot serve, used only by
// servers that answer by themselves). Caddy runs it when it opens the
// listener, and clawgate's handlers run it while Caddy provisions them (see
// checkFunnelAtProvision), so `caddy validate` refuses what `caddy run`
// does, with the same message.
func checkFunnelListener(app *caddyhttp.App, network, host string, port uint) (bool, error) {
	addr := fmt.Sprintf("%s/%s:%d", funnelNetwork, host, port)
	servers := serversListeningOn(app, network, host, port)
	if len(servers) == 0 {
		return false, fmt.Errorf("%s: only servers of Caddy's http app can listen on a Funnel, where clawgate can check their routes", addr)
	}
	if !tsnet.IsFunnelPort(int(port)) {
		// Caddy's automatic HTTP->HTTPS redirect for a Funnel site asks for
		// port 80 on the same network. Funnel cannot serve it, and a server
		// that only answers (redirects) on it loses nothing by not being
		// reachable, so it gets a listener that never accepts.
		if onlyAnswers(servers) {
			return true, nil
		}
		return false, fmt.Errorf("%s: Tailscale Funnel serves only ports 443, 8443 and 10000", addr)
	}
	for name, srv := range servers {
		if err := checkFunnelServer(srv); err != nil {
			return false, fmt.Errorf("http.servers.%s listens on %s (Tailscale Funnel, the public internet), which may carry only channel webhook routes checked by clawgate_senders: %w", name, addr, err)
		}
	}
	return false, nil
}

// checkListenersAtProvision runs, while Caddy provisions a clawgate handler,
// the checks Caddy's listener would run later for the clawgate addresses of
// the server being provisioned (see checkServerListeners). The clawgate app
// runs them for every server (see App.checkListeners); a server with no
// clawgate handler, in a config without the clawgate app, is judged only
// when its listener opens: nothing of clawgate's runs while Caddy
// provisions it.
func checkListenersAtProvision(ctx caddy.Context) error {
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		return nil
	}
	httpApp, ok := loadedHTTPApp(ctx)
	if !ok {
		return nil
	}
	app := new(App)
	if a, err := ctx.AppIfConfigured(appID); err == nil {
		app = a.(*App)
	}
	return checkServerListeners(httpApp, app, srv)
}

// checkListeners runs the listener checks for every server of the http app,
// provisioning it first if Caddy has not yet (clawgate's handlers then find
// this app, already set up). When the http app is being provisioned right
// now (a handler of it loaded this app), the servers and routes it has not
// reached are judged from their JSON.
func (a *App) checkListeners(ctx caddy.Context) error {
	httpIface, err := ctx.AppIfConfigured("http")
	if err != nil {
		// Not configured, or it failed: Caddy reports that failure itself.
		return nil
	}
	httpApp, ok := httpIface.(*caddyhttp.App)
	if !ok {
		return nil
	}
	names := slices.Sorted(maps.Keys(httpApp.Servers))
	for _, name := range names {
		if err := checkServerListeners(httpApp, a, httpApp.Servers[name]); err != nil {
			return err
		}
	}
	return nil
}

// checkServerListeners runs for srv's clawgate addresses what Caddy's
// listener checks when it opens them: for a Funnel address
// checkFunnelListener, then the node's name and settings (for a node the
// clawgate app does not list, the defaults). Routes Caddy has not
// provisioned yet are judged from their JSON, so the verdict and the
// message are the listener's.
func checkServerListeners(httpApp *caddyhttp.App, app *App, srv *caddyhttp.Server) error {
	repl := caddy.NewReplacer()
	for _, l := range srv.Listen {
		na, err := caddy.ParseNetworkAddress(repl.ReplaceKnown(l, ""))
		if err == nil && na.Network == serviceNetwork {
			if err := checkServiceAddress(app, na); err != nil {
				return err
			}
			continue
		}
		if err != nil || (na.Network != networkName && na.Network != funnelNetwork) {
			continue
		}
		if na.Host == "" {
			return missingNodeError(na.Network)
		}
		// In the order the listener checks: the Funnel rules, then the node.
		for port := na.StartPort; na.Network == funnelNetwork && port <= na.EndPort; port++ {
			if _, err := checkFunnelListener(httpApp, na.Network, na.Host, port); err != nil {
				return err
			}
		}
		if _, err := app.nodeConfig(na.Host); err != nil {
			return err
		}
	}
	return nil
}

// loadedHTTPApp returns the http app whose servers are being provisioned.
func loadedHTTPApp(ctx caddy.Context) (*caddyhttp.App, bool) {
	appIface, err := ctx.App("http")
	if err != nil {
		return nil, false
	}
	app, ok := appIface.(*caddyhttp.App)
	return app, ok
}

// missingNodeError is the refusal of a clawgate listener address without a
// node name.
func missingNodeError(network string) error {
	return fmt.Errorf("%s listener: missing node name; bind %s/<node>", network, network)
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
	routes, err := funnelView(srv.Routes)
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	if err := checkFunnelRoutes(routes, false, "routes"); err != nil {
		return err
	}
	if srv.Errors != nil {
		errRoutes, err := funnelView(srv.Errors.Routes)
		if err != nil {
			return fmt.Errorf("errors.routes: %w", err)
		}
		// Error routes run after a handler failed, which may be before any
		// check: they count as unchecked.
		return checkFunnelRoutes(errRoutes, false, "errors.routes")
	}
	return nil
}

// funnelRoute is a route as the Funnel rules see it: its group, its
// matchers and what its handlers can do. It is read from the provisioned
// route, or from the route's JSON while Caddy has not provisioned it yet
// (its handlers still raw), so the rules give one verdict whether they run
// during provisioning or when the listener opens.
type funnelRoute struct {
	group    string
	matchers caddyhttp.MatcherSets // provisioned matchers
	rawMatch string                // the matchers' JSON, when not provisioned
	raw      bool                  // matchers read from JSON
	handlers []funnelHandler
}

// funnelHandler is one handler of a funnelRoute, by module name.
type funnelHandler struct {
	name           string
	routes, errors []funnelRoute // a subroute's
	handleResponse bool          // a reverse_proxy with handle_response routes
}

// hasMatcher reports whether the route matches only some requests.
func (r *funnelRoute) hasMatcher() bool {
	return len(r.matchers) > 0 || (r.raw && r.rawMatch != "" && r.rawMatch != "null" && r.rawMatch != "[]")
}

// sameMatchers reports whether two routes have the same matchers: equal
// provisioned values, or equal JSON for routes read from JSON.
func sameMatchers(a, b *funnelRoute) bool {
	if a.raw != b.raw {
		return false
	}
	if a.raw {
		return a.rawMatch == b.rawMatch
	}
	return reflect.DeepEqual(a.matchers, b.matchers)
}

func funnelView(routes caddyhttp.RouteList) ([]funnelRoute, error) {
	out := make([]funnelRoute, len(routes))
	for i := range routes {
		r := &routes[i]
		fr := funnelRoute{group: r.Group, matchers: r.MatcherSets}
		if r.MatcherSetsRaw != nil {
			b, err := json.Marshal(r.MatcherSetsRaw) // map keys sorted: a canonical form
			if err != nil {
				return nil, fmt.Errorf("[%d].match: %w", i, err)
			}
			fr.raw, fr.rawMatch, fr.matchers = true, string(b), nil
		}
		if r.HandlersRaw != nil {
			for k, raw := range r.HandlersRaw {
				h, err := rawFunnelHandler(raw)
				if err != nil {
					return nil, fmt.Errorf("[%d].handle[%d]: %w", i, k, err)
				}
				fr.handlers = append(fr.handlers, h)
			}
		} else {
			for k, mh := range r.Handlers {
				h, err := provisionedFunnelHandler(mh)
				if err != nil {
					return nil, fmt.Errorf("[%d].handle[%d]: %w", i, k, err)
				}
				fr.handlers = append(fr.handlers, h)
			}
		}
		out[i] = fr
	}
	return out, nil
}

func provisionedFunnelHandler(mh caddyhttp.MiddlewareHandler) (funnelHandler, error) {
	h := funnelHandler{name: caddy.GetModuleName(mh)}
	switch mh := mh.(type) {
	case *caddyhttp.Subroute:
		var err error
		if h.routes, err = funnelView(mh.Routes); err != nil {
			return h, err
		}
		if mh.Errors != nil {
			if h.errors, err = funnelView(mh.Errors.Routes); err != nil {
				return h, err
			}
		}
	case *reverseproxy.Handler:
		h.handleResponse = len(mh.HandleResponse) > 0
	default:
		if h.name == "subroute" {
			return h, fmt.Errorf("unexpected subroute type %T", mh)
		}
	}
	return h, nil
}

func rawFunnelHandler(raw json.RawMessage) (funnelHandler, error) {
	var m struct {
		Handler string              `json:"handler"`
		Routes  caddyhttp.RouteList `json:"routes"`
		Errors  *struct {
			Routes caddyhttp.RouteList `json:"routes"`
		} `json:"errors"`
		HandleResponse []json.RawMessage `json:"handle_response"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return funnelHandler{}, err
	}
	h := funnelHandler{name: m.Handler, handleResponse: len(m.HandleResponse) > 0}
	if m.Handler == "subroute" {
		var err error
		if h.routes, err = funnelView(m.Routes); err != nil {
			return h, err
		}
		if m.Errors != nil {
			if h.errors, err = funnelView(m.Errors.Routes); err != nil {
				return h, err
			}
		}
	}
	return h, nil
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
// Limits: matchers are compared as provisioned values (or as JSON, for
// routes not provisioned yet), so matchers that are equal in effect but not
// in value (two CEL expressions, a path matcher written two ways) do not
// count as the same and the config is refused; matchers are assumed to
// depend on the request alone. Routes reached only through other modules'
// embedded routes (reverse_proxy's handle_response, intercept, named routes
// behind invoke) are not inspected, which is why those modules are allowed
// only after a check.
func checkFunnelRoutes(routes []funnelRoute, checked bool, where string) error {
	for j := range routes {
		at := fmt.Sprintf("%s[%d]", where, j)
		if err := checkFunnelHandlers(routes[j].handlers, checked || checkedByEarlier(routes, j), at); err != nil {
			return err
		}
	}
	return nil
}

func checkFunnelHandlers(handlers []funnelHandler, checked bool, where string) error {
	for k, h := range handlers {
		at := fmt.Sprintf("%s.handle[%d]", where, k)
		switch {
		case h.name == "clawgate":
			return fmt.Errorf("%s: the tailnet guard `clawgate` cannot serve Funnel traffic, which has no tailnet identity, and its token and JWT rules would open the gateway to the internet; serve the Control UI and API on a `bind clawgate/<node>` site", at)
		case h.name == "clawgate_senders":
			checked = true
		case h.name == "subroute":
			if err := checkFunnelRoutes(h.routes, checked, at+".routes"); err != nil {
				return err
			}
			if err := checkFunnelRoutes(h.errors, checked, at+".errors.routes"); err != nil {
				return err
			}
		case funnelAnswers[h.name], funnelQuiet[h.name], funnelRewriting[h.name], checked:
		default:
			return fmt.Errorf("%s: %s could reach a backend without a clawgate_senders check; put `clawgate_senders` before it with the same matcher, or both in one `handle` block", at, h.name)
		}
	}
	return nil
}

// checkedByEarlier reports whether every request reaching routes[j] has
// passed a clawgate_senders check in an earlier route of the same list.
func checkedByEarlier(routes []funnelRoute, j int) bool {
	for i := j - 1; i >= 0; i-- {
		ri := &routes[i]
		if !hasHandler(ri.handlers, "clawgate_senders") || !firstOfGroup(routes, i) {
			continue
		}
		if !ri.hasMatcher() {
			return true
		}
		if sameMatchers(ri, &routes[j]) && quietBetween(routes, i, j) {
			return true
		}
	}
	return false
}

func hasHandler(handlers []funnelHandler, name string) bool {
	for _, h := range handlers {
		if h.name == name {
			return true
		}
	}
	return false
}

// firstOfGroup reports whether routes[i] has no group or is the first route
// of its group.
func firstOfGroup(routes []funnelRoute, i int) bool {
	g := routes[i].group
	if g == "" {
		return true
	}
	for k := range i {
		if routes[k].group == g {
			return false
		}
	}
	return true
}

// quietBetween reports whether the routes strictly between i and j cannot
// change the request later matchers see (see passesUnchanged).
func quietBetween(routes []funnelRoute, i, j int) bool {
	for k := i + 1; k < j; k++ {
		for _, h := range routes[k].handlers {
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
func passesUnchanged(h funnelHandler) bool {
	switch h.name {
	case "reverse_proxy":
		return !h.handleResponse
	case "subroute":
		for _, r := range h.routes {
			for _, sh := range r.handlers {
				if !passesUnchanged(sh) {
					return false
				}
			}
		}
		return true
	}
	return funnelAnswers[h.name] || funnelQuiet[h.name]
}

// onlyAnswers reports whether every handler of the servers (error routes
// included) answers by itself, as the redirects of Caddy's automatic HTTPS do.
func onlyAnswers(servers map[string]*caddyhttp.Server) bool {
	var answers func(routes []funnelRoute) bool
	answers = func(routes []funnelRoute) bool {
		for _, r := range routes {
			for _, h := range r.handlers {
				if h.name == "subroute" {
					if !answers(h.routes) || !answers(h.errors) {
						return false
					}
					continue
				}
				if !funnelAnswers[h.name] {
					return false
				}
			}
		}
		return true
	}
	view := func(routes caddyhttp.RouteList) []funnelRoute {
		v, err := funnelView(routes)
		if err != nil {
			// Unreadable routes answer nothing for certain.
			return []funnelRoute{{handlers: []funnelHandler{{name: "unreadable"}}}}
		}
		return v
	}
	for _, srv := range servers {
		if !answers(view(srv.Routes)) || (srv.Errors != nil && !answers(view(srv.Errors.Routes))) {
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
