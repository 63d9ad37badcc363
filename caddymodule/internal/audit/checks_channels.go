package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// telegramChannel is the channel security audit the lines before
// untilOfflineChannelAudit run for their bundled Telegram plugin without a
// gateway (collectChannelSecurityFindings over the Telegram security
// adapter): per configured account, the DM policy checks, the group-policy
// warnings (channels.telegram.warning.N, numbered by the findings before
// them) and the plugin's own group sender allowlist checks. Account
// bindings are not modelled: an account only a binding names is not
// audited, which leaves out findings only for an account without a token
// of its own or the channel's.
func (a *auditor) telegramChannel() {
	tg := obj(a.rt.get("channels", "telegram"))
	if tg == nil {
		return
	}
	var out []Finding
	add := func(id string, sev Severity, title, detail, remediation string) {
		out = append(out, Finding{CheckID: id, Severity: sev, Title: title, Detail: detail, Remediation: remediation})
	}
	ids := a.telegramAccountIDs(tg)
	defaultID := telegramDefaultAccount(tg, ids)
	ordered := uniqueStrings(append([]string{defaultID}, ids...))
	accounts := obj(tg["accounts"])
	for _, id := range ordered {
		_, explicit := accounts[id]
		merged := a.telegramMerged(tg, id)
		if isFalse(tg["enabled"]) || isFalse(merged["enabled"]) || !a.telegramConfigured(tg, id) {
			continue
		}
		if isTrue(merged["dangerouslyAllowNameMatching"]) {
			note := ""
			if len(ordered) > 1 || explicit {
				note = " (account: " + id + ")"
			}
			add("channels.telegram.allowFrom.dangerous_name_matching_enabled", SeverityInfo, "Telegram dangerous name matching is enabled"+note,
				"dangerouslyAllowNameMatching=true re-enables mutable name/email/tag matching for sender authorization. This is a break-glass compatibility mode, not a hardened default.",
				"Prefer stable sender IDs in allowlists, then disable dangerouslyAllowNameMatching.")
		}

		// The DM policy (createScopedDmSecurityResolver, warnDmPolicy).
		base := "channels.telegram."
		acc := obj(accounts[id])
		switch {
		case acc != nil && (acc["dmPolicy"] != nil || acc["allowFrom"] != nil):
			base = "channels.telegram.accounts." + id + "."
		case tg["dmPolicy"] != nil || tg["allowFrom"] != nil:
		case acc != nil:
			base = "channels.telegram.accounts." + id + "."
		}
		policy := strOr(merged["dmPolicy"], "pairing")
		allow := stringEntries(merged["allowFrom"])
		hasWildcard := contains(allow, "*")
		var store []string
		if policy != "allowlist" && policy != "open" {
			store = a.telegramPairingStore(id)
		}
		set := map[string]bool{}
		for _, e := range allow {
			if e != "*" {
				set[telegramDMEntry(e)] = true
			}
		}
		for _, e := range store {
			set[telegramDMEntry(e)] = true
		}
		delete(set, "")
		multiUser := hasWildcard || len(set) > 1
		if policy == "open" {
			add("channels.telegram.dm.open", SeverityCritical, "Telegram DMs are open",
				base+`dmPolicy="open" allows anyone to DM the bot.`,
				`Use pairing/allowlist; if you really need open DMs, ensure `+base+`allowFrom includes "*".`)
			if !hasWildcard {
				add("channels.telegram.dm.open_invalid", SeverityWarn, "Telegram DM config looks inconsistent",
					`"open" requires `+base+`allowFrom to include "*".`, "")
			}
		}
		if policy == "disabled" {
			add("channels.telegram.dm.disabled", SeverityInfo, "Telegram DMs are disabled", base+`dmPolicy="disabled" ignores inbound DMs.`, "")
		} else if strOr(a.rt.get("session", "dmScope"), "main") == "main" && multiUser {
			add("channels.telegram.dm.scope_main_multiuser", SeverityWarn, "Telegram DMs share the main session",
				"Multiple DM senders currently share the main session, which can leak context across users.",
				`Run: openclaw config set session.dmScope "per-channel-peer" (or "per-account-channel-peer" for multi-account channels) to isolate DM sessions per sender.`)
		}

		// The group-policy warnings (allowlist provider, route allowlist).
		groupPolicy := strOr(merged["groupPolicy"], strOr(a.rt.get("channels", "defaults", "groupPolicy"), "allowlist"))
		groupsConfigured := len(obj(merged["groups"])) > 0
		if groupPolicy == "open" {
			msg := `Telegram groups: groupPolicy="open" with no channels.telegram.groups allowlist; any group can add + ping (mention-gated). Set channels.telegram.groupPolicy="allowlist" + channels.telegram.groupAllowFrom or configure channels.telegram.groups.`
			if groupsConfigured {
				msg = `Telegram groups: groupPolicy="open" allows any member in allowed groups to trigger (mention-gated). Set channels.telegram.groupPolicy="allowlist" + channels.telegram.groupAllowFrom to restrict senders.`
			}
			// Every message these warnings can be holds groupPolicy="open",
			// which classifyChannelWarningSeverity rates critical.
			add(fmt.Sprintf("channels.telegram.warning.%d", len(out)+1), SeverityCritical, "Telegram security warning", msg, "")
		}

		out = append(out, a.telegramGroupSenders(merged, id, groupPolicy, groupsConfigured)...)
	}
	a.findings = append(a.findings, dedupeFindings(out)...)
}

