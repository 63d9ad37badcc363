package senders

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Fragments for building updates.
const (
	tgFromAlice   = `{"id":123456789,"is_bot":false,"first_name":"Alice"}`
	tgFromMallory = `{"id":987654321,"is_bot":false,"first_name":"Mallory"}`
	tgPrivate     = `{"id":123456789,"first_name":"Alice","type":"private"}`
	tgSuper       = `{"id":-1001111111111,"title":"Rabbit hole","type":"supergroup"}`
	tgOtherSuper  = `{"id":-1002222222222,"title":"Elsewhere","type":"supergroup"}`
	tgChan        = `{"id":-1003333333333,"title":"News","type":"channel"}`
)

func tgUpd(typ, obj string) string { return fmt.Sprintf(`{"update_id":7,%q:%s}`, typ, obj) }

func tgMsg(from, chat string) string {
	return fmt.Sprintf(`{"message_id":1,"from":%s,"chat":%s,"date":1700000000,"text":"hi"}`, from, chat)
}

func telegramConfig(secret []byte) Config {
	return Config{Provider: Telegram, Secret: secret, Allow: []string{"tg:" + tgAlice, tgChannel}, GroupAllow: []string{tgGroup}}
}

// telegramCases is the Telegram table, for telegramConfig; it also seeds FuzzTelegram.
func telegramCases() []bodyCase {
	ok := func(senders ...string) want { return want{allowed: true, senders: senders} }
	okGroup := func(group string, senders ...string) want {
		return want{allowed: true, senders: senders, groups: []string{group}}
	}
	return []bodyCase{
		// Messages, in every update field that carries one.
		{"private message", tgPrivateMessage, false, ok(tgAlice)},
		{"private message from stranger", tgUpd("message", tgMsg(tgFromMallory, `{"id":987654321,"type":"private"}`)), false, want{reason: ReasonSenderNotAllowed, senders: []string{tgMallory}, rejected: []string{tgMallory}}},
		{"edited_message", tgUpd("edited_message", tgMsg(tgFromAlice, tgPrivate)), false, ok(tgAlice)},
		{"business_message", tgUpd("business_message", `{"message_id":2,"business_connection_id":"bc1","from":`+tgFromAlice+`,"chat":`+tgPrivate+`,"date":1,"text":"hi"}`), false, ok(tgAlice)},
		{"edited_business_message", tgUpd("edited_business_message", tgMsg(tgFromMallory, tgPrivate)), false, want{reason: ReasonSenderNotAllowed, senders: []string{tgMallory}, rejected: []string{tgMallory}}},
		{"guest_message", tgUpd("guest_message", tgMsg(tgFromAlice, tgPrivate)), false, ok(tgAlice)},
		{"channel_post", tgUpd("channel_post", `{"message_id":3,"sender_chat":`+tgChan+`,"chat":`+tgChan+`,"date":1,"text":"news"}`), false, ok(tgChannel)},
		{"edited_channel_post from other channel", tgUpd("edited_channel_post", `{"message_id":3,"sender_chat":{"id":-1004444444444,"type":"channel"},"chat":{"id":-1004444444444,"type":"channel"},"date":1}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{"-1004444444444"}, rejected: []string{"-1004444444444"}}},
		{"message without any sender", tgUpd("message", `{"message_id":4,"chat":`+tgPrivate+`,"date":1}`), false, want{reason: ReasonNoSender}},

		// Groups: the chat must be on GroupAllow and the sender on Allow.
		{"group message", tgGroupMessage, false, okGroup(tgGroup, tgAlice)},
		{"group message from stranger", tgUpd("message", tgMsg(tgFromMallory, tgSuper)), false, want{reason: ReasonSenderNotAllowed, senders: []string{tgMallory}, groups: []string{tgGroup}, rejected: []string{tgMallory}}},
		{"unlisted group", tgUpd("message", tgMsg(tgFromAlice, tgOtherSuper)), false, want{reason: ReasonGroupNotAllowed, senders: []string{tgAlice}, groups: []string{tgOtherGrp}, rejected: []string{tgOtherGrp}}},
		{"unlisted basic group", tgUpd("message", tgMsg(tgFromAlice, `{"id":-4242,"title":"old","type":"group"}`)), false, want{reason: ReasonGroupNotAllowed, senders: []string{tgAlice}, groups: []string{"-4242"}, rejected: []string{"-4242"}}},
		{"chat of unknown type is gated", tgUpd("message", tgMsg(tgFromAlice, `{"id":-5,"type":"hyperchat"}`)), false, want{reason: ReasonGroupNotAllowed, senders: []string{tgAlice}, groups: []string{"-5"}, rejected: []string{"-5"}}},
		{"chat without type is gated", tgUpd("message", tgMsg(tgFromAlice, `{"id":-5}`)), false, want{reason: ReasonGroupNotAllowed, senders: []string{tgAlice}, groups: []string{"-5"}, rejected: []string{"-5"}}},
		// On behalf of a chat, "from" is a placeholder; the real sender is sender_chat.
		{"anonymous admin ignores from", tgUpd("message", `{"message_id":5,"from":`+tgFromAlice+`,"sender_chat":`+tgOtherSuper+`,"chat":`+tgSuper+`,"date":1}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{tgOtherGrp}, groups: []string{tgGroup}, rejected: []string{tgOtherGrp}}},
		{"linked channel forward", tgUpd("message", `{"message_id":6,"from":{"id":777000,"is_bot":false,"first_name":"Telegram"},"sender_chat":`+tgChan+`,"chat":`+tgSuper+`,"is_automatic_forward":true,"date":1}`), false, okGroup(tgGroup, tgChannel)},

		// Every other update type that names a sender.
		{"business_connection", tgUpd("business_connection", `{"id":"bc1","user":`+tgFromAlice+`,"user_chat_id":123456789,"date":1,"is_enabled":true}`), false, ok(tgAlice)},
		{"message_reaction by user", tgUpd("message_reaction", `{"chat":`+tgPrivate+`,"message_id":1,"user":`+tgFromAlice+`,"date":1,"old_reaction":[],"new_reaction":[{"type":"emoji","emoji":"👍"}]}`), false, ok(tgAlice)},
		{"message_reaction by anonymous chat", tgUpd("message_reaction", `{"chat":`+tgSuper+`,"message_id":1,"actor_chat":`+tgOtherSuper+`,"date":1,"old_reaction":[],"new_reaction":[]}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{tgOtherGrp}, groups: []string{tgGroup}, rejected: []string{tgOtherGrp}}},
		{"inline_query", tgUpd("inline_query", `{"id":"q1","from":`+tgFromAlice+`,"query":"cats","offset":"","chat_type":"sender"}`), false, ok(tgAlice)},
		{"inline_query from stranger", tgUpd("inline_query", `{"id":"q1","from":`+tgFromMallory+`,"query":"cats","offset":""}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{tgMallory}, rejected: []string{tgMallory}}},
		{"chosen_inline_result", tgUpd("chosen_inline_result", `{"result_id":"r1","from":`+tgFromAlice+`,"query":"cats"}`), false, ok(tgAlice)},
		{"callback_query in private chat", tgUpd("callback_query", `{"id":"cb1","from":`+tgFromAlice+`,"message":`+tgMsg(`{"id":42,"is_bot":true,"first_name":"bot"}`, tgPrivate)+`,"chat_instance":"ci","data":"yes"}`), false, ok(tgAlice)},
		{"callback_query in listed group", tgUpd("callback_query", `{"id":"cb1","from":`+tgFromAlice+`,"message":{"message_id":1,"chat":`+tgSuper+`,"date":0},"chat_instance":"ci","data":"yes"}`), false, okGroup(tgGroup, tgAlice)},
		{"callback_query in unlisted group", tgUpd("callback_query", `{"id":"cb1","from":`+tgFromAlice+`,"message":{"message_id":1,"chat":`+tgOtherSuper+`,"date":0},"chat_instance":"ci"}`), false, want{reason: ReasonGroupNotAllowed, senders: []string{tgAlice}, groups: []string{tgOtherGrp}, rejected: []string{tgOtherGrp}}},
		{"callback_query from inline message", tgUpd("callback_query", `{"id":"cb1","from":`+tgFromAlice+`,"inline_message_id":"im1","chat_instance":"ci","data":"x"}`), false, ok(tgAlice)},
		{"shipping_query", tgUpd("shipping_query", `{"id":"s1","from":`+tgFromAlice+`,"invoice_payload":"p","shipping_address":{"country_code":"GB","state":"","city":"Oxford","street_line1":"Christ Church","street_line2":"","post_code":"OX1 1DP"}}`), false, ok(tgAlice)},
		{"pre_checkout_query", tgUpd("pre_checkout_query", `{"id":"pc1","from":`+tgFromMallory+`,"currency":"XTR","total_amount":5,"invoice_payload":"p"}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{tgMallory}, rejected: []string{tgMallory}}},
		{"purchased_paid_media", tgUpd("purchased_paid_media", `{"from":`+tgFromAlice+`,"paid_media_payload":"p"}`), false, ok(tgAlice)},
		{"poll_answer by user", tgUpd("poll_answer", `{"poll_id":"p1","user":`+tgFromAlice+`,"option_ids":[0]}`), false, ok(tgAlice)},
		{"poll_answer by chat", tgUpd("poll_answer", `{"poll_id":"p1","voter_chat":`+tgChan+`,"option_ids":[1]}`), false, ok(tgChannel)},
		{"my_chat_member private", tgUpd("my_chat_member", `{"chat":`+tgPrivate+`,"from":`+tgFromAlice+`,"date":1,"old_chat_member":{"status":"member","user":{"id":42,"is_bot":true,"first_name":"bot"}},"new_chat_member":{"status":"kicked","user":{"id":42,"is_bot":true,"first_name":"bot"},"until_date":0}}`), false, ok(tgAlice)},
		{"chat_member in listed group", tgUpd("chat_member", `{"chat":`+tgSuper+`,"from":`+tgFromAlice+`,"date":1,"old_chat_member":{"status":"left","user":`+tgFromMallory+`},"new_chat_member":{"status":"member","user":`+tgFromMallory+`}}`), false, okGroup(tgGroup, tgAlice)},
		{"chat_join_request by stranger", tgUpd("chat_join_request", `{"chat":`+tgSuper+`,"from":`+tgFromMallory+`,"user_chat_id":987654321,"date":1}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{tgMallory}, groups: []string{tgGroup}, rejected: []string{tgMallory}}},
		{"chat_boost by user", tgUpd("chat_boost", `{"chat":`+tgChan+`,"boost":{"boost_id":"b1","add_date":1,"expiration_date":2,"source":{"source":"premium","user":`+tgFromAlice+`}}}`), false, ok(tgAlice)},
		{"chat_boost from giveaway", tgUpd("chat_boost", `{"chat":`+tgChan+`,"boost":{"boost_id":"b1","add_date":1,"expiration_date":2,"source":{"source":"giveaway","giveaway_message_id":9}}}`), false, want{reason: ReasonNoSender}},
		{"removed_chat_boost", tgUpd("removed_chat_boost", `{"chat":`+tgChan+`,"boost_id":"b1","remove_date":1,"source":{"source":"gift_code","user":`+tgFromAlice+`}}`), false, ok(tgAlice)},
		{"managed_bot", tgUpd("managed_bot", `{"user":`+tgFromAlice+`,"bot":{"id":555,"is_bot":true,"first_name":"child"}}`), false, ok(tgAlice)},
		{"subscription", tgUpd("subscription", `{"user":`+tgFromMallory+`,"invoice_payload":"p","state":"active"}`), false, want{reason: ReasonSenderNotAllowed, senders: []string{tgMallory}, rejected: []string{tgMallory}}},

		// Updates that identify nobody fail closed.
		{"poll", tgUpd("poll", `{"id":"p1","question":"?","options":[],"total_voter_count":3,"is_closed":true,"is_anonymous":true,"type":"regular","allows_multiple_answers":false}`), false, want{reason: ReasonNoSender}},
		{"message_reaction_count", tgUpd("message_reaction_count", `{"chat":`+tgChan+`,"message_id":1,"date":1,"reactions":[]}`), false, want{reason: ReasonNoSender}},
		{"deleted_business_messages", tgUpd("deleted_business_messages", `{"business_connection_id":"bc1","chat":`+tgPrivate+`,"message_ids":[1,2]}`), false, want{reason: ReasonNoSender}},
		{"unknown update type", tgUpd("future_update", `{"from":`+tgFromAlice+`}`), false, want{reason: ReasonNoSender}},
		{"only update_id", `{"update_id":7}`, false, want{reason: ReasonNoSender}},
		{"empty object", `{}`, false, want{reason: ReasonNoSender}},
		{"my_chat_member without from", tgUpd("my_chat_member", `{"chat":`+tgPrivate+`,"date":1}`), false, want{reason: ReasonNoSender}},

		// Numeric vs string ids, as String(id) in the gateway would read them.
		{"string id", tgUpd("message", tgMsg(`{"id":"123456789","is_bot":false}`, tgPrivate)), false, ok(tgAlice)},
		{"escaped string id", tgUpd("message", tgMsg(`{"id":"\u0031\u0032\u0033\u0034\u0035\u0036\u0037\u0038\u0039"}`, tgPrivate)), false, ok(tgAlice)},
		{"string id with space", tgUpd("message", tgMsg(`{"id":" 123456789"}`, tgPrivate)), false, want{reason: ReasonSenderNotAllowed, senders: []string{" 123456789"}, rejected: []string{" 123456789"}}},
		{"float id", tgUpd("message", tgMsg(`{"id":123456789.0}`, tgPrivate)), false, want{reason: ReasonUnparsable}},
		{"exponent id", tgUpd("message", tgMsg(`{"id":1.23456789e8}`, tgPrivate)), false, want{reason: ReasonUnparsable}},
		{"unsafe integer id", tgUpd("message", tgMsg(`{"id":9007199254740993}`, tgPrivate)), false, want{reason: ReasonUnparsable}},
		{"bool id", tgUpd("message", tgMsg(`{"id":true}`, tgPrivate)), false, want{reason: ReasonUnparsable}},
		{"from without id", tgUpd("message", tgMsg(`{"first_name":"x"}`, tgPrivate)), false, want{reason: ReasonUnparsable}},
		{"from is a number", tgUpd("message", tgMsg(`123456789`, tgPrivate)), false, want{reason: ReasonUnparsable}},

		// Shapes that two readers could disagree on.
		{"duplicate from", tgUpd("message", `{"message_id":1,"from":`+tgFromMallory+`,"from":`+tgFromAlice+`,"chat":`+tgPrivate+`,"date":1}`), false, want{reason: ReasonUnparsable}},
		{"duplicate id", tgUpd("message", tgMsg(`{"id":987654321,"id":123456789}`, tgPrivate)), false, want{reason: ReasonUnparsable}},
		{"duplicate from via escape", tgUpd("message", `{"message_id":1,"from":`+tgFromAlice+`,"fr\u006fm":`+tgFromMallory+`,"chat":`+tgPrivate+`,"date":1}`), false, want{reason: ReasonUnparsable}},
		{"duplicate message", `{"update_id":7,"message":` + tgMsg(tgFromAlice, tgPrivate) + `,"message":` + tgMsg(tgFromMallory, tgPrivate) + `}`, false, want{reason: ReasonUnparsable}},
		{"two update types", `{"update_id":7,"message":` + tgMsg(tgFromAlice, tgPrivate) + `,"callback_query":{"id":"x","from":` + tgFromMallory + `}}`, false, want{reason: ReasonUnparsable}},
		{"duplicate deep in text entities", tgUpd("message", `{"message_id":1,"from":`+tgFromAlice+`,"chat":`+tgPrivate+`,"date":1,"entities":[{"type":"bold","type":"url"}]}`), false, want{reason: ReasonUnparsable}},
		{"message is null", tgUpd("message", `null`), false, want{reason: ReasonUnparsable}},
		{"message is array", tgUpd("message", `[`+tgMsg(tgFromAlice, tgPrivate)+`]`), false, want{reason: ReasonUnparsable}},
		{"message without chat", tgUpd("message", `{"message_id":1,"from":`+tgFromAlice+`,"date":1}`), false, want{reason: ReasonUnparsable}},
		{"callback_query message is a string", tgUpd("callback_query", `{"id":"cb1","from":`+tgFromAlice+`,"message":"x"}`), false, want{reason: ReasonUnparsable}},
		{"callback_query message without chat", tgUpd("callback_query", `{"id":"cb1","from":`+tgFromAlice+`,"message":{"message_id":1}}`), false, want{reason: ReasonUnparsable}},
		{"chat_boost without chat", tgUpd("chat_boost", `{"boost":{"source":{"source":"premium","user":`+tgFromAlice+`}}}`), false, want{reason: ReasonUnparsable}},
		{"chat_boost boost is a string", tgUpd("chat_boost", `{"chat":`+tgChan+`,"boost":"b"}`), false, want{reason: ReasonUnparsable}},
		{"chat_boost source is a string", tgUpd("chat_boost", `{"chat":`+tgChan+`,"boost":{"source":"premium"}}`), false, want{reason: ReasonUnparsable}},
		{"chat_boost without boost", tgUpd("chat_boost", `{"chat":`+tgChan+`}`), false, want{reason: ReasonNoSender}},
		{"removed_chat_boost without source", tgUpd("removed_chat_boost", `{"chat":`+tgChan+`,"boost_id":"b1"}`), false, want{reason: ReasonNoSender}},
		{"chat_member with bad from", tgUpd("chat_member", `{"chat":`+tgSuper+`,"from":{"id":[1]}}`), false, want{reason: ReasonUnparsable}},
		{"chat without id", tgUpd("message", tgMsg(tgFromAlice, `{"type":"private"}`)), false, want{reason: ReasonUnparsable}},
		{"top-level array", `[` + tgPrivateMessage + `]`, false, want{reason: ReasonUnparsable}},
		{"non-UTF-8", tgUpd("message", `{"message_id":1,"from":`+tgFromAlice+`,"chat":`+tgPrivate+`,"date":1,"text":"`+"\xff\xfe"+`"}`), false, want{reason: ReasonUnparsable}},
		{"trailing second update", tgPrivateMessage + tgUpd("message", tgMsg(tgFromMallory, tgPrivate)), false, want{reason: ReasonUnparsable}},
		{"empty body", ``, false, want{reason: ReasonUnparsable}},
	}
}

