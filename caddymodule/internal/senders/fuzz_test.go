package senders

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fuzz targets feed arbitrary bodies and headers to a Checker, sometimes correctly signed so
// that the parsers are reached, and check with code independent of the package that:
//   - Check never panics;
//   - an Allowed verdict always carries a valid signature (recomputed here);
//   - an Allowed verdict names only allowlisted senders and groups, and no reason;
//   - a verdict that is not Allowed has a known reason, and unauthenticated bodies yield no senders.

var knownReasons = []string{ReasonBadSignature, ReasonStaleTimestamp, ReasonBodyTooLarge, ReasonUnparsable,
	ReasonNoSender, ReasonSenderNotAllowed, ReasonGroupNotAllowed}

// checkInvariants applies the checks every provider shares. signed reports whether the request
// carried a valid signature; senderOK and groupOK are the test's own view of the allowlists.
func checkInvariants(t *testing.T, v Verdict, signed bool, senderOK, groupOK func(string) bool) {
	t.Helper()
	if v.Allowed {
		if !signed {
			t.Fatalf("Allowed without a valid signature: %s", fmtVerdict(v))
		}
		if v.Reason != "" || len(v.Rejected) > 0 {
			t.Fatalf("Allowed with reason or rejections: %s", fmtVerdict(v))
		}
		for _, s := range v.Senders {
			if !senderOK(s) {
				t.Fatalf("Allowed with sender %q not on the allowlist: %s", s, fmtVerdict(v))
			}
		}
		for _, g := range v.Groups {
			if groupOK == nil || !groupOK(g) {
				t.Fatalf("Allowed with group %q not on the allowlist: %s", g, fmtVerdict(v))
			}
		}
		return
	}
	if !slices.Contains(knownReasons, v.Reason) {
		t.Fatalf("denied with unknown reason %q", v.Reason)
	}
	if v.Challenge != "" {
		t.Fatalf("denied verdict carries a challenge: %s", fmtVerdict(v))
	}
	if !signed && (v.Reason != ReasonBadSignature && v.Reason != ReasonBodyTooLarge && v.Reason != ReasonStaleTimestamp || len(v.Senders) > 0) {
		t.Fatalf("unsigned request got past the signature check: %s", fmtVerdict(v))
	}
}

func FuzzTelegram(f *testing.F) {
	secret := []byte("fuzz-Secret_0123456789")
	c := mustNew(f, telegramConfig(secret))
	for _, tt := range telegramCases() {
		f.Add(string(secret), []byte(tt.body))
		f.Add("wrong", []byte(tt.body))
	}
	f.Add(string(secret[:len(secret)-1]), []byte(tgPrivateMessage))
	f.Add("", []byte(tgGroupMessage))
	f.Fuzz(func(t *testing.T, token string, body []byte) {
		h := http.Header{}
		h.Set("X-Telegram-Bot-Api-Secret-Token", token)
		v := c.Check(h, body, time.Now())
		signed := hmac.Equal([]byte(token), secret)
		checkInvariants(t, v, signed,
			func(s string) bool { return s == tgAlice || s == tgChannel },
			func(g string) bool { return g == tgGroup })
		if signed && v.Reason == ReasonBadSignature {
			t.Fatalf("right secret, Check = %s", fmtVerdict(v))
		}
	})
}

