package node

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-cdn/outpost/internal/certs"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Origin timeouts. A failed connect or TLS handshake moves on to the next
// origin; a slow response is answered 504.
const (
	originDialTimeout    = 5 * time.Second
	originTLSTimeout     = 5 * time.Second
	originHeaderTimeout  = 30 * time.Second
	originIdleTimeout    = 90 * time.Second
	originIdlePerOrigin  = 64
	unknownOriginFailure = "other"
)

// originTLS is how a site talks TLS to its origins.
type originTLS struct {
	sni        string // configured origin SNI; "" for the per-origin default
	skipVerify bool
	roots      *x509.CertPool // nil: system roots
	rootsSum   [32]byte
}

func buildOriginTLS(o *outpostv1.OriginSettings) (originTLS, error) {
	t := originTLS{skipVerify: o.GetSkipVerify()}
	if o.GetSni().GetEnabled() {
		t.sni = o.GetSni().GetValue()
	}
	if pemText := o.GetTrustedCaPem(); pemText != "" {
		pool, err := certs.ParseCAs(pemText)
		if err != nil {
			return t, err
		}
		t.roots, t.rootsSum = pool, sha256.Sum256([]byte(pemText))
	}
	return t, nil
}

// transportKey identifies a connection pool. Everything that changes what a
// connection is (address, scheme, SNI, trust) is in the key, so two domains
// on one origin IP with different SNI never share a connection.
type transportKey struct {
	scheme     string
	addr       string
	serverName string
	skipVerify bool
	rootsSum   [32]byte
}

// transports are the node's origin connection pools, kept across config
// changes.
type transports struct {
	mu sync.Mutex
	m  map[transportKey]*http.Transport
}

func (t *transports) get(k transportKey, roots *x509.CertPool) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.m[k]; ok {
		return tr
	}
	d := &net.Dialer{Timeout: originDialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // never an environment proxy
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   originTLSTimeout,
		ResponseHeaderTimeout: originHeaderTimeout,
		IdleConnTimeout:       originIdleTimeout,
		MaxIdleConnsPerHost:   originIdlePerOrigin,
		DisableCompression:    true, // pass encodings through untouched
		TLSClientConfig: &tls.Config{
			ServerName:         k.serverName,
			RootCAs:            roots,
			InsecureSkipVerify: k.skipVerify, //nolint:gosec // per-domain operator choice for private origins
			MinVersion:         tls.VersionTLS12,
		},
	}
	if t.m == nil {
		t.m = map[transportKey]*http.Transport{}
	}
	t.m[k] = tr
	return tr
}

func (t *transports) closeIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.m {
		tr.CloseIdleConnections()
	}
}

type proxyCtxKey struct{}

// proxyTarget is what the reverse proxy needs to know about a request.
type proxyTarget struct {
	site   *site
	host   string // the client's Host, normalised
	scheme string // the client's scheme
}

// newReverseProxy returns the node's one reverse proxy; the site of each
// request rides in its context.
func (n *Node) newReverseProxy() *httputil.ReverseProxy {
	via := n.via
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// SetXForwarded sets X-Forwarded-For from the connection only;
			// Rewrite has already dropped what the client sent.
			pr.SetXForwarded()
			if t, ok := pr.In.Context().Value(proxyCtxKey{}).(*proxyTarget); ok {
				// r.TLS is nil (the node terminates TLS itself): say it here.
				pr.Out.Header.Set("X-Forwarded-Proto", t.scheme)
			}
			pr.Out.Header.Add("Via", via)
		},
		Transport: &originTripper{n: n},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Add("Via", via)
			resp.Header.Set("X-Cache", xMiss) // not cacheable: straight from the origin
			return nil
		},
		ErrorHandler: n.originError,
		ErrorLog:     log.New(discard{}, "", 0),
		BufferPool:   &copyBuffers,
	}
}

func (n *Node) proxy(w http.ResponseWriter, r *http.Request, s *site, host, scheme string) {
	ctx := context.WithValue(r.Context(), proxyCtxKey{}, &proxyTarget{site: s, host: host, scheme: scheme})
	n.rp.ServeHTTP(w, r.WithContext(ctx))
}

// originError answers a failed origin fetch: 504 for a timeout, 502
// otherwise, without internal details.
func (n *Node) originError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	domain := unknownDomain
	if t, ok := r.Context().Value(proxyCtxKey{}).(*proxyTarget); ok {
		domain = t.site.domain.GetName()
	}
	n.log.Warn("origin fetch failed", "domain", domain, "path", r.URL.Path, "err", err)
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		http.Error(w, "origin timed out\n", http.StatusGatewayTimeout)
		return
	}
	http.Error(w, "origin unreachable\n", http.StatusBadGateway)
}

