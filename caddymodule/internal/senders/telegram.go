package senders

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Telegram delivers one Update per request. An Update holds update_id and at most one other field,
// which names its type. For every type that identifies who caused it, telegramUpdates says where
// the sender (and, if any, the chat) is. Types without a sender (poll, message_reaction_count,
// deleted_business_messages) and types this table does not know yet are no_sender: a new Bot API
// update type stays closed until someone reads its fields and adds it here.
var telegramUpdates = map[string]func(v *value, col *collector) error{
	"message":                 tgMessage,
	"edited_message":          tgMessage,
	"channel_post":            tgMessage,
	"edited_channel_post":     tgMessage,
	"business_message":        tgMessage,
	"edited_business_message": tgMessage,
	"guest_message":           tgMessage,
	"business_connection":     tgFields("user"),
	"message_reaction":        tgFields("chat", "user?", "actor_chat?"),
	"inline_query":            tgFields("from"),
	"chosen_inline_result":    tgFields("from"),
	"callback_query":          tgCallbackQuery,
	"shipping_query":          tgFields("from"),
	"pre_checkout_query":      tgFields("from"),
	"purchased_paid_media":    tgFields("from"),
	"poll_answer":             tgFields("user?", "voter_chat?"),
	"my_chat_member":          tgFields("chat", "from"),
	"chat_member":             tgFields("chat", "from"),
	"chat_join_request":       tgFields("chat", "from"),
	"chat_boost":              tgBoost("boost"),
	"removed_chat_boost":      tgBoost(""),
	"managed_bot":             tgFields("user"),
	"subscription":            tgFields("user"),
	// Known, and without a sender on purpose.
	"poll":                      tgNone,
	"message_reaction_count":    tgNone,
	"deleted_business_messages": tgNone,
}

var (
	errNotObject = errors.New("expected an object")

	tgFrom         = tgFields("from")
	tgChatOnly     = tgFields("chat")
	tgOptionalUser = tgFields("user?")
)

func isTelegramSecretByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
}

// normTelegramID normalises an allowlist entry the way OpenClaw does: trim, drop a "telegram:" or
// "tg:" prefix, and require an integer, written back in canonical form.
func normTelegramID(entry string) (string, error) {
	s := strings.TrimSpace(entry)
	if s == "*" {
		return s, nil
	}
	if rest, ok := trimPrefixFold(s, "telegram:"); ok {
		s = rest
	} else if rest, ok := trimPrefixFold(s, "tg:"); ok {
		s = rest
	}
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "@") {
		return "", fmt.Errorf("%q is a username: Telegram allowlists need numeric ids (OpenClaw does not honour @usernames either)", entry)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return "", fmt.Errorf("%q is not a numeric Telegram id", entry)
	}
	if n > maxSafeInteger || n < -maxSafeInteger {
		return "", fmt.Errorf("%q is out of range for a Telegram id", entry)
	}
	return strconv.FormatInt(n, 10), nil
}

func (c *Checker) initTelegram(cfg Config) error {
	for i, e := range cfg.Allow {
		id, err := normTelegramID(e)
		if err != nil {
			return fmt.Errorf("allow[%d]: %w", i, err)
		}
		c.addAllow(id)
	}
	c.groupAllow = make(map[string]struct{}, len(cfg.GroupAllow))
	for i, e := range cfg.GroupAllow {
		id, err := normTelegramID(e)
		if err != nil {
			return fmt.Errorf("group_allow[%d]: %w", i, err)
		}
		switch {
		case id == "*":
			c.groupAll = true
		case !strings.HasPrefix(id, "-"):
			return fmt.Errorf("group_allow[%d]: %q is not a group chat id (group and supergroup ids are negative; user ids belong in allow)", i, e)
		default:
			c.groupAllow[id] = struct{}{}
		}
	}
	return nil
}

func (c *Checker) groupAllowed(id string) bool {
	if c.groupAll {
		return true
	}
	_, ok := c.groupAllow[id]
	return ok
}

func (c *Checker) checkTelegram(h http.Header, body []byte) Verdict {
	tok, ok := singleHeader(h, "X-Telegram-Bot-Api-Secret-Token")
	if !ok {
		return Verdict{Reason: ReasonBadSignature}
	}
	// Comparing hashes keeps the comparison constant-time in the secret's length too.
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], c.secretHash[:]) != 1 {
		return Verdict{Reason: ReasonBadSignature}
	}
	root, err := parseObject(body)
	if err != nil {
		return Verdict{Reason: ReasonUnparsable}
	}
	var col collector
	if err := telegramSenders(&root, &col); err != nil {
		return Verdict{Reason: ReasonUnparsable}
	}
	return col.verdict(c.allowed, c.groupAllowed)
}

