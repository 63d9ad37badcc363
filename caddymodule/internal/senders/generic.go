package senders

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// The generic provider covers webhooks signed with HMAC-SHA256 over the raw body, such as the
// WhatsApp Cloud API (X-Hub-Signature-256: sha256=<hex>), with the senders found at configured
// JSON pointers.

// errMissingSender marks a pointer that reached an array element through its last wildcard but
// found no sender below it: that element is an item without an identifiable sender.
var errMissingSender = errors.New("matched item has no sender")

// pointer is a parsed RFC 6901 JSON pointer whose "*" or "[]" segments stand for every array element.
type pointer struct {
	raw      string
	segs     []segment
	lastWild int // index of the last wildcard segment, -1 if none
}

type segment struct {
	key  string
	wild bool
}

func parsePointer(s string) (pointer, error) {
	if !strings.HasPrefix(s, "/") {
		return pointer{}, fmt.Errorf("%q is not a JSON pointer (it must start with /)", s)
	}
	p := pointer{raw: s, lastWild: -1}
	for i, part := range strings.Split(s[1:], "/") {
		if part == "*" || part == "[]" {
			p.segs = append(p.segs, segment{wild: true})
			p.lastWild = i
			continue
		}
		// RFC 6901: "~1" is "/", "~0" is "~", and "~" followed by anything else is an error.
		for j := 0; j < len(part); j++ {
			if part[j] == '~' && (j+1 >= len(part) || (part[j+1] != '0' && part[j+1] != '1')) {
				return pointer{}, fmt.Errorf("%q: bad escape in segment %q (use ~0 for ~ and ~1 for /)", s, part)
			}
		}
		part = strings.ReplaceAll(part, "~1", "/")
		part = strings.ReplaceAll(part, "~0", "~")
		p.segs = append(p.segs, segment{key: part})
	}
	return p, nil
}

// walk calls emit for every value the pointer reaches from v, starting at segment i. A segment
// that meets a value of the wrong type (a wildcard on a non-array, a key on a scalar or null) is an
// error: the gateway would read that payload differently from what the path describes.
func (p *pointer) walk(v *value, i int, emit func(*value) error) error {
	if i == len(p.segs) {
		return emit(v)
	}
	seg := p.segs[i]
	if seg.wild {
		if v.kind != kindArray {
			return fmt.Errorf("%s: segment %d: wildcard over a %s", p.raw, i+1, v.kind)
		}
		for j := range v.items {
			if err := p.walk(&v.items[j].val, i+1, emit); err != nil {
				return err
			}
		}
		return nil
	}
	var child *value
	switch v.kind {
	case kindObject:
		child, _ = v.get(seg.key)
	case kindArray:
		idx, ok := arrayIndex(seg.key)
		if !ok {
			return fmt.Errorf("%s: segment %d: %q is not an array index", p.raw, i+1, seg.key)
		}
		if idx < len(v.items) {
			child = &v.items[idx].val
		}
	default:
		return fmt.Errorf("%s: segment %d: cannot index a %s", p.raw, i+1, v.kind)
	}
	if child == nil {
		if p.lastWild >= 0 && i > p.lastWild {
			return errMissingSender
		}
		return nil // the path is absent from this payload: no match
	}
	return p.walk(child, i+1, emit)
}

// arrayIndex parses an RFC 6901 array index: "0" or digits without a leading zero.
func arrayIndex(s string) (int, bool) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// normE164 normalises a phone number as OpenClaw's normalizeE164 does (drop a "whatsapp:"-style
// scheme, keep the digits, prefix "+"), but refuses letters and implausible lengths, which are
// typing mistakes in a config.
func normE164(entry string) (string, bool) {
	s := strings.TrimSpace(entry)
	if i := strings.IndexByte(s, ':'); i > 0 && isScheme(s[:i]) {
		s = strings.TrimSpace(s[i+1:])
	}
	s = strings.TrimPrefix(s, "+")
	var digits []byte
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b >= '0' && b <= '9':
			digits = append(digits, b)
		case b == ' ' || b == '-' || b == '.' || b == '(' || b == ')':
		default:
			return "", false
		}
	}
	if len(digits) < 5 || len(digits) > 15 || digits[0] == '0' {
		return "", false
	}
	return "+" + string(digits), true
}

