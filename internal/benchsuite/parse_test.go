package benchsuite

import (
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-cdn/outpost/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Result
		ok   bool
	}{
		{"BenchmarkCacheHit/1k/outpost/round0-2         \t   36612\t     30195 ns/op\t       339.0 p50-µs\t      2687 p99-µs",
			Result{Name: "BenchmarkCacheHit/1k/outpost/round0", Procs: 2, N: 36612, Values: []Value{{30195, "ns/op"}, {339, "p50-µs"}, {2687, "p99-µs"}}}, true},
		{"BenchmarkProxy/nginx-2   65808   34518 ns/op   29.67 MB/s",
			Result{Name: "BenchmarkProxy/nginx", Procs: 2, N: 65808, Values: []Value{{34518, "ns/op"}, {29.67, "MB/s"}}}, true},
		// GOMAXPROCS 1: go test prints no suffix.
		{"BenchmarkPurgePropagation \t 200\t 4008281 ns/op\t 3.790 p50-ms\t 8.286 p99-ms",
			Result{Name: "BenchmarkPurgePropagation", Procs: 1, N: 200, Values: []Value{{4008281, "ns/op"}, {3.79, "p50-ms"}, {8.286, "p99-ms"}}}, true},
		{"BenchmarkDNS/udp-ecs-16  100  15187 ns/op  65863 queries/s  1.5e+04 x/s",
			Result{Name: "BenchmarkDNS/udp-ecs", Procs: 16, N: 100, Values: []Value{{15187, "ns/op"}, {65863, "queries/s"}, {15000, "x/s"}}}, true},
		// A dash inside the last element that is not a GOMAXPROCS suffix.
		{"BenchmarkTLS/10000-certs/outpost-2 10 5 ns/op",
			Result{Name: "BenchmarkTLS/10000-certs/outpost", Procs: 2, N: 10, Values: []Value{{5, "ns/op"}}}, true},
		{"BenchmarkX-abc 10 5 ns/op", Result{Name: "BenchmarkX-abc", Procs: 1, N: 10, Values: []Value{{5, "ns/op"}}}, true},
		{"BenchmarkCacheHit", Result{}, false},
		{"BenchmarkX-2 10 5", Result{}, false},                // a value without its unit
		{"BenchmarkX-2 ten 5 ns/op", Result{}, false},         // N is not a number
		{"BenchmarkX-2 10 fast ns/op", Result{}, false},       // the value is not a number
		{"--- FAIL: BenchmarkCacheHit/1k", Result{}, false},   // not a benchmark line
		{"ok  \tgithub.com/x/node\t14.516s", Result{}, false}, // the package summary
		{"", Result{}, false},
	} {
		got, ok := ParseLine(tc.line)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseLine(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseOutput(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/outpost-cdn/outpost/node
cpu: Intel(R) Xeon(R) Processor
BenchmarkProxy/outpost-2         	  113532	     21022 ns/op	  48.71 MB/s
BenchmarkProxy/nginx-2           	2026/11/24 01:00:00 a log line the benchmark printed
   65808	     34518 ns/op	  29.67 MB/s
--- FAIL: BenchmarkCacheHit/1k/outpost/round0
    cachebench_test.go:250: Get "https://127.0.0.1:1/1k.bin": EOF
BenchmarkCacheHit/1k/nginx/round0-2 	   45606	     24680 ns/op	       228.0 p50-µs	      3541 p99-µs
PASS
ok  	github.com/outpost-cdn/outpost/node	6.414s
`
	got, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if got.CPU != "Intel(R) Xeon(R) Processor" {
		t.Errorf("CPU = %q", got.CPU)
	}
	var names []string
	for _, r := range got.Results {
		names = append(names, r.Name)
	}
	want := []string{"BenchmarkProxy/outpost", "BenchmarkProxy/nginx", "BenchmarkCacheHit/1k/nginx/round0"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("names = %q, want %q", names, want)
	}
	if v, ok := got.Results[1].Metric("ns/op"); !ok || v != 34518 {
		t.Errorf("the joined line's ns/op = %v, %v", v, ok)
	}
	if _, ok := got.Results[1].Metric("p99-µs"); ok {
		t.Error("Metric found a unit the line does not have")
	}
	if got.Lines[1] != "BenchmarkProxy/nginx-2 65808 34518 ns/op 29.67 MB/s" {
		t.Errorf("joined raw line = %q", got.Lines[1])
	}
	if len(got.Lines) != len(got.Results) {
		t.Errorf("%d lines for %d results", len(got.Lines), len(got.Results))
	}
}

// FuzzParseLine checks that ParseLine never panics and that what it
// accepts has the shape of a benchmark line.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"BenchmarkCacheHit/1k/outpost/round0-2 36612 30195 ns/op 339.0 p50-µs 2687 p99-µs",
		"BenchmarkX 1 2 ns/op", "BenchmarkX-", "Benchmark-2 1 1 a", "BenchmarkX 1 NaN ns/op",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := ParseLine(line)
		if !ok {
			return
		}
		if !strings.HasPrefix(r.Name, "Benchmark") || r.N < 0 || r.Procs < 1 || len(r.Values) == 0 {
			t.Fatalf("ParseLine(%q) = %+v", line, r)
		}
	})
}
