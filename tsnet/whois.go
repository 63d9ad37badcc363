package tsnet

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"
	"tailscale.com/wgengine/filter"
)

// WhoIs describes the tailnet peer behind a connection, as the node's
// control server sees it.
type WhoIs struct {
	// Login is the owner's login name, such as "alice@example.com". Tagged
	// nodes belong to no person: the control server reports the pseudo-user
	// "tagged-devices" for them, so policy should match Tags instead.
	Login string
	// DisplayName is the owner's display name.
	DisplayName string
	// Node is the peer's short MagicDNS name, such as "alice-laptop".
	Node string
	// NodeFQDN is the peer's full MagicDNS name without the trailing dot,
	// such as "alice-laptop.tail1234.ts.net".
	NodeFQDN string
	// NodeID is the peer's stable node ID.
	NodeID string
	// Tailnet is the MagicDNS suffix of the peer's own tailnet, such as
	// "tail1234.ts.net" (for a node shared in from another tailnet, that
	// tailnet's suffix).
	Tailnet string
	// Tags are the peer's ACL tags; empty for a node owned by a user.
	Tags []string
	// Caps are the application capabilities the tailnet policy grants the
	// peer towards this node (grants with "app"), keyed by capability name.
	Caps map[string][]json.RawMessage
	// NodeKey is the peer's current node public key ("nodekey:...").
	NodeKey string
	// OS is the peer's operating system as it reports it ("linux", "iOS", …);
	// empty when unknown.
	OS string
}

// whoIsFromResponse converts LocalAPI's answer into a WhoIs.
func whoIsFromResponse(r *apitype.WhoIsResponse) *WhoIs {
	w := &WhoIs{}
	if up := r.UserProfile; up != nil {
		w.Login = up.LoginName
		w.DisplayName = up.DisplayName
	}
	if n := r.Node; n != nil {
		w.NodeFQDN = strings.TrimSuffix(n.Name, ".")
		w.Node, w.Tailnet, _ = strings.Cut(w.NodeFQDN, ".")
		if w.Node == "" {
			w.Node = n.ComputedName
		}
		w.NodeID = string(n.StableID)
		w.Tags = slices.Clone(n.Tags)
		if !n.Key.IsZero() {
			w.NodeKey = n.Key.String()
		}
		if n.Hostinfo.Valid() {
			w.OS = n.Hostinfo.OS()
		}
	}
	if len(r.CapMap) > 0 {
		w.Caps = make(map[string][]json.RawMessage, len(r.CapMap))
		for name, vals := range r.CapMap {
			raw := make([]json.RawMessage, len(vals))
			for i, v := range vals {
				raw[i] = json.RawMessage(v)
			}
			w.Caps[string(name)] = raw
		}
	}
	return w
}

// Clone returns a deep copy. Answers from Node.WhoIs are shared with the
// node's cache and must not be modified; a caller that needs to edit one
// edits a clone.
func (w *WhoIs) Clone() *WhoIs {
	c := *w
	c.Tags = slices.Clone(w.Tags)
	if w.Caps != nil {
		c.Caps = make(map[string][]json.RawMessage, len(w.Caps))
		for k, vals := range w.Caps {
			cv := make([]json.RawMessage, len(vals))
			for i, v := range vals {
				cv[i] = slices.Clone(v)
			}
			c.Caps[k] = cv
		}
	}
	return &c
}

// WhoIsCacheStats counts WhoIs cache use since the node was created.
type WhoIsCacheStats struct {
	Hits    uint64 // answered from the cache
	Misses  uint64 // asked the node's LocalAPI
	Drops   uint64 // entries removed because their peer changed or left, or the cache was flushed
	Stale   uint64 // entries refused because the node's packet filter (its grants) changed since
	Entries int    // entries held now
}

