package caddymodule

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// checkShortcutPlacement refuses a guard whose own route also proxies (what
// the Caddyfile's `clawgate <upstream>` shortcut makes) when a later route
// of the same list has handlers of its own.
//
// A Caddyfile directive puts all its handlers at one place in Caddy's
// directive order, and `clawgate` is ordered ahead of every standard handler
// directive so the guard runs first. The shortcut's proxy therefore answers
// before any `respond`, `handle`, `reverse_proxy`, `file_server`, … written
// next to it in the same block, which never run: `respond /admin* 403` above
// the shortcut would silently let /admin through to the gateway. Matchers
// cannot tell whether the two overlap in general (expressions, regular
// expressions, remote IPs), so any later handler is refused, with the fix,
// unless both routes are confined to path patterns no request path matches
// at once (`clawgate /api/* …` next to `reverse_proxy /telegram-webhook …`).
// Later routes that are themselves clawgate guards are left alone: routes of
// one directive keep the order a user expects (most specific path first).
//
// It runs in Provision, so `caddy validate` refuses what `caddy run` does. It
// finds the route list from the modules being provisioned: the enclosing
// subroute (a site block, a handle or route block) or the server; the route
// being provisioned is the first one whose handlers are still raw JSON.
func checkShortcutPlacement(ctx caddy.Context) error {
	mods := ctx.Modules()
	if len(mods) < 2 {
		return nil
	}
	var lists []caddyhttp.RouteList
	switch p := mods[len(mods)-2].(type) {
	case *caddyhttp.Subroute:
		lists = append(lists, p.Routes)
		if p.Errors != nil {
			lists = append(lists, p.Errors.Routes)
		}
	case *caddyhttp.App:
		srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
		if srv == nil {
			return nil
		}
		lists = append(lists, srv.Routes)
		if srv.Errors != nil {
			lists = append(lists, srv.Errors.Routes)
		}
	default:
		// Routes embedded in other modules (reverse_proxy's handle_response,
		// intercept, named routes) are not a block a user writes the
		// shortcut into.
		return nil
	}
	for _, routes := range lists {
		i := provisioningRoute(routes)
		if i < 0 {
			continue
		}
		names := rawHandlerNames(routes[i].HandlersRaw)
		proxy := proxyAfterGuard(names)
		if proxy < 0 {
			return nil
		}
		// The Caddyfile merges consecutive routes without matchers into
		// one, so a shadowed handler may follow the proxy in its own route.
		shadowed := laterHandlers(routes[i].HandlersRaw[proxy+1:], names[proxy+1:])
		for j := i + 1; j < len(routes) && len(shadowed) == 0; j++ {
			if pathsDisjoint(routes[i].MatcherSets, routes[j].MatcherSets) {
				continue
			}
			shadowed = laterHandlers(routes[j].HandlersRaw, rawHandlerNames(routes[j].HandlersRaw))
		}
		if len(shadowed) == 0 {
			return nil
		}
		return fmt.Errorf("the shortcut `clawgate <upstream>` proxies to the gateway at the guard's own place in Caddy's directive order, "+
			"ahead of %s in the same block, which would never run; write the guard alone (`clawgate { upstream <gateway address> … }`) "+
			"followed by your own `reverse_proxy <gateway address>`, or put the shortcut in its own `handle` block",
			describeHandlers(shadowed))
	}
	return nil
}

// provisioningRoute returns the index of the route whose handlers are being
// provisioned (routes are provisioned in order, and a route's raw handlers
// are dropped once loaded), or -1.
func provisioningRoute(routes caddyhttp.RouteList) int {
	for i := range routes {
		if routes[i].HandlersRaw != nil {
			return i
		}
	}
	return -1
}

// proxyAfterGuard returns the index of the reverse proxy that follows the
// guard in a route's handlers, or -1 when none does.
func proxyAfterGuard(names []string) int {
	guard := false
	for i, n := range names {
		switch {
		case n == "clawgate":
			guard = true
		case guard && n == "reverse_proxy":
			return i
		}
	}
	return -1
}

// laterHandlers returns the handlers that another shortcut or guard did not
// put there: those of the `clawgate` directive itself keep the order its
// routes have among themselves.
func laterHandlers(raw []json.RawMessage, names []string) []json.RawMessage {
	var out []json.RawMessage
	for k := 0; k < len(raw) && k < len(names); k++ {
		if names[k] == "clawgate" {
			if k+1 < len(names) && names[k+1] == "reverse_proxy" {
				k++
			}
			continue
		}
		out = append(out, raw[k])
	}
	return out
}

