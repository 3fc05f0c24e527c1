package node

import (
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-cdn/outpost/internal/names"
	"github.com/outpost-cdn/outpost/node/cache"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// serveHTTP routes one client request: find the site by Host, enforce the
// SNI/Host match, answer ACME challenges, apply the forced redirects, then
// fetch from the origin.
// Requests for unknown hosts are answered here and never reach an origin.
func (n *Node) serveHTTP(w http.ResponseWriter, r *http.Request) {
	cs := clientTLS(r)
	scheme := "http"
	if cs != nil {
		scheme = "https"
	}
	n.inFlight.Add(1)
	defer n.inFlight.Add(-1)
	rw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
	domain := unknownDomain
	start := time.Now()
	defer func() {
		n.metrics.request(domain, scheme, rw.code, rw.bytes)
		if n.cfg.AccessLog {
			n.log.Info("access", "domain", domain, "scheme", scheme, "method", r.Method, "host", r.Host, "path", r.URL.Path,
				"status", rw.code, "bytes", rw.bytes, "duration", time.Since(start).Round(time.Microsecond), "client", r.RemoteAddr, "proto", r.Proto)
		}
	}()

	if msg := framingVerdict(r); msg != "" {
		rw.Header().Set("Connection", "close")
		http.Error(rw, msg+"\n", http.StatusBadRequest)
		return
	}
	if msg := badRequest(r); msg != "" {
		rw.Header().Set("Connection", "close")
		http.Error(rw, msg, http.StatusBadRequest)
		return
	}
	st := n.state.Load()
	host := requestHost(r)
	s := st.lookup(host)
	if s == nil {
		// "<node>.<cname>", where the scheduler's HTTP mode sends clients:
		// served as the accelerated domain itself.
		if s = st.lookupCNAME(host); s != nil {
			host = s.domain.GetName()
		}
	}
	if s == nil {
		http.Error(rw, "unknown host\n", http.StatusNotFound)
		return
	}
	domain = s.domain.GetName()
	if cs != nil && st.lookup(names.Normalize(cs.ServerName)) != s {
		// The connection was set up for another domain's certificate.
		http.Error(rw, "misdirected request: Host does not match the TLS server name\n", http.StatusMisdirectedRequest)
		return
	}
	// ACME HTTP-01 challenges come before forced redirects, which would
	// send the CA to HTTPS the domain may not have yet.
	if n.serveACMEChallenge(rw, r, st, s) {
		return
	}
	switch redirect := s.domain.GetHttps().GetRedirect(); {
	case cs == nil && redirect == outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS:
		n.redirect(rw, r, "https", host, n.publicHTTPS())
		return
	case cs != nil && redirect == outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTP:
		n.redirect(rw, r, "http", host, n.publicHTTP())
		return
	}
	if cache.RequestCacheable(r) {
		if sliced(s, r) {
			n.serveSliced(rw, r, s, host, scheme)
			return
		}
		n.serveCached(rw, r, s, host, scheme)
		return
	}
	n.proxy(rw, r, s, host, scheme)
}

// redirect answers 301 for GET and HEAD and 308 otherwise (so the method
// and body are kept), to the same path and query on the other scheme.
func (n *Node) redirect(w http.ResponseWriter, r *http.Request, scheme, host, public string) {
	target := scheme + "://" + host
	if _, port, err := net.SplitHostPort(public); err == nil && !(scheme == "https" && port == "443" || scheme == "http" && port == "80") {
		target += ":" + port
	}
	target += r.URL.RequestURI()
	code := http.StatusPermanentRedirect
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		code = http.StatusMovedPermanently
	}
	w.Header().Set("Location", target)
	w.WriteHeader(code)
}

// requestHost is the normalised host of a request, without its port.
func requestHost(r *http.Request) string {
	h := r.Host
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return names.Normalize(h)
}

// badRequest returns why a request must be refused before routing, or "".
// Raw framing (Content-Length and Transfer-Encoding together, duplicates,
// line folding) is judged earlier, on the bytes as sent (framing.go).
func badRequest(r *http.Request) string {
	if len(r.TransferEncoding) > 1 || len(r.TransferEncoding) == 1 && r.TransferEncoding[0] != "chunked" {
		return "unsupported Transfer-Encoding\n"
	}
	// Go's server takes the host of an absolute-form target and drops the
	// Host header, so a disagreement between the two cannot be seen here;
	// an edge is no forward proxy, so absolute-form is refused outright.
	if r.ProtoMajor == 1 && r.URL.IsAbs() {
		return "absolute-form request targets are not accepted\n"
	}
	if r.Host == "" || strings.ContainsAny(r.Host, " \t/\\@*") {
		return "missing or malformed Host\n"
	}
	return ""
}

// countingWriter records the status code and body bytes for metrics.
type countingWriter struct {
	http.ResponseWriter
	code        int
	bytes       int64
	wroteHeader bool
}

func (c *countingWriter) WriteHeader(code int) {
	if !c.wroteHeader {
		c.code, c.wroteHeader = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.wroteHeader = true
	n, err := c.ResponseWriter.Write(b)
	c.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
