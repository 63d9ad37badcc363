package tsnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"tailscale.com/ipn/ipnlocal"
	"tailscale.com/tailcfg"
	ts "tailscale.com/tsnet"
)

// ErrUntaggedServiceHost means the node has no ACL tag, which a host of a
// Tailscale Service must have (tsnet's own error, so errors.Is holds for
// either).
var ErrUntaggedServiceHost = ts.ErrUntaggedServiceHost

// ServiceName returns the Tailscale Service name for name, which may be
// given with or without its "svc:" prefix ("claw" is "svc:claw"), or an
// error saying why it is not one.
func ServiceName(name string) (string, error) {
	full := name
	if !strings.HasPrefix(full, "svc:") {
		full = "svc:" + full
	}
	if err := tailcfg.ServiceName(full).Validate(); err != nil {
		return "", fmt.Errorf("service name %q: %w", name, err)
	}
	return full, nil
}

// ServiceListener is a node's listener for a Tailscale Service: the
// connections the tailnet sends to the Service's address and port arrive
// here, on a socket on the host's loopback interface, each opening with a
// PROXY protocol version 2 header that names the tailnet client. Close
// withdraws the node's advertisement of the port.
type ServiceListener struct {
	*ts.ServiceListener
	node *Node
}

// Close withdraws the node's advertisement of the Service port, if no other
// listener of the node advertises it, and closes the local socket.
func (l *ServiceListener) Close() error {
	// Serialized with the node's other Service changes: each rewrites the
	// node's serve config, and tsnet refuses a write made on a stale copy.
	l.node.serviceMu.Lock()
	defer l.node.serviceMu.Unlock()
	return l.ServiceListener.Close()
}

// LocalAddr is the loopback address of the socket the node forwards the
// Service's connections to.
func (l *ServiceListener) LocalAddr() net.Addr {
	return l.ServiceListener.Listener.Addr()
}

// ListenService advertises the node as a host of the Tailscale Service
// service ("svc:<name>") on TCP port, and returns the listener its
// connections arrive on. It waits until the node is Running, or ctx ends, or
// the node is closed. Connections are forwarded as TCP with a PROXY v2 header
// (never HTTP mode, whose identity headers a client can add itself and which
// leave tagged callers out). The node must be tagged: otherwise the error
// wraps ErrUntaggedServiceHost. The tailnet still has to approve the node
// as a host (an admin or an autoApprovers rule) before clients reach it; see
// ServiceAddrs.
func (n *Node) ListenService(ctx context.Context, service string, port uint16) (*ServiceListener, error) {
	name, err := ServiceName(service)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		return nil, fmt.Errorf("%v: Service %s: a port is required", n, name)
	}
	srv, err := n.launch()
	if err != nil {
		return nil, err
	}
	select {
	case <-n.running:
	case <-n.closing.Done():
		return nil, fmt.Errorf("%v: %w", n, ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("%v: waiting to run before hosting Service %s: %w", n, name, ctx.Err())
	}
	// tsnet rewrites the node's serve config on a copy tagged with its
	// version, and refuses the write if another change came in between:
	// the node's Service listeners take turns, and a write that still
	// loses (to tsnet's own changes) is tried again.
	n.serviceMu.Lock()
	defer n.serviceMu.Unlock()
	for attempt := 1; ; attempt++ {
		ln, err := srv.ListenService(name, ts.ServiceModeTCP{Port: port, PROXYProtocolVersion: 2})
		if err == nil {
			return &ServiceListener{ServiceListener: ln, node: n}, nil
		}
		if !errors.Is(err, ipnlocal.ErrETagMismatch) || attempt == 5 {
			return nil, fmt.Errorf("%v: hosting Service %s on port %d: %w", n, name, port, err)
		}
	}
}

// ServiceAddrs returns the addresses the tailnet has assigned to the
// Tailscale Service on this node: none until the tailnet approves the node as
// a host of the Service.
func (n *Node) ServiceAddrs(ctx context.Context, service string) ([]netip.Addr, error) {
	name, err := ServiceName(service)
	if err != nil {
		return nil, err
	}
	st, err := n.selfStatus(ctx)
	if err != nil {
		return nil, err
	}
	if st.Self == nil {
		return nil, errors.New("status has no self node")
	}
	mappings, err := tailcfg.UnmarshalNodeCapJSON[tailcfg.ServiceIPMappings](st.Self.CapMap, tailcfg.NodeAttrServiceHost)
	if err != nil {
		return nil, fmt.Errorf("%v: reading its %s attribute: %w", n, tailcfg.NodeAttrServiceHost, err)
	}
	var addrs []netip.Addr
	for _, m := range mappings {
		addrs = append(addrs, m[tailcfg.ServiceName(name)]...)
	}
	return addrs, nil
}
