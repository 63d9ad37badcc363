package caddymodule

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("clawgate", parseAppOption)
	httpcaddyfile.RegisterDirective("clawgate", parseClawgateDirective)
	// The guard must run before anything that answers or proxies a request, so it
	// orders itself ahead of every standard handler directive.
	httpcaddyfile.RegisterDirectiveOrder("clawgate", httpcaddyfile.Before, "basic_auth")
}

// parseAppOption parses the `clawgate` global option into the clawgate app:
//
//	clawgate {
//	    node <name> {
//	        hostname <hostname>
//	        state_dir <dir>
//	        auth_key {env.TS_AUTHKEY}
//	        auth_key_file <path>
//	        control_url <url>
//	        ephemeral
//	        tags <tag:...>...
//	        port <udp port>
//	    }
//	    gateway <name> {
//	        config <path/to/openclaw.json>
//	        state_dir <dir>
//	        upstream 127.0.0.1:18789
//	        block_on critical|warn|info|never
//	        expect <checkId>...
//	        origins https://<node>.<tailnet>.ts.net...
//	    }
//	}
func parseAppOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app, _ := existing.(*App)
	if app == nil {
		app = new(App)
	}
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "node":
			var name string
			if err := oneArg(d, &name); err != nil {
				return nil, err
			}
			if _, dup := app.Nodes[name]; dup {
				return nil, d.Errf("node %q is configured twice", name)
			}
			nc, err := unmarshalNode(d)
			if err != nil {
				return nil, err
			}
			if app.Nodes == nil {
				app.Nodes = make(map[string]*NodeConfig)
			}
			app.Nodes[name] = nc
		case "gateway":
			var name string
			if err := oneArg(d, &name); err != nil {
				return nil, err
			}
			if _, dup := app.Gateways[name]; dup {
				return nil, d.Errf("gateway %q is configured twice", name)
			}
			gc, err := unmarshalGateway(d)
			if err != nil {
				return nil, err
			}
			if app.Gateways == nil {
				app.Gateways = make(map[string]*GatewayConfig)
			}
			app.Gateways[name] = gc
		default:
			return nil, d.Errf("unrecognized clawgate option %q", d.Val())
		}
	}
	return httpcaddyfile.App{Name: appID, Value: caddyconfig.JSON(app, nil)}, nil
}

