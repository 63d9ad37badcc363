// Package audit loads an OpenClaw gateway configuration the way OpenClaw
// does and audits it the way `openclaw security audit --json` does, so
// clawgate can refuse to front a gateway whose config fails its audit
// without running Node on the request path.
//
// Load reads the config (JSON5, $include, env.vars, ${VAR}); Run performs
// every check of openclaw@2026.9.6's plain audit that the config, its
// includes and the filesystem decide, with the real check IDs, severities,
// titles and finding order; OutOfScope lists the rest with reasons.
// Consistency adds clawgate's own edge/backend checks (clawgate.*), and
// ExpectedByDesign names the real findings a consistent trusted-proxy setup
// produces on purpose, for Report.Blocking.
//
// The real CLI is the oracle: testdata/corpus holds configs with the real
// CLI's recorded output (scripts/audit-corpus.sh record), TestCorpus compares
// every case, and `scripts/audit-corpus.sh check` re-runs the real CLI on a
// sample to catch OpenClaw drift. The package knows nothing of Caddy or zap.
package audit
