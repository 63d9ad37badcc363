package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/clawgate/clawgate/caddymodule/internal/proxyproto"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// The test binary, started with forgerEnv set to the address of a Service's
// local socket, is "another local process": it connects, sends a PROXY
// header claiming the client address in forgerClaimEnv (none when empty)
// and a request, and prints what came back (see TestMain).
const (
	forgerEnv      = "CLAWGATE_TEST_SERVICE_FORGER"
	forgerClaimEnv = "CLAWGATE_TEST_SERVICE_FORGER_CLAIM"
)

// runForger is the other process's part: it prints "closed" when the
// connection ends without a byte of answer, else the answer's first line.
func runForger(addr, claim string) int {
	var header []byte
	if claim != "" {
		src, err := netip.ParseAddrPort(claim)
		if err != nil {
			fmt.Println("bad claim:", err)
			return 2
		}
		header = forgedHeader(src)
	}
	fmt.Println(sendOnServiceSocket(addr, header))
	return 0
}

// forgedHeader is a PROXY v2 header naming src as the client.
func forgedHeader(src netip.AddrPort) []byte {
	b, err := proxyproto.Append(nil, proxyproto.Header{Command: proxyproto.Proxy, Source: src})
	if err != nil {
		panic(err)
	}
	return b
}

// sendOnServiceSocket connects to addr, sends prefix and a request, and
// returns "closed" when the connection ends with no answer, else the
// answer's status line, or what went wrong.
func sendOnServiceSocket(addr string, prefix []byte) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET /tools/invoke HTTP/1.1\r\nHost: claw\r\nConnection: close\r\n\r\n"
	if _, err := c.Write(append(prefix, req...)); err != nil {
		return "closed" // refused before the request was written
	}
	b, err := io.ReadAll(c)
	if len(b) == 0 {
		if err == nil || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") {
			return "closed"
		}
		return "read: " + err.Error()
	}
	line, _, _ := strings.Cut(string(b), "\r\n")
	return line
}