const (
	// whoIsTTL bounds how stale an answer can be if a change notification
	// is ever missed; invalidation by notification is the main mechanism.
	whoIsTTL = 30 * time.Second
	// whoIsMaxEntries bounds memory: one entry per peer IP that talked to
	// us within whoIsTTL.
	whoIsMaxEntries = 4096
)

type whoIsEntry struct {
	who     *WhoIs
	policy  *filter.Filter // the node's packet filter before the answer was asked for
	nodeID  tailcfg.NodeID
	nodeFP  string // nodeIdentity of the node when answered
	userID  tailcfg.UserID
	expires time.Time
}

// whoIsCache maps a peer's tailnet IP to its WhoIs answer.
//
// It is filled only while a watcher of the node's IPN bus is connected
// (enabled), because the watcher is what tells it when a peer changes.
// Full netmaps re-announce every peer, so a change drops an entry only if
// the peer's identity (nodeIdentity) or its owner's profile really differs.
//
// Lookups race with notifications: an answer fetched just before a change
// must not be stored just after it. gen counts the invalidations that carry
// no comparable identity (flushes, removals, patches), and put refuses an
// answer whose identity differs from the latest one announced.
//
// Capability grants are not part of a peer: they live in the node's packet
// filter, which control pushes without any IPN bus message (tailscale.com
// v1.102.5 delivers a filter-only change narrowly, by
// PacketFilterUpdater). So every entry remembers the filter in force before
// its answer was asked for, and once the node runs another filter (a new
// filter is a new object, and an entry that holds the old one keeps its
// address from being reused) get works the peer's grants out again from the
// new filter, as LocalAPI does: the entry stands only if they are the same.
type whoIsCache struct {
	now func() time.Time
	ttl time.Duration
	max int
	// policy is the node's packet filter; nil until the node has an engine
	// (entries are only stored while it runs).
	policy atomic.Pointer[policySource]
	// changes counts announced changes of peers, profiles and of the node
	// itself that can alter an answer, for watchers (see Node.OnPolicyChange).
	changes atomic.Uint64

	mu       sync.RWMutex
	hits     atomic.Uint64 // cache hits, counted outside the lock
	enabled  bool
	gen      uint64
	entries  map[netip.Addr]whoIsEntry
	nodeFPs  map[tailcfg.NodeID]string // latest identity announced per peer
	removed  map[tailcfg.NodeID]bool   // peers announced gone
	profiles map[tailcfg.UserID]string // latest profileKey announced per user
	stats    WhoIsCacheStats
}

func newWhoIsCache() *whoIsCache {
	return &whoIsCache{now: time.Now, ttl: whoIsTTL, max: whoIsMaxEntries}
}

// nodeIdentity condenses the fields of a node that a WhoIs answer depends on
// (endpoints, DERP home and liveness are left out: they change often and say
// nothing about who the peer is).
func nodeIdentity(n *tailcfg.Node) string {
	b, err := json.Marshal(struct {
		ID        tailcfg.NodeID
		StableID  tailcfg.StableNodeID
		Key       string
		Addresses []netip.Prefix
		Name      string
		User      tailcfg.UserID
		Sharer    tailcfg.UserID
		Tags      []string
		CapMap    tailcfg.NodeCapMap
	}{n.ID, n.StableID, n.Key.String(), n.Addresses, n.Name, n.User, n.Sharer, n.Tags, n.CapMap})
	if err != nil {
		return "unknown:" + err.Error() // never equal to a real identity
	}
	return string(b)
}

// profileKey condenses the parts of a user profile that a WhoIs answer holds.
func profileKey(login, displayName string) string {
	return login + "\x00" + displayName
}

// policySource is where the cache reads the node's packet filter.
type policySource struct {
	// current returns the filter in force now.
	current func() *filter.Filter
	// caps returns the grants f gives the peer at src towards the node, as
	// LocalAPI's WhoIs works them out, and false if it cannot tell.
	caps func(f *filter.Filter, src netip.Addr) (tailcfg.PeerCapMap, bool)
}

