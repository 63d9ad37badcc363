package caddymodule

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
)

// refusal is a request clawgate refuses, on its way to Caddy's error
// handling. Its Error is the message shown to the caller, so Caddy's
// {http.error.message} holds no more than clawgate's own body does.
type refusal struct {
	status      int
	reason      string // short code, shown as clawgate_<reason>
	message     string // shown to the caller; never a secret
	retryAfter  time.Duration
	gateway     string
	pairingCode string
	auditChecks []string
}

func (e *refusal) Error() string { return e.message }

// refuse hands a refused request to Caddy's error handling, so a site's
// `handle_errors` can shape it, and returns the error for the handler to
// return. It returns nil when no error route would answer the refusal: the
// caller then writes clawgate's own body, the default. (ref is copied before
// it goes into the error, so the path without error routes allocates
// nothing more than the body does.)
//
// The response keeps the headers that belong to the refusal: Retry-After,
// WWW-Authenticate (set by the caller), Cache-Control: no-store and
// X-Content-Type-Options: nosniff. Error routes see the refusal as
// placeholders: {clawgate.reason}, {clawgate.message}, {clawgate.status},
// {clawgate.gateway}, {clawgate.retry_after} (seconds), {clawgate.pairing_code}
// and {clawgate.audit_checks} (the failing check IDs, comma-separated), next
// to Caddy's {http.error.*}. Before an error route runs, every client-sent
// identity, forwarding and credential header is removed from the request:
// Caddy restores the method and URI for error routes but not the headers, and
// an error route that proxies or echoes them would otherwise pass on what
// the client claimed.
func refuse(w http.ResponseWriter, r *http.Request, cleaner *edge.HeaderCleaner, ref *refusal) error {
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil || srv.Errors == nil || len(srv.Errors.Routes) == 0 {
		return nil
	}
	e := *ref
	err := caddyhttp.Error(e.status, &e)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("clawgate.reason", e.reason)
		repl.Set("clawgate.message", e.message)
		repl.Set("clawgate.status", e.status)
		repl.Set("clawgate.gateway", e.gateway)
		repl.Set("clawgate.pairing_code", e.pairingCode)
		repl.Set("clawgate.audit_checks", strings.Join(e.auditChecks, ","))
		var retry string
		if e.retryAfter > 0 {
			retry = strconv.FormatInt(retrySeconds(e.retryAfter), 10)
		}
		repl.Set("clawgate.retry_after", retry)
	}
	if !errorRoutesAnswer(srv.Errors.Routes, asErrorRoutesSee(r, srv, err)) {
		return nil
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.status == http.StatusTooManyRequests && e.retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(retrySeconds(e.retryAfter), 10))
	}
	cleaner.Clean(r.Header)
	for k := range r.Header {
		if strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "Proxy-Authorization") {
			delete(r.Header, k)
		}
	}
	return err
}

// retrySeconds is a wait in whole seconds, rounded up.
func retrySeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// asErrorRoutesSee returns the request as Caddy hands it to error routes:
// the original method and URI, and the error in its context.
func asErrorRoutesSee(r *http.Request, srv *caddyhttp.Server, err error) *http.Request {
	// A shallow copy: matchers only read the request.
	rr := r.WithContext(r.Context())
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		rr.Method = orig.Method
		rr.RequestURI = orig.RequestURI
		if orig.URL != nil {
			u := *orig.URL
			rr.URL = &u
		}
	}
	return srv.Errors.WithError(rr, err)
}

// errorRoutesAnswer reports whether some error route would answer r: a
// route that matches and holds a handler other than those that only adjust
// the request or response and pass it on (in a subroute, one of its own
// routes must answer). When none would, Caddy would send the bare status
// with an empty body, and clawgate's own body is the better default. A
// matcher that fails counts as an answer: Caddy then fails the request too,
// and it is not clawgate's to paper over.
func errorRoutesAnswer(routes caddyhttp.RouteList, r *http.Request) bool {
	groups := map[string]bool{}
	for i := range routes {
		route := &routes[i]
		if route.Group != "" && groups[route.Group] {
			continue
		}
		match, err := route.MatcherSets.AnyMatchWithError(r)
		if err != nil {
			return true
		}
		if !match {
			continue
		}
		if route.Group != "" {
			groups[route.Group] = true
		}
		for _, h := range route.Handlers {
			if sub, ok := h.(*caddyhttp.Subroute); ok {
				if errorRoutesAnswer(sub.Routes, r) {
					return true
				}
				continue
			}
			if !passesOn[caddy.GetModuleName(h)] {
				return true
			}
		}
		if route.Terminal {
			return false
		}
	}
	return false
}

// passesOn are handlers that adjust the request or response and always call
// the next handler: by themselves they answer nothing.
var passesOn = map[string]bool{
	"headers": true, "vars": true, "map": true, "log_append": true, "rewrite": true,
	"request_body": true, "encode": true, "log_skip": true, "skip_log": true,
}
