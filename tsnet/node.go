package tsnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"tailscale.com/wgengine/netstack"

	"tailscale.com/envknob"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
	ts "tailscale.com/tsnet"
	"tailscale.com/wgengine/filter"
)

var (
	// ErrClosed is returned by methods of a Node that has been closed.
	ErrClosed = errors.New("tailnet node closed")
	// ErrNotStarted is returned by methods that need a started Node.
	ErrNotStarted = errors.New("tailnet node not started")
	// ErrHTTPSDisabled means the tailnet gives this node no certificate
	// domains: MagicDNS or HTTPS certificates are off for the tailnet.
	ErrHTTPSDisabled = errors.New("tailnet HTTPS certificates are disabled")
)

// httpsHelp tells an operator how to turn certificates on.
const httpsHelp = "enable MagicDNS and HTTPS Certificates on the DNS page of the Tailscale admin console " +
	"(https://login.tailscale.com/admin/dns; see https://tailscale.com/kb/1153/enabling-https); " +
	"a self-hosted control server must offer certificate domains too"

// Node is one tsnet server owned by clawgate. Create it with New, bring it
// up with Start, and release it with Close. All methods are safe for
// concurrent use.
type Node struct {
	cfg   Config
	logf  *logSink // backend lines
	ulogf *logSink // lines for people

	cache *whoIsCache

	// closing is cancelled when Close begins; it stops Start, the bus
	// watcher and pending waits.
	closing     context.Context
	cancelClose context.CancelFunc
	done        chan struct{}
	closeOnce   sync.Once
	// running is closed when the bus watcher first sees the node Running,
	// so that Start returns only once WhoIs caching works.
	running     chan struct{}
	runningOnce sync.Once
	watchers    sync.WaitGroup

	mu        sync.Mutex
	srv       *ts.Server // non-nil once launched successfully
	launchErr error      // sticky failure of the first launch
	closed    bool
	authURL   string // last login URL printed
	selfID    string // identity-relevant fields of our own node, last seen

	// watchMu guards the OnPolicyChange watchers and the goroutine that
	// serves them while there are any.
	// tailnet is the MagicDNS suffix of our own node's name, once known; read
	// on every tailnet request, so not under mu.
	tailnet atomic.Pointer[string]

	// serviceMu serializes the changes Service listeners make to the
	// node's serve config (see ListenService).
	serviceMu sync.Mutex

	watchMu     sync.Mutex
	watchFns    map[int]func()
	watchNext   int
	watchCancel context.CancelFunc
}

// New validates cfg and prepares its state directory. It does not start the
// node. logf receives verbose backend lines, userLogf the few lines meant
// for a person (such as a login URL); either may be nil.
func New(cfg Config, logf, userLogf Logf) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tailnet node config: %w", err)
	}
	if err := prepareStateDir(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("tailnet node %q: state_dir %q: %w", cfg.Hostname, cfg.StateDir, err)
	}
	cfg.Tags = slices.Clone(cfg.Tags)
	redact := newRedactor(nodeSecrets(cfg)...)
	closing, cancel := context.WithCancel(context.Background())
	return &Node{
		cfg:         cfg,
		logf:        &logSink{out: logf, redact: redact},
		ulogf:       &logSink{out: userLogf, redact: redact, dropAuthLoop: true},
		cache:       newWhoIsCache(),
		closing:     closing,
		cancelClose: cancel,
		done:        make(chan struct{}),
		running:     make(chan struct{}),
	}, nil
}

// Config returns the configuration the node was created with.
func (n *Node) Config() Config {
	c := n.cfg
	c.Tags = slices.Clone(c.Tags)
	return c
}

// String names the node without showing its configuration's secret.
func (n *Node) String() string {
	return fmt.Sprintf("tailnet node %q", n.cfg.Hostname)
}

