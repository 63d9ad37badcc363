package audit

import (
	"path/filepath"
	"regexp"
	"strings"

	"github.com/clawgate/clawgate/caddymodule/internal/json5"
)

// runtime is the config as OpenClaw's audit sees it after loading: the
// source tree plus the defaults the loader materialises, and the derived
// facts several checks share.
type runtime struct {
	cfg         *Config
	tree        map[string]any
	agents      []agentEntry
	policyCache map[string][]*toolPolicy
	// noExecMode leaves tools.exec.mode unread, as the lines before
	// sinceExecMode do.
	noExecMode bool
	// homeWorkspace puts the default agent's default workspace at
	// ~/.openclaw/workspace, as the lines before sinceStateWorkspace do.
	homeWorkspace bool
	// minimalNoGateway leaves the gateway tool out of the minimal tools
	// profile, as the lines before sinceMinimalGateway do.
	minimalNoGateway bool
}

type agentEntry struct {
	id string
	m  map[string]any
}

// channelDefaults are the dmPolicy/groupPolicy defaults in the bundled
// channel schemas of openclaw@2026.9.6 (bundled-channel-config-metadata);
// validation fills them in, so the audit sees them even when unset, once the
// channel's plugin is there to validate against (see newRuntime).
var channelDefaults = map[string]struct {
	dm, group       string
	accDM, accGroup string
}{
	"buzz":           {group: "allowlist"},
	"discord":        {dm: "pairing", group: "allowlist"},
	"feishu":         {dm: "pairing"},
	"googlechat":     {dm: "pairing", group: "allowlist"},
	"imessage":       {dm: "pairing", group: "allowlist"},
	"irc":            {dm: "pairing", group: "allowlist", accDM: "pairing", accGroup: "allowlist"},
	"line":           {dm: "pairing", group: "allowlist", accDM: "pairing", accGroup: "allowlist"},
	"mattermost":     {dm: "pairing", group: "allowlist", accDM: "pairing", accGroup: "allowlist"},
	"msteams":        {dm: "pairing", group: "allowlist"},
	"nextcloud-talk": {dm: "pairing", group: "allowlist", accDM: "pairing", accGroup: "allowlist"},
	"signal":         {dm: "pairing", group: "allowlist"},
	"slack":          {dm: "pairing", group: "allowlist"},
	"sms":            {dm: "pairing", accDM: "pairing"},
	"telegram":       {dm: "pairing", group: "allowlist"},
	"whatsapp":       {dm: "pairing", group: "allowlist"},
	"zalouser":       {group: "allowlist", accGroup: "allowlist"},
}

// bundledChannelPlugins ship inside openclaw@2026.9.6 (dist/extensions);
// every other channel plugin is npm-installed on first use.
var bundledChannelPlugins = map[string]bool{"telegram": true}

func newRuntime(cfg *Config) *runtime {
	tree := json5.Clone(cfg.Tree, nil).(map[string]any)
	// A config without an agent roster runs the implicit "main" agent, and
	// the loader writes it out as agents.entries.main.
	agents := obj(tree["agents"])
	if agents == nil || (agents["entries"] == nil && agents["list"] == nil) {
		if agents == nil {
			agents = map[string]any{}
			tree["agents"] = agents
		}
		agents["entries"] = map[string]any{"main": map[string]any{}}
	}
	if chans := obj(tree["channels"]); chans != nil {
		for id, v := range chans {
			ch := obj(v)
			d, ok := channelDefaults[id]
			if ch == nil || !ok {
				continue
			}
			// OpenClaw cannot validate (and so does not default) the settings
			// of an npm-distributed channel until its plugin is installed.
			if !bundledChannelPlugins[id] && !channelPluginInstalled(cfg.StateDir, id) {
				continue
			}
			setDefault(ch, "dmPolicy", d.dm)
			setDefault(ch, "groupPolicy", d.group)
			for _, a := range obj(ch["accounts"]) {
				if acc := obj(a); acc != nil {
					setDefault(acc, "dmPolicy", d.accDM)
					setDefault(acc, "groupPolicy", d.accGroup)
				}
			}
		}
	}
	rt := &runtime{cfg: cfg, tree: tree}
	rt.agents = listAgentEntries(tree)
	return rt
}

// channelPluginInstalled reports whether OpenClaw's managed npm project for
// a channel plugin exists under <state>/npm/projects (openclaw-<id>-<hash>).
func channelPluginInstalled(stateDir, id string) bool {
	matches, _ := filepath.Glob(filepath.Join(stateDir, "npm", "projects", "openclaw-"+id+"-*", "node_modules", "@openclaw", id, "package.json"))
	return len(matches) > 0
}

