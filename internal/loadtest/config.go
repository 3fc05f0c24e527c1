package loadtest

import (
	"bufio"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-cdn/outpost/internal/names"
)

// Limits of a run. Every run is bounded in time and in requests.
const (
	MaxDuration    = time.Hour       // Config.Duration
	MaxRequests    = 1_000_000_000   // Config.Requests
	MaxDomains     = 10_000          // len(Config.Domains)
	MaxConcurrency = 10_000          // Config.Concurrency
	MaxURLs        = 100_000_000     // Config.URLs
	MaxRate        = 1_000_000       // Config.Rate, per second
	MaxTimeout     = 5 * time.Minute // Config.Timeout
)

// Defaults of the Config fields left at their zero value.
const (
	DefaultRequests     = 10_000_000          // Config.Requests
	DefaultConcurrency  = 64                  // Config.Concurrency
	DefaultBacklog      = 10_000              // Config.Backlog
	DefaultURLs         = 1000                // Config.URLs
	DefaultZipfS        = 1.1                 // Config.ZipfS
	DefaultPathTemplate = "/{size}.bin?v={i}" // Config.PathTemplate
	DefaultSizeMix      = "1k:100"            // Config.SizeMix, as ParseSizeMix reads it
	DefaultCNAMESuffix  = "cdn.outpost.test"  // Config.CNAMESuffix
	DefaultTimeout      = 10 * time.Second    // Config.Timeout
)

// How a request's target address is picked among several.
const (
	PickRoundRobin = "round-robin" // in turn, across all workers
	PickRandom     = "random"      // uniformly at random
	PickFirst      = "first"       // always the first (the scheduler's best)
)

// How the edge addresses are found.
const (
	ResolveNone = ""     // Config.Edges
	ResolveDNS  = "dns"  // A query for the domain's CNAME to Config.DNSServer
	ResolveGRPC = "grpc" // SchedulerService.Resolve on Config.Scheduler
)

// Domain is one accelerated domain to request.
type Domain struct {
	// Name is the TLS server name and Host header.
	Name string
	// CNAME is the name asked of the scheduler's DNS. Empty means
	// Name + "." + Config.CNAMESuffix, the CNAME the controller gives.
	CNAME string
}

// SizeClass is one class of object sizes in the size mix: Label is put into
// the path template's {size}, and Weight is its share of the requests.
type SizeClass struct {
	Label  string
	Weight float64
}

