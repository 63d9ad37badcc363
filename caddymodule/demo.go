package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/spf13/cobra"

	"github.com/clawgate/clawgate/caddymodule/internal/demo"
)

func init() { subcommands = append(subcommands, newDemoCommand) }

func newDemoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo [--json] [--stand-in] [--verbose]",
		Short: "Runs clawgate end to end on this machine, offline, and prints what it did",
		Long: `
Starts, inside this process and on loopback only, a Tailscale control server
with DERP, tailnet nodes for two users (alice@example.com, whom a rule lets in,
and bob@example.com, whom none does), Caddy with clawgate on its own tailnet
node, and an OpenClaw gateway behind it. Then it tours what clawgate does:

  1. alice's WebSocket connect reaches the gateway as alice, scopes capped
  2. bob, a stranger on the same tailnet, is refused at the edge
  3. identity headers alice sends to pass as bob are stripped
  4. the gateway's openclaw.json is made insecure: clawgate closes alice's
     WebSocket and refuses traffic with the audit's reasons
  5. the config is fixed, and traffic resumes

and prints a table of what happened. It stops and removes everything it
started. The exit status is 0 only if every step behaved as expected.

The gateway is the real OpenClaw, installed on first run by the project's
scripts/openclaw.sh (run the demo from the clawgate checkout:
go run ./cmd/caddy clawgate demo). If it cannot be installed, the demo says
how to retry and uses a clearly labelled stand-in backend instead.
`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			asJSON, _ := c.Flags().GetBool("json")
			standIn, _ := c.Flags().GetBool("stand-in")
			verbose, _ := c.Flags().GetBool("verbose")
			// Ctrl-C ends the tour and still cleans up; a second one kills
			// the process (the gateway's watchdog then stops OpenClaw).
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			go func() {
				<-ctx.Done()
				stop()
			}()
			defer stop()
			code, _ := runDemo(ctx, c.OutOrStdout(), c.ErrOrStderr(), demoFlags{json: asJSON, standIn: standIn, verbose: verbose})
			if code != 0 {
				os.Exit(code)
			}
			return nil
		},
	}
	cmd.Flags().Bool("json", false, "print the result as JSON on stdout (progress goes to stderr)")
	cmd.Flags().Bool("stand-in", false, "use the stand-in backend instead of installing and running the real OpenClaw")
	cmd.Flags().Bool("verbose", false, "show Caddy's and the tailnet's logs on stderr")
	return cmd
}

type demoFlags struct {
	json, standIn, verbose bool
	dir                    string     // where to look for the checkout; "" is the working directory
	caddy                  demo.Caddy // nil: this process's Caddy; tests wrap it to break a step
}

// runDemo runs the demo with the Caddy of this process and prints the
// progress and the table (or JSON); it returns the exit status, 0 only if
// every step behaved as expected, and the result.
func runDemo(ctx context.Context, stdout, stderr io.Writer, f demoFlags) (int, *demo.Result) {
	progress := stdout
	if f.json {
		progress = stderr
	}
	var c demo.Caddy = &demoCaddy{verbose: f.verbose}
	if f.caddy != nil {
		c = f.caddy
	}
	opts := demo.Options{
		Caddy:   c,
		Out:     progress,
		StandIn: f.standIn,
		Dir:     f.dir,
	}
	if f.verbose {
		opts.Log = stderr
	}
	res := demo.Run(ctx, opts)
	if f.json {
		if err := demo.WriteJSON(stdout, res); err != nil {
			fmt.Fprintln(stderr, "clawgate demo:", err)
			return 1, res
		}
	} else {
		demo.WriteTable(stdout, res)
	}
	if !res.OK() {
		return 1, res
	}
	return 0, res
}

// demoCaddy is demo.Caddy on this process's Caddy.
type demoCaddy struct {
	verbose bool
}

// Start adapts and loads the Caddyfile with the demo's adjustments: logs
// discarded unless verbose (the table is the output), no autosaved config,
// and storage inside the demo's directory so nothing lands in the user's
// Caddy data dir.
func (d *demoCaddy) Start(caddyfile, dataDir string) error {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting the demo's Caddyfile: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		return fmt.Errorf("adapting the demo's Caddyfile: %w", err)
	}
	writer := map[string]any{"output": "discard"}
	level := "ERROR"
	if d.verbose {
		writer = map[string]any{"output": "stderr"}
		level = "INFO"
	}
	m["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"writer": writer, "level": level}}}
	admin, _ := m["admin"].(map[string]any)
	if admin == nil {
		admin = map[string]any{}
	}
	admin["config"] = map[string]any{"persist": false}
	m["admin"] = admin
	m["storage"] = map[string]any{"module": "file_system", "root": dataDir}
	cfg, err = json.Marshal(m)
	if err != nil {
		return fmt.Errorf("adapting the demo's Caddyfile: %w", err)
	}
	if !d.verbose {
		// Caddy starts out logging INFO to stderr, and some of what a
		// config sets up logs through that logger before the config's own
		// logging takes over (a clawgate node's first lines, Caddy's
		// "redirected default logger"). A first config that keeps stderr
		// but raises the level silences them: with the writer unchanged,
		// Caddy does not announce the switch.
		quiet := []byte(`{"admin":{"disabled":true,"config":{"persist":false}},"logging":{"logs":{"default":{"level":"ERROR"}}}}`)
		if err := caddy.Load(quiet, true); err != nil {
			return fmt.Errorf("loading Caddy: %w", err)
		}
	}
	if err := caddy.Load(cfg, true); err != nil {
		return fmt.Errorf("loading Caddy: %w", err)
	}
	return nil
}

// WaitNode waits until the clawgate node has tailnet addresses.
func (d *demoCaddy) WaitNode(ctx context.Context, name string) error {
	for {
		if p := nodeByName(name); p != nil && len(p.tailnetIPs()) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s never came up: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop stops Caddy and waits for its nodes to close: a node writes its state
// while closing, and the demo removes the directories right after.
func (d *demoCaddy) Stop() error {
	err := caddy.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for openNodes.Load() > 0 {
		if time.Now().After(deadline) {
			return errors.Join(err, fmt.Errorf("%d clawgate node(s) still open 30s after Caddy stopped", openNodes.Load()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}