func FuzzSlack(f *testing.F) {
	secret := []byte("fuzz-slack-signing-secret")
	c := mustNew(f, slackConfig(secret))
	now := slackNow
	ts := strconv.FormatInt(now.Unix(), 10)
	for _, tt := range slackCases() {
		f.Add([]byte(tt.body), ts, "", true, tt.form)
		f.Add([]byte(tt.body), ts, "v0="+strings.Repeat("00", 32), false, tt.form)
	}
	f.Add([]byte(slackEventIM), "1", "", true, false)
	f.Add([]byte(slackEventIM), ts+"0", "", true, false)
	f.Fuzz(func(t *testing.T, body []byte, ts, sig string, sign, form bool) {
		if sign {
			sig = "v0=" + hex.EncodeToString(hmacSHA256(secret, []byte("v0:"+ts+":"+string(body))))
		}
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", ts)
		h.Set("X-Slack-Signature", sig)
		if form {
			h.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		v := c.Check(h, body, now)

		// The test's own signature and replay-window check.
		want := "v0=" + hex.EncodeToString(hmacSHA256(secret, []byte("v0:"+ts+":"+string(body))))
		signed := ts != "" && strings.EqualFold(sig, want) && strings.HasPrefix(sig, "v0=")
		if sec, err := strconv.ParseInt(ts, 10, 64); v.Allowed && (err != nil || sec < now.Unix()-300 || sec > now.Unix()+300) {
			t.Fatalf("Allowed with timestamp %q outside the window: %s", ts, fmtVerdict(v))
		}
		checkInvariants(t, v, signed, func(s string) bool {
			return s == slackAlice || strings.HasPrefix(s, "team:") && strings.HasSuffix(s, ":user:"+slackAlice) && strings.Count(s, ":") == 3 ||
				s == "team:"+slackTeam+":user:"+slackBob
		}, nil)
		if v.Challenge != "" && len(v.Senders) > 0 {
			t.Fatalf("challenge and senders together: %s", fmtVerdict(v))
		}
	})
}

func FuzzLINE(f *testing.F) {
	secret := []byte("fuzz-line-channel-secret")
	c := mustNew(f, lineConfig(secret))
	for _, tt := range lineCases() {
		f.Add([]byte(tt.body), "", true)
		f.Add([]byte(tt.body), base64.StdEncoding.EncodeToString(make([]byte, 32)), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, sig string, sign bool) {
		good := base64.StdEncoding.EncodeToString(hmacSHA256(secret, body))
		if sign {
			sig = good
		}
		h := http.Header{}
		h.Set("X-Line-Signature", sig)
		v := c.Check(h, body, time.Now())
		checkInvariants(t, v, sig == good, func(s string) bool { return s == lineAlice }, nil)
		if v.Allowed && len(v.Senders) == 0 {
			// Only LINE's verify call, an empty events array, passes without senders.
			var env struct{ Events []json.RawMessage }
			if err := json.Unmarshal(body, &env); err != nil || env.Events == nil || len(env.Events) != 0 {
				t.Fatalf("Allowed without senders, but events is not an empty array: %q", body)
			}
		}
	})
}

func FuzzGeneric(f *testing.F) {
	secret := []byte("fuzz-whatsapp-app-secret")
	strict := mustNew(f, waConfig(secret, nil))
	lenient := mustNew(f, waConfig(secret, func(c *Config) { c.AllowNoSender = true }))
	for _, tt := range waCases() {
		f.Add([]byte(tt.body), "", true)
		f.Add([]byte(tt.body), "sha256="+strings.Repeat("ab", 32), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, sig string, sign bool) {
		good := hex.EncodeToString(hmacSHA256(secret, body))
		if sign {
			sig = "sha256=" + good
		}
		h := http.Header{}
		h.Set("X-Hub-Signature-256", sig)
		signed := len(sig) == len("sha256=")+len(good) && strings.EqualFold(sig, "sha256="+good)
		alice := func(s string) bool { return s == "+"+waAlice }

		vs := strict.Check(h, body, time.Now())
		checkInvariants(t, vs, signed, alice, nil)
		if vs.Allowed && len(vs.Senders) == 0 {
			t.Fatalf("strict checker Allowed without senders: %s", fmtVerdict(vs))
		}
		vl := lenient.Check(h, body, time.Now())
		checkInvariants(t, vl, signed, alice, nil)
		// AllowNoSender may only turn a no_sender without any sender found into Allowed.
		if vl.Allowed != vs.Allowed && !(vs.Reason == ReasonNoSender && len(vs.Senders) == 0 && len(vl.Senders) == 0) {
			t.Fatalf("strict %s and lenient %s differ beyond no_sender", fmtVerdict(vs), fmtVerdict(vl))
		}
	})
}