// Start brings the node onto the tailnet and returns once it is Running, or
// when ctx ends or the node is closed. If the node needs an interactive
// login, the login URL goes to userLogf, once per URL. A Start that gives up
// leaves the node trying in the background; Close it to stop.
func (n *Node) Start(ctx context.Context) error {
	srv, err := n.launch()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.closing, cancel)
	defer stop()
	_, err = srv.Up(ctx)
	if err == nil {
		select {
		case <-n.running:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		if n.closing.Err() != nil {
			return fmt.Errorf("starting %v: %w", n, ErrClosed)
		}
		return fmt.Errorf("starting %v: %w", n, err)
	}
	return nil
}

// launch creates and starts the tsnet server once, without waiting for it
// to be Running, and starts the IPN bus watcher.
func (n *Node) launch() (*ts.Server, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("%v: %w", n, ErrClosed)
	}
	if n.srv != nil || n.launchErr != nil {
		return n.srv, n.launchErr
	}
	// No log upload to Tailscale from a security gateway; see the package
	// documentation.
	envknob.SetNoLogsNoSupport()
	srv := &ts.Server{
		Dir:           n.cfg.StateDir,
		Hostname:      n.cfg.Hostname,
		AuthKey:       n.cfg.AuthKey,
		ControlURL:    n.cfg.ControlURL,
		Ephemeral:     n.cfg.Ephemeral,
		AdvertiseTags: slices.Clone(n.cfg.Tags),
		Port:          n.cfg.Port,
		Logf:          n.logf.logf,
		UserLogf:      n.ulogf.logf,
	}
	if err := srv.Start(); err != nil {
		// tsnet has released what it built; Close must not be called on a
		// server whose Start failed.
		n.launchErr = fmt.Errorf("starting %v: %w", n, err)
		return nil, n.launchErr
	}
	n.srv = srv
	shortenTimeWait(srv, n.logf.logf)
	if e, ok := srv.Sys().Engine.GetOK(); ok {
		n.cache.policy.Store(&policySource{
			current: e.GetFilter,
			caps: func(f *filter.Filter, src netip.Addr) (tailcfg.PeerCapMap, bool) {
				// As LocalAPI's WhoIs: towards our own address of the
				// peer's address family.
				v4, v6 := srv.TailscaleIPs()
				dst := v4
				if src.Is6() {
					dst = v6
				}
				if !dst.IsValid() {
					return nil, false
				}
				return f.CapsWithValues(src, dst), true
			},
		})
	}
	n.watchers.Go(func() { n.watch(srv) })
	return srv, nil
}

// shortenTimeWait sets the node's TCP TIME_WAIT to one second. With gVisor's
// default of 60 s, a client reusing a source port within a minute has its SYN
// silently dropped (a new connection stalls), and a node with hundreds of
// connections in TIME_WAIT cannot be closed (each abort queues a reset into
// an outbound queue of 512 that is no longer drained). Both were measured
// with tailscale.com v1.102.5.
func shortenTimeWait(srv *ts.Server, logf func(string, ...any)) {
	ns, ok := srv.Sys().Netstack.GetOK()
	if !ok {
		return
	}
	impl, ok := ns.(*netstack.Impl)
	if !ok {
		return
	}
	opt := tcpip.TCPTimeWaitTimeoutOption(time.Second)
	if err := impl.SetTransportProtocolOption(tcp.ProtocolNumber, &opt); err != nil {
		logf("setting the netstack's TCP TIME_WAIT: %v", err)
	}
}

// server returns the launched server, or an error saying why there is none.
func (n *Node) server() (*ts.Server, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return nil, fmt.Errorf("%v: %w", n, ErrClosed)
	case n.launchErr != nil:
		return nil, n.launchErr
	case n.srv == nil:
		return nil, fmt.Errorf("%v: %w", n, ErrNotStarted)
	}
	return n.srv, nil
}

// watchMask asks for state and login URLs (to print the URL once) and for
// peer changes (to invalidate WhoIs answers).
const watchMask = ipn.NotifyInitialState | ipn.NotifyPeerChanges | ipn.NotifyPeerPatches

