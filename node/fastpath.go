package node

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outpost-cdn/outpost/internal/names"
	"github.com/outpost-cdn/outpost/node/cache"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The HTTP/1.1 cache-hit fast path.
//
// An edge answers most requests from its cache, and for small objects the
// cost of a hit is mostly per-request work in net/http: parsing the head
// into a Request with a header map, a goroutine that watches the
// connection while the handler runs, and the response header map sorted
// and written out. The fast path reads HTTP/1.1 requests off a connection
// itself and answers those that are plain cache hits with a response head
// prepared once per cached entry (Entry.Memo).
//
// What it answers is deliberately narrow, so that it needs no rules of its
// own: a complete GET or HEAD head, in the bytes one read returned, for an
// origin-form target with an already normal path, one Host, for a site
// served from cache without redirects or slicing, and a fresh 200 entry
// whose Content-Type is known. Any header that changes how the request is
// served (a body, credentials, Cache-Control, Range, conditionals,
// Connection other than keep-alive, Expect, Upgrade, ...) and anything
// unusual in the bytes (bare LF, obs-fold, invalid names or values) means
// the request is not a fast one. The first request that is not, with every
// byte read after it, goes to net/http (a handoff), which then serves the
// connection until it closes: the fast path never sees it again. So every
// rule of the edge (routing, freshness, framing, errors) is decided in one
// place, serveHTTP; the fast path only repeats its answer for the case
// that is provably a hit.
//
// The framing check (framing.go) sees every byte once, as read; requests
// the fast path answers take their turn in its request count, so the
// verdict net/http asks for after a handoff is for the right request.

// idleTimeout closes a keep-alive connection that sent no request for this
// long, on both paths (nginx's keepalive_timeout default).
const idleTimeout = 75 * time.Second

// fastReadBuffer is the fast path's read buffer per connection: heads that
// do not fit in one read go to net/http.
const fastReadBuffer = 4 << 10

// fastWriteChunk is the most body copied into the head's write; the rest
// of a larger body is written from the entry directly.
const fastWriteChunk = 16 << 10

