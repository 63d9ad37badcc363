// Package proxyproto reads and writes the header of the PROXY protocol,
// version 2 (the binary form): the few bytes a proxy sends before anything
// else on a connection to tell the server which client the connection is
// for. Only what a tailnet front door needs is supported: TCP over IPv4 or
// IPv6, and LOCAL (a connection the proxy makes for itself). Other
// families, version 1 (text) and TLVs a sender adds are parsed past or
// refused, never trusted.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Signature opens every version 2 header.
var Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// maxAddrLen bounds the address block and its TLVs. A front door sends 12
// (IPv4) or 36 (IPv6) bytes; senders that add TLVs stay well below this.
const maxAddrLen = 512

// Command says what a header is for.
type Command int

const (
	// Local is a connection the proxy opened for itself (health checks,
	// state queries): it carries no client address.
	Local Command = iota
	// Proxy is a connection on behalf of the client in Source.
	Proxy
)

// Header is a parsed version 2 header.
type Header struct {
	Command Command
	// Source is the original client's address and port; zero for Local.
	Source netip.AddrPort
	// Dest is the address the client connected to; zero for Local.
	Dest netip.AddrPort
}

// Errors a reader tells apart.
var (
	// ErrNoHeader: the stream does not start with a version 2 signature.
	ErrNoHeader = errors.New("proxy protocol: no version 2 header")
	// ErrInvalid: the stream starts with the signature but the header is
	// malformed or of a kind this package does not accept.
	ErrInvalid = errors.New("proxy protocol: invalid header")
)

// Read reads one header from r. It reads exactly the header's bytes and
// nothing after them, so r can be handed on as the connection's stream.
func Read(r io.Reader) (Header, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, fmt.Errorf("%w: the stream ended inside the fixed part", ErrInvalid)
		}
		return Header{}, fmt.Errorf("proxy protocol: reading header: %w", err)
	}
	if !bytes.Equal(fixed[:12], Signature) {
		return Header{}, ErrNoHeader
	}
	length := int(binary.BigEndian.Uint16(fixed[14:16]))
	if length > maxAddrLen {
		return Header{}, fmt.Errorf("%w: address block of %d bytes (at most %d)", ErrInvalid, length, maxAddrLen)
	}
	rest := make([]byte, length)
	if _, err := io.ReadFull(r, rest); err != nil {
		return Header{}, fmt.Errorf("%w: address block cut short: %v", ErrInvalid, err)
	}
	return parse(fixed, rest)
}

func parse(fixed [16]byte, rest []byte) (Header, error) {
	verCmd, famProto := fixed[12], fixed[13]
	if verCmd>>4 != 2 {
		return Header{}, fmt.Errorf("%w: version %d", ErrInvalid, verCmd>>4)
	}
	switch verCmd & 0x0f {
	case 0x0:
		// LOCAL: the receiver ignores the address block, whatever it holds.
		return Header{Command: Local}, nil
	case 0x1:
	default:
		return Header{}, fmt.Errorf("%w: command %#x", ErrInvalid, verCmd&0x0f)
	}
	var h Header
	h.Command = Proxy
	switch famProto {
	case 0x11: // TCP over IPv4
		if len(rest) < 12 {
			return Header{}, fmt.Errorf("%w: IPv4 address block of %d bytes", ErrInvalid, len(rest))
		}
		src := netip.AddrFrom4([4]byte(rest[0:4]))
		dst := netip.AddrFrom4([4]byte(rest[4:8]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(rest[8:10]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(rest[10:12]))
	case 0x21: // TCP over IPv6
		if len(rest) < 36 {
			return Header{}, fmt.Errorf("%w: IPv6 address block of %d bytes", ErrInvalid, len(rest))
		}
		// An IPv4 client may be sent as an IPv4-mapped IPv6 address; it is
		// read as the IPv4 address it is.
		src := netip.AddrFrom16([16]byte(rest[0:16])).Unmap()
		dst := netip.AddrFrom16([16]byte(rest[16:32])).Unmap()
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(rest[32:34]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(rest[34:36]))
	default:
		return Header{}, fmt.Errorf("%w: address family and protocol %#x (only TCP over IPv4 or IPv6)", ErrInvalid, famProto)
	}
	return h, nil
}

// Append appends h in the version 2 binary form to b. Source and Dest of a
// Proxy header must be of one family; an IPv4-mapped IPv6 address is sent
// as IPv4.
func Append(b []byte, h Header) ([]byte, error) {
	b = append(b, Signature...)
	if h.Command == Local {
		return append(b, 0x20, 0x00, 0x00, 0x00), nil
	}
	if h.Command != Proxy {
		return nil, fmt.Errorf("proxy protocol: unknown command %d", h.Command)
	}
	src, dst := h.Source.Addr().Unmap(), h.Dest.Addr().Unmap()
	if !dst.IsValid() {
		if src.Is4() {
			dst = netip.IPv4Unspecified()
		} else {
			dst = netip.IPv6Unspecified()
		}
	}
	switch {
	case src.Is4() && dst.Is4():
		b = append(b, 0x21, 0x11, 0x00, 12)
	case src.Is6() && dst.Is6() && src.Zone() == "" && dst.Zone() == "":
		b = append(b, 0x21, 0x21, 0x00, 36)
	default:
		return nil, fmt.Errorf("proxy protocol: source %v and destination %v are not both IPv4 or both IPv6", h.Source, h.Dest)
	}
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	b = binary.BigEndian.AppendUint16(b, h.Dest.Port())
	return b, nil
}
