package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
	"github.com/clawgate/clawgate/tsnet"
)

func TestRedactCapabilityPath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/__openclaw__/cap/tok123/canvas/index.html", "/__openclaw__/cap/REDACTED/canvas/index.html"},
		{"/__openclaw__/cap/tok123", "/__openclaw__/cap/REDACTED"},
		{"/__OpenClaw__/CAP/tok123/x", "/__openclaw__/cap/REDACTED/x"},
		// Other spellings could carry part of the token past the first
		// slash: only the prefix is kept.
		{"/__openclaw__/cap/tok%2F123/x", "/__openclaw__/cap/REDACTED"},
		{"/%5F%5Fopenclaw%5F%5F/cap/tok123/x", "/__openclaw__/cap/REDACTED"},
		{"/a/../__openclaw__/cap/tok123/x", "/__openclaw__/cap/REDACTED"},
		{"//__openclaw__/cap/tok123/x", "/__openclaw__/cap/REDACTED"},
		{`/__openclaw__\cap\tok123\x`, "/__openclaw__/cap/REDACTED"},
	}
	for _, c := range cases {
		got := redactCapabilityPath(c.in)
		if got != c.want {
			t.Errorf("redactCapabilityPath(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, "tok") {
			t.Errorf("redactCapabilityPath(%q) = %q keeps part of the token", c.in, got)
		}
	}
}

// capabilitySite is a tailnet site whose one guard serves capability URLs,
// with Caddy's access log and every other log written to files through the
// log filter the guard's load-time warning and the documentation give.
func capabilitySite(f *tailnetFixture, gw tsnet.Config, accessLog, mainLog string) string {
	return globalOptions{nodes: []tsnet.Config{gw}, extra: fmt.Sprintf(`log {
	output file %[1]s
	level DEBUG
	format filter {
		request>uri regexp `+"`%[2]s`"+` /__openclaw__/REDACTED
		request>headers>Referer regexp `+"`%[2]s`"+` /__openclaw__/REDACTED
	}
}`, mainLog, capabilityURIPattern)}.String() + fmt.Sprintf(`http://:%[1]d {
	bind clawgate/gw
	log {
		output file %[2]s
		format filter {
			request>uri regexp `+"`%[3]s`"+` /__openclaw__/REDACTED
			request>headers>Referer regexp `+"`%[3]s`"+` /__openclaw__/REDACTED
		}
	}
	clawgate %[4]s {
		gateway home
		capability_urls
		allow user:alice@example.com scopes operator.read,operator.write
	}
}
http://:%[5]d {
	bind clawgate/gw
	clawgate %[4]s {
		gateway home
		allow user:alice@example.com scopes operator.read,operator.write
	}
}
`, f.port, accessLog, capabilityURIPattern, f.be.addr(), f.port+1)
}

// capabilityQueries are spellings of a query that carries OpenClaw's oc_cap
// parameter (value v), as OpenClaw or a more lenient reader would decode it.
func capabilityQueries(v string) []string {
	return []string{
		"oc_cap=" + v,
		"a=1&oc_cap=" + v,
		"a=1;oc_cap=" + v,
		"oc%5Fcap=" + v,
		"%6F%63%5F%63%61%70=" + v,
		"oc%255Fcap=" + v,
		"OC_CAP=" + v,
		"oc_cap",
	}
}

func TestHasCapabilityQuery(t *testing.T) {
	for _, q := range capabilityQueries("tok") {
		if !hasCapabilityQuery(q) {
			t.Errorf("hasCapabilityQuery(%q) = false, want true", q)
		}
	}
	for _, q := range []string{"", "occap=1", "oc_capx=1", "x=oc_cap", "oc-cap=1", "a=oc_cap%3D1", "oc%5Gcap=1"} {
		if hasCapabilityQuery(q) {
			t.Errorf("hasCapabilityQuery(%q) = true, want false", q)
		}
	}
}

// FuzzHasCapabilityQuery: whenever Go's query parser finds an oc_cap
// parameter, in any case, hasCapabilityQuery does too.
func FuzzHasCapabilityQuery(f *testing.F) {
	for _, q := range capabilityQueries("tok") {
		f.Add(q)
	}
	f.Add("occap=1&x=oc_cap")
	f.Fuzz(func(t *testing.T, q string) {
		got := hasCapabilityQuery(q)
		vals, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		for k := range vals {
			if strings.EqualFold(k, capabilityQueryParam) && !got {
				t.Fatalf("hasCapabilityQuery(%q) = false; url.ParseQuery finds %q", q, k)
			}
		}
	})
}

