package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/senders"
)

func init() {
	caddy.RegisterModule(Senders{})
}

// Senders is `http.handlers.clawgate_senders`: the sender allowlist of one
// channel webhook route (Telegram, Slack Events API, LINE, or any JSON
// webhook signed with HMAC-SHA256). It buffers the body, checks the
// provider's secret or signature, finds every sender named in the payload
// and forwards the request, byte for byte, only when all of them are
// allowed. Webhooks come from the internet, so the handler needs no tailnet
// identity; on a `clawgate+funnel/<node>` listener it is the only way a
// request may reach a gateway.
//
// Outcomes: a missing or wrong secret or signature, or a Slack timestamp
// outside the replay window, is 401; a body over MaxBody is 413; an
// authentic payload from a sender not on the allowlist (or naming no
// sender, or unparsable) is dropped: answered 200 with an empty body by
// default, so the provider does not retry it, or 403 with OnReject
// "reject". A Slack url_verification request with a valid signature is
// answered by clawgate itself with its challenge. Forwarded requests lose
// every identity and forwarding header the sender added (X-Forwarded-*,
// X-Openclaw-Scopes, Tailscale-*, Forwarded, the gateway's user header),
// as on the guard's routes; the body and the provider's headers pass
// untouched. Every drop is logged
// (provider, route, reason and sender ids, never the message) and counted
// in clawgate_webhook_dropped_total{provider,reason}.
//
// After an admitted request, {clawgate.senders} holds the senders found
// (comma-separated) and {clawgate.provider} the provider.
type Senders struct {
	// Provider is the webhook's dialect: telegram, slack, line or generic.
	// Required.
	Provider string `json:"provider,omitempty"`

	// Allow lists the senders admitted, in OpenClaw's allowFrom formats:
	// Telegram numeric user ids (tg:/telegram: prefixes accepted), Slack user
	// ids (U…, W…, slack:U…, team:T…:user:U…), LINE user ids (U + 32 hex
	// digits), and for generic webhooks exact ids or E.164 numbers (with
	// SenderFormat "e164"). The entry "*" admits every authentic sender; it
	// is logged as a warning at load. Required unless AllowFromGatewayConfig
	// is set; both together admit the union.
	Allow []string `json:"allow,omitempty"`

	// GroupAllow (telegram only) lists the group and supergroup chat ids
	// (negative) whose updates may pass; "*" admits every group. Updates from
	// a group also need their sender on the allowlist. Default: none, so no
	// group update passes unless the gateway config allows groups.
	GroupAllow []string `json:"group_allow,omitempty"`

	// Gateway names the OpenClaw gateway this webhook reaches, as in the
	// `gateway` blocks of the clawgate app. While that gateway's config fails
	// its audit, authentic allowed payloads are answered 503 (the provider
	// retries later) instead of being forwarded. Default: none.
	Gateway string `json:"gateway,omitempty"`

	// AllowFromGatewayConfig adds the sender allowlists of Gateway's
	// openclaw.json: channels.<Channel>.allowFrom, groupAllowFrom and the
	// legacy dm.allowFrom, and for Telegram the keys of groups (the group
	// allowlist, subject to groupPolicy) and each group's allowFrom. Entries
	// are normalised per channel as OpenClaw does; entries OpenClaw would not
	// honour either (such as Telegram @usernames) are skipped with a warning.
	// The lists follow edits of the file without a reload (within a second).
	// Senders approved through OpenClaw's pairing store are not in the file
	// and are not admitted: list them in Allow. While the config cannot be
	// loaded, authentic payloads are answered 503. Requires Gateway.
	// Default: false.
	AllowFromGatewayConfig bool `json:"allow_from_gateway_config,omitempty"`

	// Channel is the key under `channels` in openclaw.json that
	// AllowFromGatewayConfig reads. Default: the provider's name; required
	// for generic webhooks.
	Channel string `json:"channel,omitempty"`

	// Account selects channels.<Channel>.accounts.<Account> in openclaw.json,
	// whose keys override the channel's own, as OpenClaw merges them.
	// Default: the channel's own keys only.
	Account string `json:"account,omitempty"`

	// Secret is the provider's shared secret (Telegram's secret_token, Slack's
	// signing secret, LINE's channel secret, the generic HMAC key), as a
	// placeholder, {env.TELEGRAM_WEBHOOK_SECRET} or {file./path} (a file not
	// readable by other users), read at load; a literal secret is refused,
	// because Caddy's /config would show it. Required (or its older form,
	// SecretFile).
	Secret string `json:"secret,omitempty"`

	// SecretFile is a file holding the secret. Deprecated: write Secret
	// {file./path}.
	SecretFile string `json:"secret_file,omitempty"`

	// OnReject is what an authentic payload that may not pass gets: "ack"
	// (200 with an empty body; the provider considers it delivered) or
	// "reject" (403; most providers retry, then give up or disable the
	// webhook). Default: "ack".
	OnReject string `json:"on_reject,omitempty"`

	// MaxBody caps the request body in bytes; longer bodies get 413.
	// Default: 1 MiB, as OpenClaw's own Telegram webhook.
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxSkew (slack only) is how far X-Slack-Request-Timestamp may be from
	// now, either way. Default: 5m.
	MaxSkew caddy.Duration `json:"max_skew,omitempty"`

	// SenderPaths (generic only, required there) are JSON pointers to the
	// sender ids; a "*" segment stands for every array element, as in the
	// WhatsApp Cloud API's /entry/*/changes/*/value/messages/*/from.
	SenderPaths []string `json:"sender_paths,omitempty"`

	// SignatureHeader (generic only, required there) is the header holding
	// the HMAC-SHA256 of the raw body, such as X-Hub-Signature-256.
	SignatureHeader string `json:"signature_header,omitempty"`

	// SignaturePrefix (generic only) is text before the digest, such as
	// "sha256=". Default: none.
	SignaturePrefix string `json:"signature_prefix,omitempty"`

	// SignatureEncoding (generic only) is hex or base64. Default: hex.
	SignatureEncoding string `json:"signature_encoding,omitempty"`

	// SenderFormat (generic only) is "e164" to compare phone numbers in
	// E.164 form. Default: ids are compared exactly.
	SenderFormat string `json:"sender_format,omitempty"`

	// AllowNoSender (generic only) forwards authentic payloads that name no
	// sender at all, such as WhatsApp delivery statuses. Default: false.
	AllowNoSender bool `json:"allow_no_sender,omitempty"`

	base    senders.Config   // the route without its allowlists
	static  *senders.Checker // with the configured lists; nil when they come from the gateway config
	open    *senders.Checker // admits every authentic sender: authenticity alone
	reject  bool
	maxBody int64
	app     *App
	logger  *zap.Logger
	dropped *prometheus.CounterVec
	now     func() time.Time

	dynamic *dynamicLists // the lists from the gateway's config; nil with static lists
}

