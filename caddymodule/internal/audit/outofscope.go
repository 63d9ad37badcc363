package audit

// OutOfScopeCheck names a check of the real audit that Run does not
// perform, and why.
type OutOfScopeCheck struct {
	CheckID string
	Reason  string
}

const (
	reasonDeep      = "needs --deep: a live WebSocket probe of the running gateway"
	reasonCodeScan  = "needs --deep: static scan of installed plugin/skill code"
	reasonDocker    = "shells out to the Docker CLI to inspect running sandbox browser containers"
	reasonSQLite    = "install records live in OpenClaw's SQLite state (state/openclaw.sqlite); reading it would need a new dependency"
	reasonCollector = "emitted by a plugin's runtime security collector, which only --deep loads"
	reasonChannel   = "comes from a channel plugin's security adapter; openclaw@2026.9.6's plain audit did not emit it for any configured channel (telegram, whatsapp, discord, slack were tried), nor did 2026.8.2's. 2026.7.35's runs the bundled Telegram plugin's checks, and clawgate follows it on that line (channels.telegram.*)"
	reasonApprovals = "reads the exec-approvals store under the gateway user's home, not the config or state dir"
)

// OutOfScope lists the real audit's checks (openclaw@2026.9.6, from the
// bundled docs' catalogue and the source) that Run leaves out.
var OutOfScope = []OutOfScopeCheck{
	{"gateway.probe_failed", reasonDeep},
	{"gateway.probe_auth_secretref_unavailable", reasonDeep},
	{"plugins.code_safety", reasonCodeScan},
	{"plugins.code_safety.entry_path", reasonCodeScan},
	{"plugins.code_safety.entry_escape", reasonCodeScan},
	{"plugins.code_safety.manifest_parse_error", reasonCodeScan},
	{"plugins.code_safety.scan_failed", reasonCodeScan},
	{"skills.code_safety", reasonCodeScan},
	{"skills.code_safety.scan_failed", reasonCodeScan},
	{"skills.markdown_sensitive_network", reasonCodeScan},
	{"plugins.<pluginId>.security_audit_failed", reasonCollector},
	{"browser.control_invalid_config", reasonCollector},
	{"browser.control_no_auth", reasonCollector},
	{"browser.remote_cdp_http", reasonCollector},
	{"browser.remote_cdp_private_host", reasonCollector},
	{"browser.extension_relay_legacy_auth", reasonCollector},
	{"sandbox.browser_cdp_bridge_unrestricted", reasonCollector},
	{"sandbox.browser_container.non_loopback_publish", reasonDocker},
	{"sandbox.browser_container.hash_label_missing", reasonDocker},
	{"sandbox.browser_container.hash_epoch_stale", reasonDocker},
	{"sandbox.browser_container.docker_probe_timeout", reasonDocker},
	{"plugins.installs_unpinned_npm_specs", reasonSQLite},
	{"plugins.installs_missing_integrity", reasonSQLite},
	{"plugins.installs_version_drift", reasonSQLite},
	{"plugins.allow_phantom_entries", reasonSQLite},
	{"hooks.installs_unpinned_npm_specs", reasonSQLite},
	{"hooks.installs_missing_integrity", reasonSQLite},
	{"hooks.installs_version_drift", reasonSQLite},
	{"tools.exec.auto_allow_skills_enabled", reasonApprovals},
	{"tools.exec.allowlist_interpreter_without_strict_inline_eval", reasonApprovals},
	{"channels.<provider>.dm.open", reasonChannel},
	{"channels.<provider>.dm.open_invalid", reasonChannel},
	{"channels.<provider>.dm.disabled", reasonChannel},
	{"channels.<provider>.dm.locked", reasonChannel},
	{"channels.<provider>.dm.scope_main_multiuser", reasonChannel},
	{"channels.<provider>.allowFrom.mutable_entries_inert", reasonChannel},
	{"channels.<provider>.allowFrom.dangerous_name_matching_enabled", reasonChannel},
	{"channels.<provider>.account.read_only_resolution", reasonChannel},
	{"channels.<provider>.warning.<n>", reasonChannel},
	{"channels.dm.session_collision.<accounts>.<n>", reasonChannel},
	{"channels.discord.allowlisted_groups.broad_members", reasonChannel},
	{"channels.telegram.allowFrom.invalid_entries", reasonChannel},
}
