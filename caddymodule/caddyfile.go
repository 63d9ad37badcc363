package caddymodule

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("clawgate", parseAppOption)
	httpcaddyfile.RegisterDirective("clawgate", parseClawgateDirective)
	httpcaddyfile.RegisterHandlerDirective("clawgate_senders", parseSendersDirective)
	// The guard must run before anything that answers or proxies a request, so it
	// orders itself ahead of every standard handler directive.
	httpcaddyfile.RegisterDirectiveOrder("clawgate", httpcaddyfile.Before, "basic_auth")
	// Also ahead of every standard handler, so no handle, route or respond
	// block can reach the gateway before a webhook payload is judged;
	// registered second, it lands right after `clawgate`.
	httpcaddyfile.RegisterDirectiveOrder("clawgate_senders", httpcaddyfile.Before, "basic_auth")
}

// parseAppOption parses the `clawgate` global option into the clawgate app:
//
//	clawgate {
//	    node <name> {
//	        hostname <hostname>
//	        state_dir <dir>
//	        auth_key {env.TS_AUTHKEY} | {file./path}
//	        auth_key_file <path>          # older form of auth_key {file./path}
//	        control_url <url>
//	        ephemeral
//	        tags <tag:...>...
//	        port <udp port>
//	        front_doors tag:<tag>|node:<name>...
//	    }
//	    gateway <name> {
//	        config <path/to/openclaw.json>
//	        state_dir <dir>
//	        upstream 127.0.0.1:18789
//	        block_on critical|warn|info|never
//	        expect <checkId>...
//	        origins https://<node>.<tailnet>.ts.net...
//	        openclaw_version 2026.9.6
//	        openclaw_package /usr/lib/node_modules/openclaw
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
		case "openclaw_version":
			err = oneArg(d, &gc.OpenClawVersion)
		case "openclaw_package":
			err = oneArg(d, &gc.OpenClawPackage)
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
		case "front_doors":
			nc.FrontDoors = append(nc.FrontDoors, splitList(d.RemainingArgs())...)
			if len(nc.FrontDoors) == 0 {
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
//	    capability_urls                   # serve /__openclaw__/cap/... (canvas, plugin surfaces)
//	    user_header <name>
//	    token <name> {
//	        secret {env.VAR} | {file./path}
//	        sha256 <hex>                  # instead of secret
//	        env <VAR> | file <path>       # older forms of secret
//	        user <identity>
//	        scopes <scope>...
//	        expires <RFC 3339 time>
//	    }
//	    jwt {
//	        algorithms <alg>...
//	        hmac_secret {env.VAR} | {file./path}
//	        hmac_secret_env <VAR>         # older forms of hmac_secret
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
//	    gateway_token {env.VAR} | {file./path}
//	    gateway_token {                   # older form
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
// the guard followed by Caddy's reverse_proxy to that upstream through the clawgate
// transport, which sets the identity headers the guard decided on the outgoing
// request after everything the proxy does (so neither a client's Connection
// header nor the proxy's own X-Forwarded-* handling can change them). Without one, it is
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

	proxy := &reverseproxy.Handler{
		Upstreams:    reverseproxy.UpstreamPool{{Dial: upstreamDial(guard.Upstream)}},
		TransportRaw: caddyconfig.JSONModuleObject(new(Transport), "protocol", "clawgate", nil),
	}
	// One route holding both handlers, not a subroute: Caddy compiles a
	// subroute's handler chain again on every request.
	route := caddyhttp.Route{HandlersRaw: []json.RawMessage{
		caddyconfig.JSONModuleObject(guard, "handler", "clawgate", nil),
		caddyconfig.JSONModuleObject(proxy, "handler", "reverse_proxy", nil),
	}}
	if matcherSet != nil {
		route.MatcherSetsRaw = []caddy.ModuleMap{matcherSet}
	}
	return []httpcaddyfile.ConfigValue{{Class: "route", Value: route}}, nil
}

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
		case "capability_urls":
			if d.NextArg() {
				return false, d.ArgErr()
			}
			h.CapabilityURLs = true
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
		case "secret":
			err = oneArg(d, &tc.Secret)
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
		case "hmac_secret":
			err = oneArg(d, &jc.HMACSecret)
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

