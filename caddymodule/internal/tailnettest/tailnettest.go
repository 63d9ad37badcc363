// Package tailnettest runs a real, offline tailnet inside one process: a
// Tailscale control server (tailscale.com/tstest/integration/testcontrol),
// DERP and STUN on 127.0.0.1, and real tsnet nodes. Tests use the helpers
// that take a testing.TB (New, NewNode, Config, WaitPeer), which fail the
// test and clean up after it; programs such as the demo use the same tailnet
// through Start, StartNode, NodeConfig and AwaitPeer, which return errors and
// leave closing to the caller.
//
// # Chosen logins and per-peer grants
//
// testcontrol names every user "user-<N>@fake-control.example.net" (getUser
// numbers users by registration order, keyed by node key) and has no API to
// rename one; UpdateNode can move a node to another user ID, but that user
// has no profile, so WhoIs fails. Its app capabilities are global only
// (SetGlobalAppCaps grants from "*" to "*"); SetNodeCapMap sets a node's
// own node attributes, which peers see as WhoIs(...).Node.CapMap, not as the
// WhoIs CapMap that grants fill in. And AddRawMapResponse switches a node's
// automatic map updates off for good.
//
// So the Tailnet serves map streams itself through testcontrol's
// AltMapStream hook: it records each node's map requests (endpoints, disco
// key, Hostinfo, home DERP) into testcontrol with UpdateNode, as
// testcontrol's own serveMap does, and sends testcontrol's MapResponse for
// the node after decorating it:
//   - a node created WithLogin gets a user ID of its own (one per login) and
//     the response carries that user's profile (LoginName, DisplayName);
//   - a tagged node belongs to the "tagged-devices" user, as on Tailscale's
//     control plane (testcontrol keeps it with its registering user);
//   - for every peer created WithCapMap, the packet filter gets a CapGrant
//     rule from the peer's addresses to the receiving node's addresses, so
//     WhoIs on the receiving node returns those caps for that peer only.
//
// Identities are keyed by hostname and known before the node registers, so
// no node is ever seen with a provisional identity. Streams resend when
// anything changes (immediately for changes made through the Tailnet, within
// 250 ms for changes made directly on Control).
package tailnettest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/tsnet"
	"tailscale.com/derp/derpserver"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/net/netns"
	"tailscale.com/net/stunserver"
	"tailscale.com/tailcfg"
	ts "tailscale.com/tsnet"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

// Domain is the tailnet's MagicDNS suffix: node "gw" is gw.tail-scale.ts.net.
const Domain = "tail-scale.ts.net"

// TaggedDevices is the login the control server reports for tagged nodes.
const TaggedDevices = "tagged-devices"

const (
	// taggedDevicesID mirrors the user ID Tailscale's control plane uses
	// for tagged devices; it is far from testcontrol's small IDs.
	taggedDevicesID tailcfg.UserID = 2147455555
	// firstLoginID is the first user ID handed to a chosen login.
	firstLoginID tailcfg.UserID = 1 << 20

	// pollInterval bounds how late a stream notices a change made directly
	// on Control, which the Tailnet cannot see.
	pollInterval = 250 * time.Millisecond
	// keepAliveInterval stays well under the client's map watchdog.
	keepAliveInterval = 30 * time.Second
	// upTimeout bounds bringing one node up.
	upTimeout = 60 * time.Second
)

// VerboseEnv, set to 1, sends control, DERP and node logs to t.Logf.
const VerboseEnv = "CLAWGATE_TAILNET_VERBOSE"

// Tailnet is an in-process tailnet. Create it with New in a test, or with
// Start elsewhere.
type Tailnet struct {
	Control    *testcontrol.Server
	ControlURL string
	DERPMap    *tailcfg.DERPMap

	logf    logger.Logf
	quit    chan struct{} // closed by Close: ends map streams
	closers []func()      // run by Close, last first
	once    sync.Once

	mu      sync.Mutex
	hosts   map[string]identity       // by hostname
	userIDs map[string]tailcfg.UserID // by login
	changed chan struct{}             // closed and replaced on every change

	svcMu    sync.Mutex
	svcAddrs map[tailcfg.ServiceName]netip.Addr   // each Service's address
	svcHosts map[string]tailcfg.ServiceIPMappings // approved Services by host name
}

