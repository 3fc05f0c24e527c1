package benchsuite

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// DefaultTimeout bounds a whole `make bench`.
const DefaultTimeout = 20 * time.Minute

// Main runs the outpost-bench command line with args (without the program
// name) and returns the exit status: 0 when the report was written
// (whether or not the targets were met and every command succeeded: the
// rows say), 1 when it could not be, 2 on a usage mistake. The first
// SIGINT or SIGTERM stops the running command and still writes what the
// run has; a second one kills the process.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal takes its default action
	}()
	return run(ctx, args, stdout, stderr)
}

// run is Main with its context passed in.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("outpost-bench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: outpost-bench [flags]\n\n"+
			"Runs the benchmark suite (Outpost beside nginx), one command at a time, and writes\n"+
			"the results into the generated section of docs/benchmarks.md and into a JSON copy.\n\nFlags:\n")
		fl.PrintDefaults()
	}
	only := fl.String("only", "", "run only the scenarios whose names match this regular expression")
	quick := fl.Bool("quick", false, "short benchtimes and one run per command: a smoke run, not a measurement")
	out := fl.String("out", filepath.Join("docs", "benchmarks.md"), "the Markdown file whose generated section to write")
	jsonOut := fl.String("json", "", "the JSON copy of the results (default: -out with .json for .md)")
	timeout := fl.Duration("timeout", DefaultTimeout, "stop after this long and write what has been measured")
	list := fl.Bool("list", false, "list the scenarios and their commands, and exit")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "outpost-bench: unexpected arguments %q\n", fl.Args())
		return 2
	}
	cfg := Config{Quick: *quick, Timeout: *timeout, Log: stderr, Command: reproduce(fl)}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintf(stderr, "outpost-bench: -only: %v\n", err)
			return 2
		}
		cfg.Only = re
	}
	if *list {
		return listScenarios(stdout, cfg)
	}
	dir, err := moduleRoot(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "outpost-bench: %v\n", err)
		return 1
	}
	cfg.Dir = dir
	if !isSet(fl, "out") {
		*out = filepath.Join(dir, *out) // docs/ of the module, wherever it runs from
	}
	if *jsonOut == "" {
		*jsonOut = strings.TrimSuffix(*out, ".md") + ".json"
	}
	// Fail on a malformed -out before the long run, not after.
	if doc, err := os.ReadFile(*out); err == nil {
		if _, err := Splice(doc, nil); err != nil {
			fmt.Fprintf(stderr, "outpost-bench: %s: %v\n", *out, err)
			return 1
		}
	}

	machine := DescribeMachine(ctx, "go")
	fmt.Fprintf(stderr, "outpost-bench: %s; load average %s\n", machineLine(machine), orDash(machine.LoadBefore))
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "outpost-bench: %v\n", err)
		return 1
	}
	machine.LoadAfter = LoadAverage()
	rep.Machine = machine
	if rel, err := filepath.Rel(filepath.Dir(*out), *jsonOut); err == nil {
		rep.JSONLink = filepath.ToSlash(rel)
	}

	var md, js bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		fmt.Fprintf(stderr, "outpost-bench: %v\n", err)
		return 1
	}
	if err := rep.WriteJSON(&js); err != nil {
		fmt.Fprintf(stderr, "outpost-bench: %v\n", err)
		return 1
	}
	if err := spliceFile(*out, md.Bytes()); err != nil {
		fmt.Fprintf(stderr, "outpost-bench: %v\n", err)
		return 1
	}
	if err := writeFile(*jsonOut, js.Bytes()); err != nil {
		fmt.Fprintf(stderr, "outpost-bench: %v\n", err)
		return 1
	}
	summary(stdout, rep)
	fmt.Fprintf(stdout, "\nWrote %s and %s; the run took %s.\n", *out, *jsonOut, seconds(rep.Seconds))
	return 0
}

// reproduce is the command that reproduces a run with fl's flags: "make
// bench", with BENCHFLAGS when a flag changes what is measured.
func reproduce(fl *flag.FlagSet) string {
	var flags []string
	fl.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "quick":
			if f.Value.String() == "true" {
				flags = append(flags, "-quick")
			}
		case "only", "timeout":
			flags = append(flags, "-"+f.Name+" "+shellQuote(f.Value.String()))
		}
	})
	if len(flags) == 0 {
		return "make bench"
	}
	v := strings.Join(flags, " ")
	if strings.ContainsAny(v, "\"$`\\") {
		return "make bench BENCHFLAGS=" + shellQuote(v)
	}
	return `make bench BENCHFLAGS="` + v + `"`
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module: run outpost-bench from the repository")
	}
	return filepath.Dir(mod), nil
}

// isSet reports whether the flag called name was given.
func isSet(fl *flag.FlagSet, name string) bool {
	set := false
	fl.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// spliceFile puts section into the Markdown file at path (see Splice); a
// missing file is created.
func spliceFile(path string, section []byte) error {
	doc, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	out, err := Splice(doc, section)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeFile(path, out)
}

// writeFile replaces path's content with b through a rename, so that an
// interrupted write leaves the old file.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// summary prints the rows as a plain table.
func summary(w io.Writer, rep *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tOUTPOST\tNGINX\tRATIO\tTARGET\tMET")
	for _, o := range rep.Rows {
		out, peer, ratio, met := "-", "-", "-", string(o.Status)
		if o.Status == StatusOK {
			out, peer, met = withUnit(o.Outpost, o.Show), withUnit(o.Peer, o.Show), string(o.Met)
			if o.Ratio != nil {
				ratio = formatRatio(*o.Ratio)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Scenario, out, peer, ratio, o.Target, met)
	}
	tw.Flush()
}

// listScenarios prints the table: each row's command, metric and target.
func listScenarios(w io.Writer, cfg Config) int {
	scenarios := cfg.Scenarios
	if scenarios == nil {
		scenarios = Scenarios
	}
	if err := Validate(scenarios); err != nil {
		fmt.Fprintf(w, "outpost-bench: %v\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tMETRIC\tTARGET\tCOMMAND")
	for _, s := range scenarios {
		if cfg.Only != nil && !cfg.Only.MatchString(s.Name) {
			continue
		}
		runs := ""
		if n := s.Bench.Runs(cfg.Quick); n > 1 {
			runs = fmt.Sprintf(" (×%d)", n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\n", s.Name, s.Metric.Unit, s.Target.Text(s.Metric, peerName(s.Sides)), s.Bench.Command(cfg.Quick), runs)
	}
	tw.Flush()
	return 0
}
