package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// The -gates mode measures what the audit gate costs while nobody sends a
// request: one Caddy process with a tsnet node and a plain site on it (the
// baseline: what an idle caddy-tailscale costs), then the same with 1, 10 or
// 50 clawgate gateways, small state dirs, and with one gateway whose
// workspace skills/ tree has 2,000 or 20,000 directories. The process's own
// CPU time (getrusage) over each window is the figure; every configuration is
// measured once per round, rounds interleaved with the baseline, so each
// ratio compares windows a few seconds apart. A long run of the 20,000-dir
// gateway in 20-second windows gives the average and the worst window, and
// the reaction times (a change → 503, the repair → 200) are measured on that
// same gateway through a guarded loopback route.

// gateOptions are the -gates mode's flags.
type gateOptions struct {
	window   time.Duration // idle measurement per configuration and round
	rounds   int
	settle   time.Duration // after loading a configuration, before measuring
	long     time.Duration // the long run of the 20,000-dir gateway; 0 skips it
	reacts   int           // repetitions of each reaction measurement
	markdown string
	verbose  bool
}

// gateConfig is one configuration measured idle.
type gateConfig struct {
	name     string
	gateways int
	dirs     int // directories in gateway g1's skills tree
}

var gateConfigs = []gateConfig{
	{name: "tsnet node only (baseline)"},
	{name: "1 gateway", gateways: 1},
	{name: "10 gateways", gateways: 10},
	{name: "50 gateways", gateways: 50},
	{name: "1 gateway, 2,000-dir skills tree", gateways: 1, dirs: 2000},
	{name: "1 gateway, 20,000-dir skills tree", gateways: 1, dirs: 20000},
}

// gateFiles are the fixture's files: a config whose gateway section lives in
// an $include file and passes the audit behind clawgate.
const (
	gateMainConfig = `{ gateway: { $include: "./gateway.json5" } }`
	gateInclude    = `{
  mode: "local", bind: "loopback", port: 18789,
  trustedProxies: ["127.0.0.1", "::1"],
  auth: { mode: "trusted-proxy",
    trustedProxy: { userHeader: "x-forwarded-user", requiredHeaders: ["x-forwarded-proto", "x-forwarded-host"],
      allowUsers: ["token:bench"], allowLoopback: true } },
}`
	gateInsecureConfig  = `{"gateway":{"mode":"local","bind":"lan","auth":{"mode":"none"}}}`
	gateInsecureInclude = `{ mode: "local", bind: "lan", auth: { mode: "none" } }`
)

// gateBench is the fixture of the -gates mode.
type gateBench struct {
	dir, backend, controlURL, tokenEnv string
	states                             []string // the state dir of gateway gN at [N-1]
	guardPort, plainPort, tsPort       int
	trees                              map[int]string // skills trees by size, built once
}

