package caddymodule

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// The short timeouts the connection tests configure, and the windows their
// cuts must fall in. The upper bounds are far below Caddy's and clawgate's
// defaults (1m/10s read_header, 5m/2m idle), so a timeout that is not applied
// on the listener fails the test instead of passing slowly.
const (
	testTimeouts = `
		timeouts {
			read_header 1s
			idle 2s
		}`
	headerCutMin, headerCutMax = 800 * time.Millisecond, 5 * time.Second
	idleCutMin, idleCutMax     = 1500 * time.Millisecond, 6 * time.Second
	// giveUp is how long a client waits for the server to hang up.
	giveUp = 10 * time.Second
)

// serverTimeouts returns the read_header and idle timeouts of the running
// Caddy's HTTP server that listens on port, as provisioned.
func serverTimeouts(t *testing.T, port int) (readHeader, idle time.Duration) {
	t.Helper()
	appIface, err := caddy.ActiveContext().App("http")
	if err != nil {
		t.Fatalf("getting the http app: %v", err)
	}
	app := appIface.(*caddyhttp.App)
	suffix := ":" + itoa(port)
	for name, srv := range app.Servers {
		for _, l := range srv.Listen {
			if strings.HasSuffix(l, suffix) {
				t.Logf("server %s listens on %s", name, l)
				return time.Duration(srv.ReadHeaderTimeout), time.Duration(srv.IdleTimeout)
			}
		}
	}
	t.Fatalf("no HTTP server listens on port %d", port)
	return 0, 0
}

// TestTimeoutsDefaults: a server with a clawgate handler gets clawgate's
// read_header and idle timeouts where the user set none, keeps the ones the
// user set, and a server without clawgate keeps Caddy's own.
func TestTimeoutsDefaults(t *testing.T) {
	be := newBackend(t)
	t.Setenv("CG_TEST_TOKEN_CI", randToken(t, 32))
	t.Setenv("CG_TEST_TG_SECRET", randToken(t, 32))
	tests := []struct {
		name     string
		timeouts string // the `timeouts` block of the global `servers` option
		// read_header and idle of the guard's, the senders' and the plain server
		guard, senders, plain [2]time.Duration
	}{
		{
			name:    "unset",
			guard:   [2]time.Duration{10 * time.Second, 2 * time.Minute},
			senders: [2]time.Duration{10 * time.Second, 2 * time.Minute},
			plain:   [2]time.Duration{time.Minute, 5 * time.Minute},
		},
		{
			name:     "both set",
			timeouts: "read_header 30s\n\t\t\tidle 7m",
			guard:    [2]time.Duration{30 * time.Second, 7 * time.Minute},
			senders:  [2]time.Duration{30 * time.Second, 7 * time.Minute},
			plain:    [2]time.Duration{30 * time.Second, 7 * time.Minute},
		},
		{
			name:     "read_header set above caddy's default",
			timeouts: "read_header 3m",
			guard:    [2]time.Duration{3 * time.Minute, 2 * time.Minute},
			senders:  [2]time.Duration{3 * time.Minute, 2 * time.Minute},
			plain:    [2]time.Duration{3 * time.Minute, 5 * time.Minute},
		},
		{
			name:     "idle set",
			timeouts: "idle 45s",
			guard:    [2]time.Duration{10 * time.Second, 45 * time.Second},
			senders:  [2]time.Duration{10 * time.Second, 45 * time.Second},
			plain:    [2]time.Duration{time.Minute, 45 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := ""
			if tt.timeouts != "" {
				servers = fmt.Sprintf("\n\tservers {\n\t\ttimeouts {\n\t\t\t%s\n\t\t}\n\t}", tt.timeouts)
			}
			guardPort, sendersPort, plainPort := freePort(t), freePort(t), freePort(t)
			// The guard sits in a handle block and the senders check in a
			// route, so the server must reach handlers nested in subroutes.
			startCaddy(t, fmt.Sprintf(`{
	admin off
	auto_https off%s
}
http://127.0.0.1:%d {
	handle /api/* {
		clawgate %s {
			token ci {
				env CG_TEST_TOKEN_CI
			}
			allow token:ci
		}
	}
	respond 404
}
http://127.0.0.1:%d {
	route /telegram {
		clawgate_senders telegram {
			allow 111
			secret {env.CG_TEST_TG_SECRET}
		}
		reverse_proxy %s
	}
}
http://127.0.0.1:%d {
	respond "plain"
}
`, servers, guardPort, be.addr(), sendersPort, be.addr(), plainPort))
			for _, s := range []struct {
				what string
				port int
				want [2]time.Duration
			}{
				{"guard", guardPort, tt.guard},
				{"senders", sendersPort, tt.senders},
				{"plain", plainPort, tt.plain},
			} {
				rh, idle := serverTimeouts(t, s.port)
				if got := [2]time.Duration{rh, idle}; got != s.want {
					t.Errorf("%s server: read_header, idle = %v, %v; want %v, %v", s.what, rh, idle, s.want[0], s.want[1])
				}
			}
		})
	}
}

