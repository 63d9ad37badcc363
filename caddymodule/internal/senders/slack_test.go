package senders

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mkSlackEvent(team, event string) string {
	return fmt.Sprintf(`{"token":"XXYYZZ","team_id":%q,"api_app_id":"A0APP0001","event":%s,"type":"event_callback","event_id":"Ev1","event_time":1725000000}`, team, event)
}

func mkSlackForm(fields ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(fields); i += 2 {
		v.Add(fields[i], fields[i+1])
	}
	return v.Encode()
}

func slackConfig(secret []byte) Config {
	return Config{Provider: Slack, Secret: secret, Allow: []string{"slack:" + strings.ToLower(slackAlice), "team:" + slackTeam + ":user:" + slackBob}}
}

// slackNow is the clock of the Slack tables.
var slackNow = time.Unix(1725000000, 0)

// slackCases is the Slack table, for slackConfig at slackNow; it also seeds FuzzSlack.
func slackCases() []bodyCase {
	alice := "team:" + slackTeam + ":user:" + slackAlice
	bob := "team:" + slackTeam + ":user:" + slackBob
	mallet := "team:" + slackTeam + ":user:" + slackMallet
	interactive := func(payload string) string { return mkSlackForm("payload", payload) }
	return []bodyCase{
		{"direct message", slackEventIM, false, want{allowed: true, senders: []string{alice}}},
		{"app_mention from stranger", mkSlackEvent(slackTeam, `{"type":"app_mention","user":"U0MALLET1","text":"<@U0BOT> hi","ts":"1.2","channel":"C1"}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{mallet}, rejected: []string{mallet}}},
		{"team-qualified entry, same team", mkSlackEvent(slackTeam, `{"type":"message","user":"W0BOB0001","text":"hi","channel":"C1"}`), false, want{allowed: true, senders: []string{bob}}},
		{"team-qualified entry, other team", mkSlackEvent("T0002", `{"type":"message","user":"W0BOB0001","text":"hi","channel":"C1"}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{"team:T0002:user:W0BOB0001"}, rejected: []string{"team:T0002:user:W0BOB0001"}}},
		{"team-qualified entry, no team in payload", `{"type":"event_callback","event":{"type":"message","user":"W0BOB0001"}}`, false, want{reason: ReasonSenderNotAllowed, senders: []string{slackBob}, rejected: []string{slackBob}}},
		{"plain entry, any team", mkSlackEvent("T0009", `{"type":"message","user":"U0ALICE01"}`), false, want{allowed: true, senders: []string{"team:T0009:user:U0ALICE01"}}},
		{"lower-case id in payload", mkSlackEvent(slackTeam, `{"type":"message","user":"u0alice01"}`), false, want{allowed: true, senders: []string{alice}}},
		{"user object (team_join)", mkSlackEvent(slackTeam, `{"type":"team_join","user":{"id":"U0ALICE01","name":"alice","team_id":"T0001"}}`), false, want{allowed: true, senders: []string{alice}}},
		{"edited message", mkSlackEvent(slackTeam, `{"type":"message","subtype":"message_changed","message":{"type":"message","user":"U0ALICE01","text":"fixed"},"previous_message":{"type":"message","user":"U0ALICE01","text":"fxed"},"channel":"D1"}`), false, want{allowed: true, senders: []string{alice}}},
		{"edited message naming a stranger", mkSlackEvent(slackTeam, `{"type":"message","user":"U0ALICE01","subtype":"message_changed","message":{"user":"U0MALLET1"}}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{alice, mallet}, rejected: []string{mallet}}},
		{"bot message", mkSlackEvent(slackTeam, `{"type":"message","subtype":"bot_message","bot_id":"B0BOT0001","text":"beep","channel":"C1"}`), false, want{reason: ReasonNoSender}},
		{"bot event with user", mkSlackEvent(slackTeam, `{"type":"message","bot_id":"B0BOT0001","user":"U0ALICE01","text":"via app"}`), false, want{allowed: true, senders: []string{alice}}},
		{"message_deleted", mkSlackEvent(slackTeam, `{"type":"message","subtype":"message_deleted","deleted_ts":"1.2","channel":"C1"}`), false, want{reason: ReasonNoSender}},
		{"app_rate_limited", `{"token":"x","type":"app_rate_limited","team_id":"T0001","minute_rate_limited":1518467820,"api_app_id":"A0APP0001"}`, false, want{reason: ReasonNoSender}},
		{"no type", `{"event":{"user":"U0ALICE01"}}`, false, want{reason: ReasonNoSender}},
		{"url_verification", `{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`, false, want{allowed: true, challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}},
		{"url_verification without challenge", `{"type":"url_verification"}`, false, want{reason: ReasonUnparsable}},
		{"url_verification numeric challenge", `{"type":"url_verification","challenge":42}`, false, want{reason: ReasonUnparsable}},
		{"event_callback without event", `{"type":"event_callback","team_id":"T0001"}`, false, want{reason: ReasonUnparsable}},

		// Slash commands and interactivity (form-encoded).
		{"slash command", mkSlackForm("token", "x", "team_id", slackTeam, "team_domain", "wonderland", "channel_id", "C1", "user_id", slackAlice, "user_name", "alice", "command", "/claw", "text", "status", "response_url", "https://hooks.slack.com/commands/1", "trigger_id", "1.2.3"), true, want{allowed: true, senders: []string{alice}}},
		{"slash command from stranger", mkSlackForm("team_id", slackTeam, "user_id", slackMallet, "command", "/claw"), true, want{reason: ReasonSenderNotAllowed, senders: []string{mallet}, rejected: []string{mallet}}},
		{"slash command, team entry", mkSlackForm("team_id", slackTeam, "user_id", slackBob, "command", "/claw"), true, want{allowed: true, senders: []string{bob}}},
		{"slash command, repeated user_id", "team_id=T0001&user_id=U0MALLET1&user_id=U0ALICE01", true, want{reason: ReasonUnparsable}},
		{"slash command, user_id spelled with escapes", "team_id=T0001&user%5Fid=U0MALLET1&user_id=U0ALICE01", true, want{reason: ReasonUnparsable}},
		{"slash command, bracketed key", "team_id=T0001&user_id=U0ALICE01&user[id]=U0MALLET1", true, want{reason: ReasonUnparsable}},
		{"slash command, semicolon", "team_id=T0001;user_id=U0ALICE01", true, want{reason: ReasonUnparsable}},
		{"slash command, bad escape", "user_id=U0ALICE01&text=%zz", true, want{reason: ReasonUnparsable}},
		{"slash command, not UTF-8", "user_id=U0ALICE01&text=%ff", true, want{reason: ReasonUnparsable}},
		{"slash command, no user", mkSlackForm("team_id", slackTeam, "command", "/claw"), true, want{reason: ReasonNoSender}},
		{"ssl_check", mkSlackForm("ssl_check", "1", "token", "x"), true, want{reason: ReasonNoSender}},
		{"block action", interactive(`{"type":"block_actions","user":{"id":"U0ALICE01","username":"alice","team_id":"T0001"},"team":{"id":"T0001","domain":"wonderland"},"actions":[{"action_id":"a","value":"go"}]}`), true, want{allowed: true, senders: []string{alice}}},
		{"block action from stranger", interactive(`{"type":"block_actions","user":{"id":"U0MALLET1","team_id":"T0001"},"team":{"id":"T0001"}}`), true, want{reason: ReasonSenderNotAllowed, senders: []string{mallet}, rejected: []string{mallet}}},
		{"view submission, team null", interactive(`{"type":"view_submission","team":null,"user":{"id":"W0BOB0001","team_id":"T0001"},"view":{"id":"V1"}}`), true, want{allowed: true, senders: []string{bob}}},
		{"payload and user_id both checked", mkSlackForm("payload", `{"type":"shortcut","user":{"id":"U0ALICE01"},"team":{"id":"T0001"}}`, "user_id", slackMallet, "team_id", slackTeam), true, want{reason: ReasonSenderNotAllowed, senders: []string{alice, mallet}, rejected: []string{mallet}}},
		{"payload with duplicate user", interactive(`{"type":"block_actions","user":{"id":"U0MALLET1"},"user":{"id":"U0ALICE01"}}`), true, want{reason: ReasonUnparsable}},
		{"payload not JSON", interactive(`user=U0ALICE01`), true, want{reason: ReasonUnparsable}},
		{"payload user is a string", interactive(`{"type":"block_actions","user":"U0ALICE01"}`), true, want{reason: ReasonUnparsable}},
		{"payload without user", interactive(`{"type":"block_suggestion","team":{"id":"T0001"}}`), true, want{reason: ReasonNoSender}},

		// Ids the gateway would read differently, or that do not look like Slack's.
		{"duplicate user key", mkSlackEvent(slackTeam, `{"type":"message","user":"U0MALLET1","user":"U0ALICE01"}`), false, want{reason: ReasonUnparsable}},
		{"duplicate event", `{"type":"event_callback","team_id":"T0001","event":{"user":"U0ALICE01"},"event":{"user":"U0MALLET1"}}`, false, want{reason: ReasonUnparsable}},
		{"duplicate type", `{"type":"url_verification","challenge":"c","type":"event_callback","event":{"user":"U0MALLET1"}}`, false, want{reason: ReasonUnparsable}},
		{"user with colon", mkSlackEvent(slackTeam, `{"type":"message","user":"U1:user:U0ALICE01"}`), false, want{reason: ReasonUnparsable}},
		{"team with colon", mkSlackEvent("T0001:user:U0ALICE01", `{"type":"message","user":"U0MALLET1"}`), false, want{reason: ReasonUnparsable}},
		{"numeric user", mkSlackEvent(slackTeam, `{"type":"message","user":123}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{"team:T0001:user:123"}, rejected: []string{"team:T0001:user:123"}}},
		{"empty user", mkSlackEvent(slackTeam, `{"type":"message","user":""}`), false, want{reason: ReasonUnparsable}},
		{"null user", mkSlackEvent(slackTeam, `{"type":"message","user":null}`), false, want{reason: ReasonUnparsable}},
		{"numeric team_id", `{"type":"event_callback","team_id":1,"event":{"user":"U0ALICE01"}}`, false, want{reason: ReasonUnparsable}},
		{"form body sent as JSON", mkSlackForm("user_id", slackAlice), false, want{reason: ReasonUnparsable}},
		{"top-level array", `[` + slackEventIM + `]`, false, want{reason: ReasonUnparsable}},
	}
}

func TestSlack(t *testing.T) {
	secret := newSecret(t)
	c := mustNew(t, slackConfig(secret))
	now := slackNow
	for _, tt := range slackCases() {
		h := slackHeader(secret, now, tt.body)
		if tt.form {
			h.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		checkVerdict(t, tt.name, c.Check(h, []byte(tt.body), now), tt.want)
	}
}

func TestSlackSignature(t *testing.T) {
	secret := newSecret(t)
	c := mustNew(t, Config{Provider: Slack, Secret: secret, Allow: []string{slackAlice}})
	now := time.Unix(1725000000, 0)
	body := slackEventIM
	alice := want{allowed: true, senders: []string{"team:" + slackTeam + ":user:" + slackAlice}}
	valid := slackHeader(secret, now, body)
	with := func(mod func(h http.Header)) http.Header {
		h := valid.Clone()
		mod(h)
		return h
	}
	sigFor := func(key []byte, ts, b string) string {
		return "v0=" + hex.EncodeToString(hmacSHA256(key, []byte("v0:"+ts+":"+b)))
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	tests := []struct {
		name   string
		header http.Header
		body   string
		want   want
	}{
		{"valid", valid, body, alice},
		{"upper-case hex", with(func(h http.Header) {
			h.Set("X-Slack-Signature", "v0="+strings.ToUpper(strings.TrimPrefix(h.Get("X-Slack-Signature"), "v0=")))
		}), body, alice},
		{"charset in content type", with(func(h http.Header) { h.Set("Content-Type", "application/json; charset=utf-8") }), body, alice},
		{"no content type", with(func(h http.Header) { h.Del("Content-Type") }), body, alice},
		{"bad content type", with(func(h http.Header) { h.Set("Content-Type", "application/x-www-form-urlencoded; charset") }), body, want{reason: ReasonUnparsable}},
		{"wrong secret", slackHeader(newSecret(t), now, body), body, want{reason: ReasonBadSignature}},
		{"body changed after signing", valid, strings.Replace(body, slackAlice, slackMallet, 1), want{reason: ReasonBadSignature}},
		{"body with trailing space", valid, body + " ", want{reason: ReasonBadSignature}},
		{"timestamp changed after signing", with(func(h http.Header) { h.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now.Unix()+1, 10)) }), body, want{reason: ReasonBadSignature}},
		{"signature of the body alone", with(func(h http.Header) {
			h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(hmacSHA256(secret, []byte(body))))
		}), body, want{reason: ReasonBadSignature}},
		{"missing signature", with(func(h http.Header) { h.Del("X-Slack-Signature") }), body, want{reason: ReasonBadSignature}},
		{"missing timestamp", with(func(h http.Header) { h.Del("X-Slack-Request-Timestamp") }), body, want{reason: ReasonBadSignature}},
		{"no headers", http.Header{}, body, want{reason: ReasonBadSignature}},
		{"v1 scheme", with(func(h http.Header) {
			h.Set("X-Slack-Signature", "v1="+strings.TrimPrefix(h.Get("X-Slack-Signature"), "v0="))
		}), body, want{reason: ReasonBadSignature}},
		{"no scheme", with(func(h http.Header) { h.Set("X-Slack-Signature", strings.TrimPrefix(h.Get("X-Slack-Signature"), "v0=")) }), body, want{reason: ReasonBadSignature}},
		{"truncated signature", with(func(h http.Header) { s := h.Get("X-Slack-Signature"); h.Set("X-Slack-Signature", s[:len(s)-2]) }), body, want{reason: ReasonBadSignature}},
		{"non-hex signature", with(func(h http.Header) { h.Set("X-Slack-Signature", "v0="+strings.Repeat("zz", 32)) }), body, want{reason: ReasonBadSignature}},
		{"repeated signature", with(func(h http.Header) { h.Add("X-Slack-Signature", h.Get("X-Slack-Signature")) }), body, want{reason: ReasonBadSignature}},
		{"repeated timestamp", with(func(h http.Header) { h.Add("X-Slack-Request-Timestamp", ts) }), body, want{reason: ReasonBadSignature}},
		{"signed negative timestamp", with(func(h http.Header) {
			h.Set("X-Slack-Request-Timestamp", "-"+ts)
			h.Set("X-Slack-Signature", sigFor(secret, "-"+ts, body))
		}), body, want{reason: ReasonBadSignature}},
		{"signed timestamp with plus", with(func(h http.Header) {
			h.Set("X-Slack-Request-Timestamp", "+"+ts)
			h.Set("X-Slack-Signature", sigFor(secret, "+"+ts, body))
		}), body, want{reason: ReasonBadSignature}},
		{"signed huge timestamp", with(func(h http.Header) {
			h.Set("X-Slack-Request-Timestamp", "99999999999999999999")
			h.Set("X-Slack-Signature", sigFor(secret, "99999999999999999999", body))
		}), body, want{reason: ReasonBadSignature}},
		{"signed timestamp in milliseconds", with(func(h http.Header) {
			ms := ts + "000" // 13 digits: not Slack's format (seconds), so malformed rather than stale
			h.Set("X-Slack-Request-Timestamp", ms)
			h.Set("X-Slack-Signature", sigFor(secret, ms, body))
		}), body, want{reason: ReasonBadSignature}},
		{"signed timestamp from 1970", with(func(h http.Header) {
			h.Set("X-Slack-Request-Timestamp", "1")
			h.Set("X-Slack-Signature", sigFor(secret, "1", body))
		}), body, want{reason: ReasonStaleTimestamp}},
		{"url_verification needs the signature", with(func(h http.Header) {
			h.Set("X-Slack-Signature", sigFor(newSecret(t), ts, `{"type":"url_verification","challenge":"c"}`))
		}), `{"type":"url_verification","challenge":"c"}`, want{reason: ReasonBadSignature}},
	}
	for _, tt := range tests {
		checkVerdict(t, tt.name, c.Check(tt.header, []byte(tt.body), now), tt.want)
	}
}

