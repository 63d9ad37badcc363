package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is everything measured for one scenario, over all rounds.
type result struct {
	name, path, baseline string

	http      sample
	httpRates []float64 // req/s of each round
	wsRTT     sample    // one connection
	wsThr     sample    // many connections
	wsRates   []float64 // msg/s of each round
	idle      []idleSample
}

func (r *result) rps() float64 { return r.http.rate() }

// idleBytes is the median over rounds of the heap+stack cost per idle
// WebSocket (the median, because one round can catch a background
// allocation burst of the tailnet nodes).
func (r *result) idleBytes() float64 {
	return median(r.idleField(func(s idleSample) float64 { return s.bytesPerConn }))
}

func (r *result) idleRSS() float64 {
	return median(r.idleField(func(s idleSample) float64 { return s.rssPerConn }))
}

func (r *result) idleGoroutines() float64 {
	return median(r.idleField(func(s idleSample) float64 { return s.goroutinesPerConn }))
}

func (r *result) idleField(f func(idleSample) float64) []float64 {
	var v []float64
	for _, s := range r.idle {
		if s.err == nil {
			v = append(v, f(s))
		}
	}
	return v
}

func (r *result) idleErr() error {
	for _, s := range r.idle {
		if s.err != nil {
			return s.err
		}
	}
	return nil
}

// percentile returns the p-th percentile (0 < p ≤ 1) of lat by the
// nearest-rank method; lat is sorted in place.
func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	i := int(math.Ceil(p*float64(len(lat)))) - 1
	return lat[max(0, min(i, len(lat)-1))]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is half the range of v relative to its mean: how far apart the
// rounds of one scenario were, a measure of the machine's noise.
func spread(v []float64) float64 {
	if len(v) < 2 {
		return 0
	}
	lo, hi, sum := v[0], v[0], 0.0
	for _, x := range v {
		lo, hi, sum = min(lo, x), max(hi, x), sum+x
	}
	mean := sum / float64(len(v))
	if mean == 0 {
		return 0
	}
	return (hi - lo) / 2 / math.Abs(mean)
}

// report is a finished run.
type report struct {
	results  []*result
	settings string // one line: what was run
	machine  string // one line: where it ran
	took     time.Duration
}

func (rp *report) byName(name string) *result {
	for _, r := range rp.results {
		if r.name == name {
			return r
		}
	}
	return nil
}

// ratio formats a/b as a percentage; "-" when there is no baseline.
func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*a/b)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func kib(b float64) string {
	if math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.1f KiB", b/1024)
}

// httpRows is the HTTP table: header first.
func (rp *report) httpRows() [][]string {
	rows := [][]string{{"scenario", "path", "baseline", "req/s", "± rounds", "p50", "p99", "req/s vs base", "p99 vs base", "errors"}}
	for _, r := range rp.results {
		base := rp.byName(r.baseline)
		p50, p99 := percentile(r.http.lat, 0.50), percentile(r.http.lat, 0.99)
		rr, pr := "-", "-"
		if base != nil {
			rr = ratio(r.rps(), base.rps())
			pr = ratio(float64(p99), float64(percentile(base.http.lat, 0.99)))
		}
		rows = append(rows, []string{r.name, r.path, orDash(r.baseline), fmt.Sprintf("%.0f", r.rps()),
			fmt.Sprintf("%.1f%%", 100*spread(r.httpRates)), ms(p50), ms(p99), rr, pr, errCell(r.http)})
	}
	return rows
}

// wsRows is the WebSocket table: header first.
func (rp *report) wsRows(conns int) [][]string {
	rows := [][]string{{"scenario", "RTT p50", "RTT p99", fmt.Sprintf("msg/s (%d conns)", conns), "± rounds", "msg/s vs base",
		"idle heap+stack/conn", "vs base", "idle RSS/conn", "goroutines/conn", "errors"}}
	for _, r := range rp.results {
		base := rp.byName(r.baseline)
		tr, mr := "-", "-"
		if base != nil {
			tr = ratio(r.wsThr.rate(), base.wsThr.rate())
			mr = ratio(r.idleBytes(), base.idleBytes())
		}
		errs := errCell(r.wsRTT)
		if e := errCell(r.wsThr); e != "0" {
			errs = e
		}
		if err := r.idleErr(); err != nil {
			errs = "idle: " + err.Error()
		}
		rows = append(rows, []string{r.name, ms(percentile(r.wsRTT.lat, 0.50)), ms(percentile(r.wsRTT.lat, 0.99)),
			fmt.Sprintf("%.0f", r.wsThr.rate()), fmt.Sprintf("%.1f%%", 100*spread(r.wsRates)), tr,
			kib(r.idleBytes()), mr, kib(r.idleRSS()), fmt.Sprintf("%.2f", r.idleGoroutines()), errs})
	}
	return rows
}

func errCell(s sample) string {
	if s.errs == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%v)", s.errs, s.firstEr)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// verdict is one of the targets, judged on this run.
type verdict struct {
	target, measured, outcome string
}

// outcome judges a measured ratio against a target. A miss smaller than
// the noise seen between rounds is reported as such, not as a pass.
func outcome(ok bool, missBy, noise float64) string {
	switch {
	case ok:
		return "met"
	case missBy <= noise:
		return fmt.Sprintf("missed by %.1f%%, within the %.1f%% round-to-round noise", 100*missBy, 100*noise)
	default:
		return fmt.Sprintf("not met (missed by %.1f%%; noise %.1f%%)", 100*missBy, 100*noise)
	}
}

