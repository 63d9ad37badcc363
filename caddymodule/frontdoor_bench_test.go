package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkFrontDoorHops compares one hop (alice's device straight to her
// gateway host's clawgate) with two (through the front door, which forwards
// over the tailnet with a PROXY header, and the host looks alice up again)
// in the same run: each iteration sends one request each way, alternating,
// on kept-alive connections, so both see the same machine load. It reports
// the median and 99th percentile of each and the two-hop/one-hop ratios.
func BenchmarkFrontDoorHops(b *testing.B) {
	f := newFrontDoorFixture(b)
	c := f.alice.HTTPClient()
	defer c.CloseIdleConnections()
	urls := map[string]string{
		"one hop":  fmt.Sprintf("http://alicehost:%d/bench", alicePort),
		"two hops": f.doorURL + "/bench",
	}
	get := func(url string) {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s = %d, want 200", url, resp.StatusCode)
		}
	}
	for range 50 { // warm both paths: connections, WhoIs caches
		get(urls["one hop"])
		get(urls["two hops"])
	}
	lat := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		order := []string{"one hop", "two hops"}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, path := range order {
			begin := time.Now()
			get(urls[path])
			lat[path] = append(lat[path], time.Since(begin))
		}
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) time.Duration {
		slices.Sort(d)
		return d[min(len(d)-1, int(float64(len(d))*p))]
	}
	one50, one99 := pct(lat["one hop"], 0.50), pct(lat["one hop"], 0.99)
	two50, two99 := pct(lat["two hops"], 0.50), pct(lat["two hops"], 0.99)
	b.ReportMetric(float64(one50.Microseconds()), "µs-p50-1hop")
	b.ReportMetric(float64(one99.Microseconds()), "µs-p99-1hop")
	b.ReportMetric(float64(two50.Microseconds()), "µs-p50-2hop")
	b.ReportMetric(float64(two99.Microseconds()), "µs-p99-2hop")
	b.ReportMetric(float64(two50)/float64(one50), "x-p50")
	b.ReportMetric(float64(two99)/float64(one99), "x-p99")
}
