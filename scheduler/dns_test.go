package scheduler_test

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// exchange sends m to addr over network ("udp" or "tcp") and returns the
// reply and its size on the wire.
func exchange(t *testing.T, network, addr string, m *dns.Msg) (*dns.Msg, int) {
	t.Helper()
	conn, err := dns.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.UDPSize = dns.MaxMsgSize // read whatever the server sends
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := conn.WriteMsg(m); err != nil {
		t.Fatalf("%s write: %v", network, err)
	}
	b, err := conn.ReadMsgHeader(nil)
	if err != nil {
		t.Fatalf("%s read: %v", network, err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		t.Fatalf("%s reply: %v", network, err)
	}
	if r.Id != m.Id {
		t.Fatalf("%s: reply ID %d, want %d", network, r.Id, m.Id)
	}
	return r, len(b)
}

// aaaas are the addresses of the AAAA records of r, sorted.
func aaaas(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.AAAA); ok {
			out = append(out, a.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

// TestDNSTruncatesOverUDP: an answer too large for the client's UDP buffer
// (512 bytes without EDNS, the EDNS size up to 1232 with it) comes back
// truncated with TC set, and in full over TCP.
func TestDNSTruncatesOverUDP(t *testing.T) {
	// 20 nodes with IPv6 addresses: a compressed AAAA record is 28 bytes,
	// so the answer (12-byte header, 38-byte question, 20×28 = 560 bytes
	// of records) is 610 bytes: over 512, within 1232.
	const n = 20
	var edges []edgeSpec
	var want []string
	for i := range n {
		ip := fmt.Sprintf("2001:db8:ed::%x", i+1)
		want = append(want, net.ParseIP(ip).String())
		edges = append(edges, edgeSpec{fmt.Sprintf("edge-%02d", i), "east", 40.7, -74.0, "[" + ip + "]:8080"})
	}
	slices.Sort(want)
	c := startCluster(t, n, edges)
	addr := c.s.DNSAddr()
	query := func(edns uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(c.cname), dns.TypeAAAA)
		if edns > 0 {
			m.SetEdns0(edns, false)
		}
		return m
	}

	// Gossip converges on all 20 nodes a little after the first three.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if r, _ := exchange(t, "tcp", addr, query(0)); slices.Equal(aaaas(r), want) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("TCP answer %v, want all %d nodes %v", aaaas(r), n, want)
		}
	}

	// UDP without EDNS: at most 512 bytes, TC set, the records that fit.
	r, size := exchange(t, "udp", addr, query(0))
	if !r.Truncated || r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		t.Fatalf("UDP without EDNS: TC=%v rcode=%d aa=%v, want a truncated authoritative answer", r.Truncated, r.Rcode, r.Authoritative)
	}
	if size > 512 {
		t.Fatalf("UDP without EDNS: reply of %d bytes, over 512", size)
	}
	// As many records as fit: on the wire the question's name takes one
	// byte more than its text with the final dot, then type and class 4.
	fit := (512 - 12 - (len(dns.Fqdn(c.cname)) + 1 + 4)) / 28
	if got := len(r.Answer); got != fit || fit >= n {
		t.Fatalf("UDP without EDNS: %d records, want the %d that fit", got, fit)
	}
	for _, a := range aaaas(r) {
		if !slices.Contains(want, a) {
			t.Fatalf("UDP without EDNS: unknown address %s", a)
		}
	}

	// The same query over TCP: everything, no TC.
	r, _ = exchange(t, "tcp", addr, query(0))
	if r.Truncated || !slices.Equal(aaaas(r), want) {
		t.Fatalf("TCP: TC=%v, %v, want all %d nodes", r.Truncated, aaaas(r), n)
	}

	// UDP with EDNS: the client's buffer, capped at the server's 1232, and
	// never below 512.
	for _, tc := range []struct {
		edns  uint16
		trunc bool
	}{{4096, false}, {1232, false}, {600, true}, {256, true}} {
		r, size := exchange(t, "udp", addr, query(tc.edns))
		if r.Truncated != tc.trunc || r.IsEdns0() == nil || r.IsEdns0().UDPSize() != 1232 {
			t.Fatalf("UDP, EDNS %d: TC=%v OPT=%v, want TC=%v and the server's size 1232", tc.edns, r.Truncated, r.IsEdns0(), tc.trunc)
		}
		if limit := max(min(int(tc.edns), 1232), 512); size > limit {
			t.Fatalf("UDP, EDNS %d: reply of %d bytes, over %d", tc.edns, size, limit)
		}
		if !tc.trunc && !slices.Equal(aaaas(r), want) {
			t.Fatalf("UDP, EDNS %d: %v, want all %d nodes", tc.edns, aaaas(r), n)
		}
	}
}