// watch follows the node's IPN bus until the node closes, reconnecting if
// the bus drops the watcher. WhoIs caching is on only while it is connected.
func (n *Node) watch(srv *ts.Server) {
	defer n.cache.setEnabled(false)
	backoff := 10 * time.Millisecond
	for n.closing.Err() == nil {
		if err := n.watchOnce(srv); err != nil && n.closing.Err() == nil {
			n.logf.logf("clawgate: watching IPN bus of %v: %v; retrying", n, err)
		}
		n.cache.setEnabled(false)
		select {
		case <-n.closing.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (n *Node) watchOnce(srv *ts.Server) error {
	lc, err := srv.LocalClient()
	if err != nil {
		return err
	}
	w, err := lc.WatchIPNBus(n.closing, watchMask)
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		note, err := w.Next()
		if err != nil {
			return err
		}
		n.handleNotify(&note)
	}
}

// handleNotify acts on one IPN bus message.
func (n *Node) handleNotify(note *ipn.Notify) {
	if note.State != nil {
		// The first message answers NotifyInitialState: from here on, no
		// peer change can slip past the cache.
		running := *note.State == ipn.Running
		n.cache.setEnabled(running)
		if running {
			n.runningOnce.Do(func() { close(n.running) })
		}
	}
	if u := note.BrowseToURL; u != nil && *u != "" {
		n.mu.Lock()
		fresh := *u != n.authURL
		n.authURL = *u
		n.mu.Unlock()
		if fresh {
			n.ulogf.logf("tailnet node %q needs a login: visit %s", n.cfg.Hostname, *u)
		}
	}
	if note.SelfChange != nil {
		n.setTailnet(note.SelfChange.Name)
	}
	if note.SelfChange != nil && n.selfIdentityChanged(note.SelfChange) {
		// Our own addresses or identity moved: answers computed towards
		// the old ones may not hold.
		n.cache.flush()
	}
	n.cache.profilesChanged(note.UserProfiles)
	n.cache.peersChanged(note.PeersChanged)
	n.cache.peersGone(note.PeersRemoved, true)
	var patched []tailcfg.NodeID
	for _, pc := range note.PeerChangedPatch {
		if !identityNeutral(pc) {
			patched = append(patched, pc.NodeID)
		}
	}
	n.cache.peersGone(patched, false)
}

// selfIdentityChanged reports whether self differs from the last self node
// seen in the fields a WhoIs answer can depend on; endpoint and DERP moves,
// which are frequent, do not count.
func (n *Node) selfIdentityChanged(self *tailcfg.Node) bool {
	id := nodeIdentity(self)
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := n.selfID != "" && id != n.selfID
	n.selfID = id
	return changed
}

// setTailnet records the tailnet of the node's own MagicDNS name.
func (n *Node) setTailnet(fqdn string) {
	_, suffix, _ := strings.Cut(strings.TrimSuffix(fqdn, "."), ".")
	if suffix == "" {
		return
	}
	n.tailnet.Store(&suffix)
}

// Tailnet returns the MagicDNS suffix of the node's own tailnet, such as
// "tail1234.ts.net": what WhoIs.Tailnet is for the node's own peers, and is
// not for devices of a tailnet the node was shared into. It is "" with an
// error when the node cannot tell (not running, or its name has no suffix);
// a caller deciding on it must then treat every peer as foreign.
func (n *Node) Tailnet(ctx context.Context) (string, error) {
	if t := n.tailnet.Load(); t != nil {
		return *t, nil
	}
	st, err := n.selfStatus(ctx)
	if err != nil {
		return "", err
	}
	if st.Self != nil {
		n.setTailnet(st.Self.DNSName)
	}
	t := n.tailnet.Load()
	if t == nil {
		return "", fmt.Errorf("%v: its name has no tailnet suffix", n)
	}
	return *t, nil
}

// policyPoll is how often the node looks for a new packet filter while
// OnPolicyChange has watchers. tailscale.com v1.102.5 announces no
// filter-only change on the IPN bus, so it is polled: one atomic load.
const policyPoll = 200 * time.Millisecond

// OnPolicyChange calls f, on a goroutine of the node's, after each change
// that may alter a WhoIs answer: a new packet filter (capability grants), a
// peer whose identity changed or that left, a renamed owner, a change of the
// node itself, or the loss of the IPN bus watch. Calls for one change may
// be merged; f must be quick or hand off. The returned function stops the
// calls. While any f is registered the node checks for a new packet filter
// every 200 ms; with none, it does nothing.
func (n *Node) OnPolicyChange(f func()) (stop func()) {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	if n.watchFns == nil {
		n.watchFns = make(map[int]func())
	}
	id := n.watchNext
	n.watchNext++
	n.watchFns[id] = f
	if n.watchCancel == nil {
		// Not one of n.watchers: it ends with n.closing, and may start
		// while Close waits for them.
		ctx, cancel := context.WithCancel(n.closing)
		n.watchCancel = cancel
		go n.pollPolicy(ctx)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			n.watchMu.Lock()
			defer n.watchMu.Unlock()
			delete(n.watchFns, id)
			if len(n.watchFns) == 0 && n.watchCancel != nil {
				n.watchCancel()
				n.watchCancel = nil
			}
		})
	}
}

