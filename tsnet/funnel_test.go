package tsnet

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"tailscale.com/ipn"
)

func TestIsFunnelPort(t *testing.T) {
	tests := []struct {
		port int
		want bool
	}{
		{443, true}, {8443, true}, {10000, true},
		{80, false}, {0, false}, {8080, false}, {444, false}, {-443, false}, {65979, false},
	}
	for _, tt := range tests {
		if got := IsFunnelPort(tt.port); got != tt.want {
			t.Errorf("IsFunnelPort(%d) = %v, want %v", tt.port, got, tt.want)
		}
	}
}

// TestListenFunnelRefusesBadAddresses checks that addresses Funnel cannot
// serve are refused at once, before the node is even launched: the node
// here has no control server it could reach.
func TestListenFunnelRefusesBadAddresses(t *testing.T) {
	n, err := New(Config{Hostname: "gw", StateDir: filepath.Join(t.TempDir(), "gw")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	tests := []struct {
		name, network, addr, want string
	}{
		{"port 80", "tcp", ":80", "only TCP ports 443, 8443 and 10000"},
		{"port 8080", "tcp", ":8080", "only TCP ports 443, 8443 and 10000"},
		{"named port", "tcp", ":https", "only TCP ports 443, 8443 and 10000"},
		{"udp", "udp", ":443", "only tcp"},
		{"tcp4", "tcp4", ":443", "only tcp"},
		{"host given", "tcp", "100.64.0.1:443", "host must be empty"},
		{"no port", "tcp", "443", "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := n.ListenFunnel(tt.network, tt.addr)
			if err == nil {
				ln.Close()
				t.Fatalf("ListenFunnel(%q, %q) succeeded, want an error", tt.network, tt.addr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ListenFunnel(%q, %q) = %v, want it to say %q", tt.network, tt.addr, err, tt.want)
			}
		})
	}
	n.mu.Lock()
	launched := n.srv != nil || n.launchErr != nil
	n.mu.Unlock()
	if launched {
		t.Error("a refused Funnel address launched the node")
	}
}

func TestListenFunnelOnClosedNode(t *testing.T) {
	n, err := New(Config{Hostname: "gw", StateDir: filepath.Join(t.TempDir(), "gw")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if _, err := n.ListenFunnel("tcp", ":443"); !errors.Is(err, ErrClosed) {
		t.Errorf("ListenFunnel on a closed node = %v, want ErrClosed", err)
	}
}

// TestNewFunnelConn checks the addresses Funnel connections carry: the
// internet client as the remote address, the public name as the local one,
// which never parses as an IP address (the guard and the certificate getter
// recognise tailnet traffic by a local tailnet IP).
func TestNewFunnelConn(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.7:51234")
	tests := []struct {
		name    string
		conn    func(c net.Conn) net.Conn
		wantErr string
	}{
		{"as tsnet hands it over, wrapped in TLS", func(c net.Conn) net.Conn {
			return tls.Server(&ipn.FunnelConn{Conn: c, Src: src, Target: "gw.tail-scale.ts.net:443"}, &tls.Config{})
		}, ""},
		{"unwrapped", func(c net.Conn) net.Conn {
			return &ipn.FunnelConn{Conn: c, Src: src, Target: "gw.tail-scale.ts.net:8443"}
		}, ""},
		{"not from a Funnel relay", func(c net.Conn) net.Conn { return tls.Server(c, &tls.Config{}) }, "not a Funnel connection"},
		{"plain conn", func(c net.Conn) net.Conn { return c }, "not a Funnel connection"},
		{"IP literal target", func(c net.Conn) net.Conn {
			return &ipn.FunnelConn{Conn: c, Src: src, Target: "100.64.0.1:443"}
		}, "is an IP address"},
		{"IPv6 literal target", func(c net.Conn) net.Conn {
			return &ipn.FunnelConn{Conn: c, Src: src, Target: "[fd7a:115c:a1e0::1]:443"}
		}, "is an IP address"},
		{"no source", func(c net.Conn) net.Conn {
			return &ipn.FunnelConn{Conn: c, Target: "gw.tail-scale.ts.net:443"}
		}, "without a source"},
		{"bad target", func(c net.Conn) net.Conn {
			return &ipn.FunnelConn{Conn: c, Src: src, Target: "gw.tail-scale.ts.net"}
		}, "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			fc, err := newFunnelConn(tt.conn(a))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("newFunnelConn = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("newFunnelConn: %v", err)
			}
			if got := fc.RemoteAddr().String(); got != src.String() {
				t.Errorf("RemoteAddr = %q, want %q", got, src)
			}
			local := fc.LocalAddr()
			if local.Network() != "funnel" || !strings.HasPrefix(local.String(), "gw.tail-scale.ts.net:") {
				t.Errorf("LocalAddr = %s %q, want funnel gw.tail-scale.ts.net:<port>", local.Network(), local)
			}
			if _, err := netip.ParseAddrPort(local.String()); err == nil {
				t.Errorf("LocalAddr %q parses as an IP address and port", local)
			}
			// The bytes pass untouched: no TLS handshake was started.
			go func() { _, _ = b.Write([]byte("\x16\x03\x01raw")) }()
			buf := make([]byte, 6)
			if _, err := fc.Read(buf); err != nil || string(buf) != "\x16\x03\x01raw" {
				t.Errorf("Read = %q, %v; want the raw bytes", buf, err)
			}
		})
	}
}
