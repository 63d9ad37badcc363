package tailnettest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Forwarder carries TCP connections accepted on a loopback port to one
// tailnet address, dialled from a tailnet node. It lets a program that
// cannot dial through tsnet (a browser: tsnet's own SOCKS5 proxy wants
// credentials a browser cannot send) reach the tailnet as that node's
// device, so the other end sees the node's tailnet address and identity.
type Forwarder struct {
	l      net.Listener
	from   *Node
	target string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// Forward starts a Forwarder from a free port on 127.0.0.1 to target
// (host:port, where host may be a MagicDNS name), dialled from n.
func (n *Node) Forward(target string) (*Forwarder, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("forwarding to %s: %w", target, err)
	}
	f, err := n.ForwardFrom(l, target)
	if err != nil {
		l.Close()
	}
	return f, err
}

// ForwardFrom is Forward from a listener the caller opened, for when the
// port must be known before the node exists (a config that names the
// loopback origin). The Forwarder owns l from then on.
func (n *Node) ForwardFrom(l net.Listener, target string) (*Forwarder, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("forwarding to %q: %w", target, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forwarder{l: l, from: n, target: target, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Addr returns the address the forwarder listens on, 127.0.0.1:<port>.
func (f *Forwarder) Addr() string { return f.l.Addr().String() }

// Close stops listening, closes every connection in flight and returns once
// they are all gone. Calling it again does nothing.
func (f *Forwarder) Close() error {
	f.cancel()
	err := f.l.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go f.carry(c)
	}
}

// track adds c to the open connections, or closes it and reports false when
// the forwarder is closing.
func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx.Err() != nil {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *Forwarder) carry(local net.Conn) {
	defer f.wg.Done()
	if !f.track(local) {
		return
	}
	defer f.untrack(local)
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	remote, err := f.from.Dial(ctx, "tcp", f.target)
	cancel()
	if err != nil {
		return // the local side sees its connection closed, as for a refused one
	}
	if !f.track(remote) {
		return
	}
	defer f.untrack(remote)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close so the other direction can finish (a response after
		// the request's end); fall back to a full close.
		if cw, ok := dst.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
			dst.Close()
		}
		done <- struct{}{}
	}
	go pipe(remote, local)
	go pipe(local, remote)
	<-done
	<-done
}
