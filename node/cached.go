package node

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-cdn/outpost/node/cache"
)

// fillTimeout bounds one origin fill, which runs detached from the client
// that started it so that the clients waiting on it are not cut off when
// that one goes away.
const fillTimeout = 5 * time.Minute

// X-Cache values.
const (
	xHit     = "HIT"
	xMiss    = "MISS"
	xExpired = "EXPIRED"
	xStale   = "STALE"
)

// serveCached answers a cacheable request (GET or HEAD without credentials)
// from the cache, joining or leading a collapsed origin fill on a miss.
func (n *Node) serveCached(w http.ResponseWriter, r *http.Request, s *site, host, scheme string) {
	settings := s.domain.GetCache()
	path := cache.NormalizePath(r.URL.EscapedPath())
	base := cache.BaseKey(host, path, r.URL.RawQuery, settings.GetIgnoreQuery())
	now := n.cache.Now()
	revalidate := clientWantsRevalidation(r)
	prior := n.cache.Lookup(base, r)
	if prior != nil && prior.IsFresh(now) && !revalidate {
		n.metrics.cacheResult(s.domain.GetName(), xHit)
		n.serveEntry(w, r, s, prior, xHit, now)
		return
	}
	e, f, leader := n.cache.Acquire(cache.VariantKey(base, r), base, r, func(e *cache.Entry) bool { return e != prior && e.IsFresh(now) && !revalidate })
	if e != nil {
		n.metrics.cacheResult(s.domain.GetName(), xHit)
		n.serveEntry(w, r, s, e, xHit, now)
		return
	}
	if leader {
		job := &fillJob{site: s, host: host, scheme: scheme, path: path, rawQuery: r.URL.RawQuery,
			acceptEncoding: cache.NormalizeAcceptEncoding(r.Header.Get("Accept-Encoding")), clientIP: clientIP(r), prior: prior}
		go n.runFill(f, job)
	} else {
		n.metrics.collapsed.Inc()
	}
	n.serveFill(w, r, f, leader, s, host, scheme)
}

// Shared header values: net/http only reads them.
var xCacheValues = map[string][]string{xHit: {xHit}, xMiss: {xMiss}, xExpired: {xExpired}, xStale: {xStale}}

func xCacheValue(label string) []string {
	if v, ok := xCacheValues[label]; ok {
		return v
	}
	return []string{label}
}

// clientWantsRevalidation: a client's no-cache (or Pragma: no-cache) makes
// the edge revalidate with the origin, as browsers' reload does.
func clientWantsRevalidation(r *http.Request) bool {
	cc := strings.ToLower(r.Header.Get("Cache-Control"))
	return strings.Contains(cc, "no-cache") || strings.Contains(cc, "max-age=0") ||
		cc == "" && strings.EqualFold(r.Header.Get("Pragma"), "no-cache")
}

// fillJob is what a fill needs from the request that started it.
type fillJob struct {
	site           *site
	host, scheme   string
	path, rawQuery string
	acceptEncoding string
	clientIP       string
	prior          *cache.Entry // an expired entry to revalidate, or nil
}

// runFill fetches from the origin into f: a fresh response, a revalidated
// old one (304), or the old one when the origin fails and stale-if-error
// allows it.
func (n *Node) runFill(f *cache.Fill, j *fillJob) {
	ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
	defer cancel()
	domain := j.site.domain.GetName()
	n.metrics.fills.Inc()
	req, err := n.fillRequest(ctx, j)
	if err != nil {
		f.Finish(err, nil)
		return
	}
	if j.acceptEncoding != "identity" {
		req.Header.Set("Accept-Encoding", j.acceptEncoding)
	}
	if p := j.prior; p != nil {
		if et := p.Header.Get("ETag"); et != "" {
			req.Header.Set("If-None-Match", et)
		}
		if lm := p.Header.Get("Last-Modified"); lm != "" {
			req.Header.Set("If-Modified-Since", lm)
		}
	}
	resp, err := n.originRoundTrip(req, &proxyTarget{site: j.site, host: j.host, scheme: j.scheme})
	now := n.cache.Now()
	if err != nil || resp.StatusCode >= 500 {
		if p := j.prior; p != nil && p.UsableOnError(now) {
			if resp != nil {
				resp.Body.Close()
			}
			n.metrics.cacheResult(domain, xStale)
			f.SetHeader(p.Status, p.Header, true, xStale)
			f.Write(p.Body)
			f.Finish(nil, nil)
			return
		}
		if err != nil {
			f.Finish(err, nil)
			return
		}
	}
	defer resp.Body.Close()
	label := xMiss
	if j.prior != nil {
		label = xExpired
	}
	n.metrics.cacheResult(domain, label)
	if resp.StatusCode == http.StatusNotModified && j.prior != nil {
		p := j.prior
		merged := p.Header.Clone()
		for k, vs := range responseHeader(resp.Header) {
			if k != "Content-Length" {
				merged[k] = vs
			}
		}
		dec := cache.Decide(j.site.domain.GetCache(), j.path, &http.Response{StatusCode: p.Status, Header: merged}, now)
		f.SetHeader(p.Status, merged, true, xExpired)
		f.Write(p.Body)
		f.Finish(nil, &cache.StoreAs{Decision: dec, Varies: varies(merged), Stored: now, InitialAge: initialAge(resp)})
		return
	}
	dec := cache.Decide(j.site.domain.GetCache(), j.path, resp, now)
	if resp.ContentLength > n.cache.MaxObjectBytes() {
		dec = cache.Decision{Reason: "larger than the largest cached object"}
	}
	header := responseHeader(resp.Header)
	f.SetHeader(resp.StatusCode, header, dec.Store, label)
	nbytes, err := copyPooled(f, resp.Body)
	n.metrics.originBytes.WithLabelValues(domain).Add(float64(nbytes))
	if err != nil {
		f.Finish(err, nil)
		return
	}
	f.Finish(nil, &cache.StoreAs{Decision: dec, Varies: varies(header), Stored: now, InitialAge: initialAge(resp)})
}

