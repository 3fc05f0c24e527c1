//go:build !unix

package benchsuite

import (
	"os"
	"os/exec"
)

// setProcessGroup does nothing where there are no process groups.
func setProcessGroup(*exec.Cmd) {}

// killProcessGroup kills a started cmd; its children may outlive it.
func killProcessGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

// terminate kills process pid.
func terminate(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}