// atLeast judges a ≥ want·b for a throughput-like figure.
func atLeast(target string, a, b *result, val func(*result) float64, noise func(*result) float64, want float64) verdict {
	got := val(a) / val(b)
	return verdict{
		target:   target,
		measured: fmt.Sprintf("%.1f%%", 100*got),
		outcome:  outcome(got >= want, want-got, noise(a)+noise(b)),
	}
}

// verdicts judges the targets that this command can measure.
func (rp *report) verdicts() []verdict {
	var out []verdict
	rps := func(r *result) float64 { return r.rps() }
	rpsNoise := func(r *result) float64 { return spread(r.httpRates) }
	caddy := rp.byName("caddy")
	for _, name := range []string{"clawgate token", "clawgate HS256", "clawgate EdDSA"} {
		cg := rp.byName(name)
		if cg == nil || caddy == nil {
			continue
		}
		out = append(out, atLeast(name+" req/s ≥ 95% of caddy", cg, caddy, rps, rpsNoise, 0.95))
		p99, base := percentile(cg.http.lat, 0.99), percentile(caddy.http.lat, 0.99)
		got := float64(p99) / float64(base)
		out = append(out, verdict{
			target:   name + " p99 ≤ 110% of caddy",
			measured: fmt.Sprintf("%.1f%% (%s vs %s)", 100*got, ms(p99), ms(base)),
			outcome:  outcome(got <= 1.10, got-1.10, rpsNoise(cg)+rpsNoise(caddy)),
		})
	}
	if ts, cg := rp.byName("tsnet caddy"), rp.byName("tsnet clawgate"); ts != nil && cg != nil {
		out = append(out, atLeast("tsnet clawgate req/s ≥ 95% of tsnet caddy", cg, ts, rps, rpsNoise, 0.95))
		thr := func(r *result) float64 { return r.wsThr.rate() }
		out = append(out, atLeast("tsnet clawgate WS msg/s ≥ 95% of tsnet caddy", cg, ts, thr, func(r *result) float64 { return spread(r.wsRates) }, 0.95))
	}
	if tok := rp.byName("clawgate token"); tok != nil {
		for _, name := range []string{"clawgate HS256", "clawgate EdDSA"} {
			if j := rp.byName(name); j != nil {
				out = append(out, atLeast("cached "+name[len("clawgate "):]+" JWT req/s ≥ static token", j, tok, rps, rpsNoise, 1.0))
			}
		}
	}
	mem := func(a, b string) {
		ra, rb := rp.byName(a), rp.byName(b)
		if ra == nil || rb == nil {
			return
		}
		x, y := ra.idleBytes(), rb.idleBytes()
		got := x / y
		noise := spread(ra.idleField(func(s idleSample) float64 { return s.bytesPerConn })) +
			spread(rb.idleField(func(s idleSample) float64 { return s.bytesPerConn }))
		out = append(out, verdict{
			target:   fmt.Sprintf("idle WS memory: %s ≤ %s", a, b),
			measured: fmt.Sprintf("%.1f%% (%s vs %s)", 100*got, kib(x), kib(y)),
			outcome:  outcome(got <= 1, got-1, noise),
		})
	}
	mem("clawgate token", "caddy")
	mem("tsnet clawgate", "tsnet caddy")
	return out
}

// writeText prints the tables for a terminal.
func (rp *report) writeText(w io.Writer, wsConns int) {
	fmt.Fprintf(w, "\n%s\n%s\ntook %v\n\nHTTP\n", rp.machine, rp.settings, rp.took.Round(time.Second))
	writeTab(w, rp.httpRows())
	fmt.Fprintf(w, "\nWebSocket\n")
	writeTab(w, rp.wsRows(wsConns))
	fmt.Fprintf(w, "\nTargets\n")
	rows := [][]string{{"target", "measured", "outcome"}}
	for _, v := range rp.verdicts() {
		rows = append(rows, []string{v.target, v.measured, v.outcome})
	}
	writeTab(w, rows)
}

func writeTab(w io.Writer, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
}

// writeMarkdown writes the same tables as Markdown.
func (rp *report) writeMarkdown(w io.Writer, wsConns int) {
	fmt.Fprintf(w, "%s\n\n%s Took %v.\n\n**HTTP**\n\n", rp.machine, rp.settings, rp.took.Round(time.Second))
	writeMDTable(w, rp.httpRows())
	fmt.Fprintf(w, "\n**WebSocket**\n\n")
	writeMDTable(w, rp.wsRows(wsConns))
	fmt.Fprintf(w, "\n**Targets**\n\n")
	rows := [][]string{{"target", "measured", "outcome"}}
	for _, v := range rp.verdicts() {
		rows = append(rows, []string{v.target, v.measured, v.outcome})
	}
	writeMDTable(w, rows)
}

func writeMDTable(w io.Writer, rows [][]string) {
	for i, row := range rows {
		cells := make([]string, len(row))
		for j, c := range row {
			cells[j] = strings.ReplaceAll(c, "|", `\|`)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		if i == 0 {
			fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(row)))
		}
	}
}
