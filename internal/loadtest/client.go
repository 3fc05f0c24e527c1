package loadtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Error kinds, the keys of Result.Errors.
const (
	KindDial        = "dial"         // the TCP connection failed
	KindTLS         = "tls"          // the TLS handshake failed (certificate, protocol)
	KindTimeout     = "timeout"      // the request did not finish within the timeout
	Kind4xx         = "4xx"          // a response with status 400-499
	Kind5xx         = "5xx"          // a response with status 500-599
	KindBacklog     = "backlog"      // open model: due while every worker and the queue were busy; not sent
	KindResolve     = "resolve"      // the scheduler gave no address for the domain
	KindNotLoopback = "not_loopback" // refused: the address is not on loopback (see AllowRemote)
	KindOther       = "other"        // anything else (connection reset, malformed response, ...)
)

// ErrorKinds lists every error kind, in report order.
var ErrorKinds = []string{KindDial, KindTLS, KindTimeout, Kind4xx, Kind5xx, KindBacklog, KindResolve, KindNotLoopback, KindOther}

// dialError and tlsError mark where a connection failed.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

type tlsError struct{ err error }

func (e *tlsError) Error() string { return "tls: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// errAborted marks requests cut off at the end of an interrupted run.
var errAborted = errors.New("aborted")

// classify maps a request error to its kind; "" for an aborted request.
func classify(err error) string {
	var (
		re *resolveError
		de *dialError
		te *tlsError
		ne net.Error
	)
	switch {
	case errors.Is(err, ErrNotLoopback):
		return KindNotLoopback
	case errors.As(err, &re):
		return KindResolve
	case errors.Is(err, errAborted):
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	case errors.As(err, &de):
		return KindDial
	case errors.As(err, &te):
		return KindTLS
	}
	return KindOther
}

// outcome is what became of one request.
type outcome struct {
	intended time.Time // when it was due (open model) or sent (closed model)
	done     time.Time
	kind     string // "" for a response below 400
	aborted  bool
	errMsg   string
	status   int
	edge     string // address connected to
	node     string // from Via
	xcache   string
	proto    string
	size     int // size class index
	bytes    int64
	newConn  bool // the request opened a connection
	tls      bool // ... with a TLS handshake
	resumed  bool // ... that resumed a session
	offered  bool // ... that offered a session ticket
}

// hosts gives each (domain, edge address) pair a synthetic URL host, so
// that http.Transport keeps one connection pool per pair: connections to
// the same edge for different domains carry different SNI and must not be
// shared, and round-robin across edges must reach every edge. The dial
// functions map the synthetic host back to the domain and address.
type hosts struct {
	mu    sync.RWMutex
	index map[string]int
	addrs []edgeAddr
}

type edgeAddr struct {
	addr string
	port int
}

const hostSuffix = ".loadtest.invalid"

// host returns the synthetic host of domain d at addr, "d<d>-a<n>.loadtest.invalid".
func (h *hosts) host(d int, addr string) (string, edgeAddr) {
	h.mu.RLock()
	n, ok := h.index[addr]
	var ea edgeAddr
	if ok {
		ea = h.addrs[n]
	}
	h.mu.RUnlock()
	if !ok {
		h.mu.Lock()
		if n, ok = h.index[addr]; !ok {
			_, port, _ := splitHostPort(addr)
			n = len(h.addrs)
			h.addrs = append(h.addrs, edgeAddr{addr: addr, port: port})
			h.index[addr] = n
		}
		ea = h.addrs[n]
		h.mu.Unlock()
	}
	return "d" + strconv.Itoa(d) + "-a" + strconv.Itoa(n) + hostSuffix, ea
}

// lookup maps a synthetic host (with or without port) back to its domain
// index and edge address.
func (h *hosts) lookup(host string) (int, string, error) {
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	ds, as, ok := strings.Cut(strings.TrimSuffix(host, hostSuffix), "-a")
	d, err1 := strconv.Atoi(strings.TrimPrefix(ds, "d"))
	n, err2 := strconv.Atoi(as)
	if !ok || err1 != nil || err2 != nil {
		return 0, "", fmt.Errorf("unknown target host %q", host)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if n < 0 || n >= len(h.addrs) {
		return 0, "", fmt.Errorf("unknown target host %q", host)
	}
	return d, h.addrs[n].addr, nil
}

// edgeSessions is a worker's TLS session cache seen through one edge
// address: Go keys sessions by server name only, and a ticket of one edge
// node means nothing to another. It also notes whether a session was
// found, that is whether the handshake offered a ticket.
type edgeSessions struct {
	inner   tls.ClientSessionCache
	prefix  string
	offered bool
}

// Get implements tls.ClientSessionCache.
func (e *edgeSessions) Get(key string) (*tls.ClientSessionState, bool) {
	s, ok := e.inner.Get(e.prefix + key)
	if ok && s != nil {
		e.offered = true
	}
	return s, ok
}

// Put implements tls.ClientSessionCache.
func (e *edgeSessions) Put(key string, s *tls.ClientSessionState) { e.inner.Put(e.prefix+key, s) }

// worker sends requests one at a time, with its own connections, random
// source and TLS session cache.
type worker struct {
	r        *runner
	rng      *rand.Rand
	zipf     *rand.Zipf
	sessions tls.ClientSessionCache

	// Transports: kept-alive connections; new connection per request
	// offering tickets; and without tickets.
	keep, fresh, freshNoTicket *http.Transport

	mu      sync.Mutex
	offered map[net.Conn]bool // connections whose handshake offered a ticket, until first used
}

func newWorker(r *runner, id int) *worker {
	w := &worker{r: r, rng: rand.New(rand.NewPCG(r.seed, uint64(id)+1)), offered: map[net.Conn]bool{}}
	if r.cfg.URLs > 1 {
		w.zipf = rand.NewZipf(w.rng, r.cfg.ZipfS, 1, uint64(r.cfg.URLs-1))
	}
	w.sessions = tls.NewLRUClientSessionCache(r.sessionCacheSize)
	return w
}

// transport returns (making it on first use) the transport for a request
// on a kept-alive connection, or on a new one with or without a ticket.
func (w *worker) transport(fresh, tickets bool) *http.Transport {
	p := &w.keep
	if fresh {
		p = &w.fresh
		if !tickets {
			p = &w.freshNoTicket
		}
	}
	if *p == nil {
		*p = w.newTransport(fresh, tickets)
	}
	return *p
}

func (w *worker) newTransport(fresh, tickets bool) *http.Transport {
	cfg := w.r.cfg
	t := &http.Transport{
		Proxy:               nil,
		DisableKeepAlives:   fresh,
		DisableCompression:  true, // count the bytes the edge sends
		MaxIdleConns:        w.r.idlePerWorker,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   cfg.HTTP2,
	}
	if cfg.HTTP2 {
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		t.Protocols = p
	}
	if cfg.Scheme == "http" {
		t.DialContext = func(ctx context.Context, _, host string) (net.Conn, error) {
			_, addr, err := w.r.hosts.lookup(host)
			if err != nil {
				return nil, err
			}
			c, err := w.r.dialer.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		}
		return t
	}
	t.DialTLSContext = func(ctx context.Context, _, host string) (net.Conn, error) {
		d, addr, err := w.r.hosts.lookup(host)
		if err != nil {
			return nil, err
		}
		raw, err := w.r.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, &dialError{err}
		}
		tc := &tls.Config{
			ServerName:         cfg.Domains[d].Name,
			RootCAs:            cfg.RootCAs,
			InsecureSkipVerify: cfg.Insecure, //nolint:gosec // --insecure, asked for
			NextProtos:         w.r.nextProtos,
			MinVersion:         tls.VersionTLS12,
		}
		var sc *edgeSessions
		if tickets {
			sc = &edgeSessions{inner: w.sessions, prefix: addr + "|"}
			tc.ClientSessionCache = sc
		}
		conn := tls.Client(raw, tc)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, &tlsError{err}
		}
		if sc != nil && sc.offered {
			w.mu.Lock()
			w.offered[conn] = true
			w.mu.Unlock()
		}
		return conn, nil
	}
	return t
}

