package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/multiproc"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// TestPairingAcrossProcesses runs two instances of one gateway host, each its
// own Caddy process and tailnet node, sharing one Caddy storage and one
// gateway block with `pairing required`, and a front door in a third process
// forwarding alice's device to instance A. The host enforces pairing on the
// forwarded requests with the device its own WhoIs names: the code A shows
// through the front door is approved on B's admin socket and then holds on A;
// a revocation on B closes the device's WebSocket on A and A refuses it
// afterwards.
func TestPairingAcrossProcesses(t *testing.T) {
	suites.SkipShort(t, suites.Processes)
	begin := time.Now()
	tn := tailnettest.New(t)
	door := tn.Config(t, "door", tailnettest.WithTags("tag:door"))
	hostA := tn.Config(t, "host-a", tailnettest.WithTags("tag:gateway-host"))
	hostB := tn.Config(t, "host-b", tailnettest.WithTags("tag:gateway-host"))
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	const port = 18080
	doorURL := fmt.Sprintf("http://door.%s:%d", tailnettest.Domain, port)

	be := newBackend(t)
	cfg, state := gatewayDir(t, "alice@example.com")
	shared := filepath.Join(t.TempDir(), "storage")

	host := func(name, stateDir string) func(p *multiproc.Process) string {
		return func(p *multiproc.Process) string {
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
			tags tag:gateway-host
			front_doors tag:door
		}
		gateway home {
			config %s
			state_dir %s
			pairing required {
				poll_interval 1s
			}
		}
	}
}
http://:%d {
	bind clawgate/%s
	clawgate {
		gateway home
		upstream %s
		allow user:alice@example.com scopes operator.read
	}
	reverse_proxy %s
}
`, p.AdminSocket, shared, name, tn.ControlURL, stateDir, cfg, state, port, name, be.addr(), be.addr())
		}
	}
	procA := multiproc.Start(t, "host-a", host("host-a", hostA.StateDir), multiproc.Options{})
	procB := multiproc.Start(t, "host-b", host("host-b", hostB.StateDir), multiproc.Options{})
	procDoor := multiproc.Start(t, "door", func(p *multiproc.Process) string {
		return fmt.Sprintf(`{
	admin unix/%s
	auto_https off
	clawgate {
		node door {
			control_url %s
			state_dir %s
			ephemeral
			tags tag:door
		}
	}
}
http://:%d {
	bind clawgate/door
	clawgate_remote host-a:%d {
		gateway home
		state_interval 1s
	}
}
`, p.AdminSocket, tn.ControlURL, door.StateDir, port, port)
	}, multiproc.Options{})
	for _, p := range []*multiproc.Process{procA, procB, procDoor} {
		p.WaitLog(t, "node is up on the tailnet", 90*time.Second)
	}
	tn.WaitPeer(t, alice, "door")
	t.Logf("tailnet and three Caddy processes up in %v", time.Since(begin).Round(100*time.Millisecond))

	onB := &pairingFixture{admin: "unix/" + procB.AdminSocket}
	get := func(t *testing.T) (int, http.Header, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", doorURL+"/v1/models", nil)
		req.Header.Set("Accept", "application/json")
		c := alice.HTTPClient()
		defer c.CloseIdleConnections()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("alice through the front door: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, resp.Header, string(b)
	}

	// A audits its gateway once at start and refuses until then; the front
	// door learns A's verdict every state_interval.
	waitDoorGateway(t, procDoor, "home", 60*time.Second, doorGateway.serving)
	status, hdr, body := get(t)
	if status != http.StatusForbidden || !strings.Contains(body, "clawgate_pairing_pending") {
		t.Fatalf("alice's new device through the front door = %d %s, want 403 clawgate_pairing_pending", status, body)
	}
	code := hdr.Get("X-Clawgate-Pairing-Code")
	if code == "" {
		t.Fatal("the pending answer carries no X-Clawgate-Pairing-Code")
	}
	if n := be.count(); n != 0 {
		t.Fatalf("the gateway saw %d request(s) of a device not yet approved", n)
	}

	// B has not necessarily polled the storage yet: approving a code it
	// does not know reads the storage first.
	var out bytes.Buffer
	approved := time.Now()
	if err := runDevicesCommand(&out, onB.admin, "approve", code, "", false); err != nil {
		t.Fatalf("approving %s on B: %v", code, err)
	}
	// The device recorded is the one the host's own WhoIs names, not the
	// front door.
	d := onB.device(t, "alice-laptop")
	if d.Status != "approved" || d.Login != "alice@example.com" || d.IPs == nil || d.IPs[0] != alice.IPs[0].String() {
		t.Fatalf("B's list shows %+v, want alice-laptop approved at %s", d, alice.IPs[0])
	}
	for {
		status, _, body := get(t)
		if status == http.StatusOK {
			break
		}
		if status != http.StatusForbidden || time.Since(approved) > 30*time.Second {
			t.Fatalf("alice after the approval on B = %d %s, want 200 within 30s", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	approvalTook := time.Since(approved)
	got := be.last(t)
	if u := got.Header.Get("X-Forwarded-User"); u != "alice@example.com" {
		t.Errorf("the gateway saw user %q, want alice@example.com", u)
	}
	if xff := got.Header.Get("X-Forwarded-For"); xff != alice.IPs[0].String() {
		t.Errorf("the gateway saw X-Forwarded-For %q, want alice-laptop's %s", xff, alice.IPs[0])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(doorURL, "http")+"/ws", &websocket.DialOptions{HTTPClient: alice.HTTPClient()})
	if err != nil {
		t.Fatalf("alice's WebSocket through the front door: %v", err)
	}
	defer ws.CloseNow()
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "hello alice@example.com" {
		t.Fatalf("alice's WebSocket greeting = %q, %v", msg, err)
	}
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				closed <- err
				return
			}
		}
	}()
	// The WebSocket stays open while the device is approved.
	select {
	case err := <-closed:
		t.Fatalf("alice's WebSocket closed before any revocation: %v", err)
	case <-time.After(3 * time.Second):
	}

	out.Reset()
	revoked := time.Now()
	if err := runDevicesCommand(&out, onB.admin, "revoke", d.ID, "", false); err != nil {
		t.Fatalf("revoking %s on B: %v", d.ID, err)
	}
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("alice's WebSocket through A stayed open 30s after the revocation on B")
	}
	revocationTook := time.Since(revoked)
	before := be.count()
	if status, _, body := get(t); status != http.StatusForbidden || !strings.Contains(body, "clawgate_pairing_pending") {
		t.Errorf("alice after the revocation = %d %s, want 403 clawgate_pairing_pending", status, body)
	}
	if be.count() != before {
		t.Errorf("the gateway saw a request of the revoked device")
	}
	if !strings.Contains(procA.Log(), "alice-laptop") {
		t.Errorf("A's log does not name the device it held")
	}

	t.Logf("approval on B held on A after %v; revocation on B closed the WebSocket on A after %v (poll_interval 1s)",
		approvalTook.Round(10*time.Millisecond), revocationTook.Round(10*time.Millisecond))
	t.Logf("TestPairingAcrossProcesses took %v", time.Since(begin).Round(100*time.Millisecond))
}