// pollPolicy calls the OnPolicyChange watchers when the packet filter or
// the count of announced changes moves, until ctx ends.
func (n *Node) pollPolicy(ctx context.Context) {
	t := time.NewTicker(policyPoll)
	defer t.Stop()
	policy, changes := n.cache.currentPolicy(), n.cache.changes.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p, c := n.cache.currentPolicy(), n.cache.changes.Load()
		if p == policy && c == changes {
			continue
		}
		policy, changes = p, c
		n.watchMu.Lock()
		fns := make([]func(), 0, len(n.watchFns))
		for _, f := range n.watchFns {
			fns = append(fns, f)
		}
		n.watchMu.Unlock()
		for _, f := range fns {
			f()
		}
	}
}

// Listen returns a listener on the node's tailnet addresses only, such as
// Listen("tcp", ":443"). It starts the node if needed but does not wait for
// it to be Running; connections arrive once it is.
func (n *Node) Listen(network, addr string) (net.Listener, error) {
	srv, err := n.launch()
	if err != nil {
		return nil, err
	}
	ln, err := srv.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("%v: listening on %s %s: %w", n, network, addr, err)
	}
	return ln, nil
}

// WhoIs identifies the tailnet peer at remoteAddr ("ip:port", as in
// http.Request.RemoteAddr). Answers are cached per peer IP until the peer
// changes (key, name, owner, tags, node attributes) or leaves, its owner's
// profile changes, the node itself changes, or the node installs a new
// packet filter — which is how control delivers a changed capability grant
// (Caps) — and at most 30 seconds; errors are never cached. The answer is
// shared with the cache and must not be modified (Clone it to edit).
func (n *Node) WhoIs(ctx context.Context, remoteAddr string) (*WhoIs, error) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return nil, fmt.Errorf("whois %q: %w", remoteAddr, err)
	}
	ip := ap.Addr().Unmap()
	// The cache first, without the node's lock: it holds answers only while
	// the node runs and its IPN bus is watched, and is flushed when either
	// stops.
	who, lk := n.cache.get(ip)
	if who != nil {
		return who, nil
	}
	srv, err := n.server()
	if err != nil {
		return nil, err
	}
	lc, err := srv.LocalClient()
	if err != nil {
		return nil, fmt.Errorf("whois %s: %w", ip, err)
	}
	res, err := lc.WhoIs(ctx, remoteAddr)
	if err != nil {
		return nil, fmt.Errorf("whois %s: %w", ip, err)
	}
	if res.Node == nil || res.UserProfile == nil {
		return nil, fmt.Errorf("whois %s: incomplete answer from LocalAPI", ip)
	}
	who = whoIsFromResponse(res)
	n.cache.put(ip, lk, who, res.Node, res.Node.User)
	return who, nil
}

