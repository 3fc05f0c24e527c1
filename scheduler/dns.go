package scheduler

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnsServer is the authoritative server of the CNAME zone, over UDP and TCP
// on one address.
type dnsServer struct {
	addr   string
	zone   string // fully qualified, lower case
	ttl    uint32
	log    *slog.Logger
	router *Scheduler
	// metrics counts the responses; nil counts nothing.
	metrics *metrics
	udp     *dns.Server
	tcp     *dns.Server
}

// newDNSServer is a server of zone that is not listening yet.
func newDNSServer(zone string, ttl time.Duration, log *slog.Logger, router *Scheduler) *dnsServer {
	return &dnsServer{zone: dns.Fqdn(strings.ToLower(zone)), ttl: uint32(ttl / time.Second), log: log, router: router, metrics: router.metrics}
}

// handler answers the zone and refuses every other name.
func (d *dnsServer) handler() dns.Handler {
	mux := dns.NewServeMux()
	mux.HandleFunc(d.zone, d.serve)
	mux.HandleFunc(".", d.refuse)
	return mux
}

func startDNS(addr, zone string, ttl time.Duration, log *slog.Logger, router *Scheduler) (*dnsServer, error) {
	d := newDNSServer(zone, ttl, log, router)
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("scheduler DNS listen tcp %s: %w", addr, err)
	}
	// UDP on the same port as TCP (which may have been chosen by the kernel).
	pc, err := net.ListenPacket("udp", tl.Addr().String())
	if err != nil {
		tl.Close()
		return nil, fmt.Errorf("scheduler DNS listen udp %s: %w", tl.Addr(), err)
	}
	d.addr = tl.Addr().String()
	mux := d.handler()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	// UDPSize is the read buffer: without it miekg/dns reads 512 bytes and
	// answers FORMERR to a larger query (EDNS padding, cookies).
	d.udp = &dns.Server{PacketConn: pc, Handler: mux, UDPSize: maxUDP, NotifyStartedFunc: notify}
	d.tcp = &dns.Server{Listener: tl, Handler: mux, NotifyStartedFunc: notify}
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				log.Debug("dns server stopped", "err", err)
			}
		}()
	}
	<-started
	<-started
	return d, nil
}

func (d *dnsServer) close() {
	_ = d.udp.Shutdown()
	_ = d.tcp.Shutdown()
}

func (d *dnsServer) soa() *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: d.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: d.ttl},
		Ns:      "ns1." + d.zone,
		Mbox:    "hostmaster." + d.zone,
		Serial:  1,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: d.ttl,
	}
}

// maxUDP is the EDNS buffer size the server offers and honours at most
// (the DNS flag day 2020 recommendation); without EDNS, 512.
const maxUDP = 1232

func (d *dnsServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.SetRcode(req, dns.RcodeFormatError)
		d.write(w, m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	opt := req.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		// RFC 6891 6.1.3: BADVERS, with an OPT of the version supported.
		m.SetRcode(req, dns.RcodeBadVers)
		m.SetEdns0(maxUDP, false)
		d.write(w, m)
		return
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		// The zone exists in class IN only (CHAOS queries such as
		// version.bind included).
		m.SetRcode(req, dns.RcodeRefused)
		d.write(w, m)
		return
	}
	switch {
	case name == d.zone && q.Qtype == dns.TypeSOA:
		m.Answer = append(m.Answer, d.soa())
	case name == d.zone && q.Qtype == dns.TypeNS:
		m.Answer = append(m.Answer, &dns.NS{Hdr: dns.RR_Header{Name: d.zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: d.ttl}, Ns: "ns1." + d.zone})
	case name == d.zone:
		m.Ns = append(m.Ns, d.soa())
	default:
		d.answer(w, m, q, opt)
	}
	size := 512
	if opt != nil {
		size = max(min(int(opt.UDPSize()), maxUDP), 512)
		m.SetEdns0(maxUDP, false)
		if ecs := clientSubnet(opt); ecs != nil {
			// Echo the option with the scope the answer holds for.
			m.IsEdns0().Option = append(m.IsEdns0().Option, ecs)
		}
	}
	if isUDP(w) {
		m.Truncate(size) // sets TC when the answer does not fit
	}
	d.write(w, m)
}

