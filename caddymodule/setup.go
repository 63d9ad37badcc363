package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
	"github.com/clawgate/clawgate/caddymodule/internal/setup"
)

// newSetupCommand is `caddy clawgate setup`.
func newSetupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "setup [--config Caddyfile] [--adapter NAME] [--gateway NAME] [--write] [--json] [--device-auto-approve]",
		Short: "Makes each gateway's openclaw.json agree with clawgate",
		Long: `
Reads clawgate's Caddy config and, for each OpenClaw gateway its guards front,
the gateway's openclaw.json, and shows as a diff of config paths, with a reason
for each, what OpenClaw needs so that it accepts clawgate and nothing else:
gateway.bind "loopback", gateway.trustedProxies ["127.0.0.1", "::1"],
gateway.auth.mode "trusted-proxy" with the user header and forwarding headers
clawgate sends, allowLoopback, allowUsers = the users clawgate's rules admit,
identityScopes from the rules' scopes, controlUi.allowedOrigins = the tailnet
origins, no shared token (moved to gateway.auth.password for the local CLI),
and no Tailscale Serve/Funnel managed by OpenClaw.

For a gateway with 'pairing required' that serves the Control UI (origins
known), setup also turns on gateway.auth.trustedProxy.deviceAutoApprove with
the non-admin scopes the rules grant: clawgate approves each machine once, and
OpenClaw pairs the browser it lets in instead of asking a second time. Without
'pairing required' it turns deviceAutoApprove off, since a tailnet login alone
would then pair a new browser. OpenClaw 2026.7.35 has no deviceAutoApprove:
there each new browser is approved once with 'openclaw devices approve'.

With --write the changes are made in place: comments and layout are kept,
each file is replaced atomically (mode 0600) after a timestamped backup next
to it, and the config is audited again. setup refuses to write a file that
changed since it was read, a symlink, a read-only file, or a change it cannot
make safely in the text (it says which and why). Secrets are never printed.

The gateway's config is the one its block in the clawgate app names
('config'), else OpenClaw's default (OPENCLAW_CONFIG_PATH, else
~/.openclaw/openclaw.json).

Exit status: 0 when the configs agree (or were made to), 1 when changes are
pending (without --write) or clawgate.* findings remain, 2 on errors.
`,
		Args: cobra.NoArgs,
		RunE: withExitStatus(func(c *cobra.Command, fl caddycmd.Flags) (int, error) {
			o := setupOptions{
				config:      fl.String("config"),
				adapter:     fl.String("adapter"),
				gateway:     fl.String("gateway"),
				write:       fl.Bool("write"),
				asJSON:      fl.Bool("json"),
				autoApprove: fl.Bool("device-auto-approve"),
			}
			code, err := runSetupCommand(c.OutOrStdout(), o)
			switch {
			case code != 1 || err != nil:
			case o.write:
				err = errors.New("clawgate.* findings remain after writing")
			default:
				err = errors.New("changes are pending; run with --write to make them")
			}
			return code, err
		}),
	}
	cmd.Flags().String("config", "", "clawgate's Caddy config (default: ./Caddyfile)")
	cmd.Flags().String("adapter", "", "config adapter (default: caddyfile, or none for a .json file)")
	cmd.Flags().String("gateway", "", "only this gateway (default: every gateway a guard names)")
	cmd.Flags().Bool("write", false, "apply the changes (a backup of each file is kept)")
	cmd.Flags().Bool("json", false, "print the plan and result as JSON")
	cmd.Flags().Bool("device-auto-approve", false, "turn on OpenClaw's deviceAutoApprove for a gateway with pairing required even when no Control UI origin is known")
	return cmd
}

type setupOptions struct {
	config, adapter, gateway   string
	write, asJSON, autoApprove bool
	now                        func() time.Time
	loadOpts                   func(name string, gc *GatewayConfig) audit.LoadOptions // tests: isolate from the process environment
}

// setupReport is one gateway's part of the output.
type setupReport struct {
	Gateway string `json:"gateway"`
	*setup.Plan
	Result *setup.Result `json:"result,omitempty"`
	Error  string        `json:"error,omitempty"`
}

