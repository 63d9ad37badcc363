package edge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"x-forwarded-for", "x-forwarded-for"},
		{"X-Forwarded-For", "x-forwarded-for"},
		{"X_FORWARDED_FOR", "x-forwarded-for"},
		{"x.forwarded.for", "x-forwarded-for"},
		{"X_Forwarded.For", "x-forwarded-for"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := NormalizeName(tt.in); got != tt.want {
			t.Errorf("NormalizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = NormalizeName("x-forwarded-for") }); n != 0 {
		t.Errorf("NormalizeName(normalised) allocated %v times", n)
	}
}

func TestCleanRequestHeaders(t *testing.T) {
	extra := []string{"x-forwarded-user", "X_Required.Header", "X-Auth-Request-Email"}
	protected := []string{
		"Forwarded", "forwarded", "FORWARDED",
		"X-Real-Ip", "x_real_ip", "X.Real.IP",
		"X-Forwarded-For", "x-forwarded-for", "X_Forwarded_For", "x.forwarded.for", "X-FORWARDED-FOR",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X_Forwarded_Proto", "X-Forwarded-Port", "X-Forwarded-Prefix",
		"X-Forwarded-User", "x_forwarded_user", "X.Forwarded.User", "X-Forwarded-Email", "X-Forwarded",
		"X-Openclaw-Scopes", "x-openclaw-scopes", "X_OPENCLAW_SCOPES", "x.openclaw.scopes", "X-OpenClaw_Scopes",
		"Tailscale-User-Login", "tailscale_user_name", "Tailscale.Headers-Info", "TAILSCALE-APP-CAPABILITIES",
		"X-Client-Ip", "x_client_ip", "True-Client-Ip", "true.client.ip", "Cf-Connecting-Ip", "CF_CONNECTING_IP",
		"X-Original-Forwarded-For", "x_original_forwarded_for",
		"X-Required-Header", "x_required_header", "X-Auth-Request-Email", "x.auth.request.email",
	}
	kept := []string{"Accept", "Authorization", "Cookie", "Origin", "Upgrade", "Sec-Websocket-Key",
		"X-Forward-For", "X-Openclaw-Scopesx", "Xforwarded-For", "X-Realip", "Forwardedx", "Tailscale", "X-Openclaw-Token", "X-Required"}
	h := http.Header{}
	for _, name := range protected {
		// Raw map writes keep every spelling as its own key, as a server
		// that does not canonicalise would; two values test repeats, and a
		// comma-joined value tests lists.
		h[name] = []string{"10.0.0.1, 10.0.0.2", "evil"}
	}
	for _, name := range kept {
		h[name] = []string{"v"}
	}
	got := CleanRequestHeaders(h, extra)
	if got != len(protected) {
		t.Errorf("CleanRequestHeaders() = %d, want %d", got, len(protected))
	}
	var left []string
	for name := range h {
		left = append(left, name)
	}
	slices.Sort(left)
	want := slices.Clone(kept)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("headers left = %q, want %q", left, want)
	}
}

func TestCleanRequestHeadersConnection(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want []string // nil: no Connection header
	}{
		{"names scopes", http.Header{"Connection": {"close, x-openclaw-scopes"}}, []string{"close"}},
		{"names user header", http.Header{"Connection": {"keep-alive, X-Forwarded-User, X-Forwarded-For"}}, []string{"keep-alive"}},
		{"only bad tokens", http.Header{"Connection": {"x-openclaw-scopes,x-forwarded-user"}}, nil},
		{"repeated headers", http.Header{"Connection": {"Upgrade", "keep-alive, x-openclaw-scopes", "UPGRADE"}}, []string{"upgrade, keep-alive"}},
		{"lowercase key", http.Header{"connection": {"Upgrade, x-forwarded-user"}}, []string{"upgrade"}},
		{"both keys", http.Header{"connection": {"close"}, "Connection": {"Upgrade"}}, []string{"upgrade, close"}},
		{"empty tokens", http.Header{"Connection": {" , ,close,"}}, []string{"close"}},
		{"none", http.Header{"Accept": {"*/*"}}, nil},
		{"already clean, kept as sent", http.Header{"Connection": {"keep-alive, Upgrade"}}, []string{"keep-alive, Upgrade"}},
		{"already clean, one token", http.Header{"Connection": {"close"}}, []string{"close"}},
		{"a token twice is rebuilt", http.Header{"Connection": {"close, Close"}}, []string{"close"}},
		{"an empty token is rebuilt", http.Header{"Connection": {"close,"}}, []string{"close"}},
		{"a bad token after good ones", http.Header{"Connection": {"keep-alive, upgrade, x-openclaw-scopes"}}, []string{"upgrade, keep-alive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			CleanRequestHeaders(tt.in, nil)
			if got := tt.in["Connection"]; !slices.Equal(got, tt.want) {
				t.Errorf("Connection = %q, want %q", got, tt.want)
			}
			if _, ok := tt.in["connection"]; ok {
				t.Errorf("non-canonical connection key left: %v", tt.in)
			}
		})
	}
}