// answer fills the A or AAAA answer for a CNAME target: the nearest healthy
// nodes for the client (from EDNS Client Subnet when present, else the
// resolver's address).
func (d *dnsServer) answer(w dns.ResponseWriter, m *dns.Msg, q dns.Question, opt *dns.OPT) {
	client := netip.Addr{}
	ecs := clientSubnet(opt)
	mapped := false // an IPv4-mapped address sent as IPv6 (family 2)
	if ecs != nil && ecs.SourceNetmask > 0 {
		if a, ok := netip.AddrFromSlice(ecs.Address); ok {
			mapped = ecs.Family == 2 && a.Is4In6()
			client = a.Unmap()
		}
	} else if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		// No ECS, or a source prefix of 0 (the client opted out, RFC 7871
		// 7.1.2): the resolver's own address is the best guess.
		client = ap.Addr().Unmap()
	}
	_, loc, cands, err := d.router.route(strings.TrimSuffix(q.Name, "."), client, d.router.cfg.Answers*2)
	if err != nil {
		// "<node>.<cname>": one node's own name, for the HTTP mode.
		if ip, ok := d.router.nodeAddress(strings.TrimSuffix(q.Name, ".")); ok {
			if rr := d.record(q, ip); rr != nil {
				m.Answer = append(m.Answer, rr)
			} else {
				m.Ns = append(m.Ns, d.soa()) // NODATA
			}
			return
		}
		m.SetRcode(m, dns.RcodeNameError)
		m.Ns = append(m.Ns, d.soa())
		return
	}
	if ecs != nil {
		// The network the answer holds for (RFC 7871 7.2.1): it may be
		// longer than what the resolver sent when nested networks answer
		// differently. A client no source knows gets the default answer,
		// valid for exactly the subnet sent.
		// An answer placed by the resolver's address (source /0) holds for
		// every client of that resolver: scope 0.
		scope := uint8(loc.PrefixLen)
		switch {
		case ecs.SourceNetmask == 0:
			scope = 0
		case loc.PrefixLen == 0:
			scope = ecs.SourceNetmask
		case mapped:
			scope = uint8(min(96+loc.PrefixLen, 128)) // in IPv6 bits, as sent
		}
		ecs.SourceScope = scope
	}
	for _, c := range cands {
		if len(m.Answer) >= d.router.cfg.Answers {
			break
		}
		if ip, ok := hostIP(c.Node.HTTPAddress); ok {
			if rr := d.record(q, ip); rr != nil {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, d.soa()) // NODATA
	}
}

// record is the A or AAAA record answering q with ip, or nil when ip is
// not of the family q asks for.
func (d *dnsServer) record(q dns.Question, ip netip.Addr) dns.RR {
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: d.ttl}
	switch {
	case q.Qtype == dns.TypeA && ip.Is4():
		hdr.Rrtype = dns.TypeA
		return &dns.A{Hdr: hdr, A: ip.AsSlice()}
	case q.Qtype == dns.TypeAAAA && ip.Is6():
		hdr.Rrtype = dns.TypeAAAA
		return &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()}
	}
	return nil
}

// clientSubnet returns the request's EDNS Client Subnet option (RFC 7871),
// or nil.
func clientSubnet(opt *dns.OPT) *dns.EDNS0_SUBNET {
	if opt == nil {
		return nil
	}
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_SUBNET); ok {
			return e
		}
	}
	return nil
}

func (d *dnsServer) refuse(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeRefused)
	d.write(w, m)
}

// write sends m and counts it in the metrics.
func (d *dnsServer) write(w dns.ResponseWriter, m *dns.Msg) {
	if d.metrics != nil {
		d.metrics.countDNS(isUDP(w), m.Rcode)
	}
	_ = w.WriteMsg(m)
}

func isUDP(w dns.ResponseWriter) bool {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	return udp
}
