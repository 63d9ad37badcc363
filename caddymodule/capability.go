package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// OpenClaw capability URLs, /__openclaw__/cap/<token>/<rest>, are rewritten
// by the gateway to /<rest> before it routes them. Caddy's matchers see one
// path and the gateway acts on another, so a capability URL is served only by
// a guard that opts in (capability_urls) and only when no other guard for the
// same gateway on the same server decides by different rules: then the
// rewrite cannot move a request from one rule set to another. The <token>
// segment is a bearer capability: clawgate's log records it redacted, and
// Caddy's access and error logs, which encode a copy of the request taken
// before any handler runs, need the log filter capabilityLogFilter names.

// capabilityPrefix is the canonical prefix of a capability URL.
const capabilityPrefix = "/__openclaw__/cap/"

// redactedCapability replaces the token in logged capability paths.
const redactedCapability = "REDACTED"

// isCapabilityPath reports whether OpenClaw would treat the path as a
// capability URL, /__openclaw__/cap/<cap>/<rest>, which it rewrites to /<rest>
// before routing: Caddy's route matchers would see one path and the gateway act
// on another.
func isCapabilityPath(p string) bool {
	if !containsFold(p, "__openclaw__") {
		return false
	}
	p = strings.ToLower(path.Clean("/" + strings.ReplaceAll(p, "\\", "/")))
	return p == "/__openclaw__/cap" || strings.HasPrefix(p, "/__openclaw__/cap/")
}

// redactCapabilityPath returns the capability path p (escaped, as sent) with
// its token replaced. The part after the token is kept only when p is spelled
// plainly; any other spelling (escapes, backslashes, dot or empty segments)
// could move part of the token past the first slash, so the log then shows
// the prefix alone.
func redactCapabilityPath(p string) string {
	plain := !strings.ContainsAny(p, "%\\") && !strings.Contains(p, "//") && !strings.Contains(p, "/.") &&
		len(p) >= len(capabilityPrefix) && strings.EqualFold(p[:len(capabilityPrefix)], capabilityPrefix)
	if !plain {
		return capabilityPrefix + redactedCapability
	}
	rest := p[len(capabilityPrefix):]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return capabilityPrefix + redactedCapability + rest[i:]
	}
	return capabilityPrefix + redactedCapability
}

// logPath is the request's path as clawgate logs it: a capability token is
// never written.
func logPath(r *http.Request) string {
	if isCapabilityPath(r.URL.Path) {
		return redactCapabilityPath(r.URL.EscapedPath())
	}
	return r.URL.Path
}

// capabilityURIPattern matches a request URI or Referer that names an
// OpenClaw path or the oc_cap query parameter in any spelling (any case, any
// letter percent-encoded in either case), for Caddy's `regexp` log filter: the whole value
// is replaced, so no spelling of a capability URL leaves part of its token in
// a log.
const capabilityURIPattern = `(?i)^.*((o|%6f|%4f)(p|%70|%50)(e|%65|%45)(n|%6e|%4e)(c|%63|%43)(l|%6c|%4c)(a|%61|%41)(w|%77|%57)|(o|%6f|%4f)(c|%63|%43)(_|%5f)(c|%63|%43)(a|%61|%41)(p|%70|%50)).*$`

// capabilityQueryParam is the query parameter OpenClaw also accepts a
// capability token in, on any path a capability authorizes (no rewrite).
const capabilityQueryParam = "oc_cap"

// hasCapabilityQuery reports whether a raw query string names OpenClaw's
// oc_cap parameter in any spelling: any case, percent-encoded (even
// repeatedly), among parameters separated by '&' or ';'. OpenClaw reads the
// name decoded once and case-sensitively; matching more refuses more.
func hasCapabilityQuery(rawQuery string) bool {
	for rawQuery != "" {
		var part string
		if i := strings.IndexAny(rawQuery, "&;"); i >= 0 {
			part, rawQuery = rawQuery[:i], rawQuery[i+1:]
		} else {
			part, rawQuery = rawQuery, ""
		}
		name, _, _ := strings.Cut(part, "=")
		for range 3 {
			if !strings.ContainsAny(name, "%+") {
				break
			}
			name = unescapeQueryName(name)
		}
		if strings.EqualFold(strings.TrimSpace(name), capabilityQueryParam) {
			return true
		}
	}
	return false
}

