package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		lat  []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of odd, unsorted", ms(5, 1, 3), 0.5, 3 * time.Millisecond},
		{"median of even is the lower", ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(100)...), 0.99, 99 * time.Millisecond},
		{"p99 of 1000 is the 990th", ms(seq(1000)...), 0.99, 990 * time.Millisecond},
		{"p100 is the max", ms(3, 9, 1), 1, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.lat, tt.p); got != tt.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

// seq is 1..n.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func TestSpreadAndMedian(t *testing.T) {
	tests := []struct {
		v          []float64
		spread     float64
		median     float64
		medianNaN  bool
		spreadZero bool
	}{
		{v: nil, medianNaN: true, spreadZero: true},
		{v: []float64{10}, median: 10, spreadZero: true},
		{v: []float64{90, 110}, spread: 0.10, median: 100},
		{v: []float64{100, 50, 150}, spread: 0.50, median: 100},
	}
	for _, tt := range tests {
		if got := spread(tt.v); math.Abs(got-tt.spread) > 1e-9 || (tt.spreadZero && got != 0) {
			t.Errorf("spread(%v) = %v, want %v", tt.v, got, tt.spread)
		}
		got := median(tt.v)
		if tt.medianNaN != math.IsNaN(got) || (!tt.medianNaN && got != tt.median) {
			t.Errorf("median(%v) = %v, want %v", tt.v, got, tt.median)
		}
	}
}

func TestOutcome(t *testing.T) {
	tests := []struct {
		ok            bool
		missBy, noise float64
		want          string
	}{
		{true, 0, 0, "met"},
		{true, -0.5, 0.01, "met"},
		{false, 0.02, 0.05, "missed by 2.0%, within the ±5.0% noise"},
		{false, 0.10, 0.05, "not met (missed by 10.0%; noise ±5.0%)"},
	}
	for _, tt := range tests {
		if got := outcome(tt.ok, tt.missBy, tt.noise); got != tt.want {
			t.Errorf("outcome(%v, %v, %v) = %q, want %q", tt.ok, tt.missBy, tt.noise, got, tt.want)
		}
	}
}

func TestSelectScenarios(t *testing.T) {
	all := []*scenario{
		{name: "direct"}, {name: "caddy", baseline: "direct"}, {name: "clawgate token", baseline: "caddy"},
		{name: "tsnet caddy", baseline: "caddy"}, {name: "tsnet clawgate", baseline: "tsnet caddy"},
	}
	tests := []struct {
		names   string
		want    string
		wantErr string
	}{
		{"", "direct,caddy,clawgate token,tsnet caddy,tsnet clawgate", ""},
		{"tsnet clawgate", "direct,caddy,tsnet caddy,tsnet clawgate", ""},
		{"direct", "direct", ""},
		{" clawgate token ,direct", "direct,caddy,clawgate token", ""},
		{"nginx", "", `unknown scenario "nginx"`},
	}
	for _, tt := range tests {
		got, err := selectScenarios(all, tt.names)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("selectScenarios(%q) error = %v, want %q", tt.names, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("selectScenarios(%q): %v", tt.names, err)
			continue
		}
		var names []string
		for _, sc := range got {
			names = append(names, sc.name)
		}
		if strings.Join(names, ",") != tt.want {
			t.Errorf("selectScenarios(%q) = %v, want %s", tt.names, names, tt.want)
		}
	}
}

