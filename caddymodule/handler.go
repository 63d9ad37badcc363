package caddymodule

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is clawgate's edge guard, `http.handlers.clawgate`. It sits in front of
// Caddy's own reverse_proxy to a loopback OpenClaw gateway and decides, for every
// request and WebSocket upgrade, who may pass: tailnet device identity, static
// bearer tokens and JWTs are matched against an ordered list of rules (first match
// wins, default deny). An admitted request has every client-supplied identity and
// forwarding header removed and the headers OpenClaw's trusted-proxy mode reads set
// by the guard: X-Forwarded-For (the client IP, never loopback), X-Forwarded-Proto,
// X-Forwarded-Host, the user header and x-openclaw-scopes (always present; when
// the matching rule grants no scopes, the value the gateway's OpenClaw release
// line reads as none).
//
// After an admitted request these placeholders are set: {http.auth.user.id} and
// {clawgate.user} (the identity forwarded to OpenClaw), {clawgate.login},
// {clawgate.node}, {clawgate.tags}, {clawgate.scopes}, {clawgate.client_ip},
// {clawgate.gateway} and {clawgate.decision} (the index of the matching rule).
//
// A refused request is a Caddy error (caddyhttp.Error), so the server's error
// routes (`handle_errors`) can answer it, with {clawgate.reason},
// {clawgate.message}, {clawgate.status}, {clawgate.gateway},
// {clawgate.retry_after}, {clawgate.pairing_code} and {clawgate.audit_checks};
// when none would, clawgate answers with its own JSON or HTML (see refuse).
type Handler struct {
	// Gateway names the OpenClaw gateway this guard protects. It appears in logs and
	// placeholders and links the guard to the gateway of that name in the `clawgate`
	// app (its audit gate). Default: "default".
	Gateway string `json:"gateway,omitempty"`

	// Upstream is the address of the OpenClaw gateway, as host:port or
	// http://host:port. It must be a loopback IP literal (127.0.0.0/8 or ::1) unless
	// AllowRemoteUpstream is set. Required.
	Upstream string `json:"upstream,omitempty"`

	// AllowRemoteUpstream permits an upstream that is not on loopback. OpenClaw's own
	// guidance is to keep the gateway on loopback; set this only when the path to the
	// upstream is private by other means. Default: false.
	AllowRemoteUpstream bool `json:"allow_remote_upstream,omitempty"`

	// CapabilityURLs serves OpenClaw's capability URLs (/__openclaw__/cap/<token>/...,
	// the canvas and plugin surfaces) through this guard, decided by its rules as
	// any other request. OpenClaw serves them as /<path>, past Caddy's routes, so a
	// config is refused at load when another guard for the same gateway on the
	// same server has different rules. The token is never logged. Default: false
	// (capability URLs are refused with 403 clawgate_capability_path).
	CapabilityURLs bool `json:"capability_urls,omitempty"`

	// UserHeader is the header OpenClaw's trusted-proxy mode reads the user from
	// (gateway.auth.trustedProxy.userHeader). Default: "x-forwarded-user".
	UserHeader string `json:"user_header,omitempty"`

	// Tokens are static bearer tokens accepted at the edge. Their secrets come from
	// an environment variable or a file (or are given as a SHA-256 hash) and are kept
	// in memory only as SHA-256 hashes. Default: none.
	Tokens []TokenConfig `json:"tokens,omitempty"`

	// JWT configures verification of bearer JWTs. Default: JWTs are not accepted.
	JWT *JWTConfig `json:"jwt,omitempty"`

	// Rules is the ordered policy, one rule per string, in the syntax
	// `allow|deny <cond>... [scopes <s>,<s>...]` with conditions such as
	// `user:alice@example.com`, `tag:ci`, `node:alice-laptop`, `token:ci`, `jwt`,
	// `claim:role=operator`, `cap:example.com/cap/openclaw`, `tailnet` (a device of
	// this node's own tailnet; `tailnet:shared` for devices of a tailnet it was
	// shared into), `anyone`.
	// The first matching rule decides; a request no rule matches is denied. The
	// scopes of an allow rule are sent as x-openclaw-scopes (none when omitted).
	// Required: a guard with no rules denies everything and is refused at load.
	Rules []string `json:"rules,omitempty"`

	// GatewayToken is the gateway's own token or password (token or password
	// auth mode), as a placeholder, {env.VAR} or {file./path}, injected as `Authorization: Bearer` into admitted requests to
	// its HTTP APIs (/v1/*, /tools/invoke, /api/v1/admin/rpc) so phones and
	// scripts never hold it. It is never sent on other paths, on WebSocket
	// upgrades, or for a request the guard did not admit, and never logged. Note
	// that OpenClaw treats its shared secret as full operator access: the rule's
	// scope cap does not limit a brokered request. Default: none.
	GatewayToken *SecretSource `json:"gateway_token,omitempty"`

	// MaxBody caps the size of an admitted request's body, in bytes; larger
	// bodies get 413 and never reach the gateway whole. Default: 32 MiB (OpenClaw
	// caps /tools/invoke at 2 MB and WebSocket frames at 25 MiB).
	MaxBody int64 `json:"max_body,omitempty"`

	// BodyTimeout bounds how long an admitted request's body may take to
	// arrive, so a slow client cannot hold the gateway. Default: 60s.
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`

	// RateLimit bounds failed authentication attempts per client IP and per
	// identity. Default: 10 failures per minute lock a client out for 5 minutes,
	// tracking at most 10000 clients.
	RateLimit *RateLimitConfig `json:"rate_limit,omitempty"`

	brokered string // "Bearer <gateway token>", or ""
	tokens   *edge.TokenSet
	jwt      *edge.JWTVerifier
	policy   *edge.Policy
	ipLimit  *edge.Limiter // failed attempts per client IP
	idLimit  *edge.Limiter // failed attempts per identity
	upstream netip.AddrPort
	cleaner  *edge.HeaderCleaner
	forward  *edge.Forwarder // sets the forwarding headers; its UserKey is the user header's canonical form
	logger   *zap.Logger
	app      *App
	now      func() time.Time
}

// TokenConfig is one named static bearer token. Exactly one of Secret (or its
// older forms Env and File) and SHA256 gives it; the secret itself is never
// part of the configuration.
type TokenConfig struct {
	// Name identifies the token in rules (`token:<name>`) and logs. Required.
	Name string `json:"name,omitempty"`
	// Secret is the token, as a placeholder: {env.VAR}, or {file./path} for a
	// file not readable by other users (surrounding whitespace is trimmed).
	Secret string `json:"secret,omitempty"`
	// Env is the environment variable holding the token. Deprecated: write
	// Secret {env.VAR}.
	Env string `json:"env,omitempty"`
	// File is a file holding the token. Deprecated: write Secret {file./path}.
	File string `json:"file,omitempty"`
	// SHA256 is the hex SHA-256 of the token, for configs that must not be able to
	// reveal it.
	SHA256 string `json:"sha256,omitempty"`
	// User is the identity forwarded to OpenClaw for callers with this token when no
	// tailnet login applies. Default: "token:<name>".
	User string `json:"user,omitempty"`
	// Scopes caps the scopes of callers with this token (intersected with the
	// matching rule's scopes). Default: no cap beyond the rule's.
	Scopes []string `json:"scopes,omitempty"`
	// Expires is when the token stops being accepted, in RFC 3339. Default: never.
	Expires string `json:"expires,omitempty"`
}

// JWTConfig configures bearer JWT verification.
type JWTConfig struct {
	// Algorithms is the allowlist of signing algorithms: HS256, HS384, HS512,
	// RS256, ES256, EdDSA. Required; "none" is never accepted.
	Algorithms []string `json:"algorithms,omitempty"`
	// HMACSecret is an HMAC secret of at least 32 bytes, as a placeholder:
	// {env.VAR} or {file./path}.
	HMACSecret string `json:"hmac_secret,omitempty"`
	// HMACSecretEnv names an environment variable holding an HMAC secret.
	// Deprecated: write HMACSecret {env.VAR}.
	HMACSecretEnv string `json:"hmac_secret_env,omitempty"`
	// HMACSecretFile is a file holding an HMAC secret. Deprecated: write
	// HMACSecret {file./path}.
	HMACSecretFile string `json:"hmac_secret_file,omitempty"`
	// PublicKeyFiles are PEM files with RSA (2048 bits or more), P-256 or Ed25519
	// public keys or certificates.
	PublicKeyFiles []string `json:"public_key_files,omitempty"`
	// JWKSFile is a local JWK set file; a token's kid selects among its keys. Keys
	// are never fetched from URLs named in tokens.
	JWKSFile string `json:"jwks_file,omitempty"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `json:"issuer,omitempty"`
	// Audience, when set, must contain one of the token's aud values.
	Audience []string `json:"audience,omitempty"`
	// Leeway is the clock skew allowed for exp, nbf and iat. Default: 0.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// UserClaim is the claim that names the user. Default: "sub".
	UserClaim string `json:"user_claim,omitempty"`
	// ScopeClaim is the claim holding the token's scopes (a space-separated string
	// or an array), which caps the rule's scopes. Default: "scope".
	ScopeClaim string `json:"scope_claim,omitempty"`
	// MaxLength is the longest token accepted, in bytes. Default: 4096.
	MaxLength int `json:"max_length,omitempty"`
}

