package audit

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// RunOptions tunes an audit run.
type RunOptions struct {
	// Now stamps the report; zero means time.Now().
	Now time.Time
	// SkipFilesystem leaves out the fs.* permission and symlink checks, as
	// the real audit does when includeFilesystem is false.
	SkipFilesystem bool
	// Observe, when set, is told each filesystem path the checks read and
	// what of it they read, so a caller can audit again when one changes.
	// The config file and its includes are in Config, not reported here.
	Observe func(path string, kind InputKind)
	// Skills, when set, replaces the scan of a workspace's skills/ tree (the
	// expensive part of the audit on a large tree), so a caller can reuse a
	// scan until the tree changes. Nil means ScanSkills.
	Skills func(workspace string) SkillScan
	// Line is the OpenClaw release line whose audit to follow (a
	// release.Assumed's Line); empty means the newest supported line. On an
	// older line the findings are that line's, and every finding the newest
	// line's audit adds is kept too, as clawgate.newer.<checkId> (see
	// NewerPrefix), so an older line never gets a weaker audit.
	Line string
}

// InputKind says what a check read at a path.
type InputKind uint8

const (
	// InputMeta is a path's type, mode and owner, through a symlink too.
	InputMeta InputKind = iota + 1
	// InputContent is a file's metadata and contents.
	InputContent
	// InputDir is a directory's metadata and list of entries.
	InputDir
	// InputTree is a directory and everything below it.
	InputTree
)

