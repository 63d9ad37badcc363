// Package audit loads an OpenClaw gateway configuration the way OpenClaw
// does and audits it the way `openclaw security audit --json` does, so
// clawgate can refuse to front a gateway whose config fails its audit
// without running Node on the request path.
//
// Load reads the config (JSON5, $include, env.vars, ${VAR}); Run performs
// every check of openclaw@2026.9.6's plain audit that the config, its
// includes and the filesystem decide, with the real check IDs, severities,
// titles and finding order; OutOfScope lists the rest with reasons. With
// RunOptions.Line it follows an older release line's audit instead, and
// keeps every finding only the newest line reports as clawgate.newer.*.
// Consistency adds clawgate's own edge/backend checks (clawgate.*), and
// ExpectedByDesign names the real findings a consistent trusted-proxy setup
// produces on purpose, for Report.Blocking.
//
// Validate checks the loaded config against OpenClaw's own published JSON
// Schema (`openclaw config schema`, recorded per version under schema/ by
// scripts/openclaw-schema.sh and compiled once per process by LoadSchema)
// plus the refinements OpenClaw checks in code, and returns the issues
// `openclaw config validate --json` reports: OpenClaw will not load a config
// with any, so there is nothing meaningful to audit.
//
// The real CLI is the oracle: testdata/corpus holds configs with the real
// CLI's recorded output (scripts/audit-corpus.sh record), TestCorpus compares
// every case, and `scripts/audit-corpus.sh check` re-runs the real CLI on a
// sample to catch OpenClaw drift. testdata/invalid holds configs the real
// `openclaw config validate` refuses, with its recorded output, and every
// corpus case has the real verdict in validate.json (scripts/audit-corpus.sh
// record-validate); TestSchemaCorpus compares the issue paths. The package knows nothing of Caddy or zap.
package audit
