package node_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/node"
)

// rawConn is a client connection to the edge's plain HTTP port that writes
// bytes as given and reads responses in order.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, e *edge) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.node.HTTPAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one response to a request with method.
func (r *rawConn) read(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func get(path, host string, headers ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n" + strings.Join(append(headers, ""), "\r\n") + "\r\n"
}

// fastCounters reads the fast path's counters from the node's metrics.
func fastCounters(t testing.TB, n *node.Node) (hits, handoffs int) {
	t.Helper()
	resp, err := http.Get("http://" + n.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "outpost_edge_fast_path_responses_total":
			hits = int(v)
		case "outpost_edge_fast_path_handoffs_total":
			handoffs = int(v)
		}
	}
	return hits, handoffs
}

// TestFastPathAnswersAsNetHTTP: every cache hit the fast path answers is
// the response serveHTTP gives through net/http, header for header.
func TestFastPathAnswersAsNetHTTP(t *testing.T) {
	e := newEdge(t)
	const host = "www.example.com"
	e.addDomain(t, host, "a.origin.test")
	paths := []string{"/c/max-age/a.txt", "/c/max-age/b.bin?v=1&w=2", "/c/vary/v.txt", "/c/cookie/a.txt"}
	for _, p := range paths {
		path, _, _ := strings.Cut(p, "?")
		e.origin.Write(t, path, []byte("content of "+path+strings.Repeat(".", 3000)))
	}
	requests := []struct {
		method, path string
		headers      []string
	}{
		{"GET", "/c/max-age/a.txt", nil},
		{"HEAD", "/c/max-age/a.txt", nil},
		{"GET", "/c/max-age/b.bin?v=1&w=2", []string{"User-Agent: test", "Accept: */*", "Connection: keep-alive"}},
		{"GET", "/c/vary/v.txt", []string{"Accept-Encoding: gzip"}},
		{"GET", "/c/vary/v.txt", nil},
	}
	for _, rq := range requests { // fill (net/http serves misses)
		e.req(t, "GET", host, rq.path, rq.headers...)
	}
	fetch := func(fast bool) []string {
		node.SetFastPath(e.node, fast)
		hits0, _ := fastCounters(t, e.node)
		c := dialRaw(t, e)
		var out []string
		for _, rq := range requests {
			c.write(strings.Replace(get(rq.path, host, rq.headers...), "GET", rq.method, 1))
			resp, body := c.read(rq.method)
			h := resp.Header.Clone()
			h.Del("Age") // the only header that changes from one second to the next
			var lines []string
			for k, vs := range h {
				lines = append(lines, k+": "+strings.Join(vs, " | "))
			}
			slices.Sort(lines)
			out = append(out, fmt.Sprintf("%s %s -> %d len=%d body=%d\n  %s", rq.method, rq.path, resp.StatusCode, resp.ContentLength, len(body), strings.Join(lines, "\n  ")))
			if resp.Header.Get("X-Cache") != "HIT" {
				t.Fatalf("%s %s: X-Cache %q, want HIT", rq.method, rq.path, resp.Header.Get("X-Cache"))
			}
		}
		hits1, _ := fastCounters(t, e.node)
		if want := len(requests); fast && hits1-hits0 != want {
			t.Fatalf("fast path answered %d of %d hits", hits1-hits0, want)
		} else if !fast && hits1 != hits0 {
			t.Fatalf("fast path answered %d hits while switched off", hits1-hits0)
		}
		return out
	}
	fast, slow := fetch(true), fetch(false)
	for i := range fast {
		if fast[i] != slow[i] {
			t.Errorf("fast path:\n%s\nnet/http:\n%s", fast[i], slow[i])
		}
	}
	if get, head := strings.Fields(fast[0])[4], strings.Fields(fast[1])[4]; get != head || !strings.Contains(fast[1], "body=0") {
		t.Errorf("HEAD answered %s, GET %s", fast[1], fast[0])
	}
}

