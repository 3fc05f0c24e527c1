package node

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// unknownDomain labels requests for hosts no domain serves, so that
// arbitrary Host headers cannot grow the label set.
const unknownDomain = "_unknown"

// metrics are the node's Prometheus metrics, on a registry of its own so
// several nodes can run in one process (tests, the dev cluster).
type metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	originLatency *prometheus.HistogramVec
	originErrors  *prometheus.CounterVec
	handshakes    *prometheus.CounterVec
	expiredServed *prometheus.CounterVec
	revision      prometheus.Gauge
	cacheResults  *prometheus.CounterVec
	cacheBytes    *prometheus.CounterVec
	originBytes   *prometheus.CounterVec
	fills         prometheus.Counter
	collapsed     prometheus.Counter
	evictions     prometheus.Counter
	purges        prometheus.Histogram
	fastHits      prometheus.Counter
	handoffs      prometheus.Counter
	domains       sync.Map // domain → *domainMetrics
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "edge", Name: "requests_total",
			Help: "Requests by accelerated domain, scheme (HTTPS requests are billed separately) and status class.",
		}, []string{"domain", "scheme", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "edge", Name: "response_bytes_total",
			Help: "Response body bytes sent to clients, by domain and scheme.",
		}, []string{"domain", "scheme"}),
		originLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "outpost", Subsystem: "edge", Name: "origin_response_seconds",
			Help:    "Time from sending a request to an origin until its response headers arrived.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"domain"}),
		originErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "edge", Name: "origin_errors_total",
			Help: "Failed origin attempts by domain and kind (connect, tls, timeout, other).",
		}, []string{"domain", "kind"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "edge", Name: "tls_handshakes_total",
			Help: "TLS certificate selections by result: ok, no_sni, unknown_sni, https_disabled.",
		}, []string{"result"}),
		expiredServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "outpost", Subsystem: "edge", Name: "tls_expired_certificate_handshakes_total",
			Help: "Handshakes that served an expired certificate (served all the same; clients decide), by accelerated domain. Alert on any increase.",
		}, []string{"domain"}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "outpost", Subsystem: "edge", Name: "config_revision",
			Help: "The config revision the node serves.",
		}),
	}
	m.cacheResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outpost", Subsystem: "cache", Name: "requests_total",
		Help: "Cacheable requests by domain and result: HIT, MISS, EXPIRED (revalidated or refetched), STALE (served stale because the origin failed).",
	}, []string{"domain", "result"})
	m.cacheBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outpost", Subsystem: "cache", Name: "served_bytes_total",
		Help: "Body bytes served from cache entries, by domain.",
	}, []string{"domain"})
	m.originBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "outpost", Subsystem: "cache", Name: "origin_bytes_total",
		Help: "Body bytes fetched from origins into cache fills, by domain.",
	}, []string{"domain"})
	m.fills = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "cache", Name: "fills_total", Help: "Origin fetches made to fill the cache."})
	m.collapsed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "cache", Name: "collapsed_total", Help: "Requests that joined a fill already in flight instead of going to the origin."})
	m.evictions = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "cache", Name: "evictions_total", Help: "Entries evicted to stay within the memory budget."})
	m.purges = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "outpost", Subsystem: "cache", Name: "purge_apply_seconds",
		Help: "Time to apply one purge instruction on this node.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)})
	m.fastHits = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "edge", Name: "fast_path_responses_total",
		Help: "Cache hits answered by the HTTP/1.1 fast path (also counted in the request and cache counters)."})
	m.handoffs = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "edge", Name: "fast_path_handoffs_total",
		Help: "HTTP/1.1 connections the fast path handed to net/http, at the first request that was not a plain cache hit."})
	m.reg.MustRegister(m.requests, m.bytes, m.originLatency, m.originErrors, m.handshakes, m.expiredServed, m.revision,
		m.cacheResults, m.cacheBytes, m.originBytes, m.fills, m.collapsed, m.evictions, m.purges, m.fastHits, m.handoffs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) handshake(err error) {
	result := "ok"
	switch {
	case errors.Is(err, errNoSNI):
		result = "no_sni"
	case errors.Is(err, errUnknownSNI):
		result = "unknown_sni"
	case errors.Is(err, errHTTPSDisabled):
		result = "https_disabled"
	}
	m.handshakes.WithLabelValues(result).Inc()
}

// expiredHandshake counts a handshake that served domain's expired
// certificate.
func (m *metrics) expiredHandshake(domain string) {
	m.expiredServed.WithLabelValues(domain).Inc()
}

func (m *metrics) request(domain, scheme string, code int, bytes int64) {
	m.forDomain(domain).request(scheme, code, bytes)
}

func (m *metrics) origin(domain string, d time.Duration) {
	m.originLatency.WithLabelValues(domain).Observe(d.Seconds())
}

func (m *metrics) cacheResult(domain, result string) {
	m.forDomain(domain).result(result)
}

// domainMetrics caches one domain's counters, so the request path pays one
// map lookup instead of a label hash per counter. Counters are created on
// first use, so idle combinations export no series.
type domainMetrics struct {
	m       *metrics
	domain  string
	reqs    [2][6]atomic.Pointer[prometheus.Counter] // scheme × status class
	bytes   [2]atomic.Pointer[prometheus.Counter]
	results sync.Map // X-Cache value → prometheus.Counter
	served  atomic.Pointer[prometheus.Counter]
}

func (m *metrics) forDomain(domain string) *domainMetrics {
	if d, ok := m.domains.Load(domain); ok {
		return d.(*domainMetrics)
	}
	d, _ := m.domains.LoadOrStore(domain, &domainMetrics{m: m, domain: domain})
	return d.(*domainMetrics)
}

func lazy(p *atomic.Pointer[prometheus.Counter], make func() prometheus.Counter) prometheus.Counter {
	if c := p.Load(); c != nil {
		return *c
	}
	c := make()
	p.Store(&c)
	return c
}

func schemeIndex(scheme string) int {
	if scheme == "https" {
		return 1
	}
	return 0
}

func (d *domainMetrics) request(scheme string, code int, bytes int64) {
	class := min(max(code/100, 0), 5)
	si := schemeIndex(scheme)
	lazy(&d.reqs[si][class], func() prometheus.Counter {
		return d.m.requests.WithLabelValues(d.domain, scheme, strconv.Itoa(class)+"xx")
	}).Inc()
	lazy(&d.bytes[si], func() prometheus.Counter { return d.m.bytes.WithLabelValues(d.domain, scheme) }).Add(float64(bytes))
}

func (d *domainMetrics) result(label string) {
	if c, ok := d.results.Load(label); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := d.m.cacheResults.WithLabelValues(d.domain, label)
	d.results.Store(label, c)
	c.Inc()
}

func (d *domainMetrics) servedBytes(n int) {
	lazy(&d.served, func() prometheus.Counter { return d.m.cacheBytes.WithLabelValues(d.domain) }).Add(float64(n))
}
