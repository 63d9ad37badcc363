package caddymodule

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/release"
	"github.com/clawgate/clawgate/tsnet"
)

// The bad-input suite: hundreds of hostile requests, written byte
// for byte, against a real Caddy with clawgate in front of a recording
// backend, both on loopback listeners and over a real in-process tailnet
// (badinput_tailnet_test.go). Every case asserts two things about what the
// backend saw: a request the guard must refuse never arrives (the backend's
// request count is unchanged), and a request that does arrive carries exactly
// the identity the guard decided — one X-Forwarded-For, -Proto, -Host, user
// and scopes value each, no other spelling of a protected header, no edge
// credential — whatever the client sent.

// expect is what a case demands of the guard.
type expect int

const (
	// deny: the backend must not see the request.
	deny expect = iota
	// allow: the backend must see it exactly once, with the guard's identity.
	allow
	// either: the guard (or Caddy, or Go's HTTP parser) may refuse it; if the
	// backend sees it, it carries the guard's identity. Used where a standard
	// permits both outcomes, or where only the identity matters.
	either
)

func (e expect) String() string {
	return [...]string{"deny", "allow", "either"}[e]
}

// noHost and noIP leave the Host or X-Real-IP line out of a request;
// siteHostname is the site's own host name without its port.
const (
	noHost       = "\x00no-host"
	noIP         = "\x00no-ip"
	siteHostname = "\x00site-hostname"
)

// badCase is one hostile request and what must become of it.
type badCase struct {
	name    string
	want    expect
	status  int    // deny: the exact status; 0 accepts any refusal (or a closed connection)
	errType string // deny: error.type of a JSON denial; "" leaves it unchecked
	// deny: the bearer is well formed but no token or JWT the edge knows
	// (401 clawgate_bad_credential on loopback). From a tailnet device such
	// a bearer may be meant for the gateway itself, so the rules decide.
	unknownBearer bool
	// deny: a connection reset instead of the status is a refusal too (the
	// server answers before reading the whole request and then hangs up).
	resetOK bool

	method, target, proto string // defaults: GET, /tools/invoke, HTTP/1.1
	host                  string // Host header; "" = the site's, noHost = none, siteHostname = the site's without port
	ipFor                 func(ip string) string
	auth                  []string // Authorization values, one line each
	lines                 []string // further header lines, written as they are
	body                  string
	raw                   func(host, ip string) string // the whole request, overriding the above

	// What an admitted request must carry.
	user, scopes string
	xff          []string // acceptable X-Forwarded-For values; default: the client IP (+ the site's suffix)
	xfh          string   // X-Forwarded-Host; default: the Host sent
	ws           bool     // admitted means 101 Switching Protocols
	maxReach     int      // either: most backend requests the case may cause; default 1
	responses    int      // pipelined responses to read; default 1

	prep  func(t *testing.T, st *biSite, ip string)                      // runs first, e.g. to lock the client out
	after func(t *testing.T, st *biSite, res []rawResult, got []recSeen) // extra assertions
}

// recSeen is one request as a backend received it.
type recSeen struct {
	seen
	URI, Host string      // empty when the backend does not record them
	BodyLen   int64       // bytes of body the backend read
	Trailer   http.Header // trailers that arrived with the body
}

// biSite is one Caddy site the suite speaks to.
type biSite struct {
	name      string
	addr      string // host:port to dial
	host      string // default Host header
	xffSuffix string // what a plain reverse_proxy behind the guard appends to X-Forwarded-For
	count     func() int
	since     func(n int) []recSeen
	hostKnown bool // the backend records Host: X-Forwarded-Host must equal it
	check     func(t *testing.T, c *badCase, got recSeen)

	// A tailnet site sets all three; a loopback site none.
	dial func(ctx context.Context, network, addr string) (net.Conn, error) // nil: net.Dial on the host
	// clientIP is the only client address the guard may forward, whatever
	// the request says: the dialling node's tailnet IP (Caddy trusts no
	// tailnet peer as a proxy, so X-Real-IP from one is ignored).
	clientIP string
	// refusal maps the loopback sites' refusal of a deny case (status,
	// error.type) to this site's.
	refusal func(status int, errType string, unknownBearer bool) (int, string)
}

// kind is "tailnet" or "loopback".
func (st *biSite) kind() string {
	if st.dial != nil {
		return "tailnet"
	}
	return "loopback"
}

// refused is how this site refuses a request the loopback sites refuse with
// status and errType.
func (st *biSite) refused(status int, errType string, unknownBearer bool) (int, string) {
	if st.refusal == nil {
		return status, errType
	}
	return st.refusal(status, errType, unknownBearer)
}

// biSuite counts cases and hands out client addresses, so that every case is
// its own client and rate limiting never mixes cases up.
type biSuite struct {
	mu                  sync.Mutex
	ipN                 int
	cases, runs, passed int
	runsBy              map[string]int // by site kind
	failedNames         []string
	families            []string // "name: n cases"
}

func (s *biSuite) nextIP() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ipN++
	// 198.18.0.0/15 is for benchmarking: never loopback, never anyone's.
	return fmt.Sprintf("198.%d.%d.%d", 18+s.ipN/65024, s.ipN/254%256, s.ipN%254+1)
}

