package tailnettest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"tailscale.com/ipn"
	"tailscale.com/tailcfg"
)

// firstServiceAddr is the address of the first Service approved on a
// Tailnet; later ones count up. It is in the tailnet's range, away from the
// nodes' addresses (100.64.x.y) and from 100.100.100.100.
var firstServiceAddr = netip.MustParseAddr("100.99.0.1")

// ApproveService does for the test t what a tailnet admin (or an
// autoApprovers rule) does when approving the node named host as a host of
// the Tailscale Service service ("svc:claw" or "claw"): it gives the node the
// service-host attribute that maps the Service to its address, routes that
// address to the node, and publishes the Service's MagicDNS name
// (<name>.tail-scale.ts.net). The Service's address is the same for every
// host approved for it; ApproveService returns it. The host must already be
// a tagged node (WithTags): Tailscale refuses untagged hosts. Clients reach
// the Service once they accept routes (AcceptRoutes).
//
// It replaces the node attributes the test set for host with
// Control.SetNodeCapMap. When several nodes have registered as host (a node
// replaced by one with new keys), the newest is approved and the others lose
// their approvals, as when the tailnet removes a replaced node.
func (tn *Tailnet) ApproveService(t testing.TB, host, service string) netip.Addr {
	t.Helper()
	addr, err := tn.approveService(host, service)
	if err != nil {
		t.Fatalf("tailnettest: %v", err)
	}
	return addr
}

func (tn *Tailnet) approveService(host, service string) (netip.Addr, error) {
	name := serviceName(service)
	if err := name.Validate(); err != nil {
		return netip.Addr{}, fmt.Errorf("approving Service %q: %w", service, err)
	}
	node := tn.nodeByHostname(host)
	if node == nil {
		return netip.Addr{}, fmt.Errorf("approving Service %s: no node %q has registered", name, host)
	}
	if len(node.Tags) == 0 {
		return netip.Addr{}, fmt.Errorf("approving Service %s: node %q is untagged, and a Service host must be tagged (create it WithTags)", name, host)
	}

	tn.svcMu.Lock()
	defer tn.svcMu.Unlock()
	if tn.svcAddrs == nil {
		tn.svcAddrs = make(map[tailcfg.ServiceName]netip.Addr)
		tn.svcHosts = make(map[string]tailcfg.ServiceIPMappings)
	}
	addr, ok := tn.svcAddrs[name]
	if !ok {
		addr = firstServiceAddr
		for range len(tn.svcAddrs) {
			addr = addr.Next()
		}
		tn.svcAddrs[name] = addr
	}
	mappings := tn.svcHosts[host]
	if mappings == nil {
		mappings = make(tailcfg.ServiceIPMappings)
		tn.svcHosts[host] = mappings
	}
	mappings[name] = []netip.Addr{addr}
	raw, err := json.Marshal(mappings)
	if err != nil {
		return netip.Addr{}, err
	}
	tn.Control.SetNodeCapMap(node.Key, tailcfg.NodeCapMap{
		tailcfg.NodeAttrServiceHost: {tailcfg.RawMessage(raw)},
	})
	var routes []netip.Prefix
	for _, addrs := range mappings {
		for _, a := range addrs {
			routes = append(routes, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	slices.SortFunc(routes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	tn.Control.SetSubnetRoutes(node.Key, routes)
	tn.forgetOlderHosts(host, node)
	if !ok {
		tn.Control.AddDNSRecords(tailcfg.DNSRecord{Name: name.WithoutPrefix() + "." + Domain, Value: addr.String()})
	}
	tn.notify()
	return addr, nil
}

// serviceName is service with its "svc:" prefix.
func serviceName(service string) tailcfg.ServiceName {
	if strings.HasPrefix(service, "svc:") {
		return tailcfg.ServiceName(service)
	}
	return tailcfg.ServiceName("svc:" + service)
}

// nodeByHostname returns the newest registered node with that hostname, or
// nil.
func (tn *Tailnet) nodeByHostname(host string) *tailcfg.Node {
	var newest *tailcfg.Node
	for _, n := range tn.Control.AllNodes() {
		if hostnameOf(n) == host && (newest == nil || n.ID > newest.ID) {
			newest = n
		}
	}
	return newest
}

// forgetOlderHosts withdraws the Service routes and attributes of the nodes
// that registered with hostname before node (a node replaced by a new one
// with new keys), as the tailnet does when it removes such a node.
func (tn *Tailnet) forgetOlderHosts(host string, node *tailcfg.Node) {
	for _, n := range tn.Control.AllNodes() {
		if hostnameOf(n) == host && n.ID != node.ID {
			tn.Control.SetSubnetRoutes(n.Key, nil)
			tn.Control.SetNodeCapMap(n.Key, nil)
		}
	}
}

// AcceptRoutes makes the node use the routes other nodes advertise (as
// `tailscale set --accept-routes`), which is how it reaches a Tailscale
// Service's address.
func (n *Node) AcceptRoutes(t testing.TB) {
	t.Helper()
	lc, err := n.LocalClient()
	if err != nil {
		t.Fatalf("tailnettest: %s: %v", n.Hostname, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), upTimeout)
	defer cancel()
	if _, err := lc.EditPrefs(ctx, &ipn.MaskedPrefs{RouteAllSet: true, Prefs: ipn.Prefs{RouteAll: true}}); err != nil {
		t.Fatalf("tailnettest: %s: accepting routes: %v", n.Hostname, err)
	}
}

// WaitService waits, at most a minute, until from knows the Service's
// MagicDNS name and a peer that routes its address, and fails t if it does
// not. The host must also be serving the Service for a connection to
// succeed.
func (tn *Tailnet) WaitService(t testing.TB, from *Node, service string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), upTimeout)
	defer cancel()
	if err := tn.AwaitService(ctx, from, service); err != nil {
		t.Fatalf("tailnettest: %v", err)
	}
}

// AwaitService is WaitService for callers without a testing.TB.
func (tn *Tailnet) AwaitService(ctx context.Context, from *Node, service string) error {
	name := serviceName(service)
	tn.svcMu.Lock()
	addr, ok := tn.svcAddrs[name]
	tn.svcMu.Unlock()
	if !ok {
		return fmt.Errorf("%s waiting for Service %s: it was never approved (ApproveService)", from.Hostname, name)
	}
	lc, err := from.LocalClient()
	if err != nil {
		return fmt.Errorf("%s: %w", from.Hostname, err)
	}
	want := netip.PrefixFrom(addr, addr.BitLen())
	last := "no peer routes its address"
	for {
		st, err := lc.Status(ctx)
		if err != nil {
			return fmt.Errorf("%s waiting for Service %s: status: %w", from.Hostname, name, err)
		}
		routed := false
		for _, p := range st.Peer {
			if p.PrimaryRoutes != nil && slices.Contains(p.PrimaryRoutes.AsSlice(), want) {
				routed = true
			}
		}
		if routed {
			if prefs, err := lc.GetPrefs(ctx); err == nil && !prefs.RouteAll {
				last = "the node does not accept routes (AcceptRoutes)"
			} else if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s waiting for Service %s at %s: %s: %w", from.Hostname, name, addr, last, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
