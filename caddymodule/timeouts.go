package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// A slow or idle client only ever holds one of Caddy's connections, never the
// gateway: the guard decides on a complete request head and the gateway sees
// nothing before that. These bound how long such a connection may be held.
// Caddy's own defaults (read_header 1m, idle 5m) let a few hundred trickling
// clients keep a small box's file descriptors and goroutines busy for
// minutes; a request head is a few hundred bytes, so 10 s is ample even on a
// poor mobile link, and a browser or CLI that goes quiet for 2 min simply
// reconnects. Neither touches a live session: net/http drops the header
// deadline once the head is read and every deadline when a WebSocket takes
// the connection over. Read and write timeouts stay as the user set them:
// they bound a whole request or response and would cut event streams and
// long uploads.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultIdleTimeout       = 2 * time.Minute
)

// applyServerTimeouts gives the Caddy server whose routes are being provisioned
// clawgate's read_header and idle timeouts where the user left them unset.
// Caddy fills unset timeouts with its own defaults only after the routes are
// provisioned and builds the net/http server from them when it starts, so
// setting them from a handler's Provision is early enough and explicit values
// are never overridden. Several clawgate handlers on one server set the same
// values. Outside an HTTP server (unit tests, other apps) it does nothing.
func applyServerTimeouts(ctx caddy.Context, logger *zap.Logger) {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil {
		return
	}
	var applied []zap.Field
	if srv.ReadHeaderTimeout == 0 {
		srv.ReadHeaderTimeout = caddy.Duration(defaultReadHeaderTimeout)
		applied = append(applied, zap.Duration("read_header", defaultReadHeaderTimeout))
	}
	if srv.IdleTimeout == 0 {
		srv.IdleTimeout = caddy.Duration(defaultIdleTimeout)
		applied = append(applied, zap.Duration("idle", defaultIdleTimeout))
	}
	if len(applied) > 0 && logger != nil {
		logger.Debug("applied clawgate's default server timeouts", applied...)
	}
}
