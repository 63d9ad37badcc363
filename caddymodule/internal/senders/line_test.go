package senders

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func lineEvents(events ...string) string {
	return fmt.Sprintf(`{"destination":"Uxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","events":[%s]}`, strings.Join(events, ","))
}

func lineText(source string) string {
	return `{"type":"message","message":{"type":"text","id":"1","text":"hi"},"webhookEventId":"01H","deliveryContext":{"isRedelivery":false},"timestamp":1625665242211,"source":` + source + `,"replyToken":"r","mode":"active"}`
}

func lineConfig(secret []byte) Config {
	return Config{Provider: LINE, Secret: secret, Allow: []string{"line:user:" + strings.ToUpper(lineAlice)}}
}

// lineCases is the LINE table, for lineConfig; it also seeds FuzzLINE.
func lineCases() []bodyCase {
	fromAlice := `{"type":"user","userId":"` + lineAlice + `"}`
	fromMallory := `{"type":"user","userId":"` + lineMallory + `"}`
	return []bodyCase{
		{"text message", lineMessage, false, want{allowed: true, senders: []string{lineAlice}}},
		{"verify call (no events)", `{"destination":"Uxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","events":[]}`, false, want{allowed: true}},
		{"stranger", lineEvents(lineText(fromMallory)), false, want{reason: ReasonSenderNotAllowed, senders: []string{lineMallory}, rejected: []string{lineMallory}}},
		{"batch of two allowed", lineEvents(lineText(fromAlice), `{"type":"follow","timestamp":1,"source":`+fromAlice+`,"replyToken":"r","mode":"active"}`), false, want{allowed: true, senders: []string{lineAlice}}},
		{"batch with one stranger", lineEvents(lineText(fromAlice), lineText(fromMallory)), false, want{reason: ReasonSenderNotAllowed, senders: []string{lineAlice, lineMallory}, rejected: []string{lineMallory}}},
		{"group message with user", lineEvents(lineText(`{"type":"group","groupId":"Ca56f94637c3b5b6b8a5e4e0c8f2d1e0a","userId":"` + lineAlice + `"}`)), false, want{allowed: true, senders: []string{lineAlice}}},
		{"room message with user", lineEvents(lineText(`{"type":"room","roomId":"Ra8dbf4673c4c812cd491258042226c99","userId":"` + lineAlice + `"}`)), false, want{allowed: true, senders: []string{lineAlice}}},
		{"join event (group only)", lineEvents(`{"type":"join","timestamp":1,"source":{"type":"group","groupId":"Ca56f94637c3b5b6b8a5e4e0c8f2d1e0a"},"replyToken":"r","mode":"active"}`), false, want{reason: ReasonNoSender}},
		{"allowed user plus group-only event", lineEvents(lineText(fromAlice), `{"type":"leave","timestamp":1,"source":{"type":"group","groupId":"Ca56f94637c3b5b6b8a5e4e0c8f2d1e0a"},"mode":"active"}`), false, want{reason: ReasonNoSender, senders: []string{lineAlice}}},
		{"event without source", lineEvents(`{"type":"unknown","timestamp":1}`), false, want{reason: ReasonNoSender}},
		{"upper-case hex in payload", lineEvents(lineText(`{"type":"user","userId":"` + strings.ToUpper(lineAlice) + `"}`)), false, want{reason: ReasonSenderNotAllowed, senders: []string{strings.ToUpper(lineAlice)}, rejected: []string{strings.ToUpper(lineAlice)}}},
		{"prefixed id in payload", lineEvents(lineText(`{"type":"user","userId":"line:` + lineAlice + `"}`)), false, want{reason: ReasonSenderNotAllowed, senders: []string{"line:" + lineAlice}, rejected: []string{"line:" + lineAlice}}},

		{"events missing", `{"destination":"U1"}`, false, want{reason: ReasonUnparsable}},
		{"events is an object", `{"events":{"0":` + lineText(fromAlice) + `}}`, false, want{reason: ReasonUnparsable}},
		{"events is null", `{"events":null}`, false, want{reason: ReasonUnparsable}},
		{"event is a string", lineEvents(`"hello"`), false, want{reason: ReasonUnparsable}},
		{"source is a string", lineEvents(lineText(`"user"`)), false, want{reason: ReasonUnparsable}},
		{"numeric userId", lineEvents(lineText(`{"type":"user","userId":12345}`)), false, want{reason: ReasonUnparsable}},
		{"empty userId", lineEvents(lineText(`{"type":"user","userId":""}`)), false, want{reason: ReasonUnparsable}},
		{"duplicate userId", lineEvents(lineText(`{"type":"user","userId":"` + lineMallory + `","userId":"` + lineAlice + `"}`)), false, want{reason: ReasonUnparsable}},
		{"duplicate source via escape", lineEvents(`{"type":"message","source":` + fromAlice + `,"sourc\u0065":` + fromMallory + `}`), false, want{reason: ReasonUnparsable}},
		{"duplicate events", `{"events":[` + lineText(fromAlice) + `],"events":[` + lineText(fromMallory) + `]}`, false, want{reason: ReasonUnparsable}},
		{"not UTF-8", lineEvents(lineText(`{"type":"user","userId":"` + lineAlice + "\xc3" + `"}`)), false, want{reason: ReasonUnparsable}},
		{"top-level array", `[` + lineMessage + `]`, false, want{reason: ReasonUnparsable}},
	}
}