// TestDNSReadsLargeUDPQueries: a UDP query over 512 bytes (here EDNS
// padding, RFC 7830) is read whole and answered, up to the 1232 bytes the
// server offers.
func TestDNSReadsLargeUDPQueries(t *testing.T) {
	c := startCluster(t, 2, clusterEdges)
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(c.cname), dns.TypeA)
	o := m.SetEdns0(1232, false).IsEdns0()
	o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("10.2.3.0").To4()},
		&dns.EDNS0_PADDING{Padding: make([]byte, 700)})
	if l := m.Len(); l <= 512 || l > 1232 {
		t.Fatalf("query of %d bytes, want 513 to 1232", l)
	}
	r, _ := exchange(t, "udp", c.s.DNSAddr(), m)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 || r.Answer[0].(*dns.A).A.String() != "127.0.1.2" {
		t.Fatalf("large query: %v", r)
	}
}

// TestDNSProtocolCorners: EDNS versions above 0 get BADVERS; classes other
// than IN are refused; an ECS source of /0 (the client opted out) is
// answered for the resolver's address with scope 0; an IPv4 client sent
// as an IPv4-mapped IPv6 address gets its scope in IPv6 bits.
func TestDNSProtocolCorners(t *testing.T) {
	// The resolver (the test, on 127.0.0.1) is in the west region; the
	// other networks are clusterCZ's.
	cz := `{"regions": {
	"east": {"latitude": 40.7, "longitude": -74.0, "networks": ["10.1.0.0/16"]},
	"west": {"latitude": 37.8, "longitude": -122.4, "networks": ["10.2.0.0/16", "127.0.0.0/8"]}}}`
	c := startClusterCZ(t, 1, clusterEdges, quiet, cz)
	addr := c.s.DNSAddr()
	query := func(ecs *dns.EDNS0_SUBNET) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(c.cname), dns.TypeA)
		o := m.SetEdns0(1232, false).IsEdns0()
		if ecs != nil {
			o.Option = append(o.Option, ecs)
		}
		return m
	}
	answer := func(r *dns.Msg) string {
		if len(r.Answer) != 1 {
			return fmt.Sprint(r.Answer)
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	scope := func(r *dns.Msg) int {
		if o := r.IsEdns0(); o != nil {
			if e := clientSubnetOf(o); e != nil {
				return int(e.SourceScope)
			}
		}
		return -1
	}

	m := query(nil)
	m.IsEdns0().SetVersion(1)
	r, _ := exchange(t, "udp", addr, m)
	if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 || len(r.Answer) != 0 {
		t.Fatalf("EDNS version 1: rcode %s, OPT %v, want BADVERS with an OPT of version 0", dns.RcodeToString[r.Rcode], r.IsEdns0())
	}

	for _, class := range []uint16{dns.ClassCHAOS, dns.ClassHESIOD} {
		m := query(nil)
		m.Question[0].Qclass = class
		if r, _ := exchange(t, "udp", addr, m); r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Fatalf("class %s: %v, want REFUSED", dns.ClassToString[class], r)
		}
	}
	m = query(nil)
	m.Question[0].Qclass = dns.ClassANY
	if r, _ := exchange(t, "udp", addr, m); answer(r) != "127.0.1.2" {
		t.Fatalf("class ANY: %v, want the west node as for IN", r)
	}

	for _, tc := range []struct {
		name      string
		ecs       *dns.EDNS0_SUBNET
		want      string
		wantScope int
	}{
		{"east /24", &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("10.1.7.0").To4()}, "127.0.1.1", 16},
		{"source /0: the resolver's address", &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 0, Address: net.IPv4zero.To4()}, "127.0.1.2", 0},
		{"IPv6 source /0", &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 0, Address: net.IPv6zero}, "127.0.1.2", 0},
		{"IPv4-mapped east /120", &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 120, Address: net.ParseIP("::ffff:10.1.7.0")}, "127.0.1.1", 96 + 16},
	} {
		r, _ := exchange(t, "udp", addr, query(tc.ecs))
		if r.Rcode != dns.RcodeSuccess || answer(r) != tc.want || scope(r) != tc.wantScope {
			t.Errorf("%s: rcode %s, answer %s, scope %d; want %s, scope %d", tc.name, dns.RcodeToString[r.Rcode], answer(r), scope(r), tc.want, tc.wantScope)
		}
	}
}

// clientSubnetOf is the ECS option of o, or nil.
func clientSubnetOf(o *dns.OPT) *dns.EDNS0_SUBNET {
	for _, e := range o.Option {
		if s, ok := e.(*dns.EDNS0_SUBNET); ok {
			return s
		}
	}
	return nil
}