// TestFastPathHandsOffMidConnection: pipelined requests in one write, a
// hit, a miss, a hit: the connection moves to net/http at the miss and
// every response comes back in order.
func TestFastPathHandsOffMidConnection(t *testing.T) {
	e := newEdge(t)
	const host = "www.example.com"
	e.addDomain(t, host, "a.origin.test")
	for _, p := range []string{"/c/max-age/1.txt", "/c/max-age/2.txt", "/c/max-age/3.txt"} {
		e.origin.Write(t, p, []byte("body "+p))
	}
	e.req(t, "GET", host, "/c/max-age/1.txt")
	e.req(t, "GET", host, "/c/max-age/3.txt")
	hits0, handoffs0 := fastCounters(t, e.node)

	c := dialRaw(t, e)
	c.write(get("/c/max-age/1.txt", host) + get("/c/max-age/2.txt", host) + get("/c/max-age/3.txt", host))
	for i, want := range []struct{ x, body string }{{"HIT", "body /c/max-age/1.txt"}, {"MISS", "body /c/max-age/2.txt"}, {"HIT", "body /c/max-age/3.txt"}} {
		resp, body := c.read("GET")
		if resp.Header.Get("X-Cache") != want.x || body != want.body {
			t.Fatalf("response %d: X-Cache %q body %q, want %q %q", i, resp.Header.Get("X-Cache"), body, want.x, want.body)
		}
	}
	// net/http keeps the connection: it still answers.
	c.write(get("/c/max-age/2.txt", host))
	if resp, body := c.read("GET"); resp.Header.Get("X-Cache") != "HIT" || body != "body /c/max-age/2.txt" {
		t.Fatalf("after the handoff: %v %q", resp.Header, body)
	}
	hits1, handoffs1 := fastCounters(t, e.node)
	if hits1-hits0 != 1 || handoffs1-handoffs0 != 1 {
		t.Fatalf("fast path answered %d and handed off %d connections, want 1 and 1", hits1-hits0, handoffs1-handoffs0)
	}

	// A head split over two writes goes to net/http, which waits for the
	// rest (the fast path never waits on a partial head).
	c2 := dialRaw(t, e)
	req := get("/c/max-age/1.txt", host)
	c2.write(req[:20])
	time.Sleep(50 * time.Millisecond)
	c2.write(req[20:])
	if resp, body := c2.read("GET"); resp.StatusCode != 200 || body != "body /c/max-age/1.txt" {
		t.Fatalf("split head: %d %q", resp.StatusCode, body)
	}
}

// TestFastPathKeepsTheFramingCheck: a smuggling attempt pipelined after
// requests the fast path answered is still refused, as the request it is.
func TestFastPathKeepsTheFramingCheck(t *testing.T) {
	e := newEdge(t)
	const host = "www.example.com"
	e.addDomain(t, host, "a.origin.test")
	e.origin.Write(t, "/c/max-age/a.txt", []byte("aaa"))
	e.req(t, "GET", host, "/c/max-age/a.txt")

	c := dialRaw(t, e)
	smuggle := "POST /c/max-age/a.txt HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	c.write(get("/c/max-age/a.txt", host) + get("/c/max-age/a.txt", host) + smuggle)
	for i := 0; i < 2; i++ {
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "aaa" {
			t.Fatalf("response %d: %d %q", i, resp.StatusCode, body)
		}
	}
	resp, _ := c.read("POST")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("smuggling request after fast responses: %d, want 400", resp.StatusCode)
	}

	// Requests the fast path leaves to net/http get net/http's answers.
	for _, tc := range []struct {
		req  string
		code int
	}{
		{"GET /c/max-age/a.txt HTTP/1.1\r\nHost: " + host + "\r\nHost: " + host + "\r\n\r\n", 400},
		{"GET /c/max-age/a.txt HTTP/1.1\r\nHost: " + host + "\r\n X-Folded: yes\r\n\r\n", 400},
		{"GET /c/max-age/a.txt HTTP/1.1\r\nHost: " + host + "\r\nRange: bytes=0-0\r\n\r\n", 206},
		{"GET /c/max-age/a.txt HTTP/1.1\r\nHost: " + host + "\r\nIf-None-Match: *\r\n\r\n", 304},
		{"GET /c/max-age/../max-age/a.txt HTTP/1.1\r\nHost: " + host + "\r\n\r\n", 200},
		{"GET http://" + host + "/c/max-age/a.txt HTTP/1.1\r\nHost: " + host + "\r\n\r\n", 400},
		{"GET /c/max-age/a.txt HTTP/1.1\r\nHost: unknown.example\r\n\r\n", 404},
		{"GET /c/max-age/a.txt HTTP/1.0\r\nHost: " + host + "\r\n\r\n", 200},
	} {
		c := dialRaw(t, e)
		c.write(tc.req)
		if resp, _ := c.read("GET"); resp.StatusCode != tc.code {
			t.Errorf("%q: %d, want %d", tc.req, resp.StatusCode, tc.code)
		}
	}
}

// TestFastPathCloseEndsIdleConnections: Close does not wait for idle
// keep-alive connections of the fast path.
func TestFastPathCloseEndsIdleConnections(t *testing.T) {
	e := newEdge(t)
	const host = "www.example.com"
	e.addDomain(t, host, "a.origin.test")
	e.origin.Write(t, "/c/max-age/a.txt", []byte("aaa"))
	e.req(t, "GET", host, "/c/max-age/a.txt")
	c := dialRaw(t, e)
	c.write(get("/c/max-age/a.txt", host))
	if resp, _ := c.read("GET"); resp.Header.Get("X-Cache") != "HIT" {
		t.Fatal("not a hit")
	}
	start := time.Now()
	e.node.Close()
	if d := time.Since(start); d > 4*time.Second { // the deadline for busy connections is 5 s
		t.Fatalf("Close took %v with an idle fast-path connection", d)
	}
	if _, err := c.br.ReadByte(); err == nil {
		t.Fatal("the idle connection is still open after Close")
	}
}
