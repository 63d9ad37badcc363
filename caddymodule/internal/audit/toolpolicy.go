package audit

import (
	"regexp"
	"strings"
)

// Tool catalogue and policy matching of openclaw@2026.9.6
// (src/agents/tool-catalog.ts, tool-policy-shared.ts, tool-policy-match.ts,
// sandbox/tool-policy.ts), reduced to what the audit asks about.

var toolGroups = map[string][]string{
	"group:openclaw":   {"code_execution", "secrets", "web_search", "web_fetch", "x_search", "memory_search", "memory_get", "sessions", "sessions_list", "sessions_history", "sessions_search", "conversations_list", "conversations_send", "conversations_turn", "sessions_send", "sessions_spawn", "github_identity_status", "github_publish", "agents_wait", "sessions_yield", "subagents", "session_status", "suggest_task", "dismiss_task", "browser", "screen", "theme", "dashboard", "terminal", "portal", "show_widget", "message", "heartbeat_respond", "automations", "gateway", "plugins", "openclaw", "nodes", "computer", "mobile_ui", "agents_list", "get_goal", "create_goal", "update_goal", "progress_card", "ask_user", "skill_workshop", "view_image", "image_generate", "music_generate", "video_generate", "tts", "pdf"},
	"group:fs":         {"ls", "read", "write", "edit", "apply_patch"},
	"group:runtime":    {"exec", "process", "code_execution", "secrets"},
	"group:web":        {"web_search", "web_fetch", "x_search"},
	"group:memory":     {"memory_search", "memory_get"},
	"group:sessions":   {"sessions", "sessions_list", "sessions_history", "sessions_search", "conversations_list", "conversations_send", "conversations_turn", "sessions_send", "sessions_spawn", "github_identity_status", "github_publish", "agents_wait", "sessions_yield", "subagents", "session_status", "suggest_task", "dismiss_task"},
	"group:ui":         {"browser", "screen", "theme", "dashboard", "terminal", "portal", "canvas", "show_widget"},
	"group:messaging":  {"message"},
	"group:automation": {"heartbeat_respond", "automations", "gateway", "plugins", "openclaw"},
	"group:nodes":      {"nodes", "computer", "mobile_ui"},
	"group:agents":     {"agents_list", "get_goal", "create_goal", "update_goal", "progress_card", "ask_user", "skill_workshop"},
	"group:media":      {"view_image", "image_generate", "music_generate", "video_generate", "tts", "pdf"},
}

var toolProfiles = map[string][]string{
	"minimal":   {"session_status", "gateway"},
	"coding":    {"ls", "read", "write", "edit", "apply_patch", "exec", "process", "code_execution", "secrets", "web_search", "web_fetch", "x_search", "memory_search", "memory_get", "sessions", "sessions_list", "sessions_history", "sessions_search", "conversations_list", "conversations_send", "conversations_turn", "sessions_send", "sessions_spawn", "github_identity_status", "github_publish", "agents_wait", "sessions_yield", "subagents", "session_status", "suggest_task", "dismiss_task", "screen", "theme", "dashboard", "terminal", "portal", "automations", "gateway", "plugins", "get_goal", "create_goal", "update_goal", "progress_card", "ask_user", "skill_workshop", "view_image", "image_generate", "music_generate", "video_generate", "bundle-mcp"},
	"messaging": {"secrets", "sessions", "sessions_list", "sessions_history", "sessions_search", "conversations_list", "conversations_send", "conversations_turn", "sessions_send", "sessions_spawn", "sessions_yield", "subagents", "session_status", "theme", "message", "gateway", "ask_user", "bundle-mcp"},
	"full":      {"*"},
}

var toolAliases = map[string]string{"bash": "exec", "apply-patch": "apply_patch", "cron": "automations"}

// Sandbox defaults (src/agents/sandbox/constants.ts). The default deny list
// also names every channel id, which no audited tool name collides with.
var (
	sandboxDefaultAllow = []string{"exec", "process", "read", "ls", "write", "edit", "apply_patch", "view_image", "sessions_list", "sessions_history", "sessions_search", "sessions_send", "sessions_spawn", "sessions_yield", "subagents", "session_status"}
	sandboxDefaultDeny  = []string{"browser", "canvas", "computer", "mobile_ui", "nodes", "automations", "gateway"}
)

