package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// negativeTTL is how long a failed resolution is remembered, so that a
// broken scheduler is not asked again by every request.
const negativeTTL = time.Second

// minTTL is the shortest time a resolution is cached, even when the
// scheduler says 0.
const minTTL = time.Second

// resolveError marks a resolution failure: error kind "resolve".
type resolveError struct{ err error }

func (e *resolveError) Error() string { return "resolve: " + e.err.Error() }
func (e *resolveError) Unwrap() error { return e.err }

// lookupFunc resolves one domain to edge addresses (host:port) and the time
// they may be cached.
type lookupFunc func(ctx context.Context, d Domain) ([]string, time.Duration, error)

// targets finds the edge address of a request.
type targets struct {
	cfg     *Config
	static  []string   // Config.Edges, or nil
	lookup  lookupFunc // with Resolve
	entries []entry    // per domain, with Resolve
	rr      atomic.Uint64
	closers []func() error

	lookups, failures atomic.Int64
}

// entry is a domain's cached resolution.
type entry struct {
	mu      sync.Mutex
	addrs   []string
	err     error
	expires time.Time
}

func newTargets(cfg *Config) (*targets, error) {
	t := &targets{cfg: cfg}
	switch cfg.Resolve {
	case ResolveNone:
		t.static = cfg.Edges
		return t, nil
	case ResolveDNS:
		t.lookup = dnsLookup(cfg)
	case ResolveGRPC:
		dialer := guardedDialer(cfg.AllowRemote, cfg.Timeout)
		conn, err := grpc.NewClient(cfg.Scheduler,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUserAgent("outpost-loadtest"),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, "tcp", addr)
			}))
		if err != nil {
			return nil, fmt.Errorf("scheduler address %q: %w", cfg.Scheduler, err)
		}
		t.closers = append(t.closers, conn.Close)
		t.lookup = grpcLookup(cfg, outpostv1.NewSchedulerServiceClient(conn))
	}
	t.entries = make([]entry, len(cfg.Domains))
	return t, nil
}

func (t *targets) close() {
	for _, c := range t.closers {
		_ = c()
	}
}

// pick returns the address to send a request for domain d to.
func (t *targets) pick(ctx context.Context, d int, rng *rand.Rand) (string, error) {
	addrs := t.static
	if addrs == nil {
		var err error
		if addrs, err = t.resolve(ctx, d); err != nil {
			return "", err
		}
	}
	switch {
	case len(addrs) == 1 || t.cfg.Pick == PickFirst:
		return addrs[0], nil
	case t.cfg.Pick == PickRandom:
		return addrs[rng.IntN(len(addrs))], nil
	default:
		return addrs[(t.rr.Add(1)-1)%uint64(len(addrs))], nil
	}
}

// resolve returns domain d's addresses, from the cache while its TTL lasts.
// One lookup per domain runs at a time; the others wait for it.
func (t *targets) resolve(ctx context.Context, d int) ([]string, error) {
	e := &t.entries[d]
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); now.Before(e.expires) {
		return e.addrs, e.err
	}
	t.lookups.Add(1)
	addrs, ttl, err := t.lookup(ctx, t.cfg.Domains[d])
	if err == nil && len(addrs) == 0 {
		err = errors.New("no edge node in the answer")
	}
	if err != nil {
		t.failures.Add(1)
		err = &resolveError{fmt.Errorf("%s: %w", t.cfg.Domains[d].Name, err)}
		if ctx.Err() != nil {
			// The request ran out of time: do not remember it.
			return nil, err
		}
		e.addrs, e.err, e.expires = nil, err, time.Now().Add(negativeTTL)
		return nil, err
	}
	e.addrs, e.err, e.expires = addrs, nil, time.Now().Add(max(ttl, minTTL))
	return addrs, nil
}

// dnsLookup asks the scheduler's DNS for the A records of a domain's CNAME,
// with the client subnet as EDNS Client Subnet, over UDP and, when the
// answer is truncated, TCP. The edge port is Config.Port.
func dnsLookup(cfg *Config) lookupFunc {
	dialer := guardedDialer(cfg.AllowRemote, cfg.Timeout)
	udp := &dns.Client{Net: "udp", Dialer: dialer, UDPSize: 1232}
	tcp := &dns.Client{Net: "tcp", Dialer: dialer}
	port := strconv.Itoa(cfg.Port)
	return func(ctx context.Context, d Domain) ([]string, time.Duration, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(d.CNAME), dns.TypeA)
		m.RecursionDesired = false
		m.SetEdns0(1232, false)
		if p := cfg.ClientSubnet; p.IsValid() {
			ecs := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()}
			if p.Addr().Is6() {
				ecs.Family = 2
			}
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, ecs)
		}
		in, _, err := udp.ExchangeContext(ctx, m, cfg.DNSServer)
		if err == nil && in.Truncated {
			in, _, err = tcp.ExchangeContext(ctx, m, cfg.DNSServer)
		}
		if err != nil {
			return nil, 0, err
		}
		if in.Rcode != dns.RcodeSuccess {
			return nil, 0, fmt.Errorf("DNS %s for %s", dns.RcodeToString[in.Rcode], d.CNAME)
		}
		var addrs []string
		ttl := time.Duration(-1)
		for _, rr := range in.Answer {
			a, ok := rr.(*dns.A)
			if !ok {
				continue
			}
			addrs = append(addrs, net.JoinHostPort(a.A.String(), port))
			if rt := time.Duration(a.Hdr.Ttl) * time.Second; ttl < 0 || rt < ttl {
				ttl = rt
			}
		}
		if len(addrs) == 0 {
			return nil, 0, fmt.Errorf("no A record for %s", d.CNAME)
		}
		return addrs, ttl, nil
	}
}

// grpcLookup asks SchedulerService.Resolve for a domain's edge nodes, best
// first, and takes their HTTPS (or HTTP) addresses.
func grpcLookup(cfg *Config, client outpostv1.SchedulerServiceClient) lookupFunc {
	clientIP := ""
	if cfg.ClientSubnet.IsValid() {
		clientIP = cfg.ClientSubnet.Addr().String()
	}
	return func(ctx context.Context, d Domain) ([]string, time.Duration, error) {
		resp, err := client.Resolve(ctx, &outpostv1.ResolveRequest{Domain: d.Name, ClientIp: clientIP})
		if err != nil {
			return nil, 0, err
		}
		var addrs []string
		for _, c := range resp.GetCandidates() {
			a := c.GetHttpsAddress()
			if cfg.Scheme == "http" {
				a = c.GetHttpAddress()
			}
			if a != "" {
				addrs = append(addrs, a)
			}
		}
		return addrs, time.Duration(resp.GetTtlSeconds()) * time.Second, nil
	}
}