// WhoIsCacheStats reports how the WhoIs cache has been used.
func (n *Node) WhoIsCacheStats() WhoIsCacheStats {
	return n.cache.snapshot()
}

// TailnetIPs returns the node's tailnet addresses, IPv4 first; none before
// the node has joined.
func (n *Node) TailnetIPs() []netip.Addr {
	srv, err := n.server()
	if err != nil {
		return nil
	}
	var ips []netip.Addr
	v4, v6 := srv.TailscaleIPs()
	for _, ip := range []netip.Addr{v4, v6} {
		if ip.IsValid() {
			ips = append(ips, ip)
		}
	}
	return ips
}

// selfStatus reads the node's own status (no peers) from its LocalAPI.
func (n *Node) selfStatus(ctx context.Context) (*ipnstate.Status, error) {
	srv, err := n.server()
	if err != nil {
		return nil, err
	}
	lc, err := srv.LocalClient()
	if err != nil {
		return nil, fmt.Errorf("%v: %w", n, err)
	}
	st, err := lc.StatusWithoutPeers(ctx)
	if err != nil {
		return nil, fmt.Errorf("%v: reading status: %w", n, err)
	}
	return st, nil
}

// CertDomains returns the DNS names the node can get certificates for, such
// as "gw.tail1234.ts.net". When the tailnet offers none, the error wraps
// ErrHTTPSDisabled and says how to turn certificates on.
func (n *Node) CertDomains(ctx context.Context) ([]string, error) {
	st, err := n.selfStatus(ctx)
	if err != nil {
		return nil, err
	}
	if st.BackendState != ipn.Running.String() {
		return nil, fmt.Errorf("%v: not running (state %s)", n, st.BackendState)
	}
	if st.CurrentTailnet == nil || !st.CurrentTailnet.MagicDNSEnabled {
		return nil, fmt.Errorf("%v: %w: MagicDNS is off; %s", n, ErrHTTPSDisabled, httpsHelp)
	}
	if len(st.CertDomains) == 0 {
		return nil, fmt.Errorf("%v: %w: the tailnet offers no certificate domains; %s", n, ErrHTTPSDisabled, httpsHelp)
	}
	return slices.Clone(st.CertDomains), nil
}

// GetCertificate returns the node's certificate for hello's server name, for
// use as tls.Config.GetCertificate. Tailscale's LocalAPI obtains and renews
// it (Let's Encrypt through the control server's DNS-01 support). When it
// fails because the tailnet has HTTPS off, the error says so and how to fix
// it.
func (n *Node) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	srv, err := n.server()
	if err != nil {
		return nil, err
	}
	lc, err := srv.LocalClient()
	if err != nil {
		return nil, fmt.Errorf("%v: %w", n, err)
	}
	name := ""
	if hello != nil {
		name = hello.ServerName
	}
	cert, err := lc.GetCertificate(hello)
	if err == nil {
		return cert, nil
	}
	ctx := context.Background()
	if hello != nil && hello.Context() != nil {
		ctx = hello.Context()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	domains, derr := n.CertDomains(ctx)
	if derr != nil {
		return nil, fmt.Errorf("getting certificate for %q: %w", name, derr)
	}
	return nil, fmt.Errorf("getting certificate for %q from %v (its certificate domains: %v): %w", name, n, domains, err)
}

// HTTPClient returns a client whose connections go over the tailnet. It
// fails its requests until the node has been started.
func (n *Node) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: n.dial}}
}

// Dial opens a connection over the tailnet, never the host network; addr may
// name a peer by its MagicDNS name. It fails until the node has been started.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.dial(ctx, network, addr)
}

