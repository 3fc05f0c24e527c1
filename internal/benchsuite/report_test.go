package benchsuite

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Run `go test ./internal/benchsuite -run TestMarkdownGolden -update` to
// rewrite testdata/section.golden after an intended change, and review
// the diff: it is what docs/benchmarks.md will show.
var update = flag.Bool("update", false, "update .golden files")

// goldenReport is a fixed run: a fixed clock and machine, and rows in
// every state a row can be in.
func goldenReport() *Report {
	cacheHit := Bench{Pkg: "./node", Regex: "^BenchmarkCacheHit$", Benchtime: "3s", Count: 1, Repeat: 2, Quick: "100ms", Estimate: time.Minute}
	tls := Bench{Pkg: "./node", Regex: "^BenchmarkTLS$", Benchtime: "2s", Quick: "100x", Estimate: time.Minute}
	purge := Bench{Pkg: "./node", Regex: "^BenchmarkPurgePropagation$", Benchtime: "300x", Count: 3, Quick: "20x", Estimate: time.Minute}
	collapse := Bench{Pkg: "./node", Regex: "^BenchmarkCollapse$", Benchtime: "10x", Quick: "1x", Estimate: time.Minute}
	dns := Bench{Pkg: "./scheduler", Regex: "^BenchmarkDNS$", Benchtime: "3s", Count: 3, Quick: "100x", Estimate: time.Minute}
	mem := Bench{Pkg: "./node/cache", Regex: "^BenchmarkMemoryPerObject$", Benchtime: "3x", Quick: "1x", Estimate: time.Minute}
	deploy := Bench{Pkg: "./node", Regex: "^BenchmarkDeployToNodes$", Benchtime: "20x", Quick: "2x", Estimate: time.Minute}
	scenarios := []Scenario{
		{Name: "Cache hit, 1 KiB: throughput", Bench: cacheHit, Select: "^BenchmarkCacheHit/1k/", Sides: vsNginx, Metric: reqPerSec, Target: AtLeastPeer(1.0)},
		{Name: "Cache hit, 1 KiB: p99", Bench: cacheHit, Select: "^BenchmarkCacheHit/1k/", Sides: vsNginx, Metric: p99us, Target: AtMostPeer(1.5)},
		{Name: "Cache hit, 100 KiB: throughput", Bench: cacheHit, Select: "^BenchmarkCacheHit/100k/", Sides: vsNginx, Metric: reqPerSec, Target: AtLeastPeer(1.0)},
		{Name: "TLS, 10,000 certs: rate", Bench: tls, Select: "^BenchmarkTLS/ecdsa/10000certs/", Sides: vsNginx, Metric: handshakesPerOp, Target: Within(0.05, "^BenchmarkTLS/ecdsa/1cert/", "1 cert")},
		{Name: "Collapsed misses: p99", Bench: collapse, Sides: vsNginx, Metric: p99ms},
		{Name: "Memory per cached 1 KiB object", Bench: mem, Metric: bytesPerObject},
		{Name: "Purge to 3 nodes: p99", Bench: purge, Metric: p99ms, Target: AtMost(100)},
		{Name: "Certificate deploy: p99", Bench: deploy, Metric: p99ms, Target: AtMost(1000)},
		{Name: "DNS: rate per core", Bench: dns, Metric: queriesPerCore, Target: AtLeast(20000)},
	}
	results := map[Bench][]Result{
		cacheHit: append(cacheHitResults[:4:4],
			res("BenchmarkCacheHit/1k/outpost/round0", 26000, "ns/op", 2600, "p99-µs"),
			res("BenchmarkCacheHit/1k/nginx/round0", 24000, "ns/op", 3100, "p99-µs"),
			res("BenchmarkCacheHit/100k/outpost/round0", 70000, "ns/op", 5000, "p99-µs"),
			res("BenchmarkCacheHit/100k/nginx/round0", 100000, "ns/op", 8000, "p99-µs")),
		tls: {
			res("BenchmarkTLS/ecdsa/1cert/outpost", 100000, "ns/op"),
			res("BenchmarkTLS/ecdsa/1cert/nginx", 125000, "ns/op"),
			res("BenchmarkTLS/ecdsa/10000certs/outpost", 102000, "ns/op"),
			res("BenchmarkTLS/ecdsa/10000certs/nginx", 126000, "ns/op"),
		},
		mem:   {res("BenchmarkMemoryPerObject", 1853, "bytes/object")},
		purge: {res("BenchmarkPurgePropagation", 7.4, "p99-ms"), res("BenchmarkPurgePropagation", 8.3, "p99-ms"), res("BenchmarkPurgePropagation", 131, "p99-ms")},
	}
	start := time.Date(2026, 11, 24, 1, 30, 0, 0, time.UTC)
	rep := &Report{
		Started: start, Seconds: 1122.4, Command: "make bench", Stopped: "time limit",
		Machine:  Machine{Cores: 2, GOMAXPROCS: 2, CPU: "Test CPU", MemoryGiB: 24, LoadBefore: "0.31 0.52 0.80", LoadAfter: "1.95 1.60 1.10", Go: "go1.26.8 linux/amd64", Nginx: "1.22.1"},
		JSONLink: "benchmarks.json",
	}
	for _, s := range scenarios {
		o := Evaluate(s, results[s.Bench])
		o.Command = s.Bench.Command(false)
		switch s.Bench {
		case collapse:
			o.Reason = "the command printed no benchmark results: is there a benchmark matching `^BenchmarkCollapse$` in `./node`?"
		case deploy:
			o.Status, o.Reason = StatusFailed, "the command failed: exit status 1: BenchmarkDeployToNodes: cachebench_test.go:400: a node did not reach revision 12"
		case dns:
			o = notRun(o, "time limit")
		case cacheHit:
			o.Notes = append(o.Notes, "a run of its command failed: exit status 1: BenchmarkCacheHit/1k/outpost/round1: EOF")
		}
		rep.Rows = append(rep.Rows, o)
	}
	rep.Commands = []CommandLog{
		{Command: cacheHit.Command(false), Scenarios: []string{scenarios[0].Name, scenarios[1].Name, scenarios[2].Name}, Runs: []RunLog{
			{Started: start, Seconds: 61.2, Load: "0.31 0.52 0.80"},
			{Started: start.Add(5 * time.Minute), Seconds: 58.9, Load: "1.20 0.90 0.85", Error: "exit status 1: BenchmarkCacheHit/1k/outpost/round1: EOF\n--- FAIL: ..."},
		}},
		{Command: tls.Command(false), Scenarios: []string{scenarios[3].Name}, Runs: []RunLog{{Seconds: 100, Load: "0.5 0.5 0.5"}}},
		{Command: collapse.Command(false), Scenarios: []string{scenarios[4].Name}, Runs: []RunLog{{Seconds: 4, Load: "0.5 0.5 0.5"}}},
		{Command: mem.Command(false), Scenarios: []string{scenarios[5].Name}, Runs: []RunLog{{Seconds: 2}}},
		{Command: purge.Command(false), Scenarios: []string{scenarios[6].Name}, Runs: []RunLog{{Seconds: 12, Load: "0.7 0.6 0.5"}}},
		{Command: deploy.Command(false), Scenarios: []string{scenarios[7].Name}, Runs: []RunLog{{Seconds: 30, Load: "0.7 0.6 0.5", Error: "exit status 1: BenchmarkDeployToNodes: cachebench_test.go:400: a node did not reach revision 12\n..."}}},
		{Command: dns.Command(false), Scenarios: []string{scenarios[8].Name}},
	}
	return rep
}

func TestMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	if err := goldenReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	path := filepath.Join("testdata", "section.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("the section differs from %s (run with -update after an intended change):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	rep := goldenReport()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != len(rep.Rows) || back.Rows[0].Outpost.Median != rep.Rows[0].Outpost.Median || back.Machine != rep.Machine || !back.Started.Equal(rep.Started) {
		t.Errorf("the JSON copy does not round-trip:\n%s", b.String())
	}
	if !strings.Contains(b.String(), `"met": "yes"`) || !strings.Contains(b.String(), `"status": "not run"`) {
		t.Errorf("the JSON copy lacks a row's state:\n%s", b.String())
	}
}

func TestSplice(t *testing.T) {
	section := BeginMarker + "\nNEW\n" + EndMarker + "\n"
	for _, tc := range []struct {
		name, doc, want string
	}{
		{
			name: "markers after the introduction",
			doc:  "# Benchmarks\n\nIntro line one,\nline two.\n\n## First\n\nBody.\n",
			want: "# Benchmarks\n\nIntro line one,\nline two.\n\n" + section + "\n## First\n\nBody.\n",
		},
		{
			name: "replace between the markers, the rest byte for byte",
			doc:  "# B\n\nIntro.\n\n" + BeginMarker + "\nOLD\nOLD\n" + EndMarker + "\n\n## How `make bench` works\n\nText  with  spaces\n",
			want: "# B\n\nIntro.\n\n" + section + "\n## How `make bench` works\n\nText  with  spaces\n",
		},
		{
			name: "markers elsewhere stay where they are",
			doc:  "# B\n\nIntro.\n\n## Other\n\n" + BeginMarker + "\nOLD\n" + EndMarker + "\ntail",
			want: "# B\n\nIntro.\n\n## Other\n\n" + section + "tail",
		},
		{
			name: "no introduction",
			doc:  "# B\n\n## First\n",
			want: "# B\n\n" + section + "\n## First\n",
		},
		{
			name: "only an introduction, no final newline",
			doc:  "# B\n\nIntro.",
			want: "# B\n\nIntro.\n\n" + section,
		},
		{name: "a new file", doc: "", want: section},
		{
			name: "markers quoted inside a line are not markers",
			doc:  "# B\n\nIntro.\n\n## How\n\nBetween `" + BeginMarker + "` and `" + EndMarker + "`.\n",
			want: "# B\n\nIntro.\n\n" + section + "\n## How\n\nBetween `" + BeginMarker + "` and `" + EndMarker + "`.\n",
		},
		{
			name: "no title",
			doc:  "Some text.\n",
			want: section + "\nSome text.\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Splice([]byte(tc.doc), []byte(section))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			again, err := Splice(got, []byte(section))
			if err != nil || string(again) != string(got) {
				t.Fatalf("a second splice changed the document: %v\n%s", err, again)
			}
			if checked, err := Splice(got, nil); err != nil || string(checked) != string(got) {
				t.Fatalf("a check changed the document: %v", err)
			}
		})
	}
	for _, doc := range []string{"# B\n" + BeginMarker + "\n", "# B\n" + EndMarker + "\n", EndMarker + "\n" + BeginMarker + "\n"} {
		if _, err := Splice([]byte(doc), []byte(section)); err == nil {
			t.Errorf("Splice accepted %q", doc)
		}
	}
}
