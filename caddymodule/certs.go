package caddymodule

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/tailscale/tscert"
)

func init() {
	caddy.RegisterModule(CertGetter{})
	// Caddy gives every *.ts.net site the `tailscale` certificate manager,
	// which asks the host's tailscaled through tscert. Answer those requests
	// from clawgate's own nodes first, so a *.ts.net site bound to a clawgate
	// node gets that node's certificate with no extra config; names no node
	// serves still go to the host's tailscaled.
	next := tscert.TailscaledTransport
	if next == nil {
		next = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return tscert.TailscaledDialer(ctx, network, addr)
		}}
	}
	tscert.TailscaledTransport = &nodeLocalAPI{next: next}
}

// CertGetter is `tls.get_certificate.clawgate`: the certificate of a clawgate
// node, from its own Tailscale local API (Let's Encrypt via the tailnet's
// DNS-01 support). Sites on `*.ts.net` names bound to a clawgate node use it
// without being told to; this module is for configs that name it explicitly.
type CertGetter struct {
	// Node is the clawgate node whose certificate to serve. Default: the node
	// that accepted the connection.
	Node string `json:"node,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (CertGetter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.get_certificate.clawgate",
		New: func() caddy.Module { return new(CertGetter) },
	}
}

// GetCertificate returns the node's certificate for the handshake. An error
// says why, including when the tailnet has HTTPS certificates off and how to
// turn them on.
func (cg CertGetter) GetCertificate(ctx context.Context, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	var node *poolNode
	switch {
	case cg.Node != "":
		node = nodeByName(cg.Node)
	case hello != nil && hello.Conn != nil:
		if ap, err := netip.ParseAddrPort(hello.Conn.LocalAddr().String()); err == nil {
			node = nodeByIP(ap.Addr().Unmap())
		}
	}
	if node == nil {
		return nil, errors.New("clawgate certificate: no running clawgate node serves this connection")
	}
	return node.GetCertificate(hello)
}

// nodeLocalAPI answers tscert's local API requests (status, cert) from
// clawgate's nodes, and passes the rest to the host's tailscaled.
type nodeLocalAPI struct {
	next http.RoundTripper
}

func (t *nodeLocalAPI) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case req.URL.Path == "/localapi/v0/status":
		if resp, ok := t.status(req); ok {
			return resp, nil
		}
	case strings.HasPrefix(req.URL.Path, "/localapi/v0/cert/"):
		domain := strings.TrimPrefix(req.URL.Path, "/localapi/v0/cert/")
		if node := nodeForDomain(req.Context(), domain); node != nil {
			return certPairResponse(req, node, domain), nil
		}
	}
	return t.forward(req)
}

func (t *nodeLocalAPI) forward(req *http.Request) (*http.Response, error) {
	return t.next.RoundTrip(req)
}

// status reports the certificate domains of every running node (and of the
// host's tailscaled, if one answers), so Caddy's tailscale manager knows which
// names it can serve.
func (t *nodeLocalAPI) status(req *http.Request) (*http.Response, bool) {
	var domains []string
	liveNodes.Range(func(_, v any) bool {
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		if d, err := v.(*poolNode).CertDomains(ctx); err == nil {
			domains = append(domains, d...)
		}
		return true
	})
	if len(domains) == 0 {
		return nil, false
	}
	if resp, err := t.forward(req); err == nil {
		var host tscert.Status
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &host) == nil {
			domains = append(domains, host.CertDomains...)
		}
	}
	body, _ := json.Marshal(tscert.Status{BackendState: "Running", CertDomains: domains})
	return jsonResponse(req, http.StatusOK, body), true
}

// nodeForDomain returns the running node whose certificate domains include
// domain.
func nodeForDomain(ctx context.Context, domain string) *poolNode {
	var found *poolNode
	liveNodes.Range(func(_, v any) bool {
		p := v.(*poolNode)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if d, err := p.CertDomains(cctx); err == nil && slices.Contains(d, domain) {
			found = p
			return false
		}
		return true
	})
	return found
}

// certPairResponse answers `cert/<domain>?type=pair` with the node's
// certificate chain and key in PEM, as tailscaled does.
func certPairResponse(req *http.Request, node *poolNode, domain string) *http.Response {
	cert, err := node.GetCertificate(&tls.ClientHelloInfo{ServerName: domain})
	if err != nil {
		return errorResponse(req, err)
	}
	var buf bytes.Buffer
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return errorResponse(req, fmt.Errorf("encoding the key of %s: %w", domain, err))
	}
	_ = pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: key})
	for _, der := range cert.Certificate {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return jsonResponse(req, http.StatusOK, buf.Bytes())
}

// errorResponse answers as tailscaled does, {"error": "..."}: tscert only
// reports an error whose body has that shape.
func errorResponse(req *http.Request, err error) *http.Response {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{err.Error()})
	return jsonResponse(req, http.StatusInternalServerError, body)
}

func jsonResponse(req *http.Request, status int, body []byte) *http.Response {
	return &http.Response{
		StatusCode:    status,
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// Interface guards
var (
	_ certmagic.Manager     = (*CertGetter)(nil)
	_ caddyfile.Unmarshaler = (*CertGetter)(nil)
	_ http.RoundTripper     = (*nodeLocalAPI)(nil)
)
