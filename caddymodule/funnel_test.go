package caddymodule

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/encode"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
)

// Route builders for checkFunnelServer tables: handlers are zero values,
// which is all the check looks at besides matchers.
func fr(match string, handlers ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
	r := caddyhttp.Route{Handlers: handlers}
	if match != "" {
		r.MatcherSets = caddyhttp.MatcherSets{{caddyhttp.MatchPath{match}}}
	}
	return r
}

func grouped(group string, r caddyhttp.Route) caddyhttp.Route {
	r.Group = group
	return r
}

func sub(routes ...caddyhttp.Route) *caddyhttp.Subroute {
	return &caddyhttp.Subroute{Routes: routes}
}

func hostRoute(routes ...caddyhttp.Route) caddyhttp.Route {
	return caddyhttp.Route{
		MatcherSets: caddyhttp.MatcherSets{{caddyhttp.MatchHost{"gw.tail-scale.ts.net"}}},
		Handlers:    []caddyhttp.MiddlewareHandler{sub(routes...)},
		Terminal:    true,
	}
}

func TestFunnelRouteCheck(t *testing.T) {
	var (
		senders = func() caddyhttp.MiddlewareHandler { return &Senders{} }
		proxy   = func() caddyhttp.MiddlewareHandler { return &reverseproxy.Handler{} }
		static  = func() caddyhttp.MiddlewareHandler { return &caddyhttp.StaticResponse{} }
		files   = func() caddyhttp.MiddlewareHandler { return &fileserver.FileServer{} }
		guard   = func() caddyhttp.MiddlewareHandler { return &Handler{} }
		hdrs    = func() caddyhttp.MiddlewareHandler { return &headers.Handler{} }
		rw      = func() caddyhttp.MiddlewareHandler { return &rewrite.Rewrite{} }
		enc     = func() caddyhttp.MiddlewareHandler { return &encode.Encode{} }
	)
	tests := []struct {
		name   string
		routes caddyhttp.RouteList
		errors caddyhttp.RouteList
		want   string // "" accepted, else part of the error
	}{
		{name: "directive per route with the same matcher (Caddyfile)", routes: caddyhttp.RouteList{hostRoute(
			fr("/tg", senders()), fr("/tg", proxy()), fr("", static()))}},
		{name: "handle block", routes: caddyhttp.RouteList{hostRoute(
			grouped("g0", fr("/tg", sub(fr("", senders()), fr("", proxy())))),
			grouped("g0", fr("", sub(fr("", static())))))}},
		{name: "one route, checked first", routes: caddyhttp.RouteList{fr("/tg", hdrs(), senders(), proxy())}},
		{name: "two webhooks, checks first", routes: caddyhttp.RouteList{
			fr("/tg", senders()), fr("/slack", senders()), fr("/tg", proxy()), fr("/slack", proxy())}},
		{name: "matcherless check covers every later route", routes: caddyhttp.RouteList{
			fr("", senders()), fr("/a", rw()), fr("/b", files())}},
		{name: "answers and quiet handlers need no check", routes: caddyhttp.RouteList{
			fr("", enc()), fr("", hdrs()), fr("/x", static())}, errors: caddyhttp.RouteList{fr("", static())}},

		{name: "proxy without a check", routes: caddyhttp.RouteList{fr("", proxy())}, want: "routes[0].handle[0]: reverse_proxy could reach a backend"},
		{name: "file server without a check", routes: caddyhttp.RouteList{hostRoute(fr("", files()))}, want: "routes[0].handle[0].routes[0].handle[0]: file_server"},
		{name: "the tailnet guard", routes: caddyhttp.RouteList{fr("/ui", guard(), proxy())}, want: "tailnet guard"},
		{name: "the tailnet guard even after a check", routes: caddyhttp.RouteList{fr("", senders(), guard(), proxy())}, want: "tailnet guard"},
		{name: "check on another path", routes: caddyhttp.RouteList{fr("/tg", senders()), fr("/ui", proxy())}, want: "routes[1].handle[0]: reverse_proxy"},
		{name: "check after the proxy", routes: caddyhttp.RouteList{fr("/tg", proxy()), fr("/tg", senders())}, want: "routes[0].handle[0]: reverse_proxy"},
		{name: "check after the proxy in one route", routes: caddyhttp.RouteList{fr("/tg", proxy(), senders())}, want: "reverse_proxy"},
		{name: "proxy with handle_response between check and proxy", routes: caddyhttp.RouteList{
			fr("/tg", senders()), fr("/slack", senders()),
			fr("/slack", &reverseproxy.Handler{HandleResponse: []caddyhttp.ResponseHandler{{}}}), fr("/tg", proxy())}, want: "routes[3].handle[0]: reverse_proxy"},
		{name: "rewrite between check and proxy", routes: caddyhttp.RouteList{fr("/tg", senders()), fr("", rw()), fr("/tg", proxy())}, want: "routes[2].handle[0]: reverse_proxy"},
		{name: "check not first of its group", routes: caddyhttp.RouteList{
			grouped("g", fr("/a", static())), grouped("g", fr("", senders())), fr("", proxy())}, want: "routes[2].handle[0]: reverse_proxy"},
		{name: "unchecked proxy in a subroute", routes: caddyhttp.RouteList{fr("/tg", sub(fr("", proxy()), fr("", senders())))}, want: "routes[0].handle[0].routes[0].handle[0]: reverse_proxy"},
		{name: "proxy in error routes", routes: caddyhttp.RouteList{fr("", senders(), proxy())}, errors: caddyhttp.RouteList{fr("", proxy())}, want: "errors.routes[0].handle[0]: reverse_proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &caddyhttp.Server{Routes: tt.routes}
			if tt.errors != nil {
				srv.Errors = &caddyhttp.HTTPErrorConfig{Routes: tt.errors}
			}
			err := checkFunnelServer(srv)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("checkFunnelServer = %v, want accepted", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("checkFunnelServer = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// TestFunnelLoadRefusesGatewayRoutes loads Caddyfiles whose Funnel site
// reaches a gateway other than through clawgate_senders: Caddy must refuse
// them when it opens the listener, before any tailnet node is started.
func TestFunnelLoadRefusesGatewayRoutes(t *testing.T) {
	t.Setenv("CG_TEST_TG_SECRET", randToken(t, 24))
	t.Setenv("CG_TEST_TOKEN_CI", randToken(t, 32))
	webhook := `
	clawgate_senders /telegram-webhook telegram {
		allow 111
		secret {env.CG_TEST_TG_SECRET}
	}
	reverse_proxy /telegram-webhook 127.0.0.1:8787`
	tests := []struct {
		name, site, body, want string
	}{
		{"the Control UI through the guard", ":8443", webhook + `
	clawgate /ui/* 127.0.0.1:18789 {
		token ci {
			env CG_TEST_TOKEN_CI
		}
		allow token:ci scopes operator.read
	}`, "tailnet guard `clawgate` cannot serve Funnel traffic"},
		{"a proxy to the gateway without a check", ":8443", webhook + `
	reverse_proxy /v1/* 127.0.0.1:18789`, "reverse_proxy could reach a backend without a clawgate_senders check"},
		{"a catch-all proxy", ":10000", `
	reverse_proxy 127.0.0.1:18789`, "reverse_proxy could reach a backend"},
		{"static files", ":8443", webhook + `
	file_server /docs/*`, "file_server could reach a backend"},
		{"error pages through a proxy", ":8443", webhook + `
	handle_errors {
		reverse_proxy 127.0.0.1:18789
	}`, "errors.routes"},
		{"a port Funnel cannot serve", ":8080", webhook, "Tailscale Funnel serves only ports 443, 8443 and 10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf := fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n}\nhttp://%s {\n\tbind clawgate+funnel/gw\n%s\n}\n", tt.site, strings.TrimPrefix(tt.body, "\n"))
			err := loadCaddyErr(t, cf)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("load = %v, want an error saying %q\n%s", err, tt.want, cf)
			}
			if !strings.Contains(err.Error(), "clawgate+funnel/gw:") {
				t.Errorf("the error does not name the listener: %v", err)
			}
			if n := openNodes.Load(); n != 0 {
				t.Errorf("%d tailnet node(s) started for a refused config", n)
			}
		})
	}
}
