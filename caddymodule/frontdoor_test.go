package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/proxyproto"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// frontDoorFixture is one Caddy running a front door (node door, tagged
// tag:door) and two gateway hosts (nodes alicehost and bobhost, each naming
// tag:door as its front door), on a real in-process tailnet with the
// devices alice-laptop, bob-phone and mallory-pc. Bob's host compresses
// its answers for clients that accept it (`encode gzip`) and tells its
// backend the caller's device in X-Test-Node; alice's is the plain shortcut
// (BenchmarkFrontDoorHops times it).
type frontDoorFixture struct {
	tn                  *tailnettest.Tailnet
	alice, bob, mallory *tailnettest.Node
	beA, beB            *backend
	doorURL             string
	bobHostURL          string // bob's host site, straight
}

const (
	frontDoorPort = 18080
	alicePort     = 18081
	bobPort       = 18082
)

func newFrontDoorFixture(t testing.TB) *frontDoorFixture {
	return newFrontDoorFixtureOn(t, "")
}

// newFrontDoorFixtureOn is newFrontDoorFixture with the front door's site
// bound to the Tailscale Service svc:<service>, hosted by door, instead of
// to door's own name; the tailnet approves door as its host and the devices
// accept routes to reach it. An empty service is newFrontDoorFixture.
func newFrontDoorFixtureOn(t testing.TB, service string) *frontDoorFixture {
	tn := tailnettest.New(t)
	f := &frontDoorFixture{tn: tn, beA: newBackend(t), beB: newBackend(t)}
	doorBind, doorName := "clawgate/door", "door"
	if service != "" {
		doorBind, doorName = serviceNetwork+"/door/"+service, service
	}
	door := tn.Config(t, "door", tailnettest.WithTags("tag:door"))
	aliceHost := tn.Config(t, "alicehost", tailnettest.WithTags("tag:gateway-host"))
	bobHost := tn.Config(t, "bobhost", tailnettest.WithTags("tag:gateway-host"))
	f.alice = tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	f.bob = tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))
	f.mallory = tn.NewNode(t, "mallory-pc", tailnettest.WithLogin("mallory@example.com"))
	f.doorURL = fmt.Sprintf("http://%s.%s:%d", doorName, tailnettest.Domain, frontDoorPort)
	f.bobHostURL = fmt.Sprintf("http://bobhost.%s:%d", tailnettest.Domain, bobPort)
	t.Cleanup(func() { waitNodesClosed(t) }) // after startCaddy's Stop
	global := globalOptions{nodes: []tsnet.Config{door, aliceHost, bobHost},
		lines: map[string]string{"alicehost": "front_doors tag:door", "bobhost": "front_doors tag:door"}}
	startCaddy(t, global.String()+fmt.Sprintf(`http://:%[1]d {
	bind %[6]s
	@alice clawgate_identity user:alice@example.com
	handle @alice {
		clawgate_remote alicehost:%[2]d {
			gateway alice
		}
	}
	@others clawgate_identity tailnet
	handle @others {
		clawgate_remote bobhost:%[3]d {
			gateway bob
		}
	}
}
http://:%[2]d {
	bind clawgate/alicehost
	clawgate %[4]s {
		gateway alice
		allow user:alice@example.com scopes operator.read
	}
}
http://:%[3]d {
	bind clawgate/bobhost
	encode gzip
	clawgate {
		gateway bob
		upstream %[5]s
		allow user:bob@example.com scopes operator.read
	}
	reverse_proxy %[5]s {
		header_up X-Test-Node {clawgate.node}
	}
}
`, frontDoorPort, alicePort, bobPort, f.beA.addr(), f.beB.addr(), doorBind))
	for _, name := range []string{"door", "alicehost", "bobhost"} {
		waitNodeUp(t, name)
	}
	for _, n := range []*tailnettest.Node{f.alice, f.bob, f.mallory} {
		tn.WaitPeer(t, n, "door")
	}
	if service != "" {
		tn.ApproveService(t, "door", service)
		for _, n := range []*tailnettest.Node{f.alice, f.bob, f.mallory} {
			n.AcceptRoutes(t)
			tn.WaitService(t, n, service)
		}
	}
	waitRemotesReachable(t, "alice", "bob")
	return f
}

