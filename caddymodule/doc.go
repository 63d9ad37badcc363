// Package caddymodule registers clawgate's Caddy modules.
package caddymodule

import (
	_ "github.com/golang-jwt/jwt/v5"
	_ "go.uber.org/zap"
	_ "tailscale.com/tsnet"
	_ "github.com/coder/websocket"
)
