//go:build unix

package benchsuite

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeGo is a stand-in for the go command: it logs the -bench of each
// call and prints canned output for it. ^BenchmarkSlow$ starts a daemon
// the way the nginx peer does (a session of its own, a pid file under
// TMPDIR) and then hangs.
const fakeGo = `#!/bin/sh
bench=""
while [ $# -gt 0 ]; do
  case "$1" in -bench) bench=$2; shift;; esac
  shift
done
echo "$bench" >> "$FAKE_LOG"
case "$bench" in
'^BenchmarkA$')
  echo "goos: linux"
  echo "cpu: Fake CPU"
  echo "BenchmarkA/outpost-2   100   20000 ns/op   2000 p99-µs"
  echo "BenchmarkA/nginx-2     100   25000 ns/op   2500 p99-µs"
  echo PASS;;
'^BenchmarkB$')
  echo "BenchmarkB-2   5   1 ns/op   42.5 p99-ms"
  echo PASS;;
'^BenchmarkFail$')
  echo "--- FAIL: BenchmarkFail"
  echo "    x_test.go:9: boom"
  echo FAIL
  exit 1;;
'^BenchmarkSlow$')
  mkdir -p "$TMPDIR/peer"
  setsid sleep 60 &
  echo $! > "$TMPDIR/peer/nginx.pid"
  echo $! > "$FAKE_DAEMON"
  sleep 60;;
*)
  echo PASS;;
esac
`

// fakeSuite writes the fake go command and returns a Config that runs it.
func fakeSuite(t *testing.T, scenarios []Scenario) (Config, string) {
	t.Helper()
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	dir := t.TempDir()
	goCmd := filepath.Join(dir, "go")
	if err := os.WriteFile(goCmd, []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "calls")
	t.Setenv("FAKE_LOG", logFile)
	t.Setenv("FAKE_DAEMON", filepath.Join(dir, "daemon"))
	return Config{Scenarios: scenarios, Go: goCmd, Dir: dir, Timeout: time.Minute, Command: "make bench"}, logFile
}