func TestCapabilityURIPattern(t *testing.T) {
	re := regexp.MustCompile(capabilityURIPattern)
	for _, u := range []string{
		"/__openclaw__/cap/tok/x", "/%5F%5F%4fpenclaw%5F%5F/cap/tok", "/plugins/x?oc_cap=tok", "/x?a=1;OC%5FCAP=tok", "/x?%6fc_cap=tok",
	} {
		if !re.MatchString(u) {
			t.Errorf("the log filter pattern leaves %q as it is", u)
		}
	}
	for _, u := range []string{"/", "/plugins/x?cap=1", "/api/chat"} {
		if re.MatchString(u) {
			t.Errorf("the log filter pattern replaces %q", u)
		}
	}
	// The README's log filter is the one the load-time warning gives.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(readme), "regexp `"+capabilityURIPattern+"` /__openclaw__/REDACTED"); n != 2 {
		t.Errorf("the README gives the log filter's pattern %d times, want 2 (request>uri and Referer)", n)
	}
}

// TestCapabilityURLsTailnet: with capability_urls, a capability URL is
// proxied for a login the site's rules admit and refused for one they do not,
// and neither Caddy's access log nor clawgate's log records the token.
func TestCapabilityURLsTailnet(t *testing.T) {
	// Keep the config's own logging: the test reads the logs it writes.
	t.Setenv("CLAWGATE_TEST_CADDY_LOGS", "1")
	f := &tailnetFixture{tn: tailnettest.New(t), be: newBackend(t), port: 18080}
	gw := f.tn.Config(t, "gw")
	f.alice = f.tn.NewNode(t, "alice-laptop", tailnettest.WithLogin("alice@example.com"))
	f.bob = f.tn.NewNode(t, "bob-phone", tailnettest.WithLogin("bob@example.com"))
	f.ci = f.tn.NewNode(t, "ci-bot", tailnettest.WithTags("tag:ci"))
	f.siteURL = fmt.Sprintf("http://gw.%s:%d", tailnettest.Domain, f.port)
	dir := t.TempDir()
	accessLog, mainLog := filepath.Join(dir, "access.log"), filepath.Join(dir, "caddy.log")
	startCaddyTailnet(t, capabilitySite(f, gw, accessLog, mainLog))
	f.waitGW(t)

	token := "capTok" + randToken(t, 24)
	capPath := "/__openclaw__/cap/" + token + "/canvas/index.html"
	referer := http.Header{"Referer": {f.siteURL + "/__openclaw__/cap/" + token + "/canvas/"}}

	t.Run("alice's capability URL is proxied as it was sent", func(t *testing.T) {
		before := f.be.count()
		status, body := f.get(t, f.alice, capPath, referer)
		if status != http.StatusOK || f.be.count() != before+1 {
			t.Fatalf("status %d, backend count %d→%d: %s; want 200 from the gateway", status, before, f.be.count(), body)
		}
		got := f.be.last(t)
		if got.Path != capPath {
			t.Errorf("the gateway saw path %q, want %q", got.Path, capPath)
		}
		if u := got.Header.Get("X-Forwarded-User"); u != "alice@example.com" {
			t.Errorf("the gateway saw user %q, want alice@example.com", u)
		}
		if s := got.Header.Get("X-Openclaw-Scopes"); s != "operator.read,operator.write" {
			t.Errorf("the gateway saw scopes %q, want the rule's", s)
		}
	})

	t.Run("bob's is refused by the site's rules", func(t *testing.T) {
		before := f.be.count()
		status, body := f.get(t, f.bob, capPath, referer)
		if status != http.StatusForbidden || !strings.Contains(body, "clawgate_forbidden") {
			t.Errorf("status %d %q, want clawgate's 403", status, body)
		}
		if strings.Contains(body, "capability_path") {
			t.Errorf("bob was refused as a capability path, not by the rules: %s", body)
		}
		if f.be.count() != before {
			t.Error("bob's request reached the gateway")
		}
	})

	t.Run("alice's oc_cap query is proxied as it was sent", func(t *testing.T) {
		before := f.be.count()
		target := "/plugins/demo/?oc_cap=" + token
		status, body := f.get(t, f.alice, target, nil)
		if status != http.StatusOK || f.be.count() != before+1 {
			t.Fatalf("status %d, backend count %d→%d: %s; want 200 from the gateway", status, before, f.be.count(), body)
		}
		if got := f.be.last(t); got.Path != "/plugins/demo/" || got.Query != "oc_cap="+token {
			t.Errorf("the gateway saw %q?%q, want %q", got.Path, got.Query, target)
		}
	})

	t.Run("oc_cap queries are refused where capability_urls is off", func(t *testing.T) {
		c := f.alice.HTTPClient()
		defer c.CloseIdleConnections()
		get := func(target string) (int, string) {
			resp, err := c.Get(fmt.Sprintf("http://gw.%s:%d%s", tailnettest.Domain, f.port+1, target))
			if err != nil {
				t.Fatalf("GET %s: %v", target, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		for _, q := range capabilityQueries("capQueryTok") {
			before := f.be.count()
			status, body := get("/__openclaw__/canvas/documents/cv_x/index.html?" + q)
			if status != http.StatusForbidden || !strings.Contains(body, "clawgate_capability_path") || f.be.count() != before {
				t.Errorf("?%s: status %d %.200q, backend count %d→%d; want clawgate's 403 capability_path", q, status, body, before, f.be.count())
			}
		}
		// An ordinary query still passes: the refusal is about oc_cap.
		if status, body := get("/__openclaw__/canvas/documents/cv_x/index.html?occap=1"); status != http.StatusOK {
			t.Errorf("?occap=1: status %d %.200q, want 200", status, body)
		}
	})

	t.Run("no log records the token", func(t *testing.T) {
		// The access log is written after the response; give it a moment.
		var access []byte
		deadline := time.Now().Add(30 * time.Second)
		for {
			access, _ = os.ReadFile(accessLog)
			if strings.Count(string(access), "handled request") >= 3 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if strings.Count(string(access), `"uri":"/__openclaw__/REDACTED"`) < 3 {
			t.Errorf("the access log lacks the redacted URI:\n%s", access)
		}
		main, err := os.ReadFile(mainLog)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(main), `"path":"/__openclaw__/cap/REDACTED/canvas/index.html"`) {
			t.Errorf("clawgate's log lacks bob's denial with the redacted path:\n%s", main)
		}
		if !strings.Contains(string(main), "capability_urls: this server's access log records") {
			t.Error("loading the site gave no warning about its access log")
		}
		for name, data := range map[string][]byte{"access log": access, "Caddy's log": main} {
			if strings.Contains(string(data), token) {
				t.Errorf("the %s records the capability token:\n%s", name, data)
			}
		}
	})
}

// TestCapabilityURLsLoad: capability_urls is refused at load (by caddy run
// and caddy validate alike) where another guard for the same gateway on the
// same server decides by other rules, and accepted where the rules cannot
// differ.
func TestCapabilityURLsLoad(t *testing.T) {
	port := freePort(t)
	site := func(apiOpt, siteOpt, apiRule string) string {
		return fmt.Sprintf(`{
	admin off
	auto_https off
}
http://127.0.0.1:%d {
	handle /api/* {
		clawgate 127.0.0.1:18789 {
			gateway home
			%s
			%s
		}
	}
	handle {
		clawgate 127.0.0.1:18789 {
			gateway home
			%s
			allow user:alice@example.com scopes operator.read,operator.write
		}
	}
}
`, port, apiOpt, apiRule, siteOpt)
	}
	const narrow = "allow tag:ci scopes operator.read"
	const same = "allow user:alice@example.com scopes operator.read,operator.write"
	for _, c := range []struct {
		name, apiOpt, siteOpt, apiRule string
		refused                        bool
	}{
		{"on for the site guard beside a path guard with other rules", "", "capability_urls", narrow, true},
		{"on for the path guard", "capability_urls", "", narrow, true},
		{"on for both with other rules", "capability_urls", "capability_urls", narrow, true},
		{"off everywhere", "", "", narrow, false},
		{"on beside a path guard with the same rules", "", "capability_urls", same, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := loadCaddyErr(t, site(c.apiOpt, c.siteOpt, c.apiRule))
			switch {
			case c.refused && err == nil:
				t.Fatal("loaded; want the capability_urls refusal")
			case c.refused && !strings.Contains(err.Error(), `clawgate.capability_urls: server srv0 has clawgate guards with different rules for gateway "home" (upstream 127.0.0.1:18789)`):
				t.Fatalf("refused with %v; want the capability_urls message", err)
			case !c.refused && err != nil:
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

// TestCapabilityURLsPathRoutes: a capability_urls guard is refused at load
// (by caddy run and caddy validate alike) on a server where a route that is
// not a clawgate guard decides by path: OpenClaw would serve
// /__openclaw__/cap/<token>/admin as /admin, which `respond /admin* 403`
// never sees. Routes that decide by host alone, response-only handlers and
// guards of the same rules load.
func TestCapabilityURLsPathRoutes(t *testing.T) {
	port := freePort(t)
	other := freePort(t)
	const guard = `clawgate {
		upstream 127.0.0.1:18789
		gateway home
		%s
		allow user:alice@example.com scopes operator.read,operator.write
	}`
	const shortcut = `clawgate 127.0.0.1:18789 {
		gateway home
		%s
		allow user:alice@example.com scopes operator.read,operator.write
	}`
	for _, c := range []struct {
		name, body, extra string
		refused           string // part of the refusal; "" when it loads
	}{
		{
			name:    "respond beside a guard and a proxy",
			body:    "respond /admin* 403\n\t" + guard + "\n\treverse_proxy 127.0.0.1:18789",
			refused: `a route matching path ["/admin*"] runs the static_response handler without a clawgate guard deciding first`,
		},
		{
			name:    "a handle block with its own handlers beside the site's guard",
			body:    "handle /x/* {\n\t\trespond \"x\"\n\t}\n\thandle {\n\t\t" + shortcut + "\n\t}",
			refused: `a route matching path ["/x/*"] runs the static_response handler`,
		},
		{
			name:    "a handle_path block serving files",
			body:    "handle_path /static/* {\n\t\tfile_server\n\t}\n\thandle {\n\t\t" + shortcut + "\n\t}",
			refused: `a route matching path ["/static/*"] runs the rewrite handler`,
		},
		{
			name:    "a not-path matcher",
			body:    "@outside not path /ui/*\n\trespond @outside 404\n\t" + guard + "\n\treverse_proxy 127.0.0.1:18789",
			refused: `a route matching not [{"path":["/ui/*"]}] runs the static_response handler`,
		},
		{
			name:    "a path rule after the guard in a route block",
			body:    "route {\n\t\t" + guard + "\n\t\trespond /admin* 403\n\t\treverse_proxy 127.0.0.1:18789\n\t}",
			refused: `a route matching path ["/admin*"] runs the static_response handler`,
		},
		{
			name:    "another site on the same listener",
			body:    shortcut,
			extra:   fmt.Sprintf("http://localhost:%d {\n\trespond /admin* 403\n\trespond \"other\"\n}\n", port),
			refused: `a route matching path ["/admin*"] runs the static_response handler`,
		},
		{
			name:  "a response header rule by path",
			body:  "header /assets/* Cache-Control no-store\n\t" + shortcut,
			extra: "",
		},
		{
			name:  "a path guard with the same rules",
			body:  "handle /api/* {\n\t\t" + shortcut + "\n\t}\n\thandle {\n\t\t" + shortcut + "\n\t}",
			extra: "",
		},
		{
			name:  "a path rule on another listener",
			body:  shortcut,
			extra: fmt.Sprintf("http://127.0.0.1:%d {\n\trespond /admin* 403\n\trespond \"other\"\n}\n", other),
		},
	} {
		for _, on := range []bool{true, false} {
			name := c.name
			opt := ""
			if on {
				opt = "capability_urls"
			} else {
				name += " without capability_urls"
			}
			t.Run(name, func(t *testing.T) {
				body := strings.ReplaceAll(c.body, "%s", opt)
				err := loadCaddyErr(t, fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n}\nhttp://127.0.0.1:%d {\n\t%s\n}\n%s", port, body, c.extra))
				switch {
				case !on || c.refused == "":
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
				case err == nil:
					t.Fatal("loaded; want the capability_urls refusal")
				case !strings.Contains(err.Error(), "clawgate.capability_urls: server srv0: "+c.refused) ||
					!strings.Contains(err.Error(), "serve that route on another listener than the capability_urls guard, let a clawgate guard decide first in it, or remove capability_urls"):
					t.Fatalf("refused with %v; want the message naming %q and the fix", err, c.refused)
				}
			})
		}
	}
}
