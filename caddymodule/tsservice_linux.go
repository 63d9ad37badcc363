package caddymodule

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// fromOwnUser returns nil when the other end of c, a loopback TCP
// connection accepted here, is a socket of this process's user, as the
// Service forwarder of a tsnet node in this process is. The kernel names the
// client socket's owner (sock_diag, one exact lookup by the connection's
// addresses, whatever the number of sockets on the host). Another user's
// process that connects to the Service's socket to forge a PROXY header is
// refused; so is any connection when the check cannot be made. A process
// of this user is not told apart: it can read the node's state directory,
// and so be the node, anyway.
func fromOwnUser(c net.Conn) error {
	local, err := netip.ParseAddrPort(addrString(c.LocalAddr()))
	if err != nil {
		return fmt.Errorf("local address: %w", err)
	}
	remote, err := netip.ParseAddrPort(addrString(c.RemoteAddr()))
	if err != nil {
		return fmt.Errorf("remote address: %w", err)
	}
	// The client's socket goes from the connection's remote address to its
	// local one.
	uid, err := tcpSocketOwner(remote, local)
	if err != nil {
		return fmt.Errorf("finding the owner of the client socket %s -> %s: %w", remote, local, err)
	}
	if me := os.Geteuid(); uint64(uid) != uint64(me) {
		return fmt.Errorf("the client socket %s belongs to uid %d, not to this process's uid %d", remote, uid, me)
	}
	return nil
}

// Netlink sock_diag (linux/sock_diag.h, linux/inet_diag.h).
const (
	netlinkSockDiag   = 4  // NETLINK_SOCK_DIAG
	sockDiagByFamily  = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqV2Len  = 56 // struct inet_diag_req_v2
	inetDiagMsgLen    = 72 // struct inet_diag_msg
	inetDiagMsgUIDOff = 64
)

// tcpSocketOwner asks the kernel for the uid that owns the TCP socket whose
// local address is src and remote address dst.
func tcpSocketOwner(src, dst netip.AddrPort) (uint32, error) {
	family := syscall.AF_INET6
	if src.Addr().Unmap().Is4() && dst.Addr().Unmap().Is4() {
		family = syscall.AF_INET
	}
	uid, err := sockDiagOwner(family, src, dst)
	if errors.Is(err, syscall.ENOENT) && family == syscall.AF_INET {
		// A dual-stack socket connected to an IPv4 address.
		uid, err = sockDiagOwner(syscall.AF_INET6,
			netip.AddrPortFrom(netip.AddrFrom16(src.Addr().As16()), src.Port()),
			netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port()))
	}
	return uid, err
}

func sockDiagOwner(family int, src, dst netip.AddrPort) (uint32, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, netlinkSockDiag)
	if err != nil {
		return 0, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer syscall.Close(fd)
	tv := syscall.NsecToTimeval(int64(time.Second))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return 0, fmt.Errorf("sock_diag socket: %w", err)
	}

	req := make([]byte, syscall.NLMSG_HDRLEN+inetDiagReqV2Len)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], sockDiagByFamily)
	ne.PutUint16(req[6:], syscall.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // sequence number
	r := req[syscall.NLMSG_HDRLEN:]
	r[0] = byte(family)
	r[1] = syscall.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // every state
	id := r[8:]                     // struct inet_diag_sockid
	binary.BigEndian.PutUint16(id[0:], src.Port())
	binary.BigEndian.PutUint16(id[2:], dst.Port())
	putDiagAddr(id[4:20], src.Addr(), family)
	putDiagAddr(id[20:36], dst.Addr(), family)
	ne.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], 0xffffffff)
	if err := syscall.Sendto(fd, req, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag request: %w", err)
	}

	buf := make([]byte, 4096)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("sock_diag answer: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, fmt.Errorf("sock_diag answer: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case syscall.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if errno := -int32(ne.Uint32(m.Data)); errno != 0 {
					return 0, syscall.Errno(errno)
				}
			}
		case sockDiagByFamily:
			if len(m.Data) < inetDiagMsgLen {
				return 0, errors.New("sock_diag answer too short")
			}
			return ne.Uint32(m.Data[inetDiagMsgUIDOff:]), nil
		}
	}
	return 0, errors.New("sock_diag gave no answer")
}

// putDiagAddr writes addr as inet_diag_sockid holds it: 4 bytes for
// AF_INET, 16 for AF_INET6, in network order.
func putDiagAddr(b []byte, addr netip.Addr, family int) {
	if family == syscall.AF_INET {
		a := addr.Unmap().As4()
		copy(b, a[:])
		return
	}
	a := addr.As16()
	copy(b, a[:])
}
