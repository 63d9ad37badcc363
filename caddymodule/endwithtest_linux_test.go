package caddymodule

import (
	"os/exec"
	"syscall"
)

// endWithTest makes cmd's process get SIGKILL when the test binary dies
// without stopping it (a timeout, a kill), so no Caddy or 1 GB gateway
// outlives the run.
func endWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
