package audit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Models, exposure matrix and trust-model checks
// (src/security/audit-extra.sync.ts, audit-extra.summary.ts).

type modelRef struct{ id, source string }

// defaultModelAliases are the built-in aliases of openclaw@2026.9.6.
var defaultModelAliases = map[string]string{
	"opus":              "anthropic/claude-opus-5",
	"sonnet":            "anthropic/claude-sonnet-5",
	"gpt":               "openai/gpt-5.4",
	"gpt-mini":          "openai/gpt-5.4-mini",
	"gpt-nano":          "openai/gpt-5.4-nano",
	"gemini":            "google/gemini-3.1-pro-preview",
	"gemini-flash":      "google/gemini-3-flash-preview",
	"gemini-flash-lite": "google/gemini-3.1-flash-lite",
}

// resolveModelID turns a configured model ref into provider/model, through
// aliases (agents.defaults.models.<ref>.alias, then the built-in ones).
func (rt *runtime) resolveModelID(raw string) string {
	lower := strings.ToLower(raw)
	for ref, v := range obj(rt.get("agents", "defaults", "models")) {
		if strings.ToLower(trimmed(get(v, "alias"))) == lower {
			return ref
		}
	}
	if r, ok := defaultModelAliases[lower]; ok {
		return r
	}
	if strings.Contains(raw, "/") {
		return raw
	}
	return "openai/" + raw
}

func primaryModel(v any) (string, bool) {
	if s, ok := v.(string); ok {
		return s, true
	}
	if s, ok := get(v, "primary").(string); ok {
		return s, true
	}
	return "", false
}

func (rt *runtime) modelRefs() []modelRef {
	var out []modelRef
	add := func(v any, source string) {
		s, ok := v.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return
		}
		out = append(out, modelRef{id: rt.resolveModelID(strings.TrimSpace(s)), source: source})
	}
	addModel := func(m any, prefix string) {
		if p, ok := primaryModel(m); ok {
			add(p, prefix+".primary")
		}
		for _, f := range arr(get(m, "fallbacks")) {
			add(f, prefix+".fallbacks")
		}
	}
	addModel(rt.get("agents", "defaults", "model"), "agents.defaults.model")
	addModel(rt.get("agents", "defaults", "imageModel"), "agents.defaults.imageModel")
	for _, ag := range rt.agents {
		switch m := ag.m["model"].(type) {
		case string:
			add(m, "agents.entries."+ag.id+".model")
		case map[string]any:
			add(m["primary"], "agents.entries."+ag.id+".model.primary")
			for _, f := range arr(m["fallbacks"]) {
				add(f, "agents.entries."+ag.id+".model.fallbacks")
			}
		}
	}
	return out
}

var (
	legacyModelPatterns = []struct {
		re    *regexp.Regexp
		label string
	}{
		{regexp.MustCompile(`(?i)\bgpt-3\.5\b`), "GPT-3.5 family"},
		{regexp.MustCompile(`(?i)\bclaude-(instant|2)\b`), "Claude 2/Instant family"},
		{regexp.MustCompile(`(?i)\bgpt-4-(0314|0613)\b`), "Legacy GPT-4 snapshots"},
	}
	haikuRe       = regexp.MustCompile(`(?i)\bhaiku\b`)
	gptRe         = regexp.MustCompile(`(?i)\bgpt-`)
	gpt5Re        = regexp.MustCompile(`(?i)\bgpt-5(?:\b|[.-])`)
	claudeRe      = regexp.MustCompile(`(?i)\bclaude-`)
	claude45Re    = regexp.MustCompile(`(?i)\bclaude-[^\s/]*?(?:-4-?(?:[5-9]|[1-9]\d)\b|4\.(?:[5-9]|[1-9]\d)\b|-[5-9](?:\b|[.-]))`)
	smallParamMax = 300.0
)