// TestCaddyfileAdapts checks that both forms of the generated config are
// valid Caddyfiles that put the guard on the clawgate sites only.
func TestCaddyfileAdapts(t *testing.T) {
	for _, tailnet := range []bool{false, true} {
		s := sites{backend: "127.0.0.1:9", plainPort: 1001, guardPort: 1002, guardOnlyPort: 1003, tokenEnv: "T", hmacEnv: "H", edPath: "/k.pem",
			tailnet: tailnet, controlURL: "http://127.0.0.1:1", stateDir: "/tmp/x", tsPlainPort: 18080, tsGuardPort: 18081, login: "user-1@fake-control.example.net"}
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(s.caddyfile()), map[string]any{"filename": "Caddyfile"})
		if err != nil {
			t.Fatalf("tailnet=%v: adapting: %v\n%s", tailnet, err, s.caddyfile())
		}
		wantGuards := 2 + btoi(tailnet)
		if got := bytes.Count(cfg, []byte(`"handler":"clawgate"`)); got != wantGuards {
			t.Errorf("tailnet=%v: %d clawgate handlers, want %d\n%s", tailnet, got, wantGuards, cfg)
		}
		if got := bytes.Count(cfg, []byte(`"listen":["clawgate/gw:`)); got != 2*btoi(tailnet) {
			t.Errorf("tailnet=%v: %d sites bound to clawgate/gw, want %d", tailnet, got, 2*btoi(tailnet))
		}
		if got := bytes.Count(cfg, []byte(`"listen":["127.0.0.1:`)); got != 3 {
			t.Errorf("tailnet=%v: %d sites bound to 127.0.0.1, want 3\n%s", tailnet, got, cfg)
		}
		if !bytes.Contains(cfg, []byte(`user:user-1@fake-control.example.net`)) && tailnet {
			t.Errorf("tailnet site lacks the user rule:\n%s", cfg)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestPreflightCatchesWrongPath proves the preflight fails a path that does
// not do what its scenario claims: the backend reached directly forwards no
// user, and it does not refuse a request without credentials.
func TestPreflightCatchesWrongPath(t *testing.T) {
	be, err := startBackend()
	if err != nil {
		t.Fatal(err)
	}
	defer be.close()
	tr := newTransport(1, (&net.Dialer{}).DialContext)
	defer tr.CloseIdleConnections()
	tg := &target{base: "http://" + be.addr(), header: http.Header{}, transport: tr}
	ctx := context.Background()
	if err := preflight(ctx, &scenario{name: "direct", target: tg}, 16); err != nil {
		t.Fatalf("preflight of the honest direct path: %v", err)
	}
	if err := preflight(ctx, &scenario{name: "claims a user", target: tg, wantUser: "alice@example.com"}, 16); err == nil {
		t.Error("preflight accepted a path that forwards no user")
	}
	if err := preflight(ctx, &scenario{name: "claims a guard", target: tg, guardedLoopback: true}, 16); err == nil {
		t.Error("preflight accepted an unguarded path as guarded")
	}
}

// TestRunLoopback runs the whole command on loopback with tiny durations:
// every scenario is measured without errors and the report renders.
func TestRunLoopback(t *testing.T) {
	o := options{duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond, wsDuration: 200 * time.Millisecond,
		rounds: 2, idleRounds: 1, concurrency: 4, wsConns: 2, idleConns: 10, msgSize: 64}
	rp, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"direct", "caddy", "clawgate token", "guard-only token", "clawgate HS256", "clawgate EdDSA"}
	if len(rp.results) != len(want) {
		t.Fatalf("%d results, want %d", len(rp.results), len(want))
	}
	for i, r := range rp.results {
		if r.name != want[i] {
			t.Errorf("result %d = %q, want %q", i, r.name, want[i])
		}
		if r.http.errs != 0 || r.wsRTT.errs != 0 || r.wsThr.errs != 0 || r.idleErr() != nil {
			t.Errorf("%s: errors: http %d (%v), ws %d/%d, idle %v", r.name, r.http.errs, r.http.firstEr, r.wsRTT.errs, r.wsThr.errs, r.idleErr())
		}
		if r.http.ops == 0 || r.wsRTT.ops == 0 || r.wsThr.ops == 0 || len(r.idle) != o.idleRounds {
			t.Errorf("%s: nothing measured: http %d, ws %d/%d, idle rounds %d", r.name, r.http.ops, r.wsRTT.ops, r.wsThr.ops, len(r.idle))
		}
		if len(r.rounds) != o.rounds || len(r.wsRate) != o.rounds {
			t.Errorf("%s: %d/%d rounds recorded, want %d", r.name, len(r.rounds), len(r.wsRate), o.rounds)
		}
		if r.http.cpu <= 0 {
			t.Errorf("%s: no CPU time recorded", r.name)
		}
	}
	var md bytes.Buffer
	rp.writeMarkdown(&md, o.wsConns)
	for _, s := range []string{"| clawgate EdDSA | ", "clawgate token: req/s ≥ 95% of caddy", "idle WS memory: clawgate token ≤ caddy"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}
}

func TestPaired(t *testing.T) {
	tests := []struct {
		name     string
		a, b     []float64
		med, mad float64
	}{
		{"one round", []float64{90}, []float64{100}, 0.9, 0},
		{"drift cancels", []float64{50, 100, 200}, []float64{100, 200, 400}, 0.5, 0},
		{"median and deviation", []float64{90, 100, 130}, []float64{100, 100, 100}, 1.0, 0.1},
		{"uneven lengths use the common rounds", []float64{1, 2, 3}, []float64{1, 1}, 1.5, 0.5},
		{"zero baselines are skipped", []float64{5, 8}, []float64{0, 10}, 0.8, 0},
	}
	for _, tt := range tests {
		med, mad := paired(tt.a, tt.b)
		if math.Abs(med-tt.med) > 1e-9 || math.Abs(mad-tt.mad) > 1e-9 {
			t.Errorf("%s: paired(%v, %v) = %v ± %v, want %v ± %v", tt.name, tt.a, tt.b, med, mad, tt.med, tt.mad)
		}
	}
	if med, _ := paired(nil, []float64{1}); !math.IsNaN(med) {
		t.Errorf("paired with no common round = %v, want NaN", med)
	}
}

func TestReportRatios(t *testing.T) {
	lat := func(d time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = d
		}
		return out
	}
	// Two rounds; in the second the whole machine ran at half speed.
	caddy := &result{name: "caddy", http: sample{ops: 3000, elapsed: 2 * time.Second, cpu: 300 * time.Millisecond, lat: lat(2*time.Millisecond, 100)},
		rounds: []roundHTTP{{rps: 2000, p99: 2 * time.Millisecond, cpuPerOp: 100 * time.Microsecond}, {rps: 1000, p99: 4 * time.Millisecond, cpuPerOp: 100 * time.Microsecond}}}
	token := &result{name: "clawgate token", baseline: "caddy", http: sample{ops: 1500, elapsed: 2 * time.Second, cpu: 300 * time.Millisecond, lat: lat(3*time.Millisecond, 100)},
		rounds: []roundHTTP{{rps: 1000, p99: 3 * time.Millisecond, cpuPerOp: 200 * time.Microsecond}, {rps: 500, p99: 6 * time.Millisecond, cpuPerOp: 200 * time.Microsecond}}}
	rp := &report{results: []*result{caddy, token}}
	got := rp.httpRows()[2]
	want := map[int]string{3: "750", 6: "200.0 µs", 7: "50.0% ± 0.0", 8: "200.0% ± 0.0", 9: "150.0% ± 0.0"}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("clawgate row column %q = %q, want %q", rp.httpRows()[0][i], got[i], w)
		}
	}
	outcomes := map[string]string{}
	for _, v := range rp.verdicts() {
		outcomes[v.target] = v.outcome
	}
	for target, want := range map[string]string{
		"clawgate token: req/s ≥ 95% of caddy":              "not met (missed by 45.0%; noise ±0.0%)",
		"clawgate token: req per CPU-second ≥ 95% of caddy": "not met (missed by 45.0%; noise ±0.0%)",
		"clawgate token: p99 ≤ 110% of caddy":               "not met (missed by 40.0%; noise ±0.0%)",
	} {
		if outcomes[target] != want {
			t.Errorf("verdict %q = %q, want %q", target, outcomes[target], want)
		}
	}
}