// dynamicLists holds the lists built from the gateway's latest config.
type dynamicLists struct {
	mu      sync.Mutex // serialises rebuilds
	current atomic.Pointer[senderLists]
}

// senderLists is an allowlist built from one load of the gateway's config.
type senderLists struct {
	cfg     *audit.Config
	key     string           // the entries, to notice when a reload changed nothing
	checker *senders.Checker // nil when it could not be built: fail closed
	empty   bool             // no sender entries at all: checker admits any, the handler refuses all
}

// CaddyModule returns the Caddy module information.
func (Senders) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.clawgate_senders",
		New: func() caddy.Module { return new(Senders) },
	}
}

// Provision loads the secret and compiles the route's checks.
func (s *Senders) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	if err := checkListenersAtProvision(ctx); err != nil {
		return err
	}
	applyServerTimeouts(ctx, s.logger)
	if s.now == nil {
		s.now = time.Now
	}
	s.Provider = strings.ToLower(strings.TrimSpace(s.Provider))
	if s.Channel == "" && senders.Provider(s.Provider) != senders.Generic {
		s.Channel = s.Provider
	}
	if err := s.Validate(); err != nil {
		return err
	}
	s.reject = s.OnReject == "reject"

	if s.SecretFile != "" && s.Secret == "" {
		ph := legacyIf(s.SecretFile, "file")
		warnDeprecated(s.logger, "clawgate_senders: secret_file "+s.SecretFile, "secret "+ph, `"secret": "`+ph+`"`)
	}
	secret, err := s.secret()
	if err != nil {
		return fmt.Errorf("clawgate_senders.%w", err)
	}
	s.base = s.checkConfig(secret)

	open := s.base
	open.Allow = []string{"*"}
	if open.Provider == senders.Telegram {
		open.GroupAllow = []string{"*"}
	}
	if s.open, err = senders.New(open); err != nil {
		return fmt.Errorf("clawgate_senders: %w", err)
	}
	s.maxBody = s.open.MaxBody()

	// The configured lists are checked now even when the gateway's config
	// adds to them, so a typo fails the load rather than every request.
	static := s.base
	static.Allow, static.GroupAllow = s.Allow, s.GroupAllow
	if s.AllowFromGatewayConfig && len(static.Allow) == 0 {
		static.Allow = []string{"*"}
	}
	chk, err := senders.New(static)
	if err != nil {
		return fmt.Errorf("clawgate_senders: %w", err)
	}
	if s.AllowFromGatewayConfig {
		s.dynamic = new(dynamicLists)
	} else {
		s.static = chk
	}
	for _, field := range []struct {
		name    string
		entries []string
	}{{"allow", s.Allow}, {"group_allow", s.GroupAllow}} {
		if senders.AdmitsAll(field.entries) {
			s.logger.Warn(`clawgate_senders: "*" in `+field.name+` admits every authentic sender: the route checks signatures only`,
				zap.String("provider", s.Provider), zap.String("gateway", s.Gateway))
		}
	}

	if s.Gateway != "" {
		appIface, err := ctx.AppIfConfigured(appID)
		if err != nil {
			return fmt.Errorf("clawgate_senders.gateway: %q: the clawgate app has no gateways configured: %w", s.Gateway, err)
		}
		s.app = appIface.(*App)
		if s.app.gates[s.Gateway] == nil {
			return fmt.Errorf("clawgate_senders.gateway: %q is not a gateway of the clawgate app; add `gateway %s { config … }` to the clawgate global option", s.Gateway, s.Gateway)
		}
	}

	s.dropped = newDroppedCounter(ctx.GetMetricsRegistry())
	return nil
}

