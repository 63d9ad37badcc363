// Package senders decides whether a channel webhook (Telegram, Slack Events API, LINE, or any
// HMAC-signed JSON webhook such as the WhatsApp Cloud API) may reach the OpenClaw gateway: the
// request must be authentic (secret token or HMAC signature), and every sender named inside the
// payload must be on the configured allowlist.
//
// It is pure: no Caddy, no logging. The caller reads the body with ReadBody, calls Check with the
// request headers, and forwards the same bytes only when the Verdict is Allowed.
//
// Everything fails closed. A payload that cannot be parsed, that names no sender, that names a
// sender twice in a way two JSON readers could disagree on (duplicate keys), or that mixes allowed
// and unknown senders in one batch is rejected.
package senders

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Provider names the webhook dialect of a route.
type Provider string

// The supported providers.
const (
	Telegram Provider = "telegram" // Bot API webhook (setWebhook with secret_token)
	Slack    Provider = "slack"    // Events API, slash commands and interactivity over HTTP
	LINE     Provider = "line"     // Messaging API webhook
	Generic  Provider = "generic"  // HMAC-SHA256 over the raw body, senders at JSON pointers
)

// Defaults applied by New when the Config leaves a field zero.
const (
	DefaultMaxBody = 1 << 20         // 1 MiB, as OpenClaw's own Telegram webhook
	DefaultMaxSkew = 5 * time.Minute // Slack's recommended replay window
)

// Reason codes carried by a Verdict that is not Allowed. They are stable and safe to show to the
// caller and to log: none contains request data.
const (
	ReasonBadSignature     = "bad_signature"      // missing, repeated, malformed or wrong secret/signature/timestamp header
	ReasonStaleTimestamp   = "stale_timestamp"    // Slack request timestamp outside MaxSkew (a replay, or a skewed clock)
	ReasonBodyTooLarge     = "body_too_large"     // body longer than MaxBody
	ReasonUnparsable       = "unparsable"         // not strict JSON / form, or an id of the wrong type
	ReasonNoSender         = "no_sender"          // authentic, but no sender could be identified
	ReasonSenderNotAllowed = "sender_not_allowed" // at least one sender is not on Allow
	ReasonGroupNotAllowed  = "group_not_allowed"  // Telegram: a group chat not on GroupAllow
)