// TestCleanAllocations: cleaning the headers of an ordinary request, with an
// already clean Connection header, allocates nothing.
func TestCleanAllocations(t *testing.T) {
	hc := NewHeaderCleaner([]string{"x-forwarded-user"})
	h := http.Header{"Connection": {"keep-alive"}, "Accept": {"*/*"}, "User-Agent": {"x"}, "Authorization": {"Bearer t"}}
	if n := testing.AllocsPerRun(100, func() { hc.Clean(h) }); n != 0 {
		t.Errorf("Clean allocated %v times per call, want 0", n)
	}
	if got := h["Connection"]; !slices.Equal(got, []string{"keep-alive"}) {
		t.Errorf("Connection = %q, want [keep-alive]", got)
	}
}

// TestConnectionTokensCannotStripIdentity sends a request through a real
// reverse proxy whose hop-by-hop handling is the one Caddy inherits: a
// client naming the guard's headers in Connection must not make them vanish.
func TestConnectionTokensCannotStripIdentity(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scopes, hasScopes := r.Header["X-Openclaw-Scopes"]
		user := r.Header.Get("X-Forwarded-User")
		if !hasScopes {
			scopes = []string{"<absent>"}
		}
		io.WriteString(w, user+"|"+strings.Join(scopes, ";"))
	}))
	defer backend.Close()
	target, _ := url.Parse(backend.URL)

	run := func(clean bool) string {
		proxy := httputil.NewSingleHostReverseProxy(target)
		guard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if clean {
				CleanRequestHeaders(r.Header, []string{"x-forwarded-user"})
			}
			if err := SetForwardHeaders(r.Header, Forward{ClientIP: netip.MustParseAddr("100.64.0.7"), Proto: "https",
				Host: "gw.example.ts.net", UserHeader: "x-forwarded-user", User: "alice@example.com"}); err != nil {
				t.Errorf("SetForwardHeaders() error = %v", err)
			}
			proxy.ServeHTTP(w, r)
		})
		front := httptest.NewServer(guard)
		defer front.Close()
		req, _ := http.NewRequest("GET", front.URL, nil)
		req.Header.Set("Connection", "close, x-openclaw-scopes, x-forwarded-user")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if got, want := run(true), "alice@example.com|"; got != want {
		t.Errorf("upstream saw %q, want %q (user set, scopes present and empty)", got, want)
	}
	// Without the Connection rewrite the proxy strips both headers: the
	// attack this guards against is real.
	if got, want := run(false), "|<absent>"; got != want {
		t.Errorf("control without cleaning: upstream saw %q, want %q", got, want)
	}
}

