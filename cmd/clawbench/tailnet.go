package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/net/stunserver"
	"tailscale.com/tailcfg"
	ts "tailscale.com/tsnet"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

// tailnetDomain is the MagicDNS suffix of the benchmark's tailnet.
const tailnetDomain = "tail-scale.ts.net"

// tailnet is an offline tailnet in this process: Tailscale's test control
// server, a DERP server and a STUN server on 127.0.0.1, and one client node.
// It follows caddymodule/internal/tailnettest, which this command cannot
// import (internal to caddymodule), keeping only the parts a benchmark needs.
// Nodes get testcontrol's own logins
// (user-<N>@fake-control.example.net): the guard's work for a user rule is
// the same whatever the login says.
type tailnet struct {
	controlURL string
	client     *ts.Server
	login      string // the client node's login, for the guard's user rule

	closers []func()
}

// startTailnet brings up control, DERP, STUN and the client node "bench".
func startTailnet(ctx context.Context, dir string, logf logger.Logf) (tn *tailnet, err error) {
	tn = &tailnet{}
	defer func() {
		if err != nil {
			tn.close()
		}
	}()

	derpMap, err := tn.startDERPAndSTUN(logf)
	if err != nil {
		return nil, err
	}
	control := &testcontrol.Server{
		DERPMap:        derpMap,
		DNSConfig:      &tailcfg.DNSConfig{Proxied: true},
		MagicDNSDomain: tailnetDomain,
		Logf:           logf,
	}
	control.HTTPTestServer = httptest.NewUnstartedServer(control)
	control.HTTPTestServer.Config.ErrorLog = logger.StdLogger(logf)
	control.HTTPTestServer.Start()
	tn.closers = append(tn.closers, control.HTTPTestServer.Close)
	tn.controlURL = control.HTTPTestServer.URL

	tn.client = &ts.Server{
		Dir:        filepath.Join(dir, "bench-client"),
		Hostname:   "bench",
		ControlURL: tn.controlURL,
		Ephemeral:  true,
		Store:      new(mem.Store),
		Logf:       logf,
		UserLogf:   logf,
	}
	tn.closers = append(tn.closers, func() { tn.client.Close() })
	st, err := tn.client.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting the client node: %w", err)
	}
	if st.Self == nil {
		return nil, errors.New("starting the client node: no self in status")
	}
	up, ok := st.User[st.Self.UserID]
	if !ok || up.LoginName == "" {
		return nil, errors.New("starting the client node: control reported no login for it")
	}
	tn.login = up.LoginName
	return tn, nil
}

// startDERPAndSTUN runs DERP (over TLS with a throwaway certificate, which
// the DERP map marks as acceptable for tests) and STUN on 127.0.0.1.
func (tn *tailnet) startDERPAndSTUN(logf logger.Logf) (*tailcfg.DERPMap, error) {
	d := derpserver.New(key.NewNode(), logf)
	tn.closers = append(tn.closers, func() { d.Close() })
	srv := httptest.NewUnstartedServer(derpserver.Handler(d))
	srv.Config.ErrorLog = logger.StdLogger(logf)
	srv.Config.TLSNextProto = make(map[string]func(*http.Server, *tls.Conn, http.Handler))
	srv.StartTLS()
	tn.closers = append(tn.closers, func() { srv.CloseClientConnections(); srv.Close() })

	// The STUN server stops when its context ends; it has no Close.
	stunCtx, stopSTUN := context.WithCancel(context.Background())
	tn.closers = append(tn.closers, stopSTUN)
	stun := stunserver.New(stunCtx)
	if err := stun.Listen("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("starting STUN: %w", err)
	}
	go stun.Serve()

	return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		1: {
			RegionID:   1,
			RegionCode: "bench",
			Nodes: []*tailcfg.DERPNode{{
				Name:             "b1",
				RegionID:         1,
				HostName:         "127.0.0.1",
				IPv4:             "127.0.0.1",
				IPv6:             "none",
				STUNPort:         stun.LocalAddr().(*net.UDPAddr).Port,
				DERPPort:         srv.Listener.Addr().(*net.TCPAddr).Port,
				InsecureForTests: true,
				STUNTestIP:       "127.0.0.1",
			}},
		},
	}}, nil
}

// waitPeer waits until the client sees the node named host with an address
// and a path to it, and a disco ping gets through, so that the first real
// packet is not lost. It returns the peer's IPv4 address.
func (tn *tailnet) waitPeer(ctx context.Context, host string) (netip.Addr, error) {
	lc, err := tn.client.LocalClient()
	if err != nil {
		return netip.Addr{}, err
	}
	last := "not in the client's netmap"
	for {
		st, err := lc.Status(ctx)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("client status: %w", err)
		}
		for _, p := range st.Peer {
			if p.HostName != host && strings.TrimSuffix(p.DNSName, "."+tailnetDomain+".") != host {
				continue
			}
			if len(p.TailscaleIPs) == 0 || (p.Relay == "" && p.CurAddr == "") {
				last = "no address or DERP home yet"
				break
			}
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			res, err := lc.Ping(pctx, p.TailscaleIPs[0], tailcfg.PingDisco)
			cancel()
			if err == nil && res.Err == "" {
				for _, ip := range p.TailscaleIPs {
					if ip.Is4() {
						return ip, nil
					}
				}
				return p.TailscaleIPs[0], nil
			}
			last = "disco ping failed"
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("waiting for tailnet peer %q: %s: %w", host, last, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// close stops everything, newest first.
func (tn *tailnet) close() {
	for i := len(tn.closers) - 1; i >= 0; i-- {
		tn.closers[i]()
	}
	tn.closers = nil
}