func (a *auditor) modelHygiene() {
	models := a.rt.modelRefs()
	if len(models) == 0 {
		return
	}
	type weak struct {
		model, source string
		reasons       []string
	}
	var weakOrder []string
	weakBy := map[string]*weak{}
	addWeak := func(m modelRef, reason string) {
		key := m.id + "@@" + m.source
		w, ok := weakBy[key]
		if !ok {
			w = &weak{model: m.id, source: m.source}
			weakBy[key] = w
			weakOrder = append(weakOrder, key)
		}
		if !contains(w.reasons, reason) {
			w.reasons = append(w.reasons, reason)
		}
	}
	for _, m := range models {
		if haikuRe.MatchString(m.id) {
			addWeak(m, "Haiku tier (smaller model)")
		}
		if gptRe.MatchString(m.id) && !gpt5Re.MatchString(m.id) {
			addWeak(m, "Below GPT-5 family")
		}
		if claudeRe.MatchString(m.id) && !claude45Re.MatchString(m.id) {
			addWeak(m, "Below Claude 4.5")
		}
	}
	var legacy []string
	for _, m := range models {
		for _, p := range legacyModelPatterns {
			if p.re.MatchString(m.id) {
				legacy = append(legacy, fmt.Sprintf("- %s (%s) @ %s", m.id, p.label, m.source))
				break
			}
		}
	}
	capLines := func(lines []string) string {
		if len(lines) > 12 {
			return strings.Join(lines[:12], "\n") + fmt.Sprintf("\n…%d more", len(lines)-12)
		}
		return strings.Join(lines, "\n")
	}
	if len(legacy) > 0 {
		a.add("models.legacy", SeverityWarn, "Some configured models look legacy",
			"Older/legacy models can be less robust against prompt injection and tool misuse.\n"+capLines(legacy),
			"Prefer modern, instruction-hardened models for any bot that can run tools.")
	}
	if len(weakOrder) > 0 {
		var lines []string
		for _, k := range weakOrder {
			w := weakBy[k]
			lines = append(lines, fmt.Sprintf("- %s (%s) @ %s", w.model, strings.Join(w.reasons, "; "), w.source))
		}
		a.add("models.weak_tier", SeverityWarn, "Some configured models are below recommended tiers",
			"Smaller/older models are generally more susceptible to prompt injection and tool misuse.\n"+capLines(lines),
			"Use the latest, top-tier model for any bot with tools or untrusted inboxes. Avoid Haiku tiers; prefer GPT-5+ and Claude 4.5+.")
	}
}

// inferParamB is inferParamBFromIdOrName: the largest "<n>b" token, where
// a token starts at the beginning or after a non-alphanumeric character,
// may carry one letter prefix ("a3b") and ends before a non-alphanumeric.
func inferParamB(text string) float64 {
	s := strings.ToLower(strings.TrimSpace(text))
	best := 0.0
	// Like JavaScript's matchAll, a match consumes its leading delimiter
	// and the search resumes right after the "b".
	for i := 0; i <= len(s); {
		end, v := -1, 0.0
		if i == 0 {
			end, v = paramBTokenAt(s, 0)
		}
		if end < 0 && i < len(s) && !isAlnum(s[i]) {
			end, v = paramBTokenAt(s, i+1)
		}
		if end < 0 {
			i++
			continue
		}
		if v > best {
			best = v
		}
		i = end
	}
	return best
}

