package caddymodule

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/clawgate/clawgate/caddymodule/internal/browsertest"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
)

// BenchmarkControlUIConnect measures, in one run, the time from navigating
// to the real Control UI to its WebSocket's hello-ok: through clawgate over
// the in-process tailnet (alice's browser, as in TestControlUIBrowser), and
// through a plain Caddy reverse_proxy on 127.0.0.1 that sets the same
// identity headers (the baseline). Each iteration loads the page once each
// way, alternating, in two browsers whose devices are already paired, with
// the HTTP cache off so every asset crosses the path. It reports the median
// of each and their ratio.
//
//	go test ./caddymodule -run '^$' -bench BenchmarkControlUIConnect -benchtime 20x
func BenchmarkControlUIConnect(b *testing.B) {
	chromium := browsertest.Chromium(b)
	openclawtest.Require(b)
	f := newBrowserFixture(b, true)
	viaClawgate := f.browserAs(b, chromium, f.alice, 443)
	direct := browsertest.New(b, chromium, browsertest.Options{TrustSPKI: f.spki})
	viaClawgate.ReportOnFailure(b)
	direct.ReportOnFailure(b)
	load := func(br *browsertest.Browser, url string) time.Duration {
		if _, err := browsertest.Run(br, 10*time.Second, chromedp.Navigate("about:blank")); err != nil {
			b.Fatal(err)
		}
		from := len(br.Frames())
		start := time.Now()
		if _, err := browsertest.Run(br, 60*time.Second, chromedp.Navigate(url+"/")); err != nil {
			b.Fatalf("navigating to %s: %v", url, err)
		}
		fr, _, err := br.WaitFrame(60*time.Second, from, func(fr browsertest.Frame) bool {
			return !fr.Sent && strings.Contains(fr.Data, `"hello-ok"`)
		})
		if err != nil {
			b.Fatalf("%s: %v", url, err)
		}
		return fr.At.Sub(start)
	}
	for _, br := range []*browsertest.Browser{viaClawgate, direct} {
		if _, err := chromedp.Call(br.Context(), network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
			b.Fatal(err)
		}
	}
	// Warm up: each browser's device is paired by its first connect.
	load(viaClawgate, f.siteURL)
	load(direct, f.baselineURL)

	var withCG, without []time.Duration
	b.ResetTimer()
	for b.Loop() {
		withCG = append(withCG, load(viaClawgate, f.siteURL))
		without = append(without, load(direct, f.baselineURL))
	}
	b.StopTimer()
	med := func(d []time.Duration) float64 {
		d = slices.Clone(d)
		slices.Sort(d)
		return float64(d[len(d)/2]) / float64(time.Millisecond)
	}
	b.ReportMetric(med(withCG), "clawgate-ms")
	b.ReportMetric(med(without), "baseline-ms")
	b.ReportMetric(med(withCG)/med(without), "ratio")
	b.ReportMetric(0, "ns/op")
}