// Config describes a load test. Zero counts, sizes, strings and durations
// take the defaults above; zero ratios (NewConnRatio, ResumeRatio) are 0,
// and a zero Rate selects the closed model.
type Config struct {
	// Edges are fixed target addresses, host:port. Exclusive with Resolve.
	Edges []string
	// Pick chooses among several addresses: PickRoundRobin (default with
	// Edges), PickRandom or PickFirst (default with Resolve).
	Pick string

	// Resolve finds the edges through the scheduler: ResolveDNS or
	// ResolveGRPC.
	Resolve string
	// DNSServer is the scheduler's DNS address, host:port (ResolveDNS).
	DNSServer string
	// Scheduler is the scheduler's gRPC address, host:port (ResolveGRPC).
	Scheduler string
	// ClientSubnet places the client: the EDNS Client Subnet option of DNS
	// queries, or the client_ip (its address) of Resolve. Optional.
	ClientSubnet netip.Prefix
	// CNAMESuffix builds a domain's CNAME when Domain.CNAME is empty.
	CNAMESuffix string
	// Port is the edge port used with the addresses DNS answers (DNS has no
	// ports): default 443 for https, 80 for http.
	Port int

	// Domains are the domains requested, 1 to MaxDomains.
	Domains []Domain
	// URLs is how many URL ranks there are per size class; the Zipf curve
	// picks rank 0 most often.
	URLs int
	// ZipfS is the Zipf exponent s, > 1 (math/rand/v2's Zipf with v = 1).
	ZipfS float64
	// PathTemplate is the request path (and query): {i} is replaced by the
	// URL rank, {size} by the size class label.
	PathTemplate string
	// SizeMix are the size classes and their shares of the requests.
	SizeMix []SizeClass

	// Scheme is "https" (default) or "http".
	Scheme string
	// HTTP2 offers HTTP/2 (ALPN h2) as well as HTTP/1.1 over HTTPS.
	HTTP2 bool
	// Insecure skips the verification of the edges' certificates.
	Insecure bool
	// RootCAs verify the edges' certificates; nil means the system's.
	RootCAs *x509.CertPool
	// NewConnRatio is the share of requests sent on a new connection of
	// their own (closed after the response); the rest use kept-alive
	// connections. 0 to 1.
	NewConnRatio float64
	// ResumeRatio is the share of new connections' TLS handshakes that offer
	// a cached session ticket (when the worker has one for that edge and
	// domain); the rest make a full handshake. 0 to 1.
	ResumeRatio float64

	// Rate is the open model's arrival rate per second; 0 selects the
	// closed model.
	Rate float64
	// Concurrency is the number of workers, that is the bound on requests
	// in flight. Default DefaultConcurrency.
	Concurrency int
	// Backlog is how many due requests may wait for a worker in the open
	// model; more count as "backlog" errors. Default DefaultBacklog.
	Backlog int
	// Duration bounds the run; required, at most MaxDuration.
	Duration time.Duration
	// Requests bounds the number of requests; default DefaultRequests.
	Requests int64
	// Timeout bounds each request (and resolution), from its actual send
	// time. Default DefaultTimeout.
	Timeout time.Duration

	// AllowRemote permits addresses outside loopback (127.0.0.0/8, ::1).
	AllowRemote bool
	// Seed seeds the workers' random choices; 0 picks one at random.
	Seed uint64
	// Progress receives a line every second (rate, p99 so far, errors);
	// nil for none.
	Progress io.Writer
}