// unmarshalSecretSource reads `gateway_token {env.VAR}` (or {file./path}),
// or the older block form `gateway_token { env <VAR> | file <path> }`.
func unmarshalSecretSource(d *caddyfile.Dispenser) (*SecretSource, error) {
	src := new(SecretSource)
	if d.NextArg() {
		src.Placeholder = d.Val()
		if d.NextArg() || d.NextBlock(d.Nesting()) {
			return nil, d.Err("gateway_token takes one placeholder, {env.VAR} or {file./path}, or the older block form, not both")
		}
		return src, nil
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

// parseSendersDirective parses the `clawgate_senders` directive:
//
//	clawgate_senders [<matcher>] <provider> {
//	    allow <id>...
//	    group_allow <chat id>...                       # telegram
//	    allow_from_gateway_config <gateway> [<channel>]
//	    account <id>                                   # with allow_from_gateway_config
//	    gateway <gateway>                              # its audit gate only
//	    secret {env.VAR} | {file./path}
//	    secret_file <path>                             # older form of secret {file./path}
//	    on_reject ack|reject
//	    max_body <size>                                # e.g. 1MiB
//	    max_skew <duration>                            # slack
//	    sender_paths <json pointer>...                 # generic
//	    signature_header <name>                        # generic
//	    signature_prefix <text>                        # generic
//	    signature_encoding hex|base64                  # generic
//	    sender_format e164                             # generic
//	    allow_no_sender                                # generic
//	}
//
// Put it before the reverse_proxy to the gateway's webhook listener, with
// the same matcher (or both inside one handle block).
func parseSendersDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Senders)
	if err := s.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return s, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (s *Senders) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		s.Provider = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "provider":
			err = oneArg(d, &s.Provider)
		case "allow":
			s.Allow, err = appendList(d, s.Allow)
		case "group_allow":
			s.GroupAllow, err = appendList(d, s.GroupAllow)
		case "allow_from_gateway_config":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			err = s.setGateway(d, args[0])
			s.AllowFromGatewayConfig = true
			if len(args) == 2 {
				s.Channel = args[1]
			}
		case "gateway":
			var name string
			if err = oneArg(d, &name); err == nil {
				err = s.setGateway(d, name)
			}
		case "channel":
			err = oneArg(d, &s.Channel)
		case "account":
			err = oneArg(d, &s.Account)
		case "secret":
			err = oneArg(d, &s.Secret)
		case "secret_file":
			err = oneArg(d, &s.SecretFile)
		case "on_reject":
			if err = oneArg(d, &s.OnReject); err == nil && s.OnReject != "ack" && s.OnReject != "reject" {
				err = d.Errf("on_reject: want ack or reject, got %q", s.OnReject)
			}
		case "max_body":
			var v string
			if err = oneArg(d, &v); err == nil {
				n, perr := humanize.ParseBytes(v)
				if perr != nil || n == 0 || n > math.MaxInt64 {
					err = d.Errf("max_body: want a positive size such as 1MiB, got %q", v)
				}
				s.MaxBody = int64(n)
			}
		case "max_skew":
			var v string
			if err = oneArg(d, &v); err == nil {
				err = parseDuration(d, v, &s.MaxSkew)
			}
		case "sender_paths":
			s.SenderPaths, err = appendArgs(d, s.SenderPaths)
		case "signature_header":
			err = oneArg(d, &s.SignatureHeader)
		case "signature_prefix":
			err = oneArg(d, &s.SignaturePrefix)
		case "signature_encoding":
			err = oneArg(d, &s.SignatureEncoding)
		case "sender_format":
			err = oneArg(d, &s.SenderFormat)
		case "allow_no_sender":
			if d.NextArg() {
				err = d.ArgErr()
			}
			s.AllowNoSender = true
		default:
			err = d.Errf("unrecognized clawgate_senders subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if s.Provider == "" {
		return d.Err("clawgate_senders: missing provider (telegram, slack, line or generic)")
	}
	return nil
}

// setGateway names the gateway once; two different names are a mistake.
func (s *Senders) setGateway(d *caddyfile.Dispenser, name string) error {
	if s.Gateway != "" && s.Gateway != name {
		return d.Errf("gateway named twice: %q and %q", s.Gateway, name)
	}
	s.Gateway = name
	return nil
}

// appendList reads one or more list arguments (space- or comma-separated).
func appendList(d *caddyfile.Dispenser, list []string) ([]string, error) {
	items := splitList(d.RemainingArgs())
	if len(items) == 0 {
		return list, d.ArgErr()
	}
	return append(list, items...), nil
}

// appendArgs reads one or more arguments as they are (JSON pointers may
// hold commas).
func appendArgs(d *caddyfile.Dispenser, list []string) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return list, d.ArgErr()
	}
	return append(list, args...), nil
}

// unmarshalPairing parses:
//
//	pairing required|off {
//	    auto_approve tag:<tag>|cap:<capability>...
//	    max_pending <n>
//	    poll_interval <duration>
//	    storage <file>    # deprecated: an old approval file to migrate
//	}
func unmarshalPairing(d *caddyfile.Dispenser) (*PairingConfig, error) {
	pc := new(PairingConfig)
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	pc.Mode = d.Val()
	if m := strings.ToLower(pc.Mode); m != "required" && m != "off" {
		return nil, d.Errf("pairing: %q is not one of required, off", pc.Mode)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "storage":
			err = oneArg(d, &pc.Storage)
		case "auto_approve":
			rules := splitList(d.RemainingArgs())
			if len(rules) == 0 {
				return nil, d.ArgErr()
			}
			for _, rule := range rules {
				if err := checkAutoApprove(rule); err != nil {
					return nil, d.Errf("auto_approve: %v", err)
				}
			}
			pc.AutoApprove = append(pc.AutoApprove, rules...)
		case "max_pending":
			err = intArg(d, &pc.MaxPending)
		case "poll_interval":
			var v string
			if err = oneArg(d, &v); err == nil {
				err = parseDuration(d, v, &pc.PollInterval)
			}
			if err == nil {
				if perr := checkPollInterval(time.Duration(pc.PollInterval)); perr != nil {
					err = d.Errf("poll_interval: %v", perr)
				}
			}
		default:
			err = d.Errf("unrecognized pairing subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return pc, nil
}

// UnmarshalCaddyfile parses `clawgate_identity <cond>...`.
func (m *IdentityMatcher) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.Next() {
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		m.Conditions = append(m.Conditions, args...)
	}
	return nil
}

// UnmarshalCaddyfile parses `get_certificate clawgate [<node>]`.
func (cg *CertGetter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // manager name
	if d.NextArg() {
		cg.Node = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
