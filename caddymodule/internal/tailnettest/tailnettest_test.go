package tailnettest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/tsnet"
	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"
)

const clawgateCap = "example.com/cap/clawgate"

// serve runs h on ln until the test ends.
func serve(t *testing.T, ln net.Listener, h http.HandlerFunc) {
	t.Helper()
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// getJSON fetches url with c and decodes the JSON answer into v.
func getJSON(t *testing.T, c *http.Client, url string, v any) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, res.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: decoding %s: %v", url, body, err)
	}
}

func TestTailnet(t *testing.T) {
	t0 := time.Now()
	tn := New(t)
	tControl := time.Since(t0)

	gw := tn.NewNode(t, "gw")
	tGW := time.Since(t0)
	gwLC, err := gw.LocalClient()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := gw.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, func(w http.ResponseWriter, r *http.Request) {
		who, err := gwLC.WhoIs(r.Context(), r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(who)
	})

	aliceCaps := tailcfg.PeerCapMap{clawgateCap: {`{"scopes":["operator.read"]}`}}
	alice := tn.NewNode(t, "alice-laptop", WithLogin("alice@example.com"), WithCapMap(aliceCaps))
	bob := tn.NewNode(t, "bob-phone", WithLogin("bob@example.com"))
	ci := tn.NewNode(t, "ci-bot", WithTags("tag:ci"))
	tAll := time.Since(t0)

	tests := []struct {
		client    *Node
		wantLogin string
		wantTags  []string
		wantCaps  []tailcfg.RawMessage
	}{
		{alice, "alice@example.com", nil, aliceCaps[clawgateCap]},
		{bob, "bob@example.com", nil, nil},
		{ci, TaggedDevices, []string{"tag:ci"}, nil},
	}
	var tFirst time.Duration
	for _, tt := range tests {
		t.Run(tt.client.Hostname, func(t *testing.T) {
			tn.WaitPeer(t, tt.client, "gw")
			start := time.Now()
			var who apitype.WhoIsResponse
			getJSON(t, tt.client.HTTPClient(), fmt.Sprintf("http://%s/", gw.IPs[0]), &who)
			if tFirst == 0 {
				tFirst = time.Since(start)
			}
			if got := who.UserProfile.LoginName; got != tt.wantLogin {
				t.Errorf("gw WhoIs(%s).LoginName = %q, want %q", tt.client.Hostname, got, tt.wantLogin)
			}
			if got, want := who.Node.Name, tt.client.Hostname+"."+Domain+"."; got != want {
				t.Errorf("gw WhoIs(%s).Node.Name = %q, want %q", tt.client.Hostname, got, want)
			}
			if got := who.Node.Tags; !slices.Equal(got, tt.wantTags) {
				t.Errorf("gw WhoIs(%s).Node.Tags = %q, want %q", tt.client.Hostname, got, tt.wantTags)
			}
			if got := who.CapMap[clawgateCap]; !slices.Equal(got, tt.wantCaps) {
				t.Errorf("gw WhoIs(%s).CapMap[%s] = %q, want %q", tt.client.Hostname, clawgateCap, got, tt.wantCaps)
			}
		})
	}
	t.Logf("timings: control+DERP %v, gw up %v, 4 nodes up %v, first request %v",
		tControl.Round(time.Millisecond), tGW.Round(time.Millisecond), tAll.Round(time.Millisecond), tFirst.Round(time.Millisecond))

	// The same login on two nodes is one user.
	alice2 := tn.NewNode(t, "alice-phone", WithLogin("alice@example.com"))
	tn.WaitPeer(t, alice2, "gw")
	var who2 apitype.WhoIsResponse
	getJSON(t, alice2.HTTPClient(), fmt.Sprintf("http://%s/", gw.IPs[0]), &who2)
	aliceNode := whoIsOn(t, gwLC, alice)
	if who2.UserProfile.LoginName != "alice@example.com" || who2.Node.User != aliceNode.Node.User {
		t.Errorf("alice-phone: login %q user %v, want alice@example.com user %v", who2.UserProfile.LoginName, who2.Node.User, aliceNode.Node.User)
	}
	if len(who2.CapMap[clawgateCap]) != 0 {
		t.Errorf("alice-phone got alice-laptop's caps: %v", who2.CapMap)
	}
}

// whoIsOn asks lc who peer is.
func whoIsOn(t *testing.T, lc interface {
	WhoIs(context.Context, string) (*apitype.WhoIsResponse, error)
}, peer *Node) *apitype.WhoIsResponse {
	t.Helper()
	who, err := lc.WhoIs(context.Background(), peer.IPs[0].String())
	if err != nil {
		t.Fatalf("WhoIs(%s): %v", peer.Hostname, err)
	}
	return who
}

