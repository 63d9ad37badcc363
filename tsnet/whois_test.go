package tsnet

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/wgengine/filter"
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
	c := got.Clone()
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

// peer returns a node with one address, as a netmap would hold it.
func peer(id tailcfg.NodeID, ip netip.Addr, user tailcfg.UserID) *tailcfg.Node {
	return &tailcfg.Node{
		ID:        id,
		StableID:  tailcfg.StableNodeID(fmt.Sprintf("n%d", id)),
		Key:       key.NewNode().Public(),
		Addresses: []netip.Prefix{netip.PrefixFrom(ip, 32)},
		Name:      fmt.Sprintf("peer%d.example.ts.net.", id),
		User:      user,
	}
}

func profiles(id tailcfg.UserID, login, display string) map[tailcfg.UserID]tailcfg.UserProfileView {
	return map[tailcfg.UserID]tailcfg.UserProfileView{id: (&tailcfg.UserProfile{ID: id, LoginName: login, DisplayName: display}).View()}
}

func TestWhoIsCache(t *testing.T) {
	alice := &WhoIs{Login: "alice@example.com", DisplayName: "Alice"}
	bob := &WhoIs{Login: "bob@example.com", DisplayName: "Bob"}
	tests := []struct {
		name string
		// run starts with the answer for peer A (node 1, user 10) being
		// looked up; it returns the generation to store it with.
		run       func(c *whoIsCache, clk *fakeClock, a, b *tailcfg.Node) (gen uint64)
		wantHit   bool
		wantStats WhoIsCacheStats // after run, put(A), and get(A)
	}{
		{
			name:      "hit after put",
			run:       func(c *whoIsCache, clk *fakeClock, a, b *tailcfg.Node) uint64 { return c.gen },
			wantHit:   true,
			wantStats: WhoIsCacheStats{Hits: 1, Entries: 1},
		},
		{
			name: "expired after ttl",
			run: func(c *whoIsCache, clk *fakeClock, a, b *tailcfg.Node) uint64 {
				clk.t = clk.t.Add(-whoIsTTL) // stored "ttl ago"
				return c.gen
			},
			wantStats: WhoIsCacheStats{Misses: 1},
		},
		{
			name: "answer fetched before a removal is not stored",
			run: func(c *whoIsCache, clk *fakeClock, a, b *tailcfg.Node) uint64 {
				gen := c.gen
				c.peersGone([]tailcfg.NodeID{99}, true)
				return gen
			},
			wantStats: WhoIsCacheStats{Misses: 1},
		},
		{
			name: "answer for a removed peer is not stored",
			run: func(c *whoIsCache, clk *fakeClock, a, b *tailcfg.Node) uint64 {
				c.peersGone([]tailcfg.NodeID{a.ID}, true)
				return c.gen
			},
			wantStats: WhoIsCacheStats{Misses: 1},
		},
		{
			name: "answer older than the announced identity is not stored",
			run: func(c *whoIsCache, clk *fakeClock, a, b *tailcfg.Node) uint64 {
				newer := a.Clone()
				newer.Key = key.NewNode().Public()
				c.peersChanged([]*tailcfg.Node{newer})
				return c.gen
			},
			wantStats: WhoIsCacheStats{Misses: 1},
		},
		{
			name: "answer matching the announced identity is stored",
			run: func(c *whoIsCache, clk *fakeClock, a, b *tailcfg.Node) uint64 {
				c.peersChanged([]*tailcfg.Node{a.Clone(), b})
				c.profilesChanged(profiles(10, "alice@example.com", "Alice"))
				return c.gen
			},
			wantHit:   true,
			wantStats: WhoIsCacheStats{Hits: 1, Entries: 1},
		},
		{
			name: "answer with an outdated profile is not stored",
			run: func(c *whoIsCache, clk *fakeClock, a, b *tailcfg.Node) uint64 {
				c.profilesChanged(profiles(10, "alice@example.com", "Alice Renamed"))
				return c.gen
			},
			wantStats: WhoIsCacheStats{Misses: 1},
		},
		{
			name: "disabled cache stores nothing",
			run: func(c *whoIsCache, clk *fakeClock, a, b *tailcfg.Node) uint64 {
				c.setEnabled(false)
				return c.gen
			},
			wantStats: WhoIsCacheStats{Misses: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newTestCache()
			a, b := peer(1, ipA, 10), peer(2, ipB, 20)
			gen := tt.run(c, clk, a, b)
			c.put(ipA, lookup{gen: gen}, alice, a, a.User)
			clk.t = time.Unix(1000, 0)
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

	// Invalidation of stored entries: A (alice) and B (bob) are cached,
	// then something is announced.
	invalidations := []struct {
		name     string
		announce func(c *whoIsCache, a, b *tailcfg.Node)
		wantA    bool // A still cached
		wantB    bool
	}{
		{"full netmap re-announces both unchanged", func(c *whoIsCache, a, b *tailcfg.Node) {
			c.peersChanged([]*tailcfg.Node{a.Clone(), b.Clone()})
		}, true, true},
		{"liveness-only change is not identity", func(c *whoIsCache, a, b *tailcfg.Node) {
			a2 := a.Clone()
			a2.Online = new(true)
			a2.HomeDERP = 7
			c.peersChanged([]*tailcfg.Node{a2})
		}, true, true},
		{"node key changed", func(c *whoIsCache, a, b *tailcfg.Node) {
			a2 := a.Clone()
			a2.Key = key.NewNode().Public()
			c.peersChanged([]*tailcfg.Node{a2})
		}, false, true},
		{"tags changed", func(c *whoIsCache, a, b *tailcfg.Node) {
			a2 := a.Clone()
			a2.Tags = []string{"tag:ci"}
			c.peersChanged([]*tailcfg.Node{a2})
		}, false, true},
		{"owner changed", func(c *whoIsCache, a, b *tailcfg.Node) {
			a2 := a.Clone()
			a2.User = 30
			c.peersChanged([]*tailcfg.Node{a2})
		}, false, true},
		{"node attributes changed", func(c *whoIsCache, a, b *tailcfg.Node) {
			a2 := a.Clone()
			a2.CapMap = tailcfg.NodeCapMap{"x": nil}
			c.peersChanged([]*tailcfg.Node{a2})
		}, false, true},
		{"address moved to a new node", func(c *whoIsCache, a, b *tailcfg.Node) {
			c.peersChanged([]*tailcfg.Node{peer(3, ipA, 10)})
		}, false, true},
		{"peer left", func(c *whoIsCache, a, b *tailcfg.Node) {
			c.peersGone([]tailcfg.NodeID{b.ID}, true)
		}, true, false},
		{"peer patched", func(c *whoIsCache, a, b *tailcfg.Node) {
			c.peersGone([]tailcfg.NodeID{a.ID}, false)
		}, false, true},
		{"profile renamed", func(c *whoIsCache, a, b *tailcfg.Node) {
			c.profilesChanged(profiles(20, "bob@example.com", "Robert"))
		}, true, false},
		{"profile re-announced unchanged", func(c *whoIsCache, a, b *tailcfg.Node) {
			c.profilesChanged(profiles(20, "bob@example.com", "Bob"))
		}, true, true},
		{"flush", func(c *whoIsCache, a, b *tailcfg.Node) { c.flush() }, false, false},
		{"disable and enable", func(c *whoIsCache, a, b *tailcfg.Node) {
			c.setEnabled(false)
			c.setEnabled(true)
		}, false, false},
	}
	for _, tt := range invalidations {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestCache()
			a, b := peer(1, ipA, 10), peer(2, ipB, 20)
			c.put(ipA, lookup{gen: c.gen}, alice, a, a.User)
			c.put(ipB, lookup{gen: c.gen}, bob, b, b.User)
			tt.announce(c, a, b)
			gotA, _ := c.get(ipA)
			gotB, _ := c.get(ipB)
			if (gotA != nil) != tt.wantA || (gotB != nil) != tt.wantB {
				t.Fatalf("cached after announce: A %v, B %v; want A %v, B %v", gotA != nil, gotB != nil, tt.wantA, tt.wantB)
			}
			wantDrops := uint64(0)
			for _, kept := range []bool{tt.wantA, tt.wantB} {
				if !kept {
					wantDrops++
				}
			}
			if s := c.snapshot(); s.Drops != wantDrops {
				t.Fatalf("Drops = %d, want %d", s.Drops, wantDrops)
			}
		})
	}
}

func TestWhoIsCacheBounded(t *testing.T) {
	c, clk := newTestCache()
	c.max = 2
	c.put(ipA, lookup{gen: c.gen}, &WhoIs{}, peer(1, ipA, 1), 1)
	clk.t = clk.t.Add(whoIsTTL) // ipA expires
	c.put(ipB, lookup{gen: c.gen}, &WhoIs{}, peer(2, ipB, 1), 1)
	c.put(ipC, lookup{gen: c.gen}, &WhoIs{}, peer(3, ipC, 1), 1) // full: the expired ipA goes first
	if s := c.snapshot(); s.Entries != 2 {
		t.Fatalf("entries = %d, want 2", s.Entries)
	}
	if got, _ := c.get(ipC); got == nil {
		t.Fatal("newest entry missing")
	}
	c.put(ipA, lookup{gen: c.gen}, &WhoIs{}, peer(1, ipA, 1), 1) // full of live entries: one is evicted
	if s := c.snapshot(); s.Entries != 2 {
		t.Fatalf("entries = %d, want 2", s.Entries)
	}
}

func TestWhoIsCacheSharesReadOnlyAnswers(t *testing.T) {
	c, _ := newTestCache()
	orig := &WhoIs{Login: "alice@example.com", Tags: []string{"tag:a"}}
	c.put(ipA, lookup{gen: c.gen}, orig, peer(1, ipA, 1), 1)
	// The cache keeps its own copy: the answer handed to the first caller
	// can be edited without changing what later callers get.
	orig.Tags[0] = "tag:mutated-after-put"
	got, _ := c.get(ipA)
	if got == orig || got.Tags[0] != "tag:a" {
		t.Fatalf("cached answer = %p %v, want a private copy with [tag:a]", got, got.Tags)
	}
	// Hits share one read-only answer rather than copying it per request.
	again, _ := c.get(ipA)
	if again != got {
		t.Fatalf("second hit returned %p, want the shared %p", again, got)
	}
	if s := c.snapshot(); s.Hits != 2 {
		t.Fatalf("hits = %d, want 2", s.Hits)
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

// TestWhoIsCacheFollowsPacketFilter: an answer holds only while the node
// runs the packet filter that was in force before it was asked for; grants
// live there, and control changes it without any IPN bus message.
func TestWhoIsCacheFollowsPacketFilter(t *testing.T) {
	c, _ := newTestCache()
	f1, f2 := new(filter.Filter), new(filter.Filter)
	current := f1
	grants := map[*filter.Filter]tailcfg.PeerCapMap{f1: {"example.com/cap/x": nil}, f2: nil}
	c.policy.Store(&policySource{
		current: func() *filter.Filter { return current },
		caps:    func(f *filter.Filter, _ netip.Addr) (tailcfg.PeerCapMap, bool) { return grants[f], true },
	})
	granted := &WhoIs{Login: "carol@example.com", Caps: map[string][]json.RawMessage{"example.com/cap/x": nil}}

	_, lk := c.get(ipA)
	c.put(ipA, lk, granted, peer(1, ipA, 1), 1)
	if got, _ := c.get(ipA); got == nil {
		t.Fatal("answer not cached under an unchanged filter")
	}
	changes := c.changes.Load()
	current = f2 // the grant is revoked: a new filter
	if got, _ := c.get(ipA); got != nil {
		t.Fatalf("get after a new packet filter = %+v, want a miss", got)
	}
	if s := c.snapshot(); s.Stale != 1 || s.Entries != 0 {
		t.Errorf("stats %+v, want 1 stale and no entries", s)
	}
	if c.changes.Load() != changes {
		t.Error("a filter change counted as an announced change; the poll sees it by the filter")
	}

	// A new filter that grants what the old one did leaves the answer be.
	_, lk = c.get(ipA)
	current = f1
	c.put(ipA, lk, granted, peer(1, ipA, 1), 1)
	f3 := new(filter.Filter)
	grants[f3] = tailcfg.PeerCapMap{"example.com/cap/x": nil}
	current = f3
	if got, _ := c.get(ipA); got == nil {
		t.Fatal("answer dropped by a new filter granting the same capabilities")
	}
	if got, _ := c.get(ipA); got == nil {
		t.Fatal("answer dropped on the second get under the same new filter")
	}
	// A grant whose value changed is a change.
	f4 := new(filter.Filter)
	grants[f4] = tailcfg.PeerCapMap{"example.com/cap/x": {`{"role":"viewer"}`}}
	current = f4
	if got, _ := c.get(ipA); got != nil {
		t.Fatalf("get after a grant's value changed = %+v, want a miss", got)
	}

	// An answer asked for under f1 but stored after the grant was revoked
	// (f2) is stale at once.
	current = f1
	_, lk = c.get(ipB)
	current = f2
	c.put(ipB, lk, granted, peer(2, ipB, 1), 1)
	if got, _ := c.get(ipB); got != nil {
		t.Fatalf("answer fetched across a filter change = %+v, want a miss", got)
	}
}

// TestWhoIsCacheCountsChanges: the change count, which OnPolicyChange
// watchers follow, moves on a peer's changed identity, a peer leaving, a
// renamed owner and a flush, and not on an unchanged re-announcement.
func TestWhoIsCacheCountsChanges(t *testing.T) {
	c, _ := newTestCache()
	a := peer(1, ipA, 1)
	c.peersChanged([]*tailcfg.Node{a})
	c.profilesChanged(profiles(1, "alice@example.com", "Alice"))
	base := c.changes.Load()
	c.peersChanged([]*tailcfg.Node{a})
	c.profilesChanged(profiles(1, "alice@example.com", "Alice"))
	if got := c.changes.Load(); got != base {
		t.Fatalf("unchanged re-announcement moved the count %d -> %d", base, got)
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"tags changed", func() { b := *a; b.Tags = []string{"tag:x"}; c.peersChanged([]*tailcfg.Node{&b}) }},
		{"profile renamed", func() { c.profilesChanged(profiles(1, "alice@example.com", "Alice B")) }},
		{"peer left", func() { c.peersGone([]tailcfg.NodeID{1}, true) }},
		{"flush", func() { c.flush() }},
	}
	for _, s := range steps {
		before := c.changes.Load()
		s.do()
		if c.changes.Load() == before {
			t.Errorf("%s: change count did not move", s.name)
		}
	}
}