// fill sets the defaults and checks the configuration.
func (c *Config) fill() error {
	if c.Scheme == "" {
		c.Scheme = "https"
	}
	if c.Scheme != "https" && c.Scheme != "http" {
		return fmt.Errorf("scheme must be https or http, not %q", c.Scheme)
	}
	if c.HTTP2 && c.Scheme != "https" {
		return errors.New("HTTP/2 needs https (h2c is not supported)")
	}
	switch c.Resolve {
	case ResolveNone:
		if len(c.Edges) == 0 {
			return errors.New("no target: give edge addresses or a resolution through the scheduler")
		}
		if c.Pick == "" {
			c.Pick = PickRoundRobin
		}
	case ResolveDNS, ResolveGRPC:
		if len(c.Edges) > 0 {
			return errors.New("edge addresses and resolution through the scheduler are exclusive")
		}
		if c.Resolve == ResolveDNS && c.DNSServer == "" {
			return errors.New("DNS resolution needs the scheduler's DNS address")
		}
		if c.Resolve == ResolveGRPC && c.Scheduler == "" {
			return errors.New("gRPC resolution needs the scheduler's gRPC address")
		}
		if c.Pick == "" {
			c.Pick = PickFirst
		}
	default:
		return fmt.Errorf("resolution must be dns or grpc, not %q", c.Resolve)
	}
	switch c.Pick {
	case PickRoundRobin, PickRandom, PickFirst:
	default:
		return fmt.Errorf("pick must be %s, %s or %s, not %q", PickRoundRobin, PickRandom, PickFirst, c.Pick)
	}
	for _, e := range c.Edges {
		if _, _, err := splitHostPort(e); err != nil {
			return fmt.Errorf("edge address %q: %w", e, err)
		}
	}
	if c.CNAMESuffix == "" {
		c.CNAMESuffix = DefaultCNAMESuffix
	}
	if c.Port == 0 {
		c.Port = 443
		if c.Scheme == "http" {
			c.Port = 80
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("port %d is out of range", c.Port)
	}
	if c.ClientSubnet.IsValid() {
		c.ClientSubnet = c.ClientSubnet.Masked()
	}

	if len(c.Domains) == 0 {
		return errors.New("no domain to request")
	}
	if len(c.Domains) > MaxDomains {
		return fmt.Errorf("%d domains: at most %d", len(c.Domains), MaxDomains)
	}
	for i := range c.Domains {
		d := &c.Domains[i]
		name, err := checkDomainName(d.Name)
		if err != nil {
			return err
		}
		d.Name = name
		if d.CNAME == "" {
			d.CNAME = names.CNAME(name, c.CNAMESuffix)
		} else if d.CNAME, err = checkDomainName(d.CNAME); err != nil {
			return err
		}
	}

	if c.URLs == 0 {
		c.URLs = DefaultURLs
	}
	if c.URLs < 1 || c.URLs > MaxURLs {
		return fmt.Errorf("URL count %d: want 1 to %d", c.URLs, MaxURLs)
	}
	if c.ZipfS == 0 {
		c.ZipfS = DefaultZipfS
	}
	if !(c.ZipfS > 1) || math.IsInf(c.ZipfS, 0) {
		return fmt.Errorf("Zipf exponent s must be greater than 1, not %g", c.ZipfS)
	}
	if c.PathTemplate == "" {
		c.PathTemplate = DefaultPathTemplate
	}
	if len(c.SizeMix) == 0 {
		mix, err := ParseSizeMix(DefaultSizeMix)
		if err != nil {
			return err
		}
		c.SizeMix = mix
	}
	for _, s := range c.SizeMix {
		if !validLabel(s.Label) || !(s.Weight > 0) || math.IsInf(s.Weight, 0) {
			return fmt.Errorf("size class %q with weight %g: want a label of letters, digits, '.', '_' or '-' and a positive weight", s.Label, s.Weight)
		}
	}
	tmpl, err := parseTemplate(c.PathTemplate)
	if err != nil {
		return err
	}
	if c.URLs > 1 && !tmpl.hasRank {
		return fmt.Errorf("path template %q has no {i}, so its %d URLs would all be the same", c.PathTemplate, c.URLs)
	}
	if len(c.SizeMix) > 1 && !tmpl.hasSize {
		return fmt.Errorf("path template %q has no {size}, so the size mix would not show", c.PathTemplate)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"new connection ratio", c.NewConnRatio}, {"resume ratio", c.ResumeRatio}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%s %g: want 0 to 1", r.name, r.v)
		}
	}

	if c.Rate < 0 || c.Rate > MaxRate || math.IsNaN(c.Rate) {
		return fmt.Errorf("rate %g: want 0 (closed model) to %d per second", c.Rate, MaxRate)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		return fmt.Errorf("concurrency %d: want 1 to %d", c.Concurrency, MaxConcurrency)
	}
	if c.Backlog == 0 {
		c.Backlog = DefaultBacklog
	}
	if c.Backlog < 1 || c.Backlog > 10_000_000 {
		return fmt.Errorf("backlog %d: want 1 to 10000000", c.Backlog)
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		return fmt.Errorf("duration %s: want more than 0 and at most %s", c.Duration, MaxDuration)
	}
	if c.Requests == 0 {
		c.Requests = DefaultRequests
	}
	if c.Requests < 1 || c.Requests > MaxRequests {
		return fmt.Errorf("request count %d: want 1 to %d", c.Requests, MaxRequests)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < 0 || c.Timeout > MaxTimeout {
		return fmt.Errorf("timeout %s: want at most %s", c.Timeout, MaxTimeout)
	}
	return nil
}

// checkDomainName normalises a host name (lower case, no trailing dot) and
// rejects what cannot be a TLS server name.
func checkDomainName(s string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	if n == "" || len(n) > 253 || strings.ContainsAny(n, " \t/:@?#[]%*") {
		return "", fmt.Errorf("%q is not a host name", s)
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return "", fmt.Errorf("%q is an IP address, not a domain", s)
	}
	return n, nil
}

