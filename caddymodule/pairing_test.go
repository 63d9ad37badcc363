package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/coder/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"tailscale.com/tailcfg"

	"github.com/clawgate/clawgate/caddymodule/internal/pairing"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

const deviceCap = "example.com/cap/openclaw-device"

// pairingFixture is a real tailnet and a real Caddy whose gateway "home"
// requires device pairing, with the admin endpoint on loopback, Caddy's file
// storage in a directory of the test's own (polled every second), and
// clawgate's log written to a file as JSON.
type pairingFixture struct {
	tn                                    *tailnettest.Tailnet
	be                                    *backend
	alice, phone, bob, trusted, ci, carol *tailnettest.Node
	admin, storage, logPath, siteURL      string
	cfg                                   []byte
}

func newPairingFixture(t *testing.T) *pairingFixture {
	begin := time.Now()
	f := &pairingFixture{tn: tailnettest.New(t), be: newBackend(t)}
	gw := f.tn.Config(t, "gw")
	f.alice = f.tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	f.phone = f.tn.NewNode(t, "alice-phone", tailnettest.WithLogin("alice@example.com"))
	f.bob = f.tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))
	f.trusted = f.tn.NewNode(t, "trusted-bot", tailnettest.WithTags("tag:trusted"))
	f.ci = f.tn.NewNode(t, "ci-bot", tailnettest.WithTags("tag:ci"))
	f.carol = f.tn.NewNode(t, "carol-desk", tailnettest.WithLogin("carol@example.com"),
		tailnettest.WithCapMap(tailcfg.PeerCapMap{deviceCap: {tailcfg.RawMessage(`{}`)}}))
	cfgPath, stateDir := gatewayDir(t, "alice@example.com", "carol@example.com")
	dir := t.TempDir()
	f.storage = filepath.Join(dir, "storage")
	f.logPath = filepath.Join(dir, "clawgate.log")
	f.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const port = 18080
	f.siteURL = fmt.Sprintf("http://gw.%s:%d", tailnettest.Domain, port)
	gateway := fmt.Sprintf(`gateway home {
	config %s
	state_dir %s
	pairing required {
		auto_approve tag:trusted cap:%s
		poll_interval 1s
	}
}`, cfgPath, stateDir, deviceCap)
	caddyfile := globalOptions{nodes: []tsnet.Config{gw}, admin: f.admin, extra: "storage file_system " + f.storage, clawgate: gateway}.String() + fmt.Sprintf(`http://:%d {
	bind clawgate/gw
	clawgate %s {
		gateway home
		allow user:alice@example.com scopes operator.read,operator.write
		allow user:carol@example.com scopes operator.read
		allow tag:trusted scopes operator.read
		allow tag:ci scopes operator.read
	}
}
`, port, f.be.addr())
	f.cfg = startPairingCaddy(t, caddyfile, f.logPath)
	f.waitGW(t)
	t.Logf("tailnet with 7 nodes and Caddy up in %v", time.Since(begin))
	return f
}

// startPairingCaddy is startCaddyTailnet with clawgate's own log (INFO and
// up) written as JSON to logPath, and a file storage of the test's own when
// the config names none; it returns the loaded config.
func startPairingCaddy(t *testing.T, caddyfile, logPath string) []byte {
	t.Helper()
	t.Cleanup(func() { waitNodesClosed(t) })
	caddyMu.Lock()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		caddyMu.Unlock()
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	var m map[string]any
	if err := json.Unmarshal(quietConfig(t, cfg), &m); err != nil {
		caddyMu.Unlock()
		t.Fatal(err)
	}
	logging, _ := m["logging"].(map[string]any)
	if logging == nil {
		logging = map[string]any{}
	}
	logs, _ := logging["logs"].(map[string]any)
	if logs == nil {
		logs = map[string]any{}
	}
	logs["pairing"] = map[string]any{
		"writer":  map[string]any{"output": "file", "filename": logPath},
		"encoder": map[string]any{"format": "json"},
		"level":   "INFO",
		"include": []string{"clawgate"},
	}
	logging["logs"] = logs
	m["logging"] = logging
	// Caddy's default storage is fixed when the process starts; each test
	// gets its own, so no approval carries over from another test.
	if m["storage"] == nil {
		m["storage"] = map[string]any{"module": "file_system", "root": t.TempDir()}
	}
	if cfg, err = json.Marshal(m); err != nil {
		caddyMu.Unlock()
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		caddyMu.Unlock()
		t.Fatalf("loading Caddy: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
		caddyMu.Unlock()
	})
	return cfg
}

