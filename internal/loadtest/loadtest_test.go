package loadtest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The closed model sends exactly the requests asked for, and counts
// responses, cache results, nodes and edges as the server saw them.
func TestClosedModelCounts(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	res := runTest(t, e.config(300))

	if res.Requests != 300 || res.Responses != 300 || res.Latency.Count != 300 {
		t.Fatalf("requests %d, responses %d, latencies %d; want 300 each", res.Requests, res.Responses, res.Latency.Count)
	}
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %v %v", res.Errors, res.ErrorSamples)
	}
	misses := int64(e.distinctURLs()) // the edge answers MISS once per URL
	if res.Cache["MISS"] != misses || res.Cache["HIT"] != 300-misses {
		t.Errorf("cache %v, want MISS %d and HIT %d", res.Cache, misses, 300-misses)
	}
	if want := float64(300-misses) / 300; res.HitRatio != want {
		t.Errorf("hit ratio %v, want %v", res.HitRatio, want)
	}
	if res.Nodes["edge-a"] != 300 || res.Edges[e.addr].Requests != 300 || res.Status["200"] != 300 {
		t.Errorf("nodes %v, edges %v, status %v", res.Nodes, res.Edges, res.Status)
	}
	if res.Bytes != 300*int64(len(edgeBody)) || res.Sizes["1k"] != 300 {
		t.Errorf("bytes %d, sizes %v", res.Bytes, res.Sizes)
	}
	if res.StopReasons[StopRequests] != 1 || res.Settings.Model != "closed" {
		t.Errorf("stop reasons %v, model %s", res.StopReasons, res.Settings.Model)
	}
	var perSecond int64
	for _, s := range res.Series {
		perSecond += s.Requests
	}
	if perSecond != 300 {
		t.Errorf("per-second series add up to %d requests", perSecond)
	}
}

// The open model issues rate × duration requests, each sent or counted.
func TestOpenModelRate(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	cfg := e.config(0)
	cfg.Rate, cfg.Duration = 200, time.Second
	start := time.Now()
	res := runTest(t, cfg)
	if el := time.Since(start); el > 2500*time.Millisecond {
		t.Errorf("a 1s run took %s", el)
	}
	// Due requests are 0..199 (start + k/200 < start + 1s); each is sent,
	// refused as backlog, or left unsent at the end.
	if got := res.Requests + res.Unsent; got != 200 {
		t.Errorf("requests %d + unsent %d = %d, want 200", res.Requests, res.Unsent, got)
	}
	if res.Responses < 180 {
		t.Errorf("responses %d, want about 200", res.Responses)
	}
	if res.Settings.Model != "open" || res.StopReasons[StopDuration] != 1 {
		t.Errorf("model %s, stop reasons %v", res.Settings.Model, res.StopReasons)
	}
	// Seconds are counted by intended send time: all in the one second.
	if len(res.Series) != 1 || res.Series[0].Offset != 0 || res.Series[0].Requests != res.Requests {
		t.Errorf("series %+v", res.Series)
	}
	// A result merged with itself keeps its seconds, with counts doubled.
	m, err := Merge(res, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Series) != 1 || m.Series[0].Requests != 2*res.Requests || m.Series[0].StartMS != res.Series[0].StartMS {
		t.Errorf("merged series %+v", m.Series)
	}
}

// Latency is measured from the intended send time: a server that takes
// 50 ms per request, behind one worker, at 100 requests/s, makes requests
// wait, and the wait shows in the latency.
func TestOpenModelMeasuresFromIntendedTime(t *testing.T) {
	e := startEdge(t, edgeOpts{delay: 50 * time.Millisecond})
	cfg := e.config(0)
	cfg.Rate, cfg.Duration, cfg.Concurrency = 100, time.Second, 1
	res := runTest(t, cfg)
	if res.Responses < 10 {
		t.Fatalf("only %d responses", res.Responses)
	}
	// Request j is due at 10j ms and answered at about 50(j+1) ms.
	if res.Latency.Min < 50 || res.Latency.P50 < 200 || res.Latency.Max < 500 {
		t.Errorf("latency min %.1f, p50 %.1f, max %.1f ms: want the queueing (p50 > 200, max > 500) on top of the server's 50 ms", res.Latency.Min, res.Latency.P50, res.Latency.Max)
	}
	if res.Unsent == 0 {
		t.Errorf("no request left unsent although the server keeps up with a fifth of the rate")
	}
}