// Validate refuses settings that cannot work together.
func (s *Senders) Validate() error {
	switch senders.Provider(s.Provider) {
	case senders.Telegram, senders.Slack, senders.LINE, senders.Generic:
	case "":
		return errors.New("clawgate_senders.provider: required: telegram, slack, line or generic")
	default:
		return fmt.Errorf("clawgate_senders.provider: unknown provider %q (want telegram, slack, line or generic)", s.Provider)
	}
	switch s.OnReject {
	case "", "ack", "reject":
	default:
		return fmt.Errorf("clawgate_senders.on_reject: %q: want ack or reject", s.OnReject)
	}
	if s.AllowFromGatewayConfig {
		if s.Gateway == "" {
			return errors.New("clawgate_senders.allow_from_gateway_config: name the gateway whose openclaw.json to read")
		}
		if s.Channel == "" {
			return errors.New("clawgate_senders.channel: required with allow_from_gateway_config for generic webhooks: the key under `channels` in openclaw.json")
		}
	} else if s.Account != "" || (s.Channel != "" && s.Channel != s.Provider) {
		return errors.New("clawgate_senders.channel and account apply only with allow_from_gateway_config")
	}
	if s.MaxBody < 0 {
		return errors.New("clawgate_senders.max_body: must not be negative")
	}
	return nil
}

// checkConfig is the route's senders.Config without its allowlists.
func (s *Senders) checkConfig(secret []byte) senders.Config {
	return senders.Config{
		Provider:          senders.Provider(s.Provider),
		Secret:            secret,
		SenderPaths:       s.SenderPaths,
		SignatureHeader:   s.SignatureHeader,
		SignaturePrefix:   s.SignaturePrefix,
		SignatureEncoding: s.SignatureEncoding,
		SenderFormat:      s.SenderFormat,
		AllowNoSender:     s.AllowNoSender,
		MaxBody:           s.MaxBody,
		MaxSkew:           time.Duration(s.MaxSkew),
	}
}

// secret resolves the configured secret.
func (s *Senders) secret() ([]byte, error) {
	switch {
	case s.Secret != "" && s.SecretFile != "":
		return nil, errors.New("secret: secret and secret_file are mutually exclusive")
	case s.Secret != "":
		b, err := readSecret(s.Secret)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		return b, nil
	case s.SecretFile != "":
		b, err := readLegacySecret("", s.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("secret_file: %w", err)
		}
		return b, nil
	}
	return nil, errors.New("secret: required: the provider's secret as {env.VAR} or {file./path}")
}