// Config describes one webhook route. The zero value is not valid: Provider, Secret and Allow are
// required, and generic routes also need SenderPaths and SignatureHeader.
type Config struct {
	// Provider selects the payload dialect and the authenticity check. Required.
	Provider Provider

	// Allow lists the senders admitted, in OpenClaw's allowFrom formats for the provider:
	//   telegram: numeric user ids; "tg:"/"telegram:" prefixes are accepted. Negative ids match
	//             messages sent on behalf of a chat (channel posts, anonymous group admins).
	//             "@username" is refused, as OpenClaw does not honour it either.
	//   slack:    user ids "U…"/"W…", "slack:U…", "user:U…", or "team:T…:user:U…" which also
	//             requires the payload's team_id to be T…. Matching ignores case, as OpenClaw's.
	//   line:     user ids "U" + 32 hex digits; "line:" and "line:user:" prefixes are accepted.
	//   generic:  exact strings, or E.164 numbers when SenderFormat is "e164".
	// The single entry "*" admits every sender. It must be written out on purpose: it turns the
	// allowlist off and leaves only the signature check, which defeats the purpose of this package.
	// Required; an empty list is a config error rather than a route that rejects everything.
	Allow []string

	// Secret is the shared secret: Telegram's secret_token, Slack's signing secret, LINE's channel
	// secret, or the generic HMAC key. Required. New copies it.
	Secret []byte

	// SenderPaths (generic only, required there) are RFC 6901 JSON pointers to the sender ids. A
	// segment "*" or "[]" stands for every element of an array, e.g. the WhatsApp Cloud API's
	// "/entry/*/changes/*/value/messages/*/from". Every match is a sender.
	SenderPaths []string

	// SignatureHeader (generic only, required there) names the header holding the HMAC-SHA256 of
	// the raw body, e.g. "X-Hub-Signature-256".
	SignatureHeader string
	// SignaturePrefix (generic only) is text before the digest in that header, e.g. "sha256=".
	// Default: none.
	SignaturePrefix string
	// SignatureEncoding (generic only) is "hex" (default) or "base64" (standard, padded).
	SignatureEncoding string
	// SenderFormat (generic only) is "" (default: ids compared exactly) or "e164" (phone numbers:
	// Allow entries are normalised like OpenClaw's normalizeE164, so "whatsapp:+1 555 0100" and
	// "15550100" are the same; payload ids must be digits with an optional leading "+").
	SenderFormat string
	// AllowNoSender (generic only) admits authentic payloads in which no sender path matches at
	// all, such as WhatsApp Cloud API delivery-status webhooks that carry "statuses" and no
	// "messages". Default false: such payloads are rejected as no_sender. A path that matches an
	// array element lacking the sender field (a message without "from") is rejected regardless.
	AllowNoSender bool

	// MaxBody caps the body length in bytes. Default DefaultMaxBody.
	MaxBody int64
	// MaxSkew (slack only) is how far X-Slack-Request-Timestamp may be from now, either way.
	// Default DefaultMaxSkew.
	MaxSkew time.Duration

	// GroupAllow (telegram only) lists the chat ids (negative, "tg:" prefixes accepted) of groups
	// and supergroups whose updates may pass; "*" admits every group. Updates from a group need
	// their chat on GroupAllow and their sender on Allow (OpenClaw's groupAllowFrom falls back to
	// allowFrom). Default empty: no group updates pass.
	GroupAllow []string
}

// Verdict is the outcome of Check.
type Verdict struct {
	// Allowed reports whether the request may be forwarded.
	Allowed bool
	// Reason is one of the Reason* codes when not Allowed, and "" when Allowed.
	Reason string
	// Senders lists every sender found, normalised and without repeats. It is empty when the
	// request was not authentic: unauthenticated bodies are never parsed.
	Senders []string
	// Groups lists the Telegram group chat ids the update came from.
	Groups []string
	// Rejected lists the senders and groups that are not on their allowlist.
	Rejected []string
	// Challenge is the Slack url_verification challenge to echo. It is set only on an authentic
	// url_verification request, which is Allowed without senders.
	Challenge string
}

// Checker judges requests for one route. It is safe for concurrent use.
type Checker struct {
	provider   Provider
	maxBody    int64
	maxSkew    time.Duration
	secret     []byte
	secretHash [sha256.Size]byte // telegram: compared in constant time against the header's hash

	allowAll bool
	allow    map[string]struct{}

	// telegram
	groupAll   bool
	groupAllow map[string]struct{}

	// slack: "T…|U…" for team-qualified entries
	teamUsers map[string]struct{}

	// generic
	paths         []pointer
	sigHeader     string
	sigPrefix     string
	sigBase64     bool
	e164          bool
	allowNoSender bool
}

