package node

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-cdn/outpost/internal/certs"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// desired is the config as the controller sent it: a snapshot with the
// changes after it merged in. It is immutable; merge returns a new one.
type desired struct {
	revision   int64
	snapshot   bool // the last merged message was a snapshot
	purgeFloor int64
	domains    map[string]*outpostv1.Domain
	certs      map[string]*outpostv1.CertificateBundle
	purges     map[string]*outpostv1.Purge
	prefetches map[string]*outpostv1.Prefetch
	// draining are the nodes an operator drained.
	draining map[string]bool
	// gossipKeys is the controller's gossip keyring (nil: none).
	gossipKeys *outpostv1.GossipKeyring
	// gossipSeeds are join addresses from the last snapshot.
	gossipSeeds []string
	// challenges are the pending ACME HTTP-01 challenge responses, by
	// token (acme.go). They are short-lived and not persisted.
	challenges map[string]*outpostv1.AcmeChallenge
}

// merge applies one stream message.
func (d *desired) merge(msg *outpostv1.StreamConfigResponse) *desired {
	out := &desired{revision: msg.GetRevision(), snapshot: msg.GetSnapshot(), purgeFloor: msg.GetPurgeFloor(),
		domains: map[string]*outpostv1.Domain{}, certs: map[string]*outpostv1.CertificateBundle{},
		purges: map[string]*outpostv1.Purge{}, prefetches: map[string]*outpostv1.Prefetch{},
		draining: map[string]bool{}, gossipKeys: msg.GetGossipKeyring(), gossipSeeds: msg.GetGossipSeeds(),
		challenges: map[string]*outpostv1.AcmeChallenge{}}
	if !msg.GetSnapshot() && d != nil {
		out.purgeFloor = d.purgeFloor
		out.gossipSeeds = d.gossipSeeds
		if out.gossipKeys == nil {
			out.gossipKeys = d.gossipKeys
		}
		for k := range d.draining {
			out.draining[k] = true
		}
		for k, v := range d.domains {
			out.domains[k] = v
		}
		for k, v := range d.certs {
			out.certs[k] = v
		}
		for k, v := range d.purges {
			out.purges[k] = v
		}
		for k, v := range d.prefetches {
			out.prefetches[k] = v
		}
		for k, v := range d.challenges {
			out.challenges[k] = v
		}
	}
	for _, ch := range msg.GetAcmeChallenges() {
		out.challenges[ch.GetToken()] = ch
	}
	for _, t := range msg.GetRemovedAcmeChallenges() {
		delete(out.challenges, t)
	}
	for _, n := range msg.GetDrainingNodes() {
		out.draining[n] = true
	}
	for _, n := range msg.GetUndrainedNodes() {
		delete(out.draining, n)
	}
	for _, p := range msg.GetPurges() {
		out.purges[p.GetTaskId()] = p
	}
	for _, id := range msg.GetRemovedPurges() {
		delete(out.purges, id)
	}
	for _, p := range msg.GetPrefetches() {
		out.prefetches[p.GetTaskId()] = p
	}
	for _, id := range msg.GetRemovedPrefetches() {
		delete(out.prefetches, id)
	}
	for _, dom := range msg.GetDomains() {
		out.domains[dom.GetName()] = dom
	}
	for _, c := range msg.GetCertificates() {
		out.certs[c.GetId()] = c
	}
	for _, n := range msg.GetRemovedDomains() {
		delete(out.domains, n)
	}
	for _, id := range msg.GetRemovedCertificates() {
		delete(out.certs, id)
	}
	return out
}

// state is an applied config: built, validated, then swapped in whole.
// It is immutable, so request handling reads it without locks.
type state struct {
	revision int64
	source   *desired
	// sites by accelerated name, wildcards as "*.example.com".
	sites map[string]*site
	// byCNAME finds a (non-wildcard) site by its CNAME, for requests the
	// scheduler's HTTP mode redirected to "<node>.<cname>".
	byCNAME map[string]*site
	// certs are the parsed certificates, by ID, with a hash of their PEM so
	// the next build can reuse them.
	certs map[string]*parsedCert
	// challenges are the ACME HTTP-01 challenge responses the node
	// answers, by token (acme.go).
	challenges map[string]*outpostv1.AcmeChallenge
}

type parsedCert struct {
	bundle *outpostv1.CertificateBundle // what it was parsed from
	sum    [32]byte
	// cert is what handshakes present. Its Leaf is dropped once read
	// (crypto/tls's server does not use it): a parsed x509.Certificate is
	// a few kilobytes of pointers per certificate, which with 10,000 or
	// 100,000 loaded is memory, and work for every GC cycle.
	cert     *tls.Certificate
	notAfter time.Time
	names    []string // the names it covers (certs.Names)
}

// site is one accelerated domain as the edge serves it.
type site struct {
	domain   *outpostv1.Domain
	cert     *tls.Certificate // nil when HTTPS is off
	notAfter time.Time        // cert's
	origins  []origin
	tls      originTLS
}

