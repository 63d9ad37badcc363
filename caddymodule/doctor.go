package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/setup"
)

// newDoctorCommand is `caddy clawgate doctor`.
func newDoctorCommand() *cobra.Command {
	var o doctorOptions
	cmd := &cobra.Command{
		Use:   "doctor [--config Caddyfile] [--address ADMIN] [--json]",
		Short: "Checks a running clawgate install end to end and says how to fix what is wrong",
		Long: `
Checks a live install, one line per check, and the fix for each problem:
the config adapts and validates; the admin endpoint is a unix socket only
its user can open; Caddy answers on it; each tailnet node is logged in (or
its login URL), its name and tailnet, and whether the tailnet offers HTTPS
certificates; each gateway's openclaw.json is readable, passes the audit and
agrees with clawgate (setup would change nothing: origins, user header,
required headers, trusted proxies); the gateway answers /readyz on its
loopback port, and not on this host's other addresses; the device pairing
storage is readable.

It reads the config caddy run would load (--config, else ./Caddyfile) and
asks the running Caddy through its admin endpoint (--address, else the
config's). The exit status is 1 when a check fails, else 0; warnings do not
fail. --json prints the checks as JSON.
`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&o.config, "config", "", "the Caddy config (default ./Caddyfile)")
	cmd.Flags().StringVar(&o.adapter, "adapter", "", "the config's adapter")
	cmd.Flags().StringVar(&o.address, "address", "", "the admin endpoint (default: the config's)")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the checks as JSON")
	cmd.RunE = withExitStatus(func(c *cobra.Command, _ caddycmd.Flags) (int, error) {
		r := runDoctor(o)
		if err := writeDoctor(c.OutOrStdout(), r, o.asJSON); err != nil {
			return 1, err
		}
		if !r.OK {
			return 1, fmt.Errorf("%d check(s) failed", r.failed())
		}
		return 0, nil
	})
	return cmd
}

// doctorOptions are the doctor's flags.
type doctorOptions struct {
	config, adapter, address string
	asJSON                   bool
	// hostAddrs lists this host's addresses other than loopback, where a
	// gateway must not answer; nil: the host's interfaces.
	hostAddrs func() ([]netip.Addr, error)
}

// Check statuses.
const (
	checkOK   = "ok"
	checkWarn = "warn"
	checkFail = "FAIL"
	checkSkip = "skipped"
)

// doctorCheck is one line of the doctor's table.
type doctorCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

// doctorReport is the doctor's result.
type doctorReport struct {
	OK     bool          `json:"ok"`
	Checks []doctorCheck `json:"checks"`
}

func (r *doctorReport) add(name, status, detail, fix string) {
	r.Checks = append(r.Checks, doctorCheck{Name: name, Status: status, Detail: detail, Fix: fix})
	if status == checkFail {
		r.OK = false
	}
}

func (r doctorReport) failed() int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == checkFail {
			n++
		}
	}
	return n
}

