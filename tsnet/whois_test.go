package tsnet

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

func TestWhoIsFromResponse(t *testing.T) {
	nk := key.NewNode().Public()
	res := &apitype.WhoIsResponse{
		Node: &tailcfg.Node{
			ID:       7,
			StableID: "nStable7",
			Name:     "alice-laptop.tail-scale.ts.net.",
			Key:      nk,
			Tags:     []string{"tag:ci"},
		},
		UserProfile: &tailcfg.UserProfile{LoginName: "alice@example.com", DisplayName: "Alice"},
		CapMap: tailcfg.PeerCapMap{
			"example.com/cap/clawgate": {`{"scopes":["operator.read"]}`},
		},
	}
	got := whoIsFromResponse(res)
	want := &WhoIs{
		Login:       "alice@example.com",
		DisplayName: "Alice",
		Node:        "alice-laptop",
		NodeFQDN:    "alice-laptop.tail-scale.ts.net",
		NodeID:      "nStable7",
		Tailnet:     "tail-scale.ts.net",
		Tags:        []string{"tag:ci"},
		Caps:        map[string][]json.RawMessage{"example.com/cap/clawgate": {json.RawMessage(`{"scopes":["operator.read"]}`)}},
		NodeKey:     nk.String(),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("whoIsFromResponse() = %+v, want %+v", got, want)
	}
	c := got.clone()
	c.Tags[0] = "tag:changed"
	c.Caps["example.com/cap/clawgate"][0][0] = 'X'
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("editing a clone changed the original: %+v", got)
	}
}