// handoffListener hands connections to an http.Server: its Accept returns
// what the fast path gives up.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// handoff gives c to the server, or closes it once the server stopped.
func (l *handoffListener) handoff(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// fastConns tracks the connections the fast path is serving, for Close.
type fastConns struct {
	mu      sync.Mutex
	conns   map[*edgeConn]struct{}
	closing atomic.Bool
	empty   *sync.Cond
}

func newFastConns() *fastConns {
	f := &fastConns{conns: map[*edgeConn]struct{}{}}
	f.empty = sync.NewCond(&f.mu)
	return f
}

// add registers c; false once shutdown began.
func (f *fastConns) add(c *edgeConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *fastConns) remove(c *edgeConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
	if len(f.conns) == 0 {
		f.empty.Broadcast()
	}
}

// shutdown ends every fast-path connection: idle ones at once (their read
// times out), busy ones after the response they are writing. It returns
// when none is left, or at deadline, when it closes the rest.
func (f *fastConns) shutdown(deadline time.Time) {
	f.closing.Store(true)
	timer := time.AfterFunc(time.Until(deadline), func() {
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	defer timer.Stop()
	// A connection may set its idle deadline just after this; wake it
	// again until it is gone.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	done := make(chan struct{})
	go func() {
		f.mu.Lock()
		for len(f.conns) > 0 {
			f.empty.Wait()
		}
		f.mu.Unlock()
		close(done)
	}()
	for {
		f.mu.Lock()
		for c := range f.conns {
			_ = c.SetReadDeadline(aLongTimeAgo)
		}
		f.mu.Unlock()
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// serveEdge serves one listener: an accept loop that starts each
// connection on the fast path, and srv for what it hands over.
func (n *Node) serveEdge(srv *http.Server, l *edgeListener, scheme string) {
	hl := newHandoffListener(l.Addr())
	n.serve(srv, hl)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done() // hl is closed by srv.Shutdown (Close), not here: Serve would log the early close
		var delay time.Duration
		for {
			c, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// Out of file descriptors and the like: back off as
				// net/http does, up to a second.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				n.log.Warn("accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			delay = 0
			go n.serveFastConn(c.(*edgeConn), hl, scheme)
		}
	}()
}

// serveFastConn answers the connection's requests while they are fast
// ones, then hands it to net/http (or closes it).
func (n *Node) serveFastConn(ec *edgeConn, hl *handoffListener, scheme string) {
	ec.handshake()
	if ec.hsErr != nil {
		ec.Close()
		return
	}
	if ec.framing == nil || !n.fastPath.Load() { // HTTP/2, or switched off
		hl.handoff(ec)
		return
	}
	if !n.fast.add(ec) {
		ec.Close()
		return
	}
	handedOff := false
	defer func() {
		n.fast.remove(ec)
		if !handedOff {
			ec.Close()
		}
	}()
	buf := make([]byte, 0, fastReadBuffer)
	for !n.fast.closing.Load() {
		_ = ec.SetReadDeadline(time.Now().Add(idleTimeout))
		m, err := ec.Read(buf[:cap(buf)])
		if err != nil {
			return // closed, idle too long, or shutting down
		}
		buf = buf[:m]
		for len(buf) > 0 {
			var req fastRequest
			hn := req.parse(buf)
			served := false
			if hn > 0 {
				served, err = n.serveFast(ec, &req, scheme)
				if err != nil {
					return
				}
			}
			if !served {
				_ = ec.SetReadDeadline(time.Time{})
				ec.replay = slices.Clone(buf)
				handedOff = true
				n.metrics.handoffs.Inc()
				hl.handoff(ec)
				return
			}
			buf = buf[:copy(buf, buf[hn:])]
		}
	}
}

// fastRequest is a request head the fast path may answer.
type fastRequest struct {
	head           bool // HEAD, else GET
	target         []byte
	path, query    []byte
	host           []byte
	acceptEncoding []byte
}

// parse reads one complete head from b and returns its length, or 0 when b
// holds no complete head or the request is not one for the fast path.
func (r *fastRequest) parse(b []byte) int {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0
	}
	head := b[:end+2] // every line, each with its CRLF
	line, rest := cutLine(head)
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		r.head = true
		line = line[5:]
	default:
		return 0
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 || string(line[sp+1:]) != "HTTP/1.1" {
		return 0
	}
	r.target = line[:sp]
	if !r.splitTarget() {
		return 0
	}
	var sawHost, sawAE bool
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !httpguts.ValidHeaderFieldName(string(name)) || !validFieldValue(value) {
			return 0
		}
		var lower [24]byte
		if len(name) > len(lower) {
			continue // longer than any header the fast path looks at
		}
		for i, c := range name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		switch string(lower[:len(name)]) {
		case "host":
			if sawHost || !validFastHost(value) {
				return 0
			}
			sawHost, r.host = true, value
		case "accept-encoding":
			if sawAE {
				return 0
			}
			sawAE, r.acceptEncoding = true, value
		case "connection":
			if !bytes.EqualFold(value, []byte("keep-alive")) {
				return 0
			}
		case "content-length", "transfer-encoding", "authorization", "cache-control", "pragma",
			"range", "if-range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since",
			"expect", "upgrade", "te", "trailer", "http2-settings", "proxy-connection", "keep-alive":
			return 0 // net/http decides these
		}
	}
	if !sawHost {
		return 0
	}
	return end + 4
}

// cutLine splits off the first CRLF-terminated line.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.Index(b, []byte("\r\n"))
	return b[:i], b[i+2:]
}

// splitTarget accepts an origin-form target whose path is already in the
// form the cache key uses (no percent-escapes, dot segments or empty
// segments; only characters a URL path keeps as they are) and whose query
// is printable ASCII.
func (r *fastRequest) splitTarget() bool {
	t := r.target
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	path, query := t, []byte(nil)
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		path, query = t[:q], t[q+1:]
	}
	for _, c := range path {
		if !fastPathChar[c] {
			return false
		}
	}
	if bytes.Contains(path, []byte("/.")) || bytes.Contains(path, []byte("//")) {
		return false
	}
	for _, c := range query {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	r.path, r.query = path, query
	return true
}

// fastPathChar are the bytes a fast target's path may hold: those that
// url.URL.EscapedPath and cache.NormalizePath leave as they are.
var fastPathChar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/$&+,:;=@", byte(c)) >= 0
	}
	return t
}()

