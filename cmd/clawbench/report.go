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

	http   sample // all rounds merged
	rounds []roundHTTP
	wsRTT  sample    // one connection
	wsThr  sample    // many connections
	wsRate []float64 // msg/s of each round
	idle   []idleSample
}

// roundHTTP is one round's HTTP window of a scenario.
type roundHTTP struct {
	rps      float64
	p99      time.Duration
	cpuPerOp time.Duration
}

func newRoundHTTP(s sample) roundHTTP {
	r := roundHTTP{rps: s.rate(), p99: percentile(s.lat, 0.99)}
	if s.ops > 0 {
		r.cpuPerOp = s.cpu / time.Duration(s.ops)
	}
	return r
}

func (r *result) perRound(f func(roundHTTP) float64) []float64 {
	out := make([]float64, len(r.rounds))
	for i, x := range r.rounds {
		out[i] = f(x)
	}
	return out
}

func (r *result) cpuPerOp() time.Duration {
	if r.http.ops == 0 {
		return 0
	}
	return r.http.cpu / time.Duration(r.http.ops)
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

// paired divides a's figure by b's round by round (both were measured in
// the same round, minutes apart at most) and returns the median of those
// ratios and their median absolute deviation. Pairing cancels most of the
// slow drift of a shared machine; the deviation is what is left.
func paired(a, b []float64) (med, mad float64) {
	var ratios []float64
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			ratios = append(ratios, a[i]/b[i])
		}
	}
	if len(ratios) == 0 {
		return math.NaN(), math.NaN()
	}
	med = median(ratios)
	dev := make([]float64, len(ratios))
	for i, x := range ratios {
		dev[i] = math.Abs(x - med)
	}
	return med, median(dev)
}

func pct(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}

// pm formats a paired ratio with its deviation.
func pm(med, mad float64) string {
	if math.IsNaN(med) {
		return "-"
	}
	return fmt.Sprintf("%.1f%% ± %.1f", 100*med, 100*mad)
}

func rps(x roundHTTP) float64      { return x.rps }
func p99(x roundHTTP) float64      { return float64(x.p99) }
func cpuPerOp(x roundHTTP) float64 { return float64(x.cpuPerOp) }

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

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

func kib(b float64) string {
	if math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.1f KiB", b/1024)
}

// httpRows is the HTTP table: header first.
func (rp *report) httpRows() [][]string {
	rows := [][]string{{"scenario", "path", "baseline", "req/s", "p50", "p99", "CPU/req",
		"req/s vs base", "CPU/req vs base", "p99 vs base", "errors"}}
	for _, r := range rp.results {
		rr, cr, pr := "-", "-", "-"
		if base := rp.byName(r.baseline); base != nil {
			rr = pm(paired(r.perRound(rps), base.perRound(rps)))
			cr = pm(paired(r.perRound(cpuPerOp), base.perRound(cpuPerOp)))
			pr = pm(paired(r.perRound(p99), base.perRound(p99)))
		}
		rows = append(rows, []string{r.name, r.path, orDash(r.baseline), fmt.Sprintf("%.0f", r.rps()),
			ms(percentile(r.http.lat, 0.50)), ms(percentile(r.http.lat, 0.99)), us(r.cpuPerOp()), rr, cr, pr, errCell(r.http)})
	}
	return rows
}