// takeOffered reports (once) whether the handshake of c offered a ticket.
func (w *worker) takeOffered(c net.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	ok := w.offered[c]
	delete(w.offered, c)
	return ok
}

func (w *worker) close() {
	for _, t := range []*http.Transport{w.keep, w.fresh, w.freshNoTicket} {
		if t != nil {
			t.CloseIdleConnections()
		}
	}
}

// rank picks a URL rank on the Zipf curve.
func (w *worker) rank() int {
	if w.zipf == nil {
		return 0
	}
	return int(w.zipf.Uint64())
}

// sizeClass picks a size class by weight.
func (w *worker) sizeClass() int {
	cum := w.r.sizeCum
	if len(cum) == 1 {
		return 0
	}
	x := w.rng.Float64() * cum[len(cum)-1]
	for i, c := range cum {
		if x < c {
			return i
		}
	}
	return len(cum) - 1
}

// do sends one request and reads its response to the end.
func (w *worker) do(ctx context.Context, intended time.Time) outcome {
	r := w.r
	cfg := r.cfg
	o := outcome{intended: intended}
	d := 0
	if len(cfg.Domains) > 1 {
		d = w.rng.IntN(len(cfg.Domains))
	}
	rank := w.rank()
	o.size = w.sizeClass()
	fresh := cfg.NewConnRatio > 0 && w.rng.Float64() < cfg.NewConnRatio
	tickets := !fresh || w.rng.Float64() < cfg.ResumeRatio

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	fail := func(err error) outcome {
		o.done = time.Now()
		o.status = 0 // a response cut short is an error, not a response
		if context.Cause(ctx) == errAborted {
			err = errAborted
		}
		o.kind = classify(err)
		o.aborted = o.kind == ""
		o.errMsg = err.Error()
		return o
	}

	addr, err := r.targets.pick(ctx, d, w.rng)
	if err != nil {
		return fail(err)
	}
	o.edge = addr
	host, ea := r.hosts.host(d, addr)
	path, query := r.tmpl.expand(rank, cfg.SizeMix[o.size].Label)
	hostHeader := cfg.Domains[d].Name
	if !(cfg.Scheme == "https" && ea.port == 443 || cfg.Scheme == "http" && ea.port == 80) {
		hostHeader += ":" + strconv.Itoa(ea.port)
	}
	var got httptrace.GotConnInfo
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { got = i }}
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Scheme: cfg.Scheme, Host: host, Path: path, RawQuery: query},
		Host:       hostHeader,
		Header:     http.Header{"User-Agent": userAgent},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
	}
	req = req.WithContext(httptrace.WithClientTrace(ctx, trace))
	resp, err := w.transport(fresh, tickets).RoundTrip(req)
	if err != nil {
		return fail(err)
	}
	o.status = resp.StatusCode
	o.proto = resp.Proto
	o.xcache = resp.Header.Get("X-Cache")
	o.node = nodeFromVia(resp.Header.Values("Via"))
	if got.Conn != nil && !got.Reused {
		o.newConn = true
		if resp.TLS != nil {
			o.tls = true
			o.resumed = resp.TLS.DidResume
			o.offered = w.takeOffered(got.Conn)
		}
	}
	o.bytes, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fail(err)
	}
	o.done = time.Now()
	switch {
	case o.status >= 500:
		o.kind = Kind5xx
	case o.status >= 400:
		o.kind = Kind4xx
	}
	if o.kind != "" {
		o.errMsg = resp.Status
	}
	return o
}

var userAgent = []string{"outpost-loadtest"}

// nodeFromVia returns the node name of the last Outpost entry of the Via
// header ("1.1 edge-1 (outpost)"), or "".
func nodeFromVia(values []string) string {
	for i := len(values) - 1; i >= 0; i-- {
		entries := strings.Split(values[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			e := strings.TrimSpace(entries[j])
			if !strings.HasSuffix(e, "(outpost)") {
				continue
			}
			if f := strings.Fields(e); len(f) >= 3 {
				return f[1]
			}
		}
	}
	return ""
}