func validLabel(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ParseSizeMix parses a size mix such as "1k:80,100k:20": comma-separated
// LABEL:WEIGHT pairs (a missing weight is 1). The weights are relative
// shares of the requests; they need not add up to 100.
func ParseSizeMix(s string) ([]SizeClass, error) {
	var out []SizeClass
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		label, w, hasWeight := strings.Cut(part, ":")
		weight := 1.0
		if hasWeight {
			v, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("size mix %q: weight %q is not a positive number", s, w)
			}
			weight = v
		}
		label = strings.TrimSpace(label)
		if !validLabel(label) {
			return nil, fmt.Errorf("size mix %q: label %q: use letters, digits, '.', '_' or '-'", s, label)
		}
		if seen[label] {
			return nil, fmt.Errorf("size mix %q: %q is listed twice", s, label)
		}
		seen[label] = true
		out = append(out, SizeClass{Label: label, Weight: weight})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("size mix %q is empty", s)
	}
	return out, nil
}

// ReadDomains reads a domain list: one domain per line, optionally followed
// by its CNAME; blank lines and lines starting with '#' are skipped.
func ReadDomains(r io.Reader) ([]Domain, error) {
	var out []Domain
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) > 2 {
			return nil, fmt.Errorf("line %d: want DOMAIN [CNAME], got %q", line, text)
		}
		d := Domain{Name: f[0]}
		if len(f) == 2 {
			d.CNAME = f[1]
		}
		if _, err := checkDomainName(d.Name); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, d)
		if len(out) > MaxDomains {
			return nil, fmt.Errorf("more than %d domains", MaxDomains)
		}
	}
	return out, sc.Err()
}

// ReadDomainsFile is ReadDomains on a file.
func ReadDomainsFile(path string) ([]Domain, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := ReadDomains(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// PatternDomains makes count domains from a pattern with one %d, numbered
// from 1: "d%d.example.test" gives d1.example.test, d2.example.test, ...
func PatternDomains(pattern string, count int) ([]Domain, error) {
	if strings.Count(pattern, "%d") != 1 || strings.Count(pattern, "%") != 1 {
		return nil, fmt.Errorf("domain pattern %q must contain exactly one %%d and no other %%", pattern)
	}
	if count < 1 || count > MaxDomains {
		return nil, fmt.Errorf("domain count %d: want 1 to %d", count, MaxDomains)
	}
	out := make([]Domain, count)
	for i := range out {
		out[i].Name = fmt.Sprintf(pattern, i+1)
	}
	return out, nil
}

// pathTemplate is a parsed path template.
type pathTemplate struct {
	parts            []string // literal text, with placeholders as "\x00i" and "\x00size"
	hasRank, hasSize bool
}

// parseTemplate splits a path template into literals and placeholders.
func parseTemplate(s string) (pathTemplate, error) {
	var t pathTemplate
	if !strings.HasPrefix(s, "/") {
		return t, fmt.Errorf("path template %q must start with /", s)
	}
	rest := s
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, rest)
			break
		}
		if i > 0 {
			t.parts = append(t.parts, rest[:i])
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return t, fmt.Errorf("path template %q: unclosed {", s)
		}
		switch name := rest[i+1 : i+j]; name {
		case "i":
			t.hasRank = true
			t.parts = append(t.parts, "\x00i")
		case "size":
			t.hasSize = true
			t.parts = append(t.parts, "\x00size")
		default:
			return t, fmt.Errorf("path template %q: unknown placeholder {%s}; use {i} and {size}", s, name)
		}
		rest = rest[i+j+1:]
	}
	if strings.ContainsAny(s, " \t\r\n#") {
		return t, fmt.Errorf("path template %q contains a space or '#'", s)
	}
	return t, nil
}

// expand fills in the template; it returns the path and the raw query.
func (t pathTemplate) expand(rank int, size string) (path, query string) {
	var b strings.Builder
	for _, p := range t.parts {
		switch p {
		case "\x00i":
			b.WriteString(strconv.Itoa(rank))
		case "\x00size":
			b.WriteString(size)
		default:
			b.WriteString(p)
		}
	}
	path, query, _ = strings.Cut(b.String(), "?")
	return path, query
}

// splitHostPort splits host:port and checks the port.
func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	if host == "" {
		return "", 0, errors.New("no host")
	}
	return host, p, nil
}