// currentPolicy returns the node's packet filter now, or nil.
func (c *whoIsCache) currentPolicy() *filter.Filter {
	if src := c.policy.Load(); src != nil {
		return src.current()
	}
	return nil
}

// sameCaps reports whether the filter policy grants the peer at ip exactly
// the capabilities who holds.
func (c *whoIsCache) sameCaps(policy *filter.Filter, ip netip.Addr, who *WhoIs) bool {
	src := c.policy.Load()
	if src == nil || policy == nil {
		return false
	}
	caps, ok := src.caps(policy, ip)
	if !ok || len(caps) != len(who.Caps) {
		return false
	}
	for name, vals := range caps {
		have, ok := who.Caps[string(name)]
		if !ok || len(have) != len(vals) {
			return false
		}
		for i := range vals {
			if string(have[i]) != string(vals[i]) {
				return false
			}
		}
	}
	return true
}

// lookup is what put needs to know about the cache as it was before the
// answer was asked for.
type lookup struct {
	gen    uint64
	policy *filter.Filter
}

// get returns the cached answer for ip, shared and read-only, and, if there
// is none, the state to pass to put. A hit takes only the read lock and
// copies nothing: it is on the path of every tailnet request.
func (c *whoIsCache) get(ip netip.Addr) (*WhoIs, lookup) {
	now := c.now()
	policy := c.currentPolicy()
	c.mu.RLock()
	e, ok := c.entries[ip]
	gen := c.gen
	c.mu.RUnlock()
	if ok && now.Before(e.expires) && e.policy == policy {
		c.hits.Add(1)
		return e.who, lookup{gen, policy}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[ip]; ok {
		switch {
		case !now.Before(e.expires):
			delete(c.entries, ip)
		case e.policy == policy:
			// Refreshed by another caller meanwhile.
			c.hits.Add(1)
			return e.who, lookup{c.gen, policy}
		case c.sameCaps(policy, ip, e.who):
			// A new filter that grants this peer what it did.
			e.policy = policy
			c.entries[ip] = e
			c.hits.Add(1)
			return e.who, lookup{c.gen, policy}
		default:
			c.stats.Stale++
			delete(c.entries, ip)
		}
	}
	c.stats.Misses++
	return nil, lookup{c.gen, policy}
}

// put stores who, the answer for ip about node (owned by userID), unless the
// cache was invalidated since lk was taken or a newer identity of the node
// or its owner has been announced. The entry holds lk's packet filter, the
// one in force before the answer was asked for: if the filter changed while
// it was being answered, the entry is stale at once.
func (c *whoIsCache) put(ip netip.Addr, lk lookup, who *WhoIs, node *tailcfg.Node, userID tailcfg.UserID) {
	fp := nodeIdentity(node)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.enabled || lk.gen != c.gen || c.removed[node.ID] {
		return
	}
	if latest, ok := c.nodeFPs[node.ID]; ok && latest != fp {
		return
	}
	if latest, ok := c.profiles[userID]; ok && latest != profileKey(who.Login, who.DisplayName) {
		return
	}
	now := c.now()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
	}
	if len(c.entries) >= c.max {
		// Full of live entries: evict an arbitrary one. Map order is
		// random enough that no peer can pin the others out.
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	if c.entries == nil {
		c.entries = make(map[netip.Addr]whoIsEntry)
	}
	// A private copy: the caller keeps who, the cache hands this one out.
	c.entries[ip] = whoIsEntry{who: who.Clone(), policy: lk.policy, nodeID: node.ID, nodeFP: fp, userID: userID, expires: now.Add(c.ttl)}
}

// setEnabled turns caching on or off; turning it off flushes it and forgets
// what was announced, since announcements may be missed while off.
func (c *whoIsCache) setEnabled(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !on {
		c.flushLocked()
		c.nodeFPs, c.removed, c.profiles = nil, nil, nil
	}
	c.enabled = on
}

// flush drops every entry.
func (c *whoIsCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
}

func (c *whoIsCache) flushLocked() {
	c.gen++
	c.changes.Add(1)
	c.stats.Drops += uint64(len(c.entries))
	clear(c.entries)
}

// dropIf removes the entries for which drop reports true. c.mu must be held.
func (c *whoIsCache) dropIf(drop func(netip.Addr, whoIsEntry) bool) {
	for ip, e := range c.entries {
		if drop(ip, e) {
			delete(c.entries, ip)
			c.stats.Drops++
		}
	}
}

// peersChanged records the current identity of peers that were added or
// re-announced, and drops entries they contradict: the same node with
// another identity, or one of their addresses cached for another node.
func (c *whoIsCache) peersChanged(nodes []*tailcfg.Node) {
	if len(nodes) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range nodes {
		fp := nodeIdentity(n)
		if c.nodeFPs == nil {
			c.nodeFPs = make(map[tailcfg.NodeID]string)
		}
		if old, ok := c.nodeFPs[n.ID]; ok && old != fp {
			c.changes.Add(1)
		}
		c.nodeFPs[n.ID] = fp
		delete(c.removed, n.ID)
		c.dropIf(func(ip netip.Addr, e whoIsEntry) bool {
			if e.nodeID == n.ID {
				return e.nodeFP != fp
			}
			return slices.ContainsFunc(n.Addresses, func(p netip.Prefix) bool { return p.Addr() == ip })
		})
	}
}

// peersGone drops the entries of peers that left or changed in a way that
// carries no full identity (a patch), and refuses answers fetched before.
func (c *whoIsCache) peersGone(ids []tailcfg.NodeID, left bool) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.changes.Add(1)
	for _, id := range ids {
		delete(c.nodeFPs, id)
		if left {
			if len(c.removed) >= c.max {
				clear(c.removed) // bounded; a stale answer for an old peer is only a TTL risk
			}
			if c.removed == nil {
				c.removed = make(map[tailcfg.NodeID]bool)
			}
			c.removed[id] = true
		}
	}
	c.dropIf(func(_ netip.Addr, e whoIsEntry) bool { return slices.Contains(ids, e.nodeID) })
}