// gatewayControlPlaneTools and gatewayHTTPDefaultDeny come from
// src/security/dangerous-tools.ts.
var (
	gatewayControlPlaneTools = []string{"automations", "gateway", "plugins"}
	gatewayHTTPDefaultDeny   = []string{"exec", "spawn", "shell", "fs_write", "fs_delete", "fs_move", "apply_patch", "terminal", "portal", "sessions_spawn", "sessions_send", "conversations_list", "conversations_send", "conversations_turn", "automations", "gateway", "plugins", "nodes", "computer", "mobile_ui", "openclaw"}
)

func normalizeToolName(name string) string {
	n := strings.ToLower(strings.TrimSpace(name))
	if a, ok := toolAliases[n]; ok {
		return a
	}
	return n
}

func expandToolGroups(list []string) []string {
	var out []string
	for _, raw := range list {
		n := normalizeToolName(raw)
		if n == "" {
			continue
		}
		if g, ok := toolGroups[n]; ok {
			out = append(out, g...)
			continue
		}
		out = append(out, n)
	}
	return uniqueStrings(out)
}

type globPattern struct {
	all   bool
	exact string
	re    *regexp.Regexp
}

func compileGlobs(list []string) []globPattern {
	var out []globPattern
	for _, raw := range list {
		n := normalizeToolName(raw)
		switch {
		case n == "":
		case n == "*":
			out = append(out, globPattern{all: true})
		case !strings.Contains(n, "*"):
			out = append(out, globPattern{exact: n})
		default:
			q := strings.ReplaceAll(regexp.QuoteMeta(n), `\*`, ".*")
			out = append(out, globPattern{re: regexp.MustCompile("^" + q + "$")})
		}
	}
	return out
}

func matchesGlobs(name string, pats []globPattern) bool {
	for _, p := range pats {
		if p.all || (p.exact != "" && p.exact == name) || (p.re != nil && p.re.MatchString(name)) {
			return true
		}
	}
	return false
}

// toolPolicy is an allow/deny pair; a nil allow list allows everything not
// denied. hasAllow distinguishes "no allow list" from "empty allow list".
type toolPolicy struct {
	allow    []string
	hasAllow bool
	deny     []string

	// compiled lazily: policies are asked about many tools per audit
	compiled            bool
	allowPats, denyPats []globPattern
}

func (p *toolPolicy) allows(name string) bool {
	if p == nil {
		return true
	}
	if !p.compiled {
		p.denyPats = compileGlobs(expandToolGroups(p.deny))
		p.allowPats = compileGlobs(expandToolGroups(p.allow))
		p.compiled = true
	}
	n := normalizeToolName(name)
	if matchesGlobs(n, p.denyPats) {
		return false
	}
	allow := p.allowPats
	if len(allow) == 0 {
		return true
	}
	if matchesGlobs(n, allow) {
		return true
	}
	return n == "apply_patch" && matchesGlobs("write", allow)
}

func allowedByAll(name string, policies []*toolPolicy) bool {
	for _, p := range policies {
		if !p.allows(name) {
			return false
		}
	}
	return true
}

// pickToolPolicy is pickSandboxToolPolicy: allow/alsoAllow/deny of one
// tools section, nil when it restricts nothing.
func pickToolPolicy(section map[string]any) *toolPolicy {
	if section == nil {
		return nil
	}
	allowV, alsoV, denyV := section["allow"], section["alsoAllow"], section["deny"]
	also := stringItems(alsoV)
	p := &toolPolicy{}
	switch {
	case isArr(allowV):
		p.allow, p.hasAllow = unionAllow(stringItems(allowV), true, also), true
	case len(also) > 0:
		p.allow, p.hasAllow = unionAllow(nil, false, also), true
	}
	if isArr(denyV) {
		p.deny = stringItems(denyV)
	}
	if !p.hasAllow && !isArr(denyV) {
		return nil
	}
	return p
}

func unionAllow(base []string, baseSet bool, extra []string) []string {
	if len(extra) == 0 {
		return base
	}
	if !baseSet || len(base) == 0 {
		return uniqueStrings(append([]string{"*"}, extra...))
	}
	return uniqueStrings(append(append([]string{}, base...), extra...))
}

