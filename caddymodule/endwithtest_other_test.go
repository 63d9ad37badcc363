//go:build !linux

package caddymodule

import "os/exec"

// endWithTest does nothing where the system cannot tie a child's life to
// its parent's: the test's cleanups stop what it started.
func endWithTest(*exec.Cmd) {}
