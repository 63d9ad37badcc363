package senders

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Slack signs every request it sends to a Request URL: X-Slack-Signature is "v0=" plus the hex
// HMAC-SHA256, keyed with the signing secret, of "v0:" + X-Slack-Request-Timestamp + ":" + body.
// Events API callbacks are JSON; slash commands and interactivity are form-encoded, the latter with
// a JSON "payload" field.

func (c *Checker) initSlack(cfg Config) error {
	c.teamUsers = make(map[string]struct{})
	for i, e := range cfg.Allow {
		s := strings.TrimSpace(e)
		if s == "*" {
			c.allowAll = true
			continue
		}
		bad := func() error {
			return fmt.Errorf("allow[%d]: %q is not a Slack user id (want U…/W…, slack:U…, user:U… or team:T…:user:U…; names are not matched at the edge)", i, e)
		}
		if rest, ok := trimPrefixFold(s, "team:"); ok {
			rest = strings.ToUpper(rest)
			team, user, ok := strings.Cut(rest, ":USER:")
			if !ok || !isSlackID(team, "T") || !isSlackID(user, "UW") {
				return bad()
			}
			c.teamUsers[team+"|"+user] = struct{}{}
			continue
		}
		if rest, ok := trimPrefixFold(s, "slack:"); ok {
			s = rest
		} else if rest, ok := trimPrefixFold(s, "user:"); ok {
			s = rest
		}
		s = strings.ToUpper(strings.TrimSpace(s))
		if !isSlackID(s, "UW") {
			return bad()
		}
		c.addAllow(s)
	}
	return nil
}

// isSlackID reports whether s is an upper-case Slack id starting with one of the bytes in first.
func isSlackID(s, first string) bool {
	if len(s) < 2 || !strings.Contains(first, s[:1]) {
		return false
	}
	return isUpperAlnum(s)
}

// isUpperAlnum reports whether s is non-empty and only A-Z and 0-9: the alphabet of every Slack id.
func isUpperAlnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'A' && b <= 'Z' || b >= '0' && b <= '9') {
			return false
		}
	}
	return true
}

// slackAllowed matches a sender as reported by slackSender: "U…", or "team:T…:user:U…" when the
// payload named its team. Plain entries match the user in any team; team entries need both.
func (c *Checker) slackAllowed(s string) bool {
	if c.allowAll {
		return true
	}
	team, user := "", s
	if rest, ok := strings.CutPrefix(s, "team:"); ok {
		team, user, _ = strings.Cut(rest, ":user:")
	}
	if _, ok := c.allow[user]; ok {
		return true
	}
	_, ok := c.teamUsers[team+"|"+user]
	return team != "" && ok
}

func (c *Checker) checkSlack(h http.Header, body []byte, now time.Time) Verdict {
	ts, ok := singleHeader(h, "X-Slack-Request-Timestamp")
	if !ok || len(ts) > 12 || strings.TrimLeft(ts, "0123456789") != "" {
		return Verdict{Reason: ReasonBadSignature}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Verdict{Reason: ReasonBadSignature}
	}
	sig, ok := singleHeader(h, "X-Slack-Signature")
	if !ok {
		return Verdict{Reason: ReasonBadSignature}
	}
	hexSig, ok := strings.CutPrefix(sig, "v0=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return Verdict{Reason: ReasonBadSignature}
	}
	want, err := hex.DecodeString(hexSig)
	if err != nil {
		return Verdict{Reason: ReasonBadSignature}
	}
	if !c.validMAC(want, []byte("v0:"), []byte(ts), []byte(":"), body) {
		return Verdict{Reason: ReasonBadSignature}
	}
	// Checked after the signature so that only Slack's own requests are called replays.
	if skew := now.Sub(time.Unix(sec, 0)); skew > c.maxSkew || skew < -c.maxSkew {
		return Verdict{Reason: ReasonStaleTimestamp}
	}

	var col collector
	isForm := false
	if ct := h.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return Verdict{Reason: ReasonUnparsable}
		}
		isForm = mt == "application/x-www-form-urlencoded"
	}
	if isForm {
		err = slackForm(body, &col)
	} else {
		var challenge string
		challenge, err = slackEvent(body, &col)
		if err == nil && challenge != "" {
			return Verdict{Allowed: true, Challenge: challenge}
		}
	}
	if err != nil {
		return Verdict{Reason: ReasonUnparsable}
	}
	return col.verdict(c.slackAllowed, nil)
}

