package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/outpost-cdn/outpost/node/cache"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// sliceSize is the unit in which objects of the large-file (download)
// business type are fetched and cached: a small range of a 1 GiB object
// costs the origin one slice, not the object.
const sliceSize = 1 << 20

// errPassThrough means the sliced path cannot serve the request (the origin
// ignores ranges, or the object must not be shared): proxy it instead.
var errPassThrough = errors.New("not sliceable")

// sliced reports whether a request goes through the slice path.
func sliced(s *site, r *http.Request) bool {
	return s.domain.GetBusinessType() == outpostv1.BusinessType_BUSINESS_TYPE_DOWNLOAD &&
		(r.Method == http.MethodGet || r.Method == http.MethodHead)
}

// parseRange reads a Range header. ranged is false for none (or one that
// is malformed, which RFC 9110 says to ignore); ok is false for several
// ranges. end is -1 for an open range; suffix > 0 for "bytes=-N".
func parseRange(h string) (start, end, suffix int64, ranged, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found {
		return 0, -1, 0, false, true
	}
	if strings.Contains(spec, ",") {
		return 0, 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, -1, 0, false, true
	}
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, -1, 0, false, true
		}
		return 0, -1, n, true, true
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, -1, 0, false, true
	}
	end = -1
	if b != "" {
		if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
			return 0, -1, 0, false, true
		}
	}
	return start, end, 0, true, true
}

// copyLimited copies at most limit bytes; more is an error.
func copyLimited(dst io.Writer, src io.Reader, limit int64) (int64, error) {
	n, err := copyPooled(dst, io.LimitReader(src, limit))
	if err == nil && n == limit {
		err = errors.New("the origin sent more than the range asked for")
	}
	return n, err
}

// slice is one cached (or just fetched) slice of an object.
type slice struct {
	index  int64
	status int
	header http.Header
	body   []byte
	total  int64
	label  string
}

// validator identifies the object version a slice belongs to.
func (s *slice) validator() string {
	if et := s.header.Get("ETag"); et != "" {
		return et
	}
	return s.header.Get("Last-Modified")
}

// serveSliced answers a GET or HEAD (ranged or not) for a large-file domain
// from cached slices, fetching missing slices (collapsed) from the origin
// with range requests.
func (n *Node) serveSliced(w http.ResponseWriter, r *http.Request, s *site, host, scheme string) {
	ctx := r.Context()
	path := cache.NormalizePath(r.URL.EscapedPath())
	base := cache.BaseKey(host, path, r.URL.RawQuery, s.domain.GetCache().GetIgnoreQuery())
	job := &fillJob{site: s, host: host, scheme: scheme, path: path, rawQuery: r.URL.RawQuery, acceptEncoding: "identity", clientIP: clientIP(r)}
	start, end, suffix, ranged, ok := parseRange(r.Header.Get("Range"))
	if !ok {
		n.serveCached(w, r, s, host, scheme) // several ranges: cut from the whole object
		return
	}
	firstIndex := int64(0)
	if ranged && suffix == 0 {
		firstIndex = start / sliceSize
	}
	first, err := n.slice(ctx, base, job, firstIndex)
	switch {
	case errors.Is(err, errPassThrough):
		n.proxy(w, r, s, host, scheme)
		return
	case err != nil:
		n.originError(w, r.WithContext(context.WithValue(ctx, proxyCtxKey{}, &proxyTarget{site: s, host: host, scheme: scheme})), err)
		return
	}
	h := w.Header()
	if first.status != http.StatusPartialContent {
		// An error from the origin (404, 416 ...): pass it on.
		for k, vs := range first.header {
			h[k] = vs
		}
		h.Set("X-Cache", first.label)
		writeBody(w, r, first.status, h, first.body)
		return
	}
	total := first.total
	if !ranged {
		start, end = 0, total-1
	} else if suffix > 0 {
		start, end = max(total-suffix, 0), total-1
	}
	if end < 0 || end >= total {
		end = total - 1
	}
	if start >= total || start > end {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", total))
		http.Error(w, "range not satisfiable\n", http.StatusRequestedRangeNotSatisfiable)
		return
	}
	for k, vs := range first.header {
		if k != "Content-Range" && k != "Content-Length" {
			h[k] = vs
		}
	}
	h.Set("X-Cache", first.label)
	h.Set("Accept-Ranges", "bytes")
	h.Add("Via", n.via)
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == first.header.Get("ETag") {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	status := http.StatusOK
	if ranged {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, total))
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	for i := start / sliceSize; i <= end/sliceSize; i++ {
		sl := first
		if i != first.index {
			if sl, err = n.slice(ctx, base, job, i); err != nil || sl.status != http.StatusPartialContent || sl.validator() != first.validator() {
				// The object changed at the origin between slices, or the
				// origin failed: cut the response short rather than splice
				// two versions.
				n.log.Warn("slice fetch failed or object changed mid-response", "domain", s.domain.GetName(), "path", path, "slice", i, "err", err)
				n.cache.Purge(cache.PurgeExact(base))
				panic(http.ErrAbortHandler)
			}
		}
		from := max(start, i*sliceSize) - i*sliceSize
		to := min(end, (i+1)*sliceSize-1) - i*sliceSize
		if to >= int64(len(sl.body)) {
			panic(http.ErrAbortHandler)
		}
		if _, err := w.Write(sl.body[from : to+1]); err != nil {
			return
		}
		_ = rc.Flush()
		n.metrics.cacheBytes.WithLabelValues(s.domain.GetName()).Add(float64(to - from + 1))
	}
}

