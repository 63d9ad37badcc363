package caddymodule

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/suites"
)

// loopbackPair returns both ends of a new loopback connection on network
// ("tcp4" or "tcp6"), the server's end first.
func loopbackPair(tb testing.TB, ln net.Listener) (net.Conn, net.Conn) {
	tb.Helper()
	client, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	return server, client
}

func TestFromOwnUser(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				if addr == "[::1]:0" {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				t.Fatal(err)
			}
			defer ln.Close()
			server, client := loopbackPair(t, ln)
			defer server.Close()
			defer client.Close()
			if err := fromOwnUser(server); err != nil {
				t.Errorf("fromOwnUser(a connection this process dialed) = %v, want nil", err)
			}

			cmd, _ := startAsOtherUser(t, ln.Addr().String(), "")
			other, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			err = fromOwnUser(other)
			other.Close()
			cmd.Wait()
			if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
				t.Errorf("fromOwnUser(a connection from uid 65534) = %v, want it refused", err)
			}
		})
	}
}

// startAsOtherUser starts the test binary as the forger (see TestMain) under
// uid and gid 65534, connecting to addr and claiming claim (empty: no
// header); its output goes to the returned buffer. It needs root: under
// CI=true (which runs as root) it fails the test without, else skips it.
func startAsOtherUser(t *testing.T, addr, claim string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	if os.Geteuid() != 0 {
		if suites.InCI() {
			t.Fatal("running a process as another user needs root")
		}
		t.Skip("running a process as another user needs root")
	}
	// The other user must be able to run a copy of the binary.
	dir, err := os.MkdirTemp("", "clawgate-forger")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "forger")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), forgerEnv+"="+addr, forgerClaimEnv+"="+claim)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// BenchmarkServiceUserCheck measures the check each Service connection
// gets (fromOwnUser) with 0, 100 and 1000 other loopback connections
// open, next to the baseline of opening the loopback connection itself,
// which the node's forwarder does for each.
func BenchmarkServiceUserCheck(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	b.Run("baseline=dial+accept", func(b *testing.B) {
		for b.Loop() {
			s, c := loopbackPair(b, ln)
			s.Close()
			c.Close()
		}
	})
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for _, n := range []int{0, 100, 1000} {
		for len(open) < 2*n {
			s, c := loopbackPair(b, ln)
			open = append(open, s, c)
		}
		b.Run(fmt.Sprintf("check/conns=%d", n), func(b *testing.B) {
			s, c := loopbackPair(b, ln)
			defer s.Close()
			defer c.Close()
			for b.Loop() {
				if err := fromOwnUser(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
