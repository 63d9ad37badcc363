package caddymodule

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"tailscale.com/tailcfg"
	"tailscale.com/types/ipproto"
	"tailscale.com/types/key"

	"github.com/clawgate/clawgate/caddymodule/internal/multiproc"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// Ports of the instances' two sites: the Service's and the node's own.
const (
	serviceSitePort = 8080
	nodeSitePort    = 18080
)

// serviceInstance is one Caddy process hosting svc:claw.
type serviceInstance struct {
	name    string
	proc    *multiproc.Process
	be      *backend
	render  func(adminSocket string, gen int) string
	nodeURL string
}

// TestServiceAcrossProcesses runs two Caddy processes, each its own tagged
// clawgate node, hosting the same Tailscale Service (svc:claw) on the
// in-process tailnet, in front of a loopback gateway each, with device
// pairing required and the approvals in one Caddy storage. It measures the
// time from a process's start to its first 200 through the Service and
// through the node's own name; checks that a device approved or revoked on
// one instance is so on the other whichever instance the Service sends the
// device to; that reloads of both under a stream of requests fail none of
// them; and that a stopping instance ends its WebSockets with a close frame
// and stops advertising the Service. The tailnet is plain HTTP: the
// Service's HTTPS mode needs certificates no offline test can get.
func TestServiceAcrossProcesses(t *testing.T) {
	suites.SkipShort(t, suites.Processes)
	begin := time.Now()
	multiproc.Binary(t) // built before any clock starts
	tn := tailnettest.New(t)
	hostCfg := map[string]string{}
	for _, h := range []string{"host-a", "host-b"} {
		hostCfg[h] = tn.Config(t, h, tailnettest.WithTags("tag:clawgate")).StateDir
	}
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	// probe is auto-approved by the pairing rules: it measures start to
	// serving without an approval step.
	probe := tn.NewNode(t, "probe", tailnettest.WithTags("tag:probe"))
	alice.AcceptRoutes(t)
	probe.AcceptRoutes(t)
	serviceURL := fmt.Sprintf("http://claw.%s:%d", tailnettest.Domain, serviceSitePort)

	cfg, state := gatewayDir(t, "alice@example.com")
	shared := filepath.Join(t.TempDir(), "storage")
	newInstance := func(name string) *serviceInstance {
		in := &serviceInstance{name: name, be: newBackend(t),
			nodeURL: fmt.Sprintf("http://%s.%s:%d", name, tailnettest.Domain, nodeSitePort)}
		in.render = func(adminSocket string, gen int) string {
			site := fmt.Sprintf(`	header X-Instance %s
	header X-Generation %d
	clawgate {
		gateway home
		upstream %s
		allow user:alice@example.com scopes operator.read
		allow tag:probe scopes operator.read
	}
	reverse_proxy %s
`, name, gen, in.be.addr(), in.be.addr())
			return fmt.Sprintf(`{
	admin unix/%s
	auto_https off
	storage file_system %s
	log {
		level INFO
	}
	clawgate {
		node %s {
			control_url %s
			state_dir %s
			ephemeral
			tags tag:clawgate
		}
		gateway home {
			config %s
			state_dir %s
			pairing required {
				auto_approve tag:probe
				poll_interval 1s
			}
		}
	}
}
http://:%d {
	bind clawgate+service/%s/claw
%s}
http://:%d {
	bind clawgate/%s
%s}
`, adminSocket, shared, name, tn.ControlURL, hostCfg[name], cfg, state,
				serviceSitePort, name, site, nodeSitePort, name, site)
		}
		return in
	}
	a, b := newInstance("host-a"), newInstance("host-b")
	start := func(in *serviceInstance) {
		in.proc = multiproc.Start(t, in.name, func(p *multiproc.Process) string {
			return in.render(p.AdminSocket, 1)
		}, multiproc.Options{})
	}

	var serviceTook, nodeTook time.Duration
	if !t.Run("start to serving through the Service and through the node's name", func(t *testing.T) {
		t0 := time.Now()
		start(a)
		// The tailnet approves the host as soon as it has registered, as an
		// autoApprovers rule does.
		approveWhenRegistered(t, tn, "host-a", "claw")
		// A packet sent to a node before its home DERP connection is up is
		// lost, and WireGuard resends its handshake only after 5s: the
		// requests start once a ping crosses.
		tn.WaitPeer(t, probe, "host-a")
		peerTook := time.Since(t0)
		var wg sync.WaitGroup
		var errNode, errService error
		wg.Go(func() { nodeTook, errNode = firstOK(probe, a.nodeURL+"/v1/models", t0, 90*time.Second) })
		wg.Go(func() { serviceTook, errService = firstOK(probe, serviceURL+"/v1/models", t0, 90*time.Second) })
		wg.Wait()
		if errNode != nil {
			t.Fatalf("through host-a's own name: %v", errNode)
		}
		if errService != nil {
			t.Fatalf("through the Service: %v", errService)
		}
		t.Logf("host-a from start: a peer on the tailnet after %v; first 200 through its own name after %v, through the Service after %v (ratio %.2f)",
			peerTook.Round(time.Millisecond), nodeTook.Round(time.Millisecond), serviceTook.Round(time.Millisecond), float64(serviceTook)/float64(nodeTook))

		start(b)
		approveWhenRegistered(t, tn, "host-b", "claw")
		if _, err := firstOK(probe, b.nodeURL+"/v1/models", time.Now(), 90*time.Second); err != nil {
			t.Fatalf("through host-b's own name: %v", err)
		}
		for _, in := range []*serviceInstance{a, b} {
			in.proc.WaitLog(t, "the tailnet approved this node as a host of the Tailscale Service", 60*time.Second)
		}
	}) {
		t.FailNow()
	}
	tn.WaitService(t, alice, "claw")
	instances := map[string]*serviceInstance{a.name: a, b.name: b}

	// The Service sends alice to one instance (the answering one); the
	// other is reached by its own name.
	var answering, other *serviceInstance
	if !t.Run("an approval made on one instance holds on the other", func(t *testing.T) {
		r := mustGet(t, alice, serviceURL+"/v1/models")
		answering = instances[r.header.Get("X-Instance")]
		if answering == nil {
			t.Fatalf("the Service's answer names no instance: %d %v %s", r.status, r.header, r.body)
		}
		other = a
		if answering == a {
			other = b
		}
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "clawgate_pairing_pending") {
			t.Fatalf("alice's new device through the Service = %d %s, want 403 clawgate_pairing_pending", r.status, r.body)
		}
		code := r.header.Get("X-Clawgate-Pairing-Code")
		if code == "" {
			t.Fatal("the pending answer carries no X-Clawgate-Pairing-Code")
		}
		var out bytes.Buffer
		approved := time.Now()
		if err := runDevicesCommand(&out, "unix/"+other.proc.AdminSocket, "approve", code, "", false); err != nil {
			t.Fatalf("approving %s on %s: %v", code, other.name, err)
		}
		took, err := firstOK(alice, serviceURL+"/v1/models", approved, 30*time.Second)
		if err != nil {
			t.Fatalf("alice through the Service after the approval on %s: %v", other.name, err)
		}
		if r := mustGet(t, alice, serviceURL+"/v1/models"); r.header.Get("X-Instance") != answering.name {
			t.Fatalf("the Service now sends alice to %s, not %s", r.header.Get("X-Instance"), answering.name)
		}
		got := answering.be.last(t)
		if u := got.Header.Get("X-Forwarded-User"); u != "alice@example.com" {
			t.Errorf("%s's gateway saw user %q through the Service, want alice@example.com", answering.name, u)
		}
		if xff := got.Header.Get("X-Forwarded-For"); xff != alice.IPs[0].String() {
			t.Errorf("%s's gateway saw X-Forwarded-For %q through the Service, want alice-laptop's %s", answering.name, xff, alice.IPs[0])
		}
		if r := mustGet(t, alice, other.nodeURL+"/v1/models"); r.status != http.StatusOK {
			t.Errorf("alice at %s's own name after the approval there = %d %s", other.name, r.status, r.body)
		}
		t.Logf("the Service sends alice to %s; the approval on %s held there after %v (poll_interval 1s)",
			answering.name, other.name, took.Round(10*time.Millisecond))
	}) {
		t.FailNow()
	}

	t.Run("reloads of both instances under load fail no request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		ws, _ := openGreetedWS(t, ctx, alice, serviceURL)
		defer ws.CloseNow()
		wsEnded := readUntilClosed(ctx, ws)

		var total, failed atomic.Int64
		var lastGen atomic.Int64
		var failMu sync.Mutex
		var failures []string
		stop := make(chan struct{})
		var workers sync.WaitGroup
		for range 4 {
			workers.Go(func() {
				c := alice.HTTPClient()
				defer c.CloseIdleConnections()
				for {
					select {
					case <-stop:
						return
					default:
					}
					r, err := fetchReply(c, serviceURL+"/v1/models", 30*time.Second)
					total.Add(1)
					if err != nil || r.status != http.StatusOK {
						failed.Add(1)
						failMu.Lock()
						if len(failures) < 5 {
							failures = append(failures, fmt.Sprintf("%d %v %.200s", r.status, err, r.body))
						}
						failMu.Unlock()
						continue
					}
					var g int64
					fmt.Sscan(r.header.Get("X-Generation"), &g)
					for {
						old := lastGen.Load()
						if g <= old || lastGen.CompareAndSwap(old, g) {
							break
						}
					}
				}
			})
		}
		const reloads = 3
		for gen := 2; gen <= reloads+1; gen++ {
			for _, in := range []*serviceInstance{answering, other} {
				reloadInstance(t, in, gen)
			}
			deadline := time.Now().Add(30 * time.Second)
			for lastGen.Load() < int64(gen) {
				if time.Now().After(deadline) {
					t.Fatalf("no answer of generation %d through the Service 30s after the reload", gen)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		time.Sleep(500 * time.Millisecond)
		close(stop)
		workers.Wait()
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests through the Service failed during %d reloads of each instance: %q", failed.Load(), total.Load(), reloads, failures)
		}
		if total.Load() < 20 {
			t.Errorf("only %d requests went through during the reloads", total.Load())
		}
		// Caddy ends the WebSockets of the config it replaces with its own
		// going-away close frame.
		select {
		case end := <-wsEnded:
			if got := websocket.CloseStatus(end.err); got != websocket.StatusGoingAway {
				t.Errorf("a WebSocket through the Service during the reloads ended with %v (close status %v), want a 1001 close frame", end.err, got)
			}
		case <-time.After(30 * time.Second):
			t.Error("a WebSocket through the Service stayed open through the reloads")
		}
		t.Logf("%d reloads of each instance under load: %d requests through the Service, %d failed", reloads, total.Load(), failed.Load())
	})

	t.Run("a revocation made on one instance closes the device's WebSockets on both", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		viaService, holderName := openGreetedWS(t, ctx, alice, serviceURL)
		defer viaService.CloseNow()
		// The revocation is made on the instance that does not hold the
		// Service's WebSocket, which also holds one by its own name.
		holder, other := instances[holderName], a
		if holder == nil {
			t.Fatalf("the Service's WebSocket names no instance (%q)", holderName)
		}
		if holder == a {
			other = b
		}
		viaOther, _ := openGreetedWS(t, ctx, alice, other.nodeURL)
		defer viaOther.CloseNow()
		endService, endOther := readUntilClosed(ctx, viaService), readUntilClosed(ctx, viaOther)

		d := (&pairingFixture{admin: "unix/" + other.proc.AdminSocket}).device(t, "alice-laptop")
		var out bytes.Buffer
		revoked := time.Now()
		if err := runDevicesCommand(&out, "unix/"+other.proc.AdminSocket, "revoke", d.ID, "", false); err != nil {
			t.Fatalf("revoking %s on %s: %v", d.ID, other.name, err)
		}
		took := map[string]time.Duration{}
		for name, ch := range map[string]<-chan wsEnd{holder.name + " (through the Service)": endService, other.name + " (by its own name)": endOther} {
			select {
			case end := <-ch:
				took[name] = end.at.Sub(revoked).Round(time.Millisecond)
			case <-time.After(30 * time.Second):
				t.Errorf("alice's WebSocket on %s stayed open 30s after the revocation on %s", name, other.name)
			}
		}
		before := holder.be.count()
		if r := mustGet(t, alice, serviceURL+"/v1/models"); r.status != http.StatusForbidden || !strings.Contains(r.body, "clawgate_pairing_pending") {
			t.Errorf("alice through the Service after the revocation = %d %s, want 403 clawgate_pairing_pending", r.status, r.body)
		}
		if holder.be.count() != before {
			t.Errorf("%s's gateway saw a request of the revoked device", holder.name)
		}
		t.Logf("revocation on %s closed alice's WebSockets after %v", other.name, took)

		// Approved again, on the holder instance this time.
		r := mustGet(t, alice, serviceURL+"/v1/models")
		code := r.header.Get("X-Clawgate-Pairing-Code")
		if err := runDevicesCommand(&out, "unix/"+holder.proc.AdminSocket, "approve", code, "", false); err != nil {
			t.Fatalf("approving %s on %s: %v", code, holder.name, err)
		}
		if _, err := firstOK(alice, other.nodeURL+"/v1/models", time.Now(), 30*time.Second); err != nil {
			t.Fatalf("alice at %s after the approval on %s: %v", other.name, holder.name, err)
		}
	})

	t.Run("a stopping instance closes its WebSockets with a close frame and stops advertising", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		viaService, holderName := openGreetedWS(t, ctx, alice, serviceURL)
		defer viaService.CloseNow()
		holder := instances[holderName]
		if holder == nil {
			t.Fatalf("the Service's WebSocket names no instance (%q)", holderName)
		}
		viaNode, _ := openGreetedWS(t, ctx, alice, holder.nodeURL)
		defer viaNode.CloseNow()
		endService, endNode := readUntilClosed(ctx, viaService), readUntilClosed(ctx, viaNode)

		key, ok := registeredNodeKey(tn, holder.name)
		if !ok {
			t.Fatalf("no node key for %s", holder.name)
		}
		serving := servicesHash(&tailcfg.VIPService{Name: "svc:claw", Active: true,
			Ports: []tailcfg.ProtoPortRange{{Proto: int(ipproto.TCP), Ports: tailcfg.PortRange{First: serviceSitePort, Last: serviceSitePort}}}})
		withdrawn := servicesHash(&tailcfg.VIPService{Name: "svc:claw", Active: false})
		if h := tn.Control.Node(key).Hostinfo.ServicesHash(); h != serving {
			t.Fatalf("before it stops, the control server sees %s advertise services hashed %q, want %q (svc:claw active on port %d)", holder.name, h, serving, serviceSitePort)
		}
		stopped := time.Now()
		holder.proc.Stop(t)
		stopTook := time.Since(stopped)
		ended := map[string]time.Duration{}
		for name, ch := range map[string]<-chan wsEnd{"through the Service": endService, "through the node's own name": endNode} {
			select {
			case end := <-ch:
				ended[name] = end.at.Sub(stopped).Round(time.Millisecond)
				if got := websocket.CloseStatus(end.err); got != websocket.StatusGoingAway {
					t.Errorf("alice's WebSocket %s ended with %v (close status %v), want a 1001 close frame", name, end.err, got)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("alice's WebSocket %s stayed open 30s after %s stopped", name, holder.name)
			}
		}
		// tsnet withdraws the advertisement (svc:claw no longer active)
		// and keeps the Service's now empty entry in its serve config.
		if h := tn.Control.Node(key).Hostinfo.ServicesHash(); h != withdrawn && h != "" {
			t.Errorf("after %s stopped, the control server sees it advertise services hashed %q, want %q (svc:claw not active) or none", holder.name, h, withdrawn)
		}
		if !strings.Contains(holder.proc.Log(), "going-away close frame") {
			t.Errorf("%s did not log the WebSockets it closed", holder.name)
		}
		t.Logf("%s stopped in %v; alice's WebSockets ended after %v", holder.name, stopTook.Round(time.Millisecond), ended)
	})
	t.Logf("TestServiceAcrossProcesses took %v", time.Since(begin).Round(100*time.Millisecond))
}

