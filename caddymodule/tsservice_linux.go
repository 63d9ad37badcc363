package caddymodule

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// fromThisProcess reports, as a nil error, that the other end of c, a
// loopback TCP connection accepted here, is a socket this process holds:
// the Service forwarder of a tsnet node in this process. It finds the
// client-side socket in /proc/net/tcp{,6} (local address = c's remote,
// remote address = c's local) and looks for its inode among this process's
// file descriptors. Another local process that connects to the Service's
// socket to forge a PROXY header is refused. Any failure to tell refuses
// too.
func fromThisProcess(c net.Conn) error {
	local, err := netip.ParseAddrPort(addrString(c.LocalAddr()))
	if err != nil {
		return fmt.Errorf("local address: %w", err)
	}
	remote, err := netip.ParseAddrPort(addrString(c.RemoteAddr()))
	if err != nil {
		return fmt.Errorf("remote address: %w", err)
	}
	table := "/proc/net/tcp"
	if !remote.Addr().Unmap().Is4() || !local.Addr().Unmap().Is4() {
		table = "/proc/net/tcp6"
	}
	inode, err := socketInode(table, remote, local)
	if err != nil {
		return err
	}
	held, err := holdsSocket(inode)
	if err != nil {
		return err
	}
	if !held {
		return fmt.Errorf("the client socket %s (inode %s) belongs to another process", remote, inode)
	}
	return nil
}

// socketInode returns the inode of the TCP socket from local to remote in
// table (/proc/net/tcp or tcp6).
func socketInode(table string, local, remote netip.AddrPort) (string, error) {
	f, err := os.Open(table)
	if err != nil {
		return "", err
	}
	defer f.Close()
	want4 := table == "/proc/net/tcp"
	l, r := procAddr(local, want4), procAddr(remote, want4)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 512), 4096)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(fields) < 10 || fields[1] != l || fields[2] != r {
			continue
		}
		return fields[9], nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading %s: %w", table, err)
	}
	return "", fmt.Errorf("no socket from %s to %s in %s (the client closed it, or it is in another network namespace)", local, remote, table)
}

// procAddr writes ap as /proc/net/tcp{,6} does: the address as host-order
// 32-bit words in hex, a colon, and the port in hex.
func procAddr(ap netip.AddrPort, v4 bool) string {
	var b []byte
	if v4 {
		a := ap.Addr().Unmap().As4()
		b = a[:]
	} else {
		a := ap.Addr().As16()
		b = a[:]
	}
	var sb strings.Builder
	for i := 0; i < len(b); i += 4 {
		// Each 32-bit word of the address, read in the machine's byte order.
		fmt.Fprintf(&sb, "%08X", binary.NativeEndian.Uint32(b[i:i+4]))
	}
	sb.WriteByte(':')
	fmt.Fprintf(&sb, "%04X", ap.Port())
	return sb.String()
}

// holdsSocket reports whether one of this process's file descriptors is
// the socket with the given inode.
func holdsSocket(inode string) (bool, error) {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return false, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return false, fmt.Errorf("listing /proc/self/fd: %w", err)
	}
	want := "socket:[" + inode + "]"
	for _, n := range names {
		if _, err := strconv.Atoi(n); err != nil {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + n)
		if errors.Is(err, os.ErrNotExist) {
			continue // closed meanwhile
		}
		if err == nil && target == want {
			return true, nil
		}
	}
	return false, nil
}