func runGates(ctx context.Context, o gateOptions, progress io.Writer) (*gateReport, error) {
	begin := time.Now()
	say := func(format string, args ...any) { fmt.Fprintf(progress, "clawbench: "+format+"\n", args...) }
	dir, logf, err := prepareProcess("clawbench-gates-", o.verbose)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	be, err := startBackend()
	if err != nil {
		return nil, fmt.Errorf("starting the backend: %w", err)
	}
	defer be.close()
	cr, err := mintCredentials(dir)
	if err != nil {
		return nil, err
	}
	upCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	tn, err := startTailnet(upCtx, dir, logf)
	if err != nil {
		return nil, fmt.Errorf("starting the tailnet: %w", err)
	}
	defer func() {
		done := make(chan struct{})
		go func() { tn.close(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}()

	gb := &gateBench{dir: dir, backend: be.addr(), controlURL: tn.controlURL, tokenEnv: cr.tokenEnv, tsPort: 18080, trees: map[int]string{}}
	if gb.guardPort, err = freePort(); err != nil {
		return nil, err
	}
	if gb.plainPort, err = freePort(); err != nil {
		return nil, err
	}
	maxGW := 0
	for _, c := range gateConfigs {
		maxGW = max(maxGW, c.gateways)
	}
	for i := 1; i <= maxGW; i++ {
		st, err := gb.makeState(i)
		if err != nil {
			return nil, err
		}
		gb.states = append(gb.states, st)
	}
	for _, c := range gateConfigs {
		if c.dirs > 0 {
			if err := gb.makeTree(c.dirs); err != nil {
				return nil, err
			}
		}
	}
	say("%d state dirs and skills trees of %v directories ready", maxGW, slices.Sorted(mapKeys(gb.trees)))

	defer func() {
		if err := caddy.Stop(); err != nil {
			say("stopping Caddy: %v", err)
		}
	}()
	// The tailnet node comes up once; later loads keep it.
	if err := gb.load(gateConfigs[0]); err != nil {
		return nil, err
	}
	wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
	defer wcancel()
	if _, err := tn.waitPeer(wctx, "gw"); err != nil {
		return nil, err
	}

	rp := &gateReport{machine: machine(), settings: fmt.Sprintf("window %v × %d rounds, settle %v, long run %v, %d reactions each", o.window, o.rounds, o.settle, o.long, o.reacts)}
	rp.idle = make([][]float64, len(gateConfigs))
	rp.heap = make([][]float64, len(gateConfigs))
	for r := 0; r < o.rounds; r++ {
		order := slices.Clone(gateConfigs)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, c := range order {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			i := slices.IndexFunc(gateConfigs, func(g gateConfig) bool { return g.name == c.name })
			if err := gb.load(c); err != nil {
				return nil, err
			}
			sleep(ctx, o.settle)
			rp.heap[i] = append(rp.heap[i], heapInUse())
			pct := idleCPU(ctx, o.window)
			rp.idle[i] = append(rp.idle[i], pct)
			say("round %d/%d: %-36s %6.3f%% of a core", r+1, o.rounds, c.name, pct)
		}
	}

	big := gateConfigs[len(gateConfigs)-1]
	if o.long > 0 {
		if err := gb.load(gateConfigs[0]); err != nil {
			return nil, err
		}
		sleep(ctx, o.settle)
		rp.longBase = idleCPU(ctx, 20*time.Second)
		if err := gb.load(big); err != nil {
			return nil, err
		}
		sleep(ctx, o.settle)
		say("long run: %s for %v in 20 s windows", big.name, o.long)
		for t := time.Duration(0); t < o.long && ctx.Err() == nil; t += 20 * time.Second {
			rp.long = append(rp.long, idleCPU(ctx, 20*time.Second))
		}
	}

	if o.reacts > 0 {
		if err := gb.load(big); err != nil {
			return nil, err
		}
		sleep(ctx, o.settle)
		rp.reactions, err = gb.reactions(ctx, o.reacts, say)
		if err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rp.took = time.Since(begin)
	return rp, nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// idleCPU is the process's CPU over d as a percentage of one core.
func idleCPU(ctx context.Context, d time.Duration) float64 {
	c0, t0 := cpuTime(), time.Now()
	sleep(ctx, d)
	return 100 * float64(cpuTime()-c0) / float64(time.Since(t0))
}

func heapInUse() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse)
}

// makeState writes gateway gN's state dir: the config, its include, and an
// empty workspace.
func (gb *gateBench) makeState(n int) (string, error) {
	st := filepath.Join(gb.dir, fmt.Sprintf("state-g%d", n))
	if err := os.MkdirAll(filepath.Join(st, "workspace"), 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(st, 0o700); err != nil {
		return "", err
	}
	for name, content := range map[string]string{"openclaw.json": gateMainConfig, "gateway.json5": gateInclude} {
		if err := os.WriteFile(filepath.Join(st, name), []byte(content), 0o600); err != nil {
			return "", err
		}
	}
	return st, nil
}

// makeTree builds a skills tree of about dirs directories, as 200 skills of
// dirs/200 directories each (the shape of the reported case), outside any
// workspace; a configuration links it in.
func (gb *gateBench) makeTree(dirs int) error {
	root := filepath.Join(gb.dir, fmt.Sprintf("skills-%d", dirs))
	per := max(dirs/200-1, 0)
	for s := 1; s <= 200; s++ {
		skill := filepath.Join(root, fmt.Sprintf("skill-%d", s))
		for d := 1; d <= per; d++ {
			if err := os.MkdirAll(filepath.Join(skill, fmt.Sprintf("d%d", d)), 0o700); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(skill, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(skill, "SKILL.md"), []byte("# skill\n"), 0o600); err != nil {
			return err
		}
	}
	gb.trees[dirs] = root
	return nil
}

// setTree moves a skills tree into gateway g1's workspace (a rename, so the
// tree is its own, not a symlink the audit would flag), or moves it out.
func (gb *gateBench) setTree(dirs int) error {
	skills := filepath.Join(gb.states[0], "workspace", "skills")
	// Put back whichever tree is in place.
	if _, err := os.Lstat(skills); err == nil {
		for n, home := range gb.trees {
			if _, err := os.Stat(home); os.IsNotExist(err) {
				if err := os.Rename(skills, home); err != nil {
					return err
				}
				_ = n
				break
			}
		}
	}
	if dirs == 0 {
		return nil
	}
	return os.Rename(gb.trees[dirs], skills)
}

// load runs Caddy with configuration c.
func (gb *gateBench) load(c gateConfig) error {
	// With no gateway running, the tree can move without a gate seeing it.
	if err := loadCaddy(gb.caddyfile(gateConfig{})); err != nil {
		return err
	}
	if err := gb.setTree(c.dirs); err != nil {
		return fmt.Errorf("placing the skills tree: %w", err)
	}
	return loadCaddy(gb.caddyfile(c))
}

func (gb *gateBench) caddyfile(c gateConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{
	admin off
	auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
	clawgate {
		node gw {
			control_url %s
			state_dir %s
			ephemeral
		}
`, gb.controlURL, filepath.Join(gb.dir, "gw"))
	for i := 1; i <= c.gateways; i++ {
		st := gb.states[i-1]
		fmt.Fprintf(&b, `		gateway g%d {
			config %s
			state_dir %s
			block_on warn
		}
`, i, filepath.Join(st, "openclaw.json"), st)
	}
	fmt.Fprintf(&b, `	}
}

# the baseline: a plain site on the tailnet node
http://:%d {
	bind clawgate/gw
	reverse_proxy %s
}
`, gb.tsPort, gb.backend)
	if c.gateways > 0 {
		// Every gateway gets a guard, as in real use (a gateway no guard
		// admits its users through fails clawgate's consistency checks);
		// g1's, at the root, is the one the reaction times go through.
		fmt.Fprintf(&b, `
# the gateways guarded on loopback
http://127.0.0.1:%d {
	bind 127.0.0.1
`, gb.guardPort)
		for i := c.gateways; i >= 1; i-- {
			path := fmt.Sprintf("/g%d/*", i)
			if i == 1 {
				path = ""
			}
			fmt.Fprintf(&b, `	handle %s {
		clawgate %s {
			gateway g%d
			token bench {
				env %s
			}
			allow token:bench scopes operator.read
		}
	}
`, path, gb.backend, i, gb.tokenEnv)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// reaction is one kind of change and how long the gate took to see it.
type reaction struct {
	name       string
	block, fix []time.Duration
}

// reactions breaks and repairs gateway g1 in each way n times, timing the
// first 503 after the change and the first 200 after the repair.
func (gb *gateBench) reactions(ctx context.Context, n int, say func(string, ...any)) ([]reaction, error) {
	st := gb.states[0]
	cfg := filepath.Join(st, "openclaw.json")
	inc := filepath.Join(st, "gateway.json5")
	outside := filepath.Join(gb.dir, "outside-skill")
	if err := os.MkdirAll(outside, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(outside, "SKILL.md"), []byte("# outside\n"), 0o600); err != nil {
		return nil, err
	}
	link := filepath.Join(st, "workspace", "skills", "linked-skill")
	write := func(p, s string) func() error { return func() error { return os.WriteFile(p, []byte(s), 0o600) } }
	rename := func(p, s string) func() error {
		return func() error {
			if err := os.WriteFile(p+".tmp", []byte(s), 0o600); err != nil {
				return err
			}
			return os.Rename(p+".tmp", p)
		}
	}
	chmod := func(p string, m os.FileMode) func() error { return func() error { return os.Chmod(p, m) } }
	kinds := []struct {
		name        string
		break_, fix func() error
	}{
		{"insecure config edit (in place)", write(cfg, gateInsecureConfig), write(cfg, gateMainConfig)},
		{"atomic-rename save", rename(cfg, gateInsecureConfig), rename(cfg, gateMainConfig)},
		{"chmod 644 of the config", chmod(cfg, 0o644), chmod(cfg, 0o600)},
		{"$include edit", write(inc, gateInsecureInclude), write(inc, gateInclude)},
		{"new symlinked skill (warn-level)", func() error { return os.Symlink(outside, link) }, func() error { return os.Remove(link) }},
	}
	c := &http.Client{Timeout: 5 * time.Second}
	status := func() int {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/bench", gb.guardPort), nil)
		req.Header.Set("X-Real-IP", "203.0.113.7")
		req.Header.Set("Authorization", "Bearer "+os.Getenv(gb.tokenEnv))
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	wait := func(want int, change func() error) (time.Duration, error) {
		t0 := time.Now()
		if err := change(); err != nil {
			return 0, err
		}
		for status() != want {
			if time.Since(t0) > 3*time.Minute {
				return 0, fmt.Errorf("still not %d after 3 minutes", want)
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(t0), nil
	}
	if _, err := wait(200, func() error { return nil }); err != nil {
		return nil, fmt.Errorf("gateway g1 does not pass its audit before the changes: %w", err)
	}
	var out []reaction
	for _, k := range kinds {
		r := reaction{name: k.name}
		for i := 0; i < n; i++ {
			d, err := wait(503, k.break_)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k.name, err)
			}
			r.block = append(r.block, d)
			if d, err = wait(200, k.fix); err != nil {
				return nil, fmt.Errorf("%s, repaired: %w", k.name, err)
			}
			r.fix = append(r.fix, d)
		}
		say("reaction: %-34s block %v, fix %v", k.name, r.block, r.fix)
		out = append(out, r)
	}
	return out, nil
}

// gateReport is the -gates mode's result.
type gateReport struct {
	idle      [][]float64 // % of a core per configuration and round
	heap      [][]float64 // heap in use after GC, bytes
	longBase  float64
	long      []float64
	reactions []reaction
	machine   string
	settings  string
	took      time.Duration
}

func (rp *gateReport) rows() [][]string {
	rows := [][]string{{"configuration", "idle CPU, % of a core", "above the baseline, per gateway", "ratio to the baseline", "heap in use"}}
	base := rp.idle[0]
	for i, c := range gateConfigs {
		var diffs, ratios []float64
		for r := range rp.idle[i] {
			diffs = append(diffs, (rp.idle[i][r]-base[r])/float64(max(c.gateways, 1)))
			if base[r] > 0 {
				ratios = append(ratios, rp.idle[i][r]/base[r])
			}
		}
		per, ratio := "—", "—"
		if c.gateways > 0 {
			per = medRange(diffs, "%.4f")
			ratio = medRange(ratios, "%.2f×")
		}
		rows = append(rows, []string{c.name, medRange(rp.idle[i], "%.3f"), per, ratio, kib(median(rp.heap[i]))})
	}
	return rows
}

// medRange formats the median of v and, for several values, their range.
func medRange(v []float64, format string) string {
	out := fmt.Sprintf(format, median(v))
	if len(v) > 1 {
		out += fmt.Sprintf(" ("+format+" to "+format+")", slices.Min(v), slices.Max(v))
	}
	return out
}

func (rp *gateReport) longRows() [][]string {
	if len(rp.long) == 0 {
		return nil
	}
	sum, worst := 0.0, 0.0
	for _, v := range rp.long {
		sum += v
		worst = max(worst, v)
	}
	return [][]string{
		{"run", "windows", "mean idle CPU", "worst 20 s window", "baseline (one 20 s window before)"},
		{gateConfigs[len(gateConfigs)-1].name, fmt.Sprint(len(rp.long)), fmt.Sprintf("%.3f%%", sum/float64(len(rp.long))), fmt.Sprintf("%.3f%%", worst), fmt.Sprintf("%.3f%%", rp.longBase)},
	}
}

func (rp *gateReport) reactionRows() [][]string {
	rows := [][]string{{"change", "edit → 503 (median, max)", "fix → 200 (median, max)"}}
	for _, r := range rp.reactions {
		rows = append(rows, []string{r.name, durStats(r.block), durStats(r.fix)})
	}
	return rows
}

func durStats(ds []time.Duration) string {
	v := make([]float64, len(ds))
	worst := time.Duration(0)
	for i, d := range ds {
		v[i] = float64(d)
		worst = max(worst, d)
	}
	return fmt.Sprintf("%v, %v", time.Duration(median(v)).Round(time.Millisecond), worst.Round(time.Millisecond))
}

func (rp *gateReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "clawbench -gates: %s; %s; took %v\n\n", rp.machine, rp.settings, rp.took.Round(time.Second))
	writeTab(w, rp.rows())
	if rows := rp.longRows(); rows != nil {
		fmt.Fprintln(w)
		writeTab(w, rows)
	}
	if len(rp.reactions) > 0 {
		fmt.Fprintln(w)
		writeTab(w, rp.reactionRows())
	}
}

func (rp *gateReport) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "%s; %s; took %v.\n\n", rp.machine, rp.settings, rp.took.Round(time.Second))
	writeMDTable(w, rp.rows())
	if rows := rp.longRows(); rows != nil {
		fmt.Fprintln(w)
		writeMDTable(w, rows)
	}
	if len(rp.reactions) > 0 {
		fmt.Fprintln(w)
		writeMDTable(w, rp.reactionRows())
	}
}