// ServeHTTP forwards the request only when it is authentic and every sender
// in it is allowed.
func (s *Senders) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.ContentLength > s.maxBody {
		return s.drop(w, r, http.StatusRequestEntityTooLarge, senders.ReasonBodyTooLarge, "the webhook body is too large", senders.Verdict{})
	}
	body, err := senders.ReadBody(r.Body, s.maxBody)
	if errors.Is(err, senders.ErrBodyTooLarge) {
		return s.drop(w, r, http.StatusRequestEntityTooLarge, senders.ReasonBodyTooLarge, "the webhook body is too large", senders.Verdict{})
	}
	if err != nil {
		return s.drop(w, r, http.StatusBadRequest, "unreadable_body", "the webhook body could not be read", senders.Verdict{})
	}

	chk, empty, unavailable := s.checker()
	v := chk.Check(r.Header, body, s.now())
	if empty && v.Allowed && len(v.Senders) > 0 {
		v = senders.Verdict{Reason: senders.ReasonSenderNotAllowed, Senders: v.Senders, Groups: v.Groups, Rejected: v.Senders}
	}

	switch v.Reason {
	case "":
	case senders.ReasonBadSignature, senders.ReasonStaleTimestamp:
		return s.drop(w, r, http.StatusUnauthorized, v.Reason, "the webhook secret or signature does not match", v)
	case senders.ReasonBodyTooLarge:
		return s.drop(w, r, http.StatusRequestEntityTooLarge, v.Reason, "the webhook body is too large", v)
	default:
		if s.reject {
			return s.drop(w, r, http.StatusForbidden, v.Reason, "this sender may not reach the assistant", v)
		}
		return s.drop(w, r, http.StatusOK, v.Reason, "", v)
	}

	if v.Challenge != "" {
		// Answered here: the challenge is authentic and carries no sender, so
		// nothing in it needs the gateway, and Request URL verification works
		// whatever state the gateway is in.
		out, _ := json.Marshal(struct {
			Challenge string `json:"challenge"`
		}{v.Challenge})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
		s.debug(r, "slack url_verification answered", v)
		return nil
	}
	if unavailable {
		w.Header().Set("Retry-After", "10")
		return s.drop(w, r, http.StatusServiceUnavailable, "gateway_config_unavailable", "the allowlist cannot be read; retry later", v)
	}
	if s.app != nil {
		s.app.awaitFirstAudit(r.Context(), s.Gateway)
		if blocked, reasons := s.app.gateStatus(s.Gateway); blocked {
			// The reasons are the gateway's config findings: for the log, not
			// for the internet.
			s.logger.Warn("webhook held back: the gateway's OpenClaw config fails its audit",
				zap.String("gateway", s.Gateway), zap.Strings("reasons", reasons))
			w.Header().Set("Retry-After", "30")
			code, _ := s.app.gateRefusal(s.Gateway)
			if code == "" {
				code = "audit_failed" // the verdict changed since gateStatus; still refuse this one
			}
			return s.drop(w, r, http.StatusServiceUnavailable, code, "the gateway is not serving; retry later", v)
		}
	}

	// Webhook traffic carries no identity: nothing the sender adds may pass
	// for the guard's word when the route reaches the gateway's main port
	// (Slack's HTTP mode does), whatever the gateway's user header is called.
	var extra []string
	if uh := senders.GatewayUserHeader(s.gatewayTree()); uh != "" {
		extra = []string{uh}
	}
	edge.CleanRequestHeaders(r.Header, append(extra, edge.DefaultUserHeader))

	// The gateway checks the same signature over the same bytes.
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))

	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("clawgate.senders", strings.Join(v.Senders, ","))
		repl.Set("clawgate.provider", s.Provider)
	}
	s.debug(r, "webhook admitted", v)
	return next.ServeHTTP(w, r)
}

// checker returns the Checker for this request: the configured one, or the
// one built from the gateway's latest config. empty means no sender is on
// the list (the checker then admits any, for authenticity, and the caller
// refuses every sender); unavailable means the list cannot be known now.
func (s *Senders) checker() (chk *senders.Checker, empty, unavailable bool) {
	if s.static != nil {
		return s.static, false, false
	}
	cfg := s.app.gatewayConfig(s.Gateway)
	if cfg == nil {
		return s.open, false, true
	}
	lists := s.dynamic.current.Load()
	if lists == nil || lists.cfg != cfg {
		lists = s.rebuild(cfg)
	}
	if lists.checker == nil {
		return s.open, false, true
	}
	return lists.checker, lists.empty, false
}

// gatewayTree returns the gateway's latest config tree, or nil.
func (s *Senders) gatewayTree() map[string]any {
	if s.app == nil {
		return nil
	}
	if cfg := s.app.gatewayConfig(s.Gateway); cfg != nil {
		return cfg.Tree
	}
	return nil
}

