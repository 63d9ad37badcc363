package audit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
)

// Expect describes what clawgate sends to a gateway, so the gateway's config
// can be checked against it.
type Expect struct {
	// UserHeader is the header carrying the tailnet login (edge.DefaultUserHeader unless the guard says otherwise).
	UserHeader string
	// Users are the logins clawgate admits to this gateway.
	Users []string
	// Origins are the browser origins clawgate serves the Control UI on,
	// such as https://node.tailnet.ts.net.
	Origins []string
	// Port is the loopback port clawgate proxies to; 0 skips the check.
	Port int
	// EdgePairing reports whether clawgate holds each new device of this
	// gateway until it is approved (`pairing required`).
	EdgePairing bool
	// NoDeviceAutoApprove reports whether the gateway's OpenClaw release
	// line lacks gateway.auth.trustedProxy.deviceAutoApprove (2026.7.35):
	// there a browser needs one manual approval in OpenClaw whatever the
	// edge does, so the double-pairing finding is not raised.
	NoDeviceAutoApprove bool
}

// SetupRemediation ends every clawgate.* remediation: the command that makes
// the gateway's config agree with the edge.
const SetupRemediation = "`caddy clawgate setup --write` makes this change for you."

// Consistency checks a gateway config against what clawgate does at the
// edge, returning clawgate.* findings (critical unless noted) that each name
// the key to change and the value to set.
func Consistency(cfg *Config, e Expect) []Finding {
	rt := newRuntime(cfg)
	auth := rt.resolveAuth()
	var out []Finding
	add := func(id string, sev Severity, title, detail, fix string) {
		out = append(out, Finding{CheckID: id, Severity: sev, Title: title, Detail: detail, Remediation: fix + " " + SetupRemediation})
	}
	// OpenClaw's trustedProxy.requiredHeaders must name only headers
	// clawgate sends.
	sent := edge.ForwardedHeaders()

	mode, _ := rt.get("gateway", "auth", "mode").(string)
	trustedProxy := auth.mode == "trusted-proxy"
	switch {
	case mode == "none":
		add("clawgate.auth_mode", SeverityCritical, "Gateway auth is off behind clawgate",
			`gateway.auth.mode is "none", so anything that reaches the loopback port is an operator.`,
			`Set gateway.auth.mode to "trusted-proxy" (clawgate supplies the identity), or to "token"/"password" with a secret.`)
	case !trustedProxy && !auth.hasHTTPAuth():
		add("clawgate.auth_mode", SeverityCritical, "Gateway auth has no secret behind clawgate",
			fmt.Sprintf("gateway.auth.mode resolves to %q but no secret is configured.", auth.mode),
			`Set gateway.auth.mode to "trusted-proxy", or set gateway.auth.token to a long random value.`)
	}

	switch bind, ok := rt.get("gateway", "bind").(string); {
	case !ok:
		add("clawgate.bind", SeverityCritical, "Gateway bind is not pinned to loopback",
			"gateway.bind is unset; inside containers OpenClaw then binds every interface, next to clawgate instead of behind it.",
			`Set gateway.bind to "loopback".`)
	case bind != "loopback":
		add("clawgate.bind", SeverityCritical, "Gateway listens beyond loopback",
			fmt.Sprintf("gateway.bind is %q, so the gateway is reachable without passing through clawgate.", bind),
			`Set gateway.bind to "loopback".`)
	}

	proxies := stringEntries(rt.get("gateway", "trustedProxies"))
	var bad []string
	for _, p := range proxies {
		if !isStrictLoopbackProxy(p) {
			bad = append(bad, p)
		}
	}
	switch {
	case len(proxies) == 0:
		add("clawgate.trusted_proxies", SeverityCritical, "Gateway does not trust clawgate's forwarding headers",
			"gateway.trustedProxies is empty, so every request clawgate forwards looks like a local client and X-Forwarded-For is ignored.",
			`Set gateway.trustedProxies to ["127.0.0.1", "::1"].`)
	case len(bad) > 0:
		add("clawgate.trusted_proxies", SeverityCritical, "Gateway trusts proxies other than clawgate",
			fmt.Sprintf("gateway.trustedProxies includes %s; only clawgate on loopback should be able to assert identity headers.", strings.Join(bad, ", ")),
			`Set gateway.trustedProxies to exactly ["127.0.0.1", "::1"].`)
	}

	if trustedProxy {
		tp := obj(rt.get("gateway", "auth", "trustedProxy"))
		header := strings.TrimSpace(strOr(tp["userHeader"], ""))
		if e.UserHeader != "" && !strings.EqualFold(header, e.UserHeader) {
			detail := "gateway.auth.trustedProxy.userHeader is unset."
			if header != "" {
				detail = fmt.Sprintf("gateway.auth.trustedProxy.userHeader is %q but clawgate sends the login in %q.", header, e.UserHeader)
			}
			add("clawgate.user_header", SeverityCritical, "Gateway reads the user from a header clawgate does not set", detail,
				fmt.Sprintf("Set gateway.auth.trustedProxy.userHeader to %q.", strings.ToLower(e.UserHeader)))
		}
		var unsent []string
		for _, h := range stringEntries(tp["requiredHeaders"]) {
			if !containsFold(sent, h) {
				unsent = append(unsent, h)
			}
		}
		if len(unsent) > 0 {
			add("clawgate.required_headers", SeverityCritical, "Gateway requires headers clawgate does not send",
				fmt.Sprintf("gateway.auth.trustedProxy.requiredHeaders includes %s, which clawgate never sets, so every request is rejected.", strings.Join(unsent, ", ")),
				fmt.Sprintf("Set gateway.auth.trustedProxy.requiredHeaders to a subset of %s.", quoteList(sent)))
		}
		if !isTrue(tp["allowLoopback"]) {
			add("clawgate.allow_loopback", SeverityCritical, "Gateway rejects clawgate's loopback connection",
				"gateway.auth.trustedProxy.allowLoopback is not true, and clawgate reaches the gateway from 127.0.0.1, so trusted-proxy auth never succeeds.",
				"Set gateway.auth.trustedProxy.allowLoopback to true.")
		}
		allowUsers := stringEntries(tp["allowUsers"])
		admitted := map[string]bool{}
		for _, u := range e.Users {
			admitted[strings.ToLower(strings.TrimSpace(u))] = true
		}
		var extra []string
		for _, u := range allowUsers {
			if !admitted[strings.ToLower(u)] {
				extra = append(extra, u)
			}
		}
		autoApprove := isTrue(obj(tp["deviceAutoApprove"])["enabled"])
		switch {
		case autoApprove && !e.EdgePairing:
			add("clawgate.device_auto_approve_without_edge_pairing", SeverityCritical, "OpenClaw auto-approves browsers clawgate does not pair",
				"OpenClaw auto-approves any browser of an allowed tailnet login: gateway.auth.trustedProxy.deviceAutoApprove is enabled and clawgate has no `pairing required` for this gateway, so a tailnet login alone pairs a new device.",
				"Turn on `pairing required` for this gateway, or turn deviceAutoApprove off (gateway.auth.trustedProxy.deviceAutoApprove.enabled: false).")
		case !autoApprove && e.EdgePairing && len(e.Origins) > 0 && !e.NoDeviceAutoApprove:
			add("clawgate.control_ui_double_pairing", SeverityWarn, "A browser is paired twice, by clawgate and by OpenClaw",
				"A browser approved by clawgate will also wait on OpenClaw's manual pairing: `pairing required` is on for this gateway, the Control UI is served through clawgate, and gateway.auth.trustedProxy.deviceAutoApprove is off.",
				"Set gateway.auth.trustedProxy.deviceAutoApprove to {enabled: true, scopes: [...]} with the non-admin scopes your rules grant (never operator.admin).")
		}
		switch {
		case len(allowUsers) == 0:
			add("clawgate.allow_users", SeverityWarn, "Gateway admits every user clawgate lets through",
				"gateway.auth.trustedProxy.allowUsers is empty, so the gateway relies on clawgate alone to choose users.",
				fmt.Sprintf("Set gateway.auth.trustedProxy.allowUsers to %s.", quoteList(e.Users)))
		case len(extra) > 0:
			add("clawgate.allow_users", SeverityCritical, "Gateway admits users clawgate does not",
				fmt.Sprintf("gateway.auth.trustedProxy.allowUsers includes %s, which clawgate does not admit; the two allowlists have drifted apart.", strings.Join(extra, ", ")),
				fmt.Sprintf("Set gateway.auth.trustedProxy.allowUsers to %s, or admit those users in clawgate.", quoteList(e.Users)))
		}
	}

	origins := stringEntries(rt.get("gateway", "controlUi", "allowedOrigins"))
	var missing []string
	for _, o := range e.Origins {
		if !containsFold(origins, o) {
			missing = append(missing, o)
		}
	}
	switch {
	case contains(origins, "*"):
		add("clawgate.allowed_origins", SeverityCritical, "Gateway accepts browser requests from any origin",
			`gateway.controlUi.allowedOrigins includes "*", so any web page a user visits can drive the Control UI through clawgate.`,
			fmt.Sprintf("Set gateway.controlUi.allowedOrigins to %s.", quoteList(e.Origins)))
	case len(missing) > 0:
		add("clawgate.allowed_origins", SeverityWarn, "Gateway does not allow clawgate's origin",
			fmt.Sprintf("gateway.controlUi.allowedOrigins lacks %s, so the Control UI served through clawgate fails its origin check.", strings.Join(missing, ", ")),
			fmt.Sprintf("Add %s to gateway.controlUi.allowedOrigins.", quoteList(missing)))
	}

	if m := rt.tailscaleMode(); m == "serve" || m == "funnel" {
		add("clawgate.tailscale_managed", SeverityCritical, "Gateway publishes itself on Tailscale",
			fmt.Sprintf("gateway.tailscale.mode is %q, so OpenClaw exposes the gateway through its own Tailscale %s, around clawgate.", m, m),
			`Set gateway.tailscale.mode to "off"; clawgate is the tailnet front door.`)
	}
	if isTrue(rt.get("gateway", "allowRealIpFallback")) {
		add("clawgate.real_ip_fallback", SeverityCritical, "Gateway falls back to X-Real-IP",
			"gateway.allowRealIpFallback is true; clawgate always sends X-Forwarded-For, so the fallback only helps a client that reaches the port some other way.",
			"Set gateway.allowRealIpFallback to false.")
	}
	if e.Port > 0 {
		port := edge.DefaultGatewayPort
		if p, ok := rt.get("gateway", "port").(float64); ok && p > 0 {
			port = int(p)
		}
		if port != e.Port {
			add("clawgate.port", SeverityCritical, "Gateway listens on a different port than clawgate proxies to",
				fmt.Sprintf("gateway.port is %d but clawgate forwards to 127.0.0.1:%d.", port, e.Port),
				fmt.Sprintf("Set gateway.port to %d, or point clawgate's upstream at 127.0.0.1:%d.", e.Port, port))
		}
	}
	return out
}

// ExpectedByDesign lists the real audit's findings that are the point of a
// same-host trusted proxy, and so expected rather than blocking — but only
// when the config is consistent with clawgate (no critical clawgate.*
// finding); otherwise nothing is excused.
func ExpectedByDesign(cons []Finding) []string {
	for _, f := range cons {
		if f.Severity == SeverityCritical {
			return nil
		}
	}
	return []string{"gateway.trusted_proxy_auth", "gateway.trusted_proxy_allow_loopback"}
}

func containsFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(strings.TrimSpace(e), strings.TrimSpace(s)) {
			return true
		}
	}
	return false
}

func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