// identity is what the Tailnet decides about a node, by hostname.
type identity struct {
	login       string // "" keeps testcontrol's user
	displayName string
	caps        tailcfg.PeerCapMap // granted to this node towards every other node
}

// TailnetOption configures New and Start.
type TailnetOption func(*testcontrol.Server)

// RequireAuthKey makes the control server refuse to register nodes that do
// not present key.
func RequireAuthKey(key string) TailnetOption {
	return func(s *testcontrol.Server) { s.RequireAuthKey = key }
}

// RequireAuth makes registration wait for an interactive login: the node
// gets a login URL, which the test completes with Control.CompleteAuth.
func RequireAuth() TailnetOption {
	return func(s *testcontrol.Server) { s.RequireAuth = true }
}

// WithoutHTTPS turns MagicDNS and certificate domains off for the tailnet,
// as in a tailnet whose admin never enabled HTTPS.
func WithoutHTTPS() TailnetOption {
	return func(s *testcontrol.Server) {
		s.MagicDNSDomain = ""
		s.DNSConfig = nil
	}
}

// New starts a tailnet for the test t; it is closed in t.Cleanup, after the
// nodes the test made. With CLAWGATE_TAILNET_VERBOSE=1 its logs go to t.Logf.
// Under -short it skips t: the test belongs to the tailnet suite.
func New(t testing.TB, opts ...TailnetOption) *Tailnet {
	t.Helper()
	suites.SkipShort(t, suites.Tailnet)
	logf := logger.Discard
	if os.Getenv(VerboseEnv) == "1" {
		logf = t.Logf
	}
	tn, err := Start(logf, opts...)
	if err != nil {
		t.Fatalf("tailnettest: %v", err)
	}
	t.Cleanup(tn.Close)
	return tn
}

// Start starts a control server and a DERP+STUN server on 127.0.0.1, logging
// to logf (nil discards). Close the nodes, then the Tailnet with Close.
func Start(logf logger.Logf, opts ...TailnetOption) (tn *Tailnet, err error) {
	if logf == nil {
		logf = logger.Discard
	}
	tn = &Tailnet{
		logf:    logf,
		quit:    make(chan struct{}),
		hosts:   make(map[string]identity),
		userIDs: make(map[string]tailcfg.UserID),
		changed: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			tn.Close()
		}
	}()
	disableNetns()
	tn.closers = append(tn.closers, enableNetns)
	if tn.DERPMap, err = tn.startDERPAndSTUN(); err != nil {
		return nil, err
	}
	tn.Control = &testcontrol.Server{
		DERPMap:        tn.DERPMap,
		DNSConfig:      &tailcfg.DNSConfig{Proxied: true},
		MagicDNSDomain: Domain,
		Logf:           logf,
		// Non-nil: nodes get the tags they advertise at registration.
		// Retagging later is not modelled (see serveMapStream).
		TagOwners:    map[string][]string{},
		AltMapStream: tn.serveMapStream,
	}
	for _, o := range opts {
		o(tn.Control)
	}
	tn.Control.HTTPTestServer = httptest.NewUnstartedServer(tn.Control)
	tn.Control.HTTPTestServer.Config.ErrorLog = logger.StdLogger(logf)
	tn.Control.HTTPTestServer.Start()
	tn.closers = append(tn.closers, tn.Control.HTTPTestServer.Close)
	// Runs before the server closes: the map streams end first.
	tn.closers = append(tn.closers, func() { close(tn.quit) })
	tn.ControlURL = tn.Control.HTTPTestServer.URL
	return tn, nil
}

// Close stops the control, DERP and STUN servers. Close the nodes first.
// Calling it again does nothing.
func (tn *Tailnet) Close() {
	tn.once.Do(func() {
		for i := len(tn.closers) - 1; i >= 0; i-- {
			tn.closers[i]()
		}
		tn.closers = nil
	})
}