func TestSetForwardHeaders(t *testing.T) {
	good := Forward{ClientIP: netip.MustParseAddr("100.101.102.103"), Proto: "https", Host: "gw.tail1234.ts.net",
		UserHeader: "x-forwarded-user", User: "alice@example.com", Scopes: []string{"operator.read", "operator.write"}}
	mod := func(f func(*Forward)) Forward { g := good; f(&g); return g }
	tests := []struct {
		name    string
		f       Forward
		want    map[string][]string
		wantErr string
	}{
		{name: "good", f: good, want: map[string][]string{
			"X-Forwarded-For": {"100.101.102.103"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"gw.tail1234.ts.net"},
			"X-Forwarded-User": {"alice@example.com"}, "X-Openclaw-Scopes": {"operator.read,operator.write"}}},
		{name: "empty scopes still sent", f: mod(func(f *Forward) { f.Scopes = nil }), want: map[string][]string{"X-Openclaw-Scopes": {""}}},
		{name: "ipv6", f: mod(func(f *Forward) { f.ClientIP = netip.MustParseAddr("fd7a:115c:a1e0::1") }), want: map[string][]string{"X-Forwarded-For": {"fd7a:115c:a1e0::1"}}},
		{name: "4in6 unmapped", f: mod(func(f *Forward) { f.ClientIP = netip.MustParseAddr("::ffff:100.64.0.1") }), want: map[string][]string{"X-Forwarded-For": {"100.64.0.1"}}},
		{name: "zone dropped", f: mod(func(f *Forward) { f.ClientIP = netip.MustParseAddr("fe80::1%eth0") }), want: map[string][]string{"X-Forwarded-For": {"fe80::1"}}},
		{name: "custom user header", f: mod(func(f *Forward) { f.UserHeader = "x-auth-user" }), want: map[string][]string{"X-Auth-User": {"alice@example.com"}}},
		{name: "empty user sends none", f: mod(func(f *Forward) { f.User = "" }), want: map[string][]string{"X-Forwarded-User": nil}},
		{name: "loopback v4", f: mod(func(f *Forward) { f.ClientIP = netip.MustParseAddr("127.0.0.1") }), wantErr: "refusing to forward client ip 127.0.0.1"},
		{name: "loopback v4 other", f: mod(func(f *Forward) { f.ClientIP = netip.MustParseAddr("127.8.9.10") }), wantErr: "refusing"},
		{name: "loopback v6", f: mod(func(f *Forward) { f.ClientIP = netip.MustParseAddr("::1") }), wantErr: "refusing"},
		{name: "loopback 4in6", f: mod(func(f *Forward) { f.ClientIP = netip.MustParseAddr("::ffff:127.0.0.1") }), wantErr: "refusing"},
		{name: "unspecified v4", f: mod(func(f *Forward) { f.ClientIP = netip.MustParseAddr("0.0.0.0") }), wantErr: "refusing"},
		{name: "unspecified v6", f: mod(func(f *Forward) { f.ClientIP = netip.IPv6Unspecified() }), wantErr: "refusing"},
		{name: "zero addr", f: mod(func(f *Forward) { f.ClientIP = netip.Addr{} }), wantErr: "invalid client ip"},
		{name: "bad proto", f: mod(func(f *Forward) { f.Proto = "ftp" }), wantErr: "proto"},
		{name: "empty host", f: mod(func(f *Forward) { f.Host = "" }), wantErr: "invalid host"},
		{name: "host with CRLF", f: mod(func(f *Forward) { f.Host = "a\r\nX-Openclaw-Scopes: operator.admin" }), wantErr: "invalid host"},
		{name: "host list", f: mod(func(f *Forward) { f.Host = "a.ts.net, evil" }), wantErr: "invalid host"},
		{name: "empty user header", f: mod(func(f *Forward) { f.UserHeader = "" }), wantErr: "invalid user header"},
		{name: "user header with space", f: mod(func(f *Forward) { f.UserHeader = "x user" }), wantErr: "invalid user header"},
		{name: "user header is scopes", f: mod(func(f *Forward) { f.UserHeader = "X_OpenClaw_Scopes" }), wantErr: "collides"},
		{name: "user header is xff", f: mod(func(f *Forward) { f.UserHeader = "x-forwarded-for" }), wantErr: "collides"},
		{name: "user with comma", f: mod(func(f *Forward) { f.User = "a@b.c,admin" }), wantErr: "invalid user"},
		{name: "user with newline", f: mod(func(f *Forward) { f.User = "a@b.c\nx" }), wantErr: "invalid user"},
		{name: "user with padding", f: mod(func(f *Forward) { f.User = " a@b.c" }), wantErr: "invalid user"},
		{name: "bad scope", f: mod(func(f *Forward) { f.Scopes = []string{"operator.read,operator.admin"} }), wantErr: "invalid scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{
				"X-Forwarded-For":   {"1.2.3.4", "5.6.7.8"},
				"X-Forwarded-User":  {"mallory@example.com"},
				"X-Openclaw-Scopes": {"operator.admin"},
			}
			err := SetForwardHeaders(h, tt.f)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SetForwardHeaders() error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("SetForwardHeaders() error = %v", err)
			}
			for k, v := range tt.want {
				if got := h[k]; !slices.Equal(got, v) || (v != nil && got == nil) {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if len(h["X-Forwarded-For"]) != 1 || len(h["X-Openclaw-Scopes"]) != 1 {
				t.Errorf("headers appended instead of overwritten: %v", h)
			}
		})
	}
}

