package benchsuite

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Scenario is one row of the report: one metric of one benchmark, split
// into Outpost's value and the peer's, and the target it must meet.
type Scenario struct {
	// Name is the row's label. -only matches it; the JSON copy keys rows
	// by it, so renaming a row starts a new series there.
	Name string
	// Bench is the go test command whose results the row reads.
	Bench Bench
	// Select is a regular expression on the results' full names (such as
	// "BenchmarkCacheHit/1k/outpost/round0") that picks this row's
	// results from the command's; "" picks them all.
	Select string
	// Sides sorts the selected results into Outpost's and the peer's.
	Sides Sides
	// Metric is the measurement the row reports.
	Metric Metric
	// Target is what the row must meet.
	Target Target
}

// Bench is one go test command. It is comparable: scenarios with equal
// Benches share one command and its results.
type Bench struct {
	// Pkg is the package, as go test takes it: "./node".
	Pkg string
	// Regex is the -bench regular expression.
	Regex string
	// Benchtime is the -benchtime: a duration ("3s") or a count ("200x").
	Benchtime string
	// Count is the -count; 0 means 1.
	Count int
	// Repeat is how many times the command runs, each in a later round
	// of the suite; 0 means 1.
	Repeat int
	// Quick is the -benchtime under -quick, where Count and Repeat are 1.
	Quick string
	// Estimate is the wall time of one run of the command, the build
	// included. Within a round, shorter commands run first; a run that
	// would not end within the time limit is not started.
	Estimate time.Duration
	// Timeout is go test's -timeout, for a benchmark that needs more
	// than go test's default of 10 minutes; 0 leaves the default.
	Timeout time.Duration
}

// Args returns go test's arguments for one run of b.
func (b Bench) Args(quick bool) []string {
	benchtime, count := b.Benchtime, max(b.Count, 1)
	if quick {
		benchtime, count = b.Quick, 1
	}
	args := []string{"test", "-run", "^$", "-bench", b.Regex, "-benchtime", benchtime, "-count", strconv.Itoa(count)}
	if b.Timeout > 0 {
		args = append(args, "-timeout", b.Timeout.String())
	}
	return append(args, b.Pkg)
}

// Runs returns how many times the command runs.
func (b Bench) Runs(quick bool) int {
	if quick {
		return 1
	}
	return max(b.Repeat, 1)
}