// family runs every case against every site; a case passes when it passes on
// all of them.
func (s *biSuite) family(t *testing.T, sites []*biSite, cases []badCase) {
	seenNames := map[string]bool{}
	kinds := map[string]int{}
	for _, st := range sites {
		kinds[st.kind()]++
	}
	s.mu.Lock()
	s.families = append(s.families, fmt.Sprintf("%s: %d (sites: %d loopback, %d tailnet)", t.Name(), len(cases), kinds["loopback"], kinds["tailnet"]))
	s.mu.Unlock()
	for i := range cases {
		c := &cases[i]
		if seenNames[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		seenNames[c.name] = true
		for _, st := range sites {
			if st.clientIP != "" && (c.ipFor != nil || c.xff != nil || c.prep != nil) {
				t.Fatalf("case %q depends on the client address the request claims or on earlier requests from it; site %s has a fixed client address", c.name, st.name)
			}
		}
		ok := t.Run(c.name, func(t *testing.T) {
			for _, st := range sites {
				if len(sites) == 1 {
					s.run(t, st, c)
					continue
				}
				t.Run(st.name, func(t *testing.T) { s.run(t, st, c) })
			}
		})
		s.mu.Lock()
		s.cases++
		s.runs += len(sites)
		if s.runsBy == nil {
			s.runsBy = map[string]int{}
		}
		for k, n := range kinds {
			s.runsBy[k] += n
		}
		if ok {
			s.passed++
		} else {
			s.failedNames = append(s.failedNames, t.Name()+"/"+c.name)
		}
		s.mu.Unlock()
	}
}

// request renders c as bytes for a site.
func (c *badCase) request(host, ip string) string {
	if c.raw != nil {
		return c.raw(host, ip)
	}
	method, target, proto := c.method, c.target, c.proto
	if method == "" {
		method = "GET"
	}
	if target == "" {
		target = "/tools/invoke"
	}
	if proto == "" {
		proto = "HTTP/1.1"
	}
	var b strings.Builder
	b.WriteString(method + " " + target + " " + proto + "\r\n")
	if host != noHost {
		b.WriteString("Host: " + host + "\r\n")
	}
	if ip != noIP {
		b.WriteString("X-Real-IP: " + ip + "\r\n")
	}
	for _, a := range c.auth {
		b.WriteString("Authorization: " + a + "\r\n")
	}
	framed := false
	for _, l := range c.lines {
		n := strings.ToLower(l)
		if strings.HasPrefix(n, "content-length:") || strings.HasPrefix(n, "transfer-encoding:") {
			framed = true
		}
		b.WriteString(l + "\r\n")
	}
	if c.body != "" && !framed {
		b.WriteString("Content-Length: " + strconv.Itoa(len(c.body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(c.body)
	return b.String()
}

// rawResult is one response read off a raw connection.
type rawResult struct {
	status int
	header http.Header
	body   string
	err    error // the server closed or broke the connection instead
}

// exchange writes raw to the site and reads up to n responses. Writing runs
// alongside reading, so a server that answers before the request is complete
// (a refused multi-megabyte body) is heard rather than deadlocked.
func exchange(st *biSite, raw string, n int) []rawResult {
	var c net.Conn
	var err error
	if st.dial != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err = st.dial(ctx, "tcp", st.addr)
		cancel()
	} else {
		c, err = net.DialTimeout("tcp", st.addr, 5*time.Second)
	}
	if err != nil {
		return []rawResult{{err: err}}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = io.WriteString(c, raw) }()
	br := bufio.NewReader(c)
	var out []rawResult
	for i := 0; i < n; i++ {
		if i > 0 {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if i == 0 {
				out = append(out, rawResult{err: err})
			}
			break
		}
		r := rawResult{status: resp.StatusCode, header: resp.Header}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			r.body, r.err = string(b), err
		}
		resp.Body.Close()
		out = append(out, r)
		if resp.StatusCode == http.StatusSwitchingProtocols || resp.Close {
			break
		}
	}
	return out
}

// run sends one case to one site and judges what the backend saw.
func (s *biSuite) run(t *testing.T, st *biSite, c *badCase) {
	ip := s.nextIP()
	if c.prep != nil {
		c.prep(t, st, ip)
	}
	sentIP := ip
	if c.ipFor != nil {
		sentIP = c.ipFor(ip)
	}
	host := c.host
	switch host {
	case "":
		host = st.host
	case siteHostname:
		host = st.host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	raw := c.request(host, sentIP)
	n := c.responses
	if n == 0 {
		n = 1
	}
	before := st.count()
	res := exchange(st, raw, n)
	first := res[0]
	if first.err != nil || n > 1 || c.maxReach > 1 {
		// A refused or broken exchange may still be on its way upstream; give
		// it a moment so that a late arrival is counted against this case.
		time.Sleep(50 * time.Millisecond)
	}
	got := st.since(before)
	desc := func() string {
		return fmt.Sprintf("request:\n%s\nresponse: %d %v %.300q", clip(raw, 2048), first.status, first.err, first.body)
	}

	switch c.want {
	case deny:
		if len(got) != 0 {
			t.Errorf("backend saw %d request(s) the guard must refuse (%s %s, user %q, scopes %q)\n%s",
				len(got), got[0].Method, got[0].Path, got[0].Header.Get("X-Forwarded-User"), got[0].Header.Get("X-Openclaw-Scopes"), desc())
		}
		if st.refusal != nil && c.status == http.StatusUnauthorized && c.errType == "" {
			t.Fatalf("case %q is refused with 401 without saying why (errType), so how site %s refuses it is undefined", c.name, st.name)
		}
		if c.unknownBearer && c.errType != "clawgate_bad_credential" {
			t.Fatalf("case %q: an unknown bearer is refused as clawgate_bad_credential, not %q", c.name, c.errType)
		}
		status, errType := st.refused(c.status, c.errType, c.unknownBearer)
		switch {
		case c.resetOK && first.err != nil && strings.Contains(first.err.Error(), "connection reset by peer"):
		case status != 0 && first.status != status:
			t.Errorf("status = %d (err %v), want %d\n%s", first.status, first.err, status, desc())
		case status == 0 && first.err == nil && first.status < 400:
			t.Errorf("status = %d, want a refusal\n%s", first.status, desc())
		}
		if errType != "" && first.err == nil {
			if got := denialType(first.body); got != errType {
				t.Errorf("error.type = %q, want %q\n%s", got, errType, desc())
			}
		}
	case allow:
		want := http.StatusOK
		if c.ws {
			want = http.StatusSwitchingProtocols
		}
		if first.err != nil || first.status != want {
			t.Errorf("status = %d (err %v), want %d\n%s", first.status, first.err, want, desc())
		}
		if len(got) != 1 {
			t.Errorf("backend saw %d requests, want 1\n%s", len(got), desc())
		}
	case either:
		limit := c.maxReach
		if limit == 0 {
			limit = 1
		}
		if len(got) > limit {
			t.Errorf("backend saw %d requests, want at most %d\n%s", len(got), limit, desc())
		}
		if len(got) == 0 && first.err == nil && first.status < 300 && first.status != http.StatusSwitchingProtocols {
			t.Errorf("status %d but the backend saw nothing\n%s", first.status, desc())
		}
	}
	clientIP := sentIP
	if st.clientIP != "" {
		clientIP = st.clientIP
	}
	for _, g := range got {
		checkIdentity(t, st, c, g, clientIP, host)
		if st.check != nil {
			st.check(t, c, g)
		}
	}
	if c.after != nil {
		c.after(t, st, res, got)
	}
	if t.Failed() && testing.Verbose() {
		t.Logf("site %s (%s), case %s (%s)", st.name, st.kind(), c.name, c.want)
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("…[%d more bytes]", len(s)-n)
}

// denialType is error.type of a JSON denial, or "" when the body is not one.
func denialType(body string) string {
	var v struct {
		Error struct{ Type string }
	}
	if json.Unmarshal([]byte(body), &v) != nil {
		return ""
	}
	return v.Error.Type
}

// protectedName reports whether a header name, in any spelling, is one only the
// guard may send: the identity and forwarding headers OpenClaw's trusted-proxy
// mode reads, which the guard strips and then sets. It is written
// independently of the guard's own list.
func protectedName(name string) bool {
	n := strings.ToLower(strings.Trim(name, " \t"))
	n = strings.NewReplacer("_", "-", ".", "-").Replace(n)
	switch n {
	case "forwarded", "x-forwarded", "x-real-ip", "x-openclaw-scopes", "x-forwarded-user",
		"true-client-ip", "cf-connecting-ip", "x-client-ip", "x-original-forwarded-for":
		return true
	}
	return strings.HasPrefix(n, "x-forwarded-") || strings.HasPrefix(n, "tailscale-")
}

// canonicalIdentity are the only spellings the guard's headers may arrive in.
var canonicalIdentity = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-User", "X-Openclaw-Scopes"}

// checkIdentity asserts that a request the backend saw carries exactly the
// guard's identity for case c.
func checkIdentity(t *testing.T, st *biSite, c *badCase, got recSeen, ip, host string) {
	t.Helper()
	xffs := c.xff
	if xffs == nil {
		// The client address as sent, or as an address parser spells it
		// (v4-mapped addresses unmapped, IPv6 compressed).
		xffs = []string{ip}
		if a, err := netip.ParseAddr(ip); err == nil {
			xffs = append(xffs, a.String(), a.Unmap().String())
		}
	}
	wantXFF := make([]string, len(xffs))
	for i, x := range xffs {
		wantXFF[i] = x + st.xffSuffix
	}
	wantXFH := c.xfh
	if wantXFH == "" {
		wantXFH = host
	}
	one := func(name string) (string, bool) {
		vals, ok := got.Header[name]
		if !ok {
			t.Errorf("backend: %s absent", name)
			return "", false
		}
		if len(vals) != 1 {
			t.Errorf("backend: %s = %q, want exactly one value", name, vals)
			return "", false
		}
		return vals[0], true
	}
	if v, ok := one("X-Forwarded-User"); ok && v != c.user {
		t.Errorf("backend: X-Forwarded-User = %q, want %q", v, c.user)
	}
	wantScopes := c.scopes
	if wantScopes == "" {
		// These guards name no gateway block, so no OpenClaw version is known.
		wantScopes = release.NoScopesUnmeasured
	}
	if v, ok := one("X-Openclaw-Scopes"); ok && !sameScopes(v, wantScopes) {
		t.Errorf("backend: X-Openclaw-Scopes = %q, want %q", v, wantScopes)
	}
	if v, ok := one("X-Forwarded-For"); ok && !slices.Contains(wantXFF, v) {
		t.Errorf("backend: X-Forwarded-For = %q, want one of %q", v, wantXFF)
	}
	if v, ok := one("X-Forwarded-Proto"); ok && v != "http" {
		t.Errorf("backend: X-Forwarded-Proto = %q, want http", v)
	}
	if v, ok := one("X-Forwarded-Host"); ok {
		if v == "" {
			t.Errorf("backend: X-Forwarded-Host is empty")
		}
		if wantXFH != noHost && v != wantXFH {
			t.Errorf("backend: X-Forwarded-Host = %q, want %q", v, wantXFH)
		}
		if st.hostKnown && v != got.Host {
			t.Errorf("backend: X-Forwarded-Host = %q but the request's Host is %q", v, got.Host)
		}
	}
	for name, vals := range got.Header {
		if protectedName(name) && !slices.Contains(canonicalIdentity, name) {
			t.Errorf("backend: client-spelled %q = %.80q reached the gateway", name, vals)
		}
	}
	for name := range got.Trailer {
		if protectedName(name) {
			t.Errorf("backend: client trailer %q reached the gateway", name)
		}
	}
	if a, ok := got.Header["Authorization"]; ok {
		t.Errorf("backend: the edge credential reached the gateway (%d Authorization values)", len(a))
	}
}

// sameScopes compares two x-openclaw-scopes values as sets.
func sameScopes(a, b string) bool {
	split := func(s string) []string {
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(split(a), split(b))
}

// fixtureSite wraps one site of the guard fixture.
func fixtureSite(f *guardFixture, base, name string) *biSite {
	hp := strings.TrimPrefix(base, "http://")
	st := &biSite{name: name, addr: hp, host: hp, count: f.be.count}
	if base == f.guardURL {
		st.xffSuffix = ", 127.0.0.1"
	}
	st.since = func(n int) []recSeen {
		f.be.mu.Lock()
		defer f.be.mu.Unlock()
		var out []recSeen
		for _, r := range f.be.reqs[n:] {
			out = append(out, recSeen{seen: r})
		}
		return out
	}
	return st
}

// recBackend stands in for the gateway on the routes site: it reads every body
// to the end and records the raw request target and Host too.
type recBackend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []recSeen
}

func newRecBackend(t *testing.T) *recBackend {
	b := &recBackend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		b.mu.Lock()
		b.reqs = append(b.reqs, recSeen{seen: seen{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()}, URI: r.RequestURI, Host: r.Host, BodyLen: n, Trailer: r.Trailer.Clone()})
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"ok":true,"bytes":%d}`+"\n", n)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *recBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

func (b *recBackend) since(n int) []recSeen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.reqs[n:])
}

// routesFixture is a second Caddy: one catch-all site (any Host) where
// /tools/invoke is guarded by its own clawgate that admits only token ops,
// and everything else by one that admits token ci.
type routesFixture struct {
	be            *recBackend
	site          *biSite
	tokCI, tokOps string
}

// biGlobal is the global options of the suite's Caddy: the host's loopback
// is a trusted fronting proxy whose X-Real-IP names the client, so cases can
// speak as clients with distinct, non-loopback addresses. No tailnet peer is
// trusted. nodes are clawgate's tailnet nodes, for the tailnet cases.
func biGlobal(nodes ...tsnet.Config) string {
	return globalOptions{nodes: nodes, extra: `servers {
	trusted_proxies static 127.0.0.1/32
	client_ip_headers X-Real-IP
}`}.String()
}

// newRoutes makes the routes fixture's tokens and backend; siteBlock is its
// Caddy site.
func newRoutes(t *testing.T) *routesFixture {
	r := &routesFixture{be: newRecBackend(t), tokCI: randToken(t, 32), tokOps: randToken(t, 32)}
	t.Setenv("CG_BI_TOKEN_CI", r.tokCI)
	t.Setenv("CG_BI_TOKEN_OPS", r.tokOps)
	return r
}

// siteBlock is the routes site: address, bind target, and extra guard
// configuration added to both guards (a rate limit for the tailnet).
func (r *routesFixture) siteBlock(address, bind, extra string) string {
	tokens := `
		token ci {
			env CG_BI_TOKEN_CI
			user ci-bot
		}
		token ops {
			env CG_BI_TOKEN_OPS
		}` + extra
	return fmt.Sprintf(`%s {
	bind %s
	clawgate /tools/invoke %s {
		gateway tools%s
		allow token:ops scopes operator.read,operator.admin
	}
	clawgate %s {
		gateway rest%s
		allow token:ci scopes operator.read,operator.write
		allow token:ops scopes operator.read
	}
}
`, address, bind, r.be.srv.Listener.Addr(), tokens, r.be.srv.Listener.Addr(), tokens)
}

// newSite is a biSite for one listener of the routes site.
func (r *routesFixture) newSite(name, addr, host string) *biSite {
	st := &biSite{name: name, addr: addr, host: host, count: r.be.count, since: r.be.since, hostKnown: true}
	st.check = func(t *testing.T, c *badCase, got recSeen) {
		t.Helper()
		// The route rule: whatever Caddy routed, a request OpenClaw will
		// dispatch as /tools/invoke must have been admitted by the
		// /tools/invoke guard (token ops, operator.admin), never by the other.
		p, ok := openclawPathname(got.URI)
		user, scopes := got.Header.Get("X-Forwarded-User"), got.Header.Get("X-Openclaw-Scopes")
		if ok && p == "/tools/invoke" && (user != "token:ops" || !strings.Contains(scopes, "operator.admin")) {
			t.Errorf("route rule bypassed: backend got %q (OpenClaw routes it to %s) as user %q with scopes %q",
				got.URI, p, user, scopes)
		}
		if user == "ci-bot" && strings.Contains(scopes, "operator.admin") {
			t.Errorf("token ci got operator.admin at %q", got.URI)
		}
	}
	return st
}

// newRoutesFixture starts a Caddy with the routes site alone, on loopback.
func newRoutesFixture(t *testing.T) *routesFixture {
	r := newRoutes(t)
	port := freePort(t)
	startCaddy(t, biGlobal()+r.siteBlock(fmt.Sprintf("http://:%d", port), "127.0.0.1", ""))
	hp := "127.0.0.1:" + itoa(port)
	waitHTTP(t, "http://"+hp+"/")
	r.site = r.newSite("routes", hp, hp)
	return r
}

// openclawPathname is the path openclaw@2026.9.6 dispatches a request target
// to, and false when it refuses the target: the WHATWG URL parser's pathname
// against base http://localhost (new URL(req.url, base)), then its plugin
// capability rewrite, which turns /__openclaw__/cap/<cap>/<rest> into /<rest>
// before routing (normalizePluginNodeCapabilityScopedUrl). The gateway
// compares the result exactly, e.g. url.pathname !== "/tools/invoke".
func openclawPathname(target string) (string, bool) {
	p := whatwgPathname(target)
	const prefix = "/__openclaw__/cap/"
	if !strings.HasPrefix(p, prefix) {
		return p, true
	}
	rest := p[len(prefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	capability, err := url.PathUnescape(rest[:i])
	if err != nil || strings.TrimSpace(capability) == "" {
		return "", false
	}
	return whatwgPath(rest[i:]), true
}

// whatwgPathname follows the WHATWG URL parser far enough to find the
// pathname of a request target parsed against http://localhost: tabs and
// newlines removed, C0 and spaces trimmed, '\' as '/', scheme-relative
// "//host/…" and absolute "http://host/…" forms, '?' and '#' ending the
// path, and "." / ".." segments (also as %2e) resolved.
func whatwgPathname(target string) string {
	s := strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, strings.TrimFunc(target, func(r rune) bool { return r <= 0x20 }))
	isSlash := func(c byte) bool { return c == '/' || c == '\\' }
	skipAuthority := func(s string) string {
		for len(s) > 0 && isSlash(s[0]) {
			s = s[1:]
		}
		if i := strings.IndexAny(s, "/\\?#"); i >= 0 {
			return s[i:]
		}
		return ""
	}
	if i := strings.IndexByte(s, ':'); i > 0 && validScheme(s[:i]) {
		switch strings.ToLower(s[:i]) {
		case "http", "https", "ws", "wss":
			s = skipAuthority(s[i+1:])
		default:
			return ""
		}
	} else if len(s) >= 2 && isSlash(s[0]) && isSlash(s[1]) {
		s = skipAuthority(s)
	} else if len(s) == 0 || !isSlash(s[0]) {
		s = "/" + s
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	return whatwgPath(s)
}

func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// whatwgPath runs the WHATWG path state over p (the pathname setter does the
// same): segments split on '/' and '\', "." dropped, ".." popping, and a
// trailing "." or ".." leaving a trailing slash.
func whatwgPath(p string) string {
	if p != "" && (p[0] == '/' || p[0] == '\\') {
		p = p[1:]
	}
	var segs []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' || p[i] == '\\' {
			segs = append(segs, p[start:i])
			start = i + 1
		}
	}
	var out []string
	for i, seg := range segs {
		last := i == len(segs)-1
		switch l := strings.ToLower(seg); l {
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		case ".", "%2e":
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}

func TestBadInputPathOracle(t *testing.T) {
	// Every expected value was checked against Node 24 running
	// openclaw@2026.9.6's own normalizePluginNodeCapabilityScopedUrl.
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"/tools/invoke", "/tools/invoke", true},
		{"//tools/invoke", "/invoke", true},
		{"/tools\\invoke", "/tools/invoke", true},
		{"/x/%2e%2e/tools/invoke", "/tools/invoke", true},
		{"/x/.%2E/tools/invoke", "/tools/invoke", true},
		{"/tools/invoke/..", "/tools/", true},
		{"/tools/invoke#x", "/tools/invoke", true},
		{"/tools/invoke%23x", "/tools/invoke%23x", true},
		{"/tools%2finvoke", "/tools%2finvoke", true},
		{"http://evil.example/tools/invoke?x", "/tools/invoke", true},
		{"/__openclaw__/cap/x/tools/invoke", "/tools/invoke", true},
		{"/__openclaw__/cap/%20/tools/invoke", "", false},
		{"/__openclaw__/cap//tools/invoke", "", false},
		{"/TOOLS/invoke", "/TOOLS/invoke", true},
		{"\\tools\\invoke", "/tools/invoke", true},
		{"/x\\..\\tools\\invoke", "/tools/invoke", true},
		{"/tools/invoke%2e", "/tools/invoke%2e", true},
		{"/%2e/tools/invoke", "/tools/invoke", true},
		{"HTTP://evil.example/tools/invoke", "/tools/invoke", true},
		{"/__openclaw__/cap/x/x/../tools/invoke", "/tools/invoke", true},
		{"/__openclaw__/cap/x//tools/invoke", "//tools/invoke", true},
		{"/__openclaw__/cap/%zz/tools/invoke", "", false},
	}
	for _, tt := range tests {
		got, ok := openclawPathname(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("openclawPathname(%q) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// ---- JWT building blocks: tokens are assembled by hand so that headers,
// payloads and encodings can be exactly as hostile as a case needs.

func b64u(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func hmacSign(key []byte) func(string) []byte {
	return func(in string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(in))
		return m.Sum(nil)
	}
}

func edSign(k ed25519.PrivateKey) func(string) []byte {
	return func(in string) []byte { return ed25519.Sign(k, []byte(in)) }
}

func rawJWT(header, payload string, sign func(string) []byte) string {
	in := b64u(header) + "." + b64u(payload)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign(in))
}

// claimsJSON is the fixture's valid claims for sub, plus extra raw members.
func claimsJSON(sub string, extra ...string) string {
	parts := []string{
		fmt.Sprintf(`"sub":%q`, sub),
		`"iss":"https://issuer.test"`,
		`"aud":"clawgate"`,
		fmt.Sprintf(`"exp":%d`, time.Now().Add(time.Hour).Unix()),
	}
	return "{" + strings.Join(append(parts, extra...), ",") + "}"
}

// claimsWithout is claimsJSON for sub with one standard member replaced (or,
// with an empty replacement, removed).
func claimsWithout(sub, member, replacement string) string {
	m := map[string]string{
		"sub": fmt.Sprintf(`"sub":%q`, sub),
		"iss": `"iss":"https://issuer.test"`,
		"aud": `"aud":"clawgate"`,
		"exp": fmt.Sprintf(`"exp":%d`, time.Now().Add(time.Hour).Unix()),
	}
	var parts []string
	for _, k := range []string{"sub", "iss", "aud", "exp"} {
		switch {
		case k != member:
			parts = append(parts, m[k])
		case replacement != "":
			parts = append(parts, replacement)
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

const (
	hsHeader = `{"alg":"HS256","typ":"JWT"}`
	edHeader = `{"alg":"EdDSA","typ":"JWT"}`
)

func TestBadInput(t *testing.T) {
	s := &biSuite{}
	start := time.Now()

	var fixtureGuards []string
	t.Run("the guard fixture configuration", func(t *testing.T) {
		newGuardFixture(t)
		fixtureGuards = biGuardConfigs(t, "home", false)
	})
	x := newBIFixture(t)
	x.checkGuards(t, fixtureGuards)
	t.Logf("fixture (loopback + tailnet) up in %v", time.Since(start).Round(time.Millisecond))

	t.Run("fixture", func(t *testing.T) {
		f := x.f
		all := slices.Concat(x.loopback, x.tailnet)
		t.Run("header spoofing", func(t *testing.T) { s.family(t, all, spoofCases(f)) })
		t.Run("forwarded", func(t *testing.T) { s.family(t, all, forwardedCases(f)) })
		// Loopback only: these cases claim a client address through the
		// trusted proxy's X-Real-IP, and no tailnet peer is one. (Every
		// tailnet run sends an X-Real-IP of its own and must see it ignored.)
		t.Run("client address", func(t *testing.T) { s.family(t, x.loopback, clientAddressCases(f)) })
		t.Run("tailnet addresses in headers", func(t *testing.T) { s.family(t, all, tailnetAddressCases(f)) })
		t.Run("x-forwarded-host", func(t *testing.T) { s.family(t, all, fixtureHostCases(f)) })
		t.Run("jwt", func(t *testing.T) { s.family(t, all, jwtCases(t, f)) })
		t.Run("query tokens", func(t *testing.T) { s.family(t, all, queryCases(f)) })
		t.Run("authorization", func(t *testing.T) { s.family(t, all, authCases(f)) })
		t.Run("websocket", func(t *testing.T) { s.family(t, all, wsCases(t, f)) })
		t.Run("oversize headers", func(t *testing.T) { s.family(t, all, oversizeHeaderCases(f)) })
		// Loopback only: lockouts are per client address, and each case
		// needs a fresh one (the loopback sites' X-Real-IP); over the
		// tailnet every case comes from the probe node's one address, so
		// that site's limit is set out of reach instead.
		t.Run("rate limiting", func(t *testing.T) { s.family(t, x.loopback, rateCases(t, f)) })
	})

	t.Run("routes", func(t *testing.T) {
		r := x.r
		t.Run("path tricks", func(t *testing.T) { s.family(t, x.routes, pathCases(r)) })
		t.Run("host", func(t *testing.T) { s.family(t, x.routes, hostCases(r)) })
		t.Run("bodies and framing", func(t *testing.T) { s.family(t, x.routes, bodyCases(r)) })
	})

	t.Logf("bad-input suite: %d cases, %d runs against Caddy (%d loopback, %d tailnet), %d cases passed, in %v",
		s.cases, s.runs, s.runsBy["loopback"], s.runsBy["tailnet"], s.passed, time.Since(start).Round(time.Millisecond))
	t.Logf("cases per family: %s", strings.Join(s.families, "; "))
	for _, n := range s.failedNames {
		t.Logf("failed: %s", n)
	}
	if s.cases < 200 {
		t.Errorf("only %d bad-input cases ran, want at least 200", s.cases)
	}
	if s.runsBy["tailnet"] < 200 {
		t.Errorf("only %d bad-input runs over the tailnet, want at least 200", s.runsBy["tailnet"])
	}
}

// ---- families on the guard fixture ----

const (
	ciUser, ciScopes = "ci-bot", "operator.read,operator.write"
	opsUser          = "token:ops"
	opsScopes        = "operator.read"
)

// ci is an admitted request with token ci carrying extra header lines.
func ci(f *guardFixture, name string, lines ...string) badCase {
	return badCase{name: name, want: allow, auth: []string{"Bearer " + f.tokCI}, lines: lines, user: ciUser, scopes: ciScopes}
}

func spoofCases(f *guardFixture) []badCase {
	long := "evil-" + strings.Repeat("a", 8<<10)
	longScopes := strings.TrimSuffix(strings.Repeat("operator.admin,", 600), ",")
	cases := []badCase{
		ci(f, "control: token ci, nothing spoofed"),
		ci(f, "user canonical", "X-Forwarded-User: evil@example.com"),
		ci(f, "user lower case", "x-forwarded-user: evil@example.com"),
		ci(f, "user upper case", "X-FORWARDED-USER: evil@example.com"),
		ci(f, "user underscores", "x_forwarded_user: evil@example.com"),
		ci(f, "user dots", "X.Forwarded.User: evil@example.com"),
		ci(f, "user mixed separators", "x_Forwarded.USER: evil@example.com"),
		ci(f, "user duplicated", "X-Forwarded-User: evil@example.com", "X-Forwarded-User: evil2@example.com", "x-forwarded-user: evil3@example.com"),
		ci(f, "user comma-joined", "X-Forwarded-User: evil@example.com, ci-bot"),
		ci(f, "user empty", "X-Forwarded-User:"),
		ci(f, "user 8 KB", "X-Forwarded-User: "+long),
		ci(f, "user obs-text bytes", "X-Forwarded-User: \xe9vil\xff@example.com"),
		ci(f, "user utf-8", "X-Forwarded-User: évil@example.com"),
		ci(f, "scopes canonical", "X-Openclaw-Scopes: operator.admin"),
		ci(f, "scopes underscores", "x_openclaw_scopes: operator.admin"),
		ci(f, "scopes dots and case", "X.OpenClaw.SCOPES: operator.admin"),
		ci(f, "scopes duplicated and comma-joined", "X-Openclaw-Scopes: operator.admin, operator.read", "X-Openclaw-Scopes: operator.write"),
		ci(f, "scopes empty", "X-Openclaw-Scopes:"),
		ci(f, "scopes 8 KB", "X-Openclaw-Scopes: "+longScopes),
		ci(f, "x-forwarded-for", "X-Forwarded-For: 10.66.6.6"),
		ci(f, "x-forwarded-for chain and duplicate", "X-Forwarded-For: 10.66.6.6, 127.0.0.1", "X-Forwarded-For: 10.66.6.7"),
		ci(f, "x-forwarded-for underscores", "x_forwarded_for: 10.66.6.6"),
		ci(f, "x-forwarded-for loopback", "X-Forwarded-For: 127.0.0.1"),
		ci(f, "x-forwarded-proto", "X-Forwarded-Proto: https", "x_forwarded_proto: https"),
		ci(f, "x-forwarded-host", "X-Forwarded-Host: evil.example", "x.forwarded.host: evil.example"),
		ci(f, "other x-forwarded-*", "X-Forwarded-Port: 443", "X-Forwarded-Prefix: /evil", "X-Forwarded-Server: evil", "X-Forwarded-Ssl: on", "X-Forwarded: for=10.66.6.6"),
		ci(f, "tailscale identity", "Tailscale-User-Login: evil@example.com", "tailscale_user_name: evil", "Tailscale-User-Profile-Pic: http://evil.example/p.png", "TAILSCALE.USER.LOGIN: evil@example.com"),
		ci(f, "tailscale capabilities", `Tailscale-App-Capabilities: {"example.com/cap/openclaw":[{"role":"admin"}]}`),
		ci(f, "client-ip headers", "True-Client-IP: 10.66.6.6", "CF-Connecting-IP: 10.66.6.6", "X-Client-IP: 10.66.6.6", "X-Original-Forwarded-For: 10.66.6.6"),
		ci(f, "x-real-ip other spellings", "x_real_ip: 10.66.6.6", "X.Real.IP: 10.66.6.6"),
		{name: "name with trailing space", want: either, auth: []string{"Bearer " + f.tokCI}, lines: []string{"X-Forwarded-User : evil@example.com"}, user: ciUser, scopes: ciScopes},
		{name: "name with trailing tab", want: either, auth: []string{"Bearer " + f.tokCI}, lines: []string{"X-Openclaw-Scopes\t: operator.admin"}, user: ciUser, scopes: ciScopes},
		{name: "name with leading space", want: either, auth: []string{"Bearer " + f.tokCI}, lines: []string{"Accept: */*", " X-Forwarded-User: evil@example.com"}, user: ciUser, scopes: ciScopes},
		{name: "obs-fold of the user header", want: either, auth: []string{"Bearer " + f.tokCI}, lines: []string{"X-Forwarded-User: evil@example.com\r\n\tcontinued"}, user: ciUser, scopes: ciScopes},
		{name: "obs-fold of the scopes header", want: either, auth: []string{"Bearer " + f.tokCI}, lines: []string{"X-Openclaw-Scopes: operator.read,\r\n operator.admin"}, user: ciUser, scopes: ciScopes},
		{name: "obs-fold hiding a header", want: either, auth: []string{"Bearer " + f.tokCI}, lines: []string{"X-Note: a\r\n X-Forwarded-User: evil@example.com"}, user: ciUser, scopes: ciScopes},
		{name: "NUL in a spoofed value", want: either, auth: []string{"Bearer " + f.tokCI}, lines: []string{"X-Forwarded-User: ev\x00il"}, user: ciUser, scopes: ciScopes},
		{name: "non-token name lookalike", want: either, auth: []string{"Bearer " + f.tokCI}, lines: []string{"X-Forwarded-Usеr: evil@example.com"}, user: ciUser, scopes: ciScopes},
		ci(f, "connection names the scopes header", "Connection: x-openclaw-scopes"),
		ci(f, "connection names user and scopes spelled oddly", "Connection: close, X-Forwarded-User, x_openclaw_scopes"),
		ci(f, "two connection headers", "Connection: keep-alive", "Connection: X-Forwarded-For"),
		ci(f, "connection names host and proto", "Connection: X-Forwarded-Host, X-Forwarded-Proto"),
		ci(f, "everything at once",
			"X-Forwarded-User: evil@example.com", "x_forwarded_user: evil", "X-Openclaw-Scopes: operator.admin",
			"X-Forwarded-For: 10.66.6.6", "Forwarded: for=10.66.6.6;host=evil.example;proto=https", "X-Forwarded-Host: evil.example",
			"X-Forwarded-Proto: https", "Tailscale-User-Login: evil@example.com", "True-Client-IP: 10.66.6.6",
			"Connection: keep-alive, x-openclaw-scopes, x-forwarded-user"),
		{name: "spoofed identity without a credential", want: deny, status: 401, errType: "clawgate_unauthenticated",
			lines: []string{"X-Forwarded-User: ci-bot", "X-Openclaw-Scopes: operator.admin", "Tailscale-User-Login: evil@example.com"}},
		{name: "spoofed identity in odd spellings without a credential", want: deny, status: 401, errType: "clawgate_unauthenticated",
			lines: []string{"x_forwarded_user: ci-bot", "X.Openclaw.Scopes: operator.admin", "tailscale_user_login: evil@example.com"}},
	}
	return cases
}

func forwardedCases(f *guardFixture) []badCase {
	fw := func(name string, vals ...string) badCase {
		lines := make([]string, len(vals))
		for i, v := range vals {
			lines[i] = "Forwarded: " + v
		}
		return ci(f, name, lines...)
	}
	return []badCase{
		fw("for", "for=10.66.6.6"),
		fw("for quoted with port", `for="10.66.6.6:4711"`),
		fw("for IPv6", `for="[2001:db8:cafe::17]"`),
		fw("for IPv6 with port", `for="[2001:db8:cafe::17]:4711"`),
		fw("for unknown", "for=unknown"),
		fw("obfuscated identifier", "for=_hidden"),
		fw("obfuscated identifier quoted", `for="_gazonk"`),
		fw("multiple elements", "for=10.66.6.6, for=10.66.6.7"),
		fw("multiple headers", "for=10.66.6.6", "for=10.66.6.7;proto=https"),
		fw("every parameter", "for=10.66.6.6;proto=https;host=evil.example;by=203.0.113.43"),
		fw("parameter names upper case", "For=10.66.6.6;Host=evil.example;PROTO=https"),
		fw("for loopback", "for=127.0.0.1"),
		fw("for IPv6 loopback", `for="[::1]"`),
		fw("malformed", `for="10.66.6.6`, ";;;,,,", "for="),
		fw("8 KB", "for=10.66.6.6;host="+strings.Repeat("e", 8<<10)),
		ci(f, "header name lower and upper case", "forwarded: for=10.66.6.6", "FORWARDED: host=evil.example"),
		ci(f, "x-forwarded element form", "X-Forwarded: for=10.66.6.6", "x_forwarded: for=10.66.6.7"),
		{name: "forwarded without a credential", want: deny, status: 401, errType: "clawgate_unauthenticated", lines: []string{"Forwarded: for=10.66.6.6;host=evil.example"}},
	}
}

// clientAddressCases claim a client address through the trusted proxy's
// X-Real-IP; only the loopback sites have a trusted proxy.
func clientAddressCases(f *guardFixture) []badCase {
	realIP := func(name, ip string, want expect) badCase {
		c := badCase{name: name, want: want, auth: []string{"Bearer " + f.tokCI}, ipFor: func(string) string { return ip }, user: ciUser, scopes: ciScopes}
		if want == deny {
			c.status, c.errType = 403, "clawgate_unattributable"
		}
		return c
	}
	return []badCase{
		realIP("client address loopback", "127.0.0.1", deny),
		realIP("client address loopback elsewhere in 127/8", "127.8.9.10", deny),
		realIP("client address IPv6 loopback", "::1", deny),
		realIP("client address v4-mapped loopback", "::ffff:127.0.0.1", deny),
		realIP("client address unspecified", "0.0.0.0", deny),
		realIP("client address IPv6 unspecified", "::", deny),
		realIP("client address unparsable", "not-an-ip", deny),
		{name: "no client address header: the connection is loopback", want: deny, status: 403, errType: "clawgate_unattributable", auth: []string{"Bearer " + f.tokCI}, ipFor: func(string) string { return noIP }},
		func() badCase {
			c := realIP("client address v4-mapped", "", allow)
			c.ipFor = func(ip string) string { return "::ffff:" + ip }
			return c
		}(),
		func() badCase {
			c := realIP("client address IPv6", "2001:db8::7", allow)
			c.xff = []string{"2001:db8::7"}
			return c
		}(),
		func() badCase {
			c := realIP("client address IPv6 with zone", "fe80::1%eth0", either)
			c.xff = []string{"fe80::1"}
			return c
		}(),
	}
}

// tailnetAddressCases name other tailnet devices' addresses in every header
// a proxy could read a client address from: the guard forwards the client
// address it attributed (the tailnet peer, or the loopback sites' trusted
// X-Real-IP) and nothing a header says.
func tailnetAddressCases(f *guardFixture) []badCase {
	return []badCase{
		ci(f, "x-forwarded-for naming a tailnet IPv4 peer", "X-Forwarded-For: 100.64.0.1"),
		ci(f, "x-forwarded-for naming a tailnet IPv6 peer", "X-Forwarded-For: fd7a:115c:a1e0::1"),
		ci(f, "x-forwarded-for list of tailnet peers", "X-Forwarded-For: 100.64.0.1, fd7a:115c:a1e0::2, 100.100.100.100"),
		ci(f, "forwarded naming a tailnet peer", `Forwarded: for="[fd7a:115c:a1e0::1]";proto=https`),
		ci(f, "x-client-ip and true-client-ip naming tailnet peers", "X-Client-IP: 100.64.0.1", "True-Client-IP: fd7a:115c:a1e0::1", "CF-Connecting-IP: 100.64.0.1"),
		ci(f, "x-forwarded-for in odd spellings naming a tailnet peer", "x_forwarded_for: 100.64.0.1", "X.Forwarded.For: 100.64.0.1"),
	}
}

func fixtureHostCases(f *guardFixture) []badCase {
	return []badCase{
		ci(f, "x-forwarded-host and forwarded host", "X-Forwarded-Host: evil.example", "Forwarded: host=evil.example"),
		ci(f, "x-forwarded-host list", "X-Forwarded-Host: evil.example, 127.0.0.1"),
		ci(f, "x-host and x-original-host are not forwarded as identity", "X-Host: evil.example", "X-Original-Host: evil.example"),
		{name: "host without port", want: allow, auth: []string{"Bearer " + f.tokCI}, host: siteHostname, user: ciUser, scopes: ciScopes},
		// No site serves that host: Caddy answers an empty 200 itself.
		{name: "host for another site", want: deny, status: 200, auth: []string{"Bearer " + f.tokCI}, host: "evil.example"},
	}
}

func jwtCases(t *testing.T, f *guardFixture) []badCase {
	hs := hmacSign(f.hsSecret)
	ed := edSign(f.edPriv)
	pubDER, err := x509.MarshalPKIXPublicKey(f.edPriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pubRaw := []byte(f.edPriv.Public().(ed25519.PublicKey))
	_, attacker, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	valid := claimsJSON("dave@example.com")
	good := rawJWT(hsHeader, valid, hs)
	goodEd := rawJWT(edHeader, valid, ed)
	segs := strings.Split(good, ".")
	// A signature that uses '-' or '_', so the standard alphabet spells it differently.
	var urlAlpha string
	for i := 0; urlAlpha == ""; i++ {
		tok := rawJWT(hsHeader, claimsJSON("dave@example.com", fmt.Sprintf(`"jti":"%d"`, i)), hs)
		if strings.ContainsAny(tok, "-_") {
			urlAlpha = tok
		}
	}
	jwkHeader := func(k ed25519.PrivateKey) string {
		x := base64.RawURLEncoding.EncodeToString(k.Public().(ed25519.PublicKey))
		return `{"alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}}`
	}
	tok := func(name string, want expect, token string) badCase {
		c := badCase{name: name, want: want, auth: []string{"Bearer " + token}, user: "dave@example.com", scopes: ""}
		if want == deny {
			// Every token here is a well-formed bearer: refused for what
			// it is, not for how it is sent.
			c.status, c.errType, c.unknownBearer = 401, "clawgate_bad_credential", true
		}
		return c
	}
	withUser := func(c badCase, user, scopes string) badCase { c.user, c.scopes = user, scopes; return c }
	// A user the guard cannot forward is refused after the JWT verified,
	// with its own status; any refusal will do.
	anyRefusal := func(c badCase) badCase { c.status, c.errType, c.unknownBearer = 0, "", false; return c }
	return []badCase{
		tok("control: HS256", allow, good),
		tok("control: EdDSA", allow, goodEd),
		withUser(tok("control: role claim caps scopes", allow, rawJWT(hsHeader, claimsJSON("Carol@Example.com", `"role":"operator"`), hs)), "carol@example.com", "operator.read"),
		withUser(tok("role claim as array", allow, rawJWT(hsHeader, claimsJSON("carol@example.com", `"role":["viewer","operator"]`), hs)), "carol@example.com", "operator.read"),
		withUser(tok("scope claim cannot raise scopes", allow, rawJWT(hsHeader, claimsJSON("carol@example.com", `"role":"operator"`, `"scope":"operator.admin"`), hs)), "carol@example.com", ""),
		tok("scope claim without a scoped rule", allow, rawJWT(hsHeader, claimsJSON("dave@example.com", `"scope":"operator.admin operator.write"`), hs)),
		tok("alg none", deny, rawJWT(`{"alg":"none","typ":"JWT"}`, valid, func(string) []byte { return nil })),
		tok("alg none with a signature", deny, rawJWT(`{"alg":"none"}`, valid, hs)),
		tok("alg None", deny, rawJWT(`{"alg":"None"}`, valid, hs)),
		tok("alg NONE", deny, rawJWT(`{"alg":"NONE"}`, valid, hs)),
		tok("alg nOnE", deny, rawJWT(`{"alg":"nOnE"}`, valid, hs)),
		tok("alg missing", deny, rawJWT(`{"typ":"JWT"}`, valid, hs)),
		tok("alg empty", deny, rawJWT(`{"alg":""}`, valid, hs)),
		tok("alg array", deny, rawJWT(`{"alg":["HS256"]}`, valid, hs)),
		tok("alg lower case", deny, rawJWT(`{"alg":"hs256"}`, valid, hs)),
		tok("alg with trailing space", deny, rawJWT(`{"alg":"HS256 "}`, valid, hs)),
		tok("HS256 keyed with the EdDSA public key PEM", deny, rawJWT(hsHeader, valid, hmacSign(pubPEM))),
		tok("HS256 keyed with the EdDSA public key DER", deny, rawJWT(hsHeader, valid, hmacSign(pubDER))),
		tok("HS256 keyed with the raw EdDSA public key", deny, rawJWT(hsHeader, valid, hmacSign(pubRaw))),
		tok("EdDSA header with an HMAC signature", deny, rawJWT(edHeader, valid, hs)),
		tok("HS256 header with an EdDSA signature", deny, rawJWT(hsHeader, valid, ed)),
		tok("HS384 with the right secret", deny, rawJWT(`{"alg":"HS384"}`, valid, hs)),
		tok("HS512 with the right secret", deny, rawJWT(`{"alg":"HS512"}`, valid, hs)),
		tok("RS256 not allowed", deny, rawJWT(`{"alg":"RS256"}`, valid, func(string) []byte { return make([]byte, 256) })),
		tok("ES256 not allowed", deny, rawJWT(`{"alg":"ES256"}`, valid, func(string) []byte { return make([]byte, 64) })),
		tok("kid path traversal, empty key", deny, rawJWT(`{"alg":"HS256","kid":"../../../../../../dev/null"}`, valid, hmacSign(nil))),
		tok("kid path traversal, key from a public file", deny, rawJWT(`{"alg":"HS256","kid":"/etc/hostname"}`, valid, hmacSign([]byte("localhost\n")))),
		tok("kid SQL-ish", deny, rawJWT(`{"alg":"HS256","kid":"x' UNION SELECT 'k' --"}`, valid, hmacSign([]byte("k")))),
		tok("kid unknown, signature by nobody", deny, rawJWT(`{"alg":"EdDSA","kid":"nope"}`, valid, edSign(attacker))),
		tok("kid empty", deny, rawJWT(`{"alg":"HS256","kid":""}`, valid, hs)),
		tok("kid a number", deny, rawJWT(`{"alg":"HS256","kid":7}`, valid, hs)),
		tok("kid odd but signed by the configured key", either, rawJWT(`{"alg":"HS256","kid":"../../etc/passwd"}`, valid, hs)),
		tok("jku", deny, rawJWT(`{"alg":"HS256","jku":"http://evil.example/jwks.json"}`, valid, hs)),
		tok("x5u", deny, rawJWT(`{"alg":"EdDSA","x5u":"http://evil.example/cert.pem"}`, valid, ed)),
		tok("x5c", deny, rawJWT(`{"alg":"EdDSA","x5c":["MIIB"]}`, valid, ed)),
		tok("jwk embedded, attacker's key", deny, rawJWT(jwkHeader(attacker), valid, edSign(attacker))),
		tok("jwk embedded, configured key", deny, rawJWT(jwkHeader(f.edPriv), valid, ed)),
		tok("crit", deny, rawJWT(`{"alg":"HS256","crit":["exp"]}`, valid, hs)),
		tok("crit empty", deny, rawJWT(`{"alg":"HS256","crit":[]}`, valid, hs)),
		tok("longer than max_length, validly signed", deny, rawJWT(hsHeader, claimsJSON("dave@example.com", `"pad":"`+strings.Repeat("p", 5000)+`"`), hs)),
		tok("16 KB of base64url", deny, strings.Repeat("A", 8<<10)+"."+strings.Repeat("B", 8<<10)+".C"),
		tok("10k dots", deny, strings.Repeat(".", 10000)),
		tok("10k dotted segments", deny, strings.Repeat("a.", 10000)+"a"),
		tok("expired", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "exp", fmt.Sprintf(`"exp":%d`, now.Add(-time.Hour).Unix())), hs)),
		tok("expired with a bad signature", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "exp", fmt.Sprintf(`"exp":%d`, now.Add(-time.Hour).Unix())), hmacSign([]byte("wrong")))),
		tok("expired beyond leeway by seconds", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "exp", fmt.Sprintf(`"exp":%d`, now.Add(-20*time.Second).Unix())), hs)),
		tok("expired within leeway", either, rawJWT(hsHeader, claimsWithout("dave@example.com", "exp", fmt.Sprintf(`"exp":%d`, now.Add(-time.Second).Unix())), hs)),
		tok("nbf in the future", deny, rawJWT(hsHeader, claimsJSON("dave@example.com", fmt.Sprintf(`"nbf":%d`, now.Add(time.Hour).Unix())), hs)),
		tok("iat in the future", deny, rawJWT(hsHeader, claimsJSON("dave@example.com", fmt.Sprintf(`"iat":%d`, now.Add(time.Hour).Unix())), hs)),
		tok("iat a string", deny, rawJWT(hsHeader, claimsJSON("dave@example.com", `"iat":"0"`), hs)),
		tok("wrong audience", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "aud", `"aud":"other"`), hs)),
		tok("audience missing", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "aud", ""), hs)),
		tok("audience list with ours", allow, rawJWT(hsHeader, claimsWithout("dave@example.com", "aud", `"aud":["other","clawgate"]`), hs)),
		tok("audience differing in case", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "aud", `"aud":"ClawGate"`), hs)),
		tok("wrong issuer", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "iss", `"iss":"https://evil.test"`), hs)),
		tok("issuer missing", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "iss", ""), hs)),
		tok("issuer with trailing slash", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "iss", `"iss":"https://issuer.test/"`), hs)),
		tok("exp missing", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "exp", ""), hs)),
		tok("exp a string", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "exp", fmt.Sprintf(`"exp":"%d"`, now.Add(time.Hour).Unix())), hs)),
		tok("exp null", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "exp", `"exp":null`), hs)),
		tok("exp negative", deny, rawJWT(hsHeader, claimsWithout("dave@example.com", "exp", `"exp":-1`), hs)),
		tok("sub a number", deny, rawJWT(hsHeader, claimsWithout("", "sub", `"sub":12345`), hs)),
		tok("sub missing", deny, rawJWT(hsHeader, claimsWithout("", "sub", ""), hs)),
		tok("sub empty", deny, rawJWT(hsHeader, claimsJSON(""), hs)),
		tok("sub blank", deny, rawJWT(hsHeader, claimsJSON("   "), hs)),
		anyRefusal(withUser(tok("sub spelled as a node identity", deny, rawJWT(hsHeader, claimsJSON("node:gw"), hs)), "", "")),
		anyRefusal(withUser(tok("sub spelled as a token identity", deny, rawJWT(hsHeader, claimsJSON("token:ops"), hs)), "", "")),
		anyRefusal(tok("sub with a comma", deny, rawJWT(hsHeader, claimsJSON("evil@example.com,ci-bot"), hs))),
		anyRefusal(tok("sub with CRLF and a header", deny, rawJWT(hsHeader, claimsJSON("evil\r\nX-Openclaw-Scopes: operator.admin"), hs))),
		anyRefusal(tok("sub with NUL", deny, rawJWT(hsHeader, claimsJSON("evil\x00@example.com"), hs))),
		anyRefusal(tok("sub of 300 bytes", deny, rawJWT(hsHeader, claimsJSON(strings.Repeat("e", 300)), hs))),
		withUser(tok("sub with surrounding spaces and capitals", either, rawJWT(hsHeader, claimsJSON("  Mixed@Example.com  "), hs)), "mixed@example.com", ""),
		tok("scope claim a number", deny, rawJWT(hsHeader, claimsJSON("dave@example.com", `"scope":7`), hs)),
		tok("duplicate alg, none last", deny, rawJWT(`{"alg":"HS256","alg":"none"}`, valid, hs)),
		tok("duplicate alg, none first", either, rawJWT(`{"alg":"none","alg":"HS256"}`, valid, hs)),
		tok("duplicate sub: the last one counts if any", either, rawJWT(hsHeader, `{"sub":"evil@example.com",`+valid[1:], hs)),
		tok("duplicate aud, wrong last", deny, rawJWT(hsHeader, strings.TrimSuffix(valid, "}")+`,"aud":"other"}`, hs)),
		tok("duplicate exp, expired last", deny, rawJWT(hsHeader, strings.TrimSuffix(valid, "}")+fmt.Sprintf(`,"exp":%d}`, now.Add(-time.Hour).Unix()), hs)),
		tok("duplicate role, no role last", either, rawJWT(hsHeader, claimsJSON("dave@example.com", `"role":"operator"`, `"role":"viewer"`), hs)),
		tok("header padded", deny, strings.Replace(good, ".", "=.", 1)),
		tok("signature padded", deny, good+"="),
		tok("standard base64 alphabet", deny, strings.NewReplacer("-", "+", "_", "/").Replace(urlAlpha)),
		tok("trailing garbage", deny, good+"x"),
		tok("trailing dot", deny, good+"."),
		tok("leading dot", deny, "."+good),
		tok("signature stripped", deny, segs[0]+"."+segs[1]+"."),
		tok("payload swapped under a valid signature", deny, segs[0]+"."+b64u(claimsJSON("evil@example.com"))+"."+segs[2]),
		tok("five segments", deny, good+".AAAA.BBBB"),
		tok("header not an object", deny, rawJWT(`["HS256"]`, valid, hs)),
		tok("header null", deny, rawJWT(`null`, valid, hs)),
		tok("payload not JSON", deny, rawJWT(hsHeader, `sub=evil`, hs)),
		tok("payload an array", deny, rawJWT(hsHeader, `[`+valid+`]`, hs)),
	}
}

