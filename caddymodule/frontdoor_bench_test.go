package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

// BenchmarkFrontDoorHops compares one hop (alice's device straight to her
// gateway host's clawgate) with two (through the front door, which forwards
// over the tailnet with a PROXY header, and the host looks alice up again)
// in the same run, with a loopback backend behind the host's guard:
//
//   - GET: one request per path and iteration, on kept-alive connections,
//     next to the backend straight over loopback;
//   - WebSocket: one message echoed by the backend per path and iteration,
//     on a WebSocket opened once per path (after the upgrade a hop only
//     copies bytes), next to the same echo over loopback and a bare TCP
//     echo over the tailnet.
//
// See benchHops for what each reports.
func BenchmarkFrontDoorHops(b *testing.B) {
	f := newFrontDoorFixture(b)
	oneURL := fmt.Sprintf("http://alicehost:%d", alicePort)
	user := []byte(`"user":"alice@example.com"`)

	b.Run("GET", func(b *testing.B) {
		c := f.alice.HTTPClient()
		defer c.CloseIdleConnections()
		direct := &http.Client{Timeout: 30 * time.Second}
		defer direct.CloseIdleConnections()
		benchHops(b, true, map[string]func(){
			// Straight to the backend, no guard sets the user.
			hopsDirect: hopsGet(b, direct, "http://"+f.beA.addr()+"/bench", nil, []byte(`"user":""`)),
			hopsOne:    hopsGet(b, c, oneURL+"/bench", nil, user),
			hopsTwo:    hopsGet(b, c, f.doorURL+"/bench", nil, user),
		})
	})

	echo := startTCPEcho(b, f)
	b.Run("WebSocket", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		benchHops(b, true, map[string]func(){
			hopsDirect:  hopsEcho(b, ctx, &http.Client{}, "http://"+f.beA.addr()+"/ws", ""),
			hopsTailnet: hopsTCPEcho(b, ctx, f.alice, echo),
			hopsOne:     hopsEcho(b, ctx, f.alice.HTTPClient(), oneURL+"/ws", "alice@example.com"),
			hopsTwo:     hopsEcho(b, ctx, f.alice.HTTPClient(), f.doorURL+"/ws", "alice@example.com"),
		})
	})
}

// The paths benchHops compares.
const (
	hopsDirect  = "direct"  // no hop: the backend over loopback, for reference
	hopsTailnet = "tailnet" // the tailnet alone: a bare TCP echo, no proxy, for reference
	hopsOne     = "1hop"
	hopsTwo     = "2hop"
)

// benchHops times the paths it is given (hopsOne and hopsTwo, and the
// references hopsDirect and hopsTailnet when present), one call of each per
// iteration, rotating which goes first, so all see the same machine load.
// It reports the median and 99th percentile of each and the two-hop/one-hop
// ratios. With cpu set (the whole path runs in this process), it then
// reports, untimed, the process CPU time per call of each path, b.N calls in
// a row: the difference between two paths' CPU is what the extra hop costs,
// on every node and goroutine of the process together.
func benchHops(b *testing.B, cpu bool, paths map[string]func()) {
	var order []string
	for _, p := range []string{hopsDirect, hopsTailnet, hopsOne, hopsTwo} {
		if paths[p] != nil {
			order = append(order, p)
		}
	}
	for range 50 { // warm every path: connections, WhoIs caches
		for _, p := range order {
			paths[p]()
		}
	}
	lat := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range order {
			p := order[(i+j)%len(order)]
			begin := time.Now()
			paths[p]()
			lat[p] = append(lat[p], time.Since(begin))
		}
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) time.Duration {
		slices.Sort(d)
		return d[min(len(d)-1, int(float64(len(d))*p))]
	}
	for _, p := range order {
		b.ReportMetric(float64(pct(lat[p], 0.50).Microseconds()), "µs-p50-"+p)
		b.ReportMetric(float64(pct(lat[p], 0.99).Microseconds()), "µs-p99-"+p)
	}
	one50, one99 := pct(lat[hopsOne], 0.50), pct(lat[hopsOne], 0.99)
	two50, two99 := pct(lat[hopsTwo], 0.50), pct(lat[hopsTwo], 0.99)
	b.ReportMetric(float64(two50)/float64(one50), "x-p50")
	b.ReportMetric(float64(two99)/float64(one99), "x-p99")
	if !cpu {
		return
	}
	for _, p := range order {
		before, ok := processCPU()
		if !ok {
			return
		}
		for range b.N {
			paths[p]()
		}
		after, _ := processCPU()
		b.ReportMetric(float64((after-before).Microseconds())/float64(b.N), "µs-cpu-"+p)
	}
}

