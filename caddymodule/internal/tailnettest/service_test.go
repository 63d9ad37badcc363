package tailnettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/proxyproto"
	"github.com/clawgate/clawgate/tsnet"
)

// TestServiceHost: a tagged clawgate node hosts a Service on several ports
// at once, the Tailnet approves it, and a client's connection arrives on
// the node's local socket with a PROXY v2 header naming the client.
func TestServiceHost(t *testing.T) {
	tn := New(t)
	host := startNode(t, tn.Config(t, "claw-a", WithTags("tag:clawgate")), nil, nil)
	client := tn.NewNode(t, "alice-laptop", WithLogin("alice@example.com"))

	ports := []uint16{80, 443, 8080, 8443, 18080, 18081}
	lns := make([]*tsnet.ServiceListener, len(ports))
	errs := make([]error, len(ports))
	var wg sync.WaitGroup
	for i, port := range ports {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			lns[i], errs[i] = host.ListenService(ctx, "claw", port)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ListenService(claw, %d) at the same time as the others: %v", ports[i], err)
		}
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if addrs, err := host.ServiceAddrs(ctx, "claw"); err != nil || len(addrs) != 0 {
		t.Fatalf("ServiceAddrs before approval = %v, %v; want none", addrs, err)
	}
	vip := tn.ApproveService(t, "claw-a", "svc:claw")
	for {
		addrs, err := host.ServiceAddrs(ctx, "claw")
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(addrs, vip) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ServiceAddrs after approval = %v; want %v", addrs, vip)
		case <-time.After(20 * time.Millisecond):
		}
	}

	client.AcceptRoutes(t)
	tn.WaitService(t, client, "claw")
	ln := lns[slices.Index(ports, 8080)]
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	var c net.Conn
	for {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		c, err = client.Dial(dctx, "tcp", fmt.Sprintf("claw.%s:8080", Domain))
		dcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("dialing the Service: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-ctx.Done():
		t.Fatal("nothing arrived on the Service's local socket")
	}
	defer sc.Close()
	sc.SetReadDeadline(time.Now().Add(30 * time.Second))
	hdr, err := proxyproto.Read(sc)
	if err != nil {
		t.Fatalf("the forwarded connection's PROXY header: %v", err)
	}
	if hdr.Command != proxyproto.Proxy || hdr.Source.Addr() != client.IPs[0] {
		t.Errorf("PROXY header %+v, want a PROXY command from %v", hdr, client.IPs[0])
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(sc, got); err != nil || string(got) != "hello" {
		t.Errorf("after the header: %q, %v; want %q", got, err, "hello")
	}

	// Closing every listener at once withdraws them all without an error.
	for i, l := range lns {
		wg.Go(func() { errs[i] = l.Close() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("closing the listener of port %d at the same time as the others: %v", ports[i], err)
		}
	}
}

func TestServiceHostUntagged(t *testing.T) {
	tn := New(t)
	host := startNode(t, tn.Config(t, "plain"), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ln, err := host.ListenService(ctx, "claw", 80)
	if ln != nil {
		ln.Close()
	}
	if !errors.Is(err, tsnet.ErrUntaggedServiceHost) {
		t.Fatalf("ListenService on an untagged node = %v, want ErrUntaggedServiceHost", err)
	}
}