// startDERPAndSTUN runs a DERP server (TLS with a throwaway certificate,
// which the DERP map marks as acceptable for tests) and a STUN server on
// 127.0.0.1, and returns the DERP map of the one region they make.
func (tn *Tailnet) startDERPAndSTUN() (*tailcfg.DERPMap, error) {
	d := derpserver.New(key.NewNode(), tn.logf)
	tn.closers = append(tn.closers, func() { d.Close() })
	srv := httptest.NewUnstartedServer(derpserver.Handler(d))
	srv.Config.ErrorLog = logger.StdLogger(tn.logf)
	// DERP upgrades an HTTP/1.1 connection; no HTTP/2.
	srv.Config.TLSNextProto = make(map[string]func(*http.Server, *tls.Conn, http.Handler))
	srv.StartTLS()
	tn.closers = append(tn.closers, func() {
		srv.CloseClientConnections()
		srv.Close()
	})

	// The STUN server has no Close: it stops when its context ends.
	ctx, stop := context.WithCancel(context.Background())
	tn.closers = append(tn.closers, stop)
	stun := stunserver.New(ctx)
	if err := stun.Listen("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("starting STUN: %w", err)
	}
	go stun.Serve()

	return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		1: {
			RegionID:   1,
			RegionCode: "test",
			Nodes: []*tailcfg.DERPNode{{
				Name:             "t1",
				RegionID:         1,
				HostName:         "127.0.0.1",
				IPv4:             "127.0.0.1",
				IPv6:             "none",
				STUNPort:         stun.LocalAddr().(*net.UDPAddr).Port,
				DERPPort:         srv.Listener.Addr().(*net.TCPAddr).Port,
				InsecureForTests: true,
				STUNTestIP:       "127.0.0.1",
			}},
		},
	}}, nil
}

var (
	netnsMu    sync.Mutex
	netnsUsers int
)

// disableNetns turns off tailscale's socket marking while a Tailnet runs,
// as tsnet's own tests do: unprivileged, it only slows nodes down. Counted,
// so tailnets running side by side do not turn it back on under each other;
// enableNetns undoes one call.
func disableNetns() {
	netnsMu.Lock()
	defer netnsMu.Unlock()
	if netnsUsers == 0 {
		netns.SetEnabled(false)
	}
	netnsUsers++
}

func enableNetns() {
	netnsMu.Lock()
	defer netnsMu.Unlock()
	netnsUsers--
	if netnsUsers == 0 {
		netns.SetEnabled(true)
	}
}

// NodeOption configures a node.
type NodeOption func(*nodeOptions)

type nodeOptions struct {
	login, displayName string
	tags               []string
	caps               tailcfg.PeerCapMap
}

// WithLogin makes login ("alice@example.com") the node's owner; the display
// name is the part before '@'. Nodes with the same login share a user.
func WithLogin(login string) NodeOption {
	return func(o *nodeOptions) {
		o.login = login
		o.displayName, _, _ = strings.Cut(login, "@")
	}
}

// WithTags makes the node advertise tags; the control server grants them,
// and the node then belongs to the "tagged-devices" user.
func WithTags(tags ...string) NodeOption {
	return func(o *nodeOptions) { o.tags = append(o.tags, tags...) }
}

// WithCapMap grants the node application capabilities towards every other
// node: WhoIs on any other node, for a connection from this one, returns
// caps in its CapMap.
func WithCapMap(caps tailcfg.PeerCapMap) NodeOption {
	return func(o *nodeOptions) { o.caps = caps }
}

