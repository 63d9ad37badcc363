package caddymodule

import (
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"

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
// OpenClaw path in any spelling (any case, any letter percent-encoded), for
// Caddy's `regexp` log filter: the whole value is replaced, so no spelling of
// a capability URL leaves part of its token in a log.
const capabilityURIPattern = `(?i)^.*(o|%6f)(p|%70)(e|%65)(n|%6e)(c|%63)(l|%6c)(a|%61)(w|%77).*$`

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