// telegramGroupSenders is the Telegram plugin's collectAuditFindings: who
// may run commands in the groups the account answers.
func (a *auditor) telegramGroupSenders(cfg map[string]any, accountID, groupPolicy string, groupsConfigured bool) []Finding {
	var out []Finding
	invalid := map[string]bool{}
	var invalidOrder []string
	collectInvalid := func(entries []any) {
		for _, e := range entries {
			n := telegramAllowEntry(e)
			if n == "" || n == "*" || numericSender.MatchString(n) || invalid[n] {
				continue
			}
			invalid[n] = true
			invalidOrder = append(invalidOrder, n)
		}
	}
	appendInvalid := func() {
		if len(invalidOrder) == 0 {
			return
		}
		examples := invalidOrder
		more := ""
		if len(examples) > 5 {
			more = fmt.Sprintf(" (+%d more)", len(examples)-5)
			examples = examples[:5]
		}
		out = append(out, Finding{CheckID: "channels.telegram.allowFrom.invalid_entries", Severity: SeverityWarn,
			Title:       "Telegram allowlist contains non-numeric entries",
			Detail:      "Telegram sender authorization requires numeric Telegram user IDs. Found non-numeric allowFrom entries: " + strings.Join(examples, ", ") + more + ".",
			Remediation: "Replace @username entries with numeric Telegram user IDs (use setup to resolve), then re-run the audit."})
	}
	collectInvalid(arr(cfg["allowFrom"]))
	if isFalse(a.rt.get("commands", "text")) || !(groupPolicy == "open" || groupPolicy == "allowlist" && groupsConfigured) {
		appendInvalid()
		return out
	}
	store := a.telegramPairingStore(accountID)
	storeAny := make([]any, len(store))
	for i, s := range store {
		storeAny[i] = s
	}
	collectInvalid(storeAny)
	groupAllowFrom := arr(cfg["groupAllowFrom"])
	groupWildcard := false
	for _, e := range groupAllowFrom {
		if strings.TrimSpace(jsString(e)) == "*" {
			groupWildcard = true
		}
	}
	collectInvalid(groupAllowFrom)
	override := false
	groups := obj(cfg["groups"])
	for _, k := range keys(groups) {
		g := obj(groups[k])
		if g == nil {
			continue
		}
		if af := arr(g["allowFrom"]); len(af) > 0 {
			override = true
			collectInvalid(af)
		}
		topics := obj(g["topics"])
		for _, tk := range keys(topics) {
			t := obj(topics[tk])
			if t == nil {
				continue
			}
			if af := arr(t["allowFrom"]); len(af) > 0 {
				override = true
			}
			collectInvalid(arr(t["allowFrom"]))
		}
	}
	appendInvalid()
	if groupWildcard {
		out = append(out, Finding{CheckID: "channels.telegram.groups.allowFrom.wildcard", Severity: SeverityCritical,
			Title:       "Telegram group allowlist contains wildcard",
			Detail:      `Telegram group sender allowlist contains "*", which allows any group member to run /… commands and control directives.`,
			Remediation: `Remove "*" from channels.telegram.groupAllowFrom and pairing store; prefer explicit numeric Telegram user IDs.`})
		return out
	}
	if len(store) == 0 && len(groupAllowFrom) == 0 && !override {
		// Native skill commands count only when set to true: left on auto,
		// the offline audit resolves them off for Telegram.
		skills := get(cfg, "commands", "nativeSkills")
		if skills == nil {
			skills = a.rt.get("commands", "nativeSkills")
		}
		end := "."
		if isTrue(skills) {
			end = " (including skill commands)."
		}
		out = append(out, Finding{CheckID: "channels.telegram.groups.allowFrom.missing", Severity: SeverityCritical,
			Title:       "Telegram group commands have no sender allowlist",
			Detail:      "Telegram group access is enabled but no sender allowlist is configured; this allows any group member to invoke /… commands" + end,
			Remediation: "Approve yourself via pairing (recommended), or set channels.telegram.groupAllowFrom (or per-group groups.<id>.allowFrom)."})
	}
	return out
}