// paramBTokenAt matches [a-z]?(\d+(\.\d+)?)b followed by a non-alphanumeric
// or the end, at s[k:]; it returns the index after the "b" and the number.
func paramBTokenAt(s string, k int) (int, float64) {
	if k < len(s) && s[k] >= 'a' && s[k] <= 'z' {
		k++
	}
	d := k
	for d < len(s) && s[d] >= '0' && s[d] <= '9' {
		d++
	}
	if d == k {
		return -1, 0
	}
	end := d
	if end+1 < len(s) && s[end] == '.' && s[end+1] >= '0' && s[end+1] <= '9' {
		end++
		for end < len(s) && s[end] >= '0' && s[end] <= '9' {
			end++
		}
	}
	if end >= len(s) || s[end] != 'b' || (end+1 < len(s) && isAlnum(s[end+1])) {
		return -1, 0
	}
	v, err := strconv.ParseFloat(s[k:end], 64)
	if err != nil {
		return -1, 0
	}
	return end + 1, v
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func (a *auditor) smallModelRisk() {
	rt := a.rt
	var small []struct {
		modelRef
		paramB float64
	}
	for _, m := range rt.modelRefs() {
		if strings.Contains(m.source, "imageModel") {
			continue
		}
		if p := inferParamB(m.id); p > 0 && p <= smallParamMax {
			small = append(small, struct {
				modelRef
				paramB float64
			}{m, p})
		}
	}
	if len(small) == 0 {
		return
	}
	unsafe := false
	var lines []string
	exposureSet := []string{}
	for _, m := range small {
		agentID := ""
		if rest, ok := strings.CutPrefix(m.source, "agents.entries."); ok {
			agentID, _, _ = strings.Cut(rest, ".")
		}
		mode := rt.sandboxMode(agentID)
		pol := rt.configuredToolPolicies(obj(get(rt.agentConfig(agentID), "tools")), mode, agentID)
		var exposed []string
		if rt.webSearchEnabled() && allowedByAll("web_search", pol) {
			exposed = append(exposed, "web_search")
		}
		if !isFalse(rt.get("tools", "web", "fetch", "enabled")) && allowedByAll("web_fetch", pol) {
			exposed = append(exposed, "web_fetch")
		}
		if rt.browserEnabled() && allowedByAll("browser", pol) {
			exposed = append(exposed, "browser")
		}
		for _, e := range exposed {
			if !contains(exposureSet, e) {
				exposureSet = append(exposureSet, e)
			}
		}
		web := " web=[off]"
		status := "ok"
		if len(exposed) > 0 {
			web = " web=[" + strings.Join(exposed, ", ") + "]"
			status = "unsafe"
			unsafe = true
		}
		lines = append(lines, fmt.Sprintf("- %s (%sB) @ %s (%s; sandbox=%s;%s)", m.id, jsString(m.paramB), m.source, status, mode, web))
	}
	exposureDetail := "No web/browser tools detected for these models."
	if len(exposureSet) > 0 {
		exposureDetail = "Uncontrolled input tools allowed: " + strings.Join(exposureSet, ", ") + "."
	}
	a.add("models.small_params", sevIf(unsafe, SeverityCritical, SeverityInfo), "Small models require sandboxing and web tools disabled",
		fmt.Sprintf("Small models (<=%dB params) detected:\n", int(smallParamMax))+strings.Join(lines, "\n")+"\n"+exposureDetail+"\nSmall models are not recommended for untrusted inputs.",
		`If you must use small models, disable web_search/web_fetch/browser globally or for each small model with tools.byProvider["provider/model"].deny=["group:web","browser"]; use agents.defaults.sandbox.mode="all" for defense in depth.`)
}

// webSearchEnabled: explicit tools.web.search.enabled, else whether a search
// credential is configured in plugin config (provider env keys are not
// consulted; see OutOfScope).
func (rt *runtime) webSearchEnabled() bool {
	switch v := rt.get("tools", "web", "search", "enabled").(type) {
	case bool:
		return v
	}
	for _, e := range obj(rt.get("plugins", "entries")) {
		for k, v := range obj(get(e, "config", "webSearch")) {
			if k == "enabled" {
				continue
			}
			if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
				return true
			} else if !ok && v != nil {
				return true
			}
		}
	}
	return false
}

