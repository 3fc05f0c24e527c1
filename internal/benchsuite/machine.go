package benchsuite

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Machine describes where a suite ran. Fields that could not be read are
// empty (or 0).
type Machine struct {
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPU        string `json:"cpu,omitempty"`
	// MemoryGiB is the total memory, rounded.
	MemoryGiB int `json:"memory_gib,omitempty"`
	// LoadBefore and LoadAfter are the 1, 5 and 15 minute load averages
	// before the first command and after the last: "0.08 0.92 1.23".
	LoadBefore string `json:"load_before,omitempty"`
	LoadAfter  string `json:"load_after,omitempty"`
	// Go is `go version`'s output without its "go version " prefix.
	Go string `json:"go,omitempty"`
	// Nginx is the peer's version, such as "1.22.1"; "" when nginx is
	// not installed.
	Nginx string `json:"nginx,omitempty"`
}

// DescribeMachine describes this machine, with goCmd as the go command.
// It reads the load average too, so call it right before the run.
func DescribeMachine(ctx context.Context, goCmd string) Machine {
	m := Machine{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), LoadBefore: LoadAverage()}
	if out, err := exec.CommandContext(ctx, goCmd, "version").Output(); err == nil {
		m.Go = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	// nginx -v writes "nginx version: nginx/1.22.1" to stderr.
	if out, err := exec.CommandContext(ctx, "nginx", "-v").CombinedOutput(); err == nil {
		v := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(v, '/'); i >= 0 {
			v = v[i+1:]
		}
		m.Nginx = v
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryGiB = int((kb + 1<<19) >> 20)
		}
	}
	return m
}

// LoadAverage returns the 1, 5 and 15 minute load averages, "0.08 0.92
// 1.23", or "" where the system does not say.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