// Requests that find the backlog full are not sent and count as errors.
func TestOpenModelBacklog(t *testing.T) {
	e := startEdge(t, edgeOpts{delay: 100 * time.Millisecond})
	cfg := e.config(0)
	cfg.Rate, cfg.Duration, cfg.Concurrency, cfg.Backlog = 100, 500*time.Millisecond, 1, 2
	res := runTest(t, cfg)
	if res.Errors[KindBacklog] < 20 {
		t.Errorf("backlog errors %d, want most of the 50 due", res.Errors[KindBacklog])
	}
	if res.Requests+res.Unsent != 50 {
		t.Errorf("requests %d + unsent %d, want 50", res.Requests, res.Unsent)
	}
}

// Rank 0 of the Zipf curve is asked most, then rank 1, then far ranks.
func TestZipfFirstURLMostOften(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	cfg := e.config(2000)
	cfg.URLs = 50
	runTest(t, cfg)
	first, second, tenth := e.count("/1k.bin?v=0"), e.count("/1k.bin?v=1"), e.count("/1k.bin?v=10")
	for i := 1; i < 50; i++ {
		if n := e.count(fmt.Sprintf("/1k.bin?v=%d", i)); n >= first {
			t.Errorf("URL %d asked %d times, URL 0 only %d", i, n, first)
		}
	}
	if !(first > second && second > tenth) {
		t.Errorf("counts of ranks 0, 1, 10: %d, %d, %d; want decreasing", first, second, tenth)
	}
}

// Each domain reaches the edge with its own SNI and Host, over HTTP/1.1
// and HTTP/2.
func TestSNIAndHostPerDomain(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			e := startEdge(t, edgeOpts{http2: h2})
			cfg := e.config(120)
			cfg.HTTP2 = h2
			var err error
			if cfg.Domains, err = PatternDomains("d%d.example.test", 3); err != nil {
				t.Fatal(err)
			}
			res := runTest(t, cfg)
			if res.Responses != 120 {
				t.Fatalf("responses %d: %v", res.Responses, res.ErrorSamples)
			}
			_, port, _ := splitHostPort(e.addr)
			hosts := e.hostsSeen()
			for i := 1; i <= 3; i++ {
				d := fmt.Sprintf("d%d.example.test", i)
				if hosts[fmt.Sprintf("%s|%s:%d", d, d, port)] == 0 {
					t.Errorf("no request with SNI and Host %s; saw %v", d, hosts)
				}
			}
			if len(hosts) != 3 {
				t.Errorf("SNI|Host pairs seen: %v", hosts)
			}
			proto := "HTTP/1.1"
			if h2 {
				proto = "HTTP/2.0"
			}
			if res.Protocols[proto] != 120 {
				t.Errorf("protocols %v, want %s", res.Protocols, proto)
			}
		})
	}
}