func TestTelegram(t *testing.T) {
	secret := newSecret(t)
	c := mustNew(t, telegramConfig(secret))
	now := time.Now()
	for _, tt := range telegramCases() {
		checkVerdict(t, tt.name, c.Check(tgHeader(secret), []byte(tt.body), now), tt.want)
	}
}

func TestTelegramSecretHeader(t *testing.T) {
	secret := newSecret(t)
	c := mustNew(t, Config{Provider: Telegram, Secret: secret, Allow: []string{tgAlice}})
	other := newSecret(t)
	tests := []struct {
		name   string
		header http.Header
		want   want
	}{
		{"valid", tgHeader(secret), want{allowed: true, senders: []string{tgAlice}}},
		{"lower-case header name", http.Header{"x-telegram-bot-api-secret-token": {string(secret)}}, want{reason: ReasonBadSignature}}, // not canonical: Header.Values misses it, as it would in net/http
		{"missing", http.Header{}, want{reason: ReasonBadSignature}},
		{"nil header", nil, want{reason: ReasonBadSignature}},
		{"empty", http.Header{"X-Telegram-Bot-Api-Secret-Token": {""}}, want{reason: ReasonBadSignature}},
		{"wrong secret", tgHeader(other), want{reason: ReasonBadSignature}},
		{"prefix of secret", tgHeader(secret[:len(secret)-1]), want{reason: ReasonBadSignature}},
		{"secret plus suffix", tgHeader(append(append([]byte{}, secret...), 'x')), want{reason: ReasonBadSignature}},
		{"repeated, one right", http.Header{"X-Telegram-Bot-Api-Secret-Token": {string(other), string(secret)}}, want{reason: ReasonBadSignature}},
		{"repeated, both right", http.Header{"X-Telegram-Bot-Api-Secret-Token": {string(secret), string(secret)}}, want{reason: ReasonBadSignature}},
		{"other header carries it", http.Header{"X-Telegram-Secret": {string(secret)}}, want{reason: ReasonBadSignature}},
	}
	for _, tt := range tests {
		checkVerdict(t, tt.name, c.Check(tt.header, []byte(tgPrivateMessage), time.Now()), tt.want)
	}
	// A wrong secret must not even reach the parser: an unparsable body still says bad_signature.
	checkVerdict(t, "wrong secret, junk body", c.Check(tgHeader(other), []byte("\xff{"), time.Now()), want{reason: ReasonBadSignature})
}

