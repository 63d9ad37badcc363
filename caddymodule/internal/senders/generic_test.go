package senders

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const waPath = "/entry/*/changes/*/value/messages/*/from"

func waBody(messages ...string) string {
	return fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"2"},"messages":[%s]},"field":"messages"}]}]}`, strings.Join(messages, ","))
}

func waText(from string) string {
	return `{"from":` + from + `,"id":"wamid.X","timestamp":"1749416383","type":"text","text":{"body":"hi"}}`
}

func waConfig(secret []byte, mod func(*Config)) Config {
	c := Config{Provider: Generic, Secret: secret, Allow: []string{"+1 631 555 1234"}, SignatureHeader: "X-Hub-Signature-256",
		SignaturePrefix: "sha256=", SenderPaths: []string{waPath}, SenderFormat: "e164"}
	if mod != nil {
		mod(&c)
	}
	return c
}

type waCase struct {
	name    string
	body    string
	strict  want // waConfig
	lenient want // waConfig with AllowNoSender
}

// waCases is the WhatsApp Cloud API table; it also seeds FuzzGeneric.
func waCases() []waCase {
	alice, mallory := "+"+waAlice, "+"+waMallory
	twoEntries := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messages":[` + waText(`"16315551234"`) + `]}}]},{"id":"2","changes":[{"value":{"messages":[` + waText(`"447700900123"`) + `]}}]}]}`
	return []waCase{
		{"message", waMessage, want{allowed: true, senders: []string{alice}}, want{allowed: true, senders: []string{alice}}},
		{"statuses only", waStatuses, want{reason: ReasonNoSender}, want{allowed: true}},
		{"stranger", waBody(waText(`"447700900123"`)), want{reason: ReasonSenderNotAllowed, senders: []string{mallory}, rejected: []string{mallory}}, want{reason: ReasonSenderNotAllowed, senders: []string{mallory}, rejected: []string{mallory}}},
		{"batch with one stranger", waBody(waText(`"16315551234"`), waText(`"447700900123"`)), want{reason: ReasonSenderNotAllowed, senders: []string{alice, mallory}, rejected: []string{mallory}}, want{reason: ReasonSenderNotAllowed, senders: []string{alice, mallory}, rejected: []string{mallory}}},
		{"stranger in a second entry", twoEntries, want{reason: ReasonSenderNotAllowed, senders: []string{alice, mallory}, rejected: []string{mallory}}, want{reason: ReasonSenderNotAllowed, senders: []string{alice, mallory}, rejected: []string{mallory}}},
		{"repeated sender", waBody(waText(`"16315551234"`), waText(`"+16315551234"`)), want{allowed: true, senders: []string{alice}}, want{allowed: true, senders: []string{alice}}},
		{"numeric from", waBody(waText(`16315551234`)), want{allowed: true, senders: []string{alice}}, want{allowed: true, senders: []string{alice}}},
		{"from with punctuation", waBody(waText(`"1-631-555-1234"`)), want{reason: ReasonSenderNotAllowed, senders: []string{"1-631-555-1234"}, rejected: []string{"1-631-555-1234"}}, want{reason: ReasonSenderNotAllowed, senders: []string{"1-631-555-1234"}, rejected: []string{"1-631-555-1234"}}},
		{"empty messages array", waBody(), want{reason: ReasonNoSender}, want{allowed: true}},
		{"message without from", waBody(waText(`"16315551234"`), `{"id":"wamid.Y","type":"text"}`), want{reason: ReasonNoSender, senders: []string{alice}}, want{reason: ReasonNoSender, senders: []string{alice}}},
		{"only message without from", waBody(`{"id":"wamid.Y","type":"text"}`), want{reason: ReasonNoSender}, want{reason: ReasonNoSender}},
		{"from is an object", waBody(waText(`{"id":"16315551234"}`)), want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"from is null", waBody(waText(`null`)), want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"from is empty", waBody(waText(`""`)), want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"messages is an object", `{"entry":[{"changes":[{"value":{"messages":{"0":` + waText(`"447700900123"`) + `}}}]}]}`, want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"messages is null", `{"entry":[{"changes":[{"value":{"messages":null}}]}]}`, want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"entry is a string", `{"entry":"x"}`, want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"no entry", `{"object":"whatsapp_business_account"}`, want{reason: ReasonNoSender}, want{allowed: true}},
		{"duplicate from", waBody(`{"from":"447700900123","from":"16315551234","type":"text"}`), want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"duplicate messages", `{"entry":[{"changes":[{"value":{"messages":[` + waText(`"16315551234"`) + `],"messages":[` + waText(`"447700900123"`) + `]}}]}]}`, want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"duplicate from via escape", waBody(`{"from":"16315551234","\u0066rom":"447700900123"}`), want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"top-level array", `[` + waMessage + `]`, want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
		{"not UTF-8", waBody(`{"from":"16315551234","text":{"body":"` + "\x80" + `"}}`), want{reason: ReasonUnparsable}, want{reason: ReasonUnparsable}},
	}
}

