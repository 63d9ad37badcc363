package audit

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
)

// OpenClaw checks some rules in code (Zod superRefine) that its published
// JSON Schema cannot carry. These are the ones clawgate repeats, each found
// in OpenClaw's own source and confirmed against `openclaw config validate`
// by the invalid corpus (testdata/invalid). Messages are OpenClaw's, word for
// word, except that a value a caller must not see is left out.
//
// Zod runs an object's refinement only once the object itself parsed, so a
// refinement is skipped where the schema already reported an issue at or
// under that object.

// refinementIssues returns OpenClaw's code-level issues for a merged config.
func refinementIssues(tree map[string]any, schemaIssues []Issue) []Issue {
	parsed := func(path string) bool {
		for _, i := range schemaIssues {
			if i.Path == path || strings.HasPrefix(i.Path, path+".") || i.Path == "<root>" && path == "" {
				return false
			}
		}
		return true
	}
	var out []Issue
	agents := obj(tree["agents"])
	type sandbox struct {
		base string
		sb   map[string]any
	}
	var sandboxes []sandbox
	if d := obj(obj(agents["defaults"])["sandbox"]); d != nil {
		sandboxes = append(sandboxes, sandbox{"agents.defaults.sandbox", d})
	}
	entries := obj(agents["entries"])
	for _, id := range keys(entries) {
		if s := obj(obj(entries[id])["sandbox"]); s != nil {
			sandboxes = append(sandboxes, sandbox{"agents.entries." + id + ".sandbox", s})
		}
	}
	for _, s := range sandboxes {
		if docker := obj(s.sb["docker"]); docker != nil && parsed(s.base+".docker") {
			out = append(out, dockerRefinements(s.base+".docker", docker)...)
		}
		if browser := obj(s.sb["browser"]); browser != nil && parsed(s.base+".browser") {
			out = append(out, browserRefinements(s.base+".browser", browser)...)
		}
	}
	if gw := obj(tree["gateway"]); gw != nil && parsed("gateway") {
		out = append(out, gatewayRefinements(gw)...)
	}
	if ea, ok := obj(obj(tree["gateway"])["remote"])["edgeAuth"].(map[string]any); ok && parsed("gateway.remote.edgeAuth") {
		out = append(out, edgeAuthIssues(ea)...)
	}
	if roles := obj(obj(tree["gateway"])["roles"]); roles != nil && parsed("gateway.roles") {
		out = append(out, rolesRefinements(roles)...)
	}
	execs := []string{"tools.exec"}
	for _, id := range keys(entries) {
		execs = append(execs, "agents.entries."+id+".tools.exec")
	}
	for _, path := range execs {
		if exec := obj(lookupPath(tree, path)); exec != nil && parsed(path) {
			out = append(out, execModeConflict(path, exec)...)
		}
	}
	for _, path := range append([]string{"agents.defaults.sandbox"}, prefixed("agents.entries.", keys(entries), ".sandbox")...) {
		sb := obj(lookupPath(tree, path))
		if sb == nil || !parsed(path) {
			continue
		}
		network := strings.ToLower(trimmed(obj(sb["browser"])["network"]))
		if strings.HasPrefix(network, "container:") && obj(sb["docker"])["dangerouslyAllowContainerNamespaceJoin"] != true {
			out = append(out, Issue{Path: path + ".browser.network", Message: `Sandbox security: browser network mode "container:*" is blocked by default. Set sandbox.docker.dangerouslyAllowContainerNamespaceJoin=true only when you fully trust this runtime.`})
		}
	}
	for _, scope := range append([]string{"tools"}, prefixed("agents.entries.", keys(entries), ".tools")...) {
		out = append(out, allowAlsoAllowIssues(tree, scope, parsed)...)
	}
	for _, path := range append([]string{"agents.defaults.heartbeat"}, prefixed("agents.entries.", keys(entries), ".heartbeat")...) {
		if hb := obj(lookupPath(tree, path)); hb != nil && parsed(path) {
			out = append(out, heartbeatIssues(path, hb)...)
		}
	}
	profiles := obj(obj(tree["browser"])["profiles"])
	for _, name := range keys(profiles) {
		path := "browser.profiles." + name
		if p := obj(profiles[name]); p != nil && parsed(path) {
			out = append(out, browserProfileIssues(path, p)...)
		}
	}
	if talk := obj(tree["talk"]); talk != nil {
		if rt := obj(talk["realtime"]); rt != nil && parsed("talk.realtime") {
			out = append(out, providerChoiceIssues("talk.realtime", rt)...)
		}
		if parsed("talk") {
			out = append(out, providerChoiceIssues("talk", talk)...)
		}
	}
	if hooks := obj(tree["hooks"]); hooks != nil && parsed("hooks") {
		out = append(out, hookMappingIssues(hooks)...)
	}
	if agents != nil && parsed("agents") {
		out = append(out, ownershipIssues(agents)...)
	}
	if bindings, ok := tree["bindings"].([]any); ok {
		for i, b := range bindings {
			path := "bindings." + strconv.Itoa(i)
			if binding := obj(b); binding != nil && binding["type"] == "acp" && parsed(path) {
				if trimmed(obj(obj(binding["match"])["peer"])["id"]) == "" {
					out = append(out, Issue{Path: path + ".match.peer", Message: "ACP bindings require match.peer.id to target a concrete conversation."})
				}
			}
		}
	}
	if channels := obj(tree["channels"]); channels != nil && parsedCore(schemaIssues, "channels") {
		out = append(out, legacyACPBindingIssues(channels, "channels")...)
	}
	out = append(out, mcpServerNameIssues(tree)...)
	out = append(out, mcpURLIssues(tree)...)
	if o, ok := obj(tree["gateway"])["publicOrigin"].(string); ok && !gatewayPublicOrigin(o) {
		out = append(out, Issue{Path: "gateway.publicOrigin", Message: "gateway.publicOrigin must be a bare HTTPS origin; HTTP is allowed only for localhost, 127.0.0.1, or [::1]"})
	}
	if o, ok := obj(obj(tree["mcp"])["apps"])["sandboxOrigin"].(string); ok && !httpOrigin(o) {
		out = append(out, Issue{Path: "mcp.apps.sandboxOrigin", Message: "sandboxOrigin must be an HTTP(S) origin without a path, query, or credentials"})
	}
	for _, base := range []string{"mcp.servers", "nodeHost.mcp.servers"} {
		servers := obj(lookupPath(tree, base))
		for _, name := range keys(servers) {
			if server := obj(servers[name]); server != nil && parsed(base+"."+name) {
				out = append(out, mcpServerIssues(base+"."+name, server)...)
			}
		}
	}
	if len(schemaIssues) == 0 {
		out = append(out, unknownAgentIDIssues(tree)...)
	}
	return out
}