// runSetupCommand plans (and with write applies) the changes for each
// gateway; it returns the exit status.
func runSetupCommand(out io.Writer, o setupOptions) (int, error) {
	if o.now == nil {
		o.now = time.Now
	}
	uc, err := loadUserConfig(o.config, o.adapter)
	if err != nil {
		return 2, err
	}
	gateways, err := setupGateways(uc.JSON)
	if err != nil {
		return 2, err
	}
	names := slices.Sorted(maps.Keys(gateways))
	if o.gateway != "" {
		if gateways[o.gateway] == nil {
			return 2, fmt.Errorf("no gateway %q in the config (gateways: %s)", o.gateway, strings.Join(names, ", "))
		}
		names = []string{o.gateway}
	}
	if len(names) == 0 {
		return 2, errors.New("the config has no clawgate guard and no clawgate gateway: nothing to set up")
	}

	paths := askRunningInstance(uc, o.adapter)
	code := 0
	worse := func(c int) {
		if c > code {
			code = c
		}
	}
	seen := map[string]string{} // config path -> gateway
	var reports []setupReport
	for _, name := range names {
		g := gateways[name]
		r := setupReport{Gateway: name}
		reports = append(reports, r)
		rp := &reports[len(reports)-1]
		fail := func(err error) {
			rp.Error = err.Error()
			worse(2)
		}
		e, err := setup.Derive(g.in)
		if err != nil {
			fail(fmt.Errorf("gateway %q: %w", name, err))
			continue
		}
		lo := audit.LoadOptions{}
		var pathNote string
		if g.block != nil {
			if lo, pathNote, err = paths.loadOptions(name, g.block); err != nil {
				fail(err)
				continue
			}
		}
		if o.loadOpts != nil {
			lo = o.loadOpts(name, g.block)
		}
		so := setup.Options{DeviceAutoApprove: o.autoApprove}
		if g.block != nil {
			v, pkg, err := gatewayVersionSettings(name, g.block)
			if err != nil {
				fail(err)
				continue
			}
			so.Version.Configured = v
			if pkg != "" {
				if v, err := release.PackageVersion(pkg); err != nil {
					so.Version.PackageErr = err.Error()
				} else {
					so.Version.Package = v
				}
			}
		}
		p, err := setup.Prepare(lo, e, so)
		if err != nil {
			fail(fmt.Errorf("gateway %q: %w", name, err))
			continue
		}
		rp.Plan = p
		if pathNote != "" {
			p.Notes = append(p.Notes, pathNote)
		}
		if other, dup := seen[p.Config]; dup {
			fail(fmt.Errorf("gateways %q and %q both use %s; give each its own `config` in the clawgate gateway block", other, name, p.Config))
			continue
		}
		seen[p.Config] = name
		if g.block == nil {
			p.Notes = append(p.Notes, fmt.Sprintf("the clawgate app has no `gateway %s` block, so this is OpenClaw's default config and clawgate's gate does not audit it; add the block to have clawgate refuse traffic while the config is unsafe", name))
		}
		if !p.Pending() {
			continue
		}
		if !o.write {
			worse(1)
			if p.Unwritable != "" {
				worse(2)
			}
			continue
		}
		res, err := p.Write(o.now())
		rp.Result = res
		if err != nil {
			fail(fmt.Errorf("gateway %q: %w", name, err))
			continue
		}
		if len(res.Consistency) > 0 {
			worse(1)
		}
	}

	if o.asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Paths    string        `json:"paths"`
			Gateways []setupReport `json:"gateways"`
		}{paths.summary(), reports}); err != nil {
			return 2, err
		}
		return code, nil
	}
	fmt.Fprintln(out, paths.summary())
	writeSetupText(out, reports, o.write, o.writeCommand())
	return code, nil
}

// writeCommand is the command line that applies the plan just shown: the
// user's own flags, so it reads the same Caddy config, plus --write.
func (o setupOptions) writeCommand() string {
	args := []string{"caddy", "clawgate", "setup"}
	if o.config != "" {
		args = append(args, "--config", shellWord(o.config))
	}
	if o.adapter != "" {
		args = append(args, "--adapter", shellWord(o.adapter))
	}
	if o.gateway != "" {
		args = append(args, "--gateway", shellWord(o.gateway))
	}
	if o.autoApprove {
		args = append(args, "--device-auto-approve")
	}
	return strings.Join(append(args, "--write"), " ")
}