// New validates cfg and returns a Checker. Errors name the provider and the field.
func New(cfg Config) (*Checker, error) {
	name := string(cfg.Provider)
	if name == "" {
		return nil, errors.New("senders: provider is required (telegram, slack, line or generic)")
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("senders %s: "+format, append([]any{name}, args...)...)
	}
	c := &Checker{
		provider: cfg.Provider,
		maxBody:  cfg.MaxBody,
		maxSkew:  cfg.MaxSkew,
		allow:    make(map[string]struct{}, len(cfg.Allow)),
	}
	switch cfg.Provider {
	case Telegram, Slack, LINE, Generic:
	default:
		return nil, fmt.Errorf("senders: unknown provider %q (want telegram, slack, line or generic)", name)
	}

	if len(cfg.Secret) == 0 {
		return nil, fail("secret is required")
	}
	c.secret = slices.Clone(cfg.Secret)
	if cfg.Provider == Telegram {
		// Telegram accepts 1-256 characters A-Z, a-z, 0-9, _ and -; any other secret can never match.
		if len(cfg.Secret) > 256 {
			return nil, fail("secret is longer than Telegram's 256 characters")
		}
		for _, b := range cfg.Secret {
			if !isTelegramSecretByte(b) {
				return nil, fail("secret may hold only A-Z, a-z, 0-9, _ and - (Telegram's secret_token alphabet)")
			}
		}
		c.secretHash = sha256.Sum256(cfg.Secret)
	}

	switch {
	case cfg.MaxBody < 0:
		return nil, fail("max_body must not be negative")
	case cfg.MaxBody == 0:
		c.maxBody = DefaultMaxBody
	}
	if cfg.MaxSkew != 0 && cfg.Provider != Slack {
		return nil, fail("max_skew applies only to slack")
	}
	switch {
	case cfg.MaxSkew < 0:
		return nil, fail("max_skew must not be negative")
	case cfg.MaxSkew == 0:
		c.maxSkew = DefaultMaxSkew
	}
	if len(cfg.GroupAllow) > 0 && cfg.Provider != Telegram {
		return nil, fail("group_allow applies only to telegram")
	}
	if cfg.Provider != Generic {
		switch {
		case len(cfg.SenderPaths) > 0:
			return nil, fail("sender_paths applies only to generic")
		case cfg.SignatureHeader != "" || cfg.SignaturePrefix != "" || cfg.SignatureEncoding != "":
			return nil, fail("signature_header, signature_prefix and signature_encoding apply only to generic")
		case cfg.SenderFormat != "":
			return nil, fail("sender_format applies only to generic")
		case cfg.AllowNoSender:
			return nil, fail("allow_no_sender applies only to generic")
		}
	}

	if len(cfg.Allow) == 0 {
		return nil, fail(`allow is empty: list the sender ids to admit (or "*" to admit any authentic sender)`)
	}
	var err error
	switch cfg.Provider {
	case Telegram:
		err = c.initTelegram(cfg)
	case Slack:
		err = c.initSlack(cfg)
	case LINE:
		err = c.initLINE(cfg)
	case Generic:
		err = c.initGeneric(cfg)
	}
	if err != nil {
		return nil, fail("%w", err)
	}
	return c, nil
}

// Provider returns the provider the Checker was built for.
func (c *Checker) Provider() Provider { return c.provider }

// MaxBody returns the body cap in bytes, for ReadBody.
func (c *Checker) MaxBody() int64 { return c.maxBody }

// Check judges one request: h is its header, body its complete raw body, now the current time
// (used for Slack's replay window). Authenticity is checked before the body is parsed.
func (c *Checker) Check(h http.Header, body []byte, now time.Time) Verdict {
	if int64(len(body)) > c.maxBody {
		return Verdict{Reason: ReasonBodyTooLarge}
	}
	switch c.provider {
	case Telegram:
		return c.checkTelegram(h, body)
	case Slack:
		return c.checkSlack(h, body, now)
	case LINE:
		return c.checkLINE(h, body)
	case Generic:
		return c.checkGeneric(h, body)
	}
	return Verdict{Reason: ReasonBadSignature} // unreachable for a Checker made by New
}

// singleHeader returns the only value of header name, and false when it is absent or repeated:
// a repeated signature header is ambiguous (which one would the gateway check?), so it fails.
func singleHeader(h http.Header, name string) (string, bool) {
	vs := h.Values(name)
	if len(vs) != 1 || vs[0] == "" {
		return "", false
	}
	return vs[0], true
}

