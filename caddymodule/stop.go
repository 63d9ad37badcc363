package caddymodule

import (
	"context"
	"fmt"
	"time"
)

// WaitNodesClosed blocks until every clawgate tailnet node of this process
// has closed, or ctx ends. caddy.Stop can return while the HTTP servers are
// still shutting down, and a node closes (writing its state) only once the
// last listener on it is released: a program that embeds Caddy and removes
// the nodes' state directories after caddy.Stop waits for this first.
func WaitNodesClosed(ctx context.Context) error {
	for openNodes.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d clawgate node(s) still open: %w", openNodes.Load(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