// shellWord quotes s for a POSIX shell when it holds anything but plain
// path characters.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+,:=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeSetupText prints the plans and results for people; writeCmd is the
// command that applies pending changes.
func writeSetupText(out io.Writer, reports []setupReport, wrote bool, writeCmd string) {
	pending := false
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(out)
		}
		if r.Plan == nil {
			fmt.Fprintf(out, "gateway %q: error: %s\n", r.Gateway, r.Error)
			continue
		}
		fmt.Fprintf(out, "gateway %q: %s\n", r.Gateway, r.Config)
		if !r.Pending() {
			fmt.Fprintln(out, "  agrees with clawgate; nothing to change")
		}
		for _, c := range r.Changes {
			switch c.Op {
			case "add":
				fmt.Fprintf(out, "  + %s = %s\n", c.Path, c.New)
			case "set":
				fmt.Fprintf(out, "  ~ %s: %s -> %s\n", c.Path, c.Old, c.New)
			case "remove":
				fmt.Fprintf(out, "  - %s (was %s)\n", c.Path, c.Old)
			case "move":
				fmt.Fprintf(out, "  > %s moved to %s (%s)\n", c.Path, c.New, c.Old)
			}
			fmt.Fprintf(out, "      %s\n", c.Reason)
			if c.File != "" {
				fmt.Fprintf(out, "      (in %s)\n", c.File)
			}
		}
		for _, n := range r.Notes {
			fmt.Fprintf(out, "  note: %s\n", n)
		}
		if r.Unwritable != "" {
			fmt.Fprintf(out, "  cannot write this: %s\n", r.Unwritable)
		}
		if r.Error != "" {
			fmt.Fprintf(out, "  error: %s\n", r.Error)
		}
		if r.Pending() && !wrote {
			pending = true
		}
		if res := r.Result; res != nil {
			for i, w := range res.Written {
				fmt.Fprintf(out, "  wrote %s", w)
				if i < len(res.Backups) {
					fmt.Fprintf(out, " (backup: %s)", res.Backups[i])
				}
				fmt.Fprintln(out)
			}
			if len(res.Written) == 0 {
				continue
			}
			s := res.Report.Summary
			fmt.Fprintf(out, "  audit of the written config: %d critical · %d warn · %d info\n", s.Critical, s.Warn, s.Info)
			expected := res.Expected
			for _, f := range append(slices.Clone(res.Consistency), res.Report.Findings...) {
				if f.Severity == audit.SeverityInfo {
					continue
				}
				tag := ""
				if slices.Contains(expected, f.CheckID) {
					tag = " (expected behind clawgate)"
				}
				fmt.Fprintf(out, "    %-8s %s: %s%s\n", f.Severity, f.CheckID, f.Title, tag)
			}
			fmt.Fprintln(out, "  OpenClaw applies config changes itself; restart the gateway if it is not watching its config.")
		}
	}
	if pending {
		fmt.Fprintf(out, "\nRun `%s` to apply these changes (each file is backed up first).\n", writeCmd)
	}
}

// loadCaddyJSON reads clawgate's Caddy config as JSON, as `caddy run` does.
func loadCaddyJSON(path, adapter string) ([]byte, error) {
	uc, err := loadUserConfig(path, adapter)
	if err != nil {
		return nil, err
	}
	return uc.JSON, nil
}

// loadUserConfig is readUserConfig for a command that needs a config file:
// having none is an error that says where it looked.
func loadUserConfig(path, adapter string) (*userConfig, error) {
	uc, err := readUserConfig(path, adapter)
	if err != nil {
		return nil, err
	}
	if uc.File == "" {
		return nil, errors.New("no Caddy config to read: use --config, or run where your Caddyfile is")
	}
	return uc, nil
}

// setupGateway is what the Caddy config says about one gateway.
type setupGateway struct {
	block *GatewayConfig
	in    setup.Input
}