// profilePolicy resolves a tools.profile, merged with alsoAllow.
func (rt *runtime) profilePolicy(profile any, alsoAllow any) *toolPolicy {
	name, _ := profile.(string)
	allow, ok := toolProfiles[name]
	if name == "minimal" && rt.minimalNoGateway {
		allow = []string{"session_status"}
	}
	if !ok {
		return nil
	}
	p := &toolPolicy{allow: append([]string{}, allow...), hasAllow: true}
	if extra := stringItems(alsoAllow); isArr(alsoAllow) && len(extra) > 0 {
		p.allow = uniqueStrings(append(p.allow, extra...))
	}
	return p
}

// configuredToolPolicies is resolveConfiguredToolPolicies without provider
// (byProvider) layers. agentTools must be agentID's tools section (nil for
// the defaults), so results are cached per agent and sandbox mode.
func (rt *runtime) configuredToolPolicies(agentTools map[string]any, sandboxMode, agentID string) []*toolPolicy {
	key := agentID + "\x00" + sandboxMode
	if p, ok := rt.policyCache[key]; ok {
		return p
	}
	if rt.policyCache == nil {
		rt.policyCache = map[string][]*toolPolicy{}
	}
	p := rt.buildToolPolicies(agentTools, sandboxMode, agentID)
	rt.policyCache[key] = p
	return p
}

func (rt *runtime) buildToolPolicies(agentTools map[string]any, sandboxMode, agentID string) []*toolPolicy {
	var out []*toolPolicy
	globalTools := obj(rt.get("tools"))
	profile := agentTools["profile"]
	if profile == nil {
		profile = globalTools["profile"]
	}
	var also any
	if isArr(agentTools["alsoAllow"]) {
		also = agentTools["alsoAllow"]
	} else if isArr(globalTools["alsoAllow"]) {
		also = globalTools["alsoAllow"]
	}
	if p := rt.profilePolicy(profile, also); p != nil {
		out = append(out, p)
	}
	if p := pickToolPolicy(globalTools); p != nil {
		out = append(out, p)
	}
	if p := pickToolPolicy(agentTools); p != nil {
		out = append(out, p)
	}
	if sandboxMode == "all" {
		out = append(out, rt.sandboxToolPolicy(agentID))
	}
	return out
}

// sandboxToolPolicy is resolveSandboxToolPolicyForAgent.
func (rt *runtime) sandboxToolPolicy(agentID string) *toolPolicy {
	agentP := obj(get(rt.agentConfig(agentID), "tools", "sandbox", "tools"))
	globalP := obj(rt.get("tools", "sandbox", "tools"))
	pick := func(field string) (any, bool) {
		if isArr(agentP[field]) {
			return agentP[field], true
		}
		if isArr(globalP[field]) {
			return globalP[field], true
		}
		return nil, false
	}
	allowV, allowSet := pick("allow")
	alsoV, _ := pick("alsoAllow")
	denyV, denySet := pick("deny")
	allowVals, alsoVals := stringItems(allowV), stringItems(alsoV)

	var allow []string
	switch {
	case allowSet && len(allowVals) == 0:
		allow = []string{}
	case allowSet && len(alsoVals) == 0:
		allow = allowVals
	case allowSet:
		allow = uniqueStrings(append(append([]string{}, allowVals...), alsoVals...))
	case len(alsoVals) > 0:
		allow = uniqueStrings(append(append([]string{}, sandboxDefaultAllow...), alsoVals...))
	default:
		allow = append([]string{}, sandboxDefaultAllow...)
	}
	var deny []string
	if denySet {
		deny = stringItems(denyV)
	} else {
		explicit := compileGlobs(expandToolGroups(uniqueStrings(append(append([]string{}, allowVals...), alsoVals...))))
		for _, t := range sandboxDefaultDeny {
			if len(explicit) == 0 || !matchesGlobs(normalizeToolName(t), explicit) {
				deny = append(deny, t)
			}
		}
	}
	deny = expandToolGroups(deny)
	allow = expandToolGroups(allow)
	denyPats := compileGlobs(deny)
	if matchesGlobs("image", denyPats) && !matchesGlobs("view_image", denyPats) {
		deny = append(deny, "view_image")
	}
	if len(allow) > 0 && !contains(deny, "view_image") && !contains(allow, "view_image") {
		allow = append(allow, "view_image")
	}
	return &toolPolicy{allow: allow, hasAllow: true, deny: deny}
}