// servicesHash is the hash a node reports in Hostinfo.ServicesHash for the
// Services it lists (tailscale.com/ipn/ipnlocal's vipServiceHash): the
// control server fetches the list itself when the hash changes.
func servicesHash(services ...*tailcfg.VIPService) string {
	h := sha256.New()
	if err := json.NewEncoder(h).Encode(services); err != nil {
		panic(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// registeredNodeKey returns the node key of the node named host, once it
// has registered with the control server.
func registeredNodeKey(tn *tailnettest.Tailnet, host string) (key.NodePublic, bool) {
	for _, n := range tn.Control.AllNodes() {
		if n.Hostinfo.Valid() && n.Hostinfo.Hostname() == host {
			return n.Key, true
		}
	}
	return key.NodePublic{}, false
}

// approveWhenRegistered approves the node named host as a host of service
// once the node has registered, in the background.
func approveWhenRegistered(t *testing.T, tn *tailnettest.Tailnet, host, service string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, ok := registeredNodeKey(tn, host); ok {
			tn.ApproveService(t, host, service)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never registered with the control server", host)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reply is one HTTP answer.
type reply struct {
	status int
	header http.Header
	body   string
}

func fetchReply(c *http.Client, url string, timeout time.Duration) (reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return reply{resp.StatusCode, resp.Header, string(b)}, err
}

func mustGet(t *testing.T, from *tailnettest.Node, url string) reply {
	t.Helper()
	c := from.HTTPClient()
	defer c.CloseIdleConnections()
	r, err := fetchReply(c, url, 30*time.Second)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", from.Hostname, url, err)
	}
	return r
}

// firstOK asks url from node from until it answers 200, and returns the
// time from since to that answer; it gives up after limit with the last
// answer or error. Each attempt gets a short time: a dial sent before the
// path exists is lost, and waiting for its retransmission would measure
// TCP's backoff instead of the moment the path came up.
func firstOK(from *tailnettest.Node, url string, since time.Time, limit time.Duration) (time.Duration, error) {
	c := from.HTTPClient()
	defer c.CloseIdleConnections()
	deadline := since.Add(limit)
	var last string
	for attempt := 100 * time.Millisecond; time.Now().Before(deadline); attempt = min(attempt+attempt/10, 3*time.Second) {
		r, err := fetchReply(c, url, attempt)
		if err == nil && r.status == http.StatusOK {
			return time.Since(since), nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %.200s", r.status, r.body)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return 0, fmt.Errorf("no 200 from %s within %v; last: %s", url, limit, last)
}

// openGreetedWS opens from's WebSocket to base+"/ws", reads its greeting,
// and returns it with the name of the instance that answered.
func openGreetedWS(t *testing.T, ctx context.Context, from *tailnettest.Node, base string) (*websocket.Conn, string) {
	t.Helper()
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", &websocket.DialOptions{HTTPClient: from.HTTPClient()})
	if err != nil {
		t.Fatalf("%s: WebSocket to %s: %v", from.Hostname, base, err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || !strings.HasPrefix(string(msg), "hello ") {
		t.Fatalf("%s: WebSocket greeting from %s = %q, %v", from.Hostname, base, msg, err)
	}
	return ws, resp.Header.Get("X-Instance")
}

// wsEnd is how and when a WebSocket ended.
type wsEnd struct {
	err error
	at  time.Time
}

// readUntilClosed reads ws in the background and delivers the error that
// ended it.
func readUntilClosed(ctx context.Context, ws *websocket.Conn) <-chan wsEnd {
	ch := make(chan wsEnd, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				ch <- wsEnd{err, time.Now()}
				return
			}
		}
	}()
	return ch
}

// reloadInstance rewrites the instance's Caddyfile for generation gen and loads it
// with `caddy reload` through its admin socket, as a user does.
func reloadInstance(t *testing.T, in *serviceInstance, gen int) {
	t.Helper()
	path := filepath.Join(in.proc.Dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(in.render(in.proc.AdminSocket, gen)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(multiproc.Binary(t), "reload", "--config", path, "--adapter", "caddyfile", "--address", "unix/"+in.proc.AdminSocket)
	cmd.Env = append(os.Environ(), "HOME="+filepath.Join(in.proc.Dir, "home"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload of %s (generation %d): %v\n%s", in.name, gen, err, out)
	}
}

// TestServiceRealOpenClawWebSockets puts the real OpenClaw behind a Caddy
// process hosting svc:claw and holds a gateway session through the Service,
// as the Control UI does: a reload ends the session with Caddy's going-away
// close frame and a new one connects at once; stopping the process ends it
// with clawgate's. The Control UI reconnects after any close of a session
// that had connected; what it must not meet is silence, which it notices
// only when two tick intervals pass without a frame.
func TestServiceRealOpenClawWebSockets(t *testing.T) {
	suites.SkipShort(t, suites.Processes)
	openclawtest.Require(t)
	begin := time.Now()
	tn := tailnettest.New(t)
	host := tn.Config(t, "host-a", tailnettest.WithTags("tag:clawgate"))
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	alice.AcceptRoutes(t)
	serviceURL := fmt.Sprintf("http://claw.%s:%d", tailnettest.Domain, serviceSitePort)

	ocPort := openclawtest.FreePort(t)
	// OpenClaw would grant alice admin too: the scopes she ends up with are
	// the cap of clawgate's rule.
	ocCfg := aliceTrustedProxyConfig(t, ocPort, []string{"operator.read", "operator.write", "operator.admin"}, serviceURL)
	oc := openclawtest.Start(t, ocCfg, ocPort)

	render := func(adminSocket string, scopes string) string {
		return fmt.Sprintf(`{
	admin unix/%s
	auto_https off
	clawgate {
		node host-a {
			control_url %s
			state_dir %s
			ephemeral
			tags tag:clawgate
		}
		gateway home {
			config %s
			state_dir %s
			upstream 127.0.0.1:%d
			origins %s
		}
	}
}
http://:%d {
	bind clawgate+service/host-a/claw
	clawgate 127.0.0.1:%d {
		gateway home
		allow user:alice@example.com scopes %s
	}
}
`, adminSocket, tn.ControlURL, host.StateDir, oc.ConfigPath(), oc.StateDir(), ocPort, serviceURL, serviceSitePort, ocPort, scopes)
	}
	proc := multiproc.Start(t, "host-a", func(p *multiproc.Process) string {
		return render(p.AdminSocket, "operator.read,operator.write")
	}, multiproc.Options{})
	approveWhenRegistered(t, tn, "host-a", "claw")
	proc.WaitLog(t, "the tailnet approved this node as a host of the Tailscale Service", 60*time.Second)
	tn.WaitPeer(t, alice, "host-a")
	tn.WaitService(t, alice, "claw")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// session connects to OpenClaw through the Service and returns the
	// session with the scopes the gateway granted, retrying while the
	// gate's first audit is under way.
	session := func() (*openclawtest.Client, []string) {
		t.Helper()
		hc := alice.HTTPClient()
		deadline := time.Now().Add(60 * time.Second)
		for {
			c, err := openclawtest.Dial(ctx, hc, "ws"+strings.TrimPrefix(serviceURL, "http")+"/", nil)
			if err == nil {
				hello, err := c.Connect(ctx, []string{"operator.read", "operator.write", "operator.admin"}, "")
				if err != nil {
					t.Fatalf("connect through the Service: %v", err)
				}
				if hello.Auth.Method != "trusted-proxy" {
					t.Errorf("hello-ok auth method %q through the Service, want trusted-proxy", hello.Auth.Method)
				}
				return c, sorted(hello.Auth.Scopes)
			}
			if !openclawtest.IsRefusal(err, http.StatusServiceUnavailable) || time.Now().After(deadline) {
				t.Fatalf("WebSocket to OpenClaw through the Service: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	ended := func(c *openclawtest.Client) <-chan wsEnd {
		ch := make(chan wsEnd, 1)
		go func() { ch <- wsEnd{c.WaitClosed(ctx), time.Now()} }()
		return ch
	}
	wantClose := func(what string, ch <-chan wsEnd, since time.Time, reason string) time.Duration {
		t.Helper()
		select {
		case end := <-ch:
			var ce websocket.CloseError
			if !errors.As(end.err, &ce) || ce.Code != websocket.StatusGoingAway || !strings.Contains(ce.Reason, reason) {
				t.Errorf("the OpenClaw session %s ended with %v, want a 1001 close frame (reason %q)", what, end.err, reason)
			}
			return end.at.Sub(since)
		case <-time.After(30 * time.Second):
			t.Fatalf("the OpenClaw session stayed open 30s %s", what)
		}
		return 0
	}

	c, scopes := session()
	defer c.Close()
	if !slices.Equal(scopes, []string{"operator.read", "operator.write"}) {
		t.Errorf("scopes through the Service = %q, want the rule's [operator.read operator.write]", scopes)
	}
	first := ended(c)

	// A reload that narrows alice's scopes: Caddy ends the old config's
	// sessions, and the new session gets the new cap.
	path := filepath.Join(proc.Dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(render(proc.AdminSocket, "operator.read")), 0o600); err != nil {
		t.Fatal(err)
	}
	reloaded := time.Now()
	cmd := exec.Command(multiproc.Binary(t), "reload", "--config", path, "--adapter", "caddyfile", "--address", "unix/"+proc.AdminSocket)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
	reloadClose := wantClose("across a reload", first, reloaded, "")
	again, scopes := session()
	defer again.Close()
	reconnected := time.Since(reloaded)
	if !slices.Equal(scopes, []string{"operator.read"}) {
		t.Errorf("scopes through the Service after the reload = %q, want [operator.read]", scopes)
	}

	second := ended(again)
	stopped := time.Now()
	proc.Stop(t)
	stopClose := wantClose("when its instance stops", second, stopped, goingAwayReason)
	t.Logf("real OpenClaw session through the Service: closed %v after a reload began (1001, Caddy's), a new one connected after %v; closed %v after the stop began (1001 %q)",
		reloadClose.Round(time.Millisecond), reconnected.Round(time.Millisecond), stopClose.Round(time.Millisecond), goingAwayReason)
	t.Logf("TestServiceRealOpenClawWebSockets took %v", time.Since(begin).Round(100*time.Millisecond))
}
