//go:build linux

package caddymodule

import (
	"fmt"
	"net"
	"syscall"
)

// peerUID is the user ID of the process at the other end of a unix socket
// connection, as the kernel recorded it when that process connected
// (SO_PEERCRED): the caller cannot choose it.
func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, fmt.Errorf("reading SO_PEERCRED: %w", credErr)
	}
	return cred.Uid, nil
}
