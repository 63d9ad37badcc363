package audit

import (
	"fmt"
	"strings"

	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// NewerPrefix starts the check ID of a finding that the newest supported
// line's audit reports and the audited (older) line's own audit does not:
// clawgate.newer.gateway.password_too_short is gateway.password_too_short,
// kept on for a gateway whose OpenClaw would not report it. Such a finding
// has the newest line's severity, so it blocks as it would there; an expect
// entry or a security.audit.suppressions entry naming the plain check ID
// covers it too.
const NewerPrefix = "clawgate.newer."

// What the audits of the supported lines do differently, each named by the
// oldest supported line whose audit does it (measured with the real
// `openclaw security audit` of every line over the corpus; TestCorpusLines
// checks them).
var (
	// A trusted-proxy gateway counts as authenticated on loopback and beyond
	// (no gateway.loopback_no_auth), and a gateway secret that is configured
	// but unresolved (a ${VAR} without its variable) counts as no secret.
	sinceTrustedProxyAuth = release.Version{Year: 2026, Month: 8, Patch: 2}
	// tools.exec.mode is read (before, only tools.exec.security).
	sinceExecMode = release.Version{Year: 2026, Month: 8, Patch: 2}
	// security.exposure.open_groups_with_control_plane_tools exists, over
	// the automations and gateway tools.
	sinceControlPlaneTools = release.Version{Year: 2026, Month: 8, Patch: 2}
	// The default agent's default workspace is OPENCLAW_WORKSPACE_DIR, else
	// <state>/workspace (before, ~/.openclaw/workspace).
	sinceStateWorkspace = release.Version{Year: 2026, Month: 8, Patch: 2}
	// Placeholder gateway secrets (gateway.token_placeholder_value, …), the
	// password length check, the plugins tool as control plane, and
	// security.trust_model.cross_agent_session_access_default.
	sinceSecretPlaceholders    = release.Version{Year: 2026, Month: 9, Patch: 6}
	sincePluginsControlPlane   = release.Version{Year: 2026, Month: 9, Patch: 6}
	sinceCrossAgentSessionRisk = release.Version{Year: 2026, Month: 9, Patch: 6}
	// The minimal tools profile allows the gateway tool (before, only
	// session_status).
	sinceMinimalGateway = release.Version{Year: 2026, Month: 9, Patch: 6}
	// Before this line the audit runs the bundled Telegram plugin's own
	// channel checks without a gateway (channels.telegram.dm.*,
	// channels.telegram.warning.N, channels.telegram.groups.allowFrom.*);
	// from it on, the offline audit reports no channel plugin's findings.
	untilOfflineChannelAudit = release.Version{Year: 2026, Month: 8, Patch: 2}
)

// lineOf returns the supported line whose audit Run follows for a line
// name: the newest for "" or a name that is not exactly a supported line
// (release.Assume only ever names supported lines).
func lineOf(name string) release.Version {
	if v, err := release.Parse(name); err == nil {
		if l, ok := release.Lookup(v); ok {
			return l.Version
		}
	}
	return release.Newest().Version
}

// has reports whether the audited line's audit does what the line since
// introduced.
func (a *auditor) has(since release.Version) bool { return a.line.Compare(since) >= 0 }

// withNewer returns the line's own findings followed by every finding of
// the newest line's audit that none of them covers (same check ID, at least
// the same severity), renamed with NewerPrefix and marked as clawgate's.
func withNewer(own, newest []Finding, line, newestLine release.Version) []Finding {
	used := make([]bool, len(own))
	out := append([]Finding(nil), own...)
	for _, n := range newest {
		match := -1
		for i, f := range own {
			if used[i] || f.CheckID != n.CheckID || f.Severity.Rank() < n.Severity.Rank() {
				continue
			}
			if match < 0 || f.Detail == n.Detail {
				match = i
			}
			if f.Detail == n.Detail {
				break
			}
		}
		if match >= 0 {
			used[match] = true
			continue
		}
		out = append(out, Finding{
			CheckID:     NewerPrefix + n.CheckID,
			Severity:    n.Severity,
			Title:       n.Title + " (checked by clawgate: OpenClaw " + line.String() + "'s own audit misses it)",
			Detail:      n.Detail + "\n" + "OpenClaw " + newestLine.String() + "'s audit reports this as " + n.CheckID + "; the audit of " + line.String() + ", the line this gateway runs, does not, and clawgate keeps the check on.",
			Remediation: n.Remediation,
		})
	}
	return out
}

// PlainCheckID returns a check ID without NewerPrefix.
func PlainCheckID(id string) string { return strings.TrimPrefix(id, NewerPrefix) }

// ExpectedByDesignOn is ExpectedByDesign for a gateway of the named release
// line: on a line whose audit does not count trusted-proxy auth as auth on
// loopback, gateway.loopback_no_auth is what a consistent trusted-proxy
// setup produces too.
func ExpectedByDesignOn(cfg *Config, line string, cons []Finding) []string {
	ids := ExpectedByDesign(cons)
	if ids == nil || lineOf(line).Compare(sinceTrustedProxyAuth) >= 0 {
		return ids
	}
	if newRuntime(cfg).resolveAuth().mode == "trusted-proxy" {
		ids = append(ids, "gateway.loopback_no_auth")
	}
	return ids
}

// PairedDevicesUncappedCheckID is the finding for a gateway whose release
// line does not cap paired devices by x-openclaw-scopes.
const PairedDevicesUncappedCheckID = "clawgate.paired_devices_uncapped"

// LineFindings returns what clawgate has to say about the release line a
// gateway is assumed to run, whatever its config: the limits of that line
// behind clawgate that no config change lifts.
func LineFindings(a release.Assumed) []Finding {
	var out []Finding
	if l := a.Features(); !l.PairedDeviceCapped {
		out = append(out, Finding{
			CheckID:  PairedDevicesUncappedCheckID,
			Severity: SeverityWarn,
			Title:    "Paired devices are not capped by clawgate's rules on this OpenClaw line",
			Detail: fmt.Sprintf("OpenClaw %s does not apply x-openclaw-scopes to a paired device's WebSocket connection: a device (a browser's Control UI, a CLI) approved with `openclaw devices approve` keeps every scope it asked for at pairing, operator.admin included, whatever clawgate's rule for its user grants. HTTP requests and clients without a paired device stay capped.",
				l.Version),
			Remediation: fmt.Sprintf("Approve devices only for users whose clawgate rule grants every scope the device asks for, and remove the others with `openclaw devices remove <deviceId>`; or upgrade OpenClaw to %s or newer, which caps paired devices.", firstCapping()),
		})
	}
	return out
}

// firstCapping returns the oldest supported line that caps paired devices.
func firstCapping() string {
	ls := release.Lines()
	v := ls[0].Version
	for _, l := range ls {
		if l.PairedDeviceCapped {
			v = l.Version
		}
	}
	return v.String()
}
