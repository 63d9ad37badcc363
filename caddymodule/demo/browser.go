package demo

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"tailscale.com/tailcfg"

	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// The --browser mode: after the tour the tailnet, clawgate and the real
// gateway keep running, and the real Control UI is served as alice through
// clawgate on a loopback URL. A forwarder on 127.0.0.1 carries the browser's
// connections over the tailnet from alice's node to clawgate's node, so
// clawgate sees alice's device exactly as it does for the tour's clients.
// A loopback origin is a secure context, so an ordinary browser with no
// flags can make the device identity the Control UI presents; the gateway's
// deviceAutoApprove (capped at the scopes alice's rule grants) pairs it,
// and the page lands connected. OpenClaw's auto-approval is safe only behind
// clawgate's own device pairing, so the gateway has `pairing required` too,
// and the tailnet policy approves alice's laptop (an application capability
// its auto_approve names): one pairing, and no page asking for it.

// reserveUI opens the loopback listener now: its origin must be in the
// gateway's config and clawgate's before either starts.
func (r *run) reserveUI() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("--browser: opening a loopback port for the Control UI: %w", err)
	}
	r.ui = l
	r.uiOrigin = "http://" + l.Addr().String()
	r.onCleanup(func() error {
		if r.ui != nil {
			r.ui.Close()
		}
		return nil
	})
	return nil
}

// origins are the browser origins the Control UI is served on: the tailnet
// name, and with --browser the loopback URL.
func (r *run) origins() []string {
	o := []string{"http://" + siteHost}
	if r.uiOrigin != "" {
		o = append(o, r.uiOrigin)
	}
	return o
}

// browserGatewayConfig adds to the gateway's config what a browser needs to
// land connected: OpenClaw pairs the browser's device identity itself, with
// no manual approval, and never with more than alice's rule grants.
func (r *run) browserGatewayConfig(cfg map[string]any) {
	auth := cfg["gateway"].(map[string]any)["auth"].(map[string]any)
	auth["trustedProxy"].(map[string]any)["deviceAutoApprove"] = map[string]any{
		"enabled": true,
		"scopes":  allowedScopes,
	}
}

// browserDeviceCap is the application capability the demo's tailnet policy
// grants alice's laptop in --browser mode, which the gateway's pairing
// auto-approves.
const browserDeviceCap = "clawgate.example/cap/demo-browser"

// browserNodeOptions are the options of alice's node in --browser mode.
func (r *run) browserNodeOptions() []tailnettest.NodeOption {
	return []tailnettest.NodeOption{tailnettest.WithCapMap(tailcfg.PeerCapMap{browserDeviceCap: {tailcfg.RawMessage(`{}`)}})}
}

// browserPairing is the pairing block of the gateway in --browser mode
// (empty otherwise), for the Caddyfile.
func (r *run) browserPairing() string {
	if !r.o.Browser {
		return ""
	}
	// Approvals live in Caddy's storage, which the demo keeps in its run
	// directory.
	return fmt.Sprintf("\n\t\t\tpairing required {\n\t\t\t\tauto_approve cap:%s\n\t\t\t}", browserDeviceCap)
}

// serveBrowser serves the Control UI on the loopback URL until ctx ends.
func (r *run) serveBrowser(ctx context.Context) (s Step) {
	s = Step{Name: "browser", Who: alice, Expected: "the Control UI served on a loopback URL until Ctrl-C"}
	t0 := time.Now()
	defer func() { s.Took = time.Since(t0) }()
	if r.res.Backend != BackendOpenClaw {
		s.Happened = "not served: the stand-in has no Control UI; --browser needs the real OpenClaw"
		fmt.Fprintf(r.out, "[browser] ✗ %s\n\n", s.Happened)
		return s
	}
	if !r.res.OK() {
		s.Happened = "not served: a step of the tour went wrong"
		fmt.Fprintf(r.out, "[browser] ✗ %s\n\n", s.Happened)
		return s
	}
	fw, err := r.alice.ForwardFrom(r.ui, net.JoinHostPort(siteHost, strconv.Itoa(sitePort)))
	if err != nil {
		s.Happened = "failed: " + err.Error()
		fmt.Fprintf(r.out, "[browser] ✗ %s\n\n", s.Happened)
		return s
	}
	r.ui = nil // the forwarder owns it now
	defer fw.Close()
	url := r.uiOrigin + "/"
	fmt.Fprintf(r.out, "[browser] the real Control UI, as %s through clawgate over the tailnet (from %s's node):\n\n", alice, aliceHost)
	fmt.Fprintf(r.out, "    %s\n\n", url)
	fmt.Fprintf(r.out, "          Open it in your browser: it lands connected as %s with scopes %s.\n", alice, strings.Join(allowedScopes, ", "))
	fmt.Fprintf(r.out, "          Press Ctrl-C to stop everything.\n\n")
	if r.o.BrowserReady != nil {
		r.o.BrowserReady(url)
	}
	<-ctx.Done()
	s.OK = true
	s.Happened = "served " + url + " until interrupted"
	fmt.Fprintf(r.out, "\n[browser] stopped serving %s\n", url)
	return s
}
