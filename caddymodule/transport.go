package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(Transport{})
}

// Transport is reverse_proxy's HTTP transport that writes the guard's decision
// onto the request at the last moment before it leaves for the gateway,
// `http.reverse_proxy.transport.clawgate`. The `clawgate <upstream>` shortcut
// uses it.
//
// The guard already sets the forwarding and identity headers on the incoming
// request; the transport sets them again on the outgoing one, after everything
// reverse_proxy does (hop-by-hop removal, its own X-Forwarded-* handling, which
// appends a trusted proxy's address to X-Forwarded-For). Doing it here rather
// than with `header_up` costs no per-request copy of the header map, and
// nothing can run between it and the wire.
//
// A request the guard did not admit (no guard before the proxy, or an active
// health check) is refused with an error, never sent without identity.
type Transport struct {
	reverseproxy.HTTPTransport
}

// CaddyModule returns the Caddy module information.
func (Transport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.clawgate",
		New: func() caddy.Module { return new(Transport) },
	}
}

// errNotAdmitted is returned for a request no clawgate guard admitted.
var errNotAdmitted = errors.New("clawgate transport: the request was not admitted by a clawgate guard; refusing to forward it without an identity")

// RoundTrip sets the admitted identity's headers and sends the request.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := caddyhttp.GetVar(req.Context(), guardStateVar).(*guardState)
	if st == nil {
		return nil, errNotAdmitted
	}
	st.forwardOutbound(req.Header)
	return t.HTTPTransport.RoundTrip(req)
}

// Interface guards
var (
	_ caddy.Provisioner                                = (*Transport)(nil)
	_ caddy.CleanerUpper                               = (*Transport)(nil)
	_ http.RoundTripper                                = (*Transport)(nil)
	_ reverseproxy.TLSTransport                        = (*Transport)(nil)
	_ reverseproxy.H2CTransport                        = (*Transport)(nil)
	_ reverseproxy.ProxyProtocolTransport              = (*Transport)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*Transport)(nil)
	_ caddyfile.Unmarshaler                            = (*Transport)(nil)
)