// openInboundPolicies is listOpenInboundPolicies: open group/DM policies on
// channels and their accounts.
func (rt *runtime) openInboundPolicies() []string {
	var out []string
	inspect := func(sec map[string]any, base string) {
		if sec["groupPolicy"] == "open" {
			out = append(out, base+".groupPolicy")
		}
		dmPolicy, hasDM := sec["dmPolicy"]
		if !hasDM || dmPolicy == nil {
			if get(sec, "dm", "policy") == "open" {
				out = append(out, base+".dm.policy")
			}
		} else if dmPolicy == "open" {
			out = append(out, base+".dmPolicy")
		}
	}
	rt.channelSections(func(path string, sec, _ map[string]any) {
		inspect(sec, path)
	})
	return out
}

// channelSections calls fn on each channel's section and on each of its
// accounts, in key order, with their paths ("channels.<id>",
// "channels.<id>.accounts.<account>"). An account comes with its channel's
// section as parent; a channel with a nil parent.
func (rt *runtime) channelSections(fn func(path string, sec, parent map[string]any)) {
	chans := obj(rt.get("channels"))
	for _, id := range keys(chans) {
		sec := obj(chans[id])
		if sec == nil {
			continue
		}
		fn("channels."+id, sec, nil)
		accs := obj(sec["accounts"])
		for _, acc := range keys(accs) {
			if am := obj(accs[acc]); am != nil {
				fn("channels."+id+".accounts."+acc, am, sec)
			}
		}
	}
}

type toolContext struct {
	label, agentID string
	tools          map[string]any
}

func (rt *runtime) agentToolContexts() []toolContext {
	out := []toolContext{{label: "agents.defaults"}}
	for _, ag := range rt.agents {
		out = append(out, toolContext{label: "agents.entries." + ag.id, agentID: ag.id, tools: obj(ag.m["tools"])})
	}
	return out
}

func (rt *runtime) riskyToolContexts() (contexts []string, runtimeRisk bool) {
	for _, c := range rt.agentToolContexts() {
		mode := rt.sandboxMode(c.agentID)
		pol := rt.configuredToolPolicies(c.tools, mode, c.agentID)
		var runtimeTools, fsTools []string
		for _, t := range []string{"exec", "process"} {
			if allowedByAll(t, pol) {
				runtimeTools = append(runtimeTools, t)
			}
		}
		for _, t := range []string{"read", "write", "edit", "apply_patch"} {
			if allowedByAll(t, pol) {
				fsTools = append(fsTools, t)
			}
		}
		wsOnly := get(c.tools, "fs", "workspaceOnly")
		if wsOnly == nil {
			wsOnly = rt.get("tools", "fs", "workspaceOnly")
		}
		runtimeUnguarded := len(runtimeTools) > 0 && mode != "all"
		fsUnguarded := len(fsTools) > 0 && mode != "all" && !isTrue(wsOnly)
		if !runtimeUnguarded && !fsUnguarded {
			continue
		}
		if runtimeUnguarded {
			runtimeRisk = true
		}
		orOff := func(l []string) string {
			if len(l) == 0 {
				return "off"
			}
			return strings.Join(l, ", ")
		}
		contexts = append(contexts, fmt.Sprintf("%s (sandbox=%s; runtime=[%s]; fs=[%s]; fs.workspaceOnly=%t)", c.label, mode, orOff(runtimeTools), orOff(fsTools), isTrue(wsOnly)))
	}
	return contexts, runtimeRisk
}

func (rt *runtime) controlPlaneContexts(tools []string) []string {
	var out []string
	for _, c := range rt.agentToolContexts() {
		mode := rt.sandboxMode(c.agentID)
		pol := rt.configuredToolPolicies(c.tools, mode, c.agentID)
		var cp []string
		for _, t := range tools {
			if allowedByAll(t, pol) {
				cp = append(cp, t)
			}
		}
		if len(cp) == 0 {
			continue
		}
		profile := c.tools["profile"]
		if profile == nil {
			profile = rt.get("tools", "profile")
		}
		p := "none"
		if profile != nil {
			p = jsString(profile)
		}
		out = append(out, fmt.Sprintf("%s (profile=%s; controlPlane=[%s])", c.label, p, strings.Join(cp, ", ")))
	}
	return out
}