// heartbeatIssues is OpenClaw's HeartbeatSchema refinement: every is a
// duration, activeHours' start and end are HH:MM (24:00 only as an end).
func heartbeatIssues(base string, hb map[string]any) []Issue {
	var out []Issue
	if every, ok := hb["every"].(string); ok && every != "" && !isDuration(every) {
		out = append(out, Issue{Path: base + ".every", Message: "invalid duration (use ms, s, m, h)"})
	}
	active := obj(hb["activeHours"])
	for _, f := range []struct {
		name    string
		allow24 bool
	}{{"start", false}, {"end", true}} {
		raw, _ := active[f.name].(string)
		if raw == "" {
			continue
		}
		path := base + ".activeHours." + f.name
		m := hhmm.FindStringSubmatch(raw)
		switch {
		case m == nil:
			out = append(out, Issue{Path: path, Message: `invalid time (use "HH:MM" 24h format)`})
		case m[1] == "24" && m[2] != "00":
			out = append(out, Issue{Path: path, Message: "invalid time (24:00 is the only allowed 24:xx value)"})
		case m[1] == "24" && !f.allow24:
			out = append(out, Issue{Path: path, Message: "invalid time (start cannot be 24:00)"})
		}
	}
	return out
}

var (
	hhmm              = regexp.MustCompile(`^([01]\d|2[0-3]|24):([0-5]\d)$`)
	singleDuration    = regexp.MustCompile(`^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$`)
	compositeDuration = regexp.MustCompile(`^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$`)
	durationSegment   = regexp.MustCompile(`(\d+(?:\.\d+)?)(ms|s|m|h|d)`)
)