func TestWhoIsFromResponseBareName(t *testing.T) {
	got := whoIsFromResponse(&apitype.WhoIsResponse{
		Node:        &tailcfg.Node{Name: "", ComputedName: "bob"},
		UserProfile: &tailcfg.UserProfile{},
	})
	if got.Node != "bob" || got.Tailnet != "" || got.NodeKey != "" || got.Caps != nil {
		t.Fatalf("whoIsFromResponse(no MagicDNS) = %+v", got)
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestCache() (*whoIsCache, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newWhoIsCache()
	c.now = clk.now
	c.setEnabled(true)
	return c, clk
}

var (
	ipA = netip.MustParseAddr("100.64.0.1")
	ipB = netip.MustParseAddr("100.64.0.2")
	ipC = netip.MustParseAddr("100.64.0.3")
)

func TestWhoIsCache(t *testing.T) {
	alice := &WhoIs{Login: "alice@example.com"}
	tests := []struct {
		name      string
		run       func(c *whoIsCache, clk *fakeClock)
		wantHit   bool
		wantStats WhoIsCacheStats
	}{
		{
			name: "hit after put",
			run: func(c *whoIsCache, clk *fakeClock) {
				_, gen := c.get(ipA)
				c.put(ipA, gen, alice, 1)
			},
			wantHit:   true,
			wantStats: WhoIsCacheStats{Hits: 1, Misses: 1, Entries: 1},
		},
		{
			name: "expired after ttl",
			run: func(c *whoIsCache, clk *fakeClock) {
				_, gen := c.get(ipA)
				c.put(ipA, gen, alice, 1)
				clk.t = clk.t.Add(whoIsTTL)
			},
			wantStats: WhoIsCacheStats{Misses: 2},
		},
		{
			name: "still fresh just before ttl",
			run: func(c *whoIsCache, clk *fakeClock) {
				_, gen := c.get(ipA)
				c.put(ipA, gen, alice, 1)
				clk.t = clk.t.Add(whoIsTTL - time.Nanosecond)
			},
			wantHit:   true,
			wantStats: WhoIsCacheStats{Hits: 1, Misses: 1, Entries: 1},
		},
		{
			name: "answer fetched before an invalidation is not stored",
			run: func(c *whoIsCache, clk *fakeClock) {
				_, gen := c.get(ipA)
				c.dropNodes([]tailcfg.NodeID{99}, nil)
				c.put(ipA, gen, alice, 1)
			},
			wantStats: WhoIsCacheStats{Misses: 2},
		},
		{
			name: "disabled cache stores nothing",
			run: func(c *whoIsCache, clk *fakeClock) {
				c.setEnabled(false)
				_, gen := c.get(ipA)
				c.put(ipA, gen, alice, 1)
			},
			wantStats: WhoIsCacheStats{Misses: 2},
		},
		{
			name: "disabling flushes",
			run: func(c *whoIsCache, clk *fakeClock) {
				_, gen := c.get(ipA)
				c.put(ipA, gen, alice, 1)
				c.setEnabled(false)
				c.setEnabled(true)
			},
			wantStats: WhoIsCacheStats{Misses: 2, Drops: 1},
		},
		{
			name: "peer changed drops by node id",
			run: func(c *whoIsCache, clk *fakeClock) {
				_, gen := c.get(ipA)
				c.put(ipA, gen, alice, 1)
				c.put(ipB, gen, alice, 2)
				c.dropNodes([]tailcfg.NodeID{1}, nil)
			},
			wantStats: WhoIsCacheStats{Misses: 2, Drops: 1, Entries: 1},
		},
		{
			name: "peer changed drops by address",
			run: func(c *whoIsCache, clk *fakeClock) {
				_, gen := c.get(ipA)
				c.put(ipA, gen, alice, 1)
				c.dropNodes(nil, []netip.Addr{ipA})
			},
			wantStats: WhoIsCacheStats{Misses: 2, Drops: 1},
		},
		{
			name: "other peer changing keeps the entry",
			run: func(c *whoIsCache, clk *fakeClock) {
				_, gen := c.get(ipA)
				c.put(ipA, gen, alice, 1)
				c.dropNodes([]tailcfg.NodeID{2}, []netip.Addr{ipB})
			},
			wantHit:   true,
			wantStats: WhoIsCacheStats{Hits: 1, Misses: 1, Entries: 1},
		},
		{
			name: "flush",
			run: func(c *whoIsCache, clk *fakeClock) {
				_, gen := c.get(ipA)
				c.put(ipA, gen, alice, 1)
				c.put(ipB, gen, alice, 2)
				c.flush()
			},
			wantStats: WhoIsCacheStats{Misses: 2, Drops: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newTestCache()
			tt.run(c, clk)
			got, _ := c.get(ipA)
			if (got != nil) != tt.wantHit {
				t.Fatalf("get(%v) = %+v, want hit %v", ipA, got, tt.wantHit)
			}
			if got != nil && got.Login != alice.Login {
				t.Fatalf("get(%v).Login = %q, want %q", ipA, got.Login, alice.Login)
			}
			if s := c.snapshot(); s != tt.wantStats {
				t.Fatalf("stats = %+v, want %+v", s, tt.wantStats)
			}
		})
	}
}

func TestWhoIsCacheBounded(t *testing.T) {
	c, clk := newTestCache()
	c.max = 2
	_, gen := c.get(ipA)
	c.put(ipA, gen, &WhoIs{}, 1)
	clk.t = clk.t.Add(whoIsTTL) // ipA expires
	c.put(ipB, gen, &WhoIs{}, 2)
	c.put(ipC, gen, &WhoIs{}, 3) // full: the expired ipA goes first
	if s := c.snapshot(); s.Entries != 2 {
		t.Fatalf("entries = %d, want 2", s.Entries)
	}
	if got, _ := c.get(ipC); got == nil {
		t.Fatal("newest entry missing")
	}
	c.put(ipA, gen, &WhoIs{}, 1) // full of live entries: one is evicted
	if s := c.snapshot(); s.Entries != 2 {
		t.Fatalf("entries = %d, want 2", s.Entries)
	}
}

func TestWhoIsCacheReturnsCopies(t *testing.T) {
	c, _ := newTestCache()
	_, gen := c.get(ipA)
	orig := &WhoIs{Login: "alice@example.com", Tags: []string{"tag:a"}}
	c.put(ipA, gen, orig, 1)
	orig.Tags[0] = "tag:mutated-after-put"
	got, _ := c.get(ipA)
	got.Tags[0] = "tag:mutated-by-caller"
	again, _ := c.get(ipA)
	if again.Tags[0] != "tag:a" {
		t.Fatalf("cached Tags = %v, want [tag:a]", again.Tags)
	}
}

func TestIdentityNeutral(t *testing.T) {
	nk := key.NewNode().Public()
	dk := key.NewDisco().Public()
	now := time.Now()
	tests := []struct {
		name string
		pc   *tailcfg.PeerChange
		want bool
	}{
		{"nil", nil, true},
		{"online", &tailcfg.PeerChange{NodeID: 1, Online: new(true)}, true},
		{"last seen", &tailcfg.PeerChange{NodeID: 1, LastSeen: &now}, true},
		{"derp and endpoints", &tailcfg.PeerChange{NodeID: 1, DERPRegion: 2, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("1.2.3.4:5")}}, true},
		{"disco key", &tailcfg.PeerChange{NodeID: 1, DiscoKey: &dk}, true},
		{"node key", &tailcfg.PeerChange{NodeID: 1, Key: &nk}, false},
		{"key expiry", &tailcfg.PeerChange{NodeID: 1, KeyExpiry: &now}, false},
		{"cap map", &tailcfg.PeerChange{NodeID: 1, CapMap: tailcfg.NodeCapMap{"x": nil}}, false},
		{"capability version", &tailcfg.PeerChange{NodeID: 1, Cap: 100}, false},
		{"key signature", &tailcfg.PeerChange{NodeID: 1, KeySignature: []byte{1}}, false},
		{"online and key", &tailcfg.PeerChange{NodeID: 1, Online: new(true), Key: &nk}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := identityNeutral(tt.pc); got != tt.want {
				t.Errorf("identityNeutral(%+v) = %v, want %v", tt.pc, got, tt.want)
			}
		})
	}
}
