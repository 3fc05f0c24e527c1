package scheduler

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outpost-cdn/outpost/internal/membership"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// recorder is the network edge of the DNS handler: the dns.ResponseWriter
// the UDP or TCP server would pass, keeping what the handler writes.
type recorder struct {
	local, remote net.Addr
	msgs          []*dns.Msg
	raw           bool
}

func (w *recorder) LocalAddr() net.Addr  { return w.local }
func (w *recorder) RemoteAddr() net.Addr { return w.remote }
func (w *recorder) WriteMsg(m *dns.Msg) error {
	w.msgs = append(w.msgs, m)
	return nil
}
func (w *recorder) Write([]byte) (int, error) {
	w.raw = true
	return 0, errors.New("unexpected raw write")
}
func (w *recorder) Close() error        { return nil }
func (w *recorder) TsigStatus() error   { return nil }
func (w *recorder) TsigTimersOnly(bool) {}
func (w *recorder) Hijack()             {}

// fuzzZone, fuzzCNAME and the nodes of fuzzHandler's scheduler.
const (
	fuzzZone  = "cdn.outpost.test."
	fuzzCNAME = "www.example.com.cdn.outpost.test."
)

// fuzzHandler is the DNS handler of a scheduler with a static domain table
// (www.example.com and *.example.net), a coverage zone, and three edges in
// gossip: one with an IPv4 address, one with an IPv6 address, one with a
// host name.
func fuzzHandler(tb testing.TB) dns.Handler {
	tb.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cz := filepath.Join(tb.TempDir(), "czf.json")
	if err := os.WriteFile(cz, []byte(`{"regions": {
		"east": {"latitude": 40.7, "longitude": -74.0, "networks": ["10.1.0.0/16", "2001:db8:1::/48", "0.0.0.0/1"]},
		"west": {"latitude": 37.8, "longitude": -122.4, "networks": ["10.2.0.0/16", "10.2.3.0/24", "2001:db8:2::/48"]}}}`), 0o600); err != nil {
		tb.Fatal(err)
	}
	s := &Scheduler{cfg: Config{Name: "scheduler-fuzz", CNAMESuffix: fuzzZone, Answers: 2, CoverageZoneFile: cz,
		Gossip: membership.Options{Addr: "127.0.0.1:0"}, Logger: quiet}}
	s.cfg.setDefaults()
	s.log = s.cfg.Logger
	if err := s.startRouting(); err != nil {
		tb.Fatal(err)
	}
	s.domains = &domainStream{ready: make(chan struct{})}
	s.domains.table.Store(emptyTable.merge(&outpostv1.StreamConfigResponse{Snapshot: true, Revision: 1, Domains: []*outpostv1.Domain{
		{Name: "www.example.com", Cname: "www.example.com.cdn.outpost.test", Scope: outpostv1.Scope_SCOPE_GLOBAL, Status: outpostv1.DomainStatus_DOMAIN_STATUS_ONLINE},
		{Name: "*.example.net", Cname: "_wildcard.example.net.cdn.outpost.test", Status: outpostv1.DomainStatus_DOMAIN_STATUS_ONLINE},
	}}))
	var edges []*membership.Member
	tb.Cleanup(func() {
		for _, m := range edges {
			m.Shutdown()
		}
		s.stopRouting()
	})
	// The scheduler's member may start in the background.
	for deadline := time.Now().Add(10 * time.Second); s.GossipAddr() == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatal("the scheduler's gossip never started")
		}
	}
	for _, e := range []struct {
		name, http string
		lat, lon   float64
	}{{"edge-v4", "127.0.1.1:8080", 40.7, -74.0}, {"edge-v6", "[2001:db8:ed::1]:8080", 37.4, -122.1}, {"edge-name", "edge.example:8080", 50.1, 8.7}} {
		m, err := membership.Start(membership.Config{Name: e.name, BindAddr: "127.0.0.1:0", Join: []string{s.GossipAddr()}, Fast: true, Logger: quiet,
			Meta: func() membership.Meta {
				return membership.Meta{Role: membership.RoleNode, Region: "r", Latitude: e.lat, Longitude: e.lon, HTTP: e.http, Capacity: 1}
			}})
		if err != nil {
			tb.Fatal(err)
		}
		edges = append(edges, m)
	}
	for deadline := time.Now().Add(10 * time.Second); len(s.nodes()) < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("the scheduler sees %d of 3 edges", len(s.nodes()))
		}
	}
	return newDNSServer(s.cfg.CNAMESuffix, s.cfg.TTL, s.log, s).handler()
}