func (a *auditor) exposureMatrix() {
	rt := a.rt
	open := rt.openInboundPolicies()
	if len(open) == 0 {
		return
	}
	openList := bulletList(open)
	if !isFalse(rt.get("tools", "elevated", "enabled")) {
		a.add("security.exposure.open_groups_with_elevated", SeverityCritical, "Open group/DM policy with elevated tools enabled",
			fmt.Sprintf("Found inbound policy=\"open\" at:\n%s\nWith tools.elevated enabled, a prompt injection in those conversations can become a high-impact incident.", openList),
			`Set each listed group/DM policy to "allowlist" and keep elevated allowlists extremely tight.`)
	}
	if risky, runtimeRisk := rt.riskyToolContexts(); len(risky) > 0 {
		a.add("security.exposure.open_groups_with_runtime_or_fs", sevIf(runtimeRisk, SeverityCritical, SeverityWarn), "Open group/DM policy with runtime/filesystem tools exposed",
			fmt.Sprintf("Found inbound policy=\"open\" at:\n%s\nRisky tool exposure contexts:\n%s\nPrompt injection in open conversations can trigger command/file actions in these contexts.", openList, bulletList(risky)),
			`For open groups or DMs, prefer tools.profile="messaging" (or deny group:runtime/group:fs), set tools.fs.workspaceOnly=true, and use agents.defaults.sandbox.mode="all" for exposed agents.`)
	}
	if !a.has(sinceControlPlaneTools) {
		return
	}
	if !a.has(sincePluginsControlPlane) {
		if cp := rt.controlPlaneContexts([]string{"automations", "gateway"}); len(cp) > 0 {
			a.add("security.exposure.open_groups_with_control_plane_tools", SeverityCritical, "Open group/DM policy with gateway/cron control-plane tools exposed",
				fmt.Sprintf("Found inbound policy=\"open\" at:\n%s\nControl-plane tool exposure contexts:\n%s\nPrompt injection in open conversations can trigger persistent gateway config changes or scheduled automation.", openList, bulletList(cp)),
				"For open groups or DMs, deny control-plane tools (`gateway`, `cron`) and prefer tools.profile=\"messaging\". Tighten dmPolicy/groupPolicy to pairing or allowlist when possible.")
		}
		return
	}
	if cp := rt.controlPlaneContexts(gatewayControlPlaneTools); len(cp) > 0 {
		a.add("security.exposure.open_groups_with_control_plane_tools", SeverityCritical, "Open group/DM policy with control-plane tools exposed",
			fmt.Sprintf("Found inbound policy=\"open\" at:\n%s\nControl-plane tool exposure contexts:\n%s\nPrompt injection in open conversations can trigger OpenClaw updates, plugin changes, or scheduled automation.", openList, bulletList(cp)),
			"For open groups or DMs, deny control-plane tools (`automations`, `gateway`, `plugins`) and prefer tools.profile=\"messaging\". Tighten dmPolicy/groupPolicy to pairing or allowlist when possible.")
	}
}