// isDuration reports whether OpenClaw's parseDurationMs accepts s: one
// number with an optional unit, or number-unit segments back to back, all
// adding up to a safe integer of milliseconds.
func isDuration(s string) bool {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return false
	}
	unitMs := map[string]float64{"": 1, "ms": 1, "s": 1e3, "m": 60e3, "h": 3600e3, "d": 86400e3}
	total := 0.0
	if m := singleDuration.FindStringSubmatch(t); m != nil {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return false
		}
		total = v * unitMs[m[2]]
	} else if compositeDuration.MatchString(t) {
		for _, m := range durationSegment.FindAllStringSubmatch(t, -1) {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				return false
			}
			total += v * unitMs[m[2]]
		}
	} else {
		return false
	}
	return total < 1<<53
}

// browserProfileIssues is OpenClaw's browser profile refinements: how the
// profile reaches its browser must fit its driver.
func browserProfileIssues(path string, p map[string]any) []Issue {
	driver := str0(p["driver"])
	truthy := func(v any) bool {
		switch x := v.(type) {
		case string:
			return x != ""
		case float64:
			return x != 0
		}
		return v != nil && v != false
	}
	var out []Issue
	if driver != "existing-session" && driver != "extension" && !truthy(p["cdpPort"]) && !truthy(p["cdpUrl"]) {
		out = append(out, Issue{Path: path, Message: "Profile must set cdpPort or cdpUrl"})
	}
	if driver != "existing-session" && truthy(p["userDataDir"]) {
		out = append(out, Issue{Path: path, Message: `Profile userDataDir is only supported with driver="existing-session"`})
	}
	if driver == "extension" && truthy(p["cdpUrl"]) {
		out = append(out, Issue{Path: path, Message: `Profile cdpUrl is not supported with driver="extension" (the relay owns the endpoint)`})
	}
	return out
}