func (f *pairingFixture) waitGW(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for p := nodeByName("gw"); p == nil || len(p.tailnetIPs()) == 0; p = nodeByName("gw") {
		if time.Now().After(deadline) {
			t.Fatal("clawgate node gw never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range []*tailnettest.Node{f.alice, f.phone, f.bob, f.trusted, f.ci, f.carol} {
		f.tn.WaitPeer(t, n, "gw")
	}
}

// answer is one response as a client sees it.
type answer struct {
	status int
	body   string
	header http.Header
}

func (f *pairingFixture) get(t *testing.T, from *tailnettest.Node, accept string) answer {
	t.Helper()
	a, err := f.tryGet(from, accept, 30*time.Second)
	if err != nil {
		t.Fatalf("%s: GET: %v", from.Hostname, err)
	}
	return a
}

func (f *pairingFixture) tryGet(from *tailnettest.Node, accept string, timeout time.Duration) (answer, error) {
	req, err := http.NewRequest("GET", f.siteURL+"/tools/invoke", nil)
	if err != nil {
		return answer{}, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	c := from.HTTPClient()
	c.Timeout = timeout
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(body), resp.Header}, nil
}

// heldError is the JSON a held device gets.
type heldError struct {
	Type, Message, Code, Device, Node, Gateway string
}

func parseHeld(t *testing.T, a answer) heldError {
	t.Helper()
	var v struct{ Error heldError }
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("held answer is not JSON: %v: %q", err, a.body)
	}
	return v.Error
}

// mustBeHeld checks that from is held as pending and that the gateway saw
// nothing, and returns what the device was told.
func (f *pairingFixture) mustBeHeld(t *testing.T, from *tailnettest.Node) heldError {
	t.Helper()
	before := f.be.count()
	a := f.get(t, from, "")
	if a.status != http.StatusForbidden {
		t.Fatalf("%s: status %d, want 403: %s", from.Hostname, a.status, a.body)
	}
	h := parseHeld(t, a)
	if h.Type != "clawgate_pairing_pending" || h.Code == "" || h.Gateway != "home" || h.Node != from.Hostname {
		t.Fatalf("%s: held answer %+v", from.Hostname, h)
	}
	if a.header.Get("X-Clawgate-Pairing-Code") != h.Code {
		t.Errorf("%s: X-Clawgate-Pairing-Code %q, body code %q", from.Hostname, a.header.Get("X-Clawgate-Pairing-Code"), h.Code)
	}
	if f.be.count() != before {
		t.Fatalf("%s: the gateway saw a held request", from.Hostname)
	}
	return h
}

func (f *pairingFixture) mustPass(t *testing.T, from *tailnettest.Node, user string) {
	t.Helper()
	before := f.be.count()
	a := f.get(t, from, "")
	if a.status != http.StatusOK || f.be.count() != before+1 {
		t.Fatalf("%s: status %d, gateway saw %d request(s): %s", from.Hostname, a.status, f.be.count()-before, a.body)
	}
	if got := f.be.last(t).Header.Get("X-Forwarded-User"); got != user {
		t.Errorf("%s: gateway saw user %q, want %q", from.Hostname, got, user)
	}
}

func (f *pairingFixture) devices(t *testing.T) devicesList {
	t.Helper()
	var out bytes.Buffer
	if err := runDevicesCommand(&out, f.admin, "list", "", "", true); err != nil {
		t.Fatalf("devices list: %v", err)
	}
	var list devicesList
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatalf("devices list --json: %v: %s", err, out.String())
	}
	return list
}

// device returns the record of the node named node, or fails.
func (f *pairingFixture) device(t *testing.T, node string) deviceEntry {
	t.Helper()
	for _, d := range f.devices(t).Devices {
		if d.Node == node {
			return d
		}
	}
	t.Fatalf("no device %s in the list", node)
	return deviceEntry{}
}

// adminPost calls the admin API directly, as a script would.
func (f *pairingFixture) adminPost(t *testing.T, action string, req deviceRequest) (int, deviceResult) {
	t.Helper()
	body, _ := json.Marshal(req)
	// A fresh connection each time: a config load restarts the admin server,
	// and a kept-alive connection to the old one is reset.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post("http://"+f.admin+"/clawgate/devices/"+action, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res deviceResult
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatalf("admin %s: %v: %s", action, err, b)
		}
	}
	return resp.StatusCode, res
}