// TLS sessions: kept-alive connections make one handshake; new
// connections resume when they offer tickets, and never when they do not.
func TestTLSResumption(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	for _, tc := range []struct {
		name                  string
		newConn, resume       float64
		connections, resumedA int64 // resumed at least
		resumedMax            int64
	}{
		{"keep-alive", 0, 1, 1, 0, 0},
		{"new connections with tickets", 1, 1, 20, 18, 19},
		{"new connections without tickets", 1, 0, 20, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config(20)
			cfg.Concurrency, cfg.NewConnRatio, cfg.ResumeRatio = 1, tc.newConn, tc.resume
			res := runTest(t, cfg)
			if res.Responses != 20 {
				t.Fatalf("responses %d: %v", res.Responses, res.ErrorSamples)
			}
			s := res.TLS
			if s.Connections != tc.connections || s.Handshakes != tc.connections {
				t.Errorf("connections %d, handshakes %d; want %d", s.Connections, s.Handshakes, tc.connections)
			}
			if s.Resumed < tc.resumedA || s.Resumed > tc.resumedMax {
				t.Errorf("resumed %d, want %d to %d", s.Resumed, tc.resumedA, tc.resumedMax)
			}
			if tc.resume == 0 && s.TicketsOffered != 0 {
				t.Errorf("%d tickets offered with resume ratio 0", s.TicketsOffered)
			}
			if tc.resumedA > 0 && s.TicketsOffered < s.Resumed {
				t.Errorf("%d resumed but %d tickets offered", s.Resumed, s.TicketsOffered)
			}
		})
	}
	// Two edges in turn (two servers, two ticket keys): each edge gets its
	// own tickets back, so all but the first handshake with each resume.
	t.Run("two edges round robin", func(t *testing.T) {
		other := startEdge(t, edgeOpts{name: "edge-b"})
		cfg := e.config(20)
		cfg.Edges = []string{e.addr, other.addr}
		cfg.RootCAs.AddCert(otherCert(other))
		cfg.Concurrency, cfg.NewConnRatio, cfg.ResumeRatio = 1, 1, 1
		res := runTest(t, cfg)
		if res.Responses != 20 || res.Nodes["edge-a"] != 10 || res.Nodes["edge-b"] != 10 {
			t.Fatalf("responses %d, nodes %v: %v", res.Responses, res.Nodes, res.ErrorSamples)
		}
		if res.TLS.Resumed != 18 {
			t.Errorf("resumed %d of %d handshakes, want 18", res.TLS.Resumed, res.TLS.Handshakes)
		}
	})
}

// otherCert is the certificate a test edge serves.
func otherCert(e *testEdge) *x509.Certificate {
	c, err := x509.ParseCertificate(e.srv.TLS.Certificates[0].Certificate[0])
	if err != nil {
		panic(err)
	}
	return c
}

// Errors are counted by kind.
func TestErrorKinds(t *testing.T) {
	unavailable := startEdge(t, edgeOpts{status: 503})
	notFound := startEdge(t, edgeOpts{status: 404})
	slow := startEdge(t, edgeOpts{delay: time.Second})
	stalled := startEdge(t, edgeOpts{stall: time.Second})
	ok := startEdge(t, edgeOpts{})
	dead := deadAddr(t)
	for _, tc := range []struct {
		name string
		cfg  func() Config
		kind string
	}{
		{"503", func() Config { return unavailable.config(10) }, Kind5xx},
		{"404", func() Config { return notFound.config(10) }, Kind4xx},
		{"dead address", func() Config {
			c := ok.config(10)
			c.Edges = []string{dead}
			return c
		}, KindDial},
		{"untrusted certificate", func() Config {
			c := ok.config(10)
			c.RootCAs = nil
			return c
		}, KindTLS},
		{"timeout", func() Config {
			c := slow.config(4)
			c.Timeout = 100 * time.Millisecond
			return c
		}, KindTimeout},
		{"timeout in the body", func() Config {
			c := stalled.config(4)
			c.Timeout = 100 * time.Millisecond
			return c
		}, KindTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg()
			res := runTest(t, cfg)
			if res.Errors[tc.kind] != cfg.Requests || len(res.Errors) != 1 {
				t.Errorf("errors %v, want %d of kind %s", res.Errors, cfg.Requests, tc.kind)
			}
			if res.ErrorSamples[tc.kind] == "" {
				t.Errorf("no sample message for %s", tc.kind)
			}
			statusKind := tc.kind == Kind4xx || tc.kind == Kind5xx
			if statusKind != (res.Responses == cfg.Requests) {
				t.Errorf("responses %d", res.Responses)
			}
		})
	}
}