// providerChoiceIssues is OpenClaw's talk and talk.realtime refinement:
// provider names one of providers, and must be set when there are several.
func providerChoiceIssues(base string, m map[string]any) []Issue {
	provider := strings.ToLower(strings.TrimSpace(str0(m["provider"])))
	providers := obj(m["providers"])
	switch {
	case provider != "" && len(providers) > 0 && !hasKey(providers, provider):
		return []Issue{{Path: base + ".provider", Message: fmt.Sprintf("%s.provider must match a key in %s.providers (missing %s)", base, base, jsQuote(provider))}}
	case provider == "" && len(providers) > 1:
		return []Issue{{Path: base + ".provider", Message: base + ".provider is required when " + base + ".providers defines multiple providers"}}
	}
	return nil
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

// mcpServerIssues is OpenClaw's McpServerSchema refinement: legacy key
// spellings, "disabled" for "enabled", and what per-requester OAuth and the
// stdio transport need.
func mcpServerIssues(base string, server map[string]any) []Issue {
	var out []Issue
	for _, key := range []string{"connectTimeout", "connect_timeout", "timeout", "workingDirectory", "supports_parallel_tool_calls", "ssl_verify", "client_cert", "client_key"} {
		if hasKey(server, key) {
			out = append(out, Issue{Path: base, Message: "Unrecognized key: " + jsQuote(key)})
		}
	}
	if hasKey(obj(server["codex"]), "default_tools_approval_mode") {
		out = append(out, Issue{Path: base + ".codex.default_tools_approval_mode", Message: `Unrecognized key: "default_tools_approval_mode"`})
	}
	if disabled, ok := server["disabled"]; ok {
		replacement := `the canonical "enabled" boolean instead`
		if b, ok := disabled.(bool); ok {
			replacement = fmt.Sprintf(`"enabled: %v" instead, then run "openclaw doctor --fix" to migrate existing config`, !b)
		}
		out = append(out, Issue{Path: base + ".disabled", Message: `unsupported key "disabled"; use ` + replacement})
	}
	oauth := obj(server["oauth"])
	if oauth["identity"] == "per-requester" {
		if server["auth"] != "oauth" {
			out = append(out, Issue{Path: base + ".oauth.identity", Message: `oauth.identity "per-requester" requires auth: "oauth"`})
		}
		if str0(oauth["authProfileId"]) != "" {
			out = append(out, Issue{Path: base + ".oauth.authProfileId", Message: `oauth.authProfileId cannot be used with oauth.identity "per-requester"`})
		}
		if str0(server["url"]) == "" {
			out = append(out, Issue{Path: base + ".oauth.identity", Message: `oauth.identity "per-requester" requires an HTTP server URL`})
		}
		if hasKey(server, "command") || server["transport"] == "stdio" {
			out = append(out, Issue{Path: base + ".oauth.identity", Message: `oauth.identity "per-requester" cannot be combined with a command or "stdio" transport`})
		}
	}
	if server["transport"] == "stdio" && strings.TrimSpace(str0(server["command"])) == "" {
		out = append(out, Issue{Path: base + ".transport", Message: `"stdio" transport requires a non-empty command`})
	}
	return out
}

var (
	headerNameRe          = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
	transportOwnedHeaders = map[string]bool{"host": true, "connection": true, "upgrade": true, "content-length": true, "sec-websocket-key": true, "sec-websocket-version": true, "sec-websocket-protocol": true, "sec-websocket-extensions": true}
)

// edgeAuthIssues is OpenClaw's findEdgeAuthIssue on gateway.remote.edgeAuth:
// a non-empty map of valid header names, none owned by the transport, none
// differing from another only by case. OpenClaw reports the first problem
// in the file's key order, which a parsed map no longer has; sorted order
// stands in, so with several bad names the one named may differ.
func edgeAuthIssues(headers map[string]any) []Issue {
	const base = "gateway.remote.edgeAuth"
	if len(headers) == 0 {
		return []Issue{{Path: base, Message: "invalid gateway.remote.edgeAuth: header map must not be empty"}}
	}
	seen := map[string]string{}
	for _, name := range keys(headers) {
		lower := strings.ToLower(name)
		switch {
		case !headerNameRe.MatchString(name):
			q, _ := json.Marshal(name)
			return []Issue{{Path: base + "." + name, Message: "invalid gateway.remote.edgeAuth header name: " + string(q)}}
		case transportOwnedHeaders[lower]:
			return []Issue{{Path: base + "." + name, Message: fmt.Sprintf("gateway.remote.edgeAuth cannot set transport-owned header %s", jsQuote(name))}}
		case seen[lower] != "":
			return []Issue{{Path: base + "." + name, Message: fmt.Sprintf("gateway.remote.edgeAuth header names %s and %s differ only by case", jsQuote(seen[lower]), jsQuote(name))}}
		}
		seen[lower] = name
	}
	return nil
}

// httpOrigin is OpenClaw's validateHttpOrigin: an http(s) URL with no
// path, query, fragment or credentials.
func httpOrigin(s string) bool {
	if !parsesAsURL(s) {
		return false
	}
	u, _ := url.Parse(strings.TrimSpace(s))
	scheme := strings.ToLower(u.Scheme)
	return (scheme == "http" || scheme == "https") && (u.EscapedPath() == "" || u.EscapedPath() == "/") &&
		u.RawQuery == "" && u.Fragment == "" && u.User == nil
}

// gatewayPublicOrigin is OpenClaw's validateGatewayPublicOrigin: a bare
// origin, https unless the host is loopback by name.
func gatewayPublicOrigin(s string) bool {
	if !httpOrigin(s) {
		return false
	}
	u, _ := url.Parse(strings.TrimSpace(s))
	host := strings.ToLower(u.Hostname())
	return strings.EqualFold(u.Scheme, "https") || host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// mcpURLIssues is the refinement on OpenClaw's MCP server URLs (url and
// oauth.redirectUrl: http or https; oauth.clientMetadataUrl: https with a
// path). It refines the string itself, so it runs even where the URL does
// not parse.
func mcpURLIssues(tree map[string]any) []Issue {
	var out []Issue
	scheme := func(s string) (string, string, bool) {
		if !parsesAsURL(s) {
			return "", "", false
		}
		u, _ := url.Parse(strings.TrimSpace(s))
		return strings.ToLower(u.Scheme), u.EscapedPath(), true
	}
	for _, base := range []string{"mcp.servers", "nodeHost.mcp.servers"} {
		servers := obj(lookupPath(tree, base))
		for _, name := range keys(servers) {
			server := obj(servers[name])
			path := base + "." + name
			for _, field := range []struct {
				path string
				v    any
			}{{path + ".url", server["url"]}, {path + ".oauth.redirectUrl", obj(server["oauth"])["redirectUrl"]}} {
				if s, ok := field.v.(string); ok {
					if sc, _, ok := scheme(s); !ok || sc != "http" && sc != "https" {
						out = append(out, Issue{Path: field.path, Message: "Expected http:// or https:// URL"})
					}
				}
			}
			if s, ok := obj(server["oauth"])["clientMetadataUrl"].(string); ok {
				if sc, p, ok := scheme(s); !ok || sc != "https" || p == "" || p == "/" {
					out = append(out, Issue{Path: path + ".oauth.clientMetadataUrl", Message: "Expected https:// URL with a non-root pathname"})
				}
			}
		}
	}
	return out
}

// mcpServerNameIssues is OpenClaw's McpServerNameSchema and
// NodeHostMcpServerNameSchema, refinements of the servers' record keys.
func mcpServerNameIssues(tree map[string]any) []Issue {
	var out []Issue
	for _, path := range []string{"mcp.servers", "nodeHost.mcp.servers"} {
		for _, name := range keys(obj(lookupPath(tree, path))) {
			if name == "__proto__" {
				out = append(out, Issue{Path: path + "." + name, Message: `MCP server name "__proto__" is reserved; rename the server`})
			}
			if path == "nodeHost.mcp.servers" && (name == "" || name != strings.TrimSpace(name)) {
				// Zod reports a failed record key as such, not with the refinement's words.
				out = append(out, Issue{Path: path + "." + name, Message: "Invalid key in record"})
			}
		}
	}
	return out
}

// parsedCore is parsed for the channels object, whose refinement runs in
// the core schema: a channel's own issues come later and do not stop it.
func parsedCore(schemaIssues []Issue, path string) bool {
	for _, i := range schemaIssues {
		if (i.Path == path || strings.HasPrefix(i.Path, path+".")) && !channelIssue(i.Path) {
			return false
		}
	}
	return true
}

// ownershipIssues is the part of OpenClaw's agents refinement that does
// not depend on the order of agents.entries' keys.
func ownershipIssues(agents map[string]any) []Issue {
	entries := obj(agents["entries"])
	marked := 0
	for _, id := range keys(entries) {
		if obj(entries[id])["default"] == true {
			marked++
		}
	}
	var out []Issue
	if marked > 1 {
		out = append(out, Issue{Path: "agents.entries", Message: fmt.Sprintf("agents.entries must contain at most one default=true entry (found %d)", marked)})
	}
	explicit := agents["ownership"] == "explicit"
	if explicit && marked > 0 {
		out = append(out, Issue{Path: "agents.ownership", Message: "agents.ownership=explicit cannot be combined with a legacy default=true marker"})
	}
	if len(entries) > 1 && marked == 0 && !explicit {
		out = append(out, Issue{Path: "agents.ownership", Message: `multi-agent rosters require agents.ownership="explicit" or one legacy default=true marker; add agents.ownership="explicit" or run openclaw doctor`})
	}
	return out
}

// legacyACPBindingIssues is OpenClaw's addLegacyChannelAcpBindingIssues:
// a bindings.acp object anywhere under channels.
func legacyACPBindingIssues(v any, path string) []Issue {
	var out []Issue
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			out = append(out, legacyACPBindingIssues(e, path+"."+strconv.Itoa(i))...)
		}
	case map[string]any:
		if b := obj(x["bindings"]); b != nil && obj(b["acp"]) != nil {
			out = append(out, Issue{Path: path + ".bindings.acp", Message: "Legacy channel-local ACP bindings were removed; use top-level bindings[] entries."})
		}
		for _, k := range keys(x) {
			out = append(out, legacyACPBindingIssues(x[k], path+"."+k)...)
		}
	}
	return out
}

