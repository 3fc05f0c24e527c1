package benchsuite

import (
	"math"
	"strings"
	"testing"
	"time"
)

// res builds a Result from a name and value-unit pairs.
func res(name string, pairs ...any) Result {
	r := Result{Name: name, Procs: 2, N: 100}
	for i := 0; i < len(pairs); i += 2 {
		r.Values = append(r.Values, Value{Value: toFloat(pairs[i]), Unit: pairs[i+1].(string)})
	}
	return r
}

func toFloat(v any) float64 {
	switch v := v.(type) {
	case int:
		return float64(v)
	case float64:
		return v
	}
	panic("not a number")
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{2, 2, 9, 1, 2}, 2},
	} {
		in := append([]float64(nil), tc.in...)
		if got := Median(in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("Median reordered its input: %v", in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

var testBench = Bench{Pkg: "./node", Regex: "^BenchmarkX$", Benchtime: "1s", Quick: "1x", Estimate: time.Second}

// cacheHitResults are two A B A B rounds of a cache-hit-like benchmark.
var cacheHitResults = []Result{
	res("BenchmarkCacheHit/1k/outpost/round0", 25000, "ns/op", 2500, "p99-µs"),
	res("BenchmarkCacheHit/1k/nginx/round0", 20000, "ns/op", 3000, "p99-µs"),
	res("BenchmarkCacheHit/1k/outpost/round1", 20000, "ns/op", 3500, "p99-µs"),
	res("BenchmarkCacheHit/1k/nginx/round1", 30000, "ns/op", 4000, "p99-µs"),
	res("BenchmarkCacheHit/100k/outpost/round0", 50000, "ns/op", 9000, "p99-µs"),
	res("BenchmarkCacheHit/100k/nginx/round0", 100000, "ns/op", 9000, "p99-µs"),
}

func TestEvaluate(t *testing.T) {
	tls := []Result{
		res("BenchmarkTLS/ecdsa/1cert/outpost", 100000, "ns/op"), // 10,000/s
		res("BenchmarkTLS/ecdsa/1cert/nginx", 125000, "ns/op"),
		res("BenchmarkTLS/ecdsa/10000certs/outpost", 104000, "ns/op"), // 9,615/s: 0.96×
		res("BenchmarkTLS/ecdsa/10000certs/nginx", 125000, "ns/op"),
		res("BenchmarkTLS/rsa/1cert/outpost", 100000, "ns/op"),
		res("BenchmarkTLS/rsa/10000certs/outpost", 110000, "ns/op"), // 0.91×
	}
	for _, tc := range []struct {
		name      string
		s         Scenario
		results   []Result
		status    Status
		outpost   float64 // median, shown unit
		peer      float64 // 0: none
		ratio     float64 // 0: none
		refRatio  float64 // 0: none
		met       Met
		target    string
		noteMatch string
	}{
		{
			name: "throughput from ns/op, against the peer",
			s:    Scenario{Select: "^BenchmarkCacheHit/1k/", Sides: vsNginx, Metric: reqPerSec, Target: AtLeastPeer(1.0)},
			// Outpost 25000 and 20000 ns/op: 40,000 and 50,000 req/s, median 45,000;
			// nginx 50,000 and 33,333 req/s, median 41,667.
			results: cacheHitResults, status: StatusOK, outpost: 45000, peer: 125000.0 / 3, ratio: 45000 / (125000.0 / 3),
			met: MetYes, target: "throughput ≥ 1.0× nginx",
		},
		{
			name:    "p99 in µs shown in ms, at most 1.5× the peer's",
			s:       Scenario{Select: "^BenchmarkCacheHit/1k/", Sides: vsNginx, Metric: p99us, Target: AtMostPeer(1.5)},
			results: cacheHitResults, status: StatusOK, outpost: 3, peer: 3.5, ratio: 3 / 3.5, met: MetYes, target: "p99 ≤ 1.5× nginx",
		},
		{
			name:    "a ratio that misses the target",
			s:       Scenario{Select: "^BenchmarkCacheHit/100k/", Sides: vsNginx, Metric: p99us, Target: AtMostPeer(0.9)},
			results: cacheHitResults, status: StatusOK, outpost: 9, peer: 9, ratio: 1, met: MetNo, target: "p99 ≤ 0.9× nginx",
		},
		{
			name:    "an absolute limit without a peer",
			s:       Scenario{Metric: p99ms, Target: AtMost(100)},
			results: []Result{res("BenchmarkPurge", 3, "p50-ms", 120, "p99-ms"), res("BenchmarkPurge", 3, "p50-ms", 80, "p99-ms"), res("BenchmarkPurge", 3, "p50-ms", 90, "p99-ms")},
			status:  StatusOK, outpost: 90, met: MetYes, target: "p99 ≤ 100 ms",
		},
		{
			name:    "a rate per core below its floor",
			s:       Scenario{Metric: queriesPerCore, Target: AtLeast(20000)},
			results: []Result{res("BenchmarkDNS/udp-ecs", 15187, "ns/op", 19999, "queries/s/core")},
			status:  StatusOK, outpost: 19999, met: MetNo, target: "rate per core ≥ 20,000 queries/s",
		},
		{
			name:    "within 5% of a reference: 0.96× is met",
			s:       Scenario{Select: "^BenchmarkTLS/ecdsa/10000certs/", Sides: vsNginx, Metric: handshakesPerOp, Target: Within(0.05, "^BenchmarkTLS/ecdsa/1cert/", "1 cert")},
			results: tls, status: StatusOK, outpost: 1e9 / 104000, peer: 8000, ratio: 1e9 / 104000 / 8000, refRatio: 100000.0 / 104000,
			met: MetYes, target: "rate within 5% of 1 cert",
		},
		{
			name:    "within 5% of a reference: 0.91× is not",
			s:       Scenario{Select: "^BenchmarkTLS/rsa/10000certs/", Sides: vsNginx, Metric: handshakesPerOp, Target: Within(0.05, "^BenchmarkTLS/rsa/1cert/", "1 cert")},
			results: tls, status: StatusOK, outpost: 1e9 / 110000, refRatio: 100000.0 / 110000, met: MetNo, target: "rate within 5% of 1 cert",
			noteMatch: "",
		},
		{
			name:    "no target",
			s:       Scenario{Metric: bytesPerObject},
			results: []Result{res("BenchmarkMemoryPerObject", 1853, "bytes/object")},
			status:  StatusOK, outpost: 1853, met: MetNoTarget, target: "—",
		},
		{
			name:    "the peer's result is missing",
			s:       Scenario{Sides: vsNginx, Metric: reqPerSec, Target: AtLeastPeer(1.0)},
			results: []Result{res("BenchmarkProxy/outpost", 20000, "ns/op")},
			status:  StatusOK, outpost: 50000, met: MetUnknown, target: "throughput ≥ 1.0× nginx", noteMatch: "no nginx result",
		},
		{
			name:    "the metric is missing",
			s:       Scenario{Metric: p99ms, Target: AtMost(100)},
			results: []Result{res("BenchmarkPurge", 3, "p50-ms")},
			status:  StatusNoResults, met: MetUnknown, target: "p99 ≤ 100 ms", noteMatch: "1 selected results have no p99-ms",
		},
		{
			name:    "nothing selected",
			s:       Scenario{Select: "^BenchmarkCollapse/", Sides: vsNginx, Metric: p99ms},
			results: cacheHitResults, status: StatusNoResults, met: MetUnknown, target: "—",
		},
		{
			name:    "results of neither side are left out",
			s:       Scenario{Sides: vsNginx, Metric: reqPerSec},
			results: []Result{res("BenchmarkX/outpost", 1e6, "ns/op"), res("BenchmarkX/envoy", 1, "ns/op")},
			status:  StatusOK, outpost: 1000, met: MetNoTarget, target: "—",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.Name, tc.s.Bench = "row", testBench
			if err := Validate([]Scenario{tc.s}); err != nil {
				t.Fatal(err)
			}
			o := Evaluate(tc.s, tc.results)
			if o.Status != tc.status || o.Met != tc.met || o.Target != tc.target {
				t.Fatalf("status %q, met %q, target %q; want %q, %q, %q (notes %q)", o.Status, o.Met, o.Target, tc.status, tc.met, tc.target, o.Notes)
			}
			checkStat(t, "Outpost", o.Outpost, tc.outpost)
			checkStat(t, "peer", o.Peer, tc.peer)
			checkRatio(t, "ratio", o.Ratio, tc.ratio)
			checkRatio(t, "reference ratio", o.RefRatio, tc.refRatio)
			if tc.noteMatch != "" && !strings.Contains(strings.Join(o.Notes, "; "), tc.noteMatch) {
				t.Errorf("notes %q lack %q", o.Notes, tc.noteMatch)
			}
		})
	}
}

func checkStat(t *testing.T, what string, s *Stat, want float64) {
	t.Helper()
	switch {
	case want == 0 && s != nil:
		t.Errorf("%s = %v, want none", what, s.Median)
	case want != 0 && s == nil:
		t.Errorf("%s: none, want %v", what, want)
	case s != nil && !near(s.Median, want):
		t.Errorf("%s median = %v, want %v (values %v)", what, s.Median, want, s.Values)
	}
}

func checkRatio(t *testing.T, what string, r *float64, want float64) {
	t.Helper()
	switch {
	case want == 0 && r != nil:
		t.Errorf("%s = %v, want none", what, *r)
	case want != 0 && (r == nil || !near(*r, want)):
		t.Errorf("%s = %v, want %v", what, r, want)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }

func TestValidate(t *testing.T) {
	if err := Validate(Scenarios); err != nil {
		t.Fatalf("the suite's table: %v", err)
	}
	ok := Scenario{Name: "a", Bench: testBench, Metric: p99ms}
	for _, tc := range []struct {
		name   string
		change func(s *Scenario)
		want   string
	}{
		{"no name", func(s *Scenario) { s.Name = "" }, "duplicate name"},
		{"no package", func(s *Scenario) { s.Bench.Pkg = "" }, "needs a package"},
		{"no quick benchtime", func(s *Scenario) { s.Bench.Quick = "" }, "quick -benchtime"},
		{"bad select", func(s *Scenario) { s.Select = "(" }, "missing closing )"},
		{"no unit", func(s *Scenario) { s.Metric.Unit = "" }, "needs a unit"},
		{"peer target without a peer", func(s *Scenario) { s.Target = AtMostPeer(1) }, "needs Sides.Peer"},
		{"direction against the metric", func(s *Scenario) { s.Target = AtLeast(100) }, "disagrees"},
		{"reference without a label", func(s *Scenario) { s.Target = Within(0.05, "x", "") }, "needs Ref and RefLabel"},
	} {
		s := ok
		tc.change(&s)
		if err := Validate([]Scenario{s}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := Validate([]Scenario{ok, ok}); err == nil {
		t.Error("a duplicate name passed")
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{45000, "45,000"}, {1234567.4, "1,234,567"}, {999.6, "1,000"}, {1853, "1,853"}, {120.4, "120"},
		{41.666, "41.7"}, {3.5, "3.50"}, {0, "0.00"}, {0.1772, "0.177"}, {0.000123, "0.000123"}, {-2500, "-2,500"},
		{math.NaN(), "—"},
	} {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
	if got := formatFactor(1); got != "1.0" {
		t.Errorf("formatFactor(1) = %q", got)
	}
	if got := formatFactor(0.95); got != "0.95" {
		t.Errorf("formatFactor(0.95) = %q", got)
	}
	if got := formatBound(20000); got != "20,000" {
		t.Errorf("formatBound(20000) = %q", got)
	}
	if got := formatBound(2); got != "2" {
		t.Errorf("formatBound(2) = %q", got)
	}
}

func TestBenchCommand(t *testing.T) {
	b := Bench{Pkg: "./node", Regex: "^BenchmarkCacheHit$", Benchtime: "3s", Count: 2, Repeat: 3, Quick: "100ms", Estimate: time.Second}
	if got, want := b.Command(false), `go test -run '^$' -bench '^BenchmarkCacheHit$' -benchtime 3s -count 2 ./node`; got != want {
		t.Errorf("Command = %s, want %s", got, want)
	}
	if got, want := b.Command(true), `go test -run '^$' -bench '^BenchmarkCacheHit$' -benchtime 100ms -count 1 ./node`; got != want {
		t.Errorf("quick Command = %s, want %s", got, want)
	}
	if b.Runs(false) != 3 || b.Runs(true) != 1 || (Bench{}).Runs(false) != 1 {
		t.Error("Runs")
	}
	if got := shellQuote("it's"); got != `'it'\''s'` {
		t.Errorf("shellQuote = %s", got)
	}
}
