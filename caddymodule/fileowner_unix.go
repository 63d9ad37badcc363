//go:build unix

package caddymodule

import (
	"os"
	"syscall"
)

// fileOwner is the user ID owning the file fi describes.
func fileOwner(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