func prefixed(prefix string, names []string, suffix string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n + suffix
	}
	return out
}

// allowAlsoAllowIssues is OpenClaw's addAllowAlsoAllowConflictIssue on a
// tools scope and the tool policies inside it: allow and alsoAllow are not
// both set in one place.
func allowAlsoAllowIssues(tree map[string]any, scope string, parsed func(string) bool) []Issue {
	const fix = " cannot set both allow and alsoAllow in the same scope (merge alsoAllow into allow, or remove allow and use profile + alsoAllow)"
	tools := obj(lookupPath(tree, scope))
	if tools == nil {
		return nil
	}
	conflict := func(m map[string]any) bool {
		allow, _ := m["allow"].([]any)
		also, _ := m["alsoAllow"].([]any)
		return len(allow) > 0 && len(also) > 0
	}
	var out []Issue
	check := func(path string, m map[string]any, subject string) {
		if m != nil && parsed(path) && conflict(m) {
			out = append(out, Issue{Path: path, Message: subject + fix})
		}
	}
	subject := "tools"
	if scope != "tools" {
		subject = "agent tools"
	}
	for _, p := range keys(obj(tools["byProvider"])) {
		check(scope+".byProvider."+p, obj(obj(tools["byProvider"])[p]), "tools.byProvider policy")
	}
	for _, k := range keys(obj(tools["toolsBySender"])) {
		check(scope+".toolsBySender."+k, obj(obj(tools["toolsBySender"])[k]), "tools policy")
	}
	for _, sub := range []string{"sandbox", "subagents"} {
		check(scope+"."+sub+".tools", obj(obj(tools[sub])["tools"]), "tools policy")
	}
	check(scope, tools, subject)
	return out
}

