package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
)

func TestAppendRead(t *testing.T) {
	tests := []struct {
		name string
		in   Header
		want Header
	}{
		{"ipv4", Header{Command: Proxy, Source: netip.MustParseAddrPort("100.64.0.7:41000")},
			Header{Command: Proxy, Source: netip.MustParseAddrPort("100.64.0.7:41000"), Dest: netip.MustParseAddrPort("0.0.0.0:0")}},
		{"ipv4 mapped", Header{Command: Proxy, Source: netip.MustParseAddrPort("[::ffff:100.64.0.7]:1"), Dest: netip.MustParseAddrPort("100.64.0.9:443")},
			Header{Command: Proxy, Source: netip.MustParseAddrPort("100.64.0.7:1"), Dest: netip.MustParseAddrPort("100.64.0.9:443")}},
		{"ipv6", Header{Command: Proxy, Source: netip.MustParseAddrPort("[fd7a:115c:a1e0::7]:5"), Dest: netip.MustParseAddrPort("[fd7a:115c:a1e0::9]:443")},
			Header{Command: Proxy, Source: netip.MustParseAddrPort("[fd7a:115c:a1e0::7]:5"), Dest: netip.MustParseAddrPort("[fd7a:115c:a1e0::9]:443")}},
		{"local", Header{Command: Local}, Header{Command: Local}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Append(nil, tt.in)
			if err != nil {
				t.Fatalf("Append(%+v): %v", tt.in, err)
			}
			r := bytes.NewReader(append(b, "GET / HTTP/1.1\r\n"...))
			got, err := Read(r)
			if err != nil {
				t.Fatalf("Read(Append(%+v)): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Read(Append(%+v)) = %+v, want %+v", tt.in, got, tt.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "GET / HTTP/1.1\r\n" {
				t.Errorf("Read consumed past the header: left %q", rest)
			}
		})
	}
}

func TestAppendRefusesMixedFamilies(t *testing.T) {
	_, err := Append(nil, Header{Command: Proxy, Source: netip.MustParseAddrPort("100.64.0.7:1"), Dest: netip.MustParseAddrPort("[fd7a:115c:a1e0::9]:443")})
	if err == nil {
		t.Error("Append(IPv4 source, IPv6 destination) = nil error, want one")
	}
}

func TestReadRefuses(t *testing.T) {
	v4 := func(b ...byte) []byte {
		return append(append(append([]byte{}, Signature...), b...), make([]byte, 12)...)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrNoHeader},
		{"tls hello", append([]byte{0x16, 0x03, 0x01}, make([]byte, 40)...), ErrNoHeader},
		{"version 1 text", []byte("PROXY TCP4 100.64.0.7 100.64.0.9 1 443\r\n"), ErrNoHeader},
		{"short", Signature[:10], ErrInvalid},
		{"version 3", v4(0x31, 0x11, 0, 12), ErrInvalid},
		{"command 2", v4(0x22, 0x11, 0, 12), ErrInvalid},
		{"udp", v4(0x21, 0x12, 0, 12), ErrInvalid},
		{"unix", v4(0x21, 0x31, 0, 12), ErrInvalid},
		{"unspec", v4(0x21, 0x00, 0, 12), ErrInvalid},
		{"ipv4 block too short", v4(0x21, 0x11, 0, 8), ErrInvalid},
		{"ipv6 block too short", v4(0x21, 0x21, 0, 12), ErrInvalid},
		{"block cut short", append(append([]byte{}, Signature...), 0x21, 0x11, 0, 12, 1, 2), ErrInvalid},
		{"block too long", append(append([]byte{}, Signature...), 0x21, 0x11, 0xff, 0xff), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Read(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) {
				t.Errorf("Read(%q) = %+v, %v, want %v", tt.in, h, err, tt.want)
			}
		})
	}
}

func TestReadAcceptsTLVs(t *testing.T) {
	b, _ := Append(nil, Header{Command: Proxy, Source: netip.MustParseAddrPort("100.64.0.7:9")})
	b[15] = 12 + 4
	b = append(b, 0x04, 0x00, 0x01, 0xff) // a NOOP TLV
	got, err := Read(bytes.NewReader(b))
	if err != nil || got.Source != netip.MustParseAddrPort("100.64.0.7:9") {
		t.Errorf("Read(header with TLV) = %+v, %v", got, err)
	}
}

func FuzzRead(f *testing.F) {
	for _, h := range []Header{
		{Command: Local},
		{Command: Proxy, Source: netip.MustParseAddrPort("100.64.0.7:41000")},
		{Command: Proxy, Source: netip.MustParseAddrPort("[fd7a:115c:a1e0::7]:5"), Dest: netip.MustParseAddrPort("[fd7a:115c:a1e0::9]:443")},
	} {
		b, _ := Append(nil, h)
		f.Add(b)
	}
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add(append(append([]byte{}, Signature...), 0x21, 0x11, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := Read(r)
		if err != nil {
			return
		}
		if h.Command == Proxy && !h.Source.Addr().IsValid() {
			t.Fatalf("Read(%q) = %+v: a proxied header without a source", in, h)
		}
		if consumed := len(in) - r.Len(); consumed > 16+maxAddrLen {
			t.Fatalf("Read(%q) consumed %d bytes, more than any header", in, consumed)
		}
		if h.Command == Proxy {
			b, err := Append(nil, h)
			if err != nil {
				// A source and destination of different families after
				// unmapping cannot be written back; nothing to compare.
				return
			}
			again, err := Read(bytes.NewReader(b))
			if err != nil || again != h {
				t.Fatalf("Read(Append(%+v)) = %+v, %v", h, again, err)
			}
		}
	})
}
