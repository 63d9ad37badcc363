//go:build !linux

package caddymodule

import (
	"errors"
	"net"
	"runtime"
)

// peerUID is not implemented on this system: an approval given through a
// unix admin socket is then recorded as unverified.
func peerUID(*net.UnixConn) (uint32, error) {
	return 0, errors.New("peer credentials are not read on " + runtime.GOOS)
}