func queryCases(f *guardFixture) []badCase {
	q := func(name, query string) badCase {
		return badCase{name: name, want: deny, status: 401, errType: "clawgate_query_token",
			target: "/tools/invoke?" + strings.ReplaceAll(query, "{tok}", f.tokCI), auth: []string{"Bearer " + f.tokCI}}
	}
	ok := func(name, query string) badCase {
		c := ci(f, name)
		c.target = "/tools/invoke?" + query
		return c
	}
	return []badCase{
		q("token", "token={tok}"),
		q("access_token", "access_token={tok}"),
		q("ACCESS_TOKEN", "ACCESS_TOKEN={tok}"),
		q("Access-Token", "Access-Token={tok}"),
		q("access.token", "access.token={tok}"),
		q("id_token", "id_token={tok}"),
		q("jwt", "jwt={tok}"),
		q("JWT upper case", "JWT={tok}"),
		q("auth", "auth={tok}"),
		q("authorization", "authorization=Bearer%20{tok}"),
		q("bearer", "bearer={tok}"),
		q("api_key", "api_key={tok}"),
		q("apikey", "apikey={tok}"),
		q("api-key", "api-key={tok}"),
		q("key", "key={tok}"),
		q("password", "password={tok}"),
		q("secret", "secret={tok}"),
		q("percent-encoded name", "%74oken={tok}"),
		q("percent-encoded name, upper-case hex", "%54%4F%4B%45%4E={tok}"),
		q("doubly encoded name", "%2574oken={tok}"),
		q("trebly encoded name", "%252574oken={tok}"),
		q("partly encoded name", "to%6Ben={tok}"),
		q("plus-encoded space in the name", "+token={tok}"),
		q("array-style name", "token%5B%5D={tok}"),
		q("after another parameter", "a=1&token={tok}"),
		q("repeated", "token=x&token={tok}"),
		q("semicolon separator", "a=1;token={tok}"),
		q("empty parameters before", "&&&token={tok}"),
		q("empty value", "token="),
		q("after a raw #", "x=1#&token={tok}"),
		q("websocket-style path", "session=main&access_token={tok}"),
		ok("control: similar names are fine", "tokens=1&monkey=2&authority=3"),
		ok("control: token as a value", "q=token&kind=jwt"),
		ok("control: an encoded ampersand in a value", "x=%26token%3Dabc"),
	}
}