var (
	numericSender    = regexp.MustCompile(`^\d+$`)
	telegramPrefix   = regexp.MustCompile(`(?i)^(telegram|tg):`)
	accountIDValid   = regexp.MustCompile(`(?i)^[a-z0-9][a-z0-9_-]{0,63}$`)
	accountIDInvalid = regexp.MustCompile(`[^a-z0-9_-]+`)
)

// telegramAllowEntry is normalizeTelegramAllowFromEntry: strings and
// numbers, trimmed, without a telegram: or tg: prefix.
func telegramAllowEntry(v any) string {
	var s string
	switch t := v.(type) {
	case string:
		s = t
	case float64:
		s = jsString(t)
	}
	return strings.TrimSpace(telegramPrefix.ReplaceAllString(strings.TrimSpace(s), ""))
}

// telegramDMEntry is the DM policy's entry normalizer (prefix stripped,
// not trimmed again).
func telegramDMEntry(s string) string { return telegramPrefix.ReplaceAllString(s, "") }

// normalizeAccountID is OpenClaw's normalizeAccountId.
func normalizeAccountID(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "default"
	}
	low := strings.ToLower(s)
	if !accountIDValid.MatchString(s) {
		low = strings.Trim(accountIDInvalid.ReplaceAllString(low, "-"), "-")
		if len(low) > 64 {
			low = low[:64]
		}
	}
	if low == "" || low == "__proto__" || low == "constructor" || low == "prototype" {
		return "default"
	}
	return low
}