// lookupPath follows a dotted path of object keys.
func lookupPath(tree map[string]any, path string) any {
	var cur any = tree
	for _, k := range strings.Split(path, ".") {
		cur = obj(cur)[k]
	}
	return cur
}

// execModeConflict is OpenClaw's addExecPolicyModeConflictIssue: an exec
// object sets mode or the legacy security/ask pair, not both.
func execModeConflict(base string, exec map[string]any) []Issue {
	_, hasMode := exec["mode"]
	security, hasSecurity := exec["security"].(string)
	ask, hasAsk := exec["ask"].(string)
	if !hasMode || !hasSecurity && !hasAsk {
		return nil
	}
	var repair string
	switch {
	case hasSecurity && hasAsk && !(ask == "always" || security == "full" && ask == "on-miss"):
		mode := "ask"
		switch {
		case security == "deny":
			mode = "deny"
		case security == "allowlist" && ask == "off":
			mode = "allowlist"
		case security == "full" && ask != "always":
			mode = "full"
		}
		repair = fmt.Sprintf(`Replace security/ask with mode="%s" (the equivalent of security="%s" + ask="%s").`, mode, security, ask)
	case hasSecurity && hasAsk:
		repair = "This security/ask pair has no exact mode equivalent. To keep this policy, retain both legacy fields and remove mode."
	default:
		repair = "The legacy policy is incomplete. Choose the intended security and ask values before converting; no mode equivalent can be inferred."
	}
	return []Issue{{Path: base + ".mode", Message: `mode cannot be combined with security or ask in the same exec object. Update the deploy script, template, or patch at this scope. ` + repair + ` Doctor migrates supported legacy policies to mode; run "openclaw doctor --fix" only when the saved file still needs migration.`}}
}

// hookMappingIssues is OpenClaw's hooks refinement: a persistent agent
// mapping needs a session key from somewhere.
func hookMappingIssues(hooks map[string]any) []Issue {
	hasDefault := trimmed(hooks["defaultSessionKey"]) != ""
	mappings, _ := hooks["mappings"].([]any)
	var out []Issue
	for i, m := range mappings {
		mapping := obj(m)
		if mapping == nil {
			continue
		}
		action := "agent"
		if a, ok := mapping["action"].(string); ok {
			action = a
		}
		if action == "agent" && mapping["sessionMode"] == "persistent" && trimmed(mapping["sessionKey"]) == "" && !hasDefault && mapping["transform"] == nil {
			out = append(out, Issue{Path: "hooks.mappings." + strconv.Itoa(i) + ".sessionKey", Message: "persistent hook mappings require sessionKey, hooks.defaultSessionKey, or a transform"})
		}
	}
	return out
}

