package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// expiringWithin is how near its end a certificate counts as expiring, as
// in the controller's certificate center.
const expiringWithin = 30 * 24 * time.Hour

var (
	certNotAfterDesc = prometheus.NewDesc("outpost_edge_certificate_not_after_timestamp_seconds",
		"When each loaded certificate expires (Unix time), by certificate ID. Alert on time() + 14 days > this.",
		[]string{"certificate_id"}, nil)
	certExpiringDesc = prometheus.NewDesc("outpost_edge_certificates_expiring",
		"Loaded certificates that expire within 30 days but have not expired.", nil, nil)
	certExpiredDesc = prometheus.NewDesc("outpost_edge_certificates_expired",
		"Loaded certificates past their expiry (still served: see docs/certificates.md).", nil, nil)
)

// certCollector reports the expiry of the certificates of the config the
// node serves, read at scrape time so the figures are never stale.
type certCollector struct{ n *Node }

func (c certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certNotAfterDesc
	ch <- certExpiringDesc
	ch <- certExpiredDesc
}

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	var expiring, expired int
	for id, pc := range c.n.state.Load().certs {
		ch <- prometheus.MustNewConstMetric(certNotAfterDesc, prometheus.GaugeValue, float64(pc.notAfter.Unix()), id)
		switch left := pc.notAfter.Sub(now); {
		case left <= 0:
			expired++
		case left <= expiringWithin:
			expiring++
		}
	}
	ch <- prometheus.MustNewConstMetric(certExpiringDesc, prometheus.GaugeValue, float64(expiring))
	ch <- prometheus.MustNewConstMetric(certExpiredDesc, prometheus.GaugeValue, float64(expired))
}