// multiUserSignals is listPotentialMultiUserSignals.
func (rt *runtime) multiUserSignals() []string {
	var out []string
	add := func(s string) {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	wild := func(v any) bool {
		for _, e := range arr(v) {
			if strings.TrimSpace(jsString(e)) == "*" && e != nil {
				return true
			}
		}
		return false
	}
	inspect := func(sec map[string]any, base string) {
		switch sec["groupPolicy"] {
		case "open":
			add(base + `.groupPolicy="open"`)
		case "allowlist":
			for _, k := range []string{"groups", "guilds", "channels", "rooms"} {
				if len(obj(sec[k])) > 0 || len(arr(sec[k])) > 0 {
					add(base + `.groupPolicy="allowlist" with configured group targets`)
					break
				}
			}
		}
		if sec["dmPolicy"] == "open" {
			add(base + `.dmPolicy="open"`)
		}
		if wild(sec["allowFrom"]) {
			add(base + `.allowFrom includes "*"`)
		}
		if wild(sec["groupAllowFrom"]) {
			add(base + `.groupAllowFrom includes "*"`)
		}
		if dm := obj(sec["dm"]); dm != nil {
			if dm["policy"] == "open" {
				add(base + `.dm.policy="open"`)
			}
			if wild(dm["allowFrom"]) {
				add(base + `.dm.allowFrom includes "*"`)
			}
		}
	}
	rt.channelSections(func(path string, sec, parent map[string]any) {
		if parent == nil {
			inspect(sec, path)
			return
		}
		// An account inherits what its channel sets and does not override.
		merged := map[string]any{}
		for k, v := range parent {
			if k != "accounts" {
				merged[k] = v
			}
		}
		for k, v := range sec {
			merged[k] = v
		}
		inspect(merged, path)
	})
	return out
}

func (a *auditor) multiUser() {
	rt := a.rt
	var mainScopes []string
	if rt.get("session", "groupScope") == "main" {
		mainScopes = append(mainScopes, `- session.groupScope="main" (global: all group/channel rooms unless a binding overrides it)`)
	}
	for _, b := range arr(rt.get("bindings")) {
		if get(b, "session", "groupScope") == "main" {
			mainScopes = append(mainScopes, fmt.Sprintf(`- bindings[].session.groupScope="main": %s (agent=%s)`, describeBinding(b), jsString(get(b, "agentId"))))
		}
	}
	if len(mainScopes) > 0 {
		a.add("security.trust_model.group_scope_main", SeverityWarn, "Group rooms share the main session",
			"The following group routing scopes merge room conversations into the agent main session:\n"+strings.Join(mainScopes, "\n")+"\nEvery member of each affected room shares the main-session context. Use this only for mutually trusted rooms.",
			`Use session.groupScope="per-group" globally and remove binding overrides, or reserve "main" for rooms whose members you trust: https://docs.openclaw.ai/channels/groups#session-keys`)
	}
	signals := rt.multiUserSignals()
	if len(signals) == 0 {
		return
	}
	risky, runtimeRisk := rt.riskyToolContexts()
	impact := "No unguarded runtime/process tools were detected by this heuristic."
	if runtimeRisk {
		impact = "Runtime/process tools are exposed without full sandboxing in at least one context."
	}
	ctx := "No unguarded runtime/filesystem contexts detected."
	if len(risky) > 0 {
		ctx = "Potential high-impact tool exposure contexts:\n" + bulletList(risky)
	}
	a.add("security.trust_model.multi_user_heuristic", SeverityWarn, "Potential multi-user setup detected (personal-assistant model warning)",
		"Heuristic signals indicate this gateway may be reachable by multiple users:\n"+bulletList(signals)+"\n"+impact+"\n"+ctx+"\nOpenClaw's default security model is personal-assistant (one trusted operator boundary), not hostile multi-tenant isolation on one shared gateway. "+multiTenantNote,
		`If users may be mutually untrusted, split trust boundaries (separate gateways + credentials, ideally separate OS users/hosts). If you intentionally run shared-user access, set agents.defaults.sandbox.mode="all", keep tools.fs.workspaceOnly=true, deny runtime/fs/web tools unless required, and keep personal/private identities + credentials off that runtime.`)
}

func describeBinding(b any) string {
	m := obj(get(b, "match"))
	var parts []string
	for _, k := range keys(m) {
		parts = append(parts, k+"="+jsString(m[k]))
	}
	return strings.Join(parts, " ")
}

// crossAgentSessionAccess is collectCrossAgentSessionAccessFindings
// without provider (byProvider) tool layers.
func (a *auditor) crossAgentSessionAccess() {
	if !a.has(sinceCrossAgentSessionRisk) {
		return
	}
	rt := a.rt
	var ids []string
	for _, ag := range rt.agents {
		if id := normalizeAgentID(ag.id); !contains(ids, id) {
			ids = append(ids, id)
		}
	}
	vis := strings.ToLower(trimmed(rt.get("tools", "sessions", "visibility")))
	if vis != "self" && vis != "tree" && vis != "agent" {
		vis = "all"
	}
	if len(ids) < 2 || vis != "all" {
		return
	}
	if isFalse(rt.get("tools", "agentToAgent", "enabled")) || len(arr(rt.get("tools", "agentToAgent", "allow"))) > 0 {
		return
	}
	clamp := strOr(rt.get("agents", "defaults", "sandbox", "sessionToolsVisibility"), "spawned")
	var reachers, nonReachers, signals []string
	for _, id := range ids {
		mode := rt.sandboxMode(id)
		if mode != "off" {
			signals = append(signals, fmt.Sprintf(`%s: sandbox.mode="%s"`, id, mode))
		}
		tools := obj(get(rt.agentConfig(id), "tools"))
		pol := rt.configuredToolPolicies(tools, mode, id)
		var allowed []string
		for _, t := range []string{"sessions_list", "sessions_history", "sessions_search", "sessions_send", "session_status"} {
			if allowedByAll(t, pol) {
				allowed = append(allowed, t)
			}
		}
		unclamped := mode != "all" || clamp == "all"
		if unclamped && len(allowed) > 0 {
			ctx := "sandboxed sessions (clamp disabled)"
			switch mode {
			case "off":
				ctx = "unsandboxed sessions"
			case "non-main":
				ctx = "unsandboxed main session"
			}
			reachers = append(reachers, fmt.Sprintf("- %s: %s; allowed session tools: %s.", id, ctx, strings.Join(allowed, ", ")))
		} else {
			reason := "sandboxed sessions clamped to their spawn tree"
			if unclamped {
				reason = "session tools removed by agent tool policy"
			}
			nonReachers = append(nonReachers, fmt.Sprintf("- %s: %s; its transcripts remain readable by the agents above.", id, reason))
		}
		var restrictions []string
		for _, k := range []string{"profile", "allow", "deny"} {
			if _, ok := tools[k]; ok {
				restrictions = append(restrictions, "tools."+k)
			}
		}
		if len(restrictions) > 0 {
			signals = append(signals, fmt.Sprintf("%s: agent-level tool restrictions (%s)", id, strings.Join(restrictions, ", ")))
		}
	}
	if len(reachers) == 0 {
		return
	}
	signals = append(signals, rt.multiUserSignals()...)
	trust := ""
	if len(signals) > 0 {
		trust = "\nTrust-boundary signals:\n" + bulletList(signals) + "\nSandboxing, agent-level tool restrictions, or shared-user ingress suggest different trust levels, but session access remains Gateway-wide."
	}
	body := append(append(reachers, nonReachers...), "Incognito sessions remain hidden.")
	a.add("security.trust_model.cross_agent_session_access_default", sevIf(len(signals) > 0, SeverityWarn, SeverityInfo), "Agents share Gateway-wide session access (default)",
		fmt.Sprintf("Agents: %s\ntools.sessions.visibility resolves to \"all\" and tools.agentToAgent is enabled with no allow list.\nAgents that can reach other agents' sessions, including other users' transcripts:\n", strings.Join(ids, ", "))+strings.Join(body, "\n")+trust,
		`Set tools.sessions.visibility to "agent", "tree", or "self"; restrict tools.agentToAgent.allow to the intended requester and target ids; or set tools.agentToAgent.enabled: false. See https://docs.openclaw.ai/gateway/config-tools#tools-agenttoagent and https://docs.openclaw.ai/gateway/security#scope-one-trust-boundary-per-gateway.`)
}
