//go:build !unix

package caddymodule

import "os"

// fileOwner is unknown on this system.
func fileOwner(os.FileInfo) (int, bool) { return 0, false }
