// Command clawgate-demo is clawgate's offline demo: an in-process tailnet,
// Caddy with clawgate on its own tailnet node, and the real OpenClaw gateway
// behind it, all on loopback; it tours what clawgate allows, denies and
// blocks, and prints a table. Run it from a clawgate checkout:
//
//	go run ./cmd/clawgate-demo [-json] [-stand-in] [-verbose]
//
// It is a command of its own, apart from cmd/caddy, because the in-process
// tailnet is built on Tailscale's test control server: the caddy binary
// carries none of it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/clawgate/clawgate/caddymodule/demo"
)

func main() {
	// Ctrl-C ends the tour and still cleans up; a second one kills the
	// process (the gateway's watchdog then stops OpenClaw).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := demo.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
