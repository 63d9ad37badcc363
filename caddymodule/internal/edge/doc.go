// Package edge holds the Caddy-free decision logic of clawgate's HTTP guard:
// who is calling (Identity), which credentials they present (static tokens
// and JWTs), whether the policy lets them through and with which scope cap
// (Policy), which request headers must be scrubbed and set before the
// request reaches a loopback OpenClaw gateway, how failed authentication is
// rate limited, and what a denied caller sees.
//
// It owns the rule grammar: rules are parsed once into a Policy, which both
// decides requests and tells setup and the gate what the gateway's own
// config has to agree with (the users, tokens and scopes the rules admit,
// Grants). The defaults that agreement rests on live here too: the user
// header, OpenClaw's gateway port, the forwarding headers the guard sends
// and those a gateway should require.
//
// Everything here is plain Go so it can be unit-tested and fuzzed alone; the
// caddymodule package translates Caddy config and requests into these calls.
// The package never imports Caddy or zap, and nothing in it logs: callers get
// values (fingerprints, reason codes) that are safe to log.
package edge
