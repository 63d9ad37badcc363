// Package caddymodule is clawgate's Caddy plugin: the `clawgate` app (tailnet
// nodes and OpenClaw gateways with their audit gates), the `clawgate/<node>`
// listener network, the `http.handlers.clawgate` guard, its Caddyfile directive
// and global option, the admin API and the `caddy clawgate` command. It is the
// only package where Caddy types meet clawgate's own; the logic lives in the
// internal packages edge, audit and senders and in the tsnet package.
package caddymodule