func TestTelegramWildcards(t *testing.T) {
	secret := newSecret(t)
	anySender := mustNew(t, Config{Provider: Telegram, Secret: secret, Allow: []string{"*"}})
	checkVerdict(t, "allow * admits a stranger in private", anySender.Check(tgHeader(secret), []byte(tgUpd("message", tgMsg(tgFromMallory, `{"id":987654321,"type":"private"}`))), time.Now()),
		want{allowed: true, senders: []string{tgMallory}})
	checkVerdict(t, "allow * still gates groups", anySender.Check(tgHeader(secret), []byte(tgGroupMessage), time.Now()),
		want{reason: ReasonGroupNotAllowed, senders: []string{tgAlice}, groups: []string{tgGroup}, rejected: []string{tgGroup}})
	checkVerdict(t, "allow * still needs a sender", anySender.Check(tgHeader(secret), []byte(tgUpd("poll", `{"id":"p"}`)), time.Now()),
		want{reason: ReasonNoSender})

	anyGroup := mustNew(t, Config{Provider: Telegram, Secret: secret, Allow: []string{tgAlice}, GroupAllow: []string{"*"}})
	checkVerdict(t, "group_allow * admits any group", anyGroup.Check(tgHeader(secret), []byte(tgUpd("message", tgMsg(tgFromAlice, tgOtherSuper))), time.Now()),
		want{allowed: true, senders: []string{tgAlice}, groups: []string{tgOtherGrp}})
	checkVerdict(t, "group_allow * keeps the sender check", anyGroup.Check(tgHeader(secret), []byte(tgUpd("message", tgMsg(tgFromMallory, tgOtherSuper))), time.Now()),
		want{reason: ReasonSenderNotAllowed, senders: []string{tgMallory}, groups: []string{tgOtherGrp}, rejected: []string{tgMallory}})
}