func (n *Node) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	srv, err := n.server()
	if err != nil {
		return nil, err
	}
	return srv.Dial(ctx, network, addr)
}

// Close shuts the node down and returns once it has: listeners closed, the
// backend stopped, state written. It is idempotent; concurrent callers all
// wait for the same shutdown.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancelClose()
		n.mu.Lock()
		n.closed = true
		srv := n.srv
		n.mu.Unlock()
		// WhoIs answers from the cache without the lock: empty it now (the
		// watcher disables it again when it stops).
		n.cache.setEnabled(false)
		if srv != nil {
			// tsnet's Close can block forever when many TCP connections are
			// open (tailscale.com v1.102.5 queues a reset per connection into
			// an outbound queue it has stopped draining; seen above ~512), and
			// a stuck node must not stop Caddy from stopping or reloading.
			closed := make(chan struct{})
			go func() {
				srv.Close()
				close(closed)
			}()
			select {
			case <-closed:
			case <-time.After(closeTimeout):
				n.logf.logf("tailnet node %q did not finish closing within %v; giving up on it", n.cfg.Hostname, closeTimeout)
			}
		}
		n.watchers.Wait()
		close(n.done)
	})
	<-n.done
	return nil
}

// closeTimeout bounds how long Close waits for tsnet to shut down.
var closeTimeout = 20 * time.Second

// Done is closed once the node has completely shut down.
func (n *Node) Done() <-chan struct{} {
	return n.done
}

// Status is a node's state as `caddy clawgate doctor` reports it.
type Status struct {
	// State is Tailscale's backend state: Running, NeedsLogin,
	// NeedsMachineAuth, Starting, Stopped, or NoState before it started.
	State string `json:"state"`
	// AuthURL is the login URL while the node waits for a login.
	AuthURL string `json:"auth_url,omitempty"`
	// DNSName is the node's MagicDNS name, without the trailing dot.
	DNSName string `json:"dns_name,omitempty"`
	// Tailnet is the tailnet's MagicDNS suffix; empty with MagicDNS off.
	Tailnet string `json:"tailnet,omitempty"`
	// IPs are the node's tailnet addresses.
	IPs []netip.Addr `json:"ips,omitempty"`
	// CertDomains are the names the node can get certificates for; none
	// when the tailnet has HTTPS certificates off.
	CertDomains []string `json:"cert_domains,omitempty"`
	// Error says why the state could not be read.
	Error string `json:"error,omitempty"`
}

// Status reads the node's state from its local Tailscale backend.
func (n *Node) Status(ctx context.Context) Status {
	n.mu.Lock()
	authURL := n.authURL
	n.mu.Unlock()
	srv, err := n.server()
	if err != nil {
		return Status{State: "NoState", AuthURL: authURL, Error: err.Error()}
	}
	lc, err := srv.LocalClient()
	if err != nil {
		return Status{State: "NoState", AuthURL: authURL, Error: err.Error()}
	}
	st, err := lc.StatusWithoutPeers(ctx)
	if err != nil {
		return Status{State: "NoState", AuthURL: authURL, Error: fmt.Sprintf("reading status: %v", err)}
	}
	s := Status{State: st.BackendState, IPs: st.TailscaleIPs, CertDomains: slices.Clone(st.CertDomains)}
	if st.BackendState != ipn.Running.String() {
		s.AuthURL = authURL
		if st.AuthURL != "" {
			s.AuthURL = st.AuthURL
		}
	}
	if st.Self != nil {
		s.DNSName = strings.TrimSuffix(st.Self.DNSName, ".")
	}
	if st.CurrentTailnet != nil {
		s.Tailnet = st.CurrentTailnet.MagicDNSSuffix
		if !st.CurrentTailnet.MagicDNSEnabled {
			// Without MagicDNS the names are bare host names.
			s.Tailnet, s.CertDomains = "", nil
		}
	}
	return s
}
