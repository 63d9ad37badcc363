package senders

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestNewErrors(t *testing.T) {
	secret := []byte("s3cret")
	wa := func(mod func(*Config)) Config {
		c := Config{Provider: Generic, Secret: secret, Allow: []string{"+15550100"}, SignatureHeader: "X-Hub-Signature-256",
			SignaturePrefix: "sha256=", SenderPaths: []string{"/entry/*/changes/*/value/messages/*/from"}}
		mod(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want string // exact error text
	}{
		{"no provider", Config{Secret: secret, Allow: []string{"1"}}, "senders: provider is required (telegram, slack, line or generic)"},
		{"unknown provider", Config{Provider: "discord", Secret: secret, Allow: []string{"1"}}, `senders: unknown provider "discord" (want telegram, slack, line or generic)`},
		{"provider case", Config{Provider: "Telegram", Secret: secret, Allow: []string{"1"}}, `senders: unknown provider "Telegram" (want telegram, slack, line or generic)`},
		{"telegram no secret", Config{Provider: Telegram, Allow: []string{"1"}}, "senders telegram: secret is required"},
		{"slack no secret", Config{Provider: Slack, Secret: []byte{}, Allow: []string{"U1"}}, "senders slack: secret is required"},
		{"line no secret", Config{Provider: LINE, Allow: []string{lineAlice}}, "senders line: secret is required"},
		{"generic no secret", wa(func(c *Config) { c.Secret = nil }), "senders generic: secret is required"},
		{"telegram secret alphabet", Config{Provider: Telegram, Secret: []byte("has space"), Allow: []string{"1"}}, "senders telegram: secret may hold only A-Z, a-z, 0-9, _ and - (Telegram's secret_token alphabet)"},
		{"telegram secret length", Config{Provider: Telegram, Secret: bytes.Repeat([]byte("a"), 257), Allow: []string{"1"}}, "senders telegram: secret is longer than Telegram's 256 characters"},
		{"empty allow", Config{Provider: Telegram, Secret: secret}, `senders telegram: allow is empty: list the sender ids to admit (or "*" to admit any authentic sender)`},
		{"telegram username", Config{Provider: Telegram, Secret: secret, Allow: []string{"1", "@alice"}}, `senders telegram: allow[1]: "@alice" is a username: Telegram allowlists need numeric ids (OpenClaw does not honour @usernames either)`},
		{"telegram prefixed username", Config{Provider: Telegram, Secret: secret, Allow: []string{"tg:@alice"}}, `senders telegram: allow[0]: "tg:@alice" is a username: Telegram allowlists need numeric ids (OpenClaw does not honour @usernames either)`},
		{"telegram not numeric", Config{Provider: Telegram, Secret: secret, Allow: []string{"alice"}}, `senders telegram: allow[0]: "alice" is not a numeric Telegram id`},
		{"telegram zero", Config{Provider: Telegram, Secret: secret, Allow: []string{"0"}}, `senders telegram: allow[0]: "0" is not a numeric Telegram id`},
		{"telegram out of range", Config{Provider: Telegram, Secret: secret, Allow: []string{"9007199254740993"}}, `senders telegram: allow[0]: "9007199254740993" is out of range for a Telegram id`},
		{"telegram empty entry", Config{Provider: Telegram, Secret: secret, Allow: []string{" "}}, `senders telegram: allow[0]: " " is not a numeric Telegram id`},
		{"group allow positive", Config{Provider: Telegram, Secret: secret, Allow: []string{"1"}, GroupAllow: []string{"123"}}, `senders telegram: group_allow[0]: "123" is not a group chat id (group and supergroup ids are negative; user ids belong in allow)`},
		{"group allow junk", Config{Provider: Telegram, Secret: secret, Allow: []string{"1"}, GroupAllow: []string{"-100", "x"}}, `senders telegram: group_allow[1]: "x" is not a numeric Telegram id`},
		{"group allow on slack", Config{Provider: Slack, Secret: secret, Allow: []string{"U1"}, GroupAllow: []string{"-1"}}, "senders slack: group_allow applies only to telegram"},
		{"max skew on telegram", Config{Provider: Telegram, Secret: secret, Allow: []string{"1"}, MaxSkew: time.Minute}, "senders telegram: max_skew applies only to slack"},
		{"negative max skew", Config{Provider: Slack, Secret: secret, Allow: []string{"U1"}, MaxSkew: -time.Minute}, "senders slack: max_skew must not be negative"},
		{"negative max body", Config{Provider: LINE, Secret: secret, Allow: []string{lineAlice}, MaxBody: -1}, "senders line: max_body must not be negative"},
		{"paths on telegram", Config{Provider: Telegram, Secret: secret, Allow: []string{"1"}, SenderPaths: []string{"/a"}}, "senders telegram: sender_paths applies only to generic"},
		{"signature header on line", Config{Provider: LINE, Secret: secret, Allow: []string{lineAlice}, SignatureHeader: "X-Sig"}, "senders line: signature_header, signature_prefix and signature_encoding apply only to generic"},
		{"sender format on slack", Config{Provider: Slack, Secret: secret, Allow: []string{"U1"}, SenderFormat: "e164"}, "senders slack: sender_format applies only to generic"},
		{"allow no sender on line", Config{Provider: LINE, Secret: secret, Allow: []string{lineAlice}, AllowNoSender: true}, "senders line: allow_no_sender applies only to generic"},
		{"slack name", Config{Provider: Slack, Secret: secret, Allow: []string{"alice"}}, `senders slack: allow[0]: "alice" is not a Slack user id (want U…/W…, slack:U…, user:U… or team:T…:user:U…; names are not matched at the edge)`},
		{"slack channel", Config{Provider: Slack, Secret: secret, Allow: []string{"C0CHAN"}}, `senders slack: allow[0]: "C0CHAN" is not a Slack user id (want U…/W…, slack:U…, user:U… or team:T…:user:U…; names are not matched at the edge)`},
		{"slack bad team", Config{Provider: Slack, Secret: secret, Allow: []string{"team:X1:user:U1"}}, `senders slack: allow[0]: "team:X1:user:U1" is not a Slack user id (want U…/W…, slack:U…, user:U… or team:T…:user:U…; names are not matched at the edge)`},
		{"slack team without user", Config{Provider: Slack, Secret: secret, Allow: []string{"team:T1"}}, `senders slack: allow[0]: "team:T1" is not a Slack user id (want U…/W…, slack:U…, user:U… or team:T…:user:U…; names are not matched at the edge)`},
		{"line short", Config{Provider: LINE, Secret: secret, Allow: []string{"U123"}}, `senders line: allow[0]: "U123" is not a LINE user id (want U followed by 32 hex digits, optionally prefixed line: or line:user:)`},
		{"line group id", Config{Provider: LINE, Secret: secret, Allow: []string{"C4af4980629a0e6f3c1e8b2d0b5e1a7c9"}}, `senders line: allow[0]: "C4af4980629a0e6f3c1e8b2d0b5e1a7c9" is not a LINE user id (want U followed by 32 hex digits, optionally prefixed line: or line:user:)`},
		{"generic no header", wa(func(c *Config) { c.SignatureHeader = "" }), "senders generic: signature_header is required (e.g. X-Hub-Signature-256)"},
		{"generic bad header", wa(func(c *Config) { c.SignatureHeader = "X Sig:" }), `senders generic: signature_header "X Sig:" is not a header name`},
		{"generic encoding", wa(func(c *Config) { c.SignatureEncoding = "base32" }), `senders generic: signature_encoding "base32": want hex or base64`},
		{"generic format", wa(func(c *Config) { c.SenderFormat = "E.164" }), `senders generic: sender_format "E.164": want e164 or nothing`},
		{"generic no paths", wa(func(c *Config) { c.SenderPaths = nil }), "senders generic: sender_paths is required (e.g. /entry/*/changes/*/value/messages/*/from)"},
		{"generic relative path", wa(func(c *Config) { c.SenderPaths = []string{"/a", "entry/from"} }), `senders generic: sender_paths[1]: "entry/from" is not a JSON pointer (it must start with /)`},
		{"generic bad escape", wa(func(c *Config) { c.SenderPaths = []string{"/a~2b"} }), `senders generic: sender_paths[0]: "/a~2b": bad escape in segment "a~2b" (use ~0 for ~ and ~1 for /)`},
		{"generic trailing tilde", wa(func(c *Config) { c.SenderPaths = []string{"/a~"} }), `senders generic: sender_paths[0]: "/a~": bad escape in segment "a~" (use ~0 for ~ and ~1 for /)`},
		{"generic empty entry", wa(func(c *Config) { c.SenderFormat = ""; c.Allow = []string{"x", " "} }), "senders generic: allow[1] is empty"},
		{"generic bad phone", wa(func(c *Config) { c.SenderFormat = "e164"; c.Allow = []string{"+1555CALLME"} }), `senders generic: allow[0]: "+1555CALLME" is not a phone number in E.164 form (+15551234567)`},
		{"generic short phone", wa(func(c *Config) { c.SenderFormat = "e164"; c.Allow = []string{"+12"} }), `senders generic: allow[0]: "+12" is not a phone number in E.164 form (+15551234567)`},
		{"generic long phone", wa(func(c *Config) { c.SenderFormat = "e164"; c.Allow = []string{"+1234567890123456"} }), `senders generic: allow[0]: "+1234567890123456" is not a phone number in E.164 form (+15551234567)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if err == nil {
				t.Fatalf("New() = %v, nil; want error %q", c, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("New() error = %q, want %q", err, tt.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	c := mustNew(t, Config{Provider: Slack, Secret: []byte("x"), Allow: []string{"U1"}})
	if got := c.MaxBody(); got != DefaultMaxBody {
		t.Errorf("MaxBody() = %d, want %d", got, DefaultMaxBody)
	}
	if c.maxSkew != DefaultMaxSkew {
		t.Errorf("maxSkew = %v, want %v", c.maxSkew, DefaultMaxSkew)
	}
	if got := c.Provider(); got != Slack {
		t.Errorf("Provider() = %q, want %q", got, Slack)
	}
	c = mustNew(t, Config{Provider: Slack, Secret: []byte("x"), Allow: []string{"U1"}, MaxBody: 10, MaxSkew: time.Second})
	if c.MaxBody() != 10 || c.maxSkew != time.Second {
		t.Errorf("MaxBody(), maxSkew = %d, %v; want 10, 1s", c.MaxBody(), c.maxSkew)
	}
}

func TestNewCopiesSecret(t *testing.T) {
	secret := []byte("original")
	c := mustNew(t, Config{Provider: LINE, Secret: secret, Allow: []string{lineAlice}})
	body := `{"events":[]}`
	h := lineHeader([]byte("original"), body)
	copy(secret, "tampered")
	if v := c.Check(h, []byte(body), time.Now()); !v.Allowed {
		t.Errorf("after the caller changed its secret slice, Check = %s, want allowed", fmtVerdict(v))
	}
}

// TestAllowNormalisation checks that each provider's allowFrom spellings reduce to the same key.
func TestAllowNormalisation(t *testing.T) {
	tests := []struct {
		provider Provider
		allow    []string
		want     []string // keys of the allow set
		wantTeam []string // slack team|user keys
		all      bool
	}{
		{Telegram, []string{"123", " tg:123 ", "TG:123", "telegram:123", "Telegram: 124", "+125", "-1001", "007"}, []string{"123", "124", "125", "-1001", "7"}, nil, false},
		{Telegram, []string{"123", "*"}, []string{"123"}, nil, true},
		{Slack, []string{"U0A", "slack:u0b", "SLACK:U0C", "user:W0D", " u0e ", "team:t1:user:u0f", "TEAM:T2:USER:W0G"}, []string{"U0A", "U0B", "U0C", "W0D", "U0E"}, []string{"T1|U0F", "T2|W0G"}, false},
		{LINE, []string{lineAlice, "line:" + lineMallory, "LINE:user:U4AF4980629A0E6F3C1E8B2D0B5E1A7C9", "u00000000000000000000000000000000"}, []string{lineAlice, lineMallory, "U00000000000000000000000000000000"}, nil, false},
		{Generic, []string{"+1 (631) 555-1234", "whatsapp:+16315551234", "16315551235", "twilio-sms:+44 7700 900123", "*"}, []string{"+16315551234", "+16315551235", "+447700900123"}, nil, true},
	}
	for _, tt := range tests {
		cfg := Config{Provider: tt.provider, Secret: []byte("x"), Allow: tt.allow}
		if tt.provider == Generic {
			cfg.SignatureHeader, cfg.SenderPaths, cfg.SenderFormat = "X-Sig", []string{"/from"}, "e164"
		}
		c := mustNew(t, cfg)
		got := slices.Sorted(maps.Keys(c.allow))
		if !slices.Equal(got, slices.Sorted(slices.Values(tt.want))) {
			t.Errorf("%s allow %q: normalised to %q, want %q", tt.provider, tt.allow, got, tt.want)
		}
		if gotTeam := slices.Sorted(maps.Keys(c.teamUsers)); !slices.Equal(gotTeam, tt.wantTeam) {
			t.Errorf("%s allow %q: team entries %q, want %q", tt.provider, tt.allow, gotTeam, tt.wantTeam)
		}
		if c.allowAll != tt.all {
			t.Errorf("%s allow %q: allowAll = %v, want %v", tt.provider, tt.allow, c.allowAll, tt.all)
		}
	}
}

// endless yields an unbounded stream and counts what it handed out.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestReadBody(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		max     int64
		wantErr error
	}{
		{"empty", 0, 10, nil},
		{"under", 9, 10, nil},
		{"exactly max", 10, 10, nil},
		{"one over", 11, 10, ErrBodyTooLarge},
		{"far over", 100000, 10, ErrBodyTooLarge},
		{"large under", 3 << 20, 4 << 20, nil},
		{"default cap exact", DefaultMaxBody, 0, nil},
		{"default cap over", DefaultMaxBody + 1, -5, ErrBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Repeat([]byte("a"), tt.size)
			for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in)), iotest.DataErrReader(bytes.NewReader(in))} {
				got, err := ReadBody(r, tt.max)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ReadBody(%d bytes, %d) error = %v, want %v", tt.size, tt.max, err, tt.wantErr)
				}
				if err == nil && !bytes.Equal(got, in) {
					t.Fatalf("ReadBody(%d bytes, %d) returned %d bytes, want the input back", tt.size, tt.max, len(got))
				}
			}
		})
	}
}

func TestReadBodyBounded(t *testing.T) {
	for _, max := range []int64{1, 100, 4095, 4096, 4097, 1 << 20} {
		src := &endless{}
		_, err := ReadBody(src, max)
		if !errors.Is(err, ErrBodyTooLarge) {
			t.Fatalf("ReadBody(endless, %d) error = %v, want ErrBodyTooLarge", max, err)
		}
		if src.n > max+1 {
			t.Errorf("ReadBody(endless, %d) read %d bytes, want at most %d", max, src.n, max+1)
		}
	}
}

func TestReadBodyReaderError(t *testing.T) {
	boom := errors.New("connection reset")
	_, err := ReadBody(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), 100)
	if !errors.Is(err, boom) || errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("ReadBody(failing reader) error = %v, want it to wrap %v", err, boom)
	}
}

func TestBodyTooLarge(t *testing.T) {
	secret := newSecret(t)
	c := mustNew(t, Config{Provider: Telegram, Secret: secret, Allow: []string{tgAlice}, MaxBody: int64(len(tgPrivateMessage))})
	if v := c.Check(tgHeader(secret), []byte(tgPrivateMessage), time.Now()); !v.Allowed {
		t.Errorf("body of exactly MaxBody: Check = %s, want allowed", fmtVerdict(v))
	}
	big := []byte(tgPrivateMessage + " ")
	checkVerdict(t, "body one over MaxBody", c.Check(tgHeader(secret), big, time.Now()), want{reason: ReasonBodyTooLarge})
	def := mustNew(t, Config{Provider: Telegram, Secret: secret, Allow: []string{tgAlice}})
	huge := append([]byte(tgPrivateMessage), bytes.Repeat([]byte(" "), DefaultMaxBody)...)
	checkVerdict(t, "body over the default cap", def.Check(tgHeader(secret), huge, time.Now()), want{reason: ReasonBodyTooLarge})
}