// origin is one origin server of a site.
type origin struct {
	addr   string // host:port to dial
	host   string // the origin's name (or IP) for SNI defaults
	port   uint32
	isIP   bool
	isOSS  bool
	backup bool
	weight uint32
}

var emptyState = &state{sites: map[string]*site{}, byCNAME: map[string]*site{}, certs: map[string]*parsedCert{}, challenges: map[string]*outpostv1.AcmeChallenge{}}

// lookup finds the site serving host (normalised): an exact name first,
// then the one-label wildcard above it.
func (s *state) lookup(host string) *site {
	if st, ok := s.sites[host]; ok {
		return st
	}
	if w := names.WildcardOf(host); w != "" {
		return s.sites[w]
	}
	return nil
}

// lookupCNAME finds the site for a host of the form "<cname>" or
// "<label>.<cname>" (the scheduler's HTTP redirects). Wildcard domains are
// not reachable this way: the redirect would lose the client's subdomain.
func (s *state) lookupCNAME(host string) *site {
	if st, ok := s.byCNAME[host]; ok {
		return st
	}
	if _, rest, ok := strings.Cut(host, "."); ok {
		return s.byCNAME[rest]
	}
	return nil
}

// build turns a desired config into a state, reusing prev's parsed
// certificates. Any error rejects the whole config (the node NACKs it and
// keeps serving prev).
func build(d *desired, prev *state) (*state, error) {
	st := &state{revision: d.revision, source: d, sites: make(map[string]*site, len(d.domains)), byCNAME: map[string]*site{}, certs: make(map[string]*parsedCert, len(d.certs)),
		challenges: buildChallenges(d.challenges)}
	for id, b := range d.certs {
		p, ok := prev.certs[id]
		if ok && p.bundle == b {
			// The same message, carried over by merge: most changes (a
			// purge, a domain setting) leave every certificate alone, and
			// hashing 100,000 of them per change would cost a CPU-second.
			st.certs[id] = p
			continue
		}
		sum := sha256.Sum256([]byte(b.GetCertificatePem() + "\x00" + b.GetPrivateKeyPem()))
		if ok && p.sum == sum {
			q := *p
			q.bundle = b
			st.certs[id] = &q
			continue
		}
		c, err := tls.X509KeyPair([]byte(b.GetCertificatePem()), []byte(b.GetPrivateKeyPem()))
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %v", id, err)
		}
		pc := &parsedCert{bundle: b, sum: sum, cert: &c, notAfter: c.Leaf.NotAfter, names: certs.Names(c.Leaf)}
		c.Leaf = nil
		st.certs[id] = pc
	}
	for name, dom := range d.domains {
		if n, err := names.Domain(name); err != nil || n != name {
			return nil, fmt.Errorf("domain %q: invalid name", name)
		}
		if dom.GetStatus() == outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE {
			continue // disabled: not served
		}
		s := &site{domain: dom}
		if h := dom.GetHttps(); h.GetEnabled() {
			pc, ok := st.certs[h.GetCertificateId()]
			if !ok {
				return nil, fmt.Errorf("domain %s: certificate %s is missing", name, h.GetCertificateId())
			}
			if !certs.CoversNames(pc.names, name) {
				return nil, fmt.Errorf("domain %s: certificate %s does not cover it", name, h.GetCertificateId())
			}
			s.cert, s.notAfter = pc.cert, pc.notAfter
		}
		origins, err := buildOrigins(dom.GetOrigins())
		if err != nil {
			return nil, fmt.Errorf("domain %s: %v", name, err)
		}
		s.origins = origins
		if s.tls, err = buildOriginTLS(dom.GetOriginSettings()); err != nil {
			return nil, fmt.Errorf("domain %s: origin CA: %v", name, err)
		}
		st.sites[name] = s
		if c := names.Normalize(dom.GetCname()); c != "" && !names.IsWildcard(name) {
			st.byCNAME[c] = s
		}
	}
	return st, nil
}

func buildOrigins(in []*outpostv1.Origin) ([]origin, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("no origins")
	}
	out := make([]origin, 0, len(in))
	for _, o := range in {
		port := o.GetPort()
		if port == 0 {
			port = 80
		}
		host := o.GetAddress()
		ip := net.ParseIP(host)
		if host == "" {
			return nil, fmt.Errorf("origin without address")
		}
		out = append(out, origin{
			addr:   net.JoinHostPort(host, strconv.Itoa(int(port))),
			host:   host,
			port:   port,
			isIP:   ip != nil,
			isOSS:  o.GetType() == outpostv1.OriginType_ORIGIN_TYPE_OSS,
			backup: o.GetPriority() == outpostv1.OriginPriority_ORIGIN_PRIORITY_BACKUP,
			weight: max(o.GetWeight(), 1),
		})
	}
	return out, nil
}
