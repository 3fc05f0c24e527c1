package controller

import (
	"errors"
	"net"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the controller's Prometheus metrics: its gRPC API (calls by
// method and code, and their handling time), the config streams it holds
// and what the nodes answer on them, the config revision it streams, and
// the Go runtime's. They are served on Config.MetricsAddr.
type metrics struct {
	reg     *prometheus.Registry
	grpc    *grpcprom.ServerMetrics
	streams *prometheus.GaugeVec
	acks    *prometheus.CounterVec
}

func newMetrics(c *Controller) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}))),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_controller_config_streams",
			Help: "Config streams open on this controller, by member role (node, scheduler).",
		}, []string{"role"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_controller_config_replies_total",
			Help: "Replies of members to config messages on this controller's streams: ack (applied) or nack (refused; see outpostctl node list).",
		}, []string{"reply"}),
	}
	m.reg.MustRegister(m.grpc, m.streams, m.acks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_controller_config_revision",
			Help: "The etcd revision of the config this controller streams (its config cache is current up to it).",
		}, func() float64 { return float64(c.cache.Revision()) }))
	for _, role := range []string{"node", "scheduler"} {
		m.streams.WithLabelValues(role)
	}
	for _, reply := range []string{"ack", "nack"} {
		m.acks.WithLabelValues(reply)
	}
	return m
}

// serveMetrics serves /metrics on lis until the controller closes.
func (c *Controller) serveMetrics(lis net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{Registry: c.metrics.reg}))
	c.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := c.metricsSrv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("metrics serve", "err", err)
		}
	}()
}
