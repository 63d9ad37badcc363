// Package setup makes an OpenClaw gateway's openclaw.json agree with what
// clawgate does at the edge, for `caddy clawgate setup`.
//
// Derive turns the guards that front one gateway (their rules, tokens, user
// header, upstream and origins) into an Edge: what OpenClaw must trust and
// admit. Prepare loads the gateway's config the way OpenClaw does (through
// the audit package) and plans the changes, each with a reason, as a diff of
// JSON paths. Plan.Write applies them by editing the source text at the spans
// of the changed values, so JSON5 comments and formatting survive, writes each
// file atomically with a timestamped backup, and re-runs the audit.
//
// Nothing here prints or returns a secret: the only secret the plan touches,
// a shared gateway token, is moved by renaming its key, so its value is never
// read into a message. The package knows nothing of Caddy.
package setup