// Run audits a loaded config the way `openclaw security audit --json`
// (openclaw@2026.9.6, or the release line opts.Line names; without --deep)
// does, for every check that can be decided from the config, its includes
// and the filesystem. Findings carry the real check IDs, severities and
// titles, in the real run order; see OutOfScope for the checks left out and
// why, and RunOptions.Line for what an older line adds.
func Run(cfg *Config, opts RunOptions) Report {
	line := lineOf(opts.Line)
	findings := collect(cfg, opts, line)
	if newest := release.Newest().Version; line != newest {
		findings = withNewer(findings, collect(cfg, opts, newest), line, newest)
	}
	rt := newRuntime(cfg)
	suppressions := arr(rt.get("security", "audit", "suppressions"))
	active, suppressed := applySuppressions(findings, suppressions)
	if len(suppressions) > 0 {
		active = append(active, Finding{
			CheckID:     "security.audit.suppressions.active",
			Severity:    SeverityInfo,
			Title:       "Security audit suppressions configured",
			Detail:      fmt.Sprintf("security.audit.suppressions has %d configured suppression(s); %d finding(s) moved to suppressedFindings.", len(suppressions), len(suppressed)),
			Remediation: "Review suppressedFindings and remove suppressions when the accepted risk no longer applies.",
		})
	}
	if active == nil {
		active = []Finding{}
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	return Report{TS: now.UnixMilli(), Summary: summarize(active), Findings: active, SuppressedFindings: suppressed}
}

// collect runs every check as the audit of one release line does.
func collect(cfg *Config, opts RunOptions, line release.Version) []Finding {
	rt := newRuntime(cfg)
	a := &auditor{rt: rt, auth: rt.resolveAuth(), opts: opts, line: line}
	rt.noExecMode = !a.has(sinceExecMode)
	rt.homeWorkspace = !a.has(sinceStateWorkspace)
	rt.minimalNoGateway = !a.has(sinceMinimalGateway)
	a.attackSurfaceSummary()
	a.agentRoster()
	a.syncedFolder()
	a.gatewayConfig()
	a.elevated()
	a.execRuntime()
	a.agentSkillMCPBoundary()
	a.hooksHardening()
	a.gatewayHTTPNoAuth()
	a.gatewayHTTPSessionKeyOverride()
	a.sandboxDockerNoop()
	a.sandboxDangerous()
	a.nodeDenyCommandPatterns()
	a.nodeDangerousAllowCommands()
	a.minimalProfileOverride()
	a.secretsInConfig()
	a.modelHygiene()
	a.smallModelRisk()
	a.exposureMatrix()
	a.multiUser()
	a.crossAgentSessionAccess()
	if !opts.SkipFilesystem {
		a.filesystem()
		a.includePerms()
		a.stateDeepFilesystem()
		a.workspaceSkillSymlinks()
		a.pluginsTrust()
	}
	if a.line.Compare(untilOfflineChannelAudit) < 0 {
		a.telegramChannel()
	}
	return a.findings
}

type auditor struct {
	rt       *runtime
	auth     gatewayAuth
	opts     RunOptions
	line     release.Version // the release line whose audit this follows
	findings []Finding
}

// observe tells the caller's RunOptions.Observe that a check read path.
func (a *auditor) observe(path string, kind InputKind) {
	if a.opts.Observe != nil {
		a.opts.Observe(path, kind)
	}
}

// inspect is inspectPerms, observed.
func (a *auditor) inspect(path string) perms {
	a.observe(path, InputMeta)
	return inspectPerms(path)
}

func (a *auditor) add(id string, sev Severity, title, detail, remediation string) {
	a.findings = append(a.findings, Finding{CheckID: id, Severity: sev, Title: title, Detail: detail, Remediation: remediation})
}

// warnList adds a warning whose detail is lead followed by items as a
// bullet list; with no items there is nothing to warn about.
func (a *auditor) warnList(id, title, lead string, items []string, remediation string) {
	if len(items) == 0 {
		return
	}
	a.add(id, SeverityWarn, title, lead+"\n"+bulletList(items), remediation)
}

func sevIf(cond bool, yes, no Severity) Severity {
	if cond {
		return yes
	}
	return no
}

const multiTenantNote = "For multiple users or organizations, run one isolated Gateway cell per tenant: https://docs.openclaw.ai/gateway/multi-tenant-hosting"

// attackSurfaceSummary is collectAttackSurfaceSummaryFindings.
func (a *auditor) attackSurfaceSummary() {
	rt := a.rt
	open, allow := 0, 0
	for _, v := range obj(rt.get("channels")) {
		ch := obj(v)
		if ch == nil {
			continue
		}
		switch ch["groupPolicy"] {
		case "open":
			open++
		case "allowlist":
			allow++
		}
	}
	onOff := func(b bool) string {
		if b {
			return "enabled"
		}
		return "disabled"
	}
	a.add("summary.attack_surface", SeverityInfo, "Attack surface summary",
		fmt.Sprintf("groups: open=%d, allowlist=%d\ntools.elevated: %s\nhooks.webhooks: %s\nhooks.internal: %s\nbrowser control: %s\ntrust model: personal assistant (one trusted operator boundary), not hostile multi-tenant on one shared gateway. %s",
			open, allow, onOff(!isFalse(rt.get("tools", "elevated", "enabled"))), onOff(isTrue(rt.get("hooks", "enabled"))),
			onOff(rt.internalHooksConfigured()), onOff(rt.browserEnabled()), multiTenantNote), "")
}

// internalHooksConfigured is resolveInternalHookSelection(cfg).configured,
// without hook installs recorded in OpenClaw's machine state.
func (rt *runtime) internalHooksConfigured() bool {
	internal := obj(rt.get("hooks", "internal"))
	if isFalse(internal["enabled"]) {
		return false
	}
	if isTrue(internal["enabled"]) {
		return true
	}
	for _, d := range stringItems(get(internal, "load", "extraDirs")) {
		if strings.TrimSpace(d) != "" {
			return true
		}
	}
	for _, e := range obj(internal["entries"]) {
		if !isFalse(get(e, "enabled")) {
			return true
		}
	}
	return false
}

// pluginAllowed is passesManifestOwnerBasePolicy for one plugin id: plugins
// on, the id not denied, its entry not disabled, and allowed when there is
// an allow list. Installed extensions are judged by it too.
func (rt *runtime) pluginAllowed(id string) bool {
	plugins := obj(rt.get("plugins"))
	if isFalse(plugins["enabled"]) {
		return false
	}
	norm := func(list any) []string {
		var out []string
		for _, s := range stringItems(list) {
			if t := strings.ToLower(strings.TrimSpace(s)); t != "" {
				out = append(out, t)
			}
		}
		return out
	}
	if contains(norm(plugins["deny"]), id) {
		return false
	}
	for k, e := range obj(plugins["entries"]) {
		if strings.ToLower(strings.TrimSpace(k)) == id && isFalse(get(e, "enabled")) {
			return false
		}
	}
	allow := norm(plugins["allow"])
	return len(allow) == 0 || contains(allow, id)
}

func (rt *runtime) browserEnabled() bool {
	return !isFalse(rt.get("browser", "enabled")) && rt.pluginAllowed("browser")
}

// agentRoster is collectAgentRosterFindings. The loader already refuses
// most broken rosters, so this rarely fires.
func (a *auditor) agentRoster() {
	rt := a.rt
	src := obj(get(rt.cfg.Tree, "agents"))
	if src == nil || (src["entries"] == nil && src["list"] == nil) {
		return
	}
	entries := listAgentEntries(rt.cfg.Tree)
	defaults := 0
	for _, e := range entries {
		if isTrue(e.m["default"]) {
			defaults++
		}
	}
	explicit := src["ownership"] == "explicit"
	if explicit {
		if defaults == 0 {
			return
		}
		a.add("config.agent_roster.invalid_default_count", SeverityWarn, "Agent roster has an invalid default selection",
			fmt.Sprintf("Expected no agents.entries default=true entries with agents.ownership=explicit, found %d.", defaults),
			"Run `openclaw doctor --fix` to repair the authored agent roster.")
		return
	}
	if len(entries) == 1 || defaults == 1 {
		return
	}
	a.add("config.agent_roster.invalid_default_count", SeverityWarn, "Agent roster has an invalid default selection",
		fmt.Sprintf("Expected a resolvable default agent (sole entry, one default=true marker, or agents.ownership=explicit); found %d default markers across %d configured agents.", defaults, len(entries)),
		"Run `openclaw doctor --fix` to repair the authored agent roster.")
}

func isProbablySynced(p string) bool {
	s := strings.ToLower(p)
	for _, m := range []string{"icloud", "dropbox", "google drive", "googledrive", "onedrive"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func (a *auditor) syncedFolder() {
	c := a.rt.cfg
	if isProbablySynced(c.StateDir) || isProbablySynced(c.Path) {
		a.add("fs.synced_dir", SeverityWarn, "State/config path looks like a synced folder",
			fmt.Sprintf("stateDir=%s, configPath=%s. Synced folders (iCloud/Dropbox/OneDrive/Google Drive) can leak tokens and transcripts onto other devices.", c.StateDir, c.Path),
			`Keep OPENCLAW_STATE_DIR on a local-only volume and re-run "openclaw security audit --fix".`)
	}
}

// gatewayConfig is collectGatewayConfigFindings.
func (a *auditor) gatewayConfig() {
	rt, auth := a.rt, a.auth
	bind := rt.bind()
	tsMode := rt.tailscaleMode()
	controlUI := !isFalse(rt.get("gateway", "controlUi", "enabled"))
	origins := stringEntries(rt.get("gateway", "controlUi", "allowedOrigins"))
	hostFallback := isTrue(rt.get("gateway", "controlUi", "dangerouslyAllowHostHeaderOriginFallback"))
	var proxies []any
	if p, ok := rt.get("gateway", "trustedProxies").([]any); ok {
		proxies = p
	}
	explicitMode, _ := rt.get("gateway", "auth", "mode").(string)
	hasToken := auth.token != "" && !rt.cfg.Unresolved["gateway.auth.token"]
	hasPassword := auth.password != "" && !rt.cfg.Unresolved["gateway.auth.password"]
	tokenConfigured := hasToken || auth.envToken != "" || auth.localToken.value != "" || auth.localToken.hasSecretRef || auth.remoteToken.value != "" || auth.remoteToken.hasSecretRef
	passwordConfigured := hasPassword || ((explicitMode == "password" || (explicitMode != "token" && explicitMode != "none" && explicitMode != "trusted-proxy" && !tokenConfigured)) &&
		(auth.envPassword != "" || auth.localPassword.value != "" || auth.localPassword.hasSecretRef))
	var hasGatewayAuth bool
	switch explicitMode {
	case "token":
		hasGatewayAuth = tokenConfigured
	case "password":
		hasGatewayAuth = passwordConfigured
	case "none", "trusted-proxy":
		hasGatewayAuth = false
	default:
		hasGatewayAuth = tokenConfigured || passwordConfigured
	}
	bindNoAuth := !hasGatewayAuth && auth.mode != "trusted-proxy"
	hasGatewayAuth = hasGatewayAuth || auth.mode == "trusted-proxy"
	hasLoopbackAuth := hasGatewayAuth || (auth.allowTailscale && tsMode == "serve")
	if !a.has(sinceTrustedProxyAuth) {
		// Older lines count a configured secret as a secret even when its
		// ${VAR} is unset, and trusted-proxy auth as no auth on loopback.
		configured := func(kind string) bool {
			s, _ := rt.get("gateway", "auth", kind).(string)
			return strings.TrimSpace(s) != ""
		}
		tokenCan := tokenConfigured || configured("token")
		passwordCan := passwordConfigured || ((explicitMode == "password" || (explicitMode != "token" && explicitMode != "none" && explicitMode != "trusted-proxy" && !tokenCan)) && configured("password"))
		var shared bool
		switch explicitMode {
		case "token":
			shared = tokenCan
		case "password":
			shared = passwordCan
		case "none", "trusted-proxy":
		default:
			shared = tokenCan || passwordCan
		}
		bindNoAuth = !shared && auth.mode != "trusted-proxy"
		hasLoopbackAuth = shared || (auth.allowTailscale && tsMode == "serve")
	}

	toolsAllow := map[string]bool{}
	for _, v := range arr(rt.get("gateway", "tools", "allow")) {
		if s := strings.ToLower(trimmed(v)); s != "" {
			toolsAllow[s] = true
		}
	}
	var reenabled []string
	for _, t := range gatewayHTTPDefaultDeny {
		if toolsAllow[t] {
			reenabled = append(reenabled, t)
		}
	}
	if len(reenabled) > 0 {
		a.add("gateway.tools_invoke_http.dangerous_allow", sevIf(bind != "loopback" || tsMode == "funnel", SeverityCritical, SeverityWarn),
			"Gateway HTTP /tools/invoke re-enables dangerous tools",
			fmt.Sprintf("gateway.tools.allow includes %s which removes them from the default HTTP deny list. This can allow remote session spawning / control-plane actions via HTTP and increases RCE blast radius if the gateway is reachable.", strings.Join(reenabled, ", ")),
			"Remove these entries from gateway.tools.allow (recommended). If you keep them enabled, keep gateway.bind loopback-only (or tailnet-only), restrict network exposure, and treat the gateway token/password as full-admin.")
	}
	if bind != "loopback" && bindNoAuth {
		a.add("gateway.bind_no_auth", SeverityCritical, "Gateway binds beyond loopback without auth",
			fmt.Sprintf("gateway.bind=%q but no gateway.auth token/password is configured.", bind),
			"Set gateway.auth (token recommended) or bind to loopback.")
	}
	a.envTokenConflict()
	if bind == "loopback" && controlUI && len(proxies) == 0 {
		a.add("gateway.trusted_proxies_missing", SeverityWarn, "Reverse proxy headers are not trusted",
			"gateway.bind is loopback and gateway.trustedProxies is empty. If you expose the Control UI through a reverse proxy, configure trusted proxies so local-client checks cannot be spoofed.",
			"Set gateway.trustedProxies to your proxy IPs or keep the Control UI local-only.")
	}
	if bind == "loopback" && controlUI && !hasLoopbackAuth {
		a.add("gateway.loopback_no_auth", SeverityCritical, "Gateway auth missing on loopback",
			"gateway.bind is loopback but no gateway auth secret is configured. If the Control UI is exposed through a reverse proxy, unauthenticated access is possible.",
			"Set gateway.auth (token recommended) or keep the Control UI local-only.")
	}
	if bind != "loopback" && controlUI && len(origins) == 0 && !hostFallback {
		a.add("gateway.control_ui.allowed_origins_required", SeverityCritical, "Non-loopback Control UI missing explicit allowed origins",
			"Control UI is enabled on a non-loopback bind but gateway.controlUi.allowedOrigins is empty. Strict origin policy requires explicit allowed origins for non-loopback deployments.",
			"Set gateway.controlUi.allowedOrigins to full trusted origins (for example https://control.example.com). If your deployment intentionally relies on Host-header origin fallback, set gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback=true.")
	}
	if contains(origins, "*") {
		a.add("gateway.control_ui.allowed_origins_wildcard", sevIf(bind != "loopback", SeverityCritical, SeverityWarn), "Control UI allowed origins contains wildcard",
			`gateway.controlUi.allowedOrigins includes "*" which means allow any browser origin for Control UI/WebChat requests. This disables origin allowlisting and should be treated as an intentional allow-all policy.`,
			`Replace wildcard origins with explicit trusted origins (for example https://control.example.com). Do not use "*" outside tightly controlled local testing.`)
	}
	if hostFallback {
		a.add("gateway.control_ui.host_header_origin_fallback", sevIf(bind != "loopback", SeverityCritical, SeverityWarn), "DANGEROUS: Host-header origin fallback enabled",
			"gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback=true enables Host-header origin fallback for Control UI/WebChat websocket checks and weakens DNS rebinding protections.",
			"Disable gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback and configure explicit gateway.controlUi.allowedOrigins.")
	}
	if isTrue(rt.get("gateway", "allowRealIpFallback")) {
		nonLoopback := false
		for _, p := range proxies {
			s, _ := p.(string)
			if !isStrictLoopbackProxy(s) {
				nonLoopback = true
			}
		}
		a.add("gateway.real_ip_fallback_enabled", sevIf(bind != "loopback" || (auth.mode == "trusted-proxy" && nonLoopback), SeverityCritical, SeverityWarn), "X-Real-IP fallback is enabled",
			"gateway.allowRealIpFallback=true trusts X-Real-IP when trusted proxies omit X-Forwarded-For. Misconfigured proxies that forward client-supplied X-Real-IP can spoof source IP and local-client checks.",
			"Keep gateway.allowRealIpFallback=false (default). Only enable this when your trusted proxy always overwrites X-Real-IP and cannot provide X-Forwarded-For.")
	}
	if strOr(rt.get("discovery", "mdns", "mode"), "minimal") == "full" {
		a.add("discovery.mdns_full_mode", sevIf(bind != "loopback", SeverityCritical, SeverityWarn), "mDNS full mode can leak host metadata",
			`discovery.mdns.mode="full" publishes cliPath/sshPort in local-network TXT records. This can reveal usernames, filesystem layout, and management ports.`,
			`Prefer discovery.mdns.mode="minimal" (recommended) or "off", especially when gateway.bind is not loopback.`)
	}
	switch tsMode {
	case "funnel":
		a.add("gateway.tailscale_funnel", SeverityCritical, "Tailscale Funnel exposure enabled",
			`gateway.tailscale.mode="funnel" exposes the Gateway publicly; keep auth strict and treat it as internet-facing.`,
			`Prefer tailscale.mode="serve" (tailnet-only) or set tailscale.mode="off".`)
	case "serve":
		a.add("gateway.tailscale_serve", SeverityInfo, "Tailscale Serve exposure enabled",
			`gateway.tailscale.mode="serve" exposes the Gateway to your tailnet (loopback behind Tailscale).`, "")
	}
	if isTrue(rt.get("mcp", "apps", "enabled")) {
		a.add("mcp.apps.enabled", SeverityWarn, "MCP Apps UI bridge enabled",
			"mcp.apps.enabled=true allows configured MCP servers to provide interactive HTML. Views are CSP-restricted and origin-isolated, but they can call app-visible tools on their owning MCP server while the session runtime remains active.",
			"Keep this enabled only for MCP servers you trust. Disable with `openclaw config set mcp.apps.enabled false --strict-json` when it is not needed.")
	}
	for _, flag := range rt.dangerousFlags() {
		a.add("config.insecure_or_dangerous_flags", SeverityWarn, "Insecure or dangerous config flag enabled",
			fmt.Sprintf("Detected enabled flag: %s.", flag),
			"Disable this flag when not actively debugging, or keep deployment scoped to trusted/local-only networks.")
	}
	for _, kind := range []string{"token", "password"} {
		if auth.mode != kind {
			continue
		}
		if !a.has(sinceSecretPlaceholders) {
			// Older lines judge only the token, and only by its length.
			if s := strings.TrimSpace(auth.token); kind == "token" && s != "" && utf16Len(s) < 24 {
				a.add("gateway.token_too_short", SeverityWarn, "Gateway token looks short",
					fmt.Sprintf("gateway auth token is %d chars; prefer a long random token.", utf16Len(s)), "")
			}
			continue
		}
		configValue := rt.get("gateway", "auth", kind)
		var input any
		if kind == "token" && auth.token != "" {
			input = auth.token
		} else if kind == "password" && auth.password != "" {
			input = auth.password
		} else {
			input = configValue
		}
		plan := auth.localToken
		if kind == "password" {
			plan = auth.localPassword
		}
		if plan.refPath != "" {
			// An unresolved or SecretRef-backed value is not judged by length.
			input = nil
		}
		if s, ok := input.(string); ok && (strings.TrimSpace(s) == "" || strings.TrimSpace(s) == "undefined" || strings.TrimSpace(s) == "null") {
			remediation := "Generate a real secret (for example, `openssl rand -hex 32`) and update OPENCLAW_GATEWAY_PASSWORD or gateway.auth.password (or its external source). Restart the Gateway afterward."
			if kind == "token" {
				remediation = "Run `openclaw doctor --fix --generate-gateway-token` for an inline token; otherwise rotate its external secret source. Restart the Gateway afterward."
			}
			a.add("gateway."+kind+"_placeholder_value", SeverityCritical, fmt.Sprintf("Gateway %s is a blank or undefined/null placeholder", kind),
				fmt.Sprintf("The selected Gateway %s is a known non-secret value. Gateway startup rejects it.", kind), remediation)
		} else if s, ok := input.(string); ok && strings.TrimSpace(s) != "" && utf16Len(strings.TrimSpace(s)) < 24 {
			a.add("gateway."+kind+"_too_short", SeverityWarn, fmt.Sprintf("Gateway %s looks short", kind),
				fmt.Sprintf("gateway auth %s is %d chars; prefer a long random %s.", kind, utf16Len(strings.TrimSpace(s)), kind), "")
		}
	}
	if auth.mode == "trusted-proxy" {
		tp := obj(rt.get("gateway", "auth", "trustedProxy"))
		a.add("gateway.trusted_proxy_auth", SeverityCritical, "Trusted-proxy auth mode enabled",
			`gateway.auth.mode="trusted-proxy" delegates authentication to a reverse proxy. Ensure your proxy (Pomerium, Caddy, nginx) handles auth correctly and that gateway.trustedProxies only contains IPs of your actual proxy servers.`,
			"Verify: (1) Your proxy terminates TLS and authenticates users. (2) gateway.trustedProxies is restricted to proxy IPs only. (3) Direct access to the Gateway port is blocked by firewall. Same-host proxy requests are rejected unless gateway.auth.trustedProxy.allowLoopback=true and gateway.trustedProxies includes their loopback source; enable only for a deliberate same-host trust boundary. See /gateway/trusted-proxy-auth for setup guidance.")
		if len(proxies) == 0 {
			a.add("gateway.trusted_proxy_no_proxies", SeverityCritical, "Trusted-proxy auth enabled but no trusted proxies configured",
				`gateway.auth.mode="trusted-proxy" but gateway.trustedProxies is empty. All requests will be rejected.`,
				"Set gateway.trustedProxies to the IP(s) of your reverse proxy.")
		}
		if !truthy(tp["userHeader"]) {
			a.add("gateway.trusted_proxy_no_user_header", SeverityCritical, "Trusted-proxy auth missing userHeader config",
				`gateway.auth.mode="trusted-proxy" but gateway.auth.trustedProxy.userHeader is not configured.`,
				`Set gateway.auth.trustedProxy.userHeader to the header name your proxy uses (e.g., "x-forwarded-user", "x-pomerium-claim-email").`)
		}
		if isTrue(tp["allowLoopback"]) {
			a.add("gateway.trusted_proxy_allow_loopback", SeverityWarn, "Trusted-proxy auth allows loopback proxy sources",
				"gateway.auth.trustedProxy.allowLoopback=true allows loopback-source requests from configured gateway.trustedProxies entries to satisfy trusted-proxy auth.",
				"Enable this only when a same-host reverse proxy is the intended trust boundary. Keep direct Gateway access private to the host and require the proxy to strip or overwrite identity headers.")
		}
		if isTrue(get(tp, "deviceAutoApprove", "enabled")) {
			a.add("gateway.trusted_proxy_device_auto_approve", SeverityWarn, "Trusted-proxy operator device auto-approval enabled",
				"gateway.auth.trustedProxy.deviceAutoApprove.enabled=true delegates new browser and native UI operator device pairing entirely to the reverse-proxy identity.",
				"Enable this only when the proxy is the exclusive Gateway ingress, strongly authenticates users, overwrites identity headers, and restricts access with allowUsers.")
			for _, s := range stringItems(get(tp, "deviceAutoApprove", "scopes")) {
				if strings.TrimSpace(s) == "operator.admin" {
					a.add("gateway.trusted_proxy_device_auto_approve_admin", SeverityCritical, "Trusted-proxy device auto-approval allows full admin",
						"gateway.auth.trustedProxy.deviceAutoApprove.scopes includes operator.admin, so every proxy-authenticated user can auto-approve a new operator device with full admin; requests without scopes receive full admin automatically.",
						"Remove operator.admin and approve admin access manually, or grant admin per identity via gateway.auth.identityScopes.")
					break
				}
			}
		}
		if len(arr(tp["allowUsers"])) == 0 {
			a.add("gateway.trusted_proxy_no_allowlist", SeverityWarn, "Trusted-proxy auth allows all authenticated users",
				"gateway.auth.trustedProxy.allowUsers is empty, so any user authenticated by your proxy can access the Gateway.",
				`Consider setting gateway.auth.trustedProxy.allowUsers to restrict access to specific users (e.g., ["nick@example.com"]).`)
		}
	}
	if bind != "loopback" && auth.mode != "trusted-proxy" && !truthy(rt.get("gateway", "auth", "rateLimit")) {
		a.add("gateway.auth_no_rate_limit", SeverityWarn, "No auth rate limiting configured",
			"gateway.bind is not loopback but no gateway.auth.rateLimit is configured. Without rate limiting, brute-force auth attacks are not mitigated.",
			"Set gateway.auth.rateLimit (e.g. { maxAttempts: 10, windowMs: 60000, lockoutMs: 300000 }).")
	}
}

// utf16Len counts UTF-16 code units, as JavaScript's String.length does.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// isStrictLoopbackProxy reports whether a trustedProxies entry is exactly
// 127.0.0.1 or ::1 (optionally /32 or /128).
func isStrictLoopbackProxy(entry string) bool {
	c := strings.TrimSpace(entry)
	if c == "" {
		return false
	}
	if !strings.Contains(c, "/") {
		return c == "127.0.0.1" || strings.ToLower(c) == "::1"
	}
	ip, prefix, _ := strings.Cut(c, "/")
	ip = strings.TrimSpace(ip)
	if ip == "" || prefix == "" {
		return false
	}
	n, err := strconv.Atoi(prefix)
	if err != nil || n < 0 || strings.TrimLeft(prefix, "0123456789") != "" {
		return false
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Zone() != "" {
		return false
	}
	if addr.Is4() {
		return ip == "127.0.0.1" && n == 32
	}
	return n == 128 && strings.ToLower(ip) == "::1"
}

// envTokenConflict is resolveGatewayAuthTokenSourceConflict.
func (a *auditor) envTokenConflict() {
	rt := a.rt
	envToken := strings.TrimSpace(rt.cfg.Getenv("OPENCLAW_GATEWAY_TOKEN"))
	if envToken == "" || strings.TrimSpace(rt.cfg.Getenv("OPENCLAW_SERVICE_KIND")) == "gateway" || rt.get("gateway", "mode") == "remote" {
		return
	}
	switch rt.get("gateway", "auth", "mode") {
	case "password", "none", "trusted-proxy":
		return
	}
	input := rt.get("gateway", "auth", "token")
	isRef := false
	if ref := obj(input); ref != nil {
		src, _ := ref["source"].(string)
		if src == "env" || src == "file" || src == "exec" || src == "store" {
			if src == "env" && trimmed(ref["id"]) == "OPENCLAW_GATEWAY_TOKEN" {
				return
			}
			isRef = true
		}
	}
	configToken := ""
	if !isRef {
		configToken = trimmed(input)
		if configToken == "" {
			return
		}
		if configToken == envToken {
			return
		}
	}
	a.add("gateway.env_token_overrides_config", SeverityWarn, "OPENCLAW_GATEWAY_TOKEN conflicts with gateway.auth.token",
		"OPENCLAW_GATEWAY_TOKEN is set while gateway.auth.token uses a different configured source. Configured local Gateway clients and the managed gateway service prefer gateway.auth.token. Environment credentials remain active for explicit environment URL and node-host targets, so a stale value can still authenticate against the wrong target.",
		"Remove OPENCLAW_GATEWAY_TOKEN from the shell, ~/.openclaw/.env, or launchctl env if gateway.auth.token is intended, or point gateway.auth.token at ${OPENCLAW_GATEWAY_TOKEN} if the env var should be canonical.")
}

var dangerousDockerKeys = []string{"dangerouslyAllowReservedContainerTargets", "dangerouslyAllowExternalBindSources", "dangerouslyAllowContainerNamespaceJoin"}

// dangerousFlags is collectEnabledInsecureOrDangerousFlags without plugin
// config contracts (those need plugin manifests).
func (rt *runtime) dangerousFlags() []string {
	var out []string
	if isTrue(rt.get("gateway", "controlUi", "dangerouslyAllowHostHeaderOriginFallback")) {
		out = append(out, "gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback=true")
	}
	if isTrue(rt.get("hooks", "gmail", "allowUnsafeExternalContent")) {
		out = append(out, "hooks.gmail.allowUnsafeExternalContent=true")
	}
	for i, m := range arr(rt.get("hooks", "mappings")) {
		if isTrue(get(m, "allowUnsafeExternalContent")) {
			out = append(out, fmt.Sprintf("hooks.mappings[%d].allowUnsafeExternalContent=true", i))
		}
	}
	if isFalse(rt.get("tools", "exec", "applyPatch", "workspaceOnly")) {
		out = append(out, "tools.exec.applyPatch.workspaceOnly=false")
	}
	if n := len(arr(rt.get("security", "audit", "suppressions"))); n > 0 {
		out = append(out, fmt.Sprintf("security.audit.suppressions configured (%d)", n))
	}
	if isTrue(rt.get("hooks", "allowRequestSessionKey")) {
		out = append(out, "hooks.allowRequestSessionKey=true")
	}
	if isTrue(rt.get("browser", "ssrfPolicy", "dangerouslyAllowPrivateNetwork")) {
		out = append(out, "browser.ssrfPolicy.dangerouslyAllowPrivateNetwork=true")
	}
	if isFalse(rt.get("tools", "fs", "workspaceOnly")) {
		out = append(out, "tools.fs.workspaceOnly=false")
	}
	docker := func(d map[string]any, prefix string) {
		for _, k := range dangerousDockerKeys {
			if isTrue(d[k]) {
				out = append(out, prefix+"."+k+"=true")
			}
		}
	}
	docker(obj(rt.get("agents", "defaults", "sandbox", "docker")), "agents.defaults.sandbox.docker")
	for _, ag := range rt.agents {
		docker(obj(get(ag.m, "sandbox", "docker")), "agents.entries."+ag.id+".sandbox.docker")
	}
	return out
}

// elevated is collectElevatedFindings.
func (a *auditor) elevated() {
	rt := a.rt
	if isFalse(rt.get("tools", "elevated", "enabled")) {
		return
	}
	allowFrom := obj(rt.get("tools", "elevated", "allowFrom"))
	for _, provider := range keys(allowFrom) {
		list := stringEntries(allowFrom[provider])
		if contains(list, "*") {
			a.add("tools.elevated.allowFrom."+provider+".wildcard", SeverityCritical, "Elevated exec allowlist contains wildcard",
				fmt.Sprintf(`tools.elevated.allowFrom.%s includes "*" which effectively approves everyone on that channel for elevated mode.`, provider), "")
		} else if len(list) > 25 {
			a.add("tools.elevated.allowFrom."+provider+".large", SeverityWarn, "Elevated exec allowlist is large",
				fmt.Sprintf("tools.elevated.allowFrom.%s has %d entries; consider tightening elevated access.", provider, len(list)), "")
		}
	}
}

// execPolicy resolves (security, ask) from a mode or the retired pair, as
// resolveExecModePolicy does.
func execPolicy(mode any, security, ask string) (string, string) {
	switch mode {
	case "deny":
		return "deny", "off"
	case "allowlist":
		return "allowlist", "off"
	case "ask", "auto":
		return "allowlist", "on-miss"
	case "full":
		return "full", "off"
	}
	return security, ask
}

type execScope struct{ id, security, host string }

// execMode is an exec config's mode, as the audited line reads it.
func (rt *runtime) execMode(exec map[string]any) any {
	if rt.noExecMode {
		return nil
	}
	return exec["mode"]
}

func (rt *runtime) execScopes() []execScope {
	globalExec := obj(rt.get("tools", "exec"))
	gSec, gAsk := execPolicy(rt.execMode(globalExec), strOr(globalExec["security"], "deny"), strOr(globalExec["ask"], "off"))
	defID := rt.defaultAgentID()
	if defID == "" {
		defID = "global"
	}
	scopes := []execScope{{id: defID, security: gSec, host: strOr(globalExec["host"], "auto")}}
	index := map[string]int{defID: 0}
	for _, ag := range rt.agents {
		ae := obj(get(ag.m, "tools", "exec"))
		sec := gSec
		if v, ok := ae["security"].(string); ok {
			sec = v
		}
		ask := gAsk
		if v, ok := ae["ask"].(string); ok {
			ask = v
		}
		sec, _ = execPolicy(rt.execMode(ae), sec, ask)
		host := strOr(ae["host"], strOr(globalExec["host"], "auto"))
		s := execScope{id: ag.id, security: sec, host: host}
		if i, ok := index[ag.id]; ok {
			scopes[i] = s
			continue
		}
		index[ag.id] = len(scopes)
		scopes = append(scopes, s)
	}
	return scopes
}

// openExecSurfacePaths is collectOpenExecSurfacePaths: every open dmPolicy
// or groupPolicy anywhere under channels.
func (rt *runtime) openExecSurfacePaths() []string {
	hits := map[string]bool{}
	var visit func(v any, scope string)
	visit = func(v any, scope string) {
		m := obj(v)
		if m == nil {
			return
		}
		if m["groupPolicy"] == "open" {
			hits[scope+".groupPolicy"] = true
		}
		if m["dmPolicy"] == "open" {
			hits[scope+".dmPolicy"] = true
		}
		for _, k := range keys(m) {
			visit(m[k], scope+"."+k)
		}
	}
	chans := obj(rt.get("channels"))
	for _, id := range keys(chans) {
		visit(chans[id], "channels."+id)
	}
	return keys(hits)
}

// execRuntime is collectExecRuntimeFindings, without the exec-approvals
// file (it lives under the gateway user's home, not the config).
func (a *auditor) execRuntime() {
	rt := a.rt
	globalExec := obj(rt.get("tools", "exec"))
	if globalExec["host"] == "sandbox" && rt.sandboxMode("") == "off" {
		a.add("tools.exec.host_sandbox_no_sandbox_defaults", SeverityWarn, "Exec host is sandbox but sandbox mode is off",
			"tools.exec.host is explicitly set to sandbox while agents.defaults.sandbox.mode=off. In this mode, exec fails closed because no sandbox runtime is available.",
			"Enable sandbox mode (`agents.defaults.sandbox.mode=\"non-main\"` or `\"all\"`) or set tools.exec.host to \"gateway\" with approvals.")
	}
	var risky []string
	for _, ag := range rt.agents {
		if get(ag.m, "tools", "exec", "host") == "sandbox" && rt.sandboxMode(ag.id) == "off" && len(risky) < 5 {
			risky = append(risky, ag.id)
		}
	}
	if len(risky) > 0 {
		a.add("tools.exec.host_sandbox_no_sandbox_agents", SeverityWarn, "Agent exec host uses sandbox while sandbox mode is off",
			fmt.Sprintf("agents.entries.*.tools.exec.host is set to sandbox for: %s. With sandbox mode off, exec fails closed for those agents.", strings.Join(risky, ", ")),
			"Enable sandbox mode for these agents (`agents.entries.*.sandbox.mode`) or set their tools.exec.host to \"gateway\".")
	}
	scopes := rt.execScopes()
	var full, enabled []execScope
	for _, s := range scopes {
		if s.security == "full" {
			full = append(full, s)
		}
		if s.security != "deny" {
			enabled = append(enabled, s)
		}
	}
	open := rt.openExecSurfacePaths()
	if len(full) > 0 {
		ids := make([]string, len(full))
		for i, s := range full {
			ids[i] = s.id
		}
		detail := fmt.Sprintf("Full exec trust is enabled for: %s.", strings.Join(ids, ", "))
		if len(open) > 0 {
			detail += " Open channel access was also detected at:\n" + bulletList(open)
		}
		a.add("tools.exec.security_full_configured", sevIf(len(open) > 0, SeverityCritical, SeverityWarn), "Exec security=full is configured", detail,
			`Prefer tools.exec.mode="ask" or "allowlist", and reserve "full" for tightly scoped break-glass agents only.`)
	}
	if len(open) > 0 && len(enabled) > 0 {
		lines := make([]string, len(enabled))
		for i, s := range enabled {
			lines[i] = fmt.Sprintf("%s: security=%s, host=%s", s.id, s.security, s.host)
		}
		a.add("security.exposure.open_channels_with_exec", sevIf(len(full) > 0, SeverityCritical, SeverityWarn), "Open channels can reach exec-enabled agents",
			fmt.Sprintf("Open DM/group access detected at:\n%s\nExec-enabled scopes:\n%s", bulletList(open), bulletList(lines)),
			"Tighten dmPolicy/groupPolicy to pairing or allowlist, or disable exec for agents reachable from shared/public channels.")
	}
	a.execFilesystemDrift()
	a.safeBins()
}

// execFilesystemDrift is collectExecFilesystemPolicyDriftHits.
func (a *auditor) execFilesystemDrift() {
	rt := a.rt
	type ctx struct {
		label, agentID string
		tools          map[string]any
	}
	contexts := []ctx{{label: "tools"}}
	for _, ag := range rt.agents {
		contexts = append(contexts, ctx{label: "agents.entries." + ag.id + ".tools", agentID: ag.id, tools: obj(ag.m["tools"])})
	}
	var hits []string
	for _, c := range contexts {
		mode := rt.sandboxMode(c.agentID)
		access := rt.sandboxWorkspaceAccess(c.agentID)
		host := strOr(get(c.tools, "exec", "host"), strOr(rt.get("tools", "exec", "host"), "auto"))
		if mode == "all" && host != "gateway" && host != "node" && access != "rw" {
			continue
		}
		pol := rt.configuredToolPolicies(c.tools, mode, c.agentID)
		var runtimeTools []string
		for _, t := range []string{"exec", "process"} {
			if allowedByAll(t, pol) {
				runtimeTools = append(runtimeTools, t)
			}
		}
		if !contains(runtimeTools, "exec") {
			continue
		}
		var disabled []string
		for _, t := range []string{"write", "edit", "apply_patch"} {
			if !allowedByAll(t, pol) {
				disabled = append(disabled, t)
			}
		}
		if len(disabled) != 3 {
			continue
		}
		hits = append(hits, fmt.Sprintf("%s: runtime=[%s], disabledFs=[%s], exec.host=%s, sandbox=%s, workspaceAccess=%s",
			c.label, strings.Join(runtimeTools, ", "), strings.Join(disabled, ", "), host, mode, access))
	}
	if len(hits) > 0 {
		a.add("tools.exec.fs_tools_disabled_but_exec_enabled", SeverityWarn, "Filesystem tool policy does not make exec read-only",
			fmt.Sprintf("Found scopes where write/edit/apply_patch are unavailable but exec remains available:\n%s\nThe exec tool is a shell and can still write files wherever the selected host or sandbox filesystem permits it.", bulletList(hits)),
			`For read-only agents, deny exec and process too. If shell access is intentional, constrain the filesystem boundary with sandbox mode "all" and workspaceAccess "ro" or "none".`)
	}
}

// Interpreter-like and semantically broad safeBins
// (src/infra/exec-safe-bin-runtime-policy.ts, exec-safe-bin-semantics.ts).
var (
	interpreterSafeBins    = []string{"ash", "awk", "bash", "busybox", "bun", "cmd", "cmd.exe", "cscript", "dash", "deno", "fish", "gawk", "gsed", "ksh", "lua", "mawk", "nawk", "node", "nodejs", "perl", "php", "powershell", "powershell.exe", "pypy", "pwsh", "pwsh.exe", "python", "python2", "python3", "ruby", "sed", "sh", "toybox", "wscript", "zsh"}
	interpreterSafeBinRe   = regexp.MustCompile(`^(?:python|ruby|perl|php|node)\d+(?:\.\d+)?$`)
	awkWarning             = "awk-family interpreters can execute commands, access ENVIRON, and write files, so prefer explicit allowlist entries or approval-gated runs instead of safeBins."
	sedWarning             = "sed scripts can execute commands and write files, so prefer explicit allowlist entries or approval-gated runs instead of safeBins."
	broadSafeBinWarnings   = map[string]string{"jq": "jq can read environment data and load jq code from modules or startup files, so prefer explicit allowlist entries or approval-gated runs instead of safeBins.", "awk": awkWarning, "gawk": awkWarning, "mawk": awkWarning, "nawk": awkWarning, "sed": sedWarning, "gsed": sedWarning}
	safeBinWindowsSuffixRe = regexp.MustCompile(`(?i)\.(?:exe|cmd|bat|com)$`)
)

func normalizeSafeBinName(raw string) string {
	t := strings.ToLower(strings.TrimSpace(raw))
	if t == "" {
		return ""
	}
	if i := strings.LastIndexAny(t, `/\`); i >= 0 {
		t = t[i+1:]
	}
	return safeBinWindowsSuffixRe.ReplaceAllString(t, "")
}

// configuredSafeBins is normalizeConfiguredSafeBins: unique, lowercased,
// sorted.
func configuredSafeBins(v any) []string {
	var out []string
	for _, e := range arr(v) {
		if s := strings.ToLower(trimmed(e)); s != "" {
			out = append(out, s)
		}
	}
	out = uniqueStrings(out)
	sort.Strings(out)
	return out
}

func safeBinProfiles(execs ...map[string]any) map[string]bool {
	out := map[string]bool{}
	for _, e := range execs {
		for k := range obj(e["safeBinProfiles"]) {
			if n := normalizeSafeBinName(k); n != "" {
				out[n] = true
			}
		}
	}
	return out
}

// safeBins covers safeBins interpreters, broad safeBins and risky
// safeBinTrustedDirs.
func (a *auditor) safeBins() {
	rt := a.rt
	globalExec := obj(rt.get("tools", "exec"))
	var interpHits, broadHits []string
	scan := func(scope string, bins []string, profiles map[string]bool) {
		if len(bins) == 0 {
			return
		}
		var interp []string
		for _, b := range bins {
			n := normalizeSafeBinName(b)
			if n != "" && (contains(interpreterSafeBins, n) || interpreterSafeBinRe.MatchString(n)) && !profiles[n] {
				interp = append(interp, n)
			}
		}
		sort.Strings(interp)
		if len(interp) > 0 {
			interpHits = append(interpHits, fmt.Sprintf("- %s: %s", scope, strings.Join(interp, ", ")))
		}
		seen := map[string]bool{}
		var broad []string
		for _, b := range bins {
			n := normalizeSafeBinName(b)
			if w, ok := broadSafeBinWarnings[n]; ok && !seen[n] {
				seen[n] = true
				broad = append(broad, n)
				_ = w
			}
		}
		sort.Strings(broad)
		for _, n := range broad {
			broadHits = append(broadHits, fmt.Sprintf("- %s: %s (%s)", scope, n, broadSafeBinWarnings[n]))
		}
	}
	scan("tools.exec.safeBins", configuredSafeBins(globalExec["safeBins"]), safeBinProfiles(globalExec))
	for _, ag := range rt.agents {
		ae := obj(get(ag.m, "tools", "exec"))
		scan("agents.entries."+ag.id+".tools.exec.safeBins", configuredSafeBins(ae["safeBins"]), safeBinProfiles(globalExec, ae))
	}
	if len(interpHits) > 0 {
		a.add("tools.exec.safe_bins_interpreter_unprofiled", SeverityWarn, "safeBins includes interpreter/runtime binaries without explicit profiles",
			"Detected interpreter-like safeBins entries missing explicit profiles:\n"+strings.Join(interpHits, "\n")+"\nThese entries can turn safeBins into a broad execution surface when used with permissive argv profiles.",
			"Remove interpreter/runtime bins from safeBins (prefer allowlist entries) or define hardened tools.exec.safeBinProfiles.<bin> rules.")
	}
	if len(broadHits) > 0 {
		a.add("tools.exec.safe_bins_broad_behavior", SeverityWarn, "safeBins includes binaries with broader semantics than low-risk stream filters",
			"Detected risky safeBins entries:\n"+strings.Join(broadHits, "\n")+"\nThese tools expose semantics that do not fit the low-risk stdin-filter fast path.",
			"Remove these binaries from safeBins and prefer explicit allowlist entries or approval-gated execution.")
	}
	classify := func(entry string) string {
		raw := strings.TrimSpace(entry)
		if raw == "" {
			return ""
		}
		if !filepath.IsAbs(raw) {
			return "relative path (trust boundary depends on process cwd)"
		}
		n := strings.ToLower(filepath.Clean(raw))
		for _, t := range []string{"/tmp", "/var/tmp", "/private/tmp"} {
			if n == t || strings.HasPrefix(n, t+"/") {
				return "temporary directory is mutable and easy to poison"
			}
		}
		switch n {
		case "/usr/local/bin", "/opt/homebrew/bin", "/opt/local/bin", "/home/linuxbrew/.linuxbrew/bin":
			return "package-manager bin directory (often user-writable)"
		}
		if strings.HasPrefix(n, "/users/") || strings.HasPrefix(n, "/home/") || strings.Contains(n, "/.local/bin") {
			return "home-scoped bin directory (typically user-writable)"
		}
		return ""
	}
	var hits []string
	collect := func(scope string, v any) {
		for _, e := range uniqueStrings(stringEntries(v)) {
			if reason := classify(e); reason != "" {
				hits = append(hits, fmt.Sprintf("- %s.safeBinTrustedDirs: %s (%s)", scope, e, reason))
			}
		}
	}
	collect("tools.exec", rt.get("tools", "exec", "safeBinTrustedDirs"))
	for _, ag := range rt.agents {
		collect("agents.entries."+ag.id+".tools.exec", get(ag.m, "tools", "exec", "safeBinTrustedDirs"))
	}
	if len(hits) > 0 {
		shown := hits
		more := ""
		if len(hits) > 10 {
			shown = hits[:10]
			more = fmt.Sprintf("\n- +%d more entries.", len(hits)-10)
		}
		a.add("tools.exec.safe_bin_trusted_dirs_risky", SeverityWarn, "safeBinTrustedDirs includes risky mutable directories",
			"Detected risky safeBinTrustedDirs entries:\n"+strings.Join(shown, "\n")+more,
			"Prefer root-owned immutable bins, keep default trust dirs (/bin, /usr/bin), and avoid trusting temporary/home/package-manager paths unless tightly controlled.")
	}
}

// agentSkillMCPBoundary is collectAgentSkillMcpBoundaryFindings for
// config-declared MCP servers (the global mcporter registry is read too).
func (a *auditor) agentSkillMCPBoundary() {
	rt := a.rt
	type scope struct{ id, source, host, security, ask string }
	var scopes []scope
	defaults := obj(rt.get("agents", "defaults"))
	_, defaultsSkills := defaults["skills"]
	consider := func(id, source, agentID string) {
		mode := rt.sandboxMode(agentID)
		sec, ask, host := rt.execDefaults(agentID, mode != "off")
		if sec == "deny" || host == "sandbox" {
			return
		}
		scopes = append(scopes, scope{id: id, source: source, host: host, security: sec, ask: ask})
	}
	if defaultsSkills {
		consider("agents.defaults", "agents.defaults.skills", "")
	}
	for _, ag := range rt.agents {
		if _, own := ag.m["skills"]; own {
			consider(ag.id, "agents.entries.*.skills", ag.id)
		} else if defaultsSkills {
			consider(ag.id, "agents.defaults.skills (inherited)", ag.id)
		}
	}
	if len(scopes) == 0 {
		return
	}
	type source struct {
		label string
		names []string
	}
	var sources []source
	var names []string
	for name, srv := range obj(rt.get("mcp", "servers")) {
		if !isFalse(get(srv, "enabled")) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) > 0 {
		sources = append(sources, source{"mcp.servers", names})
	}
	a.observe(mcporterRegistryPath(rt.cfg.StateDir), InputContent)
	if reg, status := readMcporterRegistry(rt.cfg.StateDir); status == "rejected" {
		a.add("tools.exec.mcporter_registry_inspection_incomplete", SeverityWarn, "Global mcporter registry could not be inspected",
			fmt.Sprintf("skills/config/mcporter.json exists but could not be safely inspected (%s). The MCP boundary inspection is incomplete: the audit could not verify which MCP servers a host exec process can reach.", reg[0]),
			"Repair or remove skills/config/mcporter.json so the audit can inspect it: keep it a regular file readable by the gateway user, valid JSON, and below the 16 MiB audit cap.")
	} else if status == "source" {
		sources = append(sources, source{"skills/config/mcporter.json", reg})
	}
	if len(sources) == 0 {
		return
	}
	var lines []string
	for i, s := range scopes {
		if i == 8 {
			break
		}
		lines = append(lines, fmt.Sprintf("- %s: %s, exec.host=%s, security=%s, ask=%s", s.id, s.source, s.host, s.security, s.ask))
	}
	more := ""
	if len(scopes) > 8 {
		more = fmt.Sprintf("\n- +%d more scopes.", len(scopes)-8)
	}
	var srcLines []string
	for _, s := range sources {
		preview := s.names
		suffix := ""
		if len(preview) > 6 {
			suffix = fmt.Sprintf(", +%d more", len(preview)-6)
			preview = preview[:6]
		}
		srcLines = append(srcLines, fmt.Sprintf("- %s: %s%s", s.label, strings.Join(preview, ", "), suffix))
	}
	a.add("tools.exec.agent_skill_mcp_boundary_drift", SeverityWarn, "Agent skill allowlists do not constrain host exec MCP clients",
		"Detected agent skill allowlists on host-exec-capable scopes:\n"+strings.Join(lines, "\n")+more+
			"\nMCP server registries visible to the gateway configuration/state:\n"+strings.Join(srcLines, "\n")+
			"\nagents.*.skills filters OpenClaw skill visibility and snapshots; it is not a shell-time authorization boundary. A host exec process can run external MCP clients or read a global mcporter registry unless sandbox, filesystem, network, or MCP credential boundaries block it.",
		`For agents that need per-agent MCP isolation, set their exec policy to security="deny" or a tight allowlist, run them in sandbox/container/OS-user isolation where the global MCP registry is not readable, split sensitive MCP servers into a separate gateway/trust boundary, or require per-agent MCP credentials at the server layer.`)
}

// execDefaults approximates resolveExecDefaults: the effective exec
// security, ask and host of an agent (or of the defaults when agentID is "").
func (rt *runtime) execDefaults(agentID string, sandboxAvailable bool) (security, ask, host string) {
	ge := obj(rt.get("tools", "exec"))
	security, ask = execPolicy(rt.execMode(ge), strOr(ge["security"], "full"), strOr(ge["ask"], "off"))
	host = strOr(ge["host"], "auto")
	if agentID != "" {
		ae := obj(get(rt.agentConfig(agentID), "tools", "exec"))
		if v, ok := ae["security"].(string); ok {
			security = v
		}
		if v, ok := ae["ask"].(string); ok {
			ask = v
		}
		security, ask = execPolicy(rt.execMode(ae), security, ask)
		host = strOr(ae["host"], host)
	}
	if host == "auto" {
		if sandboxAvailable {
			host = "sandbox"
		} else {
			host = "gateway"
		}
	}
	return security, ask, host
}

// hooksHardening is collectHooksHardeningFindings.
func (a *auditor) hooksHardening() {
	rt, auth := a.rt, a.auth
	if !isTrue(rt.get("hooks", "enabled")) {
		return
	}
	token := trimmed(rt.get("hooks", "token"))
	if token != "" && utf16Len(token) < 24 {
		a.add("hooks.token_too_short", SeverityWarn, "Hooks token looks short",
			fmt.Sprintf("hooks.token is %d chars; prefer a long random token.", utf16Len(token)), "")
	}
	var reuse string
	switch auth.mode {
	case "token":
		if auth.token != "" && auth.token == token {
			reuse = "token"
		}
	case "password", "trusted-proxy":
		if auth.password != "" && auth.password == token {
			reuse = "password"
		}
	}
	if reuse != "" {
		title, detail := "Hooks token reuses the Gateway token", "hooks.token matches gateway.auth token; compromise of hooks expands blast radius to the Gateway API."
		if reuse == "password" {
			title, detail = "Hooks token reuses the Gateway password", "hooks.token matches gateway.auth password; compromise of hooks expands blast radius to Gateway password auth."
		}
		a.add("hooks.token_reuse_gateway_token", SeverityCritical, title, detail,
			"Run openclaw doctor --fix to rotate a persisted hooks.token, then update external hook senders to use the new hook token.")
	}
	if trimmed(rt.get("hooks", "path")) == "/" {
		a.add("hooks.path_root", SeverityCritical, "Hooks base path is '/'", "hooks.path='/' would shadow other HTTP endpoints and is unsafe.", "Use a dedicated path like '/hooks'.")
	}
	exposed := rt.remotelyExposed()
	if trimmed(rt.get("hooks", "defaultSessionKey")) == "" {
		a.add("hooks.default_session_key_unset", SeverityWarn, "hooks.defaultSessionKey is not configured",
			"Hook agent runs without explicit sessionKey use generated per-request keys. Set hooks.defaultSessionKey to keep hook ingress scoped to a known session.",
			`Set hooks.defaultSessionKey (for example, "hook:ingress").`)
	}
	unrestricted := !isArr(rt.get("hooks", "allowedAgentIds"))
	for _, s := range stringItems(rt.get("hooks", "allowedAgentIds")) {
		if t := strings.TrimSpace(s); t == "*" {
			unrestricted = true
			break
		}
	}
	if unrestricted {
		a.add("hooks.allowed_agent_ids_unrestricted", sevIf(exposed, SeverityCritical, SeverityWarn), "Hook agent routing allows any configured agent",
			"hooks.allowedAgentIds is unset or includes '*', so authenticated hook callers may route to any configured agent id, including the default agent when agentId is omitted.",
			`Set hooks.allowedAgentIds to an explicit allowlist (for example, ["hooks", "main"]) or [] to deny hook agent routing.`)
	}
	if isTrue(rt.get("hooks", "allowRequestSessionKey")) {
		a.add("hooks.request_session_key_enabled", sevIf(exposed, SeverityCritical, SeverityWarn), "External hook payloads may override sessionKey",
			"hooks.allowRequestSessionKey=true allows `/hooks/agent` callers to choose the session key. Treat hook token holders as full-trust unless you also restrict prefixes.",
			"Set hooks.allowRequestSessionKey=false (recommended) or constrain hooks.allowedSessionKeyPrefixes.")
		prefixes := 0
		for _, p := range stringItems(rt.get("hooks", "allowedSessionKeyPrefixes")) {
			if strings.TrimSpace(p) != "" {
				prefixes++
			}
		}
		if prefixes == 0 {
			a.add("hooks.request_session_key_prefixes_missing", sevIf(exposed, SeverityCritical, SeverityWarn), "Request sessionKey override is enabled without prefix restrictions",
				"hooks.allowRequestSessionKey=true and hooks.allowedSessionKeyPrefixes is unset/empty, so request payloads can target arbitrary session key shapes.",
				`Set hooks.allowedSessionKeyPrefixes (for example, ["hook:"]) or disable request overrides.`)
		}
	}
}

func (a *auditor) gatewayHTTPNoAuth() {
	rt := a.rt
	if a.auth.hasHTTPAuth() {
		return
	}
	endpoints := []string{"/tools/invoke"}
	if isTrue(rt.get("gateway", "http", "endpoints", "chatCompletions", "enabled")) {
		endpoints = append(endpoints, "/v1/chat/completions")
	}
	if isTrue(rt.get("gateway", "http", "endpoints", "responses", "enabled")) {
		endpoints = append(endpoints, "/v1/responses")
	}
	if isTrue(rt.get("plugins", "entries", "admin-http-rpc", "enabled")) {
		endpoints = append(endpoints, "/api/v1/admin/rpc")
	}
	a.add("gateway.http.no_auth", sevIf(rt.remotelyExposed(), SeverityCritical, SeverityWarn), "Gateway HTTP APIs are reachable without auth",
		fmt.Sprintf(`gateway.auth.mode="none" leaves %s callable without a shared secret. Treat this as trusted-local only and avoid exposing the gateway beyond loopback.`, strings.Join(endpoints, ", ")),
		"Set gateway.auth.mode to token/password (recommended). If you intentionally keep mode=none, keep gateway.bind=loopback and disable optional HTTP endpoints/plugins.")
}

func (a *auditor) gatewayHTTPSessionKeyOverride() {
	rt := a.rt
	var eps []string
	if isTrue(rt.get("gateway", "http", "endpoints", "chatCompletions", "enabled")) {
		eps = append(eps, "/v1/chat/completions")
	}
	if isTrue(rt.get("gateway", "http", "endpoints", "responses", "enabled")) {
		eps = append(eps, "/v1/responses")
	}
	if len(eps) == 0 {
		return
	}
	a.add("gateway.http.session_key_override_enabled", SeverityInfo, "HTTP API session-key override is enabled",
		strings.Join(eps, ", ")+" accept x-openclaw-session-key for per-request session routing. Treat API credential holders as trusted principals.", "")
}

func hasDockerConfig(v any) bool {
	m := obj(v)
	return len(m) > 0
}

func (a *auditor) sandboxDockerNoop() {
	rt := a.rt
	var paths []string
	anyEnabled := false
	for _, ag := range rt.agents {
		if rt.sandboxMode(ag.id) != "off" {
			anyEnabled = true
		}
	}
	if hasDockerConfig(rt.get("agents", "defaults", "sandbox", "docker")) && strOr(rt.get("agents", "defaults", "sandbox", "mode"), "off") == "off" && !anyEnabled {
		paths = append(paths, "agents.defaults.sandbox.docker")
	}
	for _, ag := range rt.agents {
		if hasDockerConfig(get(ag.m, "sandbox", "docker")) && rt.sandboxMode(ag.id) == "off" {
			paths = append(paths, "agents.entries."+ag.id+".sandbox.docker")
		}
	}
	a.warnList("sandbox.docker_config_mode_off", "Sandbox docker settings configured while sandbox mode is off",
		"These docker settings will not take effect until sandbox mode is enabled:", paths,
		"Enable sandbox mode (`agents.defaults.sandbox.mode=\"non-main\"` or `\"all\"`) where needed, or remove unused docker settings.")
}

func (a *auditor) sandboxDangerous() {
	rt := a.rt
	type dockerCfg struct {
		source string
		m      map[string]any
	}
	var cfgs []dockerCfg
	if d := obj(rt.get("agents", "defaults", "sandbox", "docker")); d != nil {
		cfgs = append(cfgs, dockerCfg{"agents.defaults.sandbox.docker", d})
	}
	for _, ag := range rt.agents {
		if d := obj(get(ag.m, "sandbox", "docker")); d != nil {
			cfgs = append(cfgs, dockerCfg{"agents.entries." + ag.id + ".sandbox.docker", d})
		}
	}
	for _, c := range cfgs {
		for _, bind := range stringItems(c.m["binds"]) {
			kind, path := blockedBindReason(bind, rt.cfg.home)
			switch kind {
			case "non_absolute":
				a.add("sandbox.bind_mount_non_absolute", SeverityWarn, "Sandbox bind mount uses a non-absolute source path",
					fmt.Sprintf(`%s.binds contains "%s" which uses source path "%s". Non-absolute bind sources are hard to validate safely and may resolve unexpectedly.`, c.source, bind, path),
					fmt.Sprintf(`Rewrite "%s" to use an absolute host path (for example: /home/user/project:/project:ro).`, bind))
			case "covers", "targets":
				a.add("sandbox.dangerous_bind_mount", SeverityCritical, "Dangerous bind mount in sandbox config",
					fmt.Sprintf(`%s.binds contains "%s" which %s blocked path "%s". This can expose host system directories or the Docker socket to sandbox containers.`, c.source, bind, kind, path),
					fmt.Sprintf(`Remove "%s" from %s.binds. Use project-specific paths instead.`, bind, c.source))
			}
		}
		if network, ok := c.m["network"].(string); ok {
			n := strings.ToLower(strings.TrimSpace(network))
			if n == "host" || strings.HasPrefix(n, "container:") {
				detail := fmt.Sprintf(`%s.network is "%s" which joins another container namespace and can bypass sandbox network isolation.`, c.source, network)
				if n == "host" {
					detail = fmt.Sprintf(`%s.network is "host" which bypasses container network isolation entirely.`, c.source)
				}
				a.add("sandbox.dangerous_network_mode", SeverityCritical, "Dangerous network mode in sandbox config", detail,
					fmt.Sprintf(`Set %s.network to "bridge", "none", or a custom bridge network name. Use %s.dangerouslyAllowContainerNamespaceJoin=true only as a break-glass override when you fully trust this runtime.`, c.source, c.source))
			}
		}
		if s, ok := c.m["seccompProfile"].(string); ok && strings.ToLower(strings.TrimSpace(s)) == "unconfined" {
			a.add("sandbox.dangerous_seccomp_profile", SeverityCritical, "Seccomp unconfined in sandbox config",
				fmt.Sprintf(`%s.seccompProfile is "unconfined" which disables syscall filtering.`, c.source),
				fmt.Sprintf("Remove %s.seccompProfile or use a custom seccomp profile file.", c.source))
		}
		if s, ok := c.m["apparmorProfile"].(string); ok && strings.ToLower(strings.TrimSpace(s)) == "unconfined" {
			a.add("sandbox.dangerous_apparmor_profile", SeverityCritical, "AppArmor unconfined in sandbox config",
				fmt.Sprintf(`%s.apparmorProfile is "unconfined" which disables AppArmor enforcement.`, c.source),
				fmt.Sprintf("Remove %s.apparmorProfile or use a named AppArmor profile.", c.source))
		}
	}
}

// Node commands of openclaw@2026.9.6 (src/gateway/node-command-policy.ts):
// every command a pairing allowlist can hold, and the dangerous defaults.
var (
	knownNodeCommands     = []string{"camera.list", "location.get", "device.info", "device.status", "contacts.search", "calendar.events", "reminders.list", "photos.latest", "motion.activity", "motion.pedometer", "system.notify", "watch.status", "watch.notify", "notifications.list", "notifications.actions", "device.permissions", "device.health", "device.apps", "callLog.search", "mobile.ui.observe", "mobile.ui.act", "camera.ptz.status", "system.run.prepare", "system.run", "system.which", "system.execApprovals.get", "system.execApprovals.set", "fs.listDir", "terminal.upload", "browser.proxy", "browser.proxy.upload.v1", "mcp.tools.call.v1", "agent.cli.claude.run.v1", "screen.snapshot", "desktop.stream", "computer.act", "talk.ptt.start", "talk.ptt.stop", "talk.ptt.cancel", "talk.ptt.once", "camera.snap", "camera.clip", "camera.ptz.control", "screen.record", "contacts.add", "calendar.add", "reminders.add", "sms.send", "sms.search", "health.summary"}
	dangerousNodeCommands = []string{"camera.snap", "camera.clip", "camera.ptz.control", "screen.record", "contacts.add", "calendar.add", "reminders.add", "sms.send", "sms.search", "health.summary"}
)

func looksLikeNodeCommandPattern(v string) bool {
	if v == "" {
		return false
	}
	if strings.ContainsAny(v, "?*[]{}(),|") {
		return true
	}
	if strings.HasPrefix(v, "/") || strings.HasSuffix(v, "/") || strings.HasPrefix(v, "^") || strings.HasSuffix(v, "$") {
		return true
	}
	return strings.ContainsAny(v, " \t\n\r\f\v") || strings.Contains(v, "group:")
}

func (a *auditor) nodeDenyCommandPatterns() {
	rt := a.rt
	var deny []string
	for _, e := range arr(rt.get("gateway", "nodes", "commands", "deny")) {
		if s := trimmed(e); s != "" {
			deny = append(deny, s)
		}
	}
	if len(deny) == 0 {
		return
	}
	known := append([]string{}, knownNodeCommands...)
	for _, e := range stringItems(rt.get("gateway", "nodes", "commands", "allow")) {
		if t := strings.TrimSpace(e); t != "" && !contains(known, t) {
			known = append(known, t)
		}
	}
	var patterns, unknown []string
	for _, d := range deny {
		if looksLikeNodeCommandPattern(d) {
			patterns = append(patterns, d)
		} else if !contains(known, d) {
			unknown = append(unknown, d)
		}
	}
	if len(patterns) == 0 && len(unknown) == 0 {
		return
	}
	var parts []string
	if len(patterns) > 0 {
		parts = append(parts, "Pattern-like entries (not supported by exact matching): "+strings.Join(patterns, ", "))
	}
	if len(unknown) > 0 {
		var descs []string
		for _, u := range unknown {
			if s := suggestNodeCommands(u, known); len(s) > 0 {
				descs = append(descs, fmt.Sprintf("%s (did you mean: %s)", u, strings.Join(s, ", ")))
			} else {
				descs = append(descs, u)
			}
		}
		parts = append(parts, "Unknown command names (not in defaults/gateway.nodes.commands.allow): "+strings.Join(descs, ", "))
	}
	examples := known
	if len(examples) > 8 {
		examples = examples[:8]
	}
	a.add("gateway.nodes.deny_commands_ineffective", SeverityWarn, "Some gateway.nodes.commands.deny entries are ineffective",
		"gateway.nodes.commands.deny uses exact node command-name matching only (for example `system.run`), not shell-text filtering inside a command payload.\n"+bulletList(parts),
		fmt.Sprintf("Use exact command names (for example: %s). If you need broader restrictions, remove risky command IDs from gateway.nodes.commands.allow/default workflows and tighten tools.exec policy.", strings.Join(examples, ", ")))
}

func suggestNodeCommands(unknown string, known []string) []string {
	needle := strings.TrimSpace(unknown)
	if needle == "" {
		return nil
	}
	prefix := needle
	if strings.Contains(needle, ".") {
		parts := strings.Split(needle, ".")
		if len(parts) > 2 {
			parts = parts[:2]
		}
		prefix = strings.Join(parts, ".")
	}
	var hits []string
	for _, k := range known {
		if strings.HasPrefix(k, prefix) {
			hits = append(hits, k)
			if len(hits) == 3 {
				return hits
			}
		}
	}
	if len(hits) > 0 {
		return hits
	}
	type ranked struct {
		cmd string
		d   int
	}
	var rs []ranked
	for _, k := range known {
		rs = append(rs, ranked{k, editDistance(needle, k)})
	}
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].d != rs[j].d {
			return rs[i].d < rs[j].d
		}
		return rs[i].cmd < rs[j].cmd
	})
	if len(rs) == 0 {
		return nil
	}
	threshold := int(math.Max(2, math.Min(4, float64(rs[0].d))))
	var out []string
	for _, r := range rs {
		if r.d <= threshold && len(out) < 3 {
			out = append(out, r.cmd)
		}
	}
	return out
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	dp := make([]int, len(rb)+1)
	for j := range dp {
		dp[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		prev := dp[0]
		dp[0] = i
		for j := 1; j <= len(rb); j++ {
			tmp := dp[j]
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			dp[j] = min(dp[j]+1, dp[j-1]+1, prev+cost)
			prev = tmp
		}
	}
	return dp[len(rb)]
}

func (a *auditor) nodeDangerousAllowCommands() {
	rt := a.rt
	allow := map[string]bool{}
	for _, e := range arr(rt.get("gateway", "nodes", "commands", "allow")) {
		if s := trimmed(e); s != "" {
			allow[s] = true
		}
	}
	if len(allow) == 0 {
		return
	}
	deny := map[string]bool{}
	for _, e := range arr(rt.get("gateway", "nodes", "commands", "deny")) {
		deny[trimmed(e)] = true
	}
	var hit []string
	for _, c := range dangerousNodeCommands {
		if allow[c] && !deny[c] {
			hit = append(hit, c)
		}
	}
	if len(hit) == 0 {
		return
	}
	a.add("gateway.nodes.allow_commands_dangerous", sevIf(rt.remotelyExposed(), SeverityCritical, SeverityWarn), "Dangerous node commands explicitly enabled",
		fmt.Sprintf("gateway.nodes.commands.allow includes: %s. These commands can trigger high-impact device actions or read sensitive data (desktop input/camera/screen/contacts/calendar/reminders/health/SMS/file).", strings.Join(hit, ", ")),
		"Remove these entries from gateway.nodes.commands.allow (recommended). If you keep them, treat gateway auth as full operator access and keep gateway exposure local/tailnet-only.")
}

func (a *auditor) minimalProfileOverride() {
	rt := a.rt
	if rt.get("tools", "profile") != "minimal" {
		return
	}
	var overrides []string
	for _, ag := range rt.agents {
		if p := get(ag.m, "tools", "profile"); truthy(p) && p != "minimal" {
			overrides = append(overrides, "agents.entries."+ag.id+"="+jsString(p))
		}
	}
	a.warnList("tools.profile_minimal_overridden", "Global tools.profile=minimal is overridden by agent profiles",
		"Global minimal profile is set, but these agent profiles take precedence:", overrides,
		"Set those agents to `tools.profile=\"minimal\"` (or remove the agent override) if you want minimal tools enforced globally.")
}

func (a *auditor) secretsInConfig() {
	rt := a.rt
	if trimmed(rt.get("gateway", "auth", "password")) != "" && !rt.cfg.Unresolved["gateway.auth.password"] {
		a.add("config.secrets.gateway_password_in_config", SeverityWarn, "Gateway password is stored in config",
			"gateway.auth.password is set in the config file; prefer environment variables for secrets when possible.",
			"Prefer OPENCLAW_GATEWAY_PASSWORD (env) and remove gateway.auth.password from disk.")
	}
	if isTrue(rt.get("hooks", "enabled")) && trimmed(rt.get("hooks", "token")) != "" && !rt.cfg.Unresolved["hooks.token"] {
		a.add("config.secrets.hooks_token_in_config", SeverityInfo, "Hooks token is stored in config",
			"hooks.token is set in the config file; keep config perms tight and treat it like an API secret.", "")
	}
}