// Over DNS, each domain's CNAME is asked once (the answer's TTL covers the
// run), with the client subnet, and requests go to the answered address.
func TestResolveDNS(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	d := startDNS(t, "cdn.test", netip.MustParseAddr("127.0.0.1"), dns.RcodeSuccess)
	_, port, _ := splitHostPort(e.addr)
	cfg := e.config(60)
	cfg.Edges = nil
	cfg.Resolve, cfg.DNSServer, cfg.CNAMESuffix, cfg.Port = ResolveDNS, d.addr, "cdn.test", port
	cfg.ClientSubnet = netip.MustParsePrefix("198.51.100.7/24")
	cfg.Domains = []Domain{{Name: "d1.example.test"}, {Name: "d2.example.test", CNAME: "custom.cdn.test"}}
	res := runTest(t, cfg)
	if res.Responses != 60 {
		t.Fatalf("responses %d: %v", res.Responses, res.ErrorSamples)
	}
	queries, subnets := d.seen()
	want := map[string]int{"d1.example.test.cdn.test.": 1, "custom.cdn.test.": 1}
	if fmt.Sprint(queries) != fmt.Sprint(want) {
		t.Errorf("DNS questions %v, want %v", queries, want)
	}
	for _, s := range subnets {
		if s != "198.51.100.0/24" {
			t.Errorf("client subnet %s, want 198.51.100.0/24", s)
		}
	}
	if len(subnets) != 2 {
		t.Errorf("client subnets %v", subnets)
	}
	if res.Edges[e.addr].Requests != 60 || res.Resolutions.Lookups != 2 {
		t.Errorf("edges %v, resolutions %+v", res.Edges, res.Resolutions)
	}
}

// A failed resolution is an error of kind "resolve"; an answer outside
// loopback is never connected to.
func TestResolveDNSFailures(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	for _, tc := range []struct {
		name   string
		answer string
		rcode  int
		kind   string
	}{
		{"NXDOMAIN", "127.0.0.1", dns.RcodeNameError, KindResolve},
		{"remote answer", "192.0.2.1", dns.RcodeSuccess, KindNotLoopback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDNS(t, "cdn.test", netip.MustParseAddr(tc.answer), tc.rcode)
			cfg := e.config(10)
			cfg.Edges = nil
			cfg.Resolve, cfg.DNSServer, cfg.CNAMESuffix = ResolveDNS, d.addr, "cdn.test"
			res := runTest(t, cfg)
			if res.Errors[tc.kind] != 10 {
				t.Errorf("errors %v (%v), want 10 of kind %s", res.Errors, res.ErrorSamples, tc.kind)
			}
			if e.distinctURLs() != 0 {
				t.Errorf("the edge was reached")
			}
		})
	}
}

// Over gRPC, Resolve is asked once per domain with the client address, and
// the requests go to the HTTPS address of the candidate.
func TestResolveGRPC(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	s, addr := startScheduler(t, e.addr)
	cfg := e.config(40)
	cfg.Edges = nil
	cfg.Resolve, cfg.Scheduler = ResolveGRPC, addr
	cfg.ClientSubnet = netip.MustParsePrefix("203.0.113.0/24")
	res := runTest(t, cfg)
	if res.Responses != 40 || res.Edges[e.addr].Requests != 40 {
		t.Fatalf("responses %d, edges %v: %v", res.Responses, res.Edges, res.ErrorSamples)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) != 1 || s.requests[0].GetDomain() != "a.example.test" || s.requests[0].GetClientIp() != "203.0.113.0" {
		t.Errorf("Resolve requests %v", s.requests)
	}
}

// Plain HTTP sends the Host header without TLS.
func TestPlainHTTP(t *testing.T) {
	e := startEdge(t, edgeOpts{plain: true})
	cfg := e.config(20)
	cfg.Scheme, cfg.RootCAs = "http", nil
	res := runTest(t, cfg)
	_, port, _ := splitHostPort(e.addr)
	if res.Responses != 20 || e.hostsSeen()[fmt.Sprintf("|a.example.test:%d", port)] != 20 {
		t.Errorf("responses %d, hosts %v: %v", res.Responses, e.hostsSeen(), res.ErrorSamples)
	}
	if res.TLS.Handshakes != 0 || res.TLS.Connections == 0 {
		t.Errorf("tls %+v", res.TLS)
	}
}