// unknownAgentIDIssues is OpenClaw's root refinement: every agent id the
// config names elsewhere is a configured agent ("main" when none is). Zod
// runs it only on a config with no other issue.
func unknownAgentIDIssues(tree map[string]any) []Issue {
	agents := obj(tree["agents"])
	var ids []string
	if entries, ok := agents["entries"]; ok && entries != nil {
		for _, id := range keys(obj(entries)) {
			if obj(obj(entries)[id]) != nil {
				ids = append(ids, id)
			}
		}
	} else if list, ok := agents["list"].([]any); ok {
		for _, e := range list {
			if id, ok := obj(e)["id"].(string); ok {
				ids = append(ids, id)
			}
		}
	}
	exact, effective := map[string]bool{}, map[string]bool{}
	for _, id := range ids {
		exact[id] = true
		effective[normalizeAgentID(id)] = true
	}
	if len(ids) == 0 {
		effective["main"] = true
	}
	unknown := func(path, id string) Issue {
		return Issue{Path: path, Message: fmt.Sprintf("Unknown agent id %s (not in agents.entries).", jsQuote(id))}
	}
	var out []Issue
	for _, path := range []string{"agents.defaults.heartbeat.agentId", "agents.defaults.systemAgent.agentId", "talk.agentId"} {
		if id, ok := lookupPath(tree, path).(string); ok && !effective[normalizeAgentID(id)] {
			out = append(out, unknown(path, id))
		}
	}
	if bindings, ok := tree["bindings"].([]any); ok && len(ids) > 0 {
		for i, b := range bindings {
			if id, ok := obj(b)["agentId"].(string); ok && id != "main" && !effective[normalizeAgentID(id)] {
				out = append(out, unknown("bindings."+strconv.Itoa(i)+".agentId", id))
			}
		}
	}
	broadcast := obj(tree["broadcast"])
	for _, peer := range keys(broadcast) {
		entry := broadcast[peer]
		if peer == "strategy" || obj(entry) == nil && !isArray(entry) || len(ids) == 0 && !broadcastPeerRe.MatchString(peer) {
			continue
		}
		list, prefix := entry, "broadcast."+peer+"."
		if !isArray(entry) {
			list, prefix = obj(entry)["agents"], prefix+"agents."
		}
		items, _ := list.([]any)
		for i, a := range items {
			id, _ := a.(string)
			if !exact[id] {
				out = append(out, unknown(prefix+strconv.Itoa(i), fmt.Sprint(a)))
			}
		}
	}
	return out
}

var broadcastPeerRe = regexp.MustCompile(`(?i)^[a-z][a-z0-9_-]*:.+$`)

func isArray(v any) bool {
	_, ok := v.([]any)
	return ok
}

// dockerRefinements is OpenClaw's SandboxDockerSchema refinement.
func dockerRefinements(base string, docker map[string]any) []Issue {
	out := bindIssues(base, docker["binds"])
	network := strings.ToLower(trimmed(docker["network"]))
	switch {
	case network == "host":
		out = append(out, Issue{Path: base + ".network", Message: `Sandbox security: network mode "host" is blocked. Use "bridge" or "none" instead.`})
	case strings.HasPrefix(network, "container:") && docker["dangerouslyAllowContainerNamespaceJoin"] != true:
		out = append(out, Issue{Path: base + ".network", Message: `Sandbox security: network mode "container:*" is blocked by default. Use a custom bridge network, or set dangerouslyAllowContainerNamespaceJoin=true only when you fully trust this runtime.`})
	}
	if strings.ToLower(trimmed(docker["seccompProfile"])) == "unconfined" {
		out = append(out, Issue{Path: base + ".seccompProfile", Message: `Sandbox security: seccomp profile "unconfined" is blocked. Use a custom seccomp profile file or omit this setting.`})
	}
	if strings.ToLower(trimmed(docker["apparmorProfile"])) == "unconfined" {
		out = append(out, Issue{Path: base + ".apparmorProfile", Message: `Sandbox security: AppArmor profile "unconfined" is blocked. Use a named AppArmor profile or omit this setting.`})
	}
	return out
}

// browserRefinements is OpenClaw's SandboxBrowserSchema refinement.
func browserRefinements(base string, browser map[string]any) []Issue {
	out := bindIssues(base, browser["binds"])
	if strings.ToLower(trimmed(browser["network"])) == "host" {
		out = append(out, Issue{Path: base + ".network", Message: `Sandbox security: browser network mode "host" is blocked. Use "bridge" or a custom bridge network instead.`})
	}
	return out
}

