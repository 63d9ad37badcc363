package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/tsnet"
)

const appID = "clawgate"

func init() {
	caddy.RegisterModule(App{})
}

// App is the `clawgate` app: the tailnet nodes clawgate runs and the OpenClaw
// gateways it fronts. Nodes are started on first use by a listener bound to
// `clawgate/<node>` and shared across config reloads.
type App struct {
	// Nodes configures the tailnet nodes by name. A site bound to
	// `clawgate/<name>` for a name not listed here gets a node with default
	// settings. Default: none.
	Nodes map[string]*NodeConfig `json:"nodes,omitempty"`

	// Gateways configures the OpenClaw gateways by name (the `gateway` of a
	// guard), each with its audit gate. Default: none.
	Gateways map[string]*GatewayConfig `json:"gateways,omitempty"`

	ctx     caddy.Context
	logger  *zap.Logger
	nodes   map[string]tsnet.Config
	gates   map[string]*gate
	metrics *gateMetrics
}

// NodeConfig is one tailnet node that clawgate runs as (tsnet): its own machine
// on the tailnet, with its own name, keys and certificate.
type NodeConfig struct {
	// Hostname is the node's name on the tailnet and the first label of its
	// MagicDNS name. Default: the node's name in the config.
	Hostname string `json:"hostname,omitempty"`

	// StateDir holds the node's keys. It is created 0700; an existing directory
	// readable by others is refused. Default: `clawgate/<name>` in Caddy's data
	// directory.
	StateDir string `json:"state_dir,omitempty"`

	// AuthKey registers the node without an interactive login. It must be a
	// placeholder, `{env.TS_AUTHKEY}` or `{file./path}` (a file not readable by
	// other users), read when the config loads, so the key never appears in
	// Caddy's /config admin output; a literal key is refused. Default:
	// `{env.TS_AUTHKEY}` when that variable is set, else an interactive login
	// whose URL is logged once.
	AuthKey string `json:"auth_key,omitempty"`

	// AuthKeyFile is a file holding the auth key. Deprecated: write AuthKey
	// `{file./path}`.
	AuthKeyFile string `json:"auth_key_file,omitempty"`

	// ControlURL is the coordination server, for example a Headscale instance.
	// Default: Tailscale's.
	ControlURL string `json:"control_url,omitempty"`

	// Ephemeral registers the node as ephemeral: the tailnet forgets it soon after
	// it goes offline. Default: false.
	Ephemeral bool `json:"ephemeral,omitempty"`

	// Tags are the ACL tags the node advertises, such as "tag:clawgate".
	// Default: none.
	Tags []string `json:"tags,omitempty"`

	// Port is the UDP port for WireGuard. Default: 0, any free port.
	Port uint16 `json:"port,omitempty"`

	// FrontDoors names the tailnet front doors this node accepts forwarded
	// connections from, each as `tag:<tag>` (preferred: only the tailnet's
	// tag owners can give a node a tag) or `node:<name>`, checked with the
	// node's own WhoIs of the connection's peer. A front door's connection
	// must open with a PROXY protocol v2 header naming the original client's
	// tailnet address; the client's identity is looked up again here from
	// that address. A PROXY header from any other peer closes the
	// connection. Default: none (no peer may forward).
	FrontDoors []string `json:"front_doors,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  appID,
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves each node's configuration; nodes start when a listener
// first needs them.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.nodes = make(map[string]tsnet.Config, len(a.Nodes))
	for name, nc := range a.Nodes {
		if nc.AuthKeyFile != "" && nc.AuthKey == "" {
			ph := legacyIf(nc.AuthKeyFile, "file")
			warnDeprecated(a.logger, "clawgate.nodes."+name+": auth_key_file "+nc.AuthKeyFile, "auth_key "+ph, `"auth_key": "`+ph+`"`)
		}
		cfg, err := nc.tsnetConfig(name)
		if err != nil {
			return fmt.Errorf("clawgate.nodes.%s: %w", name, err)
		}
		if err := frontDoorSelectors(nc.FrontDoors); err != nil {
			return fmt.Errorf("clawgate.nodes.%s.%w", name, err)
		}
		a.nodes[name] = cfg
	}
	a.metrics = newGateMetrics(ctx.GetMetricsRegistry())
	if err := a.provisionGates(); err != nil {
		return err
	}
	if err := a.provisionPairing(ctx.Storage()); err != nil {
		return err
	}
	// Last, when everything a guard asks of the app is ready: it may have
	// Caddy provision the http app now.
	return a.checkListeners(ctx)
}

// Validate checks the nodes' settings without touching the tailnet.
func (a *App) Validate() error {
	for name, cfg := range a.nodes {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("clawgate.nodes.%s: %w", name, err)
		}
	}
	return nil
}

// Start runs each gateway's first audit and starts watching its files; nodes
// are started by their listeners.
func (a *App) Start() error {
	for _, g := range a.gates {
		g.start()
	}
	a.startPairing()
	runningApp.Store(a)
	return nil
}

// Stop stops the gateways' watchers; nodes are released by their listeners.
func (a *App) Stop() error {
	runningApp.CompareAndSwap(a, nil)
	for _, g := range a.gates {
		g.stop()
	}
	a.stopPairing()
	return nil
}

// nodeConfig returns the tsnet configuration for a node name, the default one
// for a name the app does not list.
func (a *App) nodeConfig(name string) (tsnet.Config, error) {
	if cfg, ok := a.nodes[name]; ok {
		return cfg, nil
	}
	cfg, err := (&NodeConfig{}).tsnetConfig(name)
	if err != nil {
		return cfg, fmt.Errorf("clawgate node %q: %w", name, err)
	}
	return cfg, cfg.Validate()
}

// tsnetConfig resolves a node's settings: defaults, placeholders, key files.
func (nc *NodeConfig) tsnetConfig(name string) (tsnet.Config, error) {
	cfg := tsnet.Config{
		Hostname:   nc.Hostname,
		StateDir:   nc.StateDir,
		ControlURL: nc.ControlURL,
		Ephemeral:  nc.Ephemeral,
		Tags:       nc.Tags,
		Port:       nc.Port,
	}
	if cfg.Hostname == "" {
		cfg.Hostname = name
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(caddy.AppDataDir(), "clawgate", name)
	}
	repl := caddy.NewReplacer()
	cfg.ControlURL = repl.ReplaceKnown(cfg.ControlURL, "")
	switch {
	case nc.AuthKey != "" && nc.AuthKeyFile != "":
		return cfg, errors.New("auth_key and auth_key_file are mutually exclusive")
	case nc.AuthKey != "":
		key, err := readSecret(nc.AuthKey)
		if err != nil {
			return cfg, fmt.Errorf("auth_key: %w", err)
		}
		cfg.AuthKey = string(key)
	case nc.AuthKeyFile != "":
		key, err := readLegacySecret("", nc.AuthKeyFile)
		if err != nil {
			return cfg, fmt.Errorf("auth_key_file: %w", err)
		}
		cfg.AuthKey = string(key)
	default:
		cfg.AuthKey = strings.TrimSpace(os.Getenv("TS_AUTHKEY"))
	}
	return cfg, nil
}

// tailnetNode returns the clawgate node that accepted the request's
// connection, or nil when it arrived on another listener. It goes by the
// connection's local address, which only a clawgate node's own listener
// has.
func tailnetNode(r *http.Request) *poolNode {
	var ip netip.Addr
	switch local := r.Context().Value(http.LocalAddrContextKey).(type) {
	case *net.TCPAddr:
		ip = local.AddrPort().Addr()
	case net.Addr:
		ap, err := netip.ParseAddrPort(local.String())
		if err != nil {
			return nil
		}
		ip = ap.Addr()
	default:
		return nil
	}
	return nodeByIP(ip.Unmap())
}

// identify fills id with the tailnet identity of the request's device when the
// request arrived through one of clawgate's nodes, and returns that node. A
// request that did arrive over the tailnet but whose peer cannot be identified
// is an error: the caller denies it.
func identify(r *http.Request, id *edge.Identity) (*poolNode, error) {
	node := tailnetNode(r)
	return node, identifyOn(node, r, id)
}

// identifyOn is identify for a request whose node (tailnetNode) is known;
// a nil node leaves id alone.
func identifyOn(node *poolNode, r *http.Request, id *edge.Identity) error {
	if node == nil {
		return nil
	}
	return node.identify(r.Context(), r.RemoteAddr, id)
}

// identify fills id with what the node's WhoIs says about the peer at
// remoteAddr, and the node's own tailnet, against which the peer's is
// compared (an unknown one leaves every peer foreign: edge.Identity.OwnTailnet).
func (p *poolNode) identify(ctx context.Context, remoteAddr string, id *edge.Identity) error {
	who, err := p.WhoIs(ctx, remoteAddr)
	if err != nil {
		return fmt.Errorf("whois on %v: %w", p, err)
	}
	home, err := p.Tailnet(ctx)
	if err != nil && p.logger != nil && p.homeUnknownLogged.CompareAndSwap(false, true) {
		p.logger.Warn("this node's own tailnet is unknown: every peer counts as a device of another tailnet", zap.Error(err))
	}
	id.OnTailnet = true
	id.Login = who.Login
	id.DisplayName = who.DisplayName
	id.Node = who.Node
	id.NodeFQDN = who.NodeFQDN
	id.NodeID = who.NodeID
	id.Tags = who.Tags
	id.Tailnet = who.Tailnet
	id.HomeTailnet = home
	id.Caps = who.Caps
	return nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)