func TestSlackReplayWindow(t *testing.T) {
	secret := newSecret(t)
	signed := time.Unix(1725000000, 0)
	body := slackEventIM
	h := slackHeader(secret, signed, body)
	alice := want{allowed: true, senders: []string{"team:" + slackTeam + ":user:" + slackAlice}}
	tests := []struct {
		name string
		skew time.Duration // configured MaxSkew; 0 = default
		now  time.Time
		want want
	}{
		{"same second", 0, signed, alice},
		{"4m59s later", 0, signed.Add(4*time.Minute + 59*time.Second), alice},
		{"exactly 5m later", 0, signed.Add(5 * time.Minute), alice},
		{"5m01s later (replay)", 0, signed.Add(5*time.Minute + time.Second), want{reason: ReasonStaleTimestamp}},
		{"a day later (replay)", 0, signed.Add(24 * time.Hour), want{reason: ReasonStaleTimestamp}},
		{"exactly 5m early", 0, signed.Add(-5 * time.Minute), alice},
		{"5m01s early (future timestamp)", 0, signed.Add(-5*time.Minute - time.Second), want{reason: ReasonStaleTimestamp}},
		{"1m window, 61s later", time.Minute, signed.Add(61 * time.Second), want{reason: ReasonStaleTimestamp}},
		{"1m window, 60s later", time.Minute, signed.Add(60 * time.Second), alice},
		{"1h window, 59m later", time.Hour, signed.Add(59 * time.Minute), alice},
	}
	for _, tt := range tests {
		c := mustNew(t, Config{Provider: Slack, Secret: secret, Allow: []string{slackAlice}, MaxSkew: tt.skew})
		checkVerdict(t, tt.name, c.Check(h, []byte(body), tt.now), tt.want)
	}
	// A forged request is bad_signature whatever its timestamp.
	c := mustNew(t, Config{Provider: Slack, Secret: secret, Allow: []string{slackAlice}})
	forged := slackHeader(newSecret(t), signed, body)
	checkVerdict(t, "forged and stale", c.Check(forged, []byte(body), signed.Add(time.Hour)), want{reason: ReasonBadSignature})
}

func TestSlackAllowAll(t *testing.T) {
	secret := newSecret(t)
	now := time.Unix(1725000000, 0)
	c := mustNew(t, Config{Provider: Slack, Secret: secret, Allow: []string{"*"}})
	body := mkSlackEvent("T0009", `{"type":"message","user":"U0MALLET1"}`)
	checkVerdict(t, "allow * admits a stranger", c.Check(slackHeader(secret, now, body), []byte(body), now), want{allowed: true, senders: []string{"team:T0009:user:U0MALLET1"}})
	bot := mkSlackEvent("T0009", `{"type":"message","bot_id":"B1"}`)
	checkVerdict(t, "allow * still needs a sender", c.Check(slackHeader(secret, now, bot), []byte(bot), now), want{reason: ReasonNoSender})
	checkVerdict(t, "allow * still needs the signature", c.Check(slackHeader(newSecret(t), now, body), []byte(body), now), want{reason: ReasonBadSignature})
}