// TestTailnetService serves the guard's sites through a Tailscale Service
// that the clawgate node gw hosts, next to gw's own name.
func TestTailnetService(t *testing.T) {
	f := newTailnetFixtureHosting(t, "claw")
	_, before := serviceSocket("gw", "svc:claw", uint16(f.port))
	t.Run("through the Service", func(t *testing.T) { f.checkGuardCases(t, "claw") })
	sock, after := serviceSocket("gw", "svc:claw", uint16(f.port))
	if sock == nil {
		t.Fatal("no local socket for svc:claw on gw")
	}
	// 9 cases by HTTP and by WebSocket on this port (the placeholders'
	// site has its own port, and listener).
	if after-before < 18 {
		t.Errorf("the Service's listener admitted %d connections during the cases, want at least 18", after-before)
	}
	t.Run("through the node", func(t *testing.T) { f.checkGuardCases(t, "gw") })
	if _, n := serviceSocket("gw", "svc:claw", uint16(f.port)); n != after {
		t.Errorf("requests to the node's own name went through the Service's listener (%d connections)", n-after)
	}
	ap, err := netip.ParseAddrPort(sock.String())
	if err != nil || !ap.Addr().IsLoopback() {
		t.Fatalf("the Service's local socket is %v, want a loopback address", sock)
	}
	aliceIP := f.alice.IPs[0]

	t.Run("the local socket refuses what the forwarder would not send", func(t *testing.T) {
		local, _ := proxyproto.Append(nil, proxyproto.Header{Command: proxyproto.Local})
		malformed := append([]byte(nil), proxyproto.Signature...)
		malformed = append(malformed, 0x21, 0x11, 0xff, 0xff)
		tests := []struct {
			name   string
			prefix []byte
		}{
			{"no PROXY header", nil},
			{"a LOCAL header", local},
			{"a malformed header", malformed},
			{"a header cut short", proxyproto.Signature[:8]},
			{"a source outside the tailnet", forgedHeader(netip.MustParseAddrPort("10.1.2.3:4567"))},
			{"an IPv6 source outside the tailnet", forgedHeader(netip.MustParseAddrPort("[2001:db8::1]:4567"))},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := f.be.count()
				if got := sendOnServiceSocket(sock.String(), tt.prefix); got != "closed" {
					t.Errorf("answer = %q, want the connection closed", got)
				}
				if f.be.count() != before {
					t.Errorf("the backend saw a request")
				}
			})
		}
	})

	t.Run("the PROXY source is the caller", func(t *testing.T) {
		// A header from this process (where the node's forwarder runs) is
		// believed: the guard identifies its source with WhoIs, as it does
		// the forwarder's. Any process of this user is, too.
		got := sendOnServiceSocket(sock.String(), forgedHeader(netip.AddrPortFrom(aliceIP, 40000)))
		if got != "HTTP/1.1 200 OK" {
			t.Fatalf("answer = %q, want 200", got)
		}
		assertForwarded(t, f.be.last(t), "alice@example.com", "operator.read,operator.write", aliceIP.String())
		bobIP := f.bob.IPs[0]
		if got := sendOnServiceSocket(sock.String(), forgedHeader(netip.AddrPortFrom(bobIP, 40000))); got != "HTTP/1.1 403 Forbidden" {
			t.Errorf("as bob: answer = %q, want 403", got)
		}
	})

	t.Run("another user's process is refused", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("telling users apart needs Linux's sock_diag; see SECURITY.md")
		}
		before := f.be.count()
		cmd, out := startAsOtherUser(t, sock.String(), netip.AddrPortFrom(aliceIP, 40000).String())
		if err := cmd.Wait(); err != nil {
			t.Fatalf("forger: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(out.String()); got != "closed" {
			t.Errorf("forger got %q, want the connection closed", got)
		}
		if f.be.count() != before {
			t.Errorf("the backend saw the forged request")
		}
	})

	t.Run("the site's port on the Service only", func(t *testing.T) {
		for _, port := range []string{"18789", "22", "2019", "443"} {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c, err := f.alice.Dial(ctx, "tcp", "claw."+tailnettest.Domain+":"+port)
			cancel()
			if err == nil {
				c.Close()
				t.Errorf("alice reached svc:claw on port %s", port)
			}
		}
	})
}