// runDoctor runs every check it can; a check whose prerequisite failed is
// skipped, with the reason.
func runDoctor(o doctorOptions) doctorReport {
	r := doctorReport{OK: true}
	cfgFlag := o.config
	if cfgFlag == "" {
		cfgFlag = "Caddyfile"
	}
	uc, err := readUserConfig(o.config, o.adapter)
	if err == nil && uc.File == "" {
		err = errors.New("no Caddy config to read: use --config, or run where your Caddyfile is")
	}
	if err != nil {
		r.add("config", checkFail, err.Error(), "fix the file; `caddy adapt --config "+cfgFlag+"` shows where it goes wrong")
		return r
	}
	if abs, err := filepath.Abs(uc.File); err == nil {
		uc.File = abs
	}
	var vcfg caddy.Config
	err = caddy.StrictUnmarshalJSON(uc.JSON, &vcfg)
	if err == nil {
		err = caddy.Validate(&vcfg)
	}
	if err != nil {
		r.add("config", checkFail, uc.File+" adapts, but does not validate: "+err.Error(), "`caddy validate --config "+uc.File+"` says the same; fix what it names")
	} else {
		r.add("config", checkOK, uc.File+" adapts and validates", "")
	}
	var cfg struct {
		Admin *struct {
			Disabled bool   `json:"disabled"`
			Listen   string `json:"listen"`
		} `json:"admin"`
		Apps struct {
			Clawgate *App `json:"clawgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(uc.JSON, &cfg); err != nil {
		r.add("config", checkFail, "reading the config JSON: "+err.Error(), "")
		return r
	}

	// The admin endpoint.
	disabled, listen := cfg.Admin != nil && cfg.Admin.Disabled, ""
	if cfg.Admin != nil {
		listen = cfg.Admin.Listen
	}
	addr := o.address
	if addr == "" {
		if addr, err = caddycmd.DetermineAdminAPIAddress("", uc.JSON, uc.File, o.adapter); err != nil {
			addr = caddy.DefaultAdminListen
		}
	}
	if sock, err := privateAdminSocket(disabled, listen); err != nil {
		detail, fix, _ := strings.Cut(err.Error(), ": set `")
		if fix != "" {
			fix = "set `" + fix
		}
		r.add("admin endpoint", checkFail, detail, fix)
	} else {
		status, detail, fix := socketFileCheck(sock)
		r.add("admin endpoint", status, detail, fix)
	}

	// The running Caddy.
	gwBody, err := adminCall(addr, http.MethodGet, "/clawgate/gateways", nil)
	if err != nil {
		r.add("caddy running", checkFail, "no answer: "+err.Error(),
			"start it: `systemctl --user start clawgate` (or `caddy run --config "+uc.File+"`); its log says why it stopped")
	} else {
		r.add("caddy running", checkOK, "answers on "+addr, "")
	}
	running := err == nil
	app := cfg.Apps.Clawgate
	if app == nil {
		app = &App{}
	}

	// Nodes.
	if running {
		doctorNodes(&r, addr)
	} else if len(app.Nodes) > 0 {
		r.add("nodes", checkSkip, "Caddy is not running", "")
	}

	// Gateways.
	gates := map[string]*gateState{}
	if running {
		if err := json.Unmarshal(gwBody, &gates); err != nil {
			r.add("gateways", checkFail, "reading /clawgate/gateways: "+err.Error(), "")
		}
	}
	setupGws, _ := setupGateways(uc.JSON)
	pending := doctorSetup(uc.File, o.adapter)
	names := slices.Sorted(maps.Keys(app.Gateways))
	for _, name := range names {
		gc := app.Gateways[name]
		if gc == nil {
			gc = &GatewayConfig{}
		}
		prefix := "gateway " + name + " "
		lo, err := gatewayLoadOptions(name, gc)
		if err == nil {
			_, err = audit.Load(lo)
		}
		if err != nil {
			r.add(prefix+"config", checkFail, err.Error(), "check the gateway block's config and state_dir, and that this user can read them (OpenClaw keeps them 0600/0700, owned by you)")
		} else {
			r.add(prefix+"config", checkOK, lo.ConfigPath+" is readable", "")
		}
		auditCmd := "`caddy clawgate audit --config " + uc.File + " --gateway " + name + "`"
		switch st := gates[name]; {
		case !running:
			r.add(prefix+"audit", checkSkip, "Caddy is not running", "")
		case st == nil:
			r.add(prefix+"audit", checkFail, "the running Caddy has no gateway "+name+": it runs another config", "reload it: `systemctl --user reload clawgate` (or `caddy reload --config "+uc.File+"`)")
		case st.Blocked && st.Error != "":
			r.add(prefix+"audit", checkFail, "blocked: "+st.Error, auditCmd+" shows the same")
		case st.Blocked:
			r.add(prefix+"audit", checkFail, "blocked: "+strings.Join(st.Reasons, "; "), auditCmd+" lists each finding and its fix; accept one by design with `expect <check>`")
		default:
			r.add(prefix+"audit", checkOK, fmt.Sprintf("passes (%d critical, %d warn, %d info)", st.Summary.Critical, st.Summary.Warn, st.Summary.Info), "")
		}
		setupCmd := "`caddy clawgate setup --config " + uc.File + " --write`"
		switch p := pending[name]; {
		case p.err != "":
			r.add(prefix+"setup", checkFail, p.err, "")
		case len(p.changes) > 0:
			r.add(prefix+"setup", checkFail, "openclaw.json disagrees with clawgate: "+strings.Join(p.changes, ", "), setupCmd+" makes them agree (with a backup)")
		default:
			r.add(prefix+"setup", checkOK, "openclaw.json agrees with clawgate (setup would change nothing)", "")
		}
		upstream := doctorUpstream(gc, setupGws[name])
		doctorReady(&r, prefix, upstream, gates[name])
		doctorLoopbackOnly(&r, prefix, upstream, o.hostAddrs)
		if gc.Pairing != nil && strings.EqualFold(gc.Pairing.Mode, "required") {
			doctorPairing(&r, prefix, addr, name, running)
		}
	}
	return r
}

// socketFileCheck looks at the admin socket on disk: its mode and owner.
func socketFileCheck(path string) (status, detail, fix string) {
	fi, err := os.Stat(path)
	if err != nil {
		return checkOK, "unix socket " + path + " (not there now: Caddy makes it, 0600, when it starts)", ""
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return checkFail, path + " is not a socket", "remove it; Caddy makes the socket when it starts"
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return checkFail, fmt.Sprintf("unix socket %s is mode %04o: others can open it", path, fi.Mode().Perm()), "add |0600 to the admin address, then restart Caddy"
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Geteuid() {
		return checkWarn, fmt.Sprintf("unix socket %s belongs to uid %d, not to you", path, uid), "run the doctor and the devices command as the service's user"
	}
	return checkOK, fmt.Sprintf("unix socket %s, %04o, yours", path, fi.Mode().Perm()), ""
}

func doctorNodes(r *doctorReport, addr string) {
	body, err := adminCall(addr, http.MethodGet, "/clawgate/nodes", nil)
	var nodes map[string]nodeStatus
	if err == nil {
		err = json.Unmarshal(body, &nodes)
	}
	if err != nil {
		r.add("nodes", checkFail, "reading /clawgate/nodes: "+err.Error(), "")
		return
	}
	names := slices.Sorted(maps.Keys(nodes))
	for _, name := range names {
		n := nodes[name]
		check := "node " + name
		switch {
		case !n.Started:
			r.add(check, checkWarn, "configured, but no site binds clawgate/"+name+", so it is not on the tailnet", "add `bind clawgate/"+name+"` to a site, or remove the node block")
			continue
		case n.State == "Running" && n.Tailnet == "":
			r.add(check, checkOK, fmt.Sprintf("logged in (%s); the tailnet has MagicDNS off, so the node has no tailnet name", joinAddrs(n.IPs)), "")
		case n.State == "Running":
			r.add(check, checkOK, fmt.Sprintf("logged in: %s on tailnet %s (%s)", n.DNSName, n.Tailnet, joinAddrs(n.IPs)), "")
		case n.State == "NeedsLogin" && n.AuthURL != "":
			r.add(check, checkFail, "not logged in to the tailnet", "open "+n.AuthURL+" to add it, or give the node an auth_key ({env.TS_AUTHKEY})")
			continue
		case n.State == "NeedsLogin":
			r.add(check, checkFail, "not logged in, and no login URL yet", "give the node an auth_key, or check that the control server is reachable (the log says more)")
			continue
		case n.State == "NeedsMachineAuth":
			r.add(check, checkFail, "waiting for a tailnet admin to approve the device", "approve it in the tailnet's admin console (Machines)")
			continue
		default:
			detail := "state " + n.State
			if n.Error != "" {
				detail += ": " + n.Error
			}
			r.add(check, checkFail, detail, "see Caddy's log (journalctl --user -u clawgate)")
			continue
		}
		if len(n.CertDomains) == 0 {
			r.add(check+" https", checkWarn, "the tailnet offers no HTTPS certificates: browsers open the Control UI only over https",
				"turn on MagicDNS and HTTPS Certificates in the tailnet's admin console (DNS page)")
		} else {
			r.add(check+" https", checkOK, "certificates for "+strings.Join(n.CertDomains, ", "), "")
		}
	}
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

// setupPending is what `setup` would change for one gateway.
type setupPending struct {
	changes []string
	err     string
}

// doctorSetup runs setup without --write and returns per gateway what it
// would change.
func doctorSetup(config, adapter string) map[string]setupPending {
	var buf bytes.Buffer
	_, err := runSetupCommand(&buf, setupOptions{config: config, adapter: adapter, asJSON: true})
	out := map[string]setupPending{}
	var res struct {
		Gateways []struct {
			Gateway    string         `json:"gateway"`
			Changes    []setup.Change `json:"changes"`
			Unwritable string         `json:"unwritable"`
			Error      string         `json:"error"`
		} `json:"gateways"`
	}
	if err == nil {
		err = json.Unmarshal(buf.Bytes(), &res)
	}
	for _, g := range res.Gateways {
		p := setupPending{err: g.Error}
		for _, c := range g.Changes {
			p.changes = append(p.changes, c.Path)
		}
		out[g.Gateway] = p
	}
	if err != nil {
		for name := range out {
			out[name] = setupPending{err: "setup: " + err.Error()}
		}
	}
	return out
}

// doctorUpstream is the gateway's loopback address: its block's upstream,
// else the port its guards proxy to, else OpenClaw's default.
func doctorUpstream(gc *GatewayConfig, sg *setupGateway) string {
	if gc.Upstream != "" {
		if ap, err := parseUpstream(gc.Upstream); err == nil {
			return ap.String()
		}
		return gc.Upstream
	}
	if sg != nil {
		for _, g := range sg.in.Guards {
			if g.Port != 0 {
				return net.JoinHostPort("127.0.0.1", strconv.Itoa(g.Port))
			}
		}
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(edge.DefaultGatewayPort))
}

func doctorReady(r *doctorReport, prefix, upstream string, st *gateState) {
	check := prefix + "up"
	ap, err := netip.ParseAddrPort(upstream)
	if err != nil || !ap.Addr().IsLoopback() {
		r.add(check, checkFail, "the upstream "+upstream+" is not a loopback address", "run OpenClaw with gateway.bind \"loopback\" and point the upstream at 127.0.0.1:<port>")
		return
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + upstream + "/readyz")
	if err != nil {
		r.add(check, checkFail, "nothing answers on "+upstream+": "+shortNetErr(err), "start the OpenClaw gateway (`openclaw gateway`, or its service: `systemctl --user start openclaw-gateway`), on the port the upstream names")
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	version := ""
	if st != nil && st.OpenClaw.Line != "" {
		version = "; OpenClaw " + st.OpenClaw.Line
		if st.OpenClaw.Version != "" && st.OpenClaw.Version != st.OpenClaw.Line {
			version = "; OpenClaw " + st.OpenClaw.Version + " (rules of " + st.OpenClaw.Line + ")"
		}
		if st.OpenClaw.Source == "" || st.OpenClaw.Version == "" {
			version += " assumed: set openclaw_version in the gateway block"
		}
	}
	if resp.StatusCode != http.StatusOK {
		r.add(check, checkFail, fmt.Sprintf("%s/readyz answers %d: the gateway is up but not ready%s", upstream, resp.StatusCode, version), "see the gateway's log (`openclaw logs`)")
		return
	}
	r.add(check, checkOK, "answers /readyz on "+upstream+version, "")
}

func shortNetErr(err error) string {
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Err.Error()
	}
	return err.Error()
}

// doctorLoopbackOnly checks that the gateway's port answers on no address of
// this host but loopback: anything that reaches it there bypasses clawgate.
func doctorLoopbackOnly(r *doctorReport, prefix, upstream string, hostAddrs func() ([]netip.Addr, error)) {
	check := prefix + "loopback only"
	ap, err := netip.ParseAddrPort(upstream)
	if err != nil {
		r.add(check, checkSkip, "no loopback upstream to check", "")
		return
	}
	if hostAddrs == nil {
		hostAddrs = nonLoopbackAddrs
	}
	addrs, err := hostAddrs()
	if err != nil {
		r.add(check, checkFail, "listing this host's addresses: "+err.Error(), "")
		return
	}
	var open []string
	for _, a := range addrs {
		target := netip.AddrPortFrom(a, ap.Port()).String()
		c, err := net.DialTimeout("tcp", target, time.Second)
		if err == nil {
			c.Close()
			open = append(open, target)
		}
	}
	switch {
	case len(open) > 0:
		r.add(check, checkFail, "the gateway's port also answers on "+strings.Join(open, ", ")+": whoever reaches that address bypasses clawgate",
			"set gateway.bind to \"loopback\" in openclaw.json (`caddy clawgate setup --write` does), and restart the gateway")
	case len(addrs) == 0:
		r.add(check, checkOK, "this host has no address but loopback", "")
	default:
		r.add(check, checkOK, fmt.Sprintf("port %d answers on none of this host's %d other address(es)", ap.Port(), len(addrs)), "")
	}
}

// nonLoopbackAddrs are this host's interface addresses other than loopback
// and link-local ones.
func nonLoopbackAddrs() ([]netip.Addr, error) {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range ifAddrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr().Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}

func doctorPairing(r *doctorReport, prefix, addr, name string, running bool) {
	check := prefix + "pairing"
	if !running {
		r.add(check, checkSkip, "Caddy is not running", "")
		return
	}
	body, err := adminCall(addr, http.MethodGet, "/clawgate/devices?gateway="+name, nil)
	var list devicesList
	if err == nil {
		err = json.Unmarshal(body, &list)
	}
	if err != nil {
		r.add(check, checkFail, "reading the devices: "+err.Error(), "")
		return
	}
	if why, bad := list.Unavailable[name]; bad {
		r.add(check, checkFail, "the approvals cannot be read, so every device is held: "+why, "make Caddy's storage (the storage global option) readable and writable by this service's user; devices pass again once it reads")
		return
	}
	pendingN := 0
	for _, d := range list.Devices {
		if d.Status == "pending" {
			pendingN++
		}
	}
	r.add(check, checkOK, fmt.Sprintf("storage readable: %d device(s), %d waiting for approval", len(list.Devices), pendingN), "")
}

// writeDoctor prints the report as a table with the fixes below it, or as
// JSON.
func writeDoctor(out io.Writer, r doctorReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Status, c.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var fixes []string
	for _, c := range r.Checks {
		if c.Fix != "" && (c.Status == checkFail || c.Status == checkWarn) {
			fixes = append(fixes, fmt.Sprintf("  %s: %s", c.Name, c.Fix))
		}
	}
	if len(fixes) > 0 {
		fmt.Fprintf(out, "\nTo fix:\n%s\n", strings.Join(fixes, "\n"))
	}
	if r.OK {
		fmt.Fprintln(out, "\nall checks passed")
	}
	return nil
}
