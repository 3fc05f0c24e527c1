//go:build unix

package benchsuite

import (
	"os/exec"
	"syscall"
)

// setProcessGroup makes cmd the leader of a process group of its own, so
// that killProcessGroup reaches the test binary go test starts, and a
// terminal's Ctrl-C reaches only outpost-bench, which then stops it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcessGroup kills the process group of a started cmd.
func killProcessGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// terminate asks process pid to exit (nginx: a fast shutdown).
func terminate(pid int) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
}