func TestGenericWhatsApp(t *testing.T) {
	secret := newSecret(t)
	strict := mustNew(t, waConfig(secret, nil))
	lenient := mustNew(t, waConfig(secret, func(c *Config) { c.AllowNoSender = true }))
	for _, tt := range waCases() {
		h := hubHeader(secret, tt.body)
		checkVerdict(t, "strict: "+tt.name, strict.Check(h, []byte(tt.body), time.Now()), tt.strict)
		checkVerdict(t, "allow_no_sender: "+tt.name, lenient.Check(h, []byte(tt.body), time.Now()), tt.lenient)
	}
}

func TestGenericSignature(t *testing.T) {
	secret := newSecret(t)
	body := waMessage
	digest := hmacSHA256(secret, []byte(body))
	alice := want{allowed: true, senders: []string{"+" + waAlice}}
	hdr := func(name, v string) http.Header { h := http.Header{}; h.Set(name, v); return h }
	tests := []struct {
		name   string
		mod    func(*Config)
		header http.Header
		body   string
		want   want
	}{
		{"hex with prefix", nil, hubHeader(secret, body), body, alice},
		{"upper-case hex and prefix", nil, hdr("X-Hub-Signature-256", "SHA256="+strings.ToUpper(hex.EncodeToString(digest))), body, alice},
		{"missing prefix", nil, hdr("X-Hub-Signature-256", hex.EncodeToString(digest)), body, want{reason: ReasonBadSignature}},
		{"sha1 prefix", nil, hdr("X-Hub-Signature-256", "sha1="+hex.EncodeToString(digest)), body, want{reason: ReasonBadSignature}},
		{"wrong secret", nil, hubHeader(newSecret(t), body), body, want{reason: ReasonBadSignature}},
		{"body changed", nil, hubHeader(secret, body), strings.Replace(body, waAlice, waMallory, 2), want{reason: ReasonBadSignature}},
		{"missing header", nil, http.Header{}, body, want{reason: ReasonBadSignature}},
		{"other header name", nil, hdr("X-Hub-Signature", "sha256="+hex.EncodeToString(digest)), body, want{reason: ReasonBadSignature}},
		{"repeated header", nil, http.Header{"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(digest), "sha256=" + hex.EncodeToString(digest)}}, body, want{reason: ReasonBadSignature}},
		{"truncated", nil, hdr("X-Hub-Signature-256", "sha256="+hex.EncodeToString(digest)[:62]), body, want{reason: ReasonBadSignature}},
		{"odd hex", nil, hdr("X-Hub-Signature-256", "sha256="+hex.EncodeToString(digest)+"0"), body, want{reason: ReasonBadSignature}},
		{"base64 configured", func(c *Config) {
			c.SignatureHeader, c.SignaturePrefix, c.SignatureEncoding = "X-Signature", "", "base64"
		},
			hdr("X-Signature", base64.StdEncoding.EncodeToString(digest)), body, alice},
		{"base64 configured, hex sent", func(c *Config) {
			c.SignatureHeader, c.SignaturePrefix, c.SignatureEncoding = "X-Signature", "", "base64"
		},
			hdr("X-Signature", hex.EncodeToString(digest)), body, want{reason: ReasonBadSignature}},
		{"no prefix configured", func(c *Config) { c.SignaturePrefix = "" }, hdr("X-Hub-Signature-256", hex.EncodeToString(digest)), body, alice},
		{"no prefix configured, prefix sent", func(c *Config) { c.SignaturePrefix = "" }, hubHeader(secret, body), body, want{reason: ReasonBadSignature}},
	}
	for _, tt := range tests {
		c := mustNew(t, waConfig(secret, tt.mod))
		checkVerdict(t, tt.name, c.Check(tt.header, []byte(tt.body), time.Now()), tt.want)
	}
}

func TestGenericPaths(t *testing.T) {
	secret := newSecret(t)
	tests := []struct {
		name  string
		paths []string
		allow []string
		body  string
		want  want
	}{
		{"top-level field", []string{"/sender"}, []string{"bot-7"}, `{"sender":"bot-7","text":"x"}`, want{allowed: true, senders: []string{"bot-7"}}},
		{"exact match only", []string{"/sender"}, []string{"bot-7"}, `{"sender":"Bot-7"}`, want{reason: ReasonSenderNotAllowed, senders: []string{"Bot-7"}, rejected: []string{"Bot-7"}}},
		{"numeric id", []string{"/user/id"}, []string{"42"}, `{"user":{"id":42}}`, want{allowed: true, senders: []string{"42"}}},
		{"array index", []string{"/items/1/by"}, []string{"b"}, `{"items":[{"by":"a"},{"by":"b"}]}`, want{allowed: true, senders: []string{"b"}}},
		{"array index out of range", []string{"/items/5/by"}, []string{"b"}, `{"items":[{"by":"a"}]}`, want{reason: ReasonNoSender}},
		{"array index with leading zero", []string{"/items/01/by"}, []string{"b"}, `{"items":[{"by":"a"},{"by":"b"}]}`, want{reason: ReasonUnparsable}},
		{"key on an array", []string{"/items/by"}, []string{"b"}, `{"items":[{"by":"b"}]}`, want{reason: ReasonUnparsable}},
		{"[] wildcard", []string{"/events/[]/actor"}, []string{"a", "b"}, `{"events":[{"actor":"a"},{"actor":"b"}]}`, want{allowed: true, senders: []string{"a", "b"}}},
		{"escaped segments", []string{"/a~1b/c~0d"}, []string{"x"}, `{"a/b":{"c~d":"x"}}`, want{allowed: true, senders: []string{"x"}}},
		{"empty key segment", []string{"/"}, []string{"x"}, `{"":"x"}`, want{allowed: true, senders: []string{"x"}}},
		{"two paths, all must pass", []string{"/from", "/on_behalf_of"}, []string{"a"}, `{"from":"a","on_behalf_of":"z"}`, want{reason: ReasonSenderNotAllowed, senders: []string{"a", "z"}, rejected: []string{"z"}}},
		{"two paths, one absent", []string{"/from", "/on_behalf_of"}, []string{"a"}, `{"from":"a"}`, want{allowed: true, senders: []string{"a"}}},
		{"nested wildcards, one missing below", []string{"/a/*/b/*/c"}, []string{"x"}, `{"a":[{"b":[{"c":"x"},{"d":"y"}]}]}`, want{reason: ReasonNoSender, senders: []string{"x"}}},
		{"nested wildcards, missing above the last", []string{"/a/*/b/*/c"}, []string{"x"}, `{"a":[{"b":[{"c":"x"}]},{"z":1}]}`, want{allowed: true, senders: []string{"x"}}},
		{"wildcard over an object", []string{"/a/*/c"}, []string{"x"}, `{"a":{"k":{"c":"x"}}}`, want{reason: ReasonUnparsable}},
		{"path into a string", []string{"/a/b"}, []string{"x"}, `{"a":"b"}`, want{reason: ReasonUnparsable}},
		{"boolean sender", []string{"/a"}, []string{"true"}, `{"a":true}`, want{reason: ReasonUnparsable}},
		{"allow *", []string{"/a"}, []string{"*"}, `{"a":"anyone"}`, want{allowed: true, senders: []string{"anyone"}}},
		{"allow * still needs a sender", []string{"/a"}, []string{"*"}, `{"b":"anyone"}`, want{reason: ReasonNoSender}},
	}
	for _, tt := range tests {
		c := mustNew(t, Config{Provider: Generic, Secret: secret, Allow: tt.allow, SignatureHeader: "X-Sig", SenderPaths: tt.paths})
		h := http.Header{}
		h.Set("X-Sig", hex.EncodeToString(hmacSHA256(secret, []byte(tt.body))))
		checkVerdict(t, tt.name, c.Check(h, []byte(tt.body), time.Now()), tt.want)
	}
}

func TestGenericLargeBatch(t *testing.T) {
	// Tens of thousands of senders in one signed body: every one is found and judged, repeats are
	// folded, and one stranger among them still rejects the batch.
	secret := newSecret(t)
	c := mustNew(t, waConfig(secret, func(cfg *Config) { cfg.Allow = []string{"*"} }))
	const n = 30000
	msgs := make([]string, 0, n+1)
	for i := range n {
		msgs = append(msgs, `{"from":"`+fmt.Sprint(15550000000+i)+`"}`)
	}
	msgs = append(msgs, `{"from":"15550000000"}`) // a repeat
	body := waBody(msgs...)
	v := c.Check(hubHeader(secret, body), []byte(body), time.Now())
	if !v.Allowed || len(v.Senders) != n || v.Senders[n-1] != "+"+fmt.Sprint(15550000000+n-1) {
		t.Fatalf("Check(%d senders, allow *) = allowed %v, %d senders, want allowed with %d", n+1, v.Allowed, len(v.Senders), n)
	}
	strict := mustNew(t, waConfig(secret, func(cfg *Config) { cfg.Allow = []string{"+15550000000"} }))
	v = strict.Check(hubHeader(secret, body), []byte(body), time.Now())
	if v.Allowed || v.Reason != ReasonSenderNotAllowed || len(v.Rejected) != n-1 {
		t.Fatalf("Check(%d senders, one allowed) = %s… with %d rejected, want sender_not_allowed with %d rejected", n+1, v.Reason, len(v.Rejected), n-1)
	}
}