// profilesChanged records users' current profiles and drops entries that
// show an older one.
func (c *whoIsCache) profilesChanged(profiles map[tailcfg.UserID]tailcfg.UserProfileView) {
	if len(profiles) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, up := range profiles {
		key := profileKey(up.LoginName(), up.DisplayName())
		if c.profiles == nil {
			c.profiles = make(map[tailcfg.UserID]string)
		}
		if old, ok := c.profiles[id]; ok && old != key {
			c.changes.Add(1)
		}
		c.profiles[id] = key
		c.dropIf(func(_ netip.Addr, e whoIsEntry) bool {
			return e.userID == id && profileKey(e.who.Login, e.who.DisplayName) != key
		})
	}
}

func (c *whoIsCache) snapshot() WhoIsCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Hits = c.hits.Load()
	s.Entries = len(c.entries)
	return s
}

// identityNeutral reports whether a peer patch only touches fields that
// cannot change who the peer is or what it may do (liveness and
// reachability). Anything else, including fields added in future versions,
// counts as a change.
func identityNeutral(pc *tailcfg.PeerChange) bool {
	if pc == nil {
		return true
	}
	rest := *pc
	rest.NodeID = 0
	rest.DERPRegion = 0
	rest.Endpoints = nil
	rest.DiscoKey = nil
	rest.Online = nil
	rest.LastSeen = nil
	return isZeroPeerChange(rest)
}

// isZeroPeerChange reports whether pc carries no change at all. It compares
// JSON encodings so new fields are covered without code changes here.
func isZeroPeerChange(pc tailcfg.PeerChange) bool {
	b, err := json.Marshal(pc)
	return err == nil && string(b) == `{"NodeID":0}`
}