// telegramSenders collects the senders and group chats of one Update.
func telegramSenders(root *value, col *collector) error {
	var typ string
	var payload *value
	for i := range root.items {
		m := &root.items[i]
		if m.key == "update_id" {
			continue
		}
		if payload != nil {
			// Telegram never sends two; a reader that picks "the" update type would pick one of them.
			return fmt.Errorf("update carries both %q and %q", typ, m.key)
		}
		typ, payload = m.key, &m.val
	}
	if payload == nil {
		return nil
	}
	if payload.kind != kindObject {
		return fmt.Errorf("%s: %w", typ, errNotObject)
	}
	extract, known := telegramUpdates[typ]
	if !known {
		return nil
	}
	return extract(payload, col)
}

func tgNone(*value, *collector) error { return nil }

// tgMessage handles Message: the sender is sender_chat when the message was sent on behalf of a
// chat (channel posts, anonymous group admins, automatic forwards), since "from" then holds a
// placeholder user kept for old clients; otherwise "from". OpenClaw reads channel posts the same way.
func tgMessage(m *value, col *collector) error {
	chat, ok := m.get("chat")
	if !ok {
		return errors.New("message without chat")
	}
	if err := tgChat(chat, col); err != nil {
		return err
	}
	if sc, ok := m.get("sender_chat"); ok {
		return tgSender(sc, col)
	}
	if from, ok := m.get("from"); ok {
		return tgSender(from, col)
	}
	return nil
}

// tgFields returns an extractor that reads the named fields of an object: "chat" is a chat the
// update happened in, any other name a User or Chat that caused it. A trailing "?" marks a field
// that may be absent.
func tgFields(fields ...string) func(v *value, col *collector) error {
	return func(v *value, col *collector) error {
		for _, f := range fields {
			name, optional := strings.CutSuffix(f, "?")
			fv, ok := v.get(name)
			if !ok {
				if optional {
					continue
				}
				if name == "chat" {
					return fmt.Errorf("missing %q", name)
				}
				continue // a missing sender leaves the update without one: no_sender
			}
			var err error
			if name == "chat" {
				err = tgChat(fv, col)
			} else {
				err = tgSender(fv, col)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	}
}

// tgCallbackQuery: the sender is "from"; the chat, when the button was on a message the bot can
// still see (or an inaccessible one, which keeps its chat), is message.chat.
func tgCallbackQuery(v *value, col *collector) error {
	if msg, ok := v.get("message"); ok {
		if msg.kind != kindObject {
			return fmt.Errorf("message: %w", errNotObject)
		}
		chat, ok := msg.get("chat")
		if !ok {
			return errors.New("message without chat")
		}
		if err := tgChat(chat, col); err != nil {
			return err
		}
	}
	return tgFrom(v, col)
}

// tgBoost reads ChatBoostUpdated (the source under "boost") and ChatBoostRemoved (source at the
// top): the sender is source.user, present for premium and gift-code boosts and some giveaways.
func tgBoost(under string) func(v *value, col *collector) error {
	return func(v *value, col *collector) error {
		if err := tgChatOnly(v, col); err != nil {
			return err
		}
		holder := v
		if under != "" {
			b, ok := v.get(under)
			if !ok {
				return nil
			}
			if b.kind != kindObject {
				return fmt.Errorf("%s: %w", under, errNotObject)
			}
			holder = b
		}
		src, ok := holder.get("source")
		if !ok {
			return nil
		}
		if src.kind != kindObject {
			return fmt.Errorf("source: %w", errNotObject)
		}
		return tgOptionalUser(src, col)
	}
}

// tgSender adds the id of a User or Chat object.
func tgSender(v *value, col *collector) error {
	id, err := tgID(v)
	if err != nil {
		return err
	}
	col.addSender(id)
	return nil
}

// tgChat records a chat that gates the update: groups, supergroups and chats of any type this
// package does not know need GroupAllow; private chats and channels do not.
func tgChat(v *value, col *collector) error {
	id, err := tgID(v)
	if err != nil {
		return err
	}
	if t, ok := v.get("type"); ok && t.kind == kindString && (t.s == "private" || t.s == "channel") {
		return nil
	}
	col.addGroup(id)
	return nil
}

func tgID(v *value) (string, error) {
	if v.kind != kindObject {
		return "", errNotObject
	}
	idv, ok := v.get("id")
	if !ok {
		return "", errors.New("object without id")
	}
	id, ok := idString(idv)
	if !ok {
		return "", fmt.Errorf("id is a %s, not an integer or string", idv.kind)
	}
	return id, nil
}