// setupGateways collects, per gateway name, its block in the clawgate app and
// every guard (http.handlers.clawgate, wherever it sits in the HTTP routes)
// that names it, with the tailnet origins of the sites those guards serve.
func setupGateways(cfgJSON []byte) (map[string]*setupGateway, error) {
	var root struct {
		Apps struct {
			Clawgate *App           `json:"clawgate"`
			HTTP     map[string]any `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &root); err != nil {
		return nil, fmt.Errorf("reading Caddy config JSON: %w", err)
	}
	out := map[string]*setupGateway{}
	get := func(name string) *setupGateway {
		if out[name] == nil {
			out[name] = &setupGateway{}
		}
		return out[name]
	}
	if app := root.Apps.Clawgate; app != nil {
		for name, gc := range app.Gateways {
			if gc == nil {
				gc = &GatewayConfig{}
			}
			g := get(name)
			g.block = gc
			g.in.Gated = true
			g.in.Origins = gc.Origins
			g.in.EdgePairing = gc.pairingRequired()
			if gc.Upstream != "" {
				ap, err := parseUpstream(gc.Upstream)
				if err != nil {
					return nil, fmt.Errorf("clawgate.gateways.%s.upstream: %w", name, err)
				}
				g.in.Upstream = int(ap.Port())
			}
		}
	}
	servers, _ := root.Apps.HTTP["servers"].(map[string]any)
	for _, sname := range slices.Sorted(maps.Keys(servers)) {
		srv, _ := servers[sname].(map[string]any)
		scheme, port, tailnet := serverListener(srv)
		var walkErr error
		walkGuards(srv, nil, func(raw map[string]any, hosts []string) {
			var h Handler
			b, _ := json.Marshal(raw)
			if err := json.Unmarshal(b, &h); err != nil {
				walkErr = fmt.Errorf("server %s: reading a clawgate guard: %w", sname, err)
				return
			}
			if h.Gateway == "" {
				h.Gateway = "default"
			}
			guard := setup.Guard{UserHeader: h.UserHeader, Rules: h.Rules}
			if ap, err := parseUpstream(h.Upstream); err == nil {
				guard.Port = int(ap.Port())
			}
			for _, t := range h.Tokens {
				guard.Tokens = append(guard.Tokens, setup.Token{Name: t.Name, User: t.User, Scopes: t.Scopes})
			}
			g := get(h.Gateway)
			g.in.Guards = append(g.in.Guards, guard)
			if tailnet {
				for _, host := range hosts {
					if strings.HasSuffix(strings.ToLower(host), ".ts.net") && !strings.Contains(host, "*") {
						g.in.SiteOrigins = append(g.in.SiteOrigins, siteOrigin(scheme, host, port))
					}
				}
			}
		})
		if walkErr != nil {
			return nil, walkErr
		}
	}
	return out, nil
}

// serverListener tells whether a server listens on a clawgate node, and the
// scheme and port browsers use to reach it.
func serverListener(srv map[string]any) (scheme string, port int, tailnet bool) {
	listen, _ := srv["listen"].([]any)
	for _, l := range listen {
		addr, _ := l.(string)
		rest, ok := strings.CutPrefix(addr, networkName+"/")
		if !ok {
			continue
		}
		tailnet = true
		if _, p, err := net.SplitHostPort(rest); err == nil {
			port, _ = strconv.Atoi(p)
		}
	}
	scheme = "http"
	if _, hasTLS := srv["tls_connection_policies"]; hasTLS || port == 443 {
		scheme = "https"
	}
	return scheme, port, tailnet
}

func siteOrigin(scheme, host string, port int) string {
	host = strings.ToLower(host)
	if port == 0 || scheme == "https" && port == 443 || scheme == "http" && port == 80 {
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// walkGuards calls visit for every clawgate handler below v, with the hosts
// the routes on the way match.
func walkGuards(v any, hosts []string, visit func(map[string]any, []string)) {
	switch t := v.(type) {
	case map[string]any:
		if t["handler"] == "clawgate" {
			visit(t, hosts)
			return
		}
		if match, ok := t["match"].([]any); ok {
			hosts = slices.Clone(hosts)
			for _, m := range match {
				mm, _ := m.(map[string]any)
				list, _ := mm["host"].([]any)
				for _, h := range list {
					if s, ok := h.(string); ok {
						hosts = append(hosts, s)
					}
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(t)) {
			if k != "match" {
				walkGuards(t[k], hosts, visit)
			}
		}
	case []any:
		for _, e := range t {
			walkGuards(e, hosts, visit)
		}
	}
}