// originTripper sends a request to the site's origins: primaries in
// weighted random order, then backups, moving on when an origin cannot be
// reached.
type originTripper struct{ n *Node }

func (o *originTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	t, ok := req.Context().Value(proxyCtxKey{}).(*proxyTarget)
	if !ok {
		return nil, errors.New("no proxy target")
	}
	s := t.site
	var lastErr error
	for i, org := range attemptOrder(s.origins) {
		if i > 0 && !canRetry(req, lastErr) {
			break
		}
		scheme := originScheme(s.domain.GetOriginSettings().GetProtocolPolicy(), t.scheme)
		out := req.Clone(req.Context())
		out.URL.Scheme = scheme
		out.URL.Host = net.JoinHostPort(org.host, strconv.Itoa(int(originPort(org.port, scheme))))
		out.Host = originHost(s, org, t.host)
		key := transportKey{scheme: scheme, addr: out.URL.Host, skipVerify: s.tls.skipVerify, rootsSum: s.tls.rootsSum}
		if scheme == "https" {
			key.serverName = originSNI(s, org)
		}
		start := time.Now()
		resp, err := o.n.transports.get(key, s.tls.roots).RoundTrip(out)
		if err == nil {
			o.n.metrics.origin(s.domain.GetName(), time.Since(start))
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		o.n.metrics.originErrors.WithLabelValues(s.domain.GetName(), failureKind(err)).Inc()
		lastErr = err
	}
	return nil, lastErr
}

// originScheme applies the origin protocol policy.
func originScheme(p outpostv1.OriginProtocolPolicy, client string) string {
	switch p {
	case outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTP:
		return "http"
	case outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTPS:
		return "https"
	}
	return client
}

// originPort pairs the standard ports with the scheme (an origin given as
// port 80 is reached on 443 for HTTPS and the other way round); any other
// port, which the operator allowed, is used as it is.
func originPort(port uint32, scheme string) uint32 {
	switch {
	case port == 80 && scheme == "https":
		return 443
	case port == 443 && scheme == "http":
		return 80
	}
	return port
}

// originSNI is the server name sent to an origin: the configured origin SNI;
// else a bucket's or site's own name; none for an IP origin (whose
// certificate is then verified against the IP).
func originSNI(s *site, o origin) string {
	if s.tls.sni != "" {
		return s.tls.sni
	}
	if o.isIP {
		return ""
	}
	return o.host
}

// originHost is the Host header sent to origin: the configured override;
// else the bucket's own name for an object-storage origin; else the host the
// client asked for (the accelerated domain).
func originHost(s *site, o origin, clientHost string) string {
	if h := s.domain.GetOriginSettings().GetHostHeader(); h != "" {
		return h
	}
	if o.isOSS {
		return o.host
	}
	return clientHost
}

// attemptOrder returns the origins to try: primaries in weighted random
// order, then backups likewise.
func attemptOrder(all []origin) []origin {
	out := make([]origin, 0, len(all))
	var prim, back []origin
	for _, o := range all {
		if o.backup {
			back = append(back, o)
		} else {
			prim = append(prim, o)
		}
	}
	return append(weightedShuffle(out, prim), weightedShuffle(nil, back)...)
}

func weightedShuffle(out, in []origin) []origin {
	rest := append([]origin(nil), in...)
	for len(rest) > 0 {
		total := uint32(0)
		for _, o := range rest {
			total += o.weight
		}
		pick := uint32(rand.Uint32N(total))
		i := 0
		for ; i < len(rest)-1; i++ {
			if pick < rest[i].weight {
				break
			}
			pick -= rest[i].weight
		}
		out = append(out, rest[i])
		rest = append(rest[:i], rest[i+1:]...)
	}
	return out
}

// canRetry says whether a request may go to the next origin after err:
// always when the origin could not even be connected to (nothing was sent);
// otherwise only for methods without side effects and without a body.
func canRetry(req *http.Request, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}

func failureKind(err error) string {
	var op *net.OpError
	var ne net.Error
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &cv), errors.As(err, &rh):
		return "tls"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &op) && op.Op == "dial":
		return "connect"
	}
	return unknownOriginFailure
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// copyBuffers are the buffers of origin-to-client and origin-to-cache
// copies: without them every request allocates 32 KiB (io.Copy's buffer,
// ReverseProxy's), which on small responses is most of the edge's
// allocation and so of its GC work.
var copyBuffers = bufferPool{sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

// bufferPool is an httputil.BufferPool.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte { return *b.p.Get().(*[]byte) }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		buf = buf[:cap(buf)]
		b.p.Put(&buf)
	}
}

// copyPooled is io.Copy with a buffer from copyBuffers.
func copyPooled(dst io.Writer, src io.Reader) (int64, error) {
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	return io.CopyBuffer(dst, src, buf)
}