// unescapeQueryName decodes '+' and valid %XX escapes and keeps invalid
// escapes as they are, as browsers' and Node's URLSearchParams do.
func unescapeQueryName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]):
			b.WriteByte(hexValue(s[i+1])<<4 | hexValue(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexValue(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// capabilityGuard is what the load-time check knows of one guard.
type capabilityGuard struct {
	gateway, upstream string
	rules             []string
	on                bool
}

// capabilityGuards holds, per server being loaded, the guards provisioned so
// far. A config load adds its guards and removes them when it
// is cancelled (after caddy validate, or when the config is replaced).
var capabilityGuards = struct {
	sync.Mutex
	m map[*caddyhttp.Server][]capabilityGuard
}{m: map[*caddyhttp.Server][]capabilityGuard{}}

// registerCapabilityGuard records a guard of srv and refuses the config when
// capability URLs are on for a guard while another guard of the same server
// for the same gateway (by name or by upstream address) has different rules:
// OpenClaw would serve /__openclaw__/cap/<token>/<path> as /<path>, past the
// route that chose the other rules.
func registerCapabilityGuard(srv *caddyhttp.Server, srvName string, g capabilityGuard) error {
	capabilityGuards.Lock()
	defer capabilityGuards.Unlock()
	for _, o := range capabilityGuards.m[srv] {
		if (g.on || o.on) && (o.gateway == g.gateway || o.upstream == g.upstream) && !slices.Equal(o.rules, g.rules) {
			return fmt.Errorf("clawgate.capability_urls: server %s has clawgate guards with different rules for gateway %q (upstream %s); "+
				"OpenClaw serves /__openclaw__/cap/<token>/<path> as /<path>, past the route that chose a guard's rules; "+
				"use one guard for the whole site (or the same rules in every guard of this gateway) or remove capability_urls", srvName, g.gateway, g.upstream)
		}
	}
	g.rules = slices.Clone(g.rules)
	capabilityGuards.m[srv] = append(capabilityGuards.m[srv], g)
	return nil
}

// forgetCapabilityGuards drops what a config load recorded for srv.
func forgetCapabilityGuards(srv *caddyhttp.Server) {
	capabilityGuards.Lock()
	defer capabilityGuards.Unlock()
	delete(capabilityGuards.m, srv)
}

// pathIndependentMatchers are the request matchers that cannot tell a
// capability URL from the path OpenClaw serves it as: they read neither the
// path nor the query. A route with any other matcher (path, path_regexp,
// not, expression, query, file, vars, …) decides by something the rewrite
// changes.
var pathIndependentMatchers = map[string]bool{
	"host": true, "protocol": true, "remote_ip": true, "client_ip": true,
	"method": true, "header": true, "header_regexp": true, "tls": true,
}

// pathHarmlessHandlers change a response or the request's variables but
// neither answer nor route it, so a path matcher on them restricts nothing.
var pathHarmlessHandlers = map[string]bool{"headers": true, "encode": true, "vars": true, "log_append": true}

// capabilityBypass returns, for a server with a capability_urls guard, a
// description of its first route that decides by path (or query) and serves
// or refuses requests without a clawgate guard deciding first: OpenClaw
// would serve /__openclaw__/cap/<token>/<path> as /<path>, and that route's
// matcher never sees <path>. It returns "" when there is none. Routes that
// are themselves guards are judged by registerCapabilityGuard. The whole
// server is walked, loaded and raw parts alike, because routes after the
// guard being provisioned are still raw JSON.
func capabilityBypass(srv *caddyhttp.Server) string {
	if d := bypassIn(routeViews(srv.Routes)); d != "" {
		return d
	}
	names := slices.Sorted(maps.Keys(srv.NamedRoutes))
	for _, name := range names {
		if r := srv.NamedRoutes[name]; r != nil {
			if d := bypassIn(routeViews(caddyhttp.RouteList{*r})); d != "" {
				return d
			}
		}
	}
	return ""
}

// routeView is what the walk needs of a route, loaded or still raw.
type routeView struct {
	matchers []string // one "name value" per matcher, in order
	names    []string // matcher module names
	handlers []handlerView
}

// handlerView is a handler's module name and, for a subroute, its routes.
type handlerView struct {
	name   string
	routes []routeView
}

// bypassIn describes the first route of routes, or of the subroutes under
// routes that match by host and the like alone, that decides by path
// without a guard deciding first; "" when there is none.
func bypassIn(routes []routeView) string {
	for _, r := range routes {
		pathDependent := false
		for _, n := range r.names {
			if !pathIndependentMatchers[n] {
				pathDependent = true
			}
		}
		if !pathDependent {
			for _, h := range r.handlers {
				if d := bypassIn(h.routes); d != "" {
					return d
				}
			}
			continue
		}
		for _, n := range flatHandlers(r.handlers) {
			if pathHarmlessHandlers[n] {
				continue
			}
			if n == "clawgate" {
				break
			}
			return fmt.Sprintf("a route matching %s runs the %s handler without a clawgate guard deciding first",
				strings.Join(r.matchers, " and "), n)
		}
	}
	return ""
}

// flatHandlers lists the module names of handlers in the order they run,
// the handlers of nested subroutes in place of the subroute.
func flatHandlers(hs []handlerView) []string {
	var out []string
	for _, h := range hs {
		if h.name != "subroute" {
			out = append(out, h.name)
			continue
		}
		for _, r := range h.routes {
			out = append(out, flatHandlers(r.handlers)...)
		}
	}
	return out
}

// routeViews describes routes whose matchers and handlers may be loaded
// modules or still raw JSON.
func routeViews(routes caddyhttp.RouteList) []routeView {
	out := make([]routeView, 0, len(routes))
	for _, r := range routes {
		var v routeView
		if r.MatcherSetsRaw != nil {
			for _, set := range r.MatcherSetsRaw {
				v.addRaw(set)
			}
		} else {
			for _, set := range r.MatcherSets {
				for _, m := range set {
					name := moduleName(m)
					v.names = append(v.names, name)
					b, _ := json.Marshal(m)
					v.matchers = append(v.matchers, name+" "+string(b))
				}
			}
		}
		if r.HandlersRaw != nil {
			v.handlers = rawHandlerViews(r.HandlersRaw)
		} else {
			for _, h := range r.Handlers {
				hv := handlerView{name: moduleName(h)}
				if sr, ok := h.(*caddyhttp.Subroute); ok {
					hv.routes = routeViews(sr.Routes)
				}
				v.handlers = append(v.handlers, hv)
			}
		}
		out = append(out, v)
	}
	return out
}

// addRaw adds a raw matcher set, in the order of its names.
func (v *routeView) addRaw(set map[string]json.RawMessage) {
	for _, name := range slices.Sorted(maps.Keys(set)) {
		v.names = append(v.names, name)
		v.matchers = append(v.matchers, name+" "+compactJSON(set[name]))
	}
}

// rawHandlerViews describes handlers that are still raw JSON.
func rawHandlerViews(raw []json.RawMessage) []handlerView {
	out := make([]handlerView, 0, len(raw))
	for _, h := range raw {
		var m struct {
			Handler string `json:"handler"`
			Routes  []struct {
				Match  []map[string]json.RawMessage `json:"match"`
				Handle []json.RawMessage            `json:"handle"`
			} `json:"routes"`
		}
		if err := json.Unmarshal(h, &m); err != nil {
			// Caddy refuses such a handler itself; a name no list knows
			// keeps the walk failing closed meanwhile.
			m.Handler = "unreadable"
		}
		hv := handlerView{name: m.Handler}
		for _, r := range m.Routes {
			var rv routeView
			for _, set := range r.Match {
				rv.addRaw(set)
			}
			rv.handlers = rawHandlerViews(r.Handle)
			hv.routes = append(hv.routes, rv)
		}
		out = append(out, hv)
	}
	return out
}

// moduleName is a module's name (the last part of its ID), or "unknown".
func moduleName(v any) string {
	if m, ok := v.(caddy.Module); ok {
		return m.CaddyModule().ID.Name()
	}
	return "unknown"
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
