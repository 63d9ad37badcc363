package caddymodule

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/clawgate/clawgate/caddymodule/internal/proxyproto"
)

func TestFrontDoorSelectors(t *testing.T) {
	tests := []struct {
		list    []string
		wantErr string
	}{
		{[]string{"tag:clawgate-door", "node:claw"}, ""},
		{[]string{"claw"}, `front_doors[0]: "claw": want tag:<tag> or node:<name>`},
		{[]string{"tag:a", "user:alice@example.com"}, `front_doors[1]: "user:alice@example.com": want tag:<tag> or node:<name>`},
		{[]string{"tag:"}, `want tag:<tag> or node:<name>`},
		{[]string{"tag:a,tag:b"}, `one tag or node name per entry`},
	}
	for _, tt := range tests {
		err := frontDoorSelectors(tt.list)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("frontDoorSelectors(%q) = %v, want nil", tt.list, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("frontDoorSelectors(%q) = %v, want an error with %q", tt.list, err, tt.wantErr)
		}
	}
}

func TestIsFrontDoor(t *testing.T) {
	list := []string{"tag:clawgate-door", "node:claw"}
	tests := []struct {
		name       string
		tags       []string
		node, fqdn string
		want       bool
	}{
		{"tagged", []string{"tag:other", "tag:clawgate-door"}, "x", "x.tail1234.ts.net", true},
		{"named", nil, "claw", "claw.tail1234.ts.net", true},
		{"named by full name", nil, "other", "claw", true},
		{"another tag", []string{"tag:clawgate-doors"}, "x", "x.tail1234.ts.net", false},
		{"a device with the name as a prefix", nil, "claw-2", "claw-2.tail1234.ts.net", false},
		{"nothing", nil, "", "", false},
	}
	for _, tt := range tests {
		if got := isFrontDoor(list, tt.tags, tt.node, tt.fqdn); got != tt.want {
			t.Errorf("%s: isFrontDoor(%q, %q, %q) = %v, want %v", tt.name, tt.tags, tt.node, tt.fqdn, got, tt.want)
		}
	}
}

// TestSignatureGuard: a peer that is not a front door gets its bytes
// through untouched unless they open with the PROXY v2 signature, in any
// split across reads.
func TestSignatureGuard(t *testing.T) {
	hdr, _ := proxyproto.Append(nil, proxyproto.Header{Command: proxyproto.Local})
	tests := []struct {
		name    string
		writes  []string
		refused bool
	}{
		{"http", []string{"GET / HTTP/1.1\r\n\r\n"}, false},
		{"tls hello", []string{"\x16\x03\x01\x00\x05hello"}, false},
		{"one byte at a time", strings.Split("GET / HTTP/1.1\r\n\r\n", ""), false},
		{"blank line first", []string{"\r\n", "GET / HTTP/1.1\r\n\r\n"}, false},
		{"most of the signature", []string{string(proxyproto.Signature[:11]) + "X rest"}, false},
		{"proxy header", []string{string(hdr)}, true},
		{"proxy header split", []string{string(hdr[:3]), string(hdr[3:7]), string(hdr[7:])}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			refused := false
			g := &signatureGuard{Conn: server, refused: func() { refused = true }}
			go func() {
				for _, w := range tt.writes {
					if _, err := client.Write([]byte(w)); err != nil {
						return
					}
				}
				client.Close()
			}()
			_ = g.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(g)
			if tt.refused {
				if !errors.Is(err, errProxyHeaderRefused) || !refused || len(got) != 0 {
					t.Errorf("read %q, %v (refused %v), want nothing and errProxyHeaderRefused", got, err, refused)
				}
				return
			}
			if want := strings.Join(tt.writes, ""); string(got) != want || err != nil || refused {
				t.Errorf("read %q, %v (refused %v), want %q unchanged", got, err, refused, want)
			}
		})
	}
}

