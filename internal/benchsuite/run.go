package benchsuite

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Config is one suite run.
type Config struct {
	// Scenarios is the table; nil means Scenarios.
	Scenarios []Scenario
	// Only, when set, selects the rows whose names it matches; the other
	// rows are reported as not run.
	Only *regexp.Regexp
	// Quick runs each command once with its quick -benchtime.
	Quick bool
	// Timeout bounds the whole run. A command that would not end by then
	// is not started; one still running then is stopped.
	Timeout time.Duration
	// Dir is the module's root, where the commands run.
	Dir string
	// Go is the go command; "" means "go".
	Go string
	// Command is what the report gives as the reproducing command.
	Command string
	// Log receives progress lines and every command's output; nil
	// discards them.
	Log io.Writer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Run runs the commands the selected rows need, one at a time, and
// returns the report. It returns an error only when the suite could not
// run at all (an invalid table); failed commands, the time limit and a
// cancelled ctx give rows that say so. The report's Machine has only
// what Run can see itself; callers fill in the rest with DescribeMachine.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Scenarios == nil {
		cfg.Scenarios = Scenarios
	}
	if err := Validate(cfg.Scenarios); err != nil {
		return nil, err
	}
	if cfg.Go == "" {
		cfg.Go = "go"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	start := cfg.Now()
	deadline := start.Add(cfg.Timeout)
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}

	// The commands, in the table's order, with the rows that read them.
	type command struct {
		bench    Bench
		selected bool
		log      CommandLog
		results  []Result
		failures []string
		skipped  string // why a run was not started
	}
	var cmds []*command
	byBench := map[Bench]*command{}
	for _, s := range cfg.Scenarios {
		c := byBench[s.Bench]
		if c == nil {
			c = &command{bench: s.Bench, log: CommandLog{Command: s.Bench.Command(cfg.Quick)}}
			byBench[s.Bench] = c
			cmds = append(cmds, c)
		}
		c.log.Scenarios = append(c.log.Scenarios, s.Name)
		if cfg.Only == nil || cfg.Only.MatchString(s.Name) {
			c.selected = true
		}
	}

	rep := &Report{Started: start, Command: cfg.Command, Quick: cfg.Quick}
	total, done := 0, 0
	rounds := 0
	for _, c := range cmds {
		if c.selected {
			total += c.bench.Runs(cfg.Quick)
			rounds = max(rounds, c.bench.Runs(cfg.Quick))
		}
	}
	// The runs of a command go into the last rounds of the suite (a
	// command with one run into the last one), so that repeats spread
	// over the whole run; within a round the shortest command runs first.
	// So the longest command runs last, and if it overruns the time limit
	// it costs only itself.
	order := slices.Clone(cmds)
	slices.SortStableFunc(order, func(a, b *command) int { return cmp.Compare(a.bench.Estimate, b.bench.Estimate) })
	for round := 0; round < rounds; round++ {
		for _, c := range order {
			runs := c.bench.Runs(cfg.Quick)
			if !c.selected || round < rounds-runs {
				continue
			}
			if err := ctx.Err(); err != nil {
				c.skipped = stopReason(ctx)
				rep.Stopped = stopReason(ctx)
				continue
			}
			if !cfg.Quick && cfg.Timeout > 0 && cfg.Now().Add(c.bench.Estimate).After(deadline) {
				c.skipped = "time limit"
				rep.Stopped = "time limit"
				fmt.Fprintf(cfg.Log, "outpost-bench: not starting %s: it would not end within the time limit\n", c.log.Command)
				continue
			}
			done++
			left := ""
			if cfg.Timeout > 0 {
				left = fmt.Sprintf(", %s left", deadline.Sub(cfg.Now()).Round(time.Second))
			}
			fmt.Fprintf(cfg.Log, "outpost-bench: [%d/%d] %s (run %d of %d, about %s%s)\n",
				done, total, c.log.Command, len(c.log.Runs)+1, runs, c.bench.Estimate, left)
			run := runCommand(ctx, cfg, c.bench)
			c.log.Runs = append(c.log.Runs, run)
			c.results = append(c.results, run.Results...)
			if run.Error != "" {
				c.failures = append(c.failures, firstLine(run.Error))
				if ctx.Err() != nil {
					rep.Stopped = stopReason(ctx)
				}
			}
		}
	}
	rep.Seconds = cfg.Now().Sub(start).Seconds()

	rowCmd := map[string]*command{}
	for _, c := range cmds {
		for _, r := range c.log.Scenarios {
			rowCmd[r] = c
		}
		rep.Commands = append(rep.Commands, c.log)
	}
	for _, s := range cfg.Scenarios {
		c := rowCmd[s.Name]
		o := Evaluate(s, c.results)
		o.Command = c.log.Command
		switch {
		case !c.selected:
			o = notRun(o, "-only")
		case len(c.log.Runs) == 0:
			o = notRun(o, c.skipped)
		case o.Status != StatusOK && len(c.failures) > 0:
			o.Status, o.Reason, o.Met = StatusFailed, "the command failed: "+c.failures[0], MetUnknown
		case o.Status != StatusOK && len(c.results) == 0:
			o.Reason = fmt.Sprintf("the command printed no benchmark results: is there a benchmark matching `%s` in `%s`?", c.bench.Regex, c.bench.Pkg)
		case o.Status != StatusOK:
			o.Reason = fmt.Sprintf("no result of the command matches `%s` with %s", s.Select, s.Metric.Unit)
		default:
			for _, f := range c.failures {
				o.Notes = append(o.Notes, "a run of its command failed: "+f)
			}
			if c.skipped != "" {
				o.Notes = append(o.Notes, fmt.Sprintf("%s of %d (%s)", plural(len(c.log.Runs), "run"), c.bench.Runs(cfg.Quick), c.skipped))
			}
		}
		rep.Rows = append(rep.Rows, o)
	}
	return rep, nil
}

