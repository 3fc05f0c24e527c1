package scheduler

import (
	"errors"
	"net"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the scheduler's Prometheus metrics: DNS answers by transport
// and response code, gRPC calls by method and code with their handling
// time, and the Go runtime's. They are served on Config.MetricsAddr.
type metrics struct {
	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics
	dns  *prometheus.CounterVec
	// common are dns's children for the usual codes, looked up once:
	// [0] UDP, [1] TCP, by rcode.
	common [2]map[int]prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1}))),
		dns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_scheduler_dns_responses_total",
			Help: "DNS responses the scheduler sent, by transport (udp, tcp) and response code (NOERROR, NXDOMAIN, REFUSED, FORMERR, BADVERS…).",
		}, []string{"proto", "rcode"}),
	}
	m.reg.MustRegister(m.grpc, m.dns, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for i, proto := range []string{"udp", "tcp"} {
		m.common[i] = map[int]prometheus.Counter{}
		for _, rc := range []int{dns.RcodeSuccess, dns.RcodeNameError, dns.RcodeRefused, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeBadVers} {
			m.common[i][rc] = m.dns.WithLabelValues(proto, dns.RcodeToString[rc])
		}
	}
	return m
}

// countDNS counts one response.
func (m *metrics) countDNS(udp bool, rcode int) {
	i := 1
	if udp {
		i = 0
	}
	if c, ok := m.common[i][rcode]; ok {
		c.Inc()
		return
	}
	m.dns.WithLabelValues([]string{"udp", "tcp"}[i], dns.RcodeToString[rcode]).Inc()
}

// serveMetrics serves /metrics on lis until Close.
func (s *Scheduler) serveMetrics(lis net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{Registry: s.metrics.reg}))
	s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.metricsSrv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics serve", "err", err)
		}
	}()
}