// rawHandlerNames returns the module name of each raw handler.
func rawHandlerNames(raw []json.RawMessage) []string {
	names := make([]string, 0, len(raw))
	for _, h := range raw {
		var m struct {
			Handler string `json:"handler"`
		}
		if json.Unmarshal(h, &m) == nil {
			names = append(names, m.Handler)
		}
	}
	return names
}

// describeHandlers names a route's handlers as the Caddyfile directives that
// make them.
func describeHandlers(raw []json.RawMessage) string {
	var out []string
	for _, h := range raw {
		var m struct {
			Handler string `json:"handler"`
			Abort   bool   `json:"abort"`
		}
		if json.Unmarshal(h, &m) != nil {
			continue
		}
		d, ok := handlerDirectives[m.Handler]
		switch {
		case m.Handler == "static_response" && m.Abort:
			d = "`abort`"
		case !ok:
			d = fmt.Sprintf("the %s handler", m.Handler)
		}
		if len(out) == 0 || out[len(out)-1] != d {
			out = append(out, d)
		}
	}
	return strings.Join(out, " and ")
}

// handlerDirectives maps handler module names to the Caddyfile directives that
// a user writes for them, for the handlers ordered after `clawgate`.
var handlerDirectives = map[string]string{
	"static_response":  "`respond`",
	"error":            "`error`",
	"subroute":         "a `handle`, `handle_path` or `route` block",
	"headers":          "`request_header`",
	"encode":           "`encode`",
	"templates":        "`templates`",
	"push":             "`push`",
	"intercept":        "`intercept`",
	"invoke":           "`invoke`",
	"copy_response":    "`copy_response`",
	"metrics":          "`metrics`",
	"reverse_proxy":    "`reverse_proxy` (or `forward_auth`, `php_fastcgi`)",
	"file_server":      "`file_server`",
	"acme_server":      "`acme_server`",
	"clawgate_senders": "`clawgate_senders`",
}

// pathsDisjoint reports whether no request can match both matcher sets
// because their path matchers never match the same path. Each set of a and
// each of b must hold a path matcher, and every pattern pair must be plain:
// an exact path or a prefix ending in a single "*", of characters that
// Caddy's path matcher neither unescapes nor treats specially, so both see
// the same cleaned, lowercased path.
func pathsDisjoint(a, b caddyhttp.MatcherSets) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	for _, sa := range a {
		pa, ok := setPaths(sa)
		if !ok {
			return false
		}
		for _, sb := range b {
			pb, ok := setPaths(sb)
			if !ok {
				return false
			}
			for _, x := range pa {
				for _, y := range pb {
					if !patternsDisjoint(x, y) {
						return false
					}
				}
			}
		}
	}
	return true
}

// setPaths returns the path patterns of a matcher set's path matcher.
func setPaths(set caddyhttp.MatcherSet) ([]string, bool) {
	for _, m := range set {
		switch mp := m.(type) {
		case *caddyhttp.MatchPath: // as provisioned
			if mp != nil && len(*mp) > 0 {
				return *mp, true
			}
		case caddyhttp.MatchPath:
			if len(mp) > 0 {
				return mp, true
			}
		}
	}
	return nil, false
}

// patternsDisjoint reports whether two plain path patterns match no path in
// common; it answers false for any pattern it does not read as plain.
func patternsDisjoint(x, y string) bool {
	xp, xPrefix, ok := plainPattern(x)
	if !ok {
		return false
	}
	yp, yPrefix, ok := plainPattern(y)
	if !ok {
		return false
	}
	switch {
	case xPrefix && yPrefix:
		return !strings.HasPrefix(xp, yp) && !strings.HasPrefix(yp, xp)
	case xPrefix:
		return !strings.HasPrefix(yp, xp)
	case yPrefix:
		return !strings.HasPrefix(xp, yp)
	}
	return xp != yp
}

func plainPattern(p string) (string, bool, bool) {
	p = strings.ToLower(p)
	prefix := strings.HasSuffix(p, "*")
	p = strings.TrimSuffix(p, "*")
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") || strings.Contains(p, "/.") {
		return "", false, false
	}
	for _, c := range []byte(p) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '/' || c == '-' || c == '_' || c == '.') {
			return "", false, false
		}
	}
	return p, prefix, true
}