// Command returns one run of b as a shell command line.
func (b Bench) Command(quick bool) string {
	args := b.Args(quick)
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return "go " + strings.Join(args, " ")
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Sides says which results are Outpost's and which the peer's, by an
// element of their names: with Sides{"outpost", "nginx"},
// "BenchmarkCacheHit/1k/nginx/round1" is the peer's.
type Sides struct {
	// Outpost is the name element of Outpost's results. "" makes every
	// selected result that is not the peer's Outpost's.
	Outpost string
	// Peer is the name element of the peer's results; "" when the
	// benchmark has no peer.
	Peer string
}

// Side is the side of one result.
type side int

const (
	sideNone side = iota
	sideOutpost
	sidePeer
)

// of returns the side of the result called name.
func (s Sides) of(name string) side {
	elems := strings.Split(name, "/")
	switch {
	case s.Outpost != "" && contains(elems, s.Outpost):
		return sideOutpost
	case s.Peer != "" && contains(elems, s.Peer):
		return sidePeer
	case s.Outpost == "":
		return sideOutpost
	}
	return sideNone
}

func contains(elems []string, e string) bool {
	for _, x := range elems {
		if x == e {
			return true
		}
	}
	return false
}

// Metric is a measurement as a benchmark reports it and as the report
// shows it.
type Metric struct {
	// Unit is the unit in the benchmark line: "ns/op", "p99-µs",
	// "queries/s/core".
	Unit string
	// Label is what the row calls it: "throughput", "p99".
	Label string
	// Show is the unit of the shown value: "req/s", "ms".
	Show string
	// Factor converts the benchmark's value into the shown one: value ×
	// Factor, or Factor / value when Invert is set (ns/op into a rate).
	// 0 means 1.
	Factor float64
	Invert bool
	// Higher is set when a higher value is better.
	Higher bool
}

// show converts a benchmark value into the shown unit; ok is false for a
// value that cannot be inverted.
func (m Metric) show(v float64) (float64, bool) {
	f := m.Factor
	if f == 0 {
		f = 1
	}
	if m.Invert {
		if v <= 0 {
			return 0, false
		}
		return f / v, true
	}
	return v * f, true
}

// TargetKind is what a Target compares.
type TargetKind int

// The kinds of Target.
const (
	// NoTarget: the row is reported, nothing is required of it.
	NoTarget TargetKind = iota
	// PeerRatio: Outpost's value over the peer's is at least, or at
	// most, Bound.
	PeerRatio
	// Absolute: Outpost's value, in the metric's shown unit, is at least,
	// or at most, Bound.
	Absolute
	// RefRatio: Outpost's value is no more than the fraction Bound worse
	// than Outpost's value in the results Ref selects (from the same
	// command): with Bound 0.05, a rate at least 0.95× the reference's,
	// or a latency at most 1.05× the reference's. Better is always met.
	RefRatio
)

// Target is what a row must meet. The table builds them with AtLeastPeer,
// AtMostPeer, AtLeast, AtMost and Within.
type Target struct {
	Kind  TargetKind
	Bound float64
	// AtLeast (PeerRatio, Absolute) is set when the value must be at
	// least Bound, clear when at most. It must agree with the metric's
	// Higher, which Validate checks.
	AtLeast bool
	// Ref (RefRatio) is a regular expression on result names that picks
	// the reference results; RefLabel names them in the target's text,
	// such as "1 certificate".
	Ref, RefLabel string
}

// AtLeastPeer requires Outpost's value to be at least x times the peer's.
func AtLeastPeer(x float64) Target { return Target{Kind: PeerRatio, Bound: x, AtLeast: true} }

// AtMostPeer requires Outpost's value to be at most x times the peer's.
func AtMostPeer(x float64) Target { return Target{Kind: PeerRatio, Bound: x} }

// AtLeast requires Outpost's value, in the metric's shown unit, to be at
// least x.
func AtLeast(x float64) Target { return Target{Kind: Absolute, Bound: x, AtLeast: true} }

// AtMost requires Outpost's value, in the metric's shown unit, to be at
// most x.
func AtMost(x float64) Target { return Target{Kind: Absolute, Bound: x} }

// Within requires Outpost's value to be no more than the fraction frac
// worse than its value in the results that ref selects, called label.
func Within(frac float64, ref, label string) Target {
	return Target{Kind: RefRatio, Bound: frac, Ref: ref, RefLabel: label}
}

// Text returns the target as the report shows it, such as "throughput ≥
// 1.0× nginx" or "p99 ≤ 100 ms".
func (t Target) Text(m Metric, peer string) string {
	op := "≤"
	if t.AtLeast {
		op = "≥"
	}
	switch t.Kind {
	case PeerRatio:
		return fmt.Sprintf("%s %s %s× %s", m.Label, op, formatFactor(t.Bound), peer)
	case Absolute:
		return fmt.Sprintf("%s %s %s %s", m.Label, op, formatBound(t.Bound), m.Show)
	case RefRatio:
		return fmt.Sprintf("%s within %s%% of %s", m.Label, strconv.FormatFloat(t.Bound*100, 'f', -1, 64), t.RefLabel)
	}
	return "—"
}

// met reports whether x (a ratio for PeerRatio and RefRatio, a value for
// Absolute) meets t on metric m.
func (t Target) met(m Metric, x float64) bool {
	switch t.Kind {
	case RefRatio:
		if m.Higher {
			return x >= 1-t.Bound
		}
		return x <= 1+t.Bound
	case PeerRatio, Absolute:
		if t.AtLeast {
			return x >= t.Bound
		}
		return x <= t.Bound
	}
	return true
}

// Validate checks the scenario table: unique names, regular expressions
// that compile, complete commands and metrics.
func Validate(scenarios []Scenario) error {
	seen := map[string]bool{}
	for _, s := range scenarios {
		if s.Name == "" || seen[s.Name] {
			return fmt.Errorf("scenario %q: empty or duplicate name", s.Name)
		}
		seen[s.Name] = true
		b := s.Bench
		if b.Pkg == "" || b.Regex == "" || b.Benchtime == "" || b.Quick == "" || b.Estimate <= 0 {
			return fmt.Errorf("scenario %q: the command needs a package, -bench, -benchtime, a quick -benchtime and an estimate", s.Name)
		}
		for _, re := range []string{b.Regex, s.Select, s.Target.Ref} {
			if _, err := regexp.Compile(re); err != nil {
				return fmt.Errorf("scenario %q: %w", s.Name, err)
			}
		}
		if s.Metric.Unit == "" || s.Metric.Label == "" || s.Metric.Show == "" {
			return fmt.Errorf("scenario %q: the metric needs a unit, a label and a shown unit", s.Name)
		}
		switch s.Target.Kind {
		case PeerRatio, Absolute:
			if s.Target.Kind == PeerRatio && s.Sides.Peer == "" {
				return fmt.Errorf("scenario %q: a target relative to the peer needs Sides.Peer", s.Name)
			}
			if s.Target.AtLeast != s.Metric.Higher {
				return fmt.Errorf("scenario %q: the target's direction disagrees with the metric's (Higher %v)", s.Name, s.Metric.Higher)
			}
		case RefRatio:
			if s.Target.Ref == "" || s.Target.RefLabel == "" {
				return fmt.Errorf("scenario %q: a target relative to a reference needs Ref and RefLabel", s.Name)
			}
		}
	}
	return nil
}