// slackEvent reads an Events API body. It returns the challenge of a url_verification request.
func slackEvent(body []byte, col *collector) (challenge string, err error) {
	root, err := parseObject(body)
	if err != nil {
		return "", err
	}
	typ, err := optString(&root, "type")
	if err != nil {
		return "", err
	}
	switch typ {
	case "url_verification":
		ch, err := optString(&root, "challenge")
		if err != nil {
			return "", err
		}
		if ch == "" {
			return "", errors.New("url_verification without challenge")
		}
		return ch, nil
	case "event_callback":
		team, err := optString(&root, "team_id")
		if err != nil {
			return "", err
		}
		ev, ok := root.get("event")
		if !ok || ev.kind != kindObject {
			return "", errors.New("event_callback without an event object")
		}
		// event.user is the actor: a string id, or a user object for team_join and user_change.
		// Bot messages carry bot_id and no user, so they have no sender. An edited message
		// (subtype message_changed) names its author in event.message.user.
		if u, ok := ev.get("user"); ok {
			if err := slackUser(u, team, col); err != nil {
				return "", fmt.Errorf("event.user: %w", err)
			}
		}
		if msg, ok := ev.get("message"); ok && msg.kind == kindObject {
			if u, ok := msg.get("user"); ok {
				if err := slackUser(u, team, col); err != nil {
					return "", fmt.Errorf("event.message.user: %w", err)
				}
			}
		}
	}
	// Other envelope types (app_rate_limited, …) name no sender.
	return "", nil
}

// slackForm reads a slash command (user_id, team_id) or an interactivity request (payload JSON with
// user.id and team.id or user.team_id).
func slackForm(body []byte, col *collector) error {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return err
	}
	for k, vs := range vals {
		// A repeated field has no single meaning, and bracketed keys turn into nested objects in
		// "extended" form parsers (qs), so the gateway could read a different structure.
		if len(vs) != 1 {
			return fmt.Errorf("form field %q repeated", k)
		}
		if strings.ContainsAny(k, "[]") {
			return fmt.Errorf("form field %q has brackets", k)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(vs[0]) {
			return errors.New("form field is not UTF-8")
		}
	}
	if p, ok := vals["payload"]; ok {
		root, err := parseObject([]byte(p[0]))
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		u, ok := root.get("user")
		if ok {
			if u.kind != kindObject {
				return fmt.Errorf("payload.user: %w", errNotObject)
			}
			team, err := optString(u, "team_id")
			if err != nil {
				return err
			}
			if t, ok := root.get("team"); ok && t.kind == kindObject {
				if team, err = optString(t, "id"); err != nil {
					return err
				}
			}
			if err := slackUser(u, team, col); err != nil {
				return fmt.Errorf("payload.user: %w", err)
			}
		}
	}
	if u, ok := vals["user_id"]; ok {
		team := ""
		if t, ok := vals["team_id"]; ok {
			team = t[0]
		}
		if err := slackUser(&value{kind: kindString, s: u[0]}, team, col); err != nil {
			return fmt.Errorf("user_id: %w", err)
		}
	}
	return nil
}

// slackUser adds the sender named by v (an id string, or an object with an id) in team.
func slackUser(v *value, team string, col *collector) error {
	if v.kind == kindObject {
		idv, ok := v.get("id")
		if !ok {
			return errors.New("user object without id")
		}
		v = idv
	}
	id, ok := idString(v)
	if !ok {
		return fmt.Errorf("user id is a %s, not a string", v.kind)
	}
	// Upper-cased because OpenClaw compares Slack ids case-insensitively. Ids outside Slack's
	// alphabet are refused so that the "team:…:user:…" form below can never be ambiguous.
	id, team = strings.ToUpper(id), strings.ToUpper(team)
	if !isUpperAlnum(id) || (team != "" && !isUpperAlnum(team)) {
		return errors.New("id outside Slack's alphabet")
	}
	if team != "" {
		id = "team:" + team + ":user:" + id
	}
	col.addSender(id)
	return nil
}

// optString returns the string member key of object v, "" if absent, and an error if it is present
// with another type.
func optString(v *value, key string) (string, error) {
	f, ok := v.get(key)
	if !ok {
		return "", nil
	}
	if f.kind != kindString {
		return "", fmt.Errorf("%s is a %s, not a string", key, f.kind)
	}
	return f.s, nil
}