// hopsGet returns a call that GETs url with c, sending the headers h, and
// fails b unless the answer is 200 and its body (as sent: an encoding the
// request asked for is not undone) contains want.
func hopsGet(b *testing.B, c *http.Client, url string, h http.Header, want []byte) func() {
	return func() {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		maps.Copy(req.Header, h)
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(body, want) {
			b.Fatalf("GET %s = %d %.200q, %v; want 200 with %q", url, resp.StatusCode, body, err, want)
		}
	}
}

// hopsEcho opens a WebSocket with hc to url, on the backend that greets
// the user it was sent and echoes, and returns a call that sends one message
// and waits for its echo.
func hopsEcho(b *testing.B, ctx context.Context, hc *http.Client, url, user string) func() {
	ws, _, err := websocket.Dial(ctx, strings.Replace(url, "http", "ws", 1), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		b.Fatalf("WebSocket to %s: %v", url, err)
	}
	b.Cleanup(func() { ws.Close(websocket.StatusNormalClosure, "") })
	if _, hello, err := ws.Read(ctx); err != nil || string(hello) != "hello "+user {
		b.Fatalf("WebSocket to %s: first message %q, %v; want hello %s", url, hello, err, user)
	}
	msg := []byte("ping")
	want := []byte("echo:ping")
	return func() {
		if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
			b.Fatalf("WebSocket to %s: %v", url, err)
		}
		_, got, err := ws.Read(ctx)
		if err != nil || !bytes.Equal(got, want) {
			b.Fatalf("WebSocket to %s: got %q, %v; want %q", url, got, err, want)
		}
	}
}

// startTCPEcho starts a node on the fixture's tailnet that echoes what it
// is sent over TCP, and returns its address, once alice's device sees it.
func startTCPEcho(b *testing.B, f *frontDoorFixture) string {
	echo := f.tn.NewNode(b, "echo")
	ln, err := echo.Listen("tcp", ":7")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	f.tn.WaitPeer(b, f.alice, "echo")
	return "echo:7"
}

// hopsTCPEcho connects from the device to the TCP echo at addr and returns
// a call that sends a message of a WebSocket echo's size and waits for it
// to come back: one tailnet hop with no proxy at either end.
func hopsTCPEcho(b *testing.B, ctx context.Context, from *tailnettest.Node, addr string) func() {
	c, err := from.Dial(ctx, "tcp", addr)
	if err != nil {
		b.Fatalf("dialing the echo at %s: %v", addr, err)
	}
	b.Cleanup(func() { c.Close() })
	msg := []byte("\x81\x84mask" + "ping") // a masked text frame of 4 bytes, as a client sends it
	got := make([]byte, len(msg))
	return func() {
		if _, err := c.Write(msg); err != nil {
			b.Fatalf("echo over the tailnet: %v", err)
		}
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			b.Fatalf("echo over the tailnet: got %q, %v; want %q", got, err, msg)
		}
	}
}

// BenchmarkFrontDoorHopsOpenClaw is BenchmarkFrontDoorHops with the real
// OpenClaw gateway behind alice's host (its audit gate on), what a user
// meets: the Control UI's document and its stylesheet (gzip, as a browser
// asks for it), each also fetched straight from the gateway over loopback
// for reference, and an RPC round trip (users.self) on an operator session
// connected once each way. OpenClaw runs in its own process, so only
// latencies are reported.
func BenchmarkFrontDoorHopsOpenClaw(b *testing.B) {
	f := newFrontDoorOpenClawFixture(b)
	c := f.alice.HTTPClient()
	defer c.CloseIdleConnections()
	direct := &http.Client{Timeout: 30 * time.Second}
	defer direct.CloseIdleConnections()

	b.Run("ControlUI", func(b *testing.B) {
		want := []byte("<title>OpenClaw Control</title>")
		benchHops(b, false, map[string]func(){
			hopsDirect: hopsGet(b, direct, f.gw.URL+"/", nil, want),
			hopsOne:    hopsGet(b, c, f.hostURL+"/", nil, want),
			hopsTwo:    hopsGet(b, c, f.doorURL+"/", nil, want),
		})
	})

	b.Run("Stylesheet", func(b *testing.B) {
		gz := http.Header{"Accept-Encoding": {"gzip"}}
		want := []byte{0x1f, 0x8b} // the gzip magic, as the gateway sent it
		benchHops(b, false, map[string]func(){
			hopsDirect: hopsGet(b, direct, f.gw.URL+f.stylesheet, gz, want),
			hopsOne:    hopsGet(b, c, f.hostURL+f.stylesheet, gz, want),
			hopsTwo:    hopsGet(b, c, f.doorURL+f.stylesheet, gz, want),
		})
	})

	b.Run("RPC", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		benchHops(b, false, map[string]func(){
			hopsOne: hopsSelf(b, ctx, f.alice, f.hostURL),
			hopsTwo: hopsSelf(b, ctx, f.alice, f.doorURL),
		})
	})
}