func authCases(f *guardFixture) []badCase {
	a := func(name string, want expect, auth ...string) badCase {
		c := badCase{name: name, want: want, auth: auth, user: ciUser, scopes: ciScopes}
		if want == deny {
			c.status, c.errType = 401, "clawgate_bad_credential"
		}
		return c
	}
	// unknown is a well-formed bearer that is no token the edge knows.
	unknown := func(name, auth string) badCase {
		c := a(name, deny, auth)
		c.unknownBearer = true
		return c
	}
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	upper := strings.ToUpper(f.tokCI)
	cases := []badCase{
		a("control: Bearer", allow, "Bearer "+f.tokCI),
		a("scheme lower case", allow, "bearer "+f.tokCI),
		a("scheme upper case", allow, "BEARER "+f.tokCI),
		a("scheme mixed case", allow, "bEaReR "+f.tokCI),
		a("two headers, two tokens", deny, "Bearer "+f.tokCI, "Bearer "+f.tokOps),
		a("two headers, same token", deny, "Bearer "+f.tokCI, "Bearer "+f.tokCI),
		a("two headers, second empty", deny, "Bearer "+f.tokCI, ""),
		a("comma-joined", deny, "Bearer "+f.tokCI+", Bearer "+f.tokOps),
		unknown("two tokens in one", "Bearer "+f.tokCI+","+f.tokOps),
		a("two spaces", either, "Bearer  "+f.tokCI),
		a("tab separator", either, "Bearer\t"+f.tokCI),
		a("leading space", either, " Bearer "+f.tokCI),
		a("trailing space", either, "Bearer "+f.tokCI+" "),
		a("trailing tab", either, "Bearer "+f.tokCI+"\t"),
		a("Basic with the token as user", deny, basic(f.tokCI+":")),
		a("Basic with the token as password", deny, basic(":"+f.tokCI)),
		a("Token scheme", deny, "Token "+f.tokCI),
		a("scheme alone", deny, "Bearer"),
		a("scheme and a space", deny, "Bearer "),
		a("empty", deny, ""),
		unknown("16 KB", "Bearer "+strings.Repeat("A", 16<<10)),
		unknown("token with a suffix", "Bearer "+f.tokCI+"x"),
		unknown("token truncated", "Bearer "+f.tokCI[:len(f.tokCI)-1]),
		a("token with obs-text", deny, "Bearer "+f.tokCI+"\xff"),
		a("obs-fold between scheme and token", either, "Bearer\r\n "+f.tokCI),
		{name: "lower-case header names, two tokens", want: deny, status: 401, errType: "clawgate_bad_credential",
			lines: []string{"authorization: Bearer " + f.tokCI, "AUTHORIZATION: Bearer " + f.tokOps}},
		{name: "space before the colon", want: either, lines: []string{"Authorization : Bearer " + f.tokCI}, user: ciUser, scopes: ciScopes},
		{name: "Proxy-Authorization is not a credential", want: deny, status: 401, errType: "clawgate_unauthenticated",
			lines: []string{"Proxy-Authorization: Bearer " + f.tokCI}},
		{name: "expired token", want: deny, status: 401, errType: "clawgate_token_expired", auth: []string{"Bearer " + f.tokOld}},
		{name: "ops token, spoofed user alongside", want: allow, auth: []string{"Bearer " + f.tokOps},
			lines: []string{"X-Forwarded-User: ci-bot"}, user: opsUser, scopes: opsScopes},
	}
	if upper != f.tokCI {
		cases = append(cases, unknown("token upper-cased", "Bearer "+upper))
	}
	return cases
}