// validFastHost accepts a host name with an optional port.
func validFastHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	host, port := h, []byte(nil)
	if i := bytes.IndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if len(port) == 0 || len(port) > 5 {
			return false
		}
		for _, c := range port {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	if len(host) == 0 {
		return false
	}
	for _, c := range host {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validFieldValue refuses control characters other than HTAB, as Go's
// server does.
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// writeBufs holds the buffers responses are assembled in, so that idle
// connections hold none.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*fastReadBuffer); return &b }}

// serveFast answers r from the cache if it is a hit serveHTTP would answer
// the same way, and writes the response. served is false when the request
// must go to net/http; err is a write error (the connection is done).
func (n *Node) serveFast(ec *edgeConn, r *fastRequest, scheme string) (served bool, err error) {
	st := n.state.Load()
	hostPort := string(r.host)
	host := hostPort
	if i := strings.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = names.Normalize(host)
	s := st.lookup(host)
	if s == nil {
		return false, nil
	}
	secure := ec.tlsConn != nil
	if secure && st.lookup(names.Normalize(ec.state.ServerName)) != s {
		return false, nil
	}
	if redirect := s.domain.GetHttps().GetRedirect(); !secure && redirect == outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS ||
		secure && redirect == outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTP ||
		s.domain.GetBusinessType() == outpostv1.BusinessType_BUSINESS_TYPE_DOWNLOAD {
		return false, nil
	}
	base := cache.BaseKey(host, string(r.path), string(r.query), s.domain.GetCache().GetIgnoreQuery())
	e := n.cache.LookupEncoding(base, string(r.acceptEncoding))
	now := n.cache.Now()
	if e == nil || e.Status != http.StatusOK || !e.IsFresh(now) {
		return false, nil
	}
	ph := e.Memo(n.prepareHead).(*preparedHead)
	if ph.via != n.via || ph.head == nil {
		return false, nil
	}
	k := int(ec.requests.Load())
	if ec.framing.Verdict(k) != "" {
		return false, nil // net/http refuses it
	}
	ec.requests.Add(1)

	n.inFlight.Add(1)
	defer n.inFlight.Add(-1)
	start := time.Now()
	bp := writeBufs.Get().(*[]byte)
	out := append((*bp)[:0], ph.head...)
	out = append(out, "Age: "...)
	out = strconv.AppendInt(out, int64(e.Age(now)/time.Second), 10)
	out = append(out, "\r\nX-Cache: HIT\r\n"...)
	if ph.needDate {
		out = append(out, "Date: "...)
		out = appendHTTPDate(out, now)
		out = append(out, "\r\n"...)
	}
	if n.fast.closing.Load() {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	body := e.Body
	if r.head {
		body = nil
	}
	chunk := min(len(body), fastWriteChunk)
	out = append(out, body[:chunk]...)
	_, err = ec.Write(out)
	if cap(out) <= fastWriteChunk+2*fastReadBuffer {
		*bp = out[:0]
		writeBufs.Put(bp)
	}
	if err == nil && chunk < len(body) {
		_, err = ec.Write(body[chunk:])
	}
	if err != nil {
		return true, err
	}

	domain := s.domain.GetName()
	dm := n.metrics.forDomain(domain)
	dm.result(xHit)
	dm.servedBytes(len(e.Body))
	dm.request(scheme, http.StatusOK, int64(len(body)))
	n.metrics.fastHits.Inc()
	if n.cfg.AccessLog {
		method := http.MethodGet
		if r.head {
			method = http.MethodHead
		}
		n.log.Info("access", "domain", domain, "scheme", scheme, "method", method,
			"host", hostPort, "path", string(r.path), "status", http.StatusOK, "bytes", len(body),
			"duration", time.Since(start).Round(time.Microsecond), "client", ec.RemoteAddr().String(), "proto", "HTTP/1.1")
	}
	return true, nil
}

// preparedHead is an entry's HTTP/1.1 response head without the headers
// that change with each response (Age, X-Cache and, when the origin sent
// none, Date): what serveEntry and net/http would write for a 200.
type preparedHead struct {
	via      string // the node's Via it was made with
	head     []byte // nil: the entry is not served by the fast path
	needDate bool
}

// prepareHead renders e's head as serveEntry and net/http would: the
// stored headers (names net/http would drop skipped, line breaks in
// values made spaces), the node's Via added, Accept-Ranges and
// Content-Length set. An entry without Content-Type gets none: net/http
// would sniff one, so such entries go to net/http.
func (n *Node) prepareHead(e *cache.Entry) any {
	ph := &preparedHead{via: n.via}
	if _, ok := e.Header["Content-Type"]; !ok {
		return ph
	}
	_, hasDate := e.Header["Date"]
	ph.needDate = !hasDate
	keys := make([]string, 0, len(e.Header))
	for k := range e.Header {
		switch k {
		case "Age", "X-Cache", "Accept-Ranges", "Content-Length":
			continue // set below, as serveEntry and writeBody do
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := []byte("HTTP/1.1 200 OK\r\n")
	replacer := strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ")
	for _, k := range keys {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range e.Header[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, textproto.TrimString(replacer.Replace(v))...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "Via: "...)
	b = append(b, n.via...)
	b = append(b, "\r\nAccept-Ranges: bytes\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(e.Body)), 10)
	b = append(b, "\r\n"...)
	ph.head = b
	return ph
}

// httpDate caches the Date header value for the current second.
var httpDate atomic.Pointer[struct {
	sec int64
	b   []byte
}]

func appendHTTPDate(b []byte, now time.Time) []byte {
	sec := now.Unix()
	if d := httpDate.Load(); d != nil && d.sec == sec {
		return append(b, d.b...)
	}
	d := &struct {
		sec int64
		b   []byte
	}{sec, now.UTC().AppendFormat(nil, http.TimeFormat)}
	httpDate.Store(d)
	return append(b, d.b...)
}