// SetCapMap replaces the application capabilities granted to the node
// named hostname (see WithCapMap); nil revokes them all. Only the packet
// filter of the other nodes changes, as when a tailnet policy edit adds or
// removes a grant: the node itself and its peer entry stay as they were.
func (tn *Tailnet) SetCapMap(t testing.TB, hostname string, caps tailcfg.PeerCapMap) {
	t.Helper()
	tn.mu.Lock()
	defer tn.mu.Unlock()
	id, ok := tn.hosts[hostname]
	if !ok {
		t.Fatalf("tailnettest: no node %q", hostname)
	}
	id.caps = caps
	tn.hosts[hostname] = id
	tn.notifyLocked()
}

// register records the identity for hostname before its node exists.
func (tn *Tailnet) register(hostname string, opts []NodeOption) (nodeOptions, error) {
	var o nodeOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.login != "" && len(o.tags) > 0 {
		return o, fmt.Errorf("node %q: WithLogin and WithTags exclude each other (tagged nodes belong to %s)", hostname, TaggedDevices)
	}
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if _, dup := tn.hosts[hostname]; dup {
		return o, fmt.Errorf("hostname %q used twice", hostname)
	}
	id := identity{login: o.login, displayName: o.displayName, caps: o.caps}
	if o.login != "" {
		if _, ok := tn.userIDs[o.login]; !ok {
			tn.userIDs[o.login] = firstLoginID + tailcfg.UserID(len(tn.userIDs))
		}
	}
	for _, tag := range o.tags {
		// Read by testcontrol only on retagging, which it does not reach
		// here, so writing while it runs is safe.
		tn.Control.TagOwners[tag] = nil
	}
	tn.hosts[hostname] = id
	tn.notifyLocked()
	return o, nil
}

// Node is a plain tsnet node on the Tailnet (not one clawgate manages).
type Node struct {
	*ts.Server
	Hostname string
	IPs      []netip.Addr // IPv4 first
}

