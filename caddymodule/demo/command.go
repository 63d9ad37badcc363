package demo

import (
	"context"
	"flag"
	"fmt"
	"io"
)

// usage is the command's help text, above the flags.
const usage = `Usage: go run ./cmd/clawgate-demo [-json] [-stand-in] [-verbose]

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
started. The exit status is 0 only if every step behaved as expected, 1 if
one did not, 2 for a wrong flag.

The gateway is the real OpenClaw, installed on first run by the project's
scripts/openclaw.sh (run the demo from the clawgate checkout). If it cannot
be installed, the demo says how to retry and uses a clearly labelled
stand-in backend instead.

Flags:
`

// flags are the command's options, and what tests put in their place.
type flags struct {
	json, standIn, verbose bool
	dir                    string // where to look for the checkout; "" is the working directory
	caddy                  Caddy  // nil: a ProcessCaddy
}

// Main runs the demo as the clawgate-demo command, with args (without the
// program name), and returns the exit status: 0 only if every step behaved
// as expected, 1 if one did not, 2 for bad arguments.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clawgate-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var f flags
	fs.BoolVar(&f.json, "json", false, "print the result as JSON on stdout (progress goes to stderr)")
	fs.BoolVar(&f.standIn, "stand-in", false, "use the stand-in backend instead of installing and running the real OpenClaw")
	fs.BoolVar(&f.verbose, "verbose", false, "show Caddy's and the tailnet's logs on stderr")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "clawgate-demo: unexpected argument %q; it takes flags only (-h lists them)\n", fs.Arg(0))
		return 2
	}
	code, _ := runCommand(ctx, stdout, stderr, f)
	return code
}

// runCommand runs the demo and prints the progress and the table (or JSON);
// it returns the exit status and the result.
func runCommand(ctx context.Context, stdout, stderr io.Writer, f flags) (int, *Result) {
	progress := stdout
	if f.json {
		progress = stderr
	}
	opts := Options{Caddy: f.caddy, Out: progress, StandIn: f.standIn, Dir: f.dir}
	if f.verbose {
		opts.Log = stderr
	}
	res := Run(ctx, opts)
	if f.json {
		if err := WriteJSON(stdout, res); err != nil {
			fmt.Fprintln(stderr, "clawgate-demo:", err)
			return 1, res
		}
	} else {
		WriteTable(stdout, res)
	}
	if !res.OK() {
		return 1, res
	}
	return 0, res
}