func calls(t *testing.T, logFile string) []string {
	t.Helper()
	b, err := os.ReadFile(logFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func fakeBench(regex string, repeat int, estimate time.Duration) Bench {
	return Bench{Pkg: "./x", Regex: regex, Benchtime: "1x", Repeat: repeat, Quick: "1x", Estimate: estimate}
}

func TestRunRoundsAndStates(t *testing.T) {
	a := fakeBench("^BenchmarkA$", 2, time.Millisecond)
	b := fakeBench("^BenchmarkB$", 1, time.Microsecond)
	fail := fakeBench("^BenchmarkFail$", 1, time.Millisecond)
	missing := fakeBench("^BenchmarkMissing$", 1, time.Millisecond)
	huge := fakeBench("^BenchmarkHuge$", 1, time.Hour)
	skipped := fakeBench("^BenchmarkSkipped$", 1, time.Millisecond)
	scenarios := []Scenario{
		{Name: "A throughput", Bench: a, Sides: vsNginx, Metric: reqPerSec, Target: AtLeastPeer(1.0)},
		{Name: "A p99", Bench: a, Sides: vsNginx, Metric: p99us, Target: AtMostPeer(1.5)},
		{Name: "B p99", Bench: b, Metric: p99ms, Target: AtMost(40)},
		{Name: "Fail p99", Bench: fail, Metric: p99ms},
		{Name: "Missing p99", Bench: missing, Metric: p99ms},
		{Name: "A p99 of a sub-benchmark that is not there", Bench: a, Select: "^BenchmarkA/10k/", Sides: vsNginx, Metric: p99us},
		{Name: "Huge p99", Bench: huge, Metric: p99ms},
		{Name: "Skipped p99", Bench: skipped, Metric: p99ms},
	}
	cfg, logFile := fakeSuite(t, scenarios)
	cfg.Only = regexp.MustCompile("^(A|B|Fail|Missing|Huge) ")
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A's first run, then in the last round every command, the shortest
	// first (B), then in table order; Huge would not end within the time
	// limit; Skipped is not selected.
	if got, want := strings.Join(calls(t, logFile), " "), "^BenchmarkA$ ^BenchmarkB$ ^BenchmarkA$ ^BenchmarkFail$ ^BenchmarkMissing$"; got != want {
		t.Errorf("calls %s, want %s", got, want)
	}
	type want struct {
		status  Status
		met     Met
		reason  string
		outpost float64
		values  int
	}
	wants := map[string]want{
		"A throughput": {StatusOK, MetYes, "", 50000, 2},
		"A p99":        {StatusOK, MetYes, "", 2, 2},
		"B p99":        {StatusOK, MetNo, "", 42.5, 1},
		"Fail p99":     {StatusFailed, MetUnknown, "the command failed: exit status 1: BenchmarkFail: x_test.go:9: boom", 0, 0},
		"Missing p99":  {StatusNoResults, MetUnknown, "the command printed no benchmark results", 0, 0},
		"A p99 of a sub-benchmark that is not there": {StatusNoResults, MetUnknown, "no result of the command matches `^BenchmarkA/10k/`", 0, 0},
		"Huge p99":    {StatusNotRun, MetUnknown, "time limit", 0, 0},
		"Skipped p99": {StatusNotRun, MetUnknown, "-only", 0, 0},
	}
	for _, o := range rep.Rows {
		w := wants[o.Scenario]
		if o.Status != w.status || o.Met != w.met || !strings.HasPrefix(o.Reason, w.reason) {
			t.Errorf("%s: %s, met %s, reason %q; want %s, %s, %q", o.Scenario, o.Status, o.Met, o.Reason, w.status, w.met, w.reason)
		}
		if w.values > 0 && (o.Outpost == nil || len(o.Outpost.Values) != w.values || !near(o.Outpost.Median, w.outpost)) {
			t.Errorf("%s: Outpost %+v, want median %v of %d values", o.Scenario, o.Outpost, w.outpost, w.values)
		}
		if !strings.HasPrefix(o.Command, "go test -run '^$' -bench ") {
			t.Errorf("%s: command %q", o.Scenario, o.Command)
		}
	}
	if rep.Stopped != "time limit" {
		t.Errorf("Stopped = %q", rep.Stopped)
	}
	if len(rep.Commands) != 6 || len(rep.Commands[0].Runs) != 2 || len(rep.Commands[0].Runs[0].Lines) != 2 {
		t.Errorf("command logs: %+v", rep.Commands)
	}
	if run := rep.Commands[2].Runs[0]; !strings.Contains(run.Error, "--- FAIL: BenchmarkFail") {
		t.Errorf("the failed run's error lacks its output: %q", run.Error)
	}
}

// TestRunStopsAtTheTimeLimit checks that a command still running at the
// time limit is killed, that the daemon it started under its TMPDIR is
// stopped, and that the commands after it are reported as not run.
func TestRunStopsAtTheTimeLimit(t *testing.T) {
	slow := fakeBench("^BenchmarkSlow$", 1, time.Millisecond)
	after := fakeBench("^BenchmarkA$", 1, time.Millisecond)
	cfg, logFile := fakeSuite(t, []Scenario{
		{Name: "Slow", Bench: slow, Metric: p99ms},
		{Name: "After", Bench: after, Sides: vsNginx, Metric: reqPerSec},
	})
	cfg.Timeout = 1500 * time.Millisecond
	start := time.Now()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %s after a time limit of %s", d, cfg.Timeout)
	}
	if got := calls(t, logFile); len(got) != 1 {
		t.Errorf("calls %q, want only the slow one", got)
	}
	if o := rep.Rows[0]; o.Status != StatusFailed || !strings.Contains(o.Reason, "stopped: time limit") {
		t.Errorf("the slow row: %s, %q", o.Status, o.Reason)
	}
	if o := rep.Rows[1]; o.Status != StatusNotRun || o.Reason != "time limit" {
		t.Errorf("the row after: %s, %q", o.Status, o.Reason)
	}
	b, err := os.ReadFile(os.Getenv("FAKE_DAEMON"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 1 {
		t.Fatalf("bad daemon pid %q", b)
	}
	for deadline := time.Now().Add(5 * time.Second); alive(pid); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the daemon %d outlived the stopped command", pid)
		}
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc: the signal went through
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