// NewNode starts a node for the test t, as StartNode does, with its state
// in a temp dir of the test, and closes it in t.Cleanup.
func (tn *Tailnet) NewNode(t testing.TB, hostname string, opts ...NodeOption) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), upTimeout)
	defer cancel()
	n, err := tn.StartNode(ctx, filepath.Join(t.TempDir(), hostname), hostname, opts...)
	if err != nil {
		t.Fatalf("tailnettest: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// StartNode starts a tsnet node with its files in dir (its state stays in
// memory), and waits, at most until ctx ends, until it is Running and
// connected to its home DERP server. The caller closes it with Close.
func (tn *Tailnet) StartNode(ctx context.Context, dir, hostname string, opts ...NodeOption) (*Node, error) {
	o, err := tn.register(hostname, opts)
	if err != nil {
		return nil, err
	}
	s := &ts.Server{
		Dir:           dir,
		Hostname:      hostname,
		ControlURL:    tn.ControlURL,
		Ephemeral:     true,
		Store:         new(mem.Store), // nothing written to disk after Close
		AdvertiseTags: o.tags,
		Logf:          logger.WithPrefix(tn.logf, hostname+": "),
		UserLogf:      logger.WithPrefix(tn.logf, hostname+": "),
	}
	st, err := s.Up(ctx)
	if err == nil {
		err = waitHomeDERP(ctx, s)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("node %q: %w", hostname, err)
	}
	return &Node{Server: s, Hostname: hostname, IPs: slices.Clone(st.TailscaleIPs)}, nil
}

// waitHomeDERP blocks until s has picked a home DERP region and heard from
// it; before that, the DERP server drops packets for s (PeerGoneNotHere).
func waitHomeDERP(ctx context.Context, s *ts.Server) error {
	h := s.Sys().HealthTracker.Get()
	ms := s.Sys().MagicSock.Get()
	for {
		if r := ms.GetLastNetcheckReport(ctx); r != nil && r.PreferredDERP != 0 &&
			!h.GetDERPRegionReceivedTime(r.PreferredDERP).IsZero() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for home DERP: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// HTTPClient returns a client that dials over the tailnet, with a timeout
// so a broken path fails the test instead of hanging it.
func (n *Node) HTTPClient() *http.Client {
	c := n.Server.HTTPClient()
	c.Timeout = 30 * time.Second
	return c
}

// Dial connects to addr over the tailnet.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.Server.Dial(ctx, network, addr)
}

// WaitPeer is AwaitPeer for the test t, which fails if the peer is not
// reachable within a minute.
func (tn *Tailnet) WaitPeer(t testing.TB, from *Node, to string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), upTimeout)
	defer cancel()
	if err := tn.AwaitPeer(ctx, from, to); err != nil {
		t.Fatalf("tailnettest: %v", err)
	}
}

// AwaitPeer waits, at most until ctx ends, until from sees the node named to
// with tailnet addresses and a DERP home, and a disco ping to it succeeds,
// so the first real packet is not lost.
func (tn *Tailnet) AwaitPeer(ctx context.Context, from *Node, to string) error {
	lc, err := from.LocalClient()
	if err != nil {
		return fmt.Errorf("%s: %w", from.Hostname, err)
	}
	var last string
	for {
		st, err := lc.Status(ctx)
		if err != nil {
			return fmt.Errorf("%s waiting for peer %q: status: %w", from.Hostname, to, err)
		}
		last = "not in status"
		for _, p := range st.Peer {
			if p.HostName != to && strings.TrimSuffix(p.DNSName, "."+Domain+".") != to {
				continue
			}
			if len(p.TailscaleIPs) == 0 || (p.Relay == "" && p.CurAddr == "") {
				last = "no addresses or DERP home yet"
				break
			}
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			res, err := lc.Ping(pctx, p.TailscaleIPs[0], tailcfg.PingDisco)
			pcancel()
			if err == nil && res.Err == "" {
				return nil
			}
			last = "disco ping failed"
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s waiting for peer %q: %s: %w", from.Hostname, to, last, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Config is NodeConfig for the test t, with the state directory in a temp
// dir of the test, which is removed after it: close the node before the
// test ends.
func (tn *Tailnet) Config(t testing.TB, hostname string, opts ...NodeOption) tsnet.Config {
	t.Helper()
	cfg, err := tn.NodeConfig(filepath.Join(t.TempDir(), hostname), hostname, opts...)
	if err != nil {
		t.Fatalf("tailnettest: %v", err)
	}
	return cfg
}

// NodeConfig returns a clawgate tsnet.Config for a node on this tailnet whose
// state directory is stateDir (which need not exist yet: tsnet.New creates
// it 0700). opts work as for StartNode (WithTags sets Config.Tags).
func (tn *Tailnet) NodeConfig(stateDir, hostname string, opts ...NodeOption) (tsnet.Config, error) {
	o, err := tn.register(hostname, opts)
	if err != nil {
		return tsnet.Config{}, err
	}
	return tsnet.Config{
		Hostname:   hostname,
		StateDir:   stateDir,
		ControlURL: tn.ControlURL,
		Ephemeral:  true,
		Tags:       o.tags,
	}, nil
}

// notifyLocked wakes every map stream. tn.mu must be held.
func (tn *Tailnet) notifyLocked() {
	close(tn.changed)
	tn.changed = make(chan struct{})
}

func (tn *Tailnet) notify() {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.notifyLocked()
}

func (tn *Tailnet) changedCh() <-chan struct{} {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.changed
}

// serveMapStream replaces testcontrol's serveMap (see the package comment).
func (tn *Tailnet) serveMapStream(ctx context.Context, w testcontrol.MapStreamWriter, req *tailcfg.MapRequest) {
	if tn.Control.Node(req.NodeKey) == nil {
		return
	}
	// As in serveMap: since capability version 68, a streaming request
	// carries no updates; they come in separate non-streaming requests.
	if !req.ReadOnly && !(req.Stream && req.Version >= 68) {
		tn.recordMapRequest(req)
	}
	if !req.Stream {
		if res := tn.mapResponse(req); res != nil {
			w.SendMapMessage(res)
		}
		return
	}
	tn.notify() // a node (re)connected: its peers' maps changed
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	keepAlive := time.NewTicker(keepAliveInterval)
	defer keepAlive.Stop()
	var last []byte
	for {
		changed := tn.changedCh() // before building, so no change is missed
		res := tn.mapResponse(req)
		if res == nil {
			return
		}
		b, err := json.Marshal(res)
		if err != nil {
			tn.logf("tailnettest: marshal map response: %v", err)
			return
		}
		if !bytes.Equal(b, last) {
			if err := w.SendMapMessage(res); err != nil {
				return
			}
			last = b
		}
		select {
		case <-ctx.Done():
			return
		case <-tn.quit:
			return
		case <-changed:
		case <-poll.C:
		case <-keepAlive.C:
			if err := w.SendMapMessage(&tailcfg.MapResponse{KeepAlive: true}); err != nil {
				return
			}
		}
	}
}

// recordMapRequest stores what a node reports about itself, as serveMap
// does. tn.mu serializes these read-modify-write updates; nothing else in
// testcontrol writes an existing node's entry.
func (tn *Tailnet) recordMapRequest(req *tailcfg.MapRequest) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	n := tn.Control.Node(req.NodeKey)
	if n == nil {
		return
	}
	n.Endpoints = slices.DeleteFunc(slices.Clone(req.Endpoints), func(ep netip.AddrPort) bool {
		ip := ep.Addr()
		return ip.Zone() != "" || (ip.Is6() && ip.IsLinkLocalUnicast())
	})
	n.DiscoKey = req.DiscoKey
	n.Cap = req.Version
	if req.Hostinfo != nil {
		n.Hostinfo = req.Hostinfo.View()
		if ni := req.Hostinfo.NetInfo; ni != nil && ni.PreferredDERP != 0 {
			n.HomeDERP = ni.PreferredDERP
		}
	}
	tn.Control.UpdateNode(n)
	tn.notifyLocked()
}

// mapResponse returns testcontrol's map for req's node with the Tailnet's
// identities and grants applied, or nil if the node is gone.
func (tn *Tailnet) mapResponse(req *tailcfg.MapRequest) *tailcfg.MapResponse {
	res, err := tn.Control.MapResponse(req)
	if err != nil || res == nil {
		return nil
	}
	tn.mu.Lock()
	defer tn.mu.Unlock()
	profiles := make(map[tailcfg.UserID]tailcfg.UserProfile)
	for _, up := range res.UserProfiles {
		profiles[up.ID] = up
	}
	for _, n := range append([]*tailcfg.Node{res.Node}, res.Peers...) {
		id := tn.hosts[hostnameOf(n)]
		switch {
		case len(n.Tags) > 0:
			n.User = taggedDevicesID
			profiles[taggedDevicesID] = tailcfg.UserProfile{ID: taggedDevicesID, LoginName: TaggedDevices, DisplayName: "Tagged Devices"}
		case id.login != "":
			uid := tn.userIDs[id.login]
			n.User = uid
			profiles[uid] = tailcfg.UserProfile{ID: uid, LoginName: id.login, DisplayName: id.displayName}
		}
	}
	res.UserProfiles = res.UserProfiles[:0]
	for _, up := range profiles {
		res.UserProfiles = append(res.UserProfiles, up)
	}
	// Sorted so that an unchanged map encodes identically and is not resent.
	slices.SortFunc(res.UserProfiles, func(a, b tailcfg.UserProfile) int { return cmp.Compare(a.ID, b.ID) })

	for _, p := range res.Peers {
		caps := tn.hosts[hostnameOf(p)].caps
		if len(caps) == 0 {
			continue
		}
		var srcs []string
		for _, a := range p.Addresses {
			srcs = append(srcs, a.Addr().String())
		}
		res.PacketFilter = append(res.PacketFilter, tailcfg.FilterRule{
			SrcIPs:   srcs,
			CapGrant: []tailcfg.CapGrant{{Dsts: slices.Clone(res.Node.Addresses), CapMap: caps}},
		})
	}
	return res
}

func hostnameOf(n *tailcfg.Node) string {
	if !n.Hostinfo.Valid() {
		return ""
	}
	return n.Hostinfo.Hostname()
}