// dialFunc opens a fresh connection to the site under test.
type dialFunc func(context.Context) (net.Conn, error)

// waitHangUp reads from r until the server closes the connection or giveUp
// passes, and returns what it read and how long after start the close came.
func waitHangUp(t *testing.T, c net.Conn, r io.Reader, start time.Time) ([]byte, time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(start.Add(giveUp))
	got, err := io.ReadAll(r)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server still held the connection after %v", took.Round(time.Millisecond))
	}
	return got, took
}

// checkSlowloris opens a connection, sends the start of a request head and
// then stalls (or, with drip, trickles a header line every 200 ms, the way
// slowloris keeps a connection alive), and checks that the server hangs up
// after read_header without answering and that nothing reached the backend.
func checkSlowloris(t *testing.T, dial dialFunc, host string, be *backend, drip bool) {
	before := be.count()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "GET /tools/invoke HTTP/1.1\r\nHost: "+host+"\r\n"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	dripped := make(chan int)
	go func() {
		n := 0
		defer func() { dripped <- n }()
		if !drip {
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(c, "X-Pad-%d: x\r\n", n); err != nil {
				return
			}
			n++
		}
	}()
	got, took := waitHangUp(t, c, c, start)
	close(stop)
	n := <-dripped
	if len(got) > 0 {
		t.Errorf("the server answered an unfinished request head: %q", got)
	}
	if took < headerCutMin || took > headerCutMax {
		t.Errorf("connection closed after %v, want between %v and %v (read_header 1s)", took, headerCutMin, headerCutMax)
	}
	if be.count() != before {
		t.Errorf("the backend saw the unfinished request")
	}
	t.Logf("cut after %v (%d header lines dripped)", took.Round(time.Millisecond), n)
}

// checkIdleClose sends one complete request on a keep-alive connection,
// reads the answer and then stays quiet: the server must hang up after the
// idle timeout, not at once and not much later.
func checkIdleClose(t *testing.T, dial dialFunc, host, headers string, be *backend) {
	before := be.count()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(giveUp))
	if _, err := io.WriteString(c, "GET /tools/invoke HTTP/1.1\r\nHost: "+host+"\r\n"+headers+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("status %d, close %v, want 200 on a kept-alive connection; %s", resp.StatusCode, resp.Close, body)
	}
	if be.count() != before+1 {
		t.Fatalf("backend saw %d requests, want 1", be.count()-before)
	}
	start := time.Now()
	got, took := waitHangUp(t, c, br, start)
	if len(got) > 0 {
		t.Errorf("the server sent %q on an idle connection", got)
	}
	if took < idleCutMin || took > idleCutMax {
		t.Errorf("idle connection closed after %v, want between %v and %v (idle 2s)", took, idleCutMin, idleCutMax)
	}
	t.Logf("idle connection closed after %v", took.Round(time.Millisecond))
}