func setDefault(m map[string]any, k, v string) {
	if v == "" {
		return
	}
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

// listAgentEntries returns agents.entries (or the retired agents.list) as
// ordered entries with their ids.
func listAgentEntries(tree map[string]any) []agentEntry {
	agents := obj(tree["agents"])
	if agents == nil {
		return nil
	}
	if e, ok := agents["entries"]; ok && e != nil {
		entries := obj(e)
		var out []agentEntry
		for _, id := range keys(entries) {
			if m := obj(entries[id]); m != nil {
				out = append(out, agentEntry{id: id, m: m})
			}
		}
		return out
	}
	var out []agentEntry
	for _, e := range arr(agents["list"]) {
		if m := obj(e); m != nil {
			if id, ok := m["id"].(string); ok {
				out = append(out, agentEntry{id: id, m: m})
			}
		}
	}
	return out
}

var (
	validAgentIDRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	invalidAgentChar = regexp.MustCompile(`[^a-z0-9_-]+`)
)

// normalizeAgentID is OpenClaw's normalizeAgentId: lowercase, unsafe runs
// to "-", "main" when nothing is left.
func normalizeAgentID(v string) string {
	t := strings.ToLower(strings.TrimSpace(v))
	if validAgentIDRe.MatchString(t) {
		return t
	}
	t = strings.Trim(invalidAgentChar.ReplaceAllString(t, "-"), "-")
	if len(t) > 64 {
		t = t[:64]
	}
	if t == "" {
		return "main"
	}
	return t
}

// defaultAgentID is the sole agent's id ("main" without a roster); several
// agents have no implicit default once the loader strips default markers.
func (rt *runtime) defaultAgentID() string {
	switch len(rt.agents) {
	case 0:
		return "main"
	case 1:
		return normalizeAgentID(rt.agents[0].id)
	}
	return ""
}

// agentConfig finds an agent's entry (the implicit main agent included).
func (rt *runtime) agentConfig(id string) map[string]any {
	if id == "" {
		return nil
	}
	nid := normalizeAgentID(id)
	for _, a := range rt.agents {
		if normalizeAgentID(a.id) == nid {
			return a.m
		}
	}
	return nil
}

func (rt *runtime) get(keys ...string) any { return get(rt.tree, keys...) }

// bind is gateway.bind, "loopback" when unset or not a string.
func (rt *runtime) bind() string { return strOr(rt.get("gateway", "bind"), "loopback") }

func (rt *runtime) tailscaleMode() string {
	return strOr(rt.get("gateway", "tailscale", "mode"), "off")
}

// remotelyExposed is OpenClaw's isGatewayRemotelyExposed.
func (rt *runtime) remotelyExposed() bool {
	if rt.bind() != "loopback" {
		return true
	}
	m := rt.tailscaleMode()
	return m == "serve" || m == "funnel"
}

// sandboxMode and sandboxWorkspaceAccess follow resolveSandboxConfigForAgent.
func (rt *runtime) sandboxMode(agentID string) string {
	if m, ok := get(rt.agentConfig(agentID), "sandbox", "mode").(string); ok {
		return m
	}
	return strOr(rt.get("agents", "defaults", "sandbox", "mode"), "off")
}

func (rt *runtime) sandboxWorkspaceAccess(agentID string) string {
	if m, ok := get(rt.agentConfig(agentID), "sandbox", "workspaceAccess").(string); ok {
		return m
	}
	return strOr(rt.get("agents", "defaults", "sandbox", "workspaceAccess"), "none")
}

// credential classifies one configured secret input, following OpenClaw's
// gateway credential planner.
type credential struct {
	configured   bool
	value        string // resolved literal, trimmed
	refPath      string // set when the value stays unresolved
	hasSecretRef bool
}

func (rt *runtime) credentialAt(path ...string) credential {
	dotted := strings.Join(path, ".")
	v := rt.get(path...)
	if rt.cfg.Unresolved[dotted] {
		return credential{configured: true, refPath: dotted}
	}
	if s, ok := v.(string); ok {
		t := strings.TrimSpace(s)
		return credential{configured: t != "", value: t}
	}
	if ref := obj(v); ref != nil {
		source, _ := ref["source"].(string)
		id := trimmed(ref["id"])
		switch source {
		case "env", "file", "exec", "store":
		default:
			return credential{}
		}
		if id == "" {
			return credential{}
		}
		// The CLI resolves env SecretRefs read-only before auditing; other
		// providers stay unresolved in a plain audit.
		if source == "env" {
			if val := strings.TrimSpace(rt.cfg.Getenv(id)); val != "" {
				return credential{configured: true, value: val}
			}
		}
		return credential{configured: true, refPath: dotted, hasSecretRef: true}
	}
	return credential{}
}

// gatewayAuth is the resolved gateway auth (resolveGatewayAuthForConfig).
type gatewayAuth struct {
	mode           string
	token          string
	password       string
	allowTailscale bool
	// plan facts used by the gateway checks
	envToken, envPassword                  string
	localToken, localPassword, remoteToken credential
	remotePassword                         credential
}

func (rt *runtime) resolveAuth() gatewayAuth {
	a := gatewayAuth{
		envToken:       strings.TrimSpace(rt.cfg.Getenv("OPENCLAW_GATEWAY_TOKEN")),
		envPassword:    strings.TrimSpace(rt.cfg.Getenv("OPENCLAW_GATEWAY_PASSWORD")),
		localToken:     rt.credentialAt("gateway", "auth", "token"),
		localPassword:  rt.credentialAt("gateway", "auth", "password"),
		remoteToken:    rt.credentialAt("gateway", "remote", "token"),
		remotePassword: rt.credentialAt("gateway", "remote", "password"),
	}
	authMode, _ := rt.get("gateway", "auth", "mode").(string)
	if !a.localToken.hasSecretRef {
		a.token = firstNonEmpty(a.localToken.value, a.envToken, a.remoteToken.value)
	}
	if !a.localPassword.hasSecretRef {
		a.password = firstNonEmpty(a.localPassword.value, a.envPassword)
		if a.password == "" && authMode != "trusted-proxy" {
			a.password = a.remotePassword.value
		}
	}
	switch {
	case authMode != "":
		a.mode = authMode
	case a.password != "":
		a.mode = "password"
	default:
		a.mode = "token"
	}
	if v, ok := rt.get("gateway", "auth", "allowTailscale").(bool); ok {
		a.allowTailscale = v
	} else {
		a.allowTailscale = rt.tailscaleMode() == "serve" && a.mode != "password" && a.mode != "trusted-proxy"
	}
	return a
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// hasHTTPAuth is hasResolvedGatewayHttpAuth.
func (a gatewayAuth) hasHTTPAuth() bool {
	switch a.mode {
	case "token":
		return a.token != ""
	case "password":
		return a.password != ""
	case "trusted-proxy":
		return true
	}
	return false
}