var windowsDrivePath = regexp.MustCompile(`^[A-Za-z]:[\\/]`)

// bindIssues is OpenClaw's validateSandboxBindEntries: every bind is
// non-blank and its host side is an absolute POSIX or Windows drive path.
func bindIssues(base string, v any) []Issue {
	binds, _ := v.([]any)
	var out []Issue
	for i, b := range binds {
		bind, _ := b.(string)
		path := base + ".binds." + strconv.Itoa(i)
		if strings.TrimSpace(bind) == "" {
			out = append(out, Issue{Path: path, Message: "Sandbox security: bind mount entry must be a non-empty string."})
			continue
		}
		source := bind
		sep := strings.Index(bind, ":")
		if windowsDrivePath.MatchString(bind) {
			if j := strings.Index(bind[2:], ":"); j >= 0 {
				sep = j + 2
			} else {
				sep = -1
			}
		}
		if sep >= 0 {
			source = bind[:sep]
		}
		if !sandboxHostPathAbsolute(source) {
			out = append(out, Issue{Path: path, Message: fmt.Sprintf("Sandbox security: bind mount %s uses a non-absolute source path %s. Only absolute POSIX or Windows drive-letter paths are supported for sandbox binds.", jsQuote(bind), jsQuote(source))})
		}
	}
	return out
}

func sandboxHostPathAbsolute(raw string) bool {
	in := raw
	for _, prefix := range []string{`\\?\`, "//?/"} {
		if rest, ok := strings.CutPrefix(in, prefix); ok {
			if strings.HasPrefix(strings.ToUpper(rest), "UNC"+prefix[3:]) {
				rest = prefix[:2] + rest[4:]
			}
			in = rest
			break
		}
	}
	return strings.HasPrefix(in, "/") || windowsDrivePath.MatchString(in)
}

// gatewayRefinements is OpenClaw's gateway refinement: the portal ingress
// gets a domain of its own, apart from the Gateway's and the Control UI's
// origins, and a port other than the gateway's.
func gatewayRefinements(gw map[string]any) []Issue {
	ingress := obj(obj(gw["portals"])["ingress"])
	if ingress == nil {
		return nil
	}
	var out []Issue
	domain := strings.ToLower(str0(ingress["domain"]))
	origins := append([]string{str0(gw["publicOrigin"])}, stringItems(obj(gw["controlUi"])["allowedOrigins"])...)
	for _, origin := range origins {
		if origin == "" || !parsesAsURL(origin) {
			continue
		}
		u, _ := url.Parse(strings.TrimSpace(origin))
		host := strings.ToLower(u.Hostname())
		if host == domain || strings.HasSuffix(host, "."+domain) {
			out = append(out, Issue{Path: "gateway.portals.ingress.domain", Message: "Portal ingress must use a separate domain from Gateway and Control UI origins"})
			break
		}
	}
	port := float64(edge.DefaultGatewayPort)
	if p, ok := gw["port"].(float64); ok {
		port = p
	}
	if p, ok := ingress["port"].(float64); ok && p == port {
		out = append(out, Issue{Path: "gateway.portals.ingress.port", Message: "Portal ingress port must differ from the Gateway port"})
	}
	return out
}

func str0(v any) string {
	s, _ := v.(string)
	return s
}

// rolesRefinements is OpenClaw's gateway.roles refinements: at least one
// role definition, and a default that names one.
func rolesRefinements(roles map[string]any) []Issue {
	defs, _ := roles["definitions"].(map[string]any)
	var out []Issue
	if defs != nil && len(defs) == 0 {
		out = append(out, Issue{Path: "gateway.roles.definitions", Message: "gateway.roles.definitions must contain at least one role definition"})
	}
	if name, ok := roles["default"].(string); ok && defs != nil {
		if _, ok := defs[name]; !ok {
			out = append(out, Issue{Path: "gateway.roles.default", Message: "gateway.roles.default must name a configured role definition"})
		}
	}
	return out
}

// jsQuote quotes as a JavaScript template literal with "${…}" does for
// plain text: no escaping.
func jsQuote(s string) string { return `"` + s + `"` }