// A JSON result reads back as it was written, and merging two results
// gives the counts and the exact percentiles of both runs together.
func TestJSONRoundTripAndMerge(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	a := runTest(t, e.config(100))
	cfg := e.config(150)
	cfg.Seed = 2
	b := runTest(t, cfg)

	var bufA, bufB bytes.Buffer
	if err := a.WriteJSON(&bufA); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteJSON(&bufB); err != nil {
		t.Fatal(err)
	}
	a2, err := ReadResult(bytes.NewReader(bufA.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := a2.WriteJSON(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), bufA.Bytes()) {
		t.Errorf("JSON round trip changed the result:\n%s\n---\n%s", bufA.String(), again.String())
	}
	if !a2.hist.Equals(a.hist) {
		t.Errorf("histogram changed in the round trip")
	}
	b2, err := ReadResult(&bufB)
	if err != nil {
		t.Fatal(err)
	}

	m, err := Merge(a2, b2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests != 250 || m.Responses != 250 || m.Latency.Count != 250 || m.Instances != 2 {
		t.Errorf("merged requests %d, responses %d, latencies %d, instances %d", m.Requests, m.Responses, m.Latency.Count, m.Instances)
	}
	if m.Cache["HIT"]+m.Cache["MISS"] != 250 || m.Cache["HIT"] != a.Cache["HIT"]+b.Cache["HIT"] {
		t.Errorf("merged cache %v from %v and %v", m.Cache, a.Cache, b.Cache)
	}
	if m.Edges[e.addr].Requests != 250 || m.Nodes["edge-a"] != 250 || m.Bytes != a.Bytes+b.Bytes {
		t.Errorf("merged edges %v, nodes %v, bytes %d", m.Edges, m.Nodes, m.Bytes)
	}
	direct := newHist()
	direct.Merge(a.hist)
	direct.Merge(b.hist)
	for _, p := range []float64{50, 90, 99, 99.9, 100} {
		if got, want := m.Percentiles([]float64{p})[0], ms(direct.ValueAtPercentile(p)); got != want {
			t.Errorf("merged p%g = %v, want %v", p, got, want)
		}
	}
	var perSecond int64
	for _, s := range m.Series {
		perSecond += s.Requests
		if s.hist.TotalCount() != s.Requests-s.Errors {
			t.Errorf("second %d: histogram holds %d of %d", s.Offset, s.hist.TotalCount(), s.Requests)
		}
	}
	if perSecond != 250 {
		t.Errorf("merged series add up to %d", perSecond)
	}

	// The same through the command line.
	dir := t.TempDir()
	for name, buf := range map[string][]byte{"a.json": bufA.Bytes(), "b.json": again.Bytes()} {
		if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	code := run2(t, []string{"merge", filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json"), "--json", filepath.Join(dir, "m.json"), "--html", filepath.Join(dir, "m.html")}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "200 in") || !strings.Contains(out.String(), "2 instances") {
		t.Errorf("merge: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	mm, err := ReadResultFile(filepath.Join(dir, "m.json"))
	if err != nil || mm.Requests != 200 {
		t.Errorf("merged file: %v, %+v", err, mm)
	}
}

// The HTML report is one page with the two latency plots as inline SVG,
// well-formed, and nothing loaded from elsewhere.
func TestHTMLReport(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	res := runTest(t, e.config(200))
	var buf bytes.Buffer
	if err := res.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	svgs := regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(page, -1)
	if len(svgs) < 2 {
		t.Fatalf("%d <svg> elements", len(svgs))
	}
	for _, id := range []string{`id="latency-over-time"`, `id="latency-by-percentile"`} {
		if !strings.Contains(page, id) {
			t.Errorf("no plot %s", id)
		}
	}
	for _, s := range svgs {
		if !strings.Contains(s, "<polyline") {
			t.Errorf("a plot without a line: %.200s", s)
		}
		dec := xml.NewDecoder(strings.NewReader(s))
		for {
			if _, err := dec.Token(); err != nil {
				if err.Error() != "EOF" {
					t.Errorf("SVG is not well-formed: %v", err)
				}
				break
			}
		}
	}
	for _, bad := range []string{"<script", "<link", " src=", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if !strings.Contains(page, "99.9%") {
		t.Errorf("no percentile axis")
	}
}

// Targets outside loopback are refused unless allowed.
func TestLoopbackGuard(t *testing.T) {
	ctx := context.Background()
	for _, a := range []string{"127.0.0.1:443", "127.9.8.7:1", "[::1]:443", "localhost:80"} {
		if err := CheckLoopback(ctx, a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, a := range []string{"192.0.2.1:443", "[2001:db8::1]:443", "10.0.0.1:53", "0.0.0.0:80"} {
		if err := CheckLoopback(ctx, a); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("%s: %v, want ErrNotLoopback", a, err)
		}
	}
	base := Config{Domains: []Domain{{Name: "a.example.test"}}, Duration: time.Second, Requests: 1}
	for _, tc := range []struct {
		name string
		set  func(*Config)
	}{
		{"edge", func(c *Config) { c.Edges = []string{"127.0.0.1:1", "192.0.2.1:443"} }},
		{"dns", func(c *Config) { c.Resolve, c.DNSServer = ResolveDNS, "192.0.2.53:53" }},
		{"grpc", func(c *Config) { c.Resolve, c.Scheduler = ResolveGRPC, "192.0.2.10:7100" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.set(&cfg)
			if _, err := Run(ctx, cfg); !errors.Is(err, ErrNotLoopback) {
				t.Errorf("Run: %v, want ErrNotLoopback", err)
			}
			cfg.AllowRemote = true
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := cfg.checkTargets(ctx); err != nil {
				t.Errorf("with AllowRemote: %v", err)
			}
		})
	}
	// The dialer itself refuses, whatever the address came from.
	_, err := guardedDialer(false, time.Second).DialContext(ctx, "tcp", "192.0.2.1:443")
	if !errors.Is(err, ErrNotLoopback) {
		t.Errorf("dial: %v", err)
	}
}

// Cancelling the context stops the run early and still gives a result.
func TestInterrupt(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	cfg := e.config(0)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("stopping took %s", el)
	}
	if res.StopReasons[StopInterrupted] != 1 || res.Responses == 0 {
		t.Errorf("stop reasons %v, responses %d", res.StopReasons, res.Responses)
	}
}

// The command line runs a test, writes the files and refuses mistakes.
func TestCommandLine(t *testing.T) {
	e := startEdge(t, edgeOpts{})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pemOf(e), 0o644); err != nil {
		t.Fatal(err)
	}
	domains := filepath.Join(dir, "domains.txt")
	if err := os.WriteFile(domains, []byte("# test\na.example.test\nb.example.test custom.cname.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	args := []string{"--edge", e.addr, "--domains", domains, "--cacert", ca, "--duration", "5s", "--requests", "50",
		"--size-mix", "1k:3,100k:1", "--path", "/{size}/{i}.bin", "--urls", "10", "--concurrency", "2", "-q",
		"--json", filepath.Join(dir, "r.json"), "--html", filepath.Join(dir, "r.html")}
	if code := run2(t, args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"50 in", "hit ratio", "edge-a 50", "1k ", "100k "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	var r Result
	b, err := os.ReadFile(filepath.Join(dir, "r.json"))
	if err != nil || json.Unmarshal(b, &r) != nil || r.Requests != 50 {
		t.Errorf("JSON file: %v %+v", err, r)
	}
	if _, err := os.Stat(filepath.Join(dir, "r.html")); err != nil {
		t.Error(err)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--edge", e.addr, "--domain", "a.example.test"}, 2, "duration"},
		{[]string{"--edge", e.addr, "--domain", "a.example.test", "--duration", "2h"}, 2, "at most 1h"},
		{[]string{"--edge", e.addr, "--duration", "1s"}, 2, "no domain"},
		{[]string{"--edge", "192.0.2.1:443", "--domain", "a.example.test", "--duration", "1s"}, 1, "loopback"},
		{[]string{"--domain", "a.example.test", "--duration", "1s"}, 2, "no target"},
		{[]string{"--edge", e.addr, "--domain", "a.example.test", "--duration", "1s", "--zipf-s", "1"}, 2, "Zipf"},
		{[]string{"--edge", e.addr, "--domain-pattern", "d.example.test", "--domain-count", "2", "--duration", "1s"}, 2, "%d"},
		{[]string{"merge"}, 2, "missing"},
	} {
		out.Reset()
		errOut.Reset()
		if code := run2(t, tc.args, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.msg) {
			t.Errorf("%v: exit %d, %q; want %d and %q", tc.args, code, errOut.String(), tc.code, tc.msg)
		}
	}
}

func pemOf(e *testEdge) []byte {
	var b []byte
	for _, c := range e.srv.TLS.Certificates {
		for _, der := range c.Certificate {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
	}
	return b
}

// run2 runs the command line with a bounded context.
func run2(t *testing.T, args []string, stdout, stderr *bytes.Buffer) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return run(ctx, args, stdout, stderr)
}

func TestParsing(t *testing.T) {
	mix, err := ParseSizeMix("1k:80, 100k:20,1m")
	if err != nil || fmt.Sprint(mix) != "[{1k 80} {100k 20} {1m 1}]" {
		t.Errorf("ParseSizeMix: %v %v", mix, err)
	}
	for _, bad := range []string{"", "1k:0", "1k:-1", "1k:x", "a/b:1", "1k:1,1k:2"} {
		if _, err := ParseSizeMix(bad); err == nil {
			t.Errorf("ParseSizeMix(%q) accepted", bad)
		}
	}
	ds, err := ReadDomains(strings.NewReader("# comment\n\nA.Example.test.\nb.example.test  b.cdn.test\n"))
	if err != nil || len(ds) != 2 || ds[1].CNAME != "b.cdn.test" {
		t.Errorf("ReadDomains: %v %v", ds, err)
	}
	for _, bad := range []string{"a b c\n", "http://x/\n", "192.0.2.1\n"} {
		if _, err := ReadDomains(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadDomains(%q) accepted", bad)
		}
	}
	ds, err = PatternDomains("d%d.example.test", 3)
	if err != nil || len(ds) != 3 || ds[0].Name != "d1.example.test" || ds[2].Name != "d3.example.test" {
		t.Errorf("PatternDomains: %v %v", ds, err)
	}
	for _, bad := range []string{"d.example.test", "d%d%d.test", "d%s.test"} {
		if _, err := PatternDomains(bad, 3); err == nil {
			t.Errorf("PatternDomains(%q) accepted", bad)
		}
	}
	tmpl, err := parseTemplate("/obj/{size}/{i}.bin?size={size}")
	if err != nil {
		t.Fatal(err)
	}
	if p, q := tmpl.expand(7, "4k"); p != "/obj/4k/7.bin" || q != "size=4k" {
		t.Errorf("expand: %q %q", p, q)
	}
	for _, bad := range []string{"obj/{i}", "/{j}", "/{i", "/a b/{i}"} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("parseTemplate(%q) accepted", bad)
		}
	}
	for via, want := range map[string]string{
		"1.1 edge-1 (outpost)":                   "edge-1",
		"1.1 origin-proxy, 1.1 edge-2 (outpost)": "edge-2",
		"1.0 squid, 1.1 varnish":                 "",
		"1.1 edge-3 (outpost), 1.1 corp-proxy":   "edge-3",
	} {
		if got := nodeFromVia([]string{via}); got != want {
			t.Errorf("nodeFromVia(%q) = %q, want %q", via, got, want)
		}
	}
	cfg := Config{Edges: []string{"127.0.0.1:1"}, Domains: []Domain{{Name: "a.example.test"}}, Duration: time.Second}
	if err := cfg.Validate(); err != nil || cfg.Domains[0].CNAME != "a.example.test.cdn.outpost.test" || cfg.Pick != PickRoundRobin {
		t.Errorf("defaults: %v %+v", err, cfg)
	}
}