// isScheme reports whether s looks like a URI scheme such as "whatsapp" or "twilio-sms".
func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		letter := b|0x20 >= 'a' && b|0x20 <= 'z'
		if !letter && (i == 0 || !(b >= '0' && b <= '9' || b == '-')) {
			return false
		}
	}
	return true
}

// payloadE164 normalises a phone number from a payload, where only digits with an optional leading
// "+" are accepted (what WhatsApp sends); anything else stays as it is and matches no entry.
func payloadE164(s string) string {
	d := strings.TrimPrefix(s, "+")
	if d == "" || len(d) > 15 || strings.TrimLeft(d, "0123456789") != "" {
		return s
	}
	return "+" + d
}

func (c *Checker) initGeneric(cfg Config) error {
	if cfg.SignatureHeader == "" {
		return errors.New("signature_header is required (e.g. X-Hub-Signature-256)")
	}
	if strings.ContainsAny(cfg.SignatureHeader, " \t:\r\n") {
		return fmt.Errorf("signature_header %q is not a header name", cfg.SignatureHeader)
	}
	c.sigHeader = cfg.SignatureHeader
	c.sigPrefix = cfg.SignaturePrefix
	switch cfg.SignatureEncoding {
	case "", "hex":
	case "base64":
		c.sigBase64 = true
	default:
		return fmt.Errorf("signature_encoding %q: want hex or base64", cfg.SignatureEncoding)
	}
	switch cfg.SenderFormat {
	case "":
	case "e164":
		c.e164 = true
	default:
		return fmt.Errorf("sender_format %q: want e164 or nothing", cfg.SenderFormat)
	}
	c.allowNoSender = cfg.AllowNoSender
	if len(cfg.SenderPaths) == 0 {
		return errors.New("sender_paths is required (e.g. /entry/*/changes/*/value/messages/*/from)")
	}
	for i, s := range cfg.SenderPaths {
		p, err := parsePointer(s)
		if err != nil {
			return fmt.Errorf("sender_paths[%d]: %w", i, err)
		}
		c.paths = append(c.paths, p)
	}
	for i, e := range cfg.Allow {
		s := strings.TrimSpace(e)
		switch {
		case s == "*":
		case s == "":
			return fmt.Errorf("allow[%d] is empty", i)
		case c.e164:
			n, ok := normE164(s)
			if !ok {
				return fmt.Errorf("allow[%d]: %q is not a phone number in E.164 form (+15551234567)", i, e)
			}
			s = n
		}
		c.addAllow(s)
	}
	return nil
}

func (c *Checker) checkGeneric(h http.Header, body []byte) Verdict {
	sig, ok := singleHeader(h, c.sigHeader)
	if !ok {
		return Verdict{Reason: ReasonBadSignature}
	}
	enc, ok := trimPrefixFold(sig, c.sigPrefix)
	if !ok {
		return Verdict{Reason: ReasonBadSignature}
	}
	var want []byte
	var err error
	if c.sigBase64 {
		want, err = base64.StdEncoding.Strict().DecodeString(enc)
	} else {
		want, err = hex.DecodeString(enc)
	}
	if err != nil || !c.validMAC(want, body) {
		return Verdict{Reason: ReasonBadSignature}
	}
	root, err := parseObject(body)
	if err != nil {
		return Verdict{Reason: ReasonUnparsable}
	}
	var col collector
	emit := func(v *value) error {
		id, ok := idString(v)
		if !ok {
			return fmt.Errorf("sender is a %s, not an id", v.kind)
		}
		if c.e164 {
			id = payloadE164(id)
		}
		col.addSender(id)
		return nil
	}
	for i := range c.paths {
		err := c.paths[i].walk(&root, 0, emit)
		if errors.Is(err, errMissingSender) {
			col.missing = true
			continue
		}
		if err != nil {
			return Verdict{Reason: ReasonUnparsable}
		}
	}
	if len(col.senders) == 0 && !col.missing && c.allowNoSender {
		return Verdict{Allowed: true}
	}
	return col.verdict(c.allowed, nil)
}
