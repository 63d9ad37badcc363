package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// gatewayDir writes a gateway's state dir and openclaw.json (trusted-proxy,
// passing the audit, admitting users) and returns the config path.
func gatewayDir(t *testing.T, users ...string) (cfgPath, stateDir string) {
	t.Helper()
	stateDir = filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(stateDir, "openclaw.json")
	writeAtomic(t, cfgPath, gatewayConfigFor(users...))
	return cfgPath, stateDir
}

func gatewayConfigFor(users ...string) string {
	return fmt.Sprintf(`{gateway: {mode: "local", bind: "loopback", port: 18789,
  trustedProxies: ["127.0.0.1", "::1"],
  auth: {mode: "trusted-proxy", trustedProxy: {userHeader: "x-forwarded-user",
    requiredHeaders: ["x-forwarded-proto", "x-forwarded-host"], allowUsers: ["%s"], allowLoopback: true}}}}`,
		strings.Join(users, `", "`))
}

func writeAtomic(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestSeveralGateways runs two personal gateways behind one Caddy, reached both
// by node (alice-claw, bob-claw) and by identity (one node, claw, routing each
// login to its own gateway), and tries to cross from alice's devices to bob's
// gateway.
func TestSeveralGateways(t *testing.T) {
	tn := tailnettest.New(t)
	var nodes []tsnet.Config
	for _, n := range []string{"alice-claw", "bob-claw", "claw"} {
		nodes = append(nodes, tn.Config(t, n))
	}
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	bob := tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))
	carol := tn.NewNode(t, "carol-desk", tailnettest.WithLogin("carol@example.com"))
	mallory := tn.NewNode(t, "mallory-pc", tailnettest.WithLogin("mallory@example.com"))
	beA, beB := newBackend(t), newBackend(t)
	cfgA, stateA := gatewayDir(t, "alice@example.com", "carol@example.com")
	cfgB, stateB := gatewayDir(t, "bob@example.com", "carol@example.com")
	aliceTok := randToken(t, 32)
	t.Setenv("CG_TEST_ALICE_TOKEN", aliceTok)

	const port = 18080
	host := func(node string) string { return fmt.Sprintf("%s.%s:%d", node, tailnettest.Domain, port) }
	gateways := fmt.Sprintf(`gateway alice {
	config %s
	state_dir %s
}
gateway bob {
	config %s
	state_dir %s
}`, cfgA, stateA, cfgB, stateB)
	startCaddyTailnet(t, globalOptions{nodes: nodes, clawgate: gateways}.String()+fmt.Sprintf(`http://%s {
	bind clawgate/alice-claw
	clawgate %s {
		gateway alice
		token alice-script {
			env CG_TEST_ALICE_TOKEN
			user alice@example.com
		}
		allow user:alice@example.com scopes operator.read,operator.write
		allow user:carol@example.com scopes operator.read
		allow token:alice-script scopes operator.read
	}
}
http://%s {
	bind clawgate/bob-claw
	clawgate %s {
		gateway bob
		allow user:bob@example.com scopes operator.read,operator.write
		allow user:carol@example.com scopes operator.read
	}
}
http://%s {
	bind clawgate/claw
	@carol-bob {
		clawgate_identity user:carol@example.com
		header X-Clawgate-Gateway bob
	}
	handle @carol-bob {
		clawgate %s {
			gateway bob
			allow user:carol@example.com scopes operator.read
		}
	}
	@alice clawgate_identity user:alice@example.com,carol@example.com
	handle @alice {
		clawgate %s {
			gateway alice
			allow user:alice@example.com scopes operator.read,operator.write
			allow user:carol@example.com scopes operator.read
		}
	}
	@bob clawgate_identity user:bob@example.com
	handle @bob {
		clawgate %s {
			gateway bob
			allow user:bob@example.com scopes operator.read,operator.write
		}
	}
	handle {
		respond "clawgate: no gateway for this user" 403
	}
}
`, host("alice-claw"), beA.addr(), host("bob-claw"), beB.addr(),
		host("claw"), beB.addr(), beA.addr(), beB.addr()))
	for _, n := range []string{"alice-claw", "bob-claw", "claw"} {
		deadline := time.Now().Add(60 * time.Second)
		for p := nodeByName(n); p == nil || len(p.tailnetIPs()) == 0; p = nodeByName(n) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s never came up", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, c := range []*tailnettest.Node{alice, bob, carol, mallory} {
			tn.WaitPeer(t, c, n)
		}
	}

	type call struct {
		name   string
		from   *tailnettest.Node
		node   string // which clawgate node's site to call
		h      http.Header
		status int
		be     *backend // the gateway that must receive it (nil: none)
		user   string
	}
	calls := []call{
		{"by node: alice reaches her gateway", alice, "alice-claw", nil, 200, beA, "alice@example.com"},
		{"by node: bob reaches his gateway", bob, "bob-claw", nil, 200, beB, "bob@example.com"},
		{"by node: carol reaches both", carol, "bob-claw", nil, 200, beB, "carol@example.com"},
		{"by node: alice on bob's node is refused", alice, "bob-claw", nil, 403, nil, ""},
		{"by node: bob on alice's node is refused", bob, "alice-claw", nil, 403, nil, ""},
		{"by node: alice's token on bob's node is refused", alice, "bob-claw", http.Header{"Authorization": {"Bearer " + aliceTok}}, 403, nil, ""},
		{"by node: alice claiming bob's Host on her node stays off bob's gateway", alice, "alice-claw", http.Header{"Host": {host("bob-claw")}}, -1, nil, ""},
		{"by node: alice spoofing bob's identity", alice, "alice-claw", http.Header{"X-Forwarded-User": {"bob@example.com"}, "X-Forwarded-Host": {host("bob-claw")}}, 200, beA, "alice@example.com"},
		{"by identity: alice goes to her gateway", alice, "claw", nil, 200, beA, "alice@example.com"},
		{"by identity: bob goes to his gateway", bob, "claw", nil, 200, beB, "bob@example.com"},
		{"by identity: alice asking for bob's gateway", alice, "claw", http.Header{"X-Clawgate-Gateway": {"bob"}}, 200, beA, "alice@example.com"},
		{"by identity: carol chooses bob's gateway", carol, "claw", http.Header{"X-Clawgate-Gateway": {"bob"}}, 200, beB, "carol@example.com"},
		{"by identity: carol by default reaches alice's", carol, "claw", nil, 200, beA, "carol@example.com"},
		{"by identity: an unmapped user is refused", mallory, "claw", nil, 403, nil, ""},
		{"by identity: an unmapped user spoofing alice", mallory, "claw", http.Header{"X-Forwarded-User": {"alice@example.com"}, "Tailscale-User-Login": {"alice@example.com"}}, 403, nil, ""},
		{"by identity: alice's path tricks", alice, "claw", nil, 400, nil, ""}, // dot segments are refused
	}
	paths := map[string]string{"by identity: alice's path tricks": "/bob/../tools/invoke?gateway=bob"}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			beforeA, beforeB := beA.count(), beB.count()
			path := "/tools/invoke"
			if p, ok := paths[c.name]; ok {
				path = p
			}
			req, _ := http.NewRequest("GET", "http://"+host(c.node)+path, nil)
			for k, v := range c.h {
				if k == "Host" {
					req.Host = v[0]
					continue
				}
				req.Header[k] = v
			}
			client := c.from.HTTPClient()
			defer client.CloseIdleConnections()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if c.status >= 0 && resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			gotA, gotB := beA.count()-beforeA, beB.count()-beforeB
			switch c.be {
			case nil:
				if gotA != 0 || gotB != 0 {
					t.Fatalf("a gateway received the request (alice's %d, bob's %d)", gotA, gotB)
				}
			case beA:
				if gotA != 1 || gotB != 0 {
					t.Fatalf("alice's gateway got %d, bob's %d; want 1, 0", gotA, gotB)
				}
			case beB:
				if gotA != 0 || gotB != 1 {
					t.Fatalf("alice's gateway got %d, bob's %d; want 0, 1", gotA, gotB)
				}
			}
			if c.be != nil {
				if got := c.be.last(t).Header.Get("X-Forwarded-User"); got != c.user {
					t.Errorf("gateway saw user %q, want %q", got, c.user)
				}
			}
		})
	}

	t.Run("websocket: alice cannot upgrade on bob's node", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		before := beB.count()
		_, resp, err := websocket.Dial(ctx, "ws://"+host("bob-claw")+"/ws", &websocket.DialOptions{HTTPClient: alice.HTTPClient()})
		if err == nil || resp == nil || resp.StatusCode != 403 || beB.count() != before {
			t.Fatalf("upgrade: err %v, resp %v, bob's gateway got %d", err, resp, beB.count()-before)
		}
		c, _, err := websocket.Dial(ctx, "ws://"+host("claw")+"/ws", &websocket.DialOptions{HTTPClient: alice.HTTPClient(), HTTPHeader: http.Header{"X-Clawgate-Gateway": {"bob"}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello alice@example.com" {
			t.Fatalf("first frame %q, %v", msg, err)
		}
		if beB.count() != before {
			t.Errorf("bob's gateway saw alice's upgrade")
		}
	})

	t.Run("audit gates are independent", func(t *testing.T) {
		writeAtomic(t, cfgB, insecureGatewayConfig)
		get := func(from *tailnettest.Node, node string) int {
			client := from.HTTPClient()
			defer client.CloseIdleConnections()
			resp, err := client.Get("http://" + host(node) + "/tools/invoke")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		deadline := time.Now().Add(1500 * time.Millisecond)
		for get(bob, "bob-claw") != 503 {
			if time.Now().After(deadline) {
				t.Fatal("bob's gateway was not blocked after its config became insecure")
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, c := range []struct {
			from       *tailnettest.Node
			node       string
			wantStatus int
		}{{alice, "alice-claw", 200}, {alice, "claw", 200}, {bob, "claw", 503}, {carol, "alice-claw", 200}} {
			if got := get(c.from, c.node); got != c.wantStatus {
				t.Errorf("%s on %s: %d, want %d", c.from.Hostname, c.node, got, c.wantStatus)
			}
		}
		writeAtomic(t, cfgB, gatewayConfigFor("bob@example.com", "carol@example.com"))
		deadline = time.Now().Add(1500 * time.Millisecond)
		for get(bob, "bob-claw") != 200 {
			if time.Now().After(deadline) {
				t.Fatal("bob's gateway did not come back")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