// collector gathers the senders and groups of one payload and judges them.
type collector struct {
	senders []string
	groups  []string
	// seen indexes senders and groups once there are many, so that a large batch (a 1 MiB body
	// can name tens of thousands) is deduplicated in linear time.
	seen map[string]struct{}
	// missing records an item of a batch (a LINE event, a matched array element) that carries no
	// sender: the whole batch is then no_sender, whatever the other items say.
	missing bool
}

func (col *collector) addSender(s string) { col.senders = col.add(col.senders, "s", s) }

func (col *collector) addGroup(g string) { col.groups = col.add(col.groups, "g", g) }

// add appends v to list unless it is already there; ns keeps senders and groups apart in seen.
func (col *collector) add(list []string, ns, v string) []string {
	if col.seen == nil && len(list) < 16 {
		if slices.Contains(list, v) {
			return list
		}
		return append(list, v)
	}
	if col.seen == nil {
		col.seen = make(map[string]struct{})
		for _, s := range col.senders {
			col.seen["s"+s] = struct{}{}
		}
		for _, g := range col.groups {
			col.seen["g"+g] = struct{}{}
		}
	}
	if _, dup := col.seen[ns+v]; dup {
		return list
	}
	col.seen[ns+v] = struct{}{}
	return append(list, v)
}

// verdict judges collected senders with senderOK and groups with groupOK (nil: no groups expected).
// A payload without senders, or with an item missing its sender, is no_sender; senders are judged
// before groups.
func (col *collector) verdict(senderOK, groupOK func(string) bool) Verdict {
	v := Verdict{Senders: col.senders, Groups: col.groups}
	if len(col.senders) == 0 || col.missing {
		v.Reason = ReasonNoSender
		return v
	}
	for _, s := range col.senders {
		if !senderOK(s) {
			v.Rejected = append(v.Rejected, s)
		}
	}
	if len(v.Rejected) > 0 {
		v.Reason = ReasonSenderNotAllowed
		return v
	}
	for _, g := range col.groups {
		if groupOK == nil || !groupOK(g) {
			v.Rejected = append(v.Rejected, g)
		}
	}
	if len(v.Rejected) > 0 {
		v.Reason = ReasonGroupNotAllowed
		return v
	}
	v.Allowed = true
	return v
}

// allowed reports whether a normalised sender is on Allow.
func (c *Checker) allowed(s string) bool {
	if c.allowAll {
		return true
	}
	_, ok := c.allow[s]
	return ok
}

// addAllow records normalised Allow entries, treating "*" specially.
func (c *Checker) addAllow(entry string) {
	if entry == "*" {
		c.allowAll = true
		return
	}
	c.allow[entry] = struct{}{}
}

// ErrBodyTooLarge is returned by ReadBody when the body is longer than its cap.
var ErrBodyTooLarge = errors.New("senders: body too large")

// ReadBody reads r to the end, holding at most max+1 bytes: the buffer never grows past that, so a
// huge or endless body costs no more memory than a body one byte over the cap. It returns
// ErrBodyTooLarge when r has more than max bytes. max <= 0 means DefaultMaxBody.
func ReadBody(r io.Reader, max int64) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxBody
	}
	limit := max + 1
	buf := make([]byte, 0, min(limit, 4096))
	for {
		if len(buf) == cap(buf) { // cap < limit here: a full buffer of limit bytes returned below
			next := make([]byte, len(buf), min(limit, int64(2*cap(buf))))
			copy(next, buf)
			buf = next
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return nil, ErrBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading webhook body: %w", err)
		}
	}
}

// validMAC reports whether digest is the HMAC-SHA256, under the route's secret, of the parts
// written one after the other. The comparison takes constant time.
func (c *Checker) validMAC(digest []byte, parts ...[]byte) bool {
	if len(digest) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, c.secret)
	for _, p := range parts {
		mac.Write(p)
	}
	return hmac.Equal(mac.Sum(nil), digest)
}

// trimPrefixFold removes prefix from s, ignoring ASCII case, and reports whether it did.
func trimPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