func TestLINE(t *testing.T) {
	secret := newSecret(t)
	c := mustNew(t, lineConfig(secret))
	for _, tt := range lineCases() {
		checkVerdict(t, tt.name, c.Check(lineHeader(secret, tt.body), []byte(tt.body), time.Now()), tt.want)
	}
}

func TestLINESignature(t *testing.T) {
	secret := newSecret(t)
	c := mustNew(t, Config{Provider: LINE, Secret: secret, Allow: []string{lineAlice}})
	body := lineMessage
	good := base64.StdEncoding.EncodeToString(hmacSHA256(secret, []byte(body)))
	sig := func(vs ...string) http.Header { return http.Header{"X-Line-Signature": vs} }
	tests := []struct {
		name   string
		header http.Header
		body   string
		want   want
	}{
		{"valid", sig(good), body, want{allowed: true, senders: []string{lineAlice}}},
		{"wrong secret", lineHeader(newSecret(t), body), body, want{reason: ReasonBadSignature}},
		{"body changed", sig(good), strings.Replace(body, "Hello", "Hallo", 1), want{reason: ReasonBadSignature}},
		{"missing", http.Header{}, body, want{reason: ReasonBadSignature}},
		{"empty", sig(""), body, want{reason: ReasonBadSignature}},
		{"repeated", sig(good, good), body, want{reason: ReasonBadSignature}},
		{"hex instead of base64", sig(fmt.Sprintf("%x", hmacSHA256(secret, []byte(body)))), body, want{reason: ReasonBadSignature}},
		{"url-safe base64", sig(base64.URLEncoding.EncodeToString(hmacSHA256(secret, []byte(body)))), body, validIfNoURLChars(good)},
		{"unpadded", sig(strings.TrimRight(good, "=")), body, want{reason: ReasonBadSignature}},
		{"truncated", sig(good[:20]), body, want{reason: ReasonBadSignature}},
		{"junk", sig("!!!"), body, want{reason: ReasonBadSignature}},
		{"signature of another body", lineHeader(secret, `{"events":[]}`), body, want{reason: ReasonBadSignature}},
	}
	for _, tt := range tests {
		checkVerdict(t, tt.name, c.Check(tt.header, []byte(tt.body), time.Now()), tt.want)
	}
}

// validIfNoURLChars: URL-safe base64 differs from standard only where "+" or "/" occur; when the
// digest has neither, both spellings are the same string and the signature is valid.
func validIfNoURLChars(std string) want {
	if strings.ContainsAny(std, "+/") {
		return want{reason: ReasonBadSignature}
	}
	return want{allowed: true, senders: []string{lineAlice}}
}
