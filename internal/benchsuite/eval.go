package benchsuite

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Status is whether a row has numbers, and if not why not.
type Status string

// The statuses of an Outcome.
const (
	// StatusOK: the row has Outpost's value.
	StatusOK Status = "ok"
	// StatusNoResults: the command ran but printed no result the row
	// selects (a benchmark that does not exist, was renamed, or skipped).
	StatusNoResults Status = "no results"
	// StatusFailed: the command failed before any result the row needs.
	StatusFailed Status = "failed"
	// StatusNotRun: the command was not run; the Outcome's Reason is
	// "-only", "time limit" or "interrupted".
	StatusNotRun Status = "not run"
)

// Met is whether a row meets its target.
type Met string

// The values of Met.
const (
	MetYes      Met = "yes"
	MetNo       Met = "no"
	MetNoTarget Met = "no target"
	// MetUnknown: the row lacks a value its target needs (the peer's,
	// the reference's), or the row has no values at all.
	MetUnknown Met = "unknown"
)

// Stat is one side of a row: every measurement, in the metric's shown
// unit, and their median.
type Stat struct {
	Median float64   `json:"median"`
	Values []float64 `json:"values"`
}

// Outcome is one evaluated row of the report.
type Outcome struct {
	Scenario string `json:"scenario"`
	// Unit is the benchmark's unit, Show the shown one.
	Unit string `json:"unit"`
	Show string `json:"show"`
	// Command reproduces one run of the row's benchmark.
	Command string `json:"command"`
	Status  Status `json:"status"`
	// Reason says why a row that is not StatusOK has no numbers.
	Reason string `json:"reason,omitempty"`
	// Outpost, Peer and Ref (the RefRatio target's reference) are nil
	// when they have no measurement.
	Outpost *Stat `json:"outpost,omitempty"`
	Peer    *Stat `json:"peer,omitempty"`
	Ref     *Stat `json:"ref,omitempty"`
	// Ratio is Outpost's median over the peer's; RefRatio Outpost's
	// median over the reference's.
	Ratio    *float64 `json:"ratio,omitempty"`
	RefRatio *float64 `json:"ref_ratio,omitempty"`
	Target   string   `json:"target"`
	Met      Met      `json:"met"`
	// Notes are problems worth a reader's attention, such as a failed
	// run whose other runs gave the numbers.
	Notes []string `json:"notes,omitempty"`
}

// Evaluate computes s's row from the results of its command: the medians
// of each side, their ratio, and whether the target is met. A row whose
// Outpost side has no value is StatusNoResults. s must pass Validate.
func Evaluate(s Scenario, results []Result) Outcome {
	o := Outcome{Scenario: s.Name, Unit: s.Metric.Unit, Show: s.Metric.Show, Target: s.Target.Text(s.Metric, peerName(s.Sides)), Met: MetUnknown}
	sel := regexp.MustCompile(s.Select)
	var refSel *regexp.Regexp
	if s.Target.Kind == RefRatio {
		refSel = regexp.MustCompile(s.Target.Ref)
	}
	var outpost, peer, ref []float64
	missing := 0
	for _, r := range results {
		inRow, inRef := sel.MatchString(r.Name), refSel != nil && refSel.MatchString(r.Name)
		if !inRow && !inRef {
			continue
		}
		sd := s.Sides.of(r.Name)
		if sd == sideNone || (inRef && !inRow && sd != sideOutpost) {
			continue
		}
		raw, ok := r.Metric(s.Metric.Unit)
		if !ok {
			missing++
			continue
		}
		v, ok := s.Metric.show(raw)
		if !ok {
			missing++
			continue
		}
		switch {
		case inRef && !inRow:
			ref = append(ref, v)
		case sd == sideOutpost:
			outpost = append(outpost, v)
		default:
			peer = append(peer, v)
		}
	}
	o.Outpost, o.Peer, o.Ref = stat(outpost), stat(peer), stat(ref)
	if missing > 0 {
		o.Notes = append(o.Notes, fmt.Sprintf("%d selected results have no %s", missing, s.Metric.Unit))
	}
	if o.Outpost == nil {
		o.Status = StatusNoResults
		o.Reason = fmt.Sprintf("no Outpost result with %s", s.Metric.Unit)
		return o
	}
	o.Status = StatusOK
	if o.Peer != nil && o.Peer.Median != 0 {
		o.Ratio = ptr(o.Outpost.Median / o.Peer.Median)
	}
	if o.Ref != nil && o.Ref.Median != 0 {
		o.RefRatio = ptr(o.Outpost.Median / o.Ref.Median)
	}
	var x *float64
	switch s.Target.Kind {
	case NoTarget:
		o.Met = MetNoTarget
		return o
	case PeerRatio:
		x = o.Ratio
		if x == nil {
			o.Notes = append(o.Notes, "no "+peerName(s.Sides)+" result to compare with")
		}
	case Absolute:
		x = &o.Outpost.Median
	case RefRatio:
		x = o.RefRatio
		if x == nil {
			o.Notes = append(o.Notes, "no result for "+s.Target.RefLabel+" to compare with")
		}
	}
	if x != nil {
		o.Met = MetNo
		if s.Target.met(s.Metric, *x) {
			o.Met = MetYes
		}
	}
	return o
}

// peerName is the peer's name in a row's target: nginx, unless the
// scenario's sides name another.
func peerName(s Sides) string {
	if s.Peer == "" {
		return "nginx"
	}
	return s.Peer
}

func ptr(f float64) *float64 { return &f }

// stat returns the median of values, nil when there are none.
func stat(values []float64) *Stat {
	if len(values) == 0 {
		return nil
	}
	return &Stat{Median: Median(values), Values: values}
}

// Median returns the median of values (the mean of the middle two for an
// even count), NaN for none. values is not modified.
func Median(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	s := slices.Clone(values)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// formatValue formats a measurement for the report: thousands
// separators from 1,000, then fewer decimals the larger the value.
func formatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	// The thresholds are where rounding reaches the next case.
	case a >= 999.5:
		return groupThousands(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case a >= 99.95:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 9.995:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.9995 || a == 0:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// groupThousands puts commas into a string of digits with an optional
// sign.
func groupThousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return sign + b.String()
}

// formatBound formats a target's bound: as written, with thousands
// separators.
func formatBound(x float64) string {
	if math.Abs(x) >= 1000 && x == math.Trunc(x) {
		return groupThousands(strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strconv.FormatFloat(x, 'f', -1, 64)
}

// formatFactor formats a target's factor: at least one decimal (1.0,
// 1.5, 0.95).
func formatFactor(x float64) string {
	s := strconv.FormatFloat(x, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// formatRatio formats a measured ratio: 0.92×.
func formatRatio(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) + "×" }
