package senders

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// LINE signs each webhook with X-Line-Signature: the base64 HMAC-SHA256 of the body keyed with the
// channel secret. The body is {"destination": …, "events": [...]}; each event's source names the
// user (source.userId) and, in group and room chats, the group or room. An authentic body with no
// events is the console's "Verify" call and passes without senders.

func (c *Checker) initLINE(cfg Config) error {
	for i, e := range cfg.Allow {
		id, ok := normLINEID(e)
		if !ok {
			return fmt.Errorf("allow[%d]: %q is not a LINE user id (want U followed by 32 hex digits, optionally prefixed line: or line:user:)", i, e)
		}
		c.addAllow(id)
	}
	return nil
}

// normLINEID normalises an allowlist entry as OpenClaw does (trim, drop "line:user:" or "line:",
// require U + 32 hex digits) and writes the hex in lower case, as LINE sends it.
func normLINEID(entry string) (string, bool) {
	s := strings.TrimSpace(entry)
	if s == "*" {
		return s, true
	}
	if rest, ok := trimPrefixFold(s, "line:user:"); ok {
		s = rest
	} else if rest, ok := trimPrefixFold(s, "line:"); ok {
		s = rest
	}
	if len(s) != 33 || (s[0] != 'U' && s[0] != 'u') {
		return "", false
	}
	hexPart := strings.ToLower(s[1:])
	for i := 0; i < len(hexPart); i++ {
		if b := hexPart[i]; !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f') {
			return "", false
		}
	}
	return "U" + hexPart, true
}

func (c *Checker) checkLINE(h http.Header, body []byte) Verdict {
	sig, ok := singleHeader(h, "X-Line-Signature")
	if !ok {
		return Verdict{Reason: ReasonBadSignature}
	}
	want, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil || !c.validMAC(want, body) {
		return Verdict{Reason: ReasonBadSignature}
	}
	root, err := parseObject(body)
	if err != nil {
		return Verdict{Reason: ReasonUnparsable}
	}
	events, ok := root.get("events")
	if !ok || events.kind != kindArray {
		return Verdict{Reason: ReasonUnparsable}
	}
	if len(events.items) == 0 {
		return Verdict{Allowed: true}
	}
	var col collector
	for i := range events.items {
		if err := lineEvent(&events.items[i].val, &col); err != nil {
			return Verdict{Reason: ReasonUnparsable}
		}
	}
	return col.verdict(c.allowed, nil)
}

// lineEvent adds the sender of one event, or marks the batch as missing one: events in a group or
// room from users who have not shared their profile, and the bot's own join/leave events, carry
// only groupId/roomId.
func lineEvent(ev *value, col *collector) error {
	if ev.kind != kindObject {
		return fmt.Errorf("event: %w", errNotObject)
	}
	src, ok := ev.get("source")
	if !ok {
		col.missing = true
		return nil
	}
	if src.kind != kindObject {
		return fmt.Errorf("source: %w", errNotObject)
	}
	uid, ok := src.get("userId")
	if !ok {
		col.missing = true
		return nil
	}
	if uid.kind != kindString || uid.s == "" {
		return errors.New("source.userId is not a non-empty string")
	}
	col.addSender(uid.s)
	return nil
}