// command runs `caddy clawgate devices <args>` in-process against the admin
// endpoint.
func (f *pairingFixture) command(t *testing.T, args ...string) string {
	t.Helper()
	cmd := newDevicesCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--address", f.admin))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("caddy clawgate devices %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func stableID(t *testing.T, n *tailnettest.Node) string {
	t.Helper()
	lc, err := n.LocalClient()
	if err != nil {
		t.Fatal(err)
	}
	st, err := lc.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return string(st.Self.ID)
}

func TestPairingTailnet(t *testing.T) {
	f := newPairingFixture(t)
	aliceID, phoneID := stableID(t, f.alice), stableID(t, f.phone)
	var aliceCode string

	t.Run("a new device of an allowed user is held and recorded", func(t *testing.T) {
		h := f.mustBeHeld(t, f.alice)
		aliceCode = h.Code
		if h.Device != aliceID {
			t.Errorf("held device %q, want alice-laptop's node ID %q", h.Device, aliceID)
		}
		// Asking again gives the same code.
		if again := f.mustBeHeld(t, f.alice); again.Code != aliceCode {
			t.Errorf("code changed from %s to %s", aliceCode, again.Code)
		}
		// A browser gets a page that shows the code.
		before := f.be.count()
		page := f.get(t, f.alice, "text/html,application/xhtml+xml")
		if page.status != 403 || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") ||
			!strings.Contains(page.body, aliceCode) || !strings.Contains(page.body, "waiting for approval") {
			t.Errorf("browser page: %d %q\n%s", page.status, page.header.Get("Content-Type"), page.body)
		}
		// A WebSocket upgrade is held too, before it reaches the gateway.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.siteURL, "http")+"/ws", &websocket.DialOptions{HTTPClient: f.alice.HTTPClient()})
		if err == nil || resp == nil || resp.StatusCode != 403 || resp.Header.Get("X-Clawgate-Pairing-Code") != aliceCode {
			t.Errorf("upgrade: err %v, resp %+v", err, resp)
		}
		if f.be.count() != before {
			t.Errorf("the gateway saw a held page or upgrade")
		}
		d := f.device(t, "alice-laptop")
		want := map[string]string{"gateway": "home", "id": aliceID, "login": "alice@example.com", "status": "pending", "code": aliceCode,
			"fqdn": "alice-laptop." + tailnettest.Domain, "ip": f.alice.IPs[0].String()}
		got := map[string]string{"gateway": d.Gateway, "id": d.ID, "login": d.Login, "status": string(d.Status), "code": d.Code, "fqdn": d.FQDN}
		if len(d.IPs) > 0 {
			got["ip"] = d.IPs[0]
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("recorded %s = %q, want %q", k, got[k], v)
			}
		}
		if !strings.HasPrefix(d.NodeKey, "nodekey:") || d.FirstSeen.IsZero() || time.Since(d.FirstSeen) > time.Minute {
			t.Errorf("recorded node key %q, first seen %v", d.NodeKey, d.FirstSeen)
		}
	})

	t.Run("a user no rule allows is refused and never recorded", func(t *testing.T) {
		a := f.get(t, f.bob, "")
		if a.status != 403 || errorType(t, a.body) != "clawgate_forbidden" {
			t.Fatalf("bob: %d %s", a.status, a.body)
		}
		for _, d := range f.devices(t).Devices {
			if d.Node == "bob-phone" {
				t.Errorf("bob's device was recorded: %+v", d)
			}
		}
	})

	var phoneCode string
	t.Run("a second device of the same user is held on its own", func(t *testing.T) {
		h := f.mustBeHeld(t, f.phone)
		phoneCode = h.Code
		if h.Device != phoneID || h.Code == aliceCode {
			t.Errorf("phone held as %+v (alice-laptop has code %s)", h, aliceCode)
		}
	})

	t.Run("approved by command, the device passes and the other stays held", func(t *testing.T) {
		out := f.command(t, "list")
		t.Logf("caddy clawgate devices list:\n%s", out)
		for _, want := range []string{"alice-laptop", "alice-phone", aliceCode, phoneCode, "pending"} {
			if !strings.Contains(out, want) {
				t.Errorf("devices list lacks %q:\n%s", want, out)
			}
		}
		out = f.command(t, "approve", strings.ToLower(aliceCode))
		t.Logf("caddy clawgate devices approve %s:\n%s", strings.ToLower(aliceCode), out)
		if !strings.Contains(out, "approved alice-laptop") || !strings.Contains(out, "gateway home") {
			t.Errorf("approve said %q", out)
		}
		f.mustPass(t, f.alice, "alice@example.com")
		f.mustBeHeld(t, f.phone)
		if d := f.device(t, "alice-laptop"); d.Status != pairing.StatusApproved || d.Code != "" || d.ApprovedBy != unverifiedTCPApprover {
			t.Errorf("after approval: %+v", d.Device)
		}
	})

	t.Run("approved through the admin API, the second device passes", func(t *testing.T) {
		if status, _ := f.adminPost(t, "approve", deviceRequest{Device: "no-such-device"}); status != 404 {
			t.Errorf("approving an unknown device: %d, want 404", status)
		}
		if status, _ := f.adminPost(t, "approve", deviceRequest{Device: phoneID, Gateway: "elsewhere"}); status != 404 {
			t.Errorf("approving on an unknown gateway: %d, want 404", status)
		}
		status, res := f.adminPost(t, "approve", deviceRequest{Device: phoneID, By: "ops-script"})
		if status != 200 || !res.Changed || len(res.Devices) != 1 || res.Devices[0].ID != phoneID {
			t.Fatalf("admin approve: %d %+v", status, res)
		}
		f.mustPass(t, f.phone, "alice@example.com")
		if d := f.device(t, "alice-phone"); d.ApprovedBy != unverifiedTCPApprover {
			t.Errorf("approved by %q, want %q: a TCP admin endpoint does not know its caller", d.ApprovedBy, unverifiedTCPApprover)
		}
	})

	t.Run("revoking a device cuts its open WebSocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.siteURL, "http")+"/ws", &websocket.DialOptions{HTTPClient: f.alice.HTTPClient()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello alice@example.com" {
			t.Fatalf("first frame %q, %v", msg, err)
		}
		// The phone's WebSocket must survive alice-laptop's revocation.
		pc, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.siteURL, "http")+"/ws", &websocket.DialOptions{HTTPClient: f.phone.HTTPClient()})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.CloseNow()
		if _, _, err := pc.Read(ctx); err != nil {
			t.Fatal(err)
		}

		out := f.command(t, "revoke", aliceID)
		t.Logf("caddy clawgate devices revoke %s:\n%s", aliceID, out)
		if !strings.Contains(out, "revoked alice-laptop") || !strings.Contains(out, "closed 1 open WebSocket") {
			t.Errorf("revoke said %q", out)
		}
		readCtx, readCancel := context.WithTimeout(ctx, 10*time.Second)
		defer readCancel()
		if _, msg, err := c.Read(readCtx); err == nil {
			t.Fatalf("the revoked device's WebSocket still delivers: %q", msg)
		} else if readCtx.Err() != nil {
			t.Fatal("the revoked device's WebSocket stayed open")
		}
		if err := pc.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
			t.Fatalf("the phone's WebSocket was closed too: %v", err)
		}
		if _, msg, err := pc.Read(ctx); err != nil || string(msg) != "echo:still here" {
			t.Fatalf("phone echo %q, %v", msg, err)
		}
		// Revoked, the device waits again with a new code.
		h := f.mustBeHeld(t, f.alice)
		if h.Code == aliceCode {
			t.Errorf("the revoked device got its old code back")
		}
		if status, res := f.adminPost(t, "approve", deviceRequest{Device: h.Code}); status != 200 || !res.Changed {
			t.Fatalf("re-approve: %d %+v", status, res)
		}
		f.mustPass(t, f.alice, "alice@example.com")
	})

	t.Run("auto-approval by tag and by capability", func(t *testing.T) {
		f.mustPass(t, f.trusted, "node:trusted-bot")
		f.mustPass(t, f.carol, "carol@example.com")
		if d := f.device(t, "trusted-bot"); d.Status != pairing.StatusApproved || !d.Auto || d.ApprovedBy != "auto_approve tag:trusted" {
			t.Errorf("trusted-bot recorded as %+v", d.Device)
		}
		if d := f.device(t, "carol-desk"); d.Status != pairing.StatusApproved || d.ApprovedBy != "auto_approve cap:"+deviceCap {
			t.Errorf("carol-desk recorded as %+v", d.Device)
		}
		// Another tag is not the rule's tag.
		f.mustBeHeld(t, f.ci)
	})

	t.Run("an untagged device cannot claim the tag rule", func(t *testing.T) {
		// A user's device that asks for the tag in every way a request can.
		id := stableID(t, f.phone)
		if status, _ := f.adminPost(t, "revoke", deviceRequest{Device: id}); status != 200 {
			t.Fatalf("revoke phone: %d", status)
		}
		req, _ := http.NewRequest("GET", f.siteURL+"/tools/invoke", nil)
		for k, v := range map[string]string{"Tailscale-Tags": "tag:trusted", "X-Tailscale-Tags": "tag:trusted", "X-Clawgate-Tags": "tag:trusted",
			"Tailscale-User-Login": "tagged-devices", "X-Forwarded-User": "node:trusted-bot"} {
			req.Header.Set(k, v)
		}
		c := f.phone.HTTPClient()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.CloseIdleConnections()
		if h := parseHeld(t, answer{resp.StatusCode, string(body), resp.Header}); resp.StatusCode != 403 || h.Type != "clawgate_pairing_pending" {
			t.Fatalf("phone claiming the tag: %d %s", resp.StatusCode, body)
		}
		// Nor can it take over the tagged device's approval: approving by
		// the tagged device's ID leaves the phone held.
		trustedID := stableID(t, f.trusted)
		if status, res := f.adminPost(t, "approve", deviceRequest{Device: trustedID}); status != 200 || res.Devices[0].ID != trustedID {
			t.Fatalf("approve trusted-bot: %d %+v", status, res)
		}
		f.mustBeHeld(t, f.phone)
		if d := f.device(t, "alice-phone"); d.Status != pairing.StatusPending || d.Auto {
			t.Errorf("phone recorded as %+v", d.Device)
		}
		if status, _ := f.adminPost(t, "approve", deviceRequest{Device: id}); status != 200 {
			t.Fatalf("re-approve phone: %d", status)
		}
		f.mustPass(t, f.phone, "alice@example.com")
	})

	t.Run("a device re-registered with a new node key is held again", func(t *testing.T) {
		approved := f.device(t, "alice-phone")
		begin := time.Now()
		rotateNodeKey(t, f.tn, f.phone)
		t.Logf("node key rotated in %v", time.Since(begin))
		f.tn.WaitPeer(t, f.phone, "gw")
		t.Logf("gw reachable again after %v", time.Since(begin))
		// gw learns the new key from the control server; until then it
		// may still answer for the old one.
		deadline := time.Now().Add(30 * time.Second)
		var h heldError
		for {
			// While peers switch to the new key a request may be lost.
			a, err := f.tryGet(f.phone, "", 2*time.Second)
			if err == nil && a.status == 403 {
				h = parseHeld(t, a)
				t.Logf("held again after %v", time.Since(begin))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the re-keyed phone is not held: %d %s, %v", a.status, a.body, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if h.Type != "clawgate_pairing_pending" || h.Device != phoneID {
			t.Fatalf("held as %+v, want pending for the same node ID %s", h, phoneID)
		}
		d := f.device(t, "alice-phone")
		if d.ID != phoneID || d.NodeKey == approved.NodeKey || d.Reason != pairing.ReasonNodeKeyChanged || d.Status != pairing.StatusPending {
			t.Errorf("after re-keying: %+v (approved with %s)", d.Device, approved.NodeKey)
		}
		f.command(t, "approve", h.Code)
		f.mustPass(t, f.phone, "alice@example.com")
	})

	t.Run("approvals survive a restart", func(t *testing.T) {
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		waitNodesClosed(t)
		// What the next start reads is in storage, not in this process's
		// memory.
		onDisk, err := f.otherInstance(t).List()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{aliceID, phoneID} {
			if i := slices.IndexFunc(onDisk, func(d pairing.Device) bool { return d.ID == id }); i < 0 || onDisk[i].Status != pairing.StatusApproved {
				t.Errorf("device %s is not approved on disk: %+v", id, onDisk)
			}
		}
		if err := caddy.Load(f.cfg, true); err != nil {
			t.Fatal(err)
		}
		f.waitGW(t)
		f.mustPass(t, f.alice, "alice@example.com")
		f.mustPass(t, f.phone, "alice@example.com")
		f.mustBeHeld(t, f.ci)
	})

	t.Run("a revocation and an approval written by another instance take effect within the poll interval", func(t *testing.T) {
		other := f.otherInstance(t)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.siteURL, "http")+"/ws", &websocket.DialOptions{HTTPClient: f.alice.HTTPClient()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello alice@example.com" {
			t.Fatalf("first frame %q, %v", msg, err)
		}
		begin := time.Now()
		if _, err := other.Revoke(aliceID); err != nil {
			t.Fatal(err)
		}
		readCtx, readCancel := context.WithTimeout(ctx, 20*time.Second)
		defer readCancel()
		if _, msg, err := c.Read(readCtx); err == nil {
			t.Fatalf("the WebSocket of a device revoked elsewhere still delivers: %q", msg)
		} else if readCtx.Err() != nil {
			t.Fatal("the WebSocket of a device revoked elsewhere stayed open")
		}
		t.Logf("WebSocket closed %v after another instance revoked the device (poll interval 1s)", time.Since(begin))
		h := f.mustBeHeld(t, f.alice)

		// The code this instance showed, approved through the other one.
		begin = time.Now()
		if _, _, err := other.Approve(h.Code, "ops@other"); err != nil {
			t.Fatalf("approving %s on the other instance: %v", h.Code, err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for f.get(t, f.alice, "").status != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatal("an approval written by another instance was not picked up")
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("approval written by another instance held here after %v", time.Since(begin))
		if d := f.device(t, "alice-laptop"); d.ApprovedBy != "ops@other" || d.Status != pairing.StatusApproved {
			t.Errorf("after the other instance's approval: %+v", d.Device)
		}
	})

	t.Run("a broken record holds its device, and unreadable storage holds new devices, until fixed", func(t *testing.T) {
		key := filepath.Join(f.storage, "clawgate", "pairing", "home", "devices", aliceID+".json")
		good, err := os.ReadFile(key)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range [][]byte{good[:len(good)/2], []byte("\x00garbage\xff")} {
			writeAtomic(t, key, string(bad))
			// A config reload reads the storage again.
			if err := caddy.Load(f.cfg, true); err != nil {
				t.Fatal(err)
			}
			before := f.be.count()
			if a := f.get(t, f.alice, ""); a.status != 503 || errorType(t, a.body) != "clawgate_pairing_unavailable" || f.be.count() != before {
				t.Errorf("alice-laptop with a broken record: %d %s", a.status, a.body)
			}
			f.mustPass(t, f.phone, "alice@example.com") // another device's record is fine
			if status, _ := f.adminPost(t, "approve", deviceRequest{Device: aliceID}); status != 503 {
				t.Errorf("approve with a broken record: %d, want 503", status)
			}
			if got, _ := os.ReadFile(key); !bytes.Equal(got, bad) {
				t.Errorf("the broken record was rewritten")
			}
		}
		writeAtomic(t, key, string(good))
		if err := caddy.Load(f.cfg, true); err != nil {
			t.Fatal(err)
		}
		f.mustPass(t, f.alice, "alice@example.com")

		// The generation key turned into a directory: storage cannot be read.
		// Approved devices keep passing for a while; a new one is held at once.
		gen := filepath.Join(f.storage, "clawgate", "pairing", "home", "generation")
		failedBefore := logCount(t, f.logPath, "device pairing storage cannot be read: new and changed devices are held; devices approved before pass on the last good read for a while, then are held too")
		recoveredBefore := logCount(t, f.logPath, "device pairing storage reads again")
		saved, err := os.ReadFile(gen)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(gen); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(gen, 0o700); err != nil {
			t.Fatal(err)
		}
		waitLog(t, f.logPath, "device pairing storage cannot be read: new and changed devices are held; devices approved before pass on the last good read for a while, then are held too", failedBefore)
		f.mustPass(t, f.alice, "alice@example.com")
		rotateNodeKey(t, f.tn, f.ci) // a device storage has not seen with this key
		f.tn.WaitPeer(t, f.ci, "gw")
		deadline := time.Now().Add(30 * time.Second)
		for {
			a, err := f.tryGet(f.ci, "", 5*time.Second)
			if err == nil && a.status == 503 && errorType(t, a.body) == "clawgate_pairing_unavailable" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ci-bot while storage cannot be read: %d %s, %v", a.status, a.body, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := os.Remove(gen); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, gen, string(saved))
		waitLog(t, f.logPath, "device pairing storage reads again", recoveredBefore)
		f.mustBeHeld(t, f.ci)
	})

	t.Run("every approval, denial and revocation is logged", func(t *testing.T) {
		events := readLog(t, f.logPath)
		want := []struct {
			msg    string
			fields map[string]string
		}{
			{"new device waiting for approval", map[string]string{"gateway": "home", "device": aliceID, "node": "alice-laptop", "login": "alice@example.com", "code": aliceCode}},
			{"device held", map[string]string{"gateway": "home", "device": aliceID, "reason": "pairing_pending", "code": aliceCode}},
			{"device approved", map[string]string{"gateway": "home", "device": aliceID, "by": unverifiedTCPApprover, "claimed_by": localOperator()}},
			{"device approved", map[string]string{"gateway": "home", "device": phoneID, "by": unverifiedTCPApprover, "claimed_by": "ops-script"}},
			{"device approved", map[string]string{"gateway": "home", "node": "trusted-bot", "by": "auto_approve tag:trusted"}},
			{"device revoked", map[string]string{"gateway": "home", "device": aliceID, "by": unverifiedTCPApprover, "claimed_by": localOperator(), "was": "approved"}},
			{"device node key changed: waiting for approval again", map[string]string{"gateway": "home", "device": phoneID, "reason": "node_key_changed"}},
			{"device pairing storage cannot be used: the device is held until it can be read and written", map[string]string{"gateway": "home", "device": aliceID, "storage": "FileStorage:" + f.storage, "prefix": "clawgate/pairing/home"}},
			{"device approval withdrawn in storage (revoked or changed through another instance)", map[string]string{"gateway": "home", "device": aliceID, "closed_websockets": "1"}},
			{"device pairing storage reads again", map[string]string{"gateway": "home", "storage": "FileStorage:" + f.storage}},
		}
		for _, w := range want {
			found := false
			for _, e := range events {
				if e["msg"] != w.msg {
					continue
				}
				match := true
				for k, v := range w.fields {
					if fmt.Sprint(e[k]) != v {
						match = false
					}
				}
				if match {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("no log event %q with %v", w.msg, w.fields)
			}
		}
	})
}

// rotateNodeKey makes n log in again, which gives it a new node key under
// the same stable node ID, as a re-authenticated machine gets. The control
// server keeps the old key's entry alongside; it is retired so that peers see
// the node once, with its new key, as they do on a real tailnet.
func rotateNodeKey(t *testing.T, tn *tailnettest.Tailnet, n *tailnettest.Node) {
	t.Helper()
	lc, err := n.LocalClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := lc.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, id := st.Self.PublicKey, st.Self.ID
	if err := lc.StartLoginInteractive(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		if st, err = lc.Status(ctx); err != nil {
			t.Fatal(err)
		}
		if st.Self.PublicKey != oldKey && st.BackendState == "Running" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: node key did not change", n.Hostname)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if st.Self.ID != id {
		t.Fatalf("%s: stable ID changed from %s to %s; the test wants a new key on the same node", n.Hostname, id, st.Self.ID)
	}
	old := tn.Control.Node(oldKey)
	if old == nil {
		return
	}
	old.ID += 1 << 20
	old.StableID = "retired-" + old.StableID
	old.Addresses, old.AllowedIPs = nil, nil
	old.KeyExpiry = time.Now().Add(-time.Hour)
	tn.Control.UpdateNode(old)
}

// otherInstance is the store another Caddy instance sharing the fixture's
// storage would have for gateway home.
func (f *pairingFixture) otherInstance(t *testing.T) *pairing.Store {
	t.Helper()
	s := pairing.Open(&certmagic.FileStorage{Path: f.storage}, "home", pairing.Options{})
	if err := s.Err(); err != nil {
		t.Fatalf("another instance cannot read the storage: %v", err)
	}
	return s
}

// logCount counts the log events with message msg.
func logCount(t *testing.T, path, msg string) int {
	t.Helper()
	n := 0
	for _, e := range readLog(t, path) {
		if e["msg"] == msg {
			n++
		}
	}
	return n
}

// waitLog waits for more than after log events with message msg.
func waitLog(t *testing.T, path, msg string, after int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for logCount(t, path, msg) <= after {
		if time.Now().After(deadline) {
			t.Fatalf("no log event %q", msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readLog(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		events = append(events, e)
	}
	return events
}

// TestDevicesCommandConcurrentApprovals approves many pending devices at once
// through the command and the admin endpoint of a running Caddy, and checks
// that Caddy's storage keeps every approval.
func TestDevicesCommandConcurrentApprovals(t *testing.T) {
	storage := t.TempDir()
	const n = 30
	seed := pairing.Open(&certmagic.FileStorage{Path: storage}, "home", pairing.Options{})
	codes := make([]string, n)
	for i := range n {
		v, err := seed.Check(pairing.Seen{ID: fmt.Sprintf("node%02d", i), NodeKey: fmt.Sprintf("nodekey:%02x", i), Node: fmt.Sprintf("laptop-%02d", i), Login: "alice@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		codes[i] = v.Device.Code
	}
	cfgPath, stateDir := gatewayDir(t, "alice@example.com")
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startCaddy(t, fmt.Sprintf(`{
	admin %s
	storage file_system %s
	clawgate {
		gateway home {
			config %s
			state_dir %s
			pairing required
		}
		gateway other {
			config %s
			state_dir %s
			pairing required
		}
	}
}
`, admin, storage, cfgPath, stateDir, cfgPath, stateDir))

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			var out bytes.Buffer
			if err := runDevicesCommand(&out, admin, "approve", codes[i], "", false); err != nil {
				errs <- fmt.Errorf("approve %s: %w", codes[i], err)
			} else if !strings.Contains(out.String(), "approved laptop-") {
				errs <- fmt.Errorf("approve %s said %q", codes[i], out.String())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := pairing.Open(&certmagic.FileStorage{Path: storage}, "home", pairing.Options{}).List()
	if err != nil {
		t.Fatal(err)
	}
	approved := 0
	for _, d := range list {
		if d.Status == pairing.StatusApproved {
			approved++
		}
	}
	if approved != n {
		t.Errorf("storage holds %d approved devices, want %d", approved, n)
	}

	tests := []struct {
		name, action, ref, gateway string
		wantErr, wantOut           string
	}{
		{"list", "list", "", "", "", "laptop-29"},
		{"list one gateway", "list", "", "other", "", "no devices yet"},
		{"list an unknown gateway", "list", "", "nope", `gateway "nope" has no device pairing`, ""},
		{"approve again", "approve", "node03", "", "", "already approved"},
		{"approve an unknown device", "approve", "XXXX-XXXX", "", "no device with ID or pairing code", ""},
		{"revoke", "revoke", "node04", "", "", "revoked laptop-04 (node04, alice@example.com) on gateway home"},
		{"revoke again", "revoke", "node04", "", "no device", ""},
		{"unknown action", "forget", "node05", "", "unknown action", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := runDevicesCommand(&out, admin, tt.action, tt.ref, tt.gateway, false)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("out %q, err %v; want %q", out.String(), err, tt.wantOut)
			}
		})
	}
}

func TestPairingCaddyfile(t *testing.T) {
	tests := []struct {
		name, in string
		want     PairingConfig
		errHas   string
	}{
		{"required", "pairing required", PairingConfig{Mode: "required"}, ""},
		{"off", "pairing off", PairingConfig{Mode: "off"}, ""},
		{"block", "pairing required {\n storage /var/lib/cg/home.json\n auto_approve tag:trusted, cap:example.com/cap/x\n auto_approve tag:ci\n max_pending 10\n poll_interval 5s\n}",
			PairingConfig{Mode: "required", Storage: "/var/lib/cg/home.json", AutoApprove: []string{"tag:trusted", "cap:example.com/cap/x", "tag:ci"}, MaxPending: 10, PollInterval: caddy.Duration(5 * time.Second)}, ""},
		{"poll_interval too short", "pairing required {\n poll_interval 100ms\n}", PairingConfig{}, "poll_interval: 100ms is outside 1s to 30s"},
		{"poll_interval too long", "pairing required {\n poll_interval 5m\n}", PairingConfig{}, "poll_interval: 5m0s is outside 1s to 30s"},
		{"poll_interval not a duration", "pairing required {\n poll_interval often\n}", PairingConfig{}, `bad duration "often"`},
		{"no mode", "pairing", PairingConfig{}, "wrong argument count"},
		{"unknown mode", "pairing sometimes", PairingConfig{}, `"sometimes" is not one of required, off`},
		{"two modes", "pairing required off", PairingConfig{}, "wrong argument count"},
		{"auto-approving a user", "pairing required {\n auto_approve user:alice@example.com\n}", PairingConfig{}, "only tag:<tag> and cap:<capability>"},
		{"auto-approving a node name", "pairing required {\n auto_approve node:alice-laptop\n}", PairingConfig{}, "only tag:<tag> and cap:<capability>"},
		{"empty tag", "pairing required {\n auto_approve tag:\n}", PairingConfig{}, "want tag:<tag> or cap:<capability>"},
		{"auto_approve without rules", "pairing required {\n auto_approve\n}", PairingConfig{}, "wrong argument count"},
		{"bad max_pending", "pairing required {\n max_pending none\n}", PairingConfig{}, "positive integer"},
		{"unknown subdirective", "pairing required {\n approve_everyone\n}", PairingConfig{}, `unrecognized pairing subdirective "approve_everyone"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tt.in)
			d.Next()
			got, err := unmarshalPairing(d)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("unmarshalPairing(%q) error = %v, want %q", tt.in, err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(&tt.want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("unmarshalPairing(%q) = %s, want %s", tt.in, gotJSON, wantJSON)
			}
		})
	}
}

func FuzzPairingCaddyfile(f *testing.F) {
	for _, s := range []string{"pairing required", "pairing off", "pairing required {\n storage /x\n auto_approve tag:a cap:b\n max_pending 3\n poll_interval 2s\n}",
		"pairing required {\n auto_approve user:x\n}", "pairing", "pairing required {\n}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d := fuzzDispenser(in)
		if d == nil || !d.Next() {
			return
		}
		pc, err := unmarshalPairing(d)
		if err != nil {
			return
		}
		// Whatever parses is a valid mode with rules Provision accepts.
		if m := strings.ToLower(pc.Mode); m != "required" && m != "off" {
			t.Fatalf("parsed mode %q", pc.Mode)
		}
		for _, rule := range pc.AutoApprove {
			if err := checkAutoApprove(rule); err != nil {
				t.Fatalf("parsed rule %q: %v", rule, err)
			}
		}
	})
}

// TestPairingProvision checks what the JSON config path refuses, which the
// Caddyfile parser cannot catch.
func TestPairingProvision(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	st := &certmagic.FileStorage{Path: t.TempDir()}
	tests := []struct {
		name    string
		gateway string
		pc      PairingConfig
		errHas  string
	}{
		{"off", "home", PairingConfig{Mode: "off"}, ""},
		{"required", "home", PairingConfig{Mode: "required"}, ""},
		{"bad mode", "home", PairingConfig{Mode: "always"}, `clawgate.gateways.home.pairing.mode: "always" is not one of required, off`},
		{"bad rule", "home", PairingConfig{Mode: "required", AutoApprove: []string{"tag:ok", "login:alice"}}, "clawgate.gateways.home.pairing.auto_approve[1]"},
		{"negative max_pending", "home", PairingConfig{Mode: "required", MaxPending: -1}, "max_pending"},
		{"poll_interval too short", "home", PairingConfig{Mode: "required", PollInterval: caddy.Duration(time.Millisecond)}, "clawgate.gateways.home.pairing.poll_interval: 1ms is outside 1s to 30s"},
		{"poll_interval too long", "home", PairingConfig{Mode: "required", PollInterval: caddy.Duration(time.Hour)}, "clawgate.gateways.home.pairing.poll_interval: 1h0m0s is outside 1s to 30s"},
		{"a gateway name unfit for a file name", "../home", PairingConfig{Mode: "required"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := tt.pc
			a := &App{Gateways: map[string]*GatewayConfig{tt.gateway: {Pairing: &pc}}, logger: zap.NewNop()}
			err := a.provisionPairing(st)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("provisionPairing error = %v, want %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := pc.required(), strings.EqualFold(pc.Mode, "required"); got != want {
				t.Errorf("required() = %v, want %v", got, want)
			}
		})
	}
	// Two gateways cannot name one old approval file.
	shared := filepath.Join(t.TempDir(), "shared.json")
	a := &App{Gateways: map[string]*GatewayConfig{
		"alice": {Pairing: &PairingConfig{Mode: "required", Storage: shared}},
		"bob":   {Pairing: &PairingConfig{Mode: "required", Storage: shared}},
	}, logger: zap.NewNop()}
	if err := a.provisionPairing(st); err == nil || !strings.Contains(err.Error(), `clawgate.gateways.bob.pairing.storage`) || !strings.Contains(err.Error(), `gateway "alice"`) {
		t.Errorf("shared approval file: %v", err)
	}

	// Devices live under the gateway's prefix in Caddy's storage; the old
	// file looked for by default is the one older versions wrote in Caddy's
	// data directory, and none for a name that cannot be a file name.
	for name, wantLegacy := range map[string]string{
		"home":    filepath.Join(caddy.AppDataDir(), "clawgate", "pairing-home.json"),
		"../home": "",
	} {
		pc := PairingConfig{Mode: "required"}
		a = &App{Gateways: map[string]*GatewayConfig{name: {Pairing: &pc}}, logger: zap.NewNop()}
		if err := a.provisionPairing(st); err != nil {
			t.Fatal(err)
		}
		if pc.rt.legacyFile != wantLegacy {
			t.Errorf("gateway %q: old approval file %q, want %q", name, pc.rt.legacyFile, wantLegacy)
		}
		if got, want := pc.rt.store.Prefix(), "clawgate/pairing/"; !strings.HasPrefix(got, want) || strings.Count(got, "/") != 2 {
			t.Errorf("gateway %q: storage prefix %q", name, got)
		}
		if pc.rt.poll != 2*time.Second {
			t.Errorf("default poll interval %v, want 2s", pc.rt.poll)
		}
	}
}

// TestPairingMigrateOnStart starts a real Caddy whose gateway names an
// approval file an older clawgate wrote: its devices move into Caddy's
// storage, the file is renamed with a note, the log says so, and a reload
// does nothing more.
func TestPairingMigrateOnStart(t *testing.T) {
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	legacy := filepath.Join(dir, "pairing-home.json")
	data, err := os.ReadFile(filepath.Join("internal", "pairing", "testdata", "pairing-home.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(legacy, data, 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "clawgate.log")
	cfgPath, stateDir := gatewayDir(t, "alice@example.com")
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := startPairingCaddy(t, fmt.Sprintf(`{
	admin %s
	storage file_system %s
	clawgate {
		gateway home {
			config %s
			state_dir %s
			pairing required {
				storage %s
			}
		}
	}
}
`, admin, storage, cfgPath, stateDir, legacy), logPath)

	f := &pairingFixture{admin: admin}
	list := f.devices(t)
	want := map[string]pairing.Status{"nXvT2fN4CNTRL": pairing.StatusApproved, "nK7pQ2rS3CNTRL": pairing.StatusPending, "nB0tT4gG3CNTRL": pairing.StatusApproved}
	if len(list.Devices) != len(want) {
		t.Fatalf("after migrating: %+v", list)
	}
	for _, d := range list.Devices {
		if d.Status != want[d.ID] || d.Gateway != "home" {
			t.Errorf("device %s: %s on %s, want %s on home", d.ID, d.Status, d.Gateway, want[d.ID])
		}
	}
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Errorf("the old approval file is still in place: %v", err)
	}
	if _, err := os.Stat(filepath.Join(storage, "clawgate", "pairing", "home", "devices", "nXvT2fN4CNTRL.json")); err != nil {
		t.Errorf("no key for a migrated device: %v", err)
	}
	if note, err := os.ReadFile(legacy + ".migrated.txt"); err != nil || !strings.Contains(string(note), "3 device(s) were moved") {
		t.Errorf("note: %v\n%s", err, note)
	}
	events := readLog(t, logPath)
	var moved, deprecated bool
	for _, e := range events {
		switch e["msg"] {
		case "device pairing: moved the old approval file into Caddy's storage":
			moved = e["file"] == legacy && fmt.Sprint(e["moved"]) == "3" && e["renamed_to"] == legacy+".migrated" && e["prefix"] == "clawgate/pairing/home"
		default:
			deprecated = deprecated || strings.HasPrefix(fmt.Sprint(e["msg"]), "pairing storage is deprecated") && e["file"] == legacy
		}
	}
	if !moved || !deprecated {
		t.Errorf("log: moved %v, deprecation warned %v:\n%v", moved, deprecated, events)
	}

	// A reload finds no file, moves nothing and keeps every device.
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatal(err)
	}
	if got := logCount(t, logPath, "device pairing: moved the old approval file into Caddy's storage"); got != 1 {
		t.Errorf("migrated %d times", got)
	}
	// Caddy replaces its admin server on a reload; a connection that lands
	// on the old listener while it closes is reset, so the first request may
	// need another try.
	var out bytes.Buffer
	deadline := time.Now().Add(10 * time.Second)
	for {
		out.Reset()
		err := runDevicesCommand(&out, f.admin, "list", "", "", true)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices list after a reload: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var after devicesList
	if err := json.Unmarshal(out.Bytes(), &after); err != nil || len(after.Devices) != len(want) {
		t.Errorf("after a reload: %v %+v", err, after)
	}
}

// outageStorage is Caddy's real file storage whose reads fail while down is
// set, as a storage module's do while its backend is unreachable.
type outageStorage struct {
	*certmagic.FileStorage
	down atomic.Bool
}

func (s *outageStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if s.down.Load() {
		return nil, errors.New("storage backend unreachable")
	}
	return s.FileStorage.Load(ctx, key)
}

// TestPairingStorageOutageClosesWebSockets: while storage cannot be read, an
// approved device's WebSocket stays open on the last good read, and is closed
// (and logged) once that read outlives its bound; reads working again are
// logged too.
func TestPairingStorageOutageClosesWebSockets(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st := &outageStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	store := pairing.Open(st, "outage", pairing.Options{Now: clock, StaleFor: 30 * time.Second})
	v, err := store.Check(pairing.Seen{ID: "n1", NodeKey: "nodekey:01", Node: "alice-laptop", Login: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Approve(v.Device.Code, "ops"); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	pc := &pairingRuntime{gateway: "outage", store: store, storageName: "test storage", logger: zap.New(core)}

	ours, theirs := net.Pipe()
	defer theirs.Close()
	tc := &trackedConn{Conn: ours, gateway: "outage", nodeID: "n1"}
	gateConns.Lock()
	gateConns.m["outage"] = map[*trackedConn]struct{}{tc: {}}
	gateConns.Unlock()
	defer closeGatewayConns("outage")
	open := func() bool {
		gateConns.Lock()
		defer gateConns.Unlock()
		_, ok := gateConns.m["outage"][tc]
		return ok
	}

	ctx := context.Background()
	st.down.Store(true)
	pc.applyRefresh(store.Refresh(ctx, false))
	if !open() {
		t.Fatal("the WebSocket was closed at the first failed read")
	}
	if n := logs.FilterMessageSnippet("device pairing storage cannot be read: new and changed devices are held").Len(); n != 1 {
		t.Errorf("logged the failed read %d times, want 1", n)
	}
	mu.Lock()
	now = now.Add(31 * time.Second)
	mu.Unlock()
	pc.applyRefresh(store.Refresh(ctx, false))
	if open() {
		t.Fatal("the WebSocket stayed open after the last good read outlived its bound")
	}
	expired := logs.FilterMessage("device pairing storage still cannot be read: every device of this gateway is held until it reads again").All()
	if len(expired) != 1 || expired[0].ContextMap()["closed_websockets"] != int64(1) {
		t.Errorf("expiry logged as %+v", expired)
	}
	st.down.Store(false)
	pc.applyRefresh(store.Refresh(ctx, false))
	if logs.FilterMessage("device pairing storage reads again").Len() != 1 {
		t.Errorf("the recovery was not logged")
	}
	if v, err := store.Check(pairing.Seen{ID: "n1", NodeKey: "nodekey:01", Node: "alice-laptop", Login: "alice@example.com"}); err != nil || !v.Approved {
		t.Errorf("after recovery: %+v, %v", v, err)
	}
}