// loopbackGuard starts a guard site on 127.0.0.1 with the given options in
// the global servers block, trusting 127.0.0.1 as a fronting proxy so requests can carry a
// client address in X-Real-IP, and returns its port and the headers of an
// admitted request.
func loopbackGuard(t *testing.T, be *backend, serverOptions string) (port int, admitted http.Header) {
	tok := randToken(t, 32)
	t.Setenv("CG_TEST_TOKEN_CI", tok)
	port = freePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin off
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP%s
	}
}
http://127.0.0.1:%d {
	clawgate %s {
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow token:ci scopes operator.read
	}
}
`, serverOptions, port, be.addr()))
	waitHTTP(t, "http://127.0.0.1:"+itoa(port))
	return port, http.Header{"Authorization": {"Bearer " + tok}, "X-Real-IP": {"203.0.113.7"}}
}

func rawHeaders(h http.Header) string {
	var b strings.Builder
	for k, vs := range h {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	return b.String()
}

// TestTimeoutsLoopback: on an ordinary listener, a client that never
// finishes its request head and a keep-alive connection that goes quiet are
// both closed after the configured timeouts.
func TestTimeoutsLoopback(t *testing.T) {
	be := newBackend(t)
	port, admitted := loopbackGuard(t, be, testTimeouts)
	addr := "127.0.0.1:" + itoa(port)
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	t.Run("slowloris stalls", func(t *testing.T) { checkSlowloris(t, dial, addr, be, false) })
	t.Run("slowloris drips", func(t *testing.T) { checkSlowloris(t, dial, addr, be, true) })
	t.Run("idle keep-alive", func(t *testing.T) { checkIdleClose(t, dial, addr, rawHeaders(admitted), be) })
}

// TestTimeoutsTailnet: the same cuts on a site bound to a clawgate node,
// which shows that clawgate's tailnet listener hands Caddy connections whose
// deadlines work.
func TestTimeoutsTailnet(t *testing.T) {
	tn := tailnettest.New(t)
	be := newBackend(t)
	gw := tn.Config(t, "gw")
	alice := tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	const port = 18090
	startCaddyTailnet(t, globalOptions{nodes: []tsnet.Config{gw}, extra: "servers {" + testTimeouts + "\n}"}.String()+fmt.Sprintf(`http://:%d {
	bind clawgate/gw
	clawgate %s {
		allow user:alice@example.com scopes operator.read
	}
}
`, port, be.addr()))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p := nodeByName("gw"); p != nil && len(p.tailnetIPs()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("clawgate node gw never came up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tn.WaitPeer(t, alice, "gw")
	addr := net.JoinHostPort(nodeByName("gw").tailnetIPs()[0].String(), itoa(port))
	host := fmt.Sprintf("gw.%s:%d", tailnettest.Domain, port)
	dial := func(ctx context.Context) (net.Conn, error) { return alice.Dial(ctx, "tcp", addr) }
	t.Run("slowloris stalls", func(t *testing.T) { checkSlowloris(t, dial, host, be, false) })
	t.Run("slowloris drips", func(t *testing.T) { checkSlowloris(t, dial, host, be, true) })
	t.Run("idle keep-alive", func(t *testing.T) { checkIdleClose(t, dial, host, "", be) })
}

// TestTimeoutsWebSocket: an admitted WebSocket stays open, quiet, well past
// the read_header and idle timeouts; those bound a connection only until
// its request is read and between requests, never a live session.
func TestTimeoutsWebSocket(t *testing.T) {
	be := newBackend(t)
	port, admitted := loopbackGuard(t, be, `
		timeouts {
			read_header 1s
			idle 1s
		}`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := wsDial(ctx, "ws://127.0.0.1:"+itoa(port)+"/ws", admitted)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello token:ci" {
		t.Fatalf("first frame = %q, %v; want hello token:ci", msg, err)
	}
	const hold = 3 * time.Second
	time.Sleep(hold)
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatalf("write after %v quiet: %v", hold, err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "echo:ping" {
		t.Fatalf("echo after %v quiet = %q, %v; want echo:ping", hold, msg, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("closing: %v", err)
	}
}