// telegramAccountIDs is listTelegramAccountIds without bindings: the
// configured accounts, and "default" when the channel itself has a token
// (or TELEGRAM_BOT_TOKEN is set), sorted; "default" alone when there are
// none.
func (a *auditor) telegramAccountIDs(tg map[string]any) []string {
	seen := map[string]bool{}
	var ids []string
	for k := range obj(tg["accounts"]) {
		if k == "" {
			continue
		}
		if id := normalizeAccountID(k); !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if configuredValue(tg["botToken"]) || configuredValue(tg["tokenFile"]) || strings.TrimSpace(a.rt.cfg.Getenv("TELEGRAM_BOT_TOKEN")) != "" {
		if !seen["default"] {
			ids = append(ids, "default")
		}
	}
	if len(ids) == 0 {
		return []string{"default"}
	}
	sort.Strings(ids)
	return ids
}

// configuredValue is hasConfiguredDefaultAccountValue: a non-blank string
// or any other non-null value (a secret reference).
func configuredValue(v any) bool {
	if s, ok := v.(string); ok {
		return strings.TrimSpace(s) != ""
	}
	return v != nil
}

// telegramDefaultAccount is resolveListedDefaultAccountId over the listed
// ids: channels.telegram.defaultAccount when listed, else "default" when
// listed, else the first.
func telegramDefaultAccount(tg map[string]any, ids []string) string {
	if d := strings.TrimSpace(strOr(tg["defaultAccount"], "")); d != "" {
		if n := normalizeAccountID(d); contains(ids, n) {
			return n
		}
	}
	if contains(ids, "default") {
		return "default"
	}
	return ids[0]
}

// telegramAccountEntry is resolveNormalizedAccountEntry.
func telegramAccountEntry(tg map[string]any, id string) map[string]any {
	accounts := obj(tg["accounts"])
	if v, ok := accounts[id]; ok {
		return obj(v)
	}
	for _, k := range keys(accounts) {
		if strings.TrimSpace(k) != "" && normalizeAccountID(k) == id {
			return obj(accounts[k])
		}
	}
	return nil
}

// telegramMerged is mergeTelegramAccountConfig: the channel's settings
// under the account's, with the account's groups when it has any (or when
// there are several accounts) and allowFrom merged so an account's "*"
// does not widen a channel allowlist.
func (a *auditor) telegramMerged(tg map[string]any, id string) map[string]any {
	acc := telegramAccountEntry(tg, id)
	out := map[string]any{}
	for k, v := range tg {
		if k != "accounts" && k != "defaultAccount" && k != "groups" {
			out[k] = v
		}
	}
	for k, v := range acc {
		out[k] = v
	}
	groups := tg["groups"]
	if len(obj(tg["accounts"])) > 1 || len(obj(acc["groups"])) > 0 {
		groups = acc["groups"]
	}
	out["groups"] = groups
	baseAllow, accAllow := tg["allowFrom"], acc["allowFrom"]
	allow := accAllow
	if allow == nil {
		allow = baseAllow
	}
	if restrictive(baseAllow) && wildcard(accAllow) {
		var kept []any
		for _, e := range arr(accAllow) {
			if strings.TrimSpace(jsString(e)) != "*" {
				kept = append(kept, e)
			}
		}
		allow = baseAllow
		if len(kept) > 0 {
			allow = kept
		}
	}
	out["allowFrom"] = allow
	return out
}

func wildcard(v any) bool {
	for _, e := range arr(v) {
		if strings.TrimSpace(jsString(e)) == "*" {
			return true
		}
	}
	return false
}

func restrictive(v any) bool {
	for _, e := range arr(v) {
		if s := strings.TrimSpace(jsString(e)); s != "" && s != "*" {
			return true
		}
	}
	return false
}

// telegramConfigured is the account inspection's configured state: a
// token (or token file) of the account's own, or, for the default account,
// an account the config lists, or a config without accounts, the channel's
// (or TELEGRAM_BOT_TOKEN for the default account).
func (a *auditor) telegramConfigured(tg map[string]any, id string) bool {
	acc := telegramAccountEntry(tg, id)
	if configuredValue(acc["tokenFile"]) || configuredValue(acc["botToken"]) {
		return true
	}
	if id == "default" || acc != nil || len(obj(tg["accounts"])) == 0 {
		if configuredValue(tg["tokenFile"]) || configuredValue(tg["botToken"]) {
			return true
		}
	}
	return id == "default" && strings.TrimSpace(a.rt.cfg.Getenv("TELEGRAM_BOT_TOKEN")) != ""
}

// telegramPairingStore is readChannelAllowFromStore for Telegram: the
// senders approved by pairing for the account (and, for the default
// account, the store from before accounts), "*" and blanks dropped. An
// unreadable store counts as empty, as it does for OpenClaw.
func (a *auditor) telegramPairingStore(accountID string) []string {
	c := a.rt.cfg
	dir := filepath.Join(c.StateDir, "credentials")
	if o := strings.TrimSpace(c.Getenv("OPENCLAW_OAUTH_DIR")); o != "" {
		dir = expandHome(o, c.home)
	}
	paths := []string{filepath.Join(dir, "telegram-"+accountID+"-allowFrom.json")}
	if accountID == "default" {
		paths = append(paths, filepath.Join(dir, "telegram-allowFrom.json"))
	}
	var out []string
	for _, p := range paths {
		a.observe(p, InputContent)
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var s struct {
			AllowFrom []any `json:"allowFrom"`
		}
		if json.Unmarshal(data, &s) != nil {
			continue
		}
		for _, e := range s.AllowFrom {
			str, ok := e.(string)
			if !ok {
				continue
			}
			if n := telegramPrefix.ReplaceAllString(strings.TrimSpace(str), ""); strings.TrimSpace(n) != "" && strings.TrimSpace(n) != "*" {
				out = append(out, strings.TrimSpace(n))
			}
		}
	}
	return uniqueStrings(out)
}

// dedupeFindings drops a finding equal to an earlier one in every field.
func dedupeFindings(in []Finding) []Finding {
	seen := map[Finding]bool{}
	var out []Finding
	for _, f := range in {
		if seen[f] {
			continue
		}
		seen[f] = true
		out = append(out, f)
	}
	return out
}