// waitRemotesReachable waits until the front door's state poll has reached
// the host of each named gateway over the tailnet: a node that has just come
// up may not have its peers in its network map yet.
func waitRemotesReachable(t testing.TB, gateways ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		snap := remoteSnapshot()
		var missing []string
		for _, g := range gateways {
			entry, _ := snap[g].(map[string]any)
			st, _ := entry["remote"].(remoteState)
			if !st.Reachable {
				missing = append(missing, fmt.Sprintf("%s (%s)", g, st.Error))
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the front door never reached the hosts of %v", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tailnetGet(t testing.TB, from *tailnettest.Node, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := from.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, from.Hostname, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestFrontDoorRoutesByIdentity(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	f := newFrontDoorFixture(t)
	f.checkRouting(t)
	t.Run("answers pass through unchanged", f.checkPassThrough)
}

// TestFrontDoorOnService: the front door's site is bound only to the
// Tailscale Service svc:claw, as every instance of a front door on several
// machines is; callers reach their own gateways through claw.<tailnet>, and
// the hosts, naming the front doors by tag, see each caller's own identity.
func TestFrontDoorOnService(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	f := newFrontDoorFixtureOn(t, "claw")
	_, before := serviceSocket("door", "svc:claw", frontDoorPort)
	f.checkRouting(t)
	if _, after := serviceSocket("door", "svc:claw", frontDoorPort); after == before {
		t.Errorf("no connection came through svc:claw's listener on door")
	}
	t.Run("answers pass through unchanged", f.checkPassThrough)
	t.Run("a device cannot forward", f.checkForgery)
}

// checkRouting: alice and bob through the front door reach only their own
// gateways, whose hosts see each caller's own user, device and tailnet
// address; mallory is refused by the host she is routed to; a WebSocket
// works through both hops.
func (f *frontDoorFixture) checkRouting(t *testing.T) {
	t.Helper()
	code, body := tailnetGet(t, f.alice, f.doorURL+"/v1/models")
	if code != http.StatusOK || !strings.Contains(body, `"user":"alice@example.com"`) {
		t.Fatalf("alice through the front door = %d %s, want 200 as alice", code, body)
	}
	got := f.beA.last(t)
	if xff := got.Header.Get("X-Forwarded-For"); xff != f.alice.IPs[0].String() {
		t.Errorf("alice's gateway saw X-Forwarded-For %q, want alice's own tailnet address %s", xff, f.alice.IPs[0])
	}
	if f.beB.count() != 0 {
		t.Errorf("bob's gateway received %d requests meant for alice", f.beB.count())
	}

	aliceSeen := f.beA.count()
	code, body = tailnetGet(t, f.bob, f.doorURL+"/v1/models")
	if code != http.StatusOK || !strings.Contains(body, `"user":"bob@example.com"`) {
		t.Fatalf("bob through the front door = %d %s, want 200 as bob", code, body)
	}
	got = f.beB.last(t)
	if xff := got.Header.Get("X-Forwarded-For"); xff != f.bob.IPs[0].String() {
		t.Errorf("bob's gateway saw X-Forwarded-For %q, want %s", xff, f.bob.IPs[0])
	}
	if dev := got.Header.Get("X-Test-Node"); dev != "bob-phone" {
		t.Errorf("bob's host named the device %q, want bob-phone", dev)
	}
	if n := f.beA.count() - aliceSeen; n != 0 {
		t.Errorf("alice's gateway received %d requests meant for bob", n)
	}

	// mallory is routed to bob's host, whose own rules refuse her: the host
	// looked her up itself.
	code, body = tailnetGet(t, f.mallory, f.doorURL+"/v1/models")
	if code != http.StatusForbidden || !strings.Contains(body, "clawgate_forbidden") {
		t.Errorf("mallory through the front door = %d %s, want bob's host's 403 clawgate_forbidden", code, body)
	}

	// WebSocket, through both hops.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(f.doorURL, "http", "ws", 1)+"/ws", &websocket.DialOptions{HTTPClient: f.alice.HTTPClient()})
	if err != nil {
		t.Fatalf("alice's WebSocket through the front door: %v", err)
	}
	defer c.CloseNow()
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "hello alice@example.com" {
		t.Fatalf("alice's WebSocket greeting = %q, %v", msg, err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err = c.Read(ctx); err != nil || string(msg) != "echo:ping" {
		t.Fatalf("alice's WebSocket echo = %q, %v", msg, err)
	}
}

// checkPassThrough: a caller that sends no Accept-Encoding gets the same
// bytes and headers through the front door as straight from the host. Bob's
// host compresses for clients that ask; a front door that asked on the
// caller's behalf and decompressed would drop the answer's Content-Length.
func (f *frontDoorFixture) checkPassThrough(t *testing.T) {
	type answer struct {
		code                   int
		encoding, length, body string
	}
	get := func(url string) answer {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		client := &http.Client{Transport: &http.Transport{DialContext: f.bob.Dial, DisableCompression: true}}
		defer client.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s from bob-phone: %v", url, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading %s: %v", url, err)
		}
		return answer{resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Length"), string(body)}
	}
	straight := get(f.bobHostURL + "/large")
	if straight.code != http.StatusOK || straight.body != string(largeBody) {
		t.Fatalf("straight from bob's host = %d, %d bytes, want 200 and the backend's %d bytes", straight.code, len(straight.body), len(largeBody))
	}
	through := get(f.doorURL + "/large")
	if through != straight {
		t.Errorf("through the front door: %d, Content-Encoding %q, Content-Length %q, %d bytes; straight from the host: %d, %q, %q, %d bytes",
			through.code, through.encoding, through.length, len(through.body), straight.code, straight.encoding, straight.length, len(straight.body))
	}
}

// TestFrontDoorForgery: a device that is not a front door sends a PROXY
// header straight to a gateway host, claiming to be alice; the host closes
// the connection. The front door's own forwarding headers cannot move the
// address either.
func TestFrontDoorForgery(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	newFrontDoorFixture(t).checkForgery(t)
}

func (f *frontDoorFixture) checkForgery(t *testing.T) {
	f.tn.WaitPeer(t, f.mallory, "alicehost")
	aliceSeen, bobSeen := f.beA.count(), f.beB.count()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := f.mallory.Dial(ctx, "tcp", fmt.Sprintf("alicehost:%d", alicePort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hdr, _ := proxyproto.Append(nil, proxyproto.Header{Command: proxyproto.Proxy, Source: netipAddrPort(f.alice.IPs[0], 1234)})
	_, _ = conn.Write(append(hdr, "GET /v1/models HTTP/1.1\r\nHost: alicehost\r\n\r\n"...))
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	got, _ := io.ReadAll(conn)
	if len(got) != 0 {
		t.Errorf("a PROXY header from mallory-pc got an answer, want the connection closed:\n%s", got)
	}
	if n := f.beA.count() - aliceSeen; n != 0 {
		t.Errorf("alice's gateway received %d requests from a forged header", n)
	}

	// Forwarded headers sent to the front door do not change who the host
	// sees.
	req, _ := http.NewRequestWithContext(ctx, "GET", f.doorURL+"/v1/models", nil)
	req.Header.Set("X-Forwarded-For", f.alice.IPs[0].String())
	req.Header.Set("X-Forwarded-User", "alice@example.com")
	resp, err := f.mallory.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("mallory claiming alice in headers = %d %s, want 403", resp.StatusCode, body)
	}
	if a, b := f.beA.count()-aliceSeen, f.beB.count()-bobSeen; a != 0 || b != 0 {
		t.Errorf("a gateway received mallory's forged headers (alice %d, bob %d requests)", a, b)
	}
}

func TestFrontDoorGatewayState(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	newFrontDoorFixture(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := json.Marshal(remoteSnapshot())
		var snap map[string]struct {
			Remote remoteState `json:"remote"`
		}
		_ = json.Unmarshal(out, &snap)
		if snap["alice"].Remote.Reachable && snap["bob"].Remote.Reachable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the front door never learnt both hosts' state: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func netipAddrPort(ip netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(ip, port) }