// fillRequest is the GET a fill sends to the origin. Only what the cache
// key covers goes with it (callers add Accept-Encoding or Range): headers
// the origin might vary on but the key ignores could poison the shared
// entry.
func (n *Node) fillRequest(ctx context.Context, j *fillJob) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://origin"+j.path, nil)
	if err != nil {
		return nil, err
	}
	req.URL.RawQuery = j.rawQuery
	req.Host = j.host
	req.Header.Set("X-Forwarded-For", j.clientIP)
	req.Header.Set("X-Forwarded-Proto", j.scheme)
	req.Header.Set("Via", n.via)
	return req, nil
}

// serveFill streams a fill's response to one client. A client that joined
// a fill whose response turned out private fetches on its own.
func (n *Node) serveFill(w http.ResponseWriter, r *http.Request, f *cache.Fill, leader bool, s *site, host, scheme string) {
	ctx := r.Context()
	status, header, shared, label, err := f.WaitHeader(ctx)
	if err != nil {
		n.originError(w, r.WithContext(context.WithValue(ctx, proxyCtxKey{}, &proxyTarget{site: s, host: host, scheme: scheme})), err)
		return
	}
	if !shared && !leader {
		n.proxy(w, r, s, host, scheme)
		return
	}
	if !leader && label == xMiss {
		// Served from a fill another client started: no origin request of
		// its own, as nginx reports requests that waited on a cache lock.
		label = xHit
	}
	h := w.Header()
	for k, vs := range header {
		h[k] = vs
	}
	h.Set("X-Cache", label)
	h.Add("Via", n.via)
	if r.Method == http.MethodHead || r.Header.Get("Range") != "" || r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" {
		// Ranges and conditionals are answered from the whole body.
		body, err := f.Wait(ctx)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		n.metrics.cacheBytes.WithLabelValues(s.domain.GetName()).Add(float64(len(body)))
		writeBody(w, r, status, h, body)
		return
	}
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	for off := 0; ; {
		chunk, done, err := f.Next(ctx, off)
		if done {
			if err != nil {
				panic(http.ErrAbortHandler) // the client sees a truncated body
			}
			return
		}
		if err != nil {
			return // the client went away
		}
		if _, err := w.Write(chunk); err != nil {
			return
		}
		_ = rc.Flush()
		off += len(chunk)
	}
}

// serveEntry answers from a stored entry.
func (n *Node) serveEntry(w http.ResponseWriter, r *http.Request, s *site, e *cache.Entry, label string, now time.Time) {
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	h["Age"] = []string{strconv.FormatInt(int64(e.Age(now)/time.Second), 10)}
	h["X-Cache"] = xCacheValue(label)
	if _, ok := e.Header["Via"]; ok {
		h.Add("Via", n.via)
	} else {
		h["Via"] = n.viaValue
	}
	n.metrics.forDomain(s.domain.GetName()).servedBytes(len(e.Body))
	writeBody(w, r, e.Status, h, e.Body)
}

// writeBody writes a whole body, answering Range, HEAD and conditional
// requests (If-None-Match, If-Modified-Since → 304) for 200 responses.
func writeBody(w http.ResponseWriter, r *http.Request, status int, h http.Header, body []byte) {
	if status == http.StatusOK && (r.Header.Get("Range") != "" || r.Header.Get("If-None-Match") != "" ||
		r.Header.Get("If-Modified-Since") != "" || r.Header.Get("If-Match") != "" || r.Header.Get("If-Unmodified-Since") != "") {
		if _, ok := h["Content-Type"]; !ok {
			h["Content-Type"] = nil // no sniffing: say nothing the origin did not
		}
		h.Del("Content-Length")
		lm, _ := http.ParseTime(h.Get("Last-Modified"))
		http.ServeContent(w, r, "", lm, bytes.NewReader(body))
		return
	}
	// The common case, a plain GET or HEAD: no need for ServeContent.
	if status == http.StatusOK {
		h.Set("Accept-Ranges", "bytes")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// responseHeader copies an origin response's end-to-end headers.
func responseHeader(in http.Header) http.Header {
	out := in.Clone()
	for _, f := range strings.Split(in.Get("Connection"), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out.Del(f)
		}
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		out.Del(k)
	}
	return out
}

func varies(h http.Header) bool { return h.Get("Vary") != "" }

func initialAge(resp *http.Response) time.Duration {
	if a, err := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("Age")), 10, 64); err == nil && a > 0 {
		return time.Duration(a) * time.Second
	}
	return 0
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// originRoundTrip sends one request to the site's origins (with failover).
func (n *Node) originRoundTrip(req *http.Request, t *proxyTarget) (*http.Response, error) {
	req = req.WithContext(context.WithValue(req.Context(), proxyCtxKey{}, t))
	resp, err := (&originTripper{n: n}).RoundTrip(req)
	if err != nil && errors.Is(err, context.Canceled) {
		return nil, err
	}
	return resp, err
}