// slice returns slice i of an object, from the cache or a collapsed fill.
func (n *Node) slice(ctx context.Context, base string, job *fillJob, i int64) (*slice, error) {
	key := base + "\x00slice=" + strconv.FormatInt(i, 10)
	probe := &http.Request{Header: http.Header{}}
	if e := n.cache.Lookup(key, probe); e != nil && e.IsFresh(n.cache.Now()) {
		n.metrics.cacheResult(job.site.domain.GetName(), xHit)
		return newSlice(i, e.Status, e.Header, e.Body, xHit)
	}
	e, f, leader := n.cache.Acquire(key, base, probe, func(e *cache.Entry) bool { return e.IsFresh(n.cache.Now()) })
	if e != nil {
		n.metrics.cacheResult(job.site.domain.GetName(), xHit)
		return newSlice(i, e.Status, e.Header, e.Body, xHit)
	}
	if leader {
		go n.runSliceFill(f, job, key, i)
	} else {
		n.metrics.collapsed.Inc()
	}
	status, header, shared, label, err := f.WaitHeader(ctx)
	if err != nil {
		return nil, err
	}
	if status == http.StatusOK || status == http.StatusPartialContent && !shared {
		return nil, errPassThrough
	}
	body, err := f.Wait(ctx)
	if err != nil {
		return nil, err
	}
	return newSlice(i, status, header, body, label)
}

func newSlice(i int64, status int, header http.Header, body []byte, label string) (*slice, error) {
	sl := &slice{index: i, status: status, header: header, body: body, label: label}
	if status != http.StatusPartialContent {
		return sl, nil
	}
	cr := header.Get("Content-Range") // "bytes a-b/total"
	_, totalText, ok := strings.Cut(cr, "/")
	total, err := strconv.ParseInt(totalText, 10, 64)
	if !ok || err != nil || total <= 0 {
		return nil, fmt.Errorf("origin sent a bad Content-Range %q", cr)
	}
	sl.total = total
	return sl, nil
}

// runSliceFill fetches slice i with a range request into f.
func (n *Node) runSliceFill(f *cache.Fill, j *fillJob, key string, i int64) {
	ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
	defer cancel()
	n.metrics.fills.Inc()
	req, err := n.fillRequest(ctx, j)
	if err != nil {
		f.Finish(err, nil)
		return
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", i*sliceSize, (i+1)*sliceSize-1))
	resp, err := n.originRoundTrip(req, &proxyTarget{site: j.site, host: j.host, scheme: j.scheme})
	if err != nil {
		f.Finish(err, nil)
		return
	}
	defer resp.Body.Close()
	now := n.cache.Now()
	domain := j.site.domain.GetName()
	n.metrics.cacheResult(domain, xMiss)
	header := responseHeader(resp.Header)
	if resp.StatusCode == http.StatusOK {
		// The origin ignores ranges: the waiters proxy instead.
		f.SetHeader(resp.StatusCode, header, false, xMiss)
		f.Finish(nil, nil)
		return
	}
	var st *cache.StoreAs
	shared := false
	if resp.StatusCode == http.StatusPartialContent {
		// Freshness as if for the whole object.
		dec := cache.Decide(j.site.domain.GetCache(), j.path, &http.Response{StatusCode: http.StatusOK, Header: header}, now)
		shared = dec.Store
		st = &cache.StoreAs{Decision: dec, Key: key, Stored: now, InitialAge: initialAge(resp)}
	}
	f.SetHeader(resp.StatusCode, header, shared, xMiss)
	nbytes, err := copyLimited(f, resp.Body, sliceSize+1)
	n.metrics.originBytes.WithLabelValues(domain).Add(float64(nbytes))
	if err != nil {
		f.Finish(err, nil)
		return
	}
	if resp.StatusCode != http.StatusPartialContent {
		st = nil
	}
	f.Finish(nil, st)
}
