package node_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// wrkScript makes wrk connect to WRK_ADDR_HOST:WRK_ADDR_PORT whatever the
// URL's host (which stays the TLS SNI and the Host header), and print its
// results as one JSON line. It defines no response function, so wrk does
// not hand responses to Lua (that would cost the client CPU per request).
const wrkScript = `
function wrk.resolve(host, service)
  wrk.addrs = wrk.lookup(os.getenv("WRK_ADDR_HOST"), os.getenv("WRK_ADDR_PORT"))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0)))
end
`

// wrkResult is what one wrk run measured.
type wrkResult struct {
	Requests   int64 `json:"requests"`
	DurationUS int64 `json:"duration_us"`
	Bytes      int64 `json:"bytes"`
	Connect    int64 `json:"connect"`
	Read       int64 `json:"read"`
	Write      int64 `json:"write"`
	Status     int64 `json:"status"`
	Timeout    int64 `json:"timeout"`
	P50US      int64 `json:"p50_us"`
	P99US      int64 `json:"p99_us"`
}

func (r wrkResult) errors() int64 { return r.Connect + r.Read + r.Write + r.Status + r.Timeout }

// wrkRun is one run of wrk: threads threads and conns keep-alive
// connections, sending GETs of url for d, connected to addr.
type wrkRun struct {
	url     string // its host is the SNI and the Host header
	addr    string // host:port to connect to
	threads int
	conns   int
	d       time.Duration
}

// wrkPath finds wrk (Debian's package wrk, which make deps installs), or
// fails b.
func wrkPath(b *testing.B) string {
	b.Helper()
	p, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk not found: run make deps (apt-get install wrk), or set OUTPOST_BENCH_HIT_CLIENT=go for the Go client")
	}
	return p
}

// run runs wrk and returns its results. Any failed request fails b.
func (w wrkRun) run(b *testing.B, wrk string) wrkResult {
	b.Helper()
	host, port, err := net.SplitHostPort(w.addr)
	if err != nil {
		b.Fatal(err)
	}
	script := filepath.Join(b.TempDir(), "bench.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o600); err != nil {
		b.Fatal(err)
	}
	secs := max(1, int(math.Ceil(w.d.Seconds())))
	cmd := exec.Command(wrk, "-t", fmt.Sprint(w.threads), "-c", fmt.Sprint(w.conns), "-d", fmt.Sprintf("%ds", secs),
		"--timeout", "10s", "-s", script, w.url)
	cmd.Env = append(os.Environ(), "WRK_ADDR_HOST="+host, "WRK_ADDR_PORT="+port)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("wrk: %v\n%s%s", err, out, stderr.String())
	}
	var r wrkResult
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				b.Fatalf("wrk result %q: %v", line, err)
			}
		}
	}
	if r.Requests == 0 || r.DurationUS == 0 {
		b.Fatalf("wrk measured nothing:\n%s%s", out, stderr.String())
	}
	if r.errors() > 0 {
		b.Fatalf("wrk: %d of %d requests failed (connect %d, read %d, write %d, status ≥ 400 %d, timeout %d)\n%s",
			r.errors(), r.Requests, r.Connect, r.Read, r.Write, r.Status, r.Timeout, out)
	}
	return r
}

// benchDuration is the -benchtime of the run as a duration (3 s when it
// is a count such as 100x, or unset).
func benchDuration() time.Duration {
	if f := flag.Lookup("test.benchtime"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			return d
		}
	}
	return 3 * time.Second
}