// RateLimitConfig bounds failed authentication attempts.
type RateLimitConfig struct {
	// Failures is how many failed attempts within Window lock a client out.
	// Default: 10.
	Failures int `json:"failures,omitempty"`
	// Window is the period failures are counted over. Default: 1m.
	Window caddy.Duration `json:"window,omitempty"`
	// Lockout is how long a locked-out client is refused. Default: 5m.
	Lockout caddy.Duration `json:"lockout,omitempty"`
	// MaxClients bounds the memory used: at most this many clients are tracked.
	// Default: 10000.
	MaxClients int `json:"max_clients,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.clawgate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision compiles the rules and loads the secrets the guard needs.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := checkShortcutPlacement(ctx); err != nil {
		return fmt.Errorf("clawgate: %w", err)
	}
	if err := checkListenersAtProvision(ctx); err != nil {
		return err
	}
	applyServerTimeouts(ctx, h.logger)
	if h.now == nil {
		h.now = time.Now
	}
	if h.Gateway == "" {
		h.Gateway = "default"
	}
	if h.UserHeader == "" {
		h.UserHeader = edge.DefaultUserHeader
	}
	if h.MaxBody == 0 {
		h.MaxBody = 32 << 20
	}
	if h.BodyTimeout == 0 {
		h.BodyTimeout = caddy.Duration(60 * time.Second)
	}
	h.cleaner = edge.NewHeaderCleaner([]string{h.UserHeader})
	forward, err := edge.NewForwarder(h.UserHeader)
	if err != nil {
		return fmt.Errorf("clawgate.user_header: %w", err)
	}
	h.forward = forward

	up, err := parseUpstream(h.Upstream)
	if err != nil {
		return fmt.Errorf("clawgate.upstream: %w", err)
	}
	h.upstream = up

	specs := make([]edge.TokenSpec, 0, len(h.Tokens))
	for i, tc := range h.Tokens {
		spec, err := tc.spec()
		if err != nil {
			return fmt.Errorf("clawgate.tokens[%d]: %w", i, err)
		}
		if tc.Secret == "" && (tc.Env != "" || tc.File != "") {
			old, ph := "env "+tc.Env, legacyPlaceholder(tc.Env, tc.File)
			if tc.Env == "" {
				old = "file " + tc.File
			}
			warnDeprecated(h.logger, fmt.Sprintf("clawgate.tokens[%d] (%s): %s", i, tc.Name, old),
				"secret "+ph, `"secret": "`+ph+`"`)
		}
		specs = append(specs, spec)
	}
	if h.tokens, err = edge.NewTokenSet(specs); err != nil {
		return fmt.Errorf("clawgate.tokens: %w", err)
	}

	if h.JWT != nil {
		if v := h.JWT.HMACSecretEnv; v != "" {
			ph := legacyIf(v, "env")
			warnDeprecated(h.logger, "clawgate.jwt: hmac_secret_env "+v, "hmac_secret "+ph, `"hmac_secret": "`+ph+`"`)
		}
		if v := h.JWT.HMACSecretFile; v != "" {
			ph := legacyIf(v, "file")
			warnDeprecated(h.logger, "clawgate.jwt: hmac_secret_file "+v, "hmac_secret "+ph, `"hmac_secret": "`+ph+`"`)
		}
		cfg, err := h.JWT.config()
		if err != nil {
			return fmt.Errorf("clawgate.jwt: %w", err)
		}
		if h.jwt, err = edge.NewJWTVerifier(cfg); err != nil {
			return fmt.Errorf("clawgate.jwt: %w", err)
		}
	}

	if h.GatewayToken != nil {
		if g := h.GatewayToken; g.legacy() {
			ph := legacyPlaceholder(g.Env, g.File)
			warnDeprecated(h.logger, "clawgate.gateway_token { env | file }", "gateway_token "+ph, `"gateway_token": "`+ph+`"`)
		}
		tok, err := h.GatewayToken.read()
		if err != nil {
			return fmt.Errorf("clawgate.gateway_token: %w", err)
		}
		h.brokered = "Bearer " + string(tok)
	}

	if h.policy, err = edge.NewPolicy(h.Rules); err != nil {
		return fmt.Errorf("clawgate.%w", err)
	}
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		if err := checkTailnetTrustedProxies(srv, serverName(srv)); err != nil {
			return err
		}
		if err := registerCapabilityGuard(srv, serverName(srv), capabilityGuard{
			gateway: h.Gateway, upstream: h.upstream.String(), rules: h.Rules, on: h.CapabilityURLs}); err != nil {
			return err
		}
		ctx.OnCancel(func() { forgetCapabilityGuards(srv) })
		if h.CapabilityURLs {
			if d := capabilityBypass(srv); d != "" {
				return fmt.Errorf("clawgate.capability_urls: server %s: %s; OpenClaw serves /__openclaw__/cap/<token>/<path> as /<path>, "+
					"which that route's matcher never sees, so a capability URL would reach the gateway around it; "+
					"serve that route on another listener than the capability_urls guard, let a clawgate guard decide first in it, or remove capability_urls", serverName(srv), d)
			}
		}
		if h.CapabilityURLs && srv.Logs != nil {
			ctx.Logger().Warn("capability_urls: this server's access log records each request's URI and headers, capability tokens included, unless its format filters them: "+
				"format filter { request>uri regexp `"+capabilityURIPattern+"` /__openclaw__/REDACTED; request>headers>Referer regexp `"+capabilityURIPattern+"` /__openclaw__/REDACTED }",
				zap.String("server", serverName(srv)), zap.String("gateway", h.Gateway))
		}
	}

	rl := RateLimitConfig{}
	if h.RateLimit != nil {
		rl = *h.RateLimit
	}
	h.ipLimit = edge.NewLimiter(rl.Failures, time.Duration(rl.Window), time.Duration(rl.Lockout), rl.MaxClients)
	h.idLimit = edge.NewLimiter(rl.Failures, time.Duration(rl.Window), time.Duration(rl.Lockout), rl.MaxClients)

	appIface, err := ctx.AppIfConfigured(appID)
	switch {
	case err == nil:
		h.app = appIface.(*App)
		if err := h.app.registerGuard(h.Gateway, h.UserHeader, admittedUsers(h.policy, h.Tokens)); err != nil {
			return fmt.Errorf("clawgate.gateway: %w", err)
		}
	case !errors.Is(err, caddy.ErrNotConfigured):
		return fmt.Errorf("loading clawgate app: %w", err)
	}
	return nil
}

// Validate refuses configurations that would be unsafe to serve.
func (h *Handler) Validate() error {
	if len(h.Rules) == 0 {
		return errors.New("clawgate.rules: no rules: the guard would deny every request; add at least one `allow` rule")
	}
	if !h.upstream.Addr().IsLoopback() && !h.AllowRemoteUpstream {
		return fmt.Errorf("clawgate.upstream: %q is not a loopback address; keep the OpenClaw gateway on 127.0.0.1 (gateway.bind: \"loopback\") or set allow_remote_upstream", h.Upstream)
	}
	if h.MaxBody < 0 || h.BodyTimeout < 0 {
		return errors.New("clawgate: max_body and body_timeout must be positive")
	}
	if strings.ContainsAny(h.UserHeader, " \t\r\n:") || h.UserHeader == "" {
		return fmt.Errorf("clawgate.user_header: %q is not a valid header name", h.UserHeader)
	}
	if h.policy == nil {
		return errors.New("clawgate.rules: the rules were never parsed (the guard was not provisioned)")
	}
	if h.JWT == nil && h.policy.NeedsJWT() {
		return errors.New("clawgate.rules: a rule needs a JWT (jwt or claim:) but no jwt block is configured")
	}
	return nil
}

// ServeHTTP admits or denies one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	now := h.now()

	if edge.QueryCredential(r.URL.RawQuery) {
		return h.deny(w, r, http.StatusUnauthorized, "query_token",
			"credentials in the query string are refused; send Authorization: Bearer", nil, "")
	}
	for name := range r.Trailer {
		// Trailers arrive after the guard has decided and would be forwarded
		// as they are: none may carry an identity or forwarding header.
		if h.cleaner.Protected(name) {
			return h.deny(w, r, http.StatusBadRequest, "bad_trailer",
				"request trailers may not carry identity or forwarding headers", nil, "")
		}
	}
	if !h.CapabilityURLs && (isCapabilityPath(r.URL.Path) || hasCapabilityQuery(r.URL.RawQuery)) {
		return h.deny(w, r, http.StatusForbidden, "capability_path",
			"OpenClaw capability URLs (/__openclaw__/cap/... or an oc_cap query) are not served by this guard: OpenClaw would route them past this route's rules; set capability_urls on a guard covering the whole site", nil, "")
	}

	if r.TLS != nil && !sniMatchesHost(r.TLS.ServerName, r.Host) {
		// A connection made to one name (and one certificate) carrying a
		// request for another: another gateway's site on the same listener
		// would be reached through this one's TLS. The client should open
		// a connection to the name it means (browsers retry on 421).
		r.Close = true
		return h.deny(w, r, http.StatusMisdirectedRequest, "misdirected",
			"the request's Host does not name the server this TLS connection was made to", nil, "")
	}

	// The clawgate node that accepted the connection, if any: there the
	// client address and the identity both come from the connection's peer.
	node := tailnetNode(r)
	clientIP, clientIPText, ok := requestClientIP(r, node != nil)
	if !ok || clientIP.IsLoopback() || clientIP.IsUnspecified() {
		return h.deny(w, r, http.StatusForbidden, "unattributable",
			"the client address cannot be attributed (loopback or unknown); reach the gateway over the tailnet", nil, "")
	}
	// One allocation holds the request's identity, its placeholders and the
	// values of the headers the guard sets.
	st := &guardState{gateway: h.Gateway, clientIP: clientIPText, userKey: h.forward.UserKey(), cleaner: h.cleaner}
	id := &st.id
	ipKey := st.clientIP
	if wait, blocked := h.ipLimit.Blocked(ipKey, now); blocked {
		return h.tooMany(w, r, wait, nil)
	}

	if err := identifyOn(node, r, id); err != nil {
		h.logger.Warn("tailnet identity lookup failed", zap.String("gateway", h.Gateway), zap.String("client_ip", st.clientIP), zap.Error(err))
		return h.deny(w, r, http.StatusForbidden, "identity_unavailable",
			"the tailnet identity of this device could not be established", nil, "")
	}

	// One pass over the headers reads the Authorization header as it arrived
	// and removes every client-sent spelling of a forwarding or identity
	// header (nothing before the decision reads those).
	bearer, _, err := h.cleaner.CleanBearer(r.Header)
	if err != nil {
		h.fail(ipKey, "", now)
		return h.deny(w, r, http.StatusUnauthorized, "bad_credential", "the Authorization header is malformed", id, "")
	}
	// One hash of the bearer serves the token lookup, the JWT cache and the
	// log fingerprint (rendered only when a log needs it).
	var digest edge.Digest
	fingerprint := func() string {
		if bearer == "" {
			return ""
		}
		return digest.Fingerprint()
	}
	var edgeCredential, badCredential bool
	if bearer != "" {
		digest = edge.DigestOf(bearer)
		tok, terr := h.tokens.LookupDigest(digest, now)
		var cached *edge.Claims
		if terr != nil && h.jwt != nil {
			// A JWT verified before: the cache answers by digest alone,
			// without scanning or parsing the token again.
			cached = h.jwt.Cached(digest, now)
		}
		switch {
		case terr == nil:
			id.Token, edgeCredential = tok, true
		case errors.Is(terr, edge.ErrTokenExpired):
			h.fail(ipKey, "", now)
			return h.deny(w, r, http.StatusUnauthorized, "token_expired", "this token has expired", id, fingerprint())
		case cached != nil:
			id.JWT, edgeCredential = cached, true
		case h.jwt != nil && edge.LooksLikeJWT(bearer):
			claims, jerr := h.jwt.VerifyDigest(bearer, digest, now)
			if jerr == nil {
				id.JWT, edgeCredential = claims, true
			} else {
				badCredential = true
				h.debugCredential("jwt rejected", fingerprint(), jerr)
			}
		default:
			badCredential = true
		}
		// A bearer the edge does not recognise may be meant for the gateway
		// itself (token mode); it only passes along with a tailnet identity.
		if badCredential && !id.OnTailnet {
			h.fail(ipKey, "", now)
			return h.deny(w, r, http.StatusUnauthorized, "bad_credential", "the bearer token was not accepted", id, fingerprint())
		}
	}
	if !id.OnTailnet && !edgeCredential {
		w.Header().Set("WWW-Authenticate", `Bearer realm="clawgate"`)
		return h.deny(w, r, http.StatusUnauthorized, "unauthenticated", "authentication required", id, "")
	}

	user, ok := id.User()
	if !ok {
		return h.deny(w, r, http.StatusForbidden, "bad_identity", "the caller's identity cannot be forwarded", id, fingerprint())
	}
	idKey := user
	if wait, blocked := h.idLimit.Blocked(idKey, now); blocked {
		return h.tooMany(w, r, wait, id)
	}

	decision := h.policy.Decide(id)
	if !decision.Allowed {
		if badCredential {
			h.fail(ipKey, idKey, now)
		}
		return h.deny(w, r, http.StatusForbidden, "forbidden", "no rule allows this request", id, fingerprint(), zap.Int("rule", decision.Rule), zap.String("why", decision.Reason))
	}

	if edge.HasDotSegment(r.URL.Path) || edge.HasDotSegment(r.URL.EscapedPath()) {
		// OpenClaw resolves dot segments (WHATWG URL), so the route it
		// would act on is not the one Caddy's matchers and this guard saw.
		// No browser or HTTP client sends them; refusing, rather than
		// resolving them here, keeps every matcher's view and the
		// gateway's the same.
		return h.deny(w, r, http.StatusBadRequest, "dot_segments",
			"paths with . or .. segments (also as %2e) are refused: send the path they resolve to", id, fingerprint())
	}

	if h.app != nil {
		if held, err := h.app.checkDevice(w, r, h, id, clientIP); held {
			return err
		}
	}

	if h.app != nil {
		h.app.awaitFirstAudit(r.Context(), h.Gateway)
		if code, msg := h.app.gateRefusal(h.Gateway); code == "config_invalid" {
			return h.deny(w, r, http.StatusServiceUnavailable, code, msg, id, fingerprint())
		}
		if blocked, reasons := h.app.gateStatus(h.Gateway); blocked {
			return h.auditFailed(w, r, reasons, id, fingerprint())
		}
	}

	// ContentLength is 0 for a request without a body (Caddy wraps even those
	// in a body reader), -1 when one of unknown length follows.
	if r.ContentLength != 0 && r.Body != nil && !edge.IsWebSocketUpgrade(r) {
		if r.ContentLength > h.MaxBody {
			return h.deny(w, r, http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Sprintf("the request body is larger than %d bytes", h.MaxBody), id, fingerprint())
		}
		r.Body = limitedBody{http.MaxBytesReader(w, r.Body, h.MaxBody)}
		// The deadline ends with the request: the server sets a new one for
		// the next request on the connection.
		_ = http.NewResponseController(w).SetReadDeadline(now.Add(time.Duration(h.BodyTimeout)))
	}

	if edgeCredential {
		// Edge secrets are never passed on to the gateway. (What Header.Del
		// does, without canonicalising a key that already is.)
		delete(r.Header, "Authorization")
	}
	if h.brokered != "" && brokeredPath(r.URL.EscapedPath()) && !edge.IsWebSocketUpgrade(r) {
		r.Header.Set("Authorization", h.brokered)
	}
	st.user, st.scopes, st.proto, st.host, st.decision = user, decision.ScopesHeader, forwardedProto(r), r.Host, decision.Rule
	st.noScopes = st.scopes == ""
	if st.noScopes {
		// No scopes: the value this gateway's OpenClaw reads as none, which
		// is not always the empty one.
		st.scopes = release.NoScopesUnmeasured
		if h.app != nil {
			st.scopes = h.app.noScopesHeader(h.Gateway)
		}
	}
	if err := h.forward.Set(r.Header, edge.Forward{
		ClientIP:       clientIP,
		ClientIPString: st.clientIP,
		Proto:          st.proto,
		Host:           st.host,
		User:           user,
		Scopes:         decision.Scopes,
		ScopesHeader:   st.scopes,
		Values:         &st.hdr,
	}); err != nil {
		return h.deny(w, r, http.StatusForbidden, "unattributable", "the client address cannot be attributed", id, fingerprint())
	}
	// For the clawgate transport, which sets the same headers again on the
	// outgoing request.
	caddyhttp.SetVar(r.Context(), guardStateVar, st)

	if h.app != nil && edge.IsWebSocketUpgrade(r) {
		// Track the upgraded connection so it is closed if the gateway's audit
		// starts failing, its device is revoked, or the tailnet stops
		// admitting it.
		ht := &hijackTracker{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, gateway: h.Gateway}
		if node != nil {
			ht.nodeID = id.NodeID
			still := h.stillAdmits(node, r.RemoteAddr, id, decision)
			ht.onHijack = func(c *trackedConn) { node.trackUpgrade(c, still) }
		}
		w = ht
	}

	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	// The placeholder function answers http.auth.user.id too (lazily, without
	// boxing the user unless asked); a value an earlier handler set statically
	// would be found first, so it goes.
	repl.Delete(authUserPlaceholder)
	repl.Map(st.placeholder)

	if ce := h.logger.Check(zapcore.DebugLevel, "allowed"); ce != nil {
		ce.Write(zap.String("gateway", h.Gateway), zap.String("user", user), zap.Int("rule", decision.Rule),
			zap.String("scopes", st.scopes), zap.String("client_ip", st.clientIP), zap.String("token", fingerprint()))
	}
	return next.ServeHTTP(w, r)
}

// sniMatchesHost reports whether a request's Host names the server its TLS
// connection asked for: the same name (any case, any port), or, for a
// client that sent no server name (one connecting to an address), an IP
// address.
func sniMatchesHost(sni, host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if sni == "" {
		_, err := netip.ParseAddr(host)
		return err == nil
	}
	return strings.EqualFold(strings.TrimSuffix(sni, "."), host)
}

// stillAdmits returns the re-check of a WebSocket admitted through node for
// the device at remoteAddr: it reports whether the tailnet still names the
// same device, the policy still admits it by the same rule with the same
// scopes (with the request's edge credential as it was), and, on a gateway
// with pairing, the device is still approved.
func (h *Handler) stillAdmits(node *poolNode, remoteAddr string, admitted *edge.Identity, decision edge.Decision) func() bool {
	cred := edge.Identity{Token: admitted.Token, JWT: admitted.JWT}
	nodeID := admitted.NodeID
	return func() bool {
		id := cred
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := node.identify(ctx, remoteAddr, &id); err != nil || id.NodeID != nodeID {
			return false
		}
		d := h.policy.Decide(&id)
		if !d.Allowed || d.Rule != decision.Rule || d.ScopesHeader != decision.ScopesHeader {
			return false
		}
		return h.app == nil || h.app.deviceStillApproved(ctx, h.Gateway, node, remoteAddr, &id)
	}
}

// brokeredPath reports whether the gateway token is injected on the escaped
// path p, as it is sent upstream: the HTTP APIs that take it as a bearer,
// and nothing else, compared as OpenClaw reads the path (edge.PathHasPrefix).
func brokeredPath(p string) bool {
	return edge.PathHasPrefix(p, "/v1/") || p == "/tools/invoke" || p == "/api/v1/admin/rpc"
}

// containsFold reports whether s contains the lowercase ASCII sub, ignoring
// ASCII case, without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// admittedUsers lists the users the allow rules name explicitly and the users
// of static tokens: what the gateway's trustedProxy.allowUsers should hold.
func admittedUsers(policy *edge.Policy, tokens []TokenConfig) []string {
	users := policy.Users()
	for _, t := range tokens {
		if t.User != "" {
			users = append(users, strings.ToLower(t.User))
		} else {
			users = append(users, "token:"+strings.ToLower(t.Name))
		}
	}
	return users
}

// limitedBody turns the body-size error into a 413 for Caddy.
type limitedBody struct{ io.ReadCloser }

func (b limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		err = caddyhttp.Error(http.StatusRequestEntityTooLarge, err)
	}
	return n, err
}

// guardStateVar is the Caddy request variable holding the admitted request's
// *guardState, for the clawgate transport.
const guardStateVar = "clawgate.guard"

// authUserPlaceholder is Caddy's placeholder for the authenticated user, which
// access logs record as user_id.
const authUserPlaceholder = "http.auth.user.id"

// guardState is one admitted request's identity, the values of its
// {clawgate.*} placeholders (looked up lazily), and the backing arrays of the
// forwarded header values (so setting them allocates nothing more).
type guardState struct {
	id                                  edge.Identity
	user, scopes, clientIP, proto, host string
	gateway                             string
	userKey                             string
	cleaner                             *edge.HeaderCleaner
	decision                            int
	noScopes                            bool // the rule grants none; scopes holds the gateway's "none" value
	hdr                                 [5]string
}

// String keeps the state out of anything that prints Caddy's variables.
func (st *guardState) String() string { return "clawgate guard state" }

// forwardOutbound makes the outgoing request's headers say exactly what the
// guard decided: every other spelling of a forwarding or identity header is
// removed, then the five are set, as the guard did on the incoming request,
// with the same already validated values.
func (st *guardState) forwardOutbound(h http.Header) {
	st.cleaner.CleanKeeping(h, "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Openclaw-Scopes", st.userKey)
	st.setOutbound(h, "X-Forwarded-For", st.clientIP, 0)
	st.setOutbound(h, "X-Forwarded-Proto", st.proto, 1)
	st.setOutbound(h, "X-Forwarded-Host", st.host, 2)
	if st.user != "" {
		st.setOutbound(h, st.userKey, st.user, 3)
	} else {
		delete(h, st.userKey)
	}
	st.setOutbound(h, "X-Openclaw-Scopes", st.scopes, 4)
}

// setOutbound makes h[key] exactly the one value val. A header that already
// holds just that value (reverse_proxy sets X-Forwarded-* itself and copies
// the rest from the incoming request) is left alone; any other gets a slice
// of hdr[i], restored first if a handler edited the incoming header's slice,
// which shares it, in place.
func (st *guardState) setOutbound(h http.Header, key, val string, i int) {
	if v := h[key]; len(v) == 1 && v[0] == val {
		return
	}
	if st.hdr[i] != val {
		st.hdr[i] = val
	}
	h[key] = st.hdr[i : i+1 : i+1]
}

// placeholder answers the {clawgate.*} placeholders and http.auth.user.id.
func (st *guardState) placeholder(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, "clawgate.")
	if !ok {
		if key == authUserPlaceholder {
			return st.user, true
		}
		return nil, false
	}
	switch name {
	case "user":
		return st.user, true
	case "login":
		return st.id.Login, true
	case "node":
		return st.id.Node, true
	case "tags":
		return strings.Join(st.id.Tags, ","), true
	case "scopes":
		if st.noScopes {
			return "", true
		}
		return st.scopes, true
	case "client_ip":
		return st.clientIP, true
	case "proto":
		return st.proto, true
	case "host":
		return st.host, true
	case "gateway":
		return st.gateway, true
	case "decision":
		return st.decision, true
	}
	return nil, false
}

func (h *Handler) fail(ipKey, idKey string, now time.Time) {
	h.ipLimit.Fail(ipKey, now)
	if idKey != "" {
		h.idLimit.Fail(idKey, now)
	}
}

func (h *Handler) debugCredential(msg, fingerprint string, err error) {
	if ce := h.logger.Check(zapcore.DebugLevel, msg); ce != nil {
		ce.Write(zap.String("gateway", h.Gateway), zap.String("token", fingerprint), zap.Error(err))
	}
}

// deny answers a refused request and logs why; the log has the reason, the
// identity and a token fingerprint, never a secret.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, status int, reason, msg string, id *edge.Identity, fingerprint string, extra ...zap.Field) error {
	if ce := h.logger.Check(zapcore.InfoLevel, "denied"); ce != nil {
		fields := []zap.Field{zap.String("gateway", h.Gateway), zap.String("reason", reason), zap.Int("status", status),
			zap.String("remote", r.RemoteAddr), zap.String("method", r.Method), zap.String("path", logPath(r))}
		if id != nil {
			fields = append(fields, zap.String("login", id.Login), zap.String("node", id.Node))
			if id.Token != nil {
				fields = append(fields, zap.String("token_name", id.Token.Name))
			}
		}
		if fingerprint != "" {
			fields = append(fields, zap.String("token", fingerprint))
		}
		ce.Write(append(fields, extra...)...)
	}
	return h.refuse(w, r, refusal{status: status, reason: reason, message: msg, gateway: h.Gateway})
}

func (h *Handler) tooMany(w http.ResponseWriter, r *http.Request, wait time.Duration, id *edge.Identity) error {
	if ce := h.logger.Check(zapcore.InfoLevel, "denied"); ce != nil {
		ce.Write(zap.String("gateway", h.Gateway), zap.String("reason", "rate_limited"), zap.String("remote", r.RemoteAddr), zap.Duration("retry_after", wait))
	}
	return h.refuse(w, r, refusal{status: http.StatusTooManyRequests, reason: "rate_limited",
		message: "too many failed authentication attempts; retry later", retryAfter: wait, gateway: h.Gateway})
}

// auditFailed refuses a request because the gateway's config fails its
// audit; error routes get the failing check IDs as {clawgate.audit_checks}.
func (h *Handler) auditFailed(w http.ResponseWriter, r *http.Request, reasons []string, id *edge.Identity, fingerprint string) error {
	msg := "this gateway's OpenClaw config fails its security audit: " + strings.Join(reasons, "; ")
	if ce := h.logger.Check(zapcore.InfoLevel, "denied"); ce != nil {
		fields := []zap.Field{zap.String("gateway", h.Gateway), zap.String("reason", "audit_failed"), zap.Int("status", http.StatusServiceUnavailable),
			zap.String("remote", r.RemoteAddr), zap.String("method", r.Method), zap.String("path", logPath(r))}
		if id != nil {
			fields = append(fields, zap.String("login", id.Login), zap.String("node", id.Node))
		}
		if fingerprint != "" {
			fields = append(fields, zap.String("token", fingerprint))
		}
		ce.Write(fields...)
	}
	return h.refuse(w, r, refusal{status: http.StatusServiceUnavailable, reason: "audit_failed", message: msg,
		gateway: h.Gateway, auditChecks: auditCheckIDs(reasons)})
}

// auditCheckIDs picks the check IDs out of the gate's "checkId: title"
// reasons; a reason that is not a finding (the audit could not run) has none.
func auditCheckIDs(reasons []string) []string {
	var ids []string
	for _, reason := range reasons {
		id, _, ok := strings.Cut(reason, ": ")
		if ok && id != "" && !strings.ContainsAny(id, " \t") {
			ids = append(ids, id)
		}
	}
	return ids
}

// refuse hands a refusal to Caddy's error handling, with clawgate's JSON or
// HTML body as the default.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, ref refusal) error {
	if err := refuse(w, r, h.cleaner, &ref); err != nil {
		return err
	}
	edge.WriteDenial(w, r, ref.status, ref.reason, ref.message, ref.retryAfter)
	return nil
}

// requestClientIP is the address the request is attributed to, and its text
// in canonical form (Caddy's own text when it already is, so no new string is
// made). On a clawgate node's listener it is the connection's own peer, the
// address WhoIs answers for: nothing stands in front of a tailnet
// connection, so no header and no trusted_proxies setting may change it.
// Elsewhere it is the client address as Caddy determined it (honouring the
// server's trusted_proxies), falling back to the connection's remote
// address.
func requestClientIP(r *http.Request, onTailnet bool) (netip.Addr, string, bool) {
	var s string
	if !onTailnet {
		s, _ = caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	}
	if s == "" {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return netip.Addr{}, "", false
		}
		s = host
	}
	s, _, _ = strings.Cut(s, "%")
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, "", false
	}
	addr = addr.Unmap()
	var buf [64]byte
	if text := addr.AppendTo(buf[:0]); string(text) != s {
		s = addr.String()
	}
	return addr, s, true
}

func forwardedProto(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// parseUpstream accepts host:port or http://host:port with an IP literal host.
func parseUpstream(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, fmt.Errorf("required: the OpenClaw gateway address, e.g. 127.0.0.1:%d", edge.DefaultGatewayPort)
	}
	hostport := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q: %w", s, err)
		}
		if u.Scheme != "http" {
			return netip.AddrPort{}, fmt.Errorf("%q: scheme must be http (the gateway listens on plain loopback HTTP)", s)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return netip.AddrPort{}, fmt.Errorf("%q: only scheme, host and port are allowed", s)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: want host:port: %w", s, err)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		if strings.EqualFold(host, "localhost") {
			return netip.AddrPort{}, fmt.Errorf("%q: use 127.0.0.1 rather than localhost (OpenClaw trusts the proxy by IP, and localhost may resolve to ::1)", s)
		}
		return netip.AddrPort{}, fmt.Errorf("%q: host must be an IP address, not a name", s)
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(addr.String(), port))
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: bad port", s)
	}
	return ap, nil
}

func (tc TokenConfig) spec() (edge.TokenSpec, error) {
	spec := edge.TokenSpec{Name: tc.Name, User: tc.User, Scopes: tc.Scopes}
	if tc.Name == "" {
		return spec, errors.New("name is required")
	}
	sources := 0
	for _, v := range []string{tc.Secret, tc.Env, tc.File, tc.SHA256} {
		if v != "" {
			sources++
		}
	}
	if sources != 1 {
		return spec, fmt.Errorf("token %q: exactly one of secret (or the older env or file) and sha256 must be set", tc.Name)
	}
	var err error
	switch {
	case tc.Secret != "":
		if spec.Secret, err = readSecret(tc.Secret); err != nil {
			return spec, fmt.Errorf("token %q: secret: %w", tc.Name, err)
		}
	case tc.Env != "" || tc.File != "":
		if spec.Secret, err = readLegacySecret(tc.Env, tc.File); err != nil {
			return spec, fmt.Errorf("token %q: %w", tc.Name, err)
		}
	default:
		if spec.Hash, err = decodeSHA256(tc.SHA256); err != nil {
			return spec, fmt.Errorf("token %q: sha256: %w", tc.Name, err)
		}
	}
	if tc.Expires != "" {
		if spec.Expires, err = time.Parse(time.RFC3339, tc.Expires); err != nil {
			return spec, fmt.Errorf("token %q: expires: want RFC 3339 like 2027-01-31T00:00:00Z: %w", tc.Name, err)
		}
	}
	return spec, nil
}

func (jc *JWTConfig) config() (edge.JWTConfig, error) {
	cfg := edge.JWTConfig{
		Algorithms: jc.Algorithms,
		Issuer:     jc.Issuer,
		Audience:   jc.Audience,
		Leeway:     time.Duration(jc.Leeway),
		UserClaim:  jc.UserClaim,
		ScopeClaim: jc.ScopeClaim,
		MaxLength:  jc.MaxLength,
	}
	for _, src := range []struct{ setting, placeholder string }{
		{"hmac_secret", jc.HMACSecret},
		{"hmac_secret_env", legacyIf(jc.HMACSecretEnv, "env")},
		{"hmac_secret_file", legacyIf(jc.HMACSecretFile, "file")},
	} {
		if src.placeholder == "" {
			continue
		}
		secret, err := readSecret(src.placeholder)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", src.setting, err)
		}
		cfg.HMACSecrets = append(cfg.HMACSecrets, secret)
	}
	for _, f := range jc.PublicKeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return cfg, fmt.Errorf("public_key_files: %w", err)
		}
		keys, err := edge.ParsePublicKeysPEM(data)
		if err != nil {
			return cfg, fmt.Errorf("public_key_files: %s: %w", f, err)
		}
		cfg.PublicKeys = append(cfg.PublicKeys, keys...)
	}
	if jc.JWKSFile != "" {
		data, err := os.ReadFile(jc.JWKSFile)
		if err != nil {
			return cfg, fmt.Errorf("jwks_file: %w", err)
		}
		byID, octs, err := edge.ParseJWKS(data)
		if err != nil {
			return cfg, fmt.Errorf("jwks_file: %s: %w", jc.JWKSFile, err)
		}
		cfg.KeysByID = byID
		cfg.HMACSecrets = append(cfg.HMACSecrets, octs...)
	}
	return cfg, nil
}

// legacyIf is the placeholder of an older env or file setting, or "".
func legacyIf(v, kind string) string {
	if v == "" {
		return ""
	}
	return "{" + kind + "." + v + "}"
}

func decodeSHA256(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:"))
	if err != nil || len(b) != 32 {
		return nil, errors.New("want 64 hex characters")
	}
	return b, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