// frontDoorOCFixture is one Caddy running a front door (node door) and
// alice's gateway host (node alicehost, naming tag:door as its front door)
// in front of the real OpenClaw, with alice's device on the tailnet.
type frontDoorOCFixture struct {
	gw               *openclawtest.Gateway
	alice            *tailnettest.Node
	doorURL, hostURL string
	stylesheet       string // the Control UI's stylesheet, as its document links it
}

func newFrontDoorOpenClawFixture(b *testing.B) *frontDoorOCFixture {
	openclawtest.Require(b)
	tn := tailnettest.New(b)
	door := tn.Config(b, "door", tailnettest.WithTags("tag:door"))
	aliceHost := tn.Config(b, "alicehost", tailnettest.WithTags("tag:gateway-host"))
	f := &frontDoorOCFixture{
		alice:   tn.NewNode(b, "alice-laptop", tailnettest.WithLogin("alice@example.com")),
		doorURL: fmt.Sprintf("http://door.%s:%d", tailnettest.Domain, frontDoorPort),
		hostURL: fmt.Sprintf("http://alicehost.%s:%d", tailnettest.Domain, alicePort),
	}
	ocPort := openclawtest.FreePort(b)
	ocCfg := aliceTrustedProxyConfig(b, ocPort, []string{"operator.read", "operator.write"}, f.doorURL, f.hostURL)
	f.gw = openclawtest.Start(b, ocCfg, ocPort)
	b.Cleanup(func() { waitNodesClosed(b) }) // after startCaddy's Stop
	global := globalOptions{nodes: []tsnet.Config{door, aliceHost},
		lines: map[string]string{"alicehost": "front_doors tag:door"},
		clawgate: fmt.Sprintf(`gateway alice {
	config %s
	state_dir %s
	upstream 127.0.0.1:%d
	origins %s %s
}`, f.gw.ConfigPath(), f.gw.StateDir(), ocPort, f.doorURL, f.hostURL)}
	startCaddy(b, global.String()+fmt.Sprintf(`http://:%[1]d {
	bind clawgate/door
	@alice clawgate_identity user:alice@example.com
	handle @alice {
		clawgate_remote alicehost:%[2]d {
			gateway alice
		}
	}
}
http://:%[2]d {
	bind clawgate/alicehost
	clawgate 127.0.0.1:%[3]d {
		gateway alice
		allow user:alice@example.com scopes operator.read,operator.write
	}
}
`, frontDoorPort, alicePort, ocPort))
	for _, name := range []string{"door", "alicehost"} {
		waitNodeUp(b, name)
	}
	tn.WaitPeer(b, f.alice, "door")
	tn.WaitPeer(b, f.alice, "alicehost")
	waitRemotesReachable(b, "alice")

	// The host's gate audits the gateway once at start and refuses (503)
	// until then; the front door passes that on.
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := tailnetGet(b, f.alice, f.doorURL+"/")
		if code == http.StatusOK {
			m := regexp.MustCompile(`href="\.?(/assets/[^"]+\.css)"`).FindStringSubmatch(body)
			if m == nil {
				b.Fatalf("the Control UI's document links no stylesheet under /assets/:\n%.2000s", body)
			}
			f.stylesheet = m[1]
			return f
		}
		if time.Now().After(deadline) {
			b.Fatalf("GET / through the front door = %d %.500s, want 200 once the host's gate has audited the gateway", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hopsSelf connects an operator session from the device to the gateway at
// url (http://...) and returns a call that makes one users.self round trip
// on it and fails b unless the gateway answers with alice's login.
func hopsSelf(b *testing.B, ctx context.Context, from *tailnettest.Node, url string) func() {
	oc, err := openclawtest.Dial(ctx, from.HTTPClient(), "ws"+strings.TrimPrefix(url, "http")+"/", nil)
	if err != nil {
		b.Fatalf("WebSocket to %s: %v", url, err)
	}
	b.Cleanup(oc.Close)
	if _, err := oc.Connect(ctx, []string{"operator.read"}, ""); err != nil {
		b.Fatalf("connect to %s: %v", url, err)
	}
	return func() {
		emails, err := oc.Self(ctx)
		if err != nil || !slices.Equal(emails, []string{"alice@example.com"}) {
			b.Fatalf("users.self through %s = %q, %v; want [alice@example.com]", url, emails, err)
		}
	}
}