// rebuild makes the lists for a newly loaded gateway config; the gate loads
// the file again whenever one of its inputs may have changed and once a
// minute regardless, so most rebuilds find the same entries and keep the
// Checker.
func (s *Senders) rebuild(cfg *audit.Config) *senderLists {
	s.dynamic.mu.Lock()
	defer s.dynamic.mu.Unlock()
	prev := s.dynamic.current.Load()
	if prev != nil && prev.cfg == cfg {
		return prev
	}
	allow, groups, skipped := senders.GatewayLists(cfg.Tree, s.Channel, s.Account, s.base)
	allow = senders.MergeEntries(s.Allow, allow)
	groups = senders.MergeEntries(s.GroupAllow, groups)
	key := strings.Join(allow, "\n") + "\x00" + strings.Join(groups, "\n")
	if prev != nil && prev.key == key {
		next := *prev
		next.cfg = cfg
		s.dynamic.current.Store(&next)
		return &next
	}

	next := &senderLists{cfg: cfg, key: key, empty: len(allow) == 0}
	c := s.base
	c.Allow, c.GroupAllow = allow, groups
	if next.empty {
		c.Allow = []string{"*"}
	}
	chk, err := senders.New(c)
	if err != nil {
		s.logger.Error("sender allowlist from the gateway's config cannot be used; authentic webhooks get 503 until it is fixed",
			zap.String("gateway", s.Gateway), zap.String("channel", s.Channel), zap.Error(err))
	} else {
		next.checker = chk
		fields := []zap.Field{zap.String("gateway", s.Gateway), zap.String("channel", s.Channel), zap.String("account", s.Account),
			zap.Int("senders", len(allow)), zap.Int("groups", len(groups))}
		if len(skipped) > 0 {
			fields = append(fields, zap.Strings("skipped_entries", skipped))
		}
		s.logger.Info("sender allowlist loaded from the gateway's OpenClaw config", fields...)
		if len(skipped) > 0 {
			s.logger.Warn("entries of the gateway's allowlists that OpenClaw would not honour either are skipped",
				zap.String("gateway", s.Gateway), zap.String("channel", s.Channel), zap.Strings("entries", skipped))
		}
		if slices.Contains(allow, "*") || slices.Contains(groups, "*") {
			s.logger.Warn(`the gateway's allowlist holds "*": every authentic sender passes this webhook route`,
				zap.String("gateway", s.Gateway), zap.String("channel", s.Channel))
		}
		if next.empty {
			s.logger.Warn("the gateway's config allows no sender on this channel: every webhook is dropped",
				zap.String("gateway", s.Gateway), zap.String("channel", s.Channel))
		}
	}
	s.dynamic.current.Store(next)
	return next
}

// drop answers a request that is not forwarded, logs it (never the body)
// and counts it. status 200 is the silent acknowledgement.
func (s *Senders) drop(w http.ResponseWriter, r *http.Request, status int, reason, msg string, v senders.Verdict) error {
	s.dropped.WithLabelValues(s.Provider, reason).Inc()
	if ce := s.logger.Check(zapcore.InfoLevel, "webhook dropped"); ce != nil {
		fields := []zap.Field{zap.String("provider", s.Provider), zap.String("reason", reason), zap.Int("status", status),
			zap.String("route", r.URL.Path), zap.String("remote", r.RemoteAddr)}
		if s.Gateway != "" {
			fields = append(fields, zap.String("gateway", s.Gateway))
		}
		if len(v.Rejected) > 0 {
			fields = append(fields, zap.Strings("rejected", v.Rejected))
		}
		if len(v.Senders) > 0 {
			fields = append(fields, zap.Strings("senders", v.Senders))
		}
		if len(v.Groups) > 0 {
			fields = append(fields, zap.Strings("groups", v.Groups))
		}
		ce.Write(fields...)
	}
	if status == http.StatusOK {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if err := refuse(w, r, webhookCleaner, &refusal{status: status, reason: reason, message: msg, gateway: s.Gateway}); err != nil {
		return err
	}
	edge.WriteDenial(w, r, status, reason, msg, 0)
	return nil
}

// webhookCleaner removes the identity and forwarding headers a webhook caller
// sent before a refused webhook reaches an error route.
var webhookCleaner = edge.NewHeaderCleaner(nil)

func (s *Senders) debug(r *http.Request, msg string, v senders.Verdict) {
	if ce := s.logger.Check(zapcore.DebugLevel, msg); ce != nil {
		ce.Write(zap.String("provider", s.Provider), zap.String("route", r.URL.Path),
			zap.Strings("senders", v.Senders), zap.Strings("groups", v.Groups))
	}
}

// newDroppedCounter returns clawgate_webhook_dropped_total, registered once
// per metrics registry and shared by every route.
func newDroppedCounter(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "clawgate", Name: "webhook_dropped_total",
		Help: "Channel webhook requests clawgate did not forward to the gateway, by provider and reason.",
	}, []string{"provider", "reason"})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Senders)(nil)
	_ caddy.Validator             = (*Senders)(nil)
	_ caddyhttp.MiddlewareHandler = (*Senders)(nil)
	_ caddyfile.Unmarshaler       = (*Senders)(nil)
)