func unmarshalGateway(d *caddyfile.Dispenser) (*GatewayConfig, error) {
	gc := new(GatewayConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "config":
			err = oneArg(d, &gc.Config)
		case "state_dir":
			err = oneArg(d, &gc.StateDir)
		case "upstream":
			err = oneArg(d, &gc.Upstream)
		case "block_on":
			err = oneArg(d, &gc.BlockOn)
		case "expect":
			ids := splitList(d.RemainingArgs())
			if len(ids) == 0 {
				err = d.ArgErr()
			}
			gc.Expect = append(gc.Expect, ids...)
		case "origins":
			origins := splitList(d.RemainingArgs())
			if len(origins) == 0 {
				err = d.ArgErr()
			}
			gc.Origins = append(gc.Origins, origins...)
		case "pairing":
			gc.Pairing, err = unmarshalPairing(d)
		default:
			err = d.Errf("unrecognized gateway subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return gc, nil
}

func unmarshalNode(d *caddyfile.Dispenser) (*NodeConfig, error) {
	nc := new(NodeConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "hostname":
			err = oneArg(d, &nc.Hostname)
		case "state_dir":
			err = oneArg(d, &nc.StateDir)
		case "auth_key":
			err = oneArg(d, &nc.AuthKey)
		case "auth_key_file":
			err = oneArg(d, &nc.AuthKeyFile)
		case "control_url":
			err = oneArg(d, &nc.ControlURL)
		case "ephemeral":
			if d.NextArg() {
				err = d.ArgErr()
			}
			nc.Ephemeral = true
		case "tags":
			nc.Tags = splitList(d.RemainingArgs())
			if len(nc.Tags) == 0 {
				err = d.ArgErr()
			}
		case "port":
			var s string
			if err = oneArg(d, &s); err == nil {
				var p uint64
				p, err = strconv.ParseUint(s, 10, 16)
				if err != nil {
					err = d.Errf("port: want a UDP port number, got %q", s)
				}
				nc.Port = uint16(p)
			}
		default:
			err = d.Errf("unrecognized node subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return nc, nil
}

// parseClawgateDirective parses the `clawgate` directive:
//
//	clawgate [<matcher>] [<upstream>] {
//	    gateway <name>
//	    upstream <127.0.0.1:18789>        # guard-only form: follow with your own reverse_proxy
//	    allow_remote_upstream
//	    user_header <name>
//	    token <name> {
//	        env <VAR> | file <path> | sha256 <hex>
//	        user <identity>
//	        scopes <scope>...
//	        expires <RFC 3339 time>
//	    }
//	    jwt {
//	        algorithms <alg>...
//	        hmac_secret_env <VAR>
//	        hmac_secret_file <path>
//	        public_key_file <path>...
//	        jwks_file <path>
//	        issuer <iss>
//	        audience <aud>...
//	        leeway <duration>
//	        user_claim <claim>
//	        scope_claim <claim>
//	        max_length <bytes>
//	    }
//	    allow <cond>... [scopes <s>,<s>...]
//	    deny <cond>...
//	    max_body <size>                 # default 32MiB
//	    body_timeout <duration>         # default 60s
//	    gateway_token {
//	        env <VAR> | file <path>
//	    }
//	    rate_limit {
//	        failures <n>
//	        window <duration>
//	        lockout <duration>
//	        max_clients <n>
//	    }
//	}
//
// With an upstream argument it is a shortcut that expands, like forward_auth, into
// the guard followed by Caddy's reverse_proxy to that upstream, configured to send
// the identity headers the guard decided after the proxy's own hop-by-hop header
// removal (so a client's Connection header cannot delete them). Without one, it is
// the guard alone, and the `upstream` subdirective names the gateway the following
// reverse_proxy reaches.
func parseClawgateDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	h.Next() // directive name
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	h.Dispenser.Reset()

	guard := new(Handler)
	shortcut, err := guard.unmarshal(h.Dispenser)
	if err != nil {
		return nil, err
	}
	if !shortcut {
		return h.NewRoute(matcherSet, guard), nil
	}

	userHeader := guard.UserHeader
	if userHeader == "" {
		userHeader = "x-forwarded-user"
	}
	proxy := &reverseproxy.Handler{
		Upstreams: reverseproxy.UpstreamPool{{Dial: upstreamDial(guard.Upstream)}},
		Headers: &headers.Handler{Request: &headers.HeaderOps{Set: http.Header{
			"X-Forwarded-For":                     {"{clawgate.client_ip}"},
			"X-Forwarded-Proto":                   {"{clawgate.proto}"},
			"X-Forwarded-Host":                    {"{clawgate.host}"},
			http.CanonicalHeaderKey(userHeader):   {"{clawgate.user}"},
			http.CanonicalHeaderKey(scopesHeader): {"{clawgate.scopes}"},
		}}},
	}
	route := caddyhttp.Route{HandlersRaw: []json.RawMessage{
		caddyconfig.JSONModuleObject(guard, "handler", "clawgate", nil),
		caddyconfig.JSONModuleObject(proxy, "handler", "reverse_proxy", nil),
	}}
	return h.NewRoute(matcherSet, &caddyhttp.Subroute{Routes: caddyhttp.RouteList{route}}), nil
}

const scopesHeader = "x-openclaw-scopes"

// upstreamDial turns the guard's upstream into reverse_proxy's dial address.
func upstreamDial(s string) string {
	s = strings.TrimPrefix(s, "http://")
	return strings.TrimSuffix(s, "/")
}

// UnmarshalCaddyfile sets up the guard alone from Caddyfile tokens; the shortcut
// form with an upstream argument is handled by the directive.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	shortcut, err := h.unmarshal(d)
	if err != nil {
		return err
	}
	if shortcut {
		return d.Err("the upstream argument is only valid for the clawgate directive; use the upstream subdirective")
	}
	return nil
}

// unmarshal reads the directive and reports whether it had an upstream argument.
func (h *Handler) unmarshal(d *caddyfile.Dispenser) (bool, error) {
	d.Next() // directive name
	shortcut := false
	if d.NextArg() {
		h.Upstream = d.Val()
		shortcut = true
	}
	if d.NextArg() {
		return false, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "gateway":
			if err := oneArg(d, &h.Gateway); err != nil {
				return false, err
			}
		case "upstream":
			if shortcut {
				return false, d.Err("upstream given twice: as the directive's argument and as a subdirective")
			}
			if err := oneArg(d, &h.Upstream); err != nil {
				return false, err
			}
		case "allow_remote_upstream":
			if d.NextArg() {
				return false, d.ArgErr()
			}
			h.AllowRemoteUpstream = true
		case "user_header":
			if err := oneArg(d, &h.UserHeader); err != nil {
				return false, err
			}
		case "token":
			tc, err := unmarshalToken(d)
			if err != nil {
				return false, err
			}
			h.Tokens = append(h.Tokens, tc)
		case "jwt":
			if h.JWT != nil {
				return false, d.Err("only one jwt block is allowed")
			}
			jc, err := unmarshalJWT(d)
			if err != nil {
				return false, err
			}
			h.JWT = jc
		case "allow", "deny":
			rule := append([]string{d.Val()}, d.RemainingArgs()...)
			h.Rules = append(h.Rules, strings.Join(rule, " "))
		case "max_body":
			var v string
			if err := oneArg(d, &v); err != nil {
				return false, err
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 {
				return false, d.Errf("max_body: want a size such as 2MiB, got %q", v)
			}
			h.MaxBody = int64(n)
		case "body_timeout":
			var v string
			if err := oneArg(d, &v); err != nil {
				return false, err
			}
			if err := parseDuration(d, v, &h.BodyTimeout); err != nil {
				return false, err
			}
		case "gateway_token":
			src, err := unmarshalSecretSource(d)
			if err != nil {
				return false, err
			}
			h.GatewayToken = src
		case "rate_limit":
			rl, err := unmarshalRateLimit(d)
			if err != nil {
				return false, err
			}
			h.RateLimit = rl
		default:
			return false, d.Errf("unrecognized clawgate subdirective %q", d.Val())
		}
	}
	return shortcut, nil
}

func unmarshalToken(d *caddyfile.Dispenser) (TokenConfig, error) {
	var tc TokenConfig
	if err := oneArg(d, &tc.Name); err != nil {
		return tc, err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "env":
			err = oneArg(d, &tc.Env)
		case "file":
			err = oneArg(d, &tc.File)
		case "sha256":
			err = oneArg(d, &tc.SHA256)
		case "user":
			err = oneArg(d, &tc.User)
		case "scopes":
			tc.Scopes = splitList(d.RemainingArgs())
			if len(tc.Scopes) == 0 {
				err = d.ArgErr()
			}
		case "expires":
			err = oneArg(d, &tc.Expires)
		default:
			err = d.Errf("unrecognized token subdirective %q", d.Val())
		}
		if err != nil {
			return tc, err
		}
	}
	return tc, nil
}

func unmarshalJWT(d *caddyfile.Dispenser) (*JWTConfig, error) {
	jc := new(JWTConfig)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "algorithms":
			jc.Algorithms = splitList(d.RemainingArgs())
			if len(jc.Algorithms) == 0 {
				err = d.ArgErr()
			}
		case "hmac_secret_env":
			err = oneArg(d, &jc.HMACSecretEnv)
		case "hmac_secret_file":
			err = oneArg(d, &jc.HMACSecretFile)
		case "public_key_file":
			files := d.RemainingArgs()
			if len(files) == 0 {
				err = d.ArgErr()
			}
			jc.PublicKeyFiles = append(jc.PublicKeyFiles, files...)
		case "jwks_file":
			err = oneArg(d, &jc.JWKSFile)
		case "issuer":
			err = oneArg(d, &jc.Issuer)
		case "audience":
			jc.Audience = splitList(d.RemainingArgs())
			if len(jc.Audience) == 0 {
				err = d.ArgErr()
			}
		case "leeway":
			var s string
			if err = oneArg(d, &s); err == nil {
				err = parseDuration(d, s, &jc.Leeway)
			}
		case "user_claim":
			err = oneArg(d, &jc.UserClaim)
		case "scope_claim":
			err = oneArg(d, &jc.ScopeClaim)
		case "max_length":
			err = intArg(d, &jc.MaxLength)
		default:
			err = d.Errf("unrecognized jwt subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return jc, nil
}

func unmarshalSecretSource(d *caddyfile.Dispenser) (*SecretSource, error) {
	src := new(SecretSource)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "env":
			err = oneArg(d, &src.Env)
		case "file":
			err = oneArg(d, &src.File)
		default:
			err = d.Errf("unrecognized %s subdirective %q; want env or file", "gateway_token", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return src, nil
}

func unmarshalRateLimit(d *caddyfile.Dispenser) (*RateLimitConfig, error) {
	rl := new(RateLimitConfig)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		var s string
		switch d.Val() {
		case "failures":
			err = intArg(d, &rl.Failures)
		case "window":
			if err = oneArg(d, &s); err == nil {
				err = parseDuration(d, s, &rl.Window)
			}
		case "lockout":
			if err = oneArg(d, &s); err == nil {
				err = parseDuration(d, s, &rl.Lockout)
			}
		case "max_clients":
			err = intArg(d, &rl.MaxClients)
		default:
			err = d.Errf("unrecognized rate_limit subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return rl, nil
}

// oneArg reads exactly one argument into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func intArg(d *caddyfile.Dispenser, dst *int) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return d.Errf("%s: want a positive integer, got %q", d.Val(), s)
	}
	*dst = n
	return nil
}

func parseDuration(d *caddyfile.Dispenser, s string, dst *caddy.Duration) error {
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("bad duration %q: %v", s, err)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// splitList accepts both `a b c` and `a,b,c`.
func splitList(args []string) []string {
	var out []string
	for _, a := range args {
		for _, p := range strings.Split(a, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
