package loadtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"

	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/internal/leakcheck"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// edgeOpts shape a test edge.
type edgeOpts struct {
	name   string        // in Via; default "edge-a"
	delay  time.Duration // before answering
	stall  time.Duration // after the headers and part of the body
	status int           // default 200
	http2  bool
	plain  bool
}

// testEdge is a real HTTPS server standing in for an edge node: it
// answers MISS for the first request of a URL and HIT after, names itself
// in Via like an Outpost node, and records what reached it.
type testEdge struct {
	addr string
	pool *x509.CertPool
	srv  *httptest.Server

	mu    sync.Mutex
	seen  map[string]int // request URI → requests
	hosts map[string]int // "SNI|Host" → requests
}

var edgeBody = bytes.Repeat([]byte("x"), 1024)

func startEdge(t *testing.T, o edgeOpts) *testEdge {
	t.Helper()
	if o.name == "" {
		o.name = "edge-a"
	}
	e := &testEdge{seen: map[string]int{}, hosts: map[string]int{}}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sni := ""
		if r.TLS != nil {
			sni = r.TLS.ServerName
		}
		e.mu.Lock()
		n := e.seen[r.URL.RequestURI()]
		e.seen[r.URL.RequestURI()]++
		e.hosts[sni+"|"+r.Host]++
		e.mu.Unlock()
		if o.delay > 0 {
			select {
			case <-time.After(o.delay):
			case <-r.Context().Done():
				return
			}
		}
		h := w.Header()
		h.Set("Via", "1.1 "+o.name+" (outpost)")
		if n == 0 {
			h.Set("X-Cache", "MISS")
		} else {
			h.Set("X-Cache", "HIT")
		}
		if o.status != 0 {
			w.WriteHeader(o.status)
		}
		if o.stall > 0 {
			h.Set("Content-Length", fmt.Sprint(len(edgeBody)))
			_, _ = w.Write(edgeBody[:10])
			w.(http.Flusher).Flush()
			select {
			case <-time.After(o.stall):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = w.Write(edgeBody)
	}))
	if o.plain {
		e.srv.Start()
	} else {
		p := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.test", "example.test"}})
		e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.TLSCertificate(t)}, NextProtos: []string{"http/1.1"}}
		if o.http2 {
			e.srv.EnableHTTP2 = true
			e.srv.TLS.NextProtos = []string{"h2", "http/1.1"}
		}
		e.srv.StartTLS()
		e.pool = x509.NewCertPool()
		e.pool.AddCert(p.Cert)
	}
	t.Cleanup(e.srv.Close)
	e.addr = e.srv.Listener.Addr().String()
	return e
}

func (e *testEdge) count(uri string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seen[uri]
}

func (e *testEdge) distinctURLs() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}

func (e *testEdge) hostsSeen() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.hosts {
		out[k] = v
	}
	return out
}

// config is a closed-model run of n requests against e for one domain.
func (e *testEdge) config(n int64) Config {
	return Config{
		Edges:       []string{e.addr},
		Domains:     []Domain{{Name: "a.example.test"}},
		RootCAs:     e.pool,
		Concurrency: 4,
		Requests:    n,
		Duration:    10 * time.Second,
		Timeout:     2 * time.Second,
		URLs:        20,
		Seed:        1,
	}
}

// runTest runs cfg and fails the test if it cannot start.
func runTest(t *testing.T, cfg Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// testDNS is a real DNS server (miekg/dns over UDP) answering A queries
// under zone with answer, recording the questions and client subnets.
type testDNS struct {
	addr string

	mu      sync.Mutex
	queries map[string]int
	subnets []string
}

func startDNS(t *testing.T, zone string, answer netip.Addr, rcode int) *testDNS {
	t.Helper()
	d := &testDNS{queries: map[string]int{}}
	mux := dns.NewServeMux()
	mux.HandleFunc(dns.Fqdn(zone), func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		d.mu.Lock()
		d.queries[q.Name]++
		if opt := req.IsEdns0(); opt != nil {
			for _, o := range opt.Option {
				if e, ok := o.(*dns.EDNS0_SUBNET); ok {
					d.subnets = append(d.subnets, netip.PrefixFrom(netip.MustParseAddr(e.Address.String()), int(e.SourceNetmask)).String())
				}
			}
		}
		d.mu.Unlock()
		if rcode != dns.RcodeSuccess {
			m.SetRcode(req, rcode)
		} else if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: answer.AsSlice()})
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	d.addr = pc.LocalAddr().String()
	return d
}

func (d *testDNS) seen() (map[string]int, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := map[string]int{}
	for k, v := range d.queries {
		q[k] = v
	}
	return q, append([]string(nil), d.subnets...)
}

// testScheduler is a real gRPC server of SchedulerService naming one edge.
type testScheduler struct {
	outpostv1.UnimplementedSchedulerServiceServer
	edge string

	mu       sync.Mutex
	requests []*outpostv1.ResolveRequest
}

func (s *testScheduler) Resolve(_ context.Context, req *outpostv1.ResolveRequest) (*outpostv1.ResolveResponse, error) {
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	return &outpostv1.ResolveResponse{TtlSeconds: 30, Candidates: []*outpostv1.Candidate{
		{Node: "edge-a", HttpsAddress: s.edge, HttpAddress: s.edge},
	}}, nil
}

func startScheduler(t *testing.T, edge string) (*testScheduler, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testScheduler{edge: edge}
	gs := grpc.NewServer()
	outpostv1.RegisterSchedulerServiceServer(gs, s)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	return s, l.Addr().String()
}