// wsLines is a WebSocket handshake's header lines.
func wsLines(extra ...string) []string {
	return append([]string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"}, extra...)
}

func wsCases(t *testing.T, f *guardFixture) []badCase {
	bearer := []string{"Bearer " + f.tokCI}
	ws := func(name string, want expect, auth []string, lines ...string) badCase {
		c := badCase{name: name, want: want, target: "/ws", auth: auth, lines: lines, user: ciUser, scopes: ciScopes, ws: true}
		if want == deny {
			c.status = 401
			if auth == nil {
				c.errType = "clawgate_unauthenticated"
			}
		}
		return c
	}
	custom := func(upgrade, connection string, extra ...string) []string {
		return append([]string{"Upgrade: " + upgrade, "Connection: " + connection, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"}, extra...)
	}
	h2c := []string{"Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}
	edTok := rawJWT(edHeader, claimsJSON("dave@example.com"), edSign(f.edPriv))
	cases := []badCase{
		ws("control: token ci", allow, bearer, wsLines()...),
		ws("Upgrade: WebSocket casing", allow, bearer, custom("WebSocket", "Upgrade")...),
		ws("header names upper case", allow, bearer, "UPGRADE: websocket", "CONNECTION: upgrade", "SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==", "SEC-WEBSOCKET-VERSION: 13"),
		ws("Connection: keep-alive, Upgrade", allow, bearer, custom("websocket", "keep-alive, Upgrade")...),
		ws("Connection names the scopes header", allow, bearer, custom("websocket", "Upgrade, x-openclaw-scopes")...),
		ws("Connection names the user header, user spoofed", allow, bearer, custom("websocket", "Upgrade, X-Forwarded-User", "X-Forwarded-User: evil@example.com")...),
		ws("spoofed identity in every spelling", allow, bearer, wsLines("X-Forwarded-User: evil@example.com", "x_openclaw_scopes: operator.admin", "Tailscale-User-Login: evil@example.com", "X-Forwarded-For: 10.66.6.6", "Forwarded: for=10.66.6.6")...),
		ws("without credentials", deny, nil, wsLines()...),
		ws("without credentials, identity spoofed", deny, nil, wsLines("X-Forwarded-User: ci-bot", "X-Openclaw-Scopes: operator.admin", "Tailscale-User-Login: evil@example.com")...),
		ws("token in a subprotocol only", deny, nil, wsLines("Sec-WebSocket-Protocol: bearer, "+f.tokCI)...),
		func() badCase {
			c := ws("expired token", deny, []string{"Bearer " + f.tokOld}, wsLines()...)
			c.errType = "clawgate_token_expired"
			return c
		}(),
		func() badCase {
			c := ws("JWT with a bad signature", deny, []string{"Bearer " + rawJWT(edHeader, claimsJSON("dave@example.com"), edSign(ed25519.NewKeyFromSeed(make([]byte, 32))))}, wsLines()...)
			c.errType, c.unknownBearer = "clawgate_bad_credential", true
			return c
		}(),
		func() badCase {
			c := ws("EdDSA JWT", allow, []string{"Bearer " + edTok}, wsLines()...)
			c.user, c.scopes = "dave@example.com", ""
			return c
		}(),
		func() badCase {
			c := ws("query token", deny, nil, wsLines()...)
			c.target, c.errType = "/ws?token="+f.tokCI, "clawgate_query_token"
			return c
		}(),
		func() badCase {
			c := ws("query token alongside a good bearer", deny, bearer, wsLines()...)
			c.target, c.errType = "/ws?access_token="+f.tokCI, "clawgate_query_token"
			return c
		}(),
		func() badCase {
			c := ws("HTTP/1.0 upgrade", either, bearer, wsLines()...)
			c.proto = "HTTP/1.0"
			return c
		}(),
		func() badCase {
			c := ws("HTTP/1.0 upgrade without credentials", deny, nil, wsLines()...)
			c.proto = "HTTP/1.0"
			return c
		}(),
		ws("h2c upgrade without credentials", deny, nil, h2c...),
		ws("h2c upgrade", either, bearer, h2c...),
		ws("websocket and h2c in one Upgrade, no credentials", deny, nil, custom("websocket, h2c", "Upgrade")...),
		ws("two Upgrade headers, no credentials", deny, nil, "Upgrade: h2c", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"),
		ws("Connection: Upgrade without an Upgrade header", either, bearer, "Connection: Upgrade"),
		ws("no Sec-WebSocket-Key, no credentials", deny, nil, "Upgrade: websocket", "Connection: Upgrade"),
		ws("foreign Origin", either, bearer, wsLines("Origin: http://evil.example")...),
		func() badCase {
			c := ws("POST upgrade", either, bearer, wsLines()...)
			c.method = "POST"
			return c
		}(),
		func() badCase {
			c := ws("browser Accept still gets JSON", deny, nil, wsLines("Accept: text/html,application/xhtml+xml")...)
			c.errType = "clawgate_unauthenticated"
			return c
		}(),
		{name: "HTTP/2 prior-knowledge preface", want: deny, raw: func(string, string) string {
			return "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
		}},
	}
	return cases
}

func oversizeHeaderCases(f *guardFixture) []badCase {
	// Caddy allows 16 KiB of request head unless max_header_size says
	// otherwise (Go's server adds 4 KiB of slack).
	pad := func(n int) []string {
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, fmt.Sprintf("X-Pad-%d: %s", i, strings.Repeat("p", 1000)))
		}
		return out
	}
	manyUsers := make([]string, 0, 200)
	for i := 0; i < 200; i++ {
		manyUsers = append(manyUsers, "X-Forwarded-User: evil@example.com")
	}
	spellings := make([]string, 0, 256)
	for i := 0; i < 256; i++ {
		name := []byte("x-forwarded-user")
		for j := range name {
			if i>>(j%8)&1 == 1 {
				switch name[j] {
				case '-':
					name[j] = "_."[j%2]
				default:
					name[j] = byte(strings.ToUpper(string(name[j]))[0])
				}
			}
		}
		spellings = append(spellings, string(name)+": evil@example.com")
	}
	cases := []badCase{
		{name: "64 KB header block with a good token", want: deny, status: 431, auth: []string{"Bearer " + f.tokCI}, lines: pad(64)},
		{name: "64 KB header block without credentials", want: deny, status: 431, lines: pad(64)},
		{name: "1 MB header block with a good token", want: deny, status: 431, auth: []string{"Bearer " + f.tokCI}, lines: pad(1024)},
		{name: "one 32 KB spoofed header with a good token", want: deny, status: 431, auth: []string{"Bearer " + f.tokCI}, lines: []string{"X-Forwarded-User: " + strings.Repeat("e", 32<<10)}},
		{name: "one 1 MB spoofed header", want: deny, status: 431, lines: []string{"X-Openclaw-Scopes: " + strings.Repeat("e", 1<<20)}},
		{name: "32 KB request target with a good token", want: deny, status: 431, auth: []string{"Bearer " + f.tokCI}, target: "/tools/invoke/" + strings.Repeat("a", 32<<10)},
		{name: "64 KB Authorization", want: deny, status: 431, auth: []string{"Bearer " + strings.Repeat("A", 64<<10)}},
		ci(f, "12 KB spoofed user under the limit", "X-Forwarded-User: evil-"+strings.Repeat("e", 12<<10)),
		ci(f, "200 spoofed user headers", manyUsers...),
		ci(f, "256 spellings of the user header", spellings...),
		func() badCase {
			c := ci(f, "8 KB query without credentials in it")
			c.target = "/tools/invoke?q=" + strings.Repeat("q", 8<<10)
			return c
		}(),
		ci(f, "control: still serving after the oversize cases"),
	}
	for i := range cases {
		// Go's server writes the 431 and closes the connection 500 ms later
		// with the rest of the request unread, which resets it; a client
		// that has not read the 431 by then loses it ("Undefined
		// behavior", net/http). Seen once in about thirty runs, over the
		// tailnet, where the answer takes more hops on a busy machine.
		if cases[i].status == http.StatusRequestHeaderFieldsTooLarge {
			cases[i].resetOK = true
		}
	}
	return cases
}

func rateCases(t *testing.T, f *guardFixture) []badCase {
	// The fixture locks a client out after 5 failures for a minute.
	failWith := func(how func(ip string) badCase) func(t *testing.T, st *biSite, ip string) {
		return func(t *testing.T, st *biSite, ip string) {
			t.Helper()
			for i := 0; i < 5; i++ {
				c := how(ip)
				res := exchange(st, c.request(st.host, ip), 1)[0]
				if res.status != 401 {
					t.Fatalf("failed attempt %d: status %d %v, want 401", i+1, res.status, res.err)
				}
			}
		}
	}
	badToken := func(string) badCase { return badCase{auth: []string{"Bearer " + randToken(t, 32)}} }
	badJWT := func(string) badCase {
		return badCase{auth: []string{"Bearer " + rawJWT(hsHeader, claimsJSON("dave@example.com"), hmacSign([]byte(randToken(t, 32))))}}
	}
	basicAuth := func(string) badCase { return badCase{auth: []string{"Basic Zm9vOmJhcg=="}} }
	expired := func(string) badCase { return badCase{auth: []string{"Bearer " + f.tokOld}} }
	retryAfter := func(t *testing.T, _ *biSite, res []rawResult, _ []recSeen) {
		t.Helper()
		if res[0].err != nil || res[0].status != 429 {
			return
		}
		ra := res[0].header.Get("Retry-After")
		n, err := strconv.Atoi(ra)
		if err != nil || n <= 0 || n > 61 {
			t.Errorf("Retry-After = %q, want whole seconds in (0, 61]", ra)
		}
	}
	locked := func(name string, prep func(ip string) badCase, c badCase) badCase {
		c.name, c.prep, c.after = name, failWith(prep), retryAfter
		switch c.status {
		case 0:
			c.status, c.errType = 429, "clawgate_rate_limited"
		case -1: // any refusal
			c.status = 0
		}
		return c
	}
	good := badCase{want: deny, auth: []string{"Bearer " + f.tokCI}}
	hsGood := rawJWT(hsHeader, claimsJSON("dave@example.com"), hmacSign(f.hsSecret))
	return []badCase{
		locked("bad tokens, then token ci", badToken, good),
		locked("bad tokens, then token ops", badToken, badCase{want: deny, auth: []string{"Bearer " + f.tokOps}}),
		locked("bad tokens, then a good JWT", badToken, badCase{want: deny, auth: []string{"Bearer " + hsGood}}),
		locked("bad tokens, then a websocket upgrade", badToken, badCase{want: deny, target: "/ws", auth: []string{"Bearer " + f.tokCI}, lines: wsLines()}),
		locked("bad tokens, then a good token with forwarding headers naming others", badToken, badCase{want: deny, auth: []string{"Bearer " + f.tokCI},
			lines: []string{"X-Forwarded-For: 198.51.100.99", "Forwarded: for=198.51.100.99", "True-Client-IP: 198.51.100.99"}}),
		locked("bad tokens, then no credential", badToken, badCase{want: deny, status: -1}),
		locked("bad tokens, then a query token", badToken, badCase{want: deny, status: -1, target: "/tools/invoke?token=" + f.tokCI, auth: []string{"Bearer " + f.tokCI}}),
		locked("bad tokens, then token ci from the v4-mapped address", badToken, badCase{want: deny, auth: []string{"Bearer " + f.tokCI}, ipFor: func(ip string) string { return "::ffff:" + ip }}),
		locked("bad JWTs, then token ci", badJWT, good),
		locked("Basic credentials, then token ci", basicAuth, good),
		locked("expired token, then token ci", expired, good),
		func() badCase {
			c := locked("IPv6 client, then token ci", badToken, badCase{want: deny, auth: []string{"Bearer " + f.tokCI}})
			prep := c.prep
			c.prep = func(t *testing.T, st *biSite, ip string) { prep(t, st, v6(ip)) }
			c.ipFor = v6
			return c
		}(),
		func() badCase {
			c := locked("IPv6 client, then token ci spelled out in full", badToken, badCase{want: deny, auth: []string{"Bearer " + f.tokCI}})
			prep := c.prep
			c.prep = func(t *testing.T, st *biSite, ip string) { prep(t, st, v6(ip)) }
			c.ipFor = func(ip string) string { return strings.Replace(v6(ip), "::", ":0:0:0:", 1) }
			return c
		}(),
		{name: "control: another client is not locked out", want: allow, auth: []string{"Bearer " + f.tokCI}, user: ciUser, scopes: ciScopes,
			prep: func(t *testing.T, st *biSite, ip string) {
				failWith(badToken)(t, st, v6(ip)) // someone else, locked out
			}},
		{name: "missing credentials are not failures", want: either, auth: []string{"Bearer " + f.tokCI}, user: ciUser, scopes: ciScopes,
			prep: func(t *testing.T, st *biSite, ip string) {
				for i := 0; i < 6; i++ {
					res := exchange(st, (&badCase{}).request(st.host, ip), 1)[0]
					if res.status != 401 {
						t.Fatalf("attempt %d: status %d, want 401", i+1, res.status)
					}
				}
			}},
	}
}

// v6 maps a 198.x.y.z test address into 2001:db8::/32, one per address.
func v6(ip string) string {
	p := strings.Split(ip, ".")
	return "2001:db8::" + p[1] + ":" + p[2] + ":" + p[3]
}

// ---- families on the routes fixture ----

func pathCases(r *routesFixture) []badCase {
	p := func(target string) badCase {
		return badCase{name: target, want: either, target: target, auth: []string{"Bearer " + r.tokCI}, user: ciUser, scopes: ciScopes}
	}
	raw := func(name, target string) badCase {
		c := p(target)
		c.name = name
		return c
	}
	cases := []badCase{
		{name: "control: ci at /tools/invoke", want: deny, status: 403, errType: "clawgate_forbidden", target: "/tools/invoke", auth: []string{"Bearer " + r.tokCI}},
		{name: "control: ops at /tools/invoke", want: allow, target: "/tools/invoke", auth: []string{"Bearer " + r.tokOps}, user: opsUser, scopes: "operator.read,operator.admin"},
		{name: "control: ci elsewhere", want: allow, target: "/v1/models", auth: []string{"Bearer " + r.tokCI}, user: ciUser, scopes: ciScopes},
		{name: "control: ops elsewhere", want: allow, target: "/", auth: []string{"Bearer " + r.tokOps}, user: opsUser, scopes: "operator.read"},
		{name: "no credential at /tools/invoke", want: deny, status: 401, errType: "clawgate_unauthenticated", target: "/tools/invoke"},
		{name: "no credential at //tools/invoke", want: deny, status: 401, errType: "clawgate_unauthenticated", target: "//tools/invoke"},
		{name: "no credential at /x/%2e%2e/tools/invoke", want: deny, status: 401, errType: "clawgate_unauthenticated", target: "/x/%2e%2e/tools/invoke"},
		// Dot segments: OpenClaw resolves them, so an admitted request
		// carrying them is refused rather than forwarded. (Caddy's path
		// matchers resolve them too: into /tools/invoke, token ci meets the
		// /tools/invoke guard, which refuses it.)
		{name: "dot segments into /tools/invoke", want: deny, status: 403, errType: "clawgate_forbidden", target: "/x/../tools/invoke", auth: []string{"Bearer " + r.tokCI}},
		{name: "dot segments", want: deny, status: 400, errType: "clawgate_dot_segments", target: "/x/../v1/models", auth: []string{"Bearer " + r.tokCI}},
		{name: "encoded dot segments", want: deny, status: 400, errType: "clawgate_dot_segments", target: "/x/%2e%2e/v1/models", auth: []string{"Bearer " + r.tokCI}},
		{name: "half-encoded dot segments", want: deny, status: 400, errType: "clawgate_dot_segments", target: "/x/.%2E/v1/models", auth: []string{"Bearer " + r.tokCI}},
		{name: "single dot segment", want: deny, status: 400, errType: "clawgate_dot_segments", target: "/./v1/models", auth: []string{"Bearer " + r.tokCI}},
		{name: "trailing dot segment", want: deny, status: 400, errType: "clawgate_dot_segments", target: "/v1/models/..", auth: []string{"Bearer " + r.tokCI}},
		{name: "backslash dot segments", want: deny, target: "/x\\..\\v1\\models", auth: []string{"Bearer " + r.tokCI}},
		{name: "encoded slashes around dots", want: deny, status: 400, errType: "clawgate_dot_segments", target: "/x%2f..%2fv1/models", auth: []string{"Bearer " + r.tokCI}},
		{name: "double-encoded dots", want: deny, status: 400, errType: "clawgate_dot_segments", target: "/x/%252e%252e/v1/models", auth: []string{"Bearer " + r.tokCI}},
		{name: "dot segments after a v1 prefix", want: deny, status: 400, errType: "clawgate_dot_segments", target: "/v1/../sessions/abc/kill", auth: []string{"Bearer " + r.tokCI}},
		p("/TOOLS/invoke"),
		p("/tools/INVOKE"),
		p("/Tools/Invoke"),
		p("//tools/invoke"),
		p("///tools/invoke"),
		p("/tools//invoke"),
		p("/tools/invoke/"),
		p("/tools/invoke//"),
		p("/tools/invoke/x"),
		p("/./tools/invoke"),
		p("/tools/./invoke"),
		p("/tools/invoke/."),
		p("/x/../tools/invoke"),
		p("/tools/invoke/../invoke"),
		p("/tools/x/../invoke"),
		p("/x/%2e%2e/tools/invoke"),
		p("/x/%2E%2E/tools/invoke"),
		p("/x/.%2e/tools/invoke"),
		p("/x/%2e./tools/invoke"),
		p("/%2e/tools/invoke"),
		p("/tools/%2e/invoke"),
		p("/tools%2finvoke"),
		p("/tools%2Finvoke"),
		p("/%2ftools%2finvoke"),
		p("/tools/invoke%2f"),
		p("/%74ools/invoke"),
		p("/tools/%69nvoke"),
		p("/tools/invoke;x=1"),
		p("/tools;x=1/invoke"),
		p("/tools/invoke;"),
		p("/tools/invoke."),
		p("/tools/invoke%2e"),
		p("/tools/invoke%20"),
		p("/tools/invoke%00"),
		p("/tools/invoke%09"),
		raw("raw fragment", "/tools/invoke#frag"),
		raw("raw fragment with dots", "/tools/invoke#/../x"),
		p("/tools/invoke?x=1"),
		p("/tools/invoke?"),
		p("/?/tools/invoke"),
		raw("raw backslash", "/tools\\invoke"),
		raw("raw backslashes with dots", "/x\\..\\tools\\invoke"),
		raw("raw leading backslash", "\\tools\\invoke"),
		p("/tools%5cinvoke"),
		p("/tools%5Cinvoke"),
		func() badCase {
			c := raw("absolute form", "http://127.0.0.1/tools/invoke")
			c.xfh = "127.0.0.1"
			return c
		}(),
		func() badCase {
			c := raw("absolute form, other host", "http://evil.example/tools/invoke")
			c.xfh = "evil.example"
			return c
		}(),
		func() badCase {
			c := raw("absolute form, upper-case scheme", "HTTP://evil.example/tools/invoke")
			c.xfh = "evil.example"
			return c
		}(),
		p("/__openclaw__/cap/%20/tools/invoke"),
		p("/__openclaw__/cap//tools/invoke"),
		func() badCase {
			c := p("/tools/invoke")
			c.name, c.method, c.body = "POST with a body", "POST", `{"tool":"sessions_list","args":{}}`
			c.want, c.status = deny, 403
			return c
		}(),
		func() badCase {
			c := p("//tools/invoke")
			c.name, c.method, c.body = "POST // with a body", "POST", `{"tool":"sessions_list","args":{}}`
			return c
		}(),
		func() badCase {
			c := p("/tools/invoke")
			c.name, c.method = "OPTIONS", "OPTIONS"
			c.want, c.status = deny, 403
			return c
		}(),
		func() badCase {
			c := p("/")
			c.name, c.lines = "X-Original-URL and X-Rewrite-URL headers", []string{"X-Original-URL: /tools/invoke", "X-Rewrite-URL: /tools/invoke"}
			return c
		}(),
	}
	return cases
}

func hostCases(r *routesFixture) []badCase {
	h := func(name string, want expect, host string, lines ...string) badCase {
		return badCase{name: name, want: want, target: "/", host: host, lines: lines, auth: []string{"Bearer " + r.tokCI}, user: ciUser, scopes: ciScopes}
	}
	return []badCase{
		h("control: the site's own host", allow, ""),
		h("x-forwarded-host differs", allow, "", "X-Forwarded-Host: evil.example"),
		h("x-forwarded-host in odd spellings", allow, "", "x_forwarded_host: evil.example", "X.Forwarded.Host: evil.example", "X-FORWARDED-HOST: evil.example"),
		h("forwarded host", allow, "", "Forwarded: host=evil.example;proto=https"),
		h("x-forwarded-host duplicated", allow, "", "X-Forwarded-Host: evil.example", "X-Forwarded-Host: other.example"),
		h("other host", allow, "other.example"),
		h("other host, x-forwarded-host differs again", allow, "other.example", "X-Forwarded-Host: evil.example"),
		h("host in capitals", allow, "OTHER.Example"),
		h("host with a trailing dot", allow, "other.example."),
		h("host with a port", allow, "other.example:8443"),
		h("IPv6 host", allow, "[2001:db8::1]:8080"),
		h("host without port", allow, "127.0.0.1"),
		h("host with userinfo", either, "evil@other.example"),
		h("host with a comma", either, "a.example,b.example"),
		h("host with a space", either, "a.example b.example"),
		h("host with a path", either, "other.example/x"),
		h("host with obs-text", either, "\xe9vil.example"),
		h("empty host", either, ""+" "),
		h("two host headers", either, "", "Host: evil.example"),
		func() badCase {
			c := h("HTTP/1.0 without host", either, noHost)
			c.proto = "HTTP/1.0"
			return c
		}(),
		func() badCase {
			c := h("absolute form names the host", allow, "other.example")
			c.target, c.xfh = "http://abs.example/", "abs.example"
			return c
		}(),
		func() badCase {
			c := h("absolute form with x-forwarded-host", allow, "other.example", "X-Forwarded-Host: evil.example")
			c.target, c.xfh = "http://abs.example:81/", "abs.example:81"
			return c
		}(),
	}
}

func bodyCases(r *routesFixture) []badCase {
	const big = 6 << 20
	payload := strings.Repeat("b", big)
	chunked := func(data string) string {
		var b strings.Builder
		for len(data) > 0 {
			n := min(len(data), 64<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, data[:n])
			data = data[n:]
		}
		b.WriteString("0\r\n\r\n")
		return b.String()
	}
	proxiedOrRefused := func(t *testing.T, _ *biSite, res []rawResult, got []recSeen) {
		t.Helper()
		switch {
		case len(got) == 1 && got[0].BodyLen != big:
			t.Errorf("backend got %d body bytes, want %d", got[0].BodyLen, big)
		case len(got) == 1 && res[0].status != 200:
			t.Errorf("proxied, but status %d (err %v)", res[0].status, res[0].err)
		case len(got) == 0 && res[0].err == nil && res[0].status != 413:
			t.Errorf("not proxied: status %d, want 413", res[0].status)
		}
	}
	smuggled := func(host string) string {
		return "GET /tools/invoke HTTP/1.1\r\nHost: " + host + "\r\nX-Real-IP: 198.51.100.66\r\nX-Forwarded-User: ci-bot\r\nX-Openclaw-Scopes: operator.admin\r\n\r\n"
	}
	post := func(name string, want expect, target string, auth bool, lines []string, body string) badCase {
		c := badCase{name: name, want: want, method: "POST", target: target, lines: lines, body: body, user: ciUser, scopes: ciScopes}
		if auth {
			c.auth = []string{"Bearer " + r.tokCI}
		}
		return c
	}
	cases := []badCase{
		func() badCase {
			c := post("6 MB body with a good token", either, "/upload", true, nil, payload)
			c.after = proxiedOrRefused
			return c
		}(),
		func() badCase {
			c := post("6 MB chunked body with a good token", either, "/upload", true, []string{"Transfer-Encoding: chunked"}, chunked(payload))
			c.after = proxiedOrRefused
			return c
		}(),
		post("6 MB body without credentials", deny, "/upload", false, nil, payload),
		post("6 MB chunked body without credentials", deny, "/upload", false, []string{"Transfer-Encoding: chunked"}, chunked(payload)),
		post("6 MB body for the wrong route", deny, "/tools/invoke", true, nil, payload),
		func() badCase {
			c := post("Content-Length and Transfer-Encoding, smuggled request", either, "/upload", true,
				[]string{"Content-Length: 4", "Transfer-Encoding: chunked"}, "0\r\n\r\n"+smuggled("127.0.0.1"))
			c.responses = 2
			return c
		}(),
		func() badCase {
			c := post("Content-Length hides a request", either, "/upload", true, nil, "")
			s := smuggled("127.0.0.1")
			c.lines = []string{"Content-Length: 0"}
			c.body = s // sent after a declared empty body: a second, pipelined request
			c.responses, c.maxReach = 2, 1
			return c
		}(),
		post("two different Content-Length headers", either, "/upload", true, []string{"Content-Length: 3", "Content-Length: 40"}, "abc"),
		post("Transfer-Encoding chunked twice", either, "/upload", true, []string{"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"}, chunked("abc")),
		post("Transfer-Encoding: identity, chunked", either, "/upload", true, []string{"Transfer-Encoding: identity, chunked"}, chunked("abc")),
		post("Transfer-Encoding: xchunked", either, "/upload", true, []string{"Transfer-Encoding: xchunked"}, "abc"),
		post("chunk extension", either, "/upload", true, []string{"Transfer-Encoding: chunked"}, "3;ext=\"x\"\r\nabc\r\n0\r\n\r\n"),
		post("undeclared trailers naming identity headers", either, "/upload", true, []string{"Transfer-Encoding: chunked"},
			"3\r\nabc\r\n0\r\nX-Forwarded-User: evil@example.com\r\nX-Openclaw-Scopes: operator.admin\r\nX-Forwarded-For: 10.66.6.6\r\n\r\n"),
		{name: "pipelined: allowed, then spoofed without credentials", want: allow, responses: 2, target: "/a",
			auth: []string{"Bearer " + r.tokCI}, user: ciUser, scopes: ciScopes,
			raw: func(host, ip string) string {
				return "GET /a HTTP/1.1\r\nHost: " + host + "\r\nX-Real-IP: " + ip + "\r\nAuthorization: Bearer " + r.tokCI + "\r\n\r\n" +
					"GET /b HTTP/1.1\r\nHost: " + host + "\r\nX-Real-IP: " + ip + "\r\nX-Forwarded-User: ci-bot\r\nX-Openclaw-Scopes: operator.admin\r\n\r\n"
			},
			after: func(t *testing.T, st *biSite, res []rawResult, got []recSeen) {
				t.Helper()
				want, _ := st.refused(401, "clawgate_unauthenticated", false)
				if len(res) < 2 || res[1].status != want {
					t.Errorf("second pipelined request: %+v, want %d", res, want)
				}
			}},
		{name: "pipelined: refused, then token ci", want: either, responses: 2, maxReach: 1, user: ciUser, scopes: ciScopes,
			raw: func(host, ip string) string {
				return "GET /a HTTP/1.1\r\nHost: " + host + "\r\nX-Real-IP: " + ip + "\r\nX-Forwarded-User: ci-bot\r\n\r\n" +
					"GET /b HTTP/1.1\r\nHost: " + host + "\r\nX-Real-IP: " + ip + "\r\nAuthorization: Bearer " + r.tokCI + "\r\n\r\n"
			},
			after: func(t *testing.T, st *biSite, res []rawResult, got []recSeen) {
				t.Helper()
				want, _ := st.refused(401, "clawgate_unauthenticated", false)
				if res[0].status != want {
					t.Errorf("first pipelined request: status %d, want %d", res[0].status, want)
				}
				for _, g := range got {
					if g.Path != "/b" {
						t.Errorf("backend saw %s, want only /b", g.Path)
					}
				}
			}},
		{name: "control: still serving after the body cases", want: allow, target: "/", auth: []string{"Bearer " + r.tokCI}, user: ciUser, scopes: ciScopes},
	}
	return cases
}

// TestBadInputClosedGaps holds the cases that got through before the guard refused OpenClaw capability paths and declared trailers naming protected headers.
func TestBadInputClosedGaps(t *testing.T) {
	s := &biSuite{}
	r := newRoutesFixture(t)
	sites := []*biSite{r.site}
	p := func(name, target string, lines ...string) badCase {
		return badCase{name: name, want: either, target: target, lines: lines, auth: []string{"Bearer " + r.tokCI}, user: ciUser, scopes: ciScopes}
	}
	cases := []badCase{
		// OpenClaw rewrites /__openclaw__/cap/<cap>/<rest> to /<rest> before
		// routing, so a request Caddy routes by "/tools/invoke" can reach
		// the gateway's /tools/invoke through the other route's guard.
		p("openclaw capability prefix", "/__openclaw__/cap/x/tools/invoke"),
		p("openclaw capability prefix, dotted", "/__openclaw__/cap/x/y/../tools/invoke"),
		p("openclaw capability prefix, encoded dots", "/a/%2e%2e/__openclaw__/cap/x/tools/invoke"),
		p("openclaw capability prefix, websocket", "/__openclaw__/cap/x/tools/invoke", wsLines()...),
		// Caddy forwards declared request trailers upstream as trailers.
		{name: "trailer naming the user header", want: either, method: "POST", target: "/upload", auth: []string{"Bearer " + r.tokCI}, user: ciUser, scopes: ciScopes,
			lines: []string{"Transfer-Encoding: chunked", "Trailer: X-Forwarded-User"}, body: "3\r\nabc\r\n0\r\nX-Forwarded-User: evil@example.com\r\n\r\n"},
	}
	s.family(t, sites, cases)
	if s.passed != s.cases {
		t.Fatalf("%d of %d formerly open gaps get through again", s.cases-s.passed, s.cases)
	}
}

// TestBadInputCapabilityURLs: with capability_urls, every spelling OpenClaw
// may treat as a capability URL is judged by the site's one guard: admitted
// with the rules' identity and scopes, or refused, never passed on by another
// route. The routes site (two guards with different rules in front of one
// gateway) is refused at load with the option.
func TestBadInputCapabilityURLs(t *testing.T) {
	r := newRoutes(t)
	refusal := `clawgate.capability_urls: server srv0 has clawgate guards with different rules for gateway "rest" (upstream ` + r.be.srv.Listener.Addr().String() + `)`
	if err := loadCaddyErr(t, biGlobal()+r.siteBlock(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), "127.0.0.1", "\n\t\tcapability_urls")); err == nil || !strings.Contains(err.Error(), refusal) {
		t.Fatalf("the routes site with capability_urls: %v; want %q", err, refusal)
	}

	port := freePort(t)
	startCaddy(t, biGlobal()+fmt.Sprintf(`http://:%d {
	bind 127.0.0.1
	clawgate %s {
		gateway rest
		capability_urls
		token ci {
			env CG_BI_TOKEN_CI
			user ci-bot
		}
		allow token:ci scopes operator.read,operator.write
	}
}
`, port, r.be.srv.Listener.Addr()))
	hp := "127.0.0.1:" + itoa(port)
	waitHTTP(t, "http://"+hp+"/")
	site := &biSite{name: "capability", addr: hp, host: hp, count: r.be.count, since: r.be.since, hostKnown: true}
	site.check = func(t *testing.T, c *badCase, got recSeen) {
		t.Helper()
		// Whatever OpenClaw routes it to, what reached the gateway was
		// admitted by the site's rule for token ci, with that rule's scopes.
		if u, s := got.Header.Get("X-Forwarded-User"), got.Header.Get("X-Openclaw-Scopes"); u != "ci-bot" || s != "operator.read,operator.write" {
			t.Errorf("backend got %q as user %q with scopes %q; want the site rule's ci-bot with operator.read,operator.write", got.URI, u, s)
		}
	}
	s := &biSuite{}
	ci := func(name, target string, lines ...string) badCase {
		return badCase{name: name, want: either, target: target, lines: lines, auth: []string{"Bearer " + r.tokCI}, user: ciUser, scopes: ciScopes}
	}
	anon := func(name, target string) badCase {
		return badCase{name: name, want: deny, target: target}
	}
	cases := []badCase{
		{name: "capability URL, admitted by the site's rule", want: allow, target: "/__openclaw__/cap/tok/canvas/index.html",
			auth: []string{"Bearer " + r.tokCI}, user: ciUser, scopes: ciScopes},
		ci("capability URL to an admin path", "/__openclaw__/cap/x/tools/invoke"),
		ci("capability URL, dotted", "/__openclaw__/cap/x/y/../tools/invoke"),
		ci("capability URL, encoded dots", "/a/%2e%2e/__openclaw__/cap/x/tools/invoke"),
		ci("capability URL, percent-encoded prefix", "/%5F%5Fopenclaw%5F%5F/cap/x/tools/invoke"),
		ci("capability URL, mixed case", "/__OpenClaw__/CAP/x/tools/invoke"),
		ci("capability URL, backslashes", `/__openclaw__\cap\x\tools\invoke`),
		ci("capability URL, doubled slashes", "//__openclaw__//cap/x//tools/invoke"),
		ci("capability URL, websocket", "/__openclaw__/cap/x/ws", wsLines()...),
		anon("capability URL without a credential", "/__openclaw__/cap/x/canvas/index.html"),
		anon("capability URL to an admin path without a credential", "/__openclaw__/cap/x/tools/invoke"),
		anon("capability URL, percent-encoded, without a credential", "/%5F%5Fopenclaw%5F%5F/cap/x/tools/invoke"),
	}
	s.family(t, []*biSite{site}, cases)
	if s.passed != s.cases {
		t.Fatalf("%d of %d capability URL cases failed", s.cases-s.passed, s.cases)
	}
}