// TestTailnetServiceReload: a reload keeps the Service's advertisement and
// its local socket, and requests made across it all succeed; a reload that
// replaces the node advertises the Service again from the new node.
func TestTailnetServiceReload(t *testing.T) {
	f := newTailnetFixtureHosting(t, "claw")
	reload := func(caddyfile string) {
		t.Helper()
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := caddy.Load(quietConfig(t, cfg), true); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	sock, _ := serviceSocket("gw", "svc:claw", uint16(f.port))
	if sock == nil {
		t.Fatal("no local socket for svc:claw on gw")
	}

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, from := range []*tailnettest.Node{f.alice, f.bob} {
		wg.Go(func() {
			client := from.HTTPClient()
			defer client.CloseIdleConnections()
			want := http.StatusOK
			if from == f.bob {
				want = http.StatusForbidden
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(f.serviceURL + "/tools/invoke")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != want {
						err = fmt.Errorf("%s: status %d, want %d", from.Hostname, resp.StatusCode, want)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		})
	}
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		reload(f.caddyfile(""))
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests through the Service across 3 reloads, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d requests failed across the reloads; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() < 6 {
		t.Errorf("only %d requests went through", ok.Load())
	}
	if got, _ := serviceSocket("gw", "svc:claw", uint16(f.port)); got == nil || got.String() != sock.String() {
		t.Errorf("after reloads the Service's socket is %v, want %v (the same advertisement)", got, sock)
	}
	// One Service listener per site port (18080 and 18081), none left over.
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	if n := strings.Count(string(buf), "caddymodule.(*serviceListener).run"); n != 2 {
		t.Errorf("%d Service listeners running after reloads, want 2", n)
	}

	// A changed node: the old node withdraws, the new one advertises.
	first := nodeByName("gw")
	reload(f.caddyfile(fmt.Sprintf("port %d", 40000+freePort(t)%20000)))
	deadline := time.Now().Add(60 * time.Second)
	for nodeByName("gw") == first || openNodes.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("changed node config: node replaced %v, %d open", nodeByName("gw") != first, openNodes.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.waitGW(t)
	// The new node registers anew: the tailnet approves it as it did the
	// first (an autoApprovers rule would).
	f.tn.ApproveService(t, "gw", "claw")
	f.tn.WaitService(t, f.alice, "claw")
	deadline = time.Now().Add(60 * time.Second)
	for {
		client := f.alice.HTTPClient()
		client.Timeout = 5 * time.Second
		resp, err := client.Get(f.serviceURL + "/tools/invoke")
		client.CloseIdleConnections()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Service does not serve from the new node: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestTailnetServiceApproval: a Service the tailnet has not approved is
// said in the log, once, with how to approve it; approval is logged too,
// and then the Service serves.
func TestTailnetServiceApproval(t *testing.T) {
	suites.SkipShort(t, suites.Tailnet)
	saved := serviceApprovalWait
	serviceApprovalWait = 2 * time.Second
	t.Cleanup(func() { serviceApprovalWait = saved })

	tn := tailnettest.New(t)
	be := newBackend(t)
	gw := tn.Config(t, "gw", tailnettest.WithTags("tag:gw"))
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	logPath := filepath.Join(t.TempDir(), "clawgate.log")
	startPairingCaddy(t, globalOptions{nodes: []tsnet.Config{gw}}.String()+fmt.Sprintf(`http://:18080 {
	bind %s/gw/claw
	clawgate %s {
		allow user:alice@example.com scopes operator.read
	}
}
`, serviceNetwork, be.addr()), logPath)
	const pending = "the tailnet has not approved this node as a host of the Tailscale Service"
	const approved = "the tailnet approved this node as a host of the Tailscale Service"
	waitLogPrefix(t, logPath, pending)
	time.Sleep(2 * serviceApprovalWait)
	if n := countLogPrefix(t, logPath, pending); n != 1 {
		t.Errorf("%d warnings about the pending approval, want 1", n)
	}
	for _, e := range readLog(t, logPath) {
		if msg, _ := e["msg"].(string); strings.HasPrefix(msg, pending) {
			for _, want := range []string{"admin console", `"autoApprovers": {"services": {"svc:claw"`} {
				if !strings.Contains(msg, want) {
					t.Errorf("the warning does not say %q: %s", want, msg)
				}
			}
		}
	}
	if countLogPrefix(t, logPath, approved) != 0 {
		t.Fatal("approval logged before the tailnet approved")
	}

	tn.ApproveService(t, "gw", "claw")
	alice.AcceptRoutes(t)
	tn.WaitService(t, alice, "claw")
	waitLogPrefix(t, logPath, approved)
	client := alice.HTTPClient()
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://claw." + tailnettest.Domain + ":18080/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after approval: status %d, want 200", resp.StatusCode)
	}
}

func countLogPrefix(t *testing.T, path, prefix string) int {
	t.Helper()
	n := 0
	for _, e := range readLog(t, path) {
		if msg, _ := e["msg"].(string); strings.HasPrefix(msg, prefix) {
			n++
		}
	}
	return n
}

func waitLogPrefix(t *testing.T, path, prefix string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for countLogPrefix(t, path, prefix) == 0 {
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(path)
			t.Fatalf("no log event %q in:\n%s", prefix, data)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServiceAddressRefused: a Service address Caddy cannot serve is refused
// at load (and by caddy validate) with what to write instead.
func TestServiceAddressRefused(t *testing.T) {
	node := func(lines string) string {
		return "{\n\tadmin off\n\tauto_https off\n\tclawgate {\n\t\tnode door {\n\t\t\tstate_dir " + t.TempDir() + "\n" + lines + "\t\t}\n\t}\n}\n"
	}
	tagged := node("\t\t\ttags tag:clawgate\n")
	tests := []struct {
		name, caddyfile, want string
	}{
		{"untagged node", node("") + "http://:18080 {\n\tbind clawgate+service/door/claw\n\trespond ok\n}\n",
			`node "door" cannot host Tailscale Service svc:claw: service hosts must be tagged nodes; give the node tags in the clawgate app`},
		{"no Service name", tagged + "http://:18080 {\n\tbind clawgate+service/door\n\trespond ok\n}\n",
			`clawgate+service listener: "door": missing Service name; bind clawgate+service/<node>/<service>`},
		{"no names", tagged + "http://:18080 {\n\tbind clawgate+service/\n\trespond ok\n}\n",
			`missing node and Service names`},
		{"no node name", tagged + "http://:18080 {\n\tbind clawgate+service//claw\n\trespond ok\n}\n",
			`"/claw": missing node name`},
		{"invalid Service name", tagged + "http://:18080 {\n\tbind clawgate+service/door/my_claw\n\trespond ok\n}\n",
			`service name "my_claw": "my_claw" is not a valid DNS label`},
		{"Service name too long", tagged + "http://:18080 {\n\tbind clawgate+service/door/" + strings.Repeat("a", 64) + "\n\trespond ok\n}\n",
			`is too long, max length is 63 bytes`},
		{"two Services", tagged + "http://:18080 {\n\tbind clawgate+service/door/claw/paw\n\trespond ok\n}\n",
			`one node and one Service`},
		{"invalid node name", tagged + "http://:18080 {\n\tbind clawgate+service/Door/claw\n\trespond ok\n}\n",
			`clawgate+service/Door/claw: hostname "Door": must be lowercase`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := loadCaddyErr(t, tt.caddyfile)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("load error = %v, want one containing %q", err, tt.want)
			}
		})
	}

	t.Run("trusted_proxies covering the tailnet", func(t *testing.T) {
		// Refused before the node starts, guarded (at provision, and by
		// caddy validate) or not (when the listener opens).
		for _, handler := range []string{"clawgate 127.0.0.1:18789 {\n\t\tallow tailnet scopes none\n\t}", "respond ok"} {
			cfg := strings.Replace(tagged, "\tclawgate {", "\tservers {\n\t\ttrusted_proxies static private_ranges\n\t}\n\tclawgate {", 1) +
				"http://:18080 {\n\tbind clawgate+service/door/claw\n\t" + handler + "\n}\n"
			err := loadCaddyErrOnly(t, cfg)
			want := "listens on clawgate+service/door/claw, where no proxy stands in front of a connection"
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "fd7a:115c:a1e0::/48") {
				t.Errorf("%s: load error = %v, want one containing %q", handler, err, want)
			}
		}
	})

	t.Run("the untagged node's error is tsnet's", func(t *testing.T) {
		// Caddy's load error keeps only the text; clawgate's own keeps the
		// error for errors.Is.
		na, err := caddy.ParseNetworkAddress("clawgate+service/door/claw:18080")
		if err != nil {
			t.Fatal(err)
		}
		err = checkServiceAddress(&App{nodes: map[string]tsnet.Config{"door": {Hostname: "door", StateDir: t.TempDir()}}}, na)
		if !errors.Is(err, tsnet.ErrUntaggedServiceHost) {
			t.Errorf("errors.Is(%v, ErrUntaggedServiceHost) = false", err)
		}
	})

	t.Run("port range", func(t *testing.T) {
		cfg := fmt.Sprintf(`{"admin":{"disabled":true},"apps":{"clawgate":{"nodes":{"door":{"state_dir":%q,"tags":["tag:clawgate"]}}},
"http":{"servers":{"s":{"listen":["clawgate+service/door/claw:18080-18081"],"routes":[{"handle":[{"handler":"static_response","body":"ok"}]}]}}}}}`, t.TempDir())
		caddyMu.Lock()
		defer caddyMu.Unlock()
		t.Setenv("XDG_DATA_HOME", t.TempDir())
		err := caddy.Load(quietConfig(t, []byte(cfg)), true)
		if err == nil {
			_ = caddy.Stop()
		}
		want := "clawgate+service/door/claw: port range 18080-18081: a Service listener takes one port"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("load error = %v, want one containing %q", err, want)
		}
	})
}