// fuzzSeeds are valid queries of every kind the scheduler answers, and some
// it refuses.
func fuzzSeeds() []*dns.Msg {
	q := func(name string, qtype uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		return m
	}
	edns := func(m *dns.Msg, size uint16, opts ...dns.EDNS0) *dns.Msg {
		m.SetEdns0(size, true).IsEdns0().Option = opts
		return m
	}
	ecs4 := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("10.2.3.0").To4()}
	ecs6 := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 56, Address: net.ParseIP("2001:db8:1::")}
	ecs0 := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 0, SourceNetmask: 0, Address: net.IPv4zero.To4()}
	two := q(fuzzCNAME, dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: fuzzZone, Qtype: dns.TypeSOA, Qclass: dns.ClassINET})
	none := q(fuzzCNAME, dns.TypeA)
	none.Question = nil
	return []*dns.Msg{
		q(fuzzCNAME, dns.TypeA),
		q(fuzzCNAME, dns.TypeAAAA),
		q("WWW.Example.COM.cdn.outpost.test.", dns.TypeA),
		q("www.example.com.", dns.TypeA),
		q("a.b.example.net.cdn.outpost.test.", dns.TypeA),
		q(fuzzZone, dns.TypeSOA),
		q(fuzzZone, dns.TypeNS),
		q(fuzzZone, dns.TypeTXT),
		q(fuzzCNAME, dns.TypeMX),
		q("nope.cdn.outpost.test.", dns.TypeA),
		q("edge-v4."+fuzzCNAME, dns.TypeA),
		q("edge-v6."+fuzzCNAME, dns.TypeAAAA),
		q("edge-v6."+fuzzCNAME, dns.TypeA),
		q("edge-nope."+fuzzCNAME, dns.TypeA),
		q("www.example.org.", dns.TypeA),
		q(".", dns.TypeNS),
		edns(q(fuzzCNAME, dns.TypeA), 4096),
		edns(q(fuzzCNAME, dns.TypeA), 100),
		edns(q(fuzzCNAME, dns.TypeA), 1232, ecs4),
		edns(q(fuzzCNAME, dns.TypeAAAA), 1232, ecs6),
		edns(q(fuzzCNAME, dns.TypeA), 512, ecs0),
		edns(q(fuzzCNAME, dns.TypeA), 1232, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 120, Address: net.ParseIP("::ffff:10.2.3.0")}),
		edns(q(fuzzZone, dns.TypeSOA), 1232, ecs4, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"}),
		edns(q("www.example.org.", dns.TypeA), 1232, ecs4),
		two,
		none,
	}
}

// FuzzDNSRequest feeds any message that unpacks to the scheduler's DNS
// handler, as if it came over UDP and over TCP. The handler must not panic,
// and must write exactly one reply that packs, fits the client's UDP
// buffer, unpacks, and answers the query: same ID and question.
func FuzzDNSRequest(f *testing.F) {
	for _, m := range fuzzSeeds() {
		m.Id = 0x1234
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01"))
	h := fuzzHandler(f)
	udp := &net.UDPAddr{IP: net.ParseIP("10.2.3.4"), Port: 5353}
	tcp := &net.TCPAddr{IP: net.ParseIP("2001:db8:1::9"), Port: 40000}
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	// The handler answers with the edges: what is fuzzed is not only the
	// NXDOMAIN path.
	for qtype, want := range map[uint16]string{dns.TypeA: "127.0.1.1", dns.TypeAAAA: "2001:db8:ed::1"} {
		m := new(dns.Msg)
		m.SetQuestion(fuzzCNAME, qtype)
		w := &recorder{local: local, remote: udp}
		h.ServeDNS(w, m)
		if len(w.msgs) != 1 || len(w.msgs[0].Answer) != 1 || !strings.Contains(w.msgs[0].Answer[0].String(), want) {
			f.Fatalf("%s: %v, want %s", dns.TypeToString[qtype], w.msgs, want)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, remote := range []net.Addr{udp, tcp} {
			// The handler may change the request (the ECS scope it echoes):
			// unpack afresh for each run.
			req := new(dns.Msg)
			if err := req.Unpack(raw); err != nil {
				return
			}
			w := &recorder{local: local, remote: remote}
			h.ServeDNS(w, req)
			if len(w.msgs) != 1 || w.raw {
				t.Fatalf("%s: %d replies written (raw write %v), want 1", remote.Network(), len(w.msgs), w.raw)
			}
			checkReply(t, remote, req, w.msgs[0])
		}
	})
}

func checkReply(t *testing.T, remote net.Addr, req, r *dns.Msg) {
	t.Helper()
	b, err := r.Pack()
	if err != nil {
		t.Fatalf("%s: reply does not pack: %v\nrequest:\n%v\nreply:\n%v", remote.Network(), err, req, r)
	}
	if !r.Response || r.Id != req.Id || r.Opcode != req.Opcode {
		t.Fatalf("%s: reply QR=%v ID=%d opcode=%d, request ID=%d opcode=%d", remote.Network(), r.Response, r.Id, r.Opcode, req.Id, req.Opcode)
	}
	if _, ok := remote.(*net.UDPAddr); ok {
		limit := 512
		if opt := req.IsEdns0(); opt != nil {
			limit = max(min(int(opt.UDPSize()), 1232), 512)
		}
		if len(b) > limit {
			t.Fatalf("udp: reply of %d bytes, over the client's %d\nrequest:\n%v\nreply:\n%v", len(b), limit, req, r)
		}
	}
	back := new(dns.Msg)
	if err := back.Unpack(b); err != nil {
		t.Fatalf("%s: reply does not unpack: %v\nreply:\n%v", remote.Network(), err, r)
	}
	if len(req.Question) == 0 {
		if len(back.Question) != 0 {
			t.Fatalf("%s: question %v in the reply to none", remote.Network(), back.Question)
		}
		return
	}
	q := req.Question[0]
	if len(back.Question) != 1 || back.Question[0] != q {
		t.Fatalf("%s: reply question %v, want %v", remote.Network(), back.Question, q)
	}
	for _, rr := range back.Answer {
		if h := rr.Header(); h.Rrtype != q.Qtype || h.Name != q.Name {
			t.Fatalf("%s: answer %v to question %v", remote.Network(), rr, q)
		}
	}
}