// TestClawgateNode runs clawgate's own tsnet.Node on the tailnet: reachable
// from peers, WhoIs answers (cached), certificate domains.
func TestClawgateNode(t *testing.T) {
	t0 := time.Now()
	tn := New(t)
	alice := tn.NewNode(t, "alice-laptop", WithLogin("alice@example.com"))
	bob := tn.NewNode(t, "bob-phone", WithLogin("bob@example.com"))

	node, err := tsnet.New(tn.Config(t, "gw2"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	tStart := time.Since(t0)
	ln, err := node.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, func(w http.ResponseWriter, r *http.Request) {
		who, err := node.WhoIs(r.Context(), r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(who)
	})
	tn.WaitPeer(t, alice, "gw2")
	tn.WaitPeer(t, bob, "gw2")
	t.Logf("timings: tailnet + 2 peers + clawgate node up %v, reachable %v", tStart.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))

	ips := node.TailnetIPs()
	if len(ips) == 0 || !ips[0].Is4() {
		t.Fatalf("TailnetIPs() = %v, want an IPv4 address first", ips)
	}
	url := fmt.Sprintf("http://%s/", ips[0])

	get := func(c *Node) tsnet.WhoIs {
		t.Helper()
		var who tsnet.WhoIs
		getJSON(t, c.HTTPClient(), url, &who)
		return who
	}
	stats0 := node.WhoIsCacheStats()
	first := get(alice)
	if first.Login != "alice@example.com" || first.Node != "alice-laptop" || first.NodeFQDN != "alice-laptop."+Domain || first.Tailnet != Domain {
		t.Errorf("WhoIs(alice) = %+v", first)
	}
	if !strings.HasPrefix(first.NodeKey, "nodekey:") || first.NodeID == "" {
		t.Errorf("WhoIs(alice) NodeKey %q NodeID %q", first.NodeKey, first.NodeID)
	}
	second := get(alice)
	stats1 := node.WhoIsCacheStats()
	if d := stats1.Misses - stats0.Misses; d != 1 {
		t.Errorf("misses after two requests from alice = %d, want 1", d)
	}
	if d := stats1.Hits - stats0.Hits; d != 1 {
		t.Errorf("hits after two requests from alice = %d, want 1", d)
	}
	if second.Login != first.Login || second.NodeKey != first.NodeKey {
		t.Errorf("cached WhoIs(alice) = %+v, want %+v", second, first)
	}

	// A change to bob's node (here, its node attributes) drops his entry
	// but not alice's.
	if got := get(bob).Login; got != "bob@example.com" {
		t.Errorf("WhoIs(bob).Login = %q", got)
	}
	get(bob)
	before := node.WhoIsCacheStats()
	if before.Entries != 2 {
		t.Fatalf("cache entries = %d, want 2 (alice, bob)", before.Entries)
	}
	bobStatus, err := bob.LocalClient()
	if err != nil {
		t.Fatal(err)
	}
	st, err := bobStatus.StatusWithoutPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tn.Control.SetNodeCapMap(st.Self.PublicKey, tailcfg.NodeCapMap{"example.com/attr/changed": nil})
	deadline := time.Now().Add(10 * time.Second)
	for node.WhoIsCacheStats().Entries == 2 {
		if time.Now().After(deadline) {
			t.Fatal("bob's node changed, but his WhoIs entry was not dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := node.WhoIsCacheStats().Entries; got != 1 {
		t.Fatalf("cache entries after bob changed = %d, want 1 (alice)", got)
	}
	get(bob)
	get(alice)
	after := node.WhoIsCacheStats()
	if d := after.Misses - before.Misses; d != 1 {
		t.Errorf("misses after bob changed = %d, want 1 (bob only)", d)
	}
	if d := after.Hits - before.Hits; d != 1 {
		t.Errorf("hits after bob changed = %d, want 1 (alice)", d)
	}

	domains, err := node.CertDomains(ctx)
	if err != nil {
		t.Fatalf("CertDomains() = %v", err)
	}
	if want := []string{"gw2." + Domain}; !slices.Equal(domains, want) {
		t.Errorf("CertDomains() = %q, want %q", domains, want)
	}

	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-node.Done():
	default:
		t.Fatal("Done() not closed after Close returned")
	}
	if _, err := node.WhoIs(ctx, alice.IPs[0].String()+":1"); err == nil {
		t.Error("WhoIs after Close succeeded")
	}
}

// TestStartWithoutTestingTB runs the tailnet as a program does, through the
// API that returns errors: nodes come up and reach each other, bad node
// options are errors rather than panics, and Close stops the servers.
func TestStartWithoutTestingTB(t *testing.T) {
	tn, err := Start(nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer tn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	a, err := tn.StartNode(ctx, dir+"/a", "a", WithLogin("alice@example.com"))
	if err != nil {
		t.Fatalf("StartNode(a): %v", err)
	}
	defer a.Close()
	b, err := tn.StartNode(ctx, dir+"/b", "b", WithTags("tag:ci"))
	if err != nil {
		t.Fatalf("StartNode(b): %v", err)
	}
	defer b.Close()
	if err := tn.AwaitPeer(ctx, a, "b"); err != nil {
		t.Fatalf("AwaitPeer(a, b): %v", err)
	}

	bad := []struct {
		name, host string
		opts       []NodeOption
		want       string
	}{
		{"hostname twice", "a", nil, `hostname "a" used twice`},
		{"login and tags", "c", []NodeOption{WithLogin("carol@example.com"), WithTags("tag:x")}, "exclude each other"},
	}
	for _, tt := range bad {
		if _, err := tn.StartNode(ctx, dir+"/bad", tt.host, tt.opts...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: StartNode(%q) = %v, want an error containing %q", tt.name, tt.host, err, tt.want)
		}
		if _, err := tn.NodeConfig(dir+"/bad", tt.host, tt.opts...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: NodeConfig(%q) = %v, want an error containing %q", tt.name, tt.host, err, tt.want)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = tn.AwaitPeer(wctx, a, "nobody")
	wcancel()
	if err == nil || !strings.Contains(err.Error(), `waiting for peer "nobody"`) {
		t.Errorf("AwaitPeer(a, nobody) = %v, want a timeout naming the peer", err)
	}

	a.Close()
	b.Close()
	tn.Close()
	tn.Close() // a second Close does nothing
	c := &http.Client{Timeout: 5 * time.Second}
	if res, err := c.Get(tn.ControlURL + "/key"); err == nil {
		res.Body.Close()
		t.Errorf("the control server still answers after Close: %s", res.Status)
	}
}