// TestFrontDoorConfigRefusals: configs a front door or host refuses, with
// the same message from caddy validate.
func TestFrontDoorConfigRefusals(t *testing.T) {
	tests := []struct {
		name, site, nodeExtra, want string
		bind                        string // default clawgate/gw
	}{
		{name: "remote via two nodes", bind: "clawgate/gw clawgate+service/door/claw", site: `clawgate_remote alicehost:8080 {
		gateway alice
	}`, nodeExtra: "tags tag:door", want: "clawgate_remote alice: via: the site listens on clawgate+service/door/claw and clawgate/gw, two different clawgate nodes; name the one the front door dials its hosts through with `via <node>`"},
		{"remote on a non-tailnet address", `clawgate_remote 192.168.1.20:8080 {
		gateway alice
	}`, "", `clawgate_remote alice: host "192.168.1.20:8080": not a tailnet address; a front door reaches gateway hosts over the tailnet only`, ""},
		{"remote without a port", `clawgate_remote alice-mini {
		gateway alice
	}`, "", `clawgate_remote alice: host "alice-mini": want host:port`, ""},
		{"front door by user", `respond ok`, "front_doors user:alice@example.com", `clawgate.nodes.gw.front_doors[0]: "user:alice@example.com": want tag:<tag> or node:<name>`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.bind == "" {
				tt.bind = "clawgate/gw"
			}
			err := loadCaddyErr(t, `{
	admin off
	auto_https off
	clawgate {
		node gw {
			`+tt.nodeExtra+`
		}
	}
}
http://:18080 {
	bind `+tt.bind+`
	`+tt.site+`
}
`)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("load = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestRemoteDirectiveRefusals(t *testing.T) {
	tests := []struct {
		name, site, want string
	}{
		{"no gateway", "clawgate_remote alice-mini:8080", "gateway: required"},
		{"no host", "clawgate_remote {\n\t\tgateway alice\n\t}", "want the gateway host's address"},
		{"unknown option", "clawgate_remote alice-mini:8080 {\n\t\tgateway alice\n\t\ttls\n\t}", `unknown option "tls"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := loadCaddyErrOnly(t, "{\n\tadmin off\n}\nhttp://:18080 {\n\t"+tt.site+"\n}\n")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("adapt = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestSiteNode(t *testing.T) {
	tests := []struct {
		name    string
		listen  []string
		want    string
		wantErr string
	}{
		{"a node", []string{"clawgate/door:8080"}, "door", ""},
		{"a Service", []string{"clawgate+service/door/claw:8080"}, "door", ""},
		{"node and Service on one node", []string{"clawgate/door:8080", "clawgate+service/door/claw:8080"}, "door", ""},
		{"Service first", []string{"clawgate+service/door/claw:8080", "clawgate/door:8080"}, "door", ""},
		{"two Services on one node", []string{"clawgate+service/door/claw:8080", "clawgate+service/door/paw:8080"}, "door", ""},
		{"host network and a node", []string{"tcp/127.0.0.1:8080", "clawgate+service/door/claw:8080"}, "door", ""},
		{"no clawgate node", []string{"tcp/127.0.0.1:8080", ":8081"}, "", ""},
		{"nothing", nil, "", ""},
		{"a bad Service address", []string{"clawgate+service/door:8080"}, "", ""},
		{"node and Service on two nodes", []string{"clawgate/door:8080", "clawgate+service/door2/claw:8080"}, "",
			"the site listens on clawgate/door and clawgate+service/door2/claw, two different clawgate nodes; name the one the front door dials its hosts through with `via <node>`"},
		{"two nodes", []string{"clawgate/a:8080", "clawgate/b:8080"}, "", "clawgate/a and clawgate/b, two different clawgate nodes"},
	}
	for _, tt := range tests {
		got, err := siteNode(&caddyhttp.Server{Listen: tt.listen})
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: siteNode(%q) = %v, want %q", tt.name, tt.listen, err, tt.want)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: siteNode(%q) = %q, %v, want an error with %q", tt.name, tt.listen, got, err, tt.wantErr)
		case got != tt.want:
			t.Errorf("%s: siteNode(%q) = %q, want %q", tt.name, tt.listen, got, tt.want)
		}
	}
}

func TestIsTailnetAddr(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"100.64.0.1", true},
		{"100.127.255.254", true},
		{"100.128.0.1", false},
		{"100.63.255.255", false},
		{"::ffff:100.101.102.103", true},
		{"::ffff:10.1.2.3", false},
		{"fd7a:115c:a1e0::1", true},
		{"fd7a:115c:a1e1::1", false},
		{"10.1.2.3", false},
		{"127.0.0.1", false},
		{"::1", false},
	}
	for _, tt := range tests {
		if got := isTailnetAddr(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("isTailnetAddr(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}