// notRun marks o as not run, for reason.
func notRun(o Outcome, reason string) Outcome {
	o.Status, o.Reason, o.Met = StatusNotRun, reason, MetUnknown
	o.Outpost, o.Peer, o.Ref, o.Ratio, o.RefRatio, o.Notes = nil, nil, nil, nil, nil, nil
	return o
}

// stopReason says why ctx ended: "time limit" or "interrupted".
func stopReason(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "time limit"
	}
	return "interrupted"
}

// runCommand runs one go test command in a private TMPDIR and parses its
// output. A command stopped by ctx is killed with its process group; an
// nginx its benchmark started under that TMPDIR is stopped then too.
func runCommand(ctx context.Context, cfg Config, b Bench) (run RunLog) {
	run = RunLog{Started: cfg.Now(), Load: LoadAverage()}
	defer func() { run.Seconds = cfg.Now().Sub(run.Started).Seconds() }()
	tmp, err := os.MkdirTemp("", "outpost-bench-")
	if err != nil {
		run.Error = err.Error()
		return run
	}
	// nginx workers run as an unprivileged user and must reach the
	// benchmark's directories under TMPDIR.
	if err := os.Chmod(tmp, 0o755); err != nil {
		run.Error = err.Error()
		return run
	}
	defer os.RemoveAll(tmp)

	cmd := exec.Command(cfg.Go, b.Args(cfg.Quick)...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, cfg.Log)
	cmd.Stderr = cmd.Stdout
	setProcessGroup(cmd)
	// A daemon the benchmark started (and did not stop) may hold the
	// output open after the command exited.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		run.Error = err.Error()
		return run
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
		if errors.Is(err, exec.ErrWaitDelay) {
			err = nil // it exited 0
		}
	case <-ctx.Done():
		killProcessGroup(cmd)
		stopNginx(tmp, cfg.Log)
		<-waited
		err = fmt.Errorf("stopped: %s", stopReason(ctx))
	}
	parsed, _ := Parse(bytes.NewReader(out.Bytes())) // a bytes.Reader does not fail
	run.Lines, run.Results = parsed.Lines, parsed.Results
	if err != nil {
		run.Error = failure(err, out.String())
	}
	return run
}

// failure describes a failed command in one line, the most telling line
// of its output added (a benchmark's failure message, a compile error, a
// panic), followed by the output's last lines.
func failure(err error, output string) string {
	lines := strings.Split(output, "\n")
	why := ""
	for i, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "--- FAIL:") && i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != "":
			why = strings.TrimPrefix(t, "--- FAIL: ") + ": " + strings.TrimSpace(lines[i+1])
		case strings.HasPrefix(l, "# ") && i+1 < len(lines):
			why = strings.TrimSpace(lines[i+1]) // the first compile error
		case strings.HasPrefix(t, "panic:"):
			why = t
		}
		if why != "" {
			break
		}
	}
	s := err.Error()
	if why != "" {
		s += ": " + why
	}
	return s + "\n" + tail(output, 20)
}

// stopNginx stops every nginx whose pid file is under dir: a benchmark
// that was killed did not stop the nginx it started there.
func stopNginx(dir string, log io.Writer) {
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "nginx.pid" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 1 {
			fmt.Fprintf(log, "outpost-bench: stopping nginx %d left by the stopped benchmark (%s)\n", pid, path)
			terminate(pid)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // let its workers exit before the directory goes
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
