package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkFrontDoorHops compares one hop (alice's device straight to her
// gateway host's clawgate) with two (through the front door, which forwards
// over the tailnet with a PROXY header, and the host looks alice up again)
// in the same run, with a loopback backend behind the host's guard:
//
//   - GET: one request each way per iteration, on kept-alive connections;
//   - WebSocket: one message echoed by the backend each way per iteration,
//     on a WebSocket opened once each way (after the upgrade a hop only
//     copies bytes).
//
// See benchHops for what each reports.
func BenchmarkFrontDoorHops(b *testing.B) {
	f := newFrontDoorFixture(b)
	oneURL := fmt.Sprintf("http://alicehost:%d", alicePort)

	b.Run("GET", func(b *testing.B) {
		c := f.alice.HTTPClient()
		defer c.CloseIdleConnections()
		direct := &http.Client{Timeout: 30 * time.Second}
		defer direct.CloseIdleConnections()
		benchHops(b, map[string]func(){
			hopsDirect: hopsGet(b, direct, "http://"+f.beA.addr()+"/bench", "alice@example.com"),
			hopsOne:    hopsGet(b, c, oneURL+"/bench", "alice@example.com"),
			hopsTwo:    hopsGet(b, c, f.doorURL+"/bench", "alice@example.com"),
		})
	})

	b.Run("WebSocket", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		benchHops(b, map[string]func(){
			hopsOne: hopsEcho(b, ctx, f, oneURL+"/ws"),
			hopsTwo: hopsEcho(b, ctx, f, f.doorURL+"/ws"),
		})
	})
}

// The paths benchHops compares.
const (
	hopsDirect = "direct" // no hop: the backend over loopback, for reference
	hopsOne    = "1hop"
	hopsTwo    = "2hop"
)

// benchHops times paths[hopsOne] and paths[hopsTwo], one call of each per
// iteration, alternating which goes first, so both see the same machine
// load. It reports the median and 99th percentile of each and the
// two-hop/one-hop ratios; then, untimed, the process CPU time per call of
// each path (also of paths[hopsDirect] when given), b.N calls in a row:
// the difference of two paths' CPU is what the extra hop costs, on every
// node and goroutine of the process together.
func benchHops(b *testing.B, paths map[string]func()) {
	one, two := paths[hopsOne], paths[hopsTwo]
	for range 50 { // warm both paths: connections, WhoIs caches
		one()
		two()
	}
	lat := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		order := []string{hopsOne, hopsTwo}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, p := range order {
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
	one50, one99 := pct(lat[hopsOne], 0.50), pct(lat[hopsOne], 0.99)
	two50, two99 := pct(lat[hopsTwo], 0.50), pct(lat[hopsTwo], 0.99)
	b.ReportMetric(float64(one50.Microseconds()), "µs-p50-1hop")
	b.ReportMetric(float64(one99.Microseconds()), "µs-p99-1hop")
	b.ReportMetric(float64(two50.Microseconds()), "µs-p50-2hop")
	b.ReportMetric(float64(two99.Microseconds()), "µs-p99-2hop")
	b.ReportMetric(float64(two50)/float64(one50), "x-p50")
	b.ReportMetric(float64(two99)/float64(one99), "x-p99")

	for _, p := range []string{hopsDirect, hopsOne, hopsTwo} {
		fn := paths[p]
		if fn == nil {
			continue
		}
		before, ok := processCPU()
		if !ok {
			return
		}
		for range b.N {
			fn()
		}
		after, _ := processCPU()
		b.ReportMetric(float64((after-before).Microseconds())/float64(b.N), "µs-cpu-"+p)
	}
}

// hopsGet returns a call that GETs url with c and fails b unless the answer
// is 200 and carries user, as the backend echoes the X-Forwarded-User it was
// sent.
func hopsGet(b *testing.B, c *http.Client, url, user string) func() {
	want := []byte(`"user":"` + user + `"`)
	if strings.HasPrefix(url, "http://127.") {
		want = []byte(`"user":""`) // straight to the backend: no guard set it
	}
	return func() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(body, want) {
			b.Fatalf("GET %s = %d %s, %v; want 200 with %s", url, resp.StatusCode, body, err, want)
		}
	}
}

// hopsEcho opens a WebSocket from alice's device to url and returns a call
// that sends one message and waits for the backend's echo of it.
func hopsEcho(b *testing.B, ctx context.Context, f *frontDoorFixture, url string) func() {
	ws, _, err := websocket.Dial(ctx, strings.Replace(url, "http", "ws", 1), &websocket.DialOptions{HTTPClient: f.alice.HTTPClient()})
	if err != nil {
		b.Fatalf("WebSocket to %s: %v", url, err)
	}
	b.Cleanup(func() { ws.Close(websocket.StatusNormalClosure, "") })
	if _, hello, err := ws.Read(ctx); err != nil || string(hello) != "hello alice@example.com" {
		b.Fatalf("WebSocket to %s: first message %q, %v; want hello alice@example.com", url, hello, err)
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
