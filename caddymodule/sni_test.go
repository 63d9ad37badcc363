package caddymodule

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSNIMatchesHost(t *testing.T) {
	tests := []struct {
		sni, host string
		want      bool
	}{
		{"gw.tail1234.ts.net", "gw.tail1234.ts.net", true},
		{"gw.tail1234.ts.net", "gw.tail1234.ts.net:443", true},
		{"gw.tail1234.ts.net", "GW.Tail1234.TS.net", true},
		{"gw.tail1234.ts.net", "gw.tail1234.ts.net.", true},
		{"gw.tail1234.ts.net.", "gw.tail1234.ts.net", true},
		{"gw.tail1234.ts.net", "other.tail1234.ts.net", false},
		{"gw.tail1234.ts.net", "gw.tail1234.ts.net.evil.example", false},
		{"gw.tail1234.ts.net", "gw", false},
		{"gw.tail1234.ts.net", "", false},
		{"gw.tail1234.ts.net", "100.64.0.1", false},
		{"", "100.64.0.1", true},
		{"", "100.64.0.1:8443", true},
		{"", "[fd7a:115c:a1e0::1]:443", true},
		{"", "gw.tail1234.ts.net", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := sniMatchesHost(tt.sni, tt.host); got != tt.want {
			t.Errorf("sniMatchesHost(%q, %q) = %v, want %v", tt.sni, tt.host, got, tt.want)
		}
	}
}

// TestSNIHostMismatch: two guarded sites share one TLS listener, each with its
// own certificate, gateway and token. A connection made to one name must not
// carry a request to the other site, even with that site's own credential
// (domain fronting across gateways); matching requests pass.
func TestSNIHostMismatch(t *testing.T) {
	beA, beB := newBackend(t), newBackend(t)
	tokA, tokB := randToken(t, 32), randToken(t, 32)
	t.Setenv("CG_SNI_A", tokA)
	t.Setenv("CG_SNI_B", tokB)
	port := freePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin off
	local_certs
	skip_install_trust
	auto_https disable_redirects
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Real-IP
	}
}
https://a.test:%[1]d {
	bind 127.0.0.1
	tls internal
	clawgate %[2]s {
		token a {
			env CG_SNI_A
		}
		allow token:a scopes operator.read
	}
}
https://b.test:%[1]d {
	bind 127.0.0.1
	tls internal
	clawgate %[3]s {
		token b {
			env CG_SNI_B
		}
		allow token:b scopes operator.write
	}
}
`, port, beA.addr(), beB.addr()))

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	do := func(t *testing.T, sni, host, token string) int {
		t.Helper()
		var conn *tls.Conn
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			// Caddy issues the internal certificates as it starts.
			conn, err = tls.Dial("tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("TLS to %s as %q: %v", addr, sni, err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if cn := conn.ConnectionState().PeerCertificates[0].DNSNames; len(cn) != 1 || cn[0] != sni {
			t.Fatalf("certificate for %q names %v", sni, cn)
		}
		req := "GET /tools/invoke HTTP/1.1\r\nHost: " + host + "\r\nX-Real-IP: 203.0.113.9\r\nAuthorization: Bearer " + token + "\r\n\r\n"
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusMisdirectedRequest && !strings.Contains(string(body), "clawgate_misdirected") {
			t.Errorf("421 without clawgate's reason: %s", body)
		}
		return resp.StatusCode
	}

	tests := []struct {
		name, sni, host, token string
		want                   int
		reach                  *backend
	}{
		{"a for a", "a.test", "a.test", tokA, 200, beA},
		{"b for b, with port and in capitals", "b.test", fmt.Sprintf("B.TEST:%d", port), tokB, 200, beB},
		{"a's connection, b's host, a's token", "a.test", "b.test", tokA, 421, nil},
		{"a's connection, b's host, b's token", "a.test", "b.test", tokB, 421, nil},
		{"b's connection, a's host with port, a's token", "b.test", fmt.Sprintf("a.test:%d", port), tokA, 421, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := beA.count(), beB.count()
			if got := do(t, tt.sni, tt.host, tt.token); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
			gotA, gotB := beA.count()-a, beB.count()-b
			wantA, wantB := 0, 0
			switch tt.reach {
			case beA:
				wantA = 1
			case beB:
				wantB = 1
			}
			if gotA != wantA || gotB != wantB {
				t.Errorf("backends saw a %d, b %d requests; want a %d, b %d", gotA, gotB, wantA, wantB)
			}
		})
	}
}