var queryCredentialTests = []struct {
	in   string
	want bool
}{
	{"", false},
	{"a=1&b=2", false},
	{"session=abc&page_token=x&tokens=1&keys=2&authx=3&csrf_token=4", false},
	{"token=abc", true},
	{"a=1&access_token=abc", true},
	{"ACCESS_TOKEN=abc", true},
	{"Access-Token=abc", true},
	{"access.token=abc", true},
	{"id_token=x", true},
	{"jwt", true},
	{"auth=", true},
	{"Authorization=Bearer+x", true},
	{"bearer=x", true},
	{"api_key=x", true},
	{"api-key=x", true},
	{"apikey=x", true},
	{"KEY=x", true},
	{"password=x", true},
	{"secret=x", true},
	{"a=1;token=x", true},
	{"%74oken=x", true},
	{"%54%4F%4B%45%4E=x", true},
	{"acc%65ss_token=x", true},
	{"%2574oken=x", true},
	{"access%5Ftoken=x", true},
	{"token%zz=x", false},
	{"%zztoken=x", false},
	{"tok%en=x", false},
	{"api+key=x", true},
	{"token[]=x", true},
	{"x=token", false},
	{"x=access_token%3Dabc", false},
	{"&&&", false},
	{"=token", false},
	{strings.Repeat("a", 100) + "=1", false},
}

func TestQueryCredential(t *testing.T) {
	tests := queryCredentialTests
	for _, tt := range tests {
		if got := QueryCredential(tt.in); got != tt.want {
			t.Errorf("QueryCredential(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

var bearerTokenTests = []struct {
	name    string
	h       http.Header
	want    string
	wantErr string
}{
	{name: "none", h: http.Header{}},
	{name: "good", h: http.Header{"Authorization": {"Bearer abc.def.ghi"}}, want: "abc.def.ghi"},
	{name: "scheme case", h: http.Header{"Authorization": {"bEaReR tok-123_~+/="}}, want: "tok-123_~+/="},
	{name: "lowercase key", h: http.Header{"authorization": {"Bearer abc"}}, want: "abc"},
	{name: "duplicate values", h: http.Header{"Authorization": {"Bearer a", "Bearer b"}}, wantErr: "more than one"},
	{name: "duplicate keys", h: http.Header{"Authorization": {"Bearer a"}, "authorization": {"Bearer a"}}, wantErr: "more than one"},
	{name: "basic", h: http.Header{"Authorization": {"Basic YWxhZGRpbjpvcGVuc2VzYW1l"}}, wantErr: `unsupported authorization scheme "Basic"`},
	{name: "empty", h: http.Header{"Authorization": {""}}, wantErr: "malformed authorization header"},
	{name: "scheme only", h: http.Header{"Authorization": {"Bearer"}}, wantErr: "malformed authorization header"},
	{name: "empty token", h: http.Header{"Authorization": {"Bearer "}}, wantErr: "empty bearer token"},
	{name: "two spaces", h: http.Header{"Authorization": {"Bearer  abc"}}, wantErr: "malformed bearer token"},
	{name: "tab", h: http.Header{"Authorization": {"Bearer\tabc"}}, wantErr: "malformed authorization header"},
	{name: "inner space", h: http.Header{"Authorization": {"Bearer abc def"}}, wantErr: "malformed bearer token"},
	{name: "comma joined", h: http.Header{"Authorization": {"Bearer a, Bearer b"}}, wantErr: "malformed bearer token"},
	{name: "trailing space", h: http.Header{"Authorization": {"Bearer abc "}}, wantErr: "malformed bearer token"},
	{name: "control char", h: http.Header{"Authorization": {"Bearer abc\x00"}}, wantErr: "malformed bearer token"},
	{name: "non-ascii", h: http.Header{"Authorization": {"Bearer abcé"}}, wantErr: "malformed bearer token"},
	{name: "no space", h: http.Header{"Authorization": {"Bearerabc"}}, wantErr: "malformed authorization header"},
}

func TestBearerToken(t *testing.T) {
	tests := bearerTokenTests
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BearerToken(tt.h)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || got != "" {
					t.Fatalf("BearerToken() = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("BearerToken() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCleanKeeping(t *testing.T) {
	h := http.Header{
		"X-Forwarded-For":  {"100.64.0.7"},
		"X_forwarded_for":  {"10.6.6.6"},
		"X-Forwarded-User": {"alice"},
		"x-forwarded-user": {"mallory"},
		"Forwarded":        {"for=10.6.6.6"},
		"Accept":           {"*/*"},
	}
	removed := NewHeaderCleaner([]string{"x-forwarded-user"}).CleanKeeping(h, "X-Forwarded-For", "X-Forwarded-User")
	want := http.Header{"X-Forwarded-For": {"100.64.0.7"}, "X-Forwarded-User": {"alice"}, "Accept": {"*/*"}}
	if removed != 3 || !reflect.DeepEqual(h, want) {
		t.Errorf("CleanKeeping removed %d, left %v; want 3, %v", removed, h, want)
	}
}
