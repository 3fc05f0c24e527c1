package benchsuite

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Result is one standard benchmark line of go test's output:
//
//	BenchmarkCacheHit/1k/outpost/round0-2   36612   30195 ns/op   339.0 p50-µs   2687 p99-µs
type Result struct {
	// Name is the benchmark's full name without its -GOMAXPROCS suffix,
	// such as "BenchmarkCacheHit/1k/outpost/round0".
	Name string `json:"name"`
	// Procs is the GOMAXPROCS suffix; 1 when the name has none (go test
	// omits it for GOMAXPROCS 1).
	Procs int `json:"procs"`
	// N is the number of iterations.
	N int64 `json:"n"`
	// Values are the measurements in the order printed.
	Values []Value `json:"values"`
}

// Value is one measurement of a Result: ns/op, MB/s, B/op, allocs/op, or a
// custom metric from testing.B.ReportMetric such as p99-µs.
type Value struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Metric returns r's value in unit, and whether r has one.
func (r Result) Metric(unit string) (float64, bool) {
	for _, v := range r.Values {
		if v.Unit == unit {
			return v.Value, true
		}
	}
	return 0, false
}

// Output is what Parse found in go test's output.
type Output struct {
	// CPU is the "cpu:" header line's value, "" when there was none.
	CPU string
	// Results are the benchmark lines, in order.
	Results []Result
	// Lines are the raw benchmark lines, in benchstat's input format.
	Lines []string
}

// Parse reads go test -bench output and returns its benchmark lines.
// Other lines (headers, PASS, logs) are skipped. A benchmark line that
// something else printed into (a benchmark or a process it started
// writing to stdout between the name and the numbers) is joined back up
// when the numbers follow on a line of their own. Parse fails only when r
// does.
func Parse(r io.Reader) (Output, error) {
	var out Output
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	pending := "" // a benchmark name whose numbers have not come yet
	for sc.Scan() {
		line := sc.Text()
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok {
			out.CPU = strings.TrimSpace(cpu)
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if strings.HasPrefix(fields[0], "Benchmark") {
			if res, ok := parseFields(fields[0], fields[1:]); ok {
				out.add(res, fields)
				pending = ""
			} else {
				pending = fields[0]
			}
			continue
		}
		if pending != "" {
			if res, ok := parseFields(pending, fields); ok {
				out.add(res, append([]string{pending}, fields...))
				pending = ""
			}
		}
	}
	return out, sc.Err()
}

func (o *Output) add(r Result, fields []string) {
	o.Results = append(o.Results, r)
	o.Lines = append(o.Lines, strings.Join(fields, " "))
}

// ParseLine parses one benchmark line; ok is false when line is not one.
func ParseLine(line string) (r Result, ok bool) {
	fields := strings.Fields(line)
	if len(fields) == 0 || !strings.HasPrefix(fields[0], "Benchmark") {
		return Result{}, false
	}
	return parseFields(fields[0], fields[1:])
}

// parseFields parses a benchmark's name and the fields after it: the
// iteration count, then value-unit pairs.
func parseFields(name string, rest []string) (Result, bool) {
	if len(rest) < 3 || len(rest)%2 != 1 {
		return Result{}, false
	}
	n, err := strconv.ParseInt(rest[0], 10, 64)
	if err != nil || n < 0 {
		return Result{}, false
	}
	r := Result{N: n, Procs: 1, Name: name}
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if p, err := strconv.Atoi(name[i+1:]); err == nil && p > 0 {
			r.Name, r.Procs = name[:i], p
		}
	}
	for i := 1; i < len(rest); i += 2 {
		v, err := strconv.ParseFloat(rest[i], 64)
		if err != nil {
			return Result{}, false
		}
		r.Values = append(r.Values, Value{Value: v, Unit: rest[i+1]})
	}
	return r, true
}