// wsRows is the WebSocket table: header first.
func (rp *report) wsRows(conns int) [][]string {
	rows := [][]string{{"scenario", "RTT p50", "RTT p99", fmt.Sprintf("msg/s (%d conns)", conns), "msg/s vs base",
		"idle heap+stack/conn", "vs base", "idle RSS/conn", "goroutines/conn", "errors"}}
	for _, r := range rp.results {
		tr, mr := "-", "-"
		if base := rp.byName(r.baseline); base != nil {
			tr = pm(paired(r.wsRate, base.wsRate))
			mr = pct(r.idleBytes() / base.idleBytes())
		}
		errs := errCell(r.wsRTT)
		if e := errCell(r.wsThr); e != "0" {
			errs = e
		}
		if err := r.idleErr(); err != nil {
			errs = "idle: " + err.Error()
		}
		rows = append(rows, []string{r.name, ms(percentile(r.wsRTT.lat, 0.50)), ms(percentile(r.wsRTT.lat, 0.99)),
			fmt.Sprintf("%.0f", r.wsThr.rate()), tr,
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

// verdict is one of clawgate's performance targets (BENCHMARKS.md), judged
// on this run.
type verdict struct {
	target, measured, outcome string
}

// outcome judges a measured ratio against a target. A miss no larger than
// the round-to-round deviation is reported as such, not as a pass.
func outcome(ok bool, missBy, noise float64) string {
	switch {
	case ok:
		return "met"
	case missBy <= noise:
		return fmt.Sprintf("missed by %.1f%%, within the ±%.1f%% noise", 100*missBy, 100*noise)
	default:
		return fmt.Sprintf("not met (missed by %.1f%%; noise ±%.1f%%)", 100*missBy, 100*noise)
	}
}

// verdicts judges the performance targets that this command can measure,
// each on paired per-round ratios (see paired). Throughput targets are judged
// twice: on req/s, as the targets state them, and on CPU time per request,
// which a busy machine disturbs much less.
func (rp *report) verdicts() []verdict {
	var out []verdict
	atLeast := func(target string, a, b []float64, want float64) {
		med, mad := paired(a, b)
		if math.IsNaN(med) {
			return
		}
		out = append(out, verdict{target, pm(med, mad), outcome(med >= want, want-med, mad)})
	}
	atMost := func(target string, a, b []float64, want float64) {
		med, mad := paired(a, b)
		if math.IsNaN(med) {
			return
		}
		out = append(out, verdict{target, pm(med, mad), outcome(med <= want, med-want, mad)})
	}
	capacity := func(x roundHTTP) float64 { // requests per CPU-second
		if x.cpuPerOp == 0 {
			return 0
		}
		return 1 / float64(x.cpuPerOp)
	}
	caddy := rp.byName("caddy")
	for _, name := range []string{"clawgate token", "guard-only token", "clawgate HS256", "clawgate EdDSA"} {
		cg := rp.byName(name)
		if cg == nil || caddy == nil {
			continue
		}
		atLeast(name+": req/s ≥ 95% of caddy", cg.perRound(rps), caddy.perRound(rps), 0.95)
		atLeast(name+": req per CPU-second ≥ 95% of caddy", cg.perRound(capacity), caddy.perRound(capacity), 0.95)
		atMost(name+": p99 ≤ 110% of caddy", cg.perRound(p99), caddy.perRound(p99), 1.10)
	}
	if ts, cg := rp.byName("tsnet caddy"), rp.byName("tsnet clawgate"); ts != nil && cg != nil {
		atLeast("tsnet clawgate: req/s ≥ 95% of tsnet caddy", cg.perRound(rps), ts.perRound(rps), 0.95)
		atLeast("tsnet clawgate: req per CPU-second ≥ 95% of tsnet caddy", cg.perRound(capacity), ts.perRound(capacity), 0.95)
		atLeast("tsnet clawgate: WS msg/s ≥ 95% of tsnet caddy", cg.wsRate, ts.wsRate, 0.95)
	}
	if tok := rp.byName("clawgate token"); tok != nil {
		for _, name := range []string{"clawgate HS256", "clawgate EdDSA"} {
			if j := rp.byName(name); j != nil {
				alg := strings.TrimPrefix(name, "clawgate ")
				atLeast("cached "+alg+" JWT: req/s ≥ static token", j.perRound(rps), tok.perRound(rps), 1.0)
				atMost("cached "+alg+" JWT: CPU/req ≤ static token", j.perRound(cpuPerOp), tok.perRound(cpuPerOp), 1.0)
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
			measured: fmt.Sprintf("%s (%s vs %s)", pct(got), kib(x), kib(y)),
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
