package node_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/node"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// handshake does a TLS handshake with addr for sni and returns the leaf the
// server presented. cfg may set RootCAs, Time and the like.
func handshake(addr, sni string, cfg *tls.Config) (*x509.Certificate, error) {
	c := cfg.Clone()
	c.ServerName = sni
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// TestEdgeServesExpiredCertificate: a node keeps serving a domain's
// certificate after it expired, rather than failing every handshake, and
// counts each such handshake for alerting; the client decides. A renewal
// replaces it at the next handshake.
func TestEdgeServesExpiredCertificate(t *testing.T) {
	// The controller lives two days in the past, so that it accepts a
	// certificate that has expired by the time the node serves it.
	past := func() time.Time { return time.Now().Add(-48 * time.Hour) }
	env := controllertest.Start(t, func(c *controller.Config) { c.Now = past })
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	n := startNode(t, env, env.JoinToken(t), nodeOpts{})
	const domain = "www.example.com"
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: domain, Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", 80)}}); err != nil {
		t.Fatal(err)
	}
	ca := certstest.NewCA(t, "edge CA")
	expired := certstest.Issue(t, certstest.Options{DNSNames: []string{domain}, Issuer: ca,
		NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-10 * time.Minute)})
	up, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{CertificatePem: string(expired.ChainPEM), PrivateKeyPem: string(expired.KeyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := c.Certs.DeployCertificate(ctx, &outpostv1.DeployCertificateRequest{Id: up.GetCertificate().GetId(), Domains: []string{domain}})
	if err != nil || !dep.GetResults()[0].GetDeployed() {
		t.Fatalf("deploy: %v %v", dep, err)
	}
	eventually(t, "the node to apply the deployment", func() bool { return n.Revision() >= dep.GetRevision() })

	// A verifying client refuses it: that is the client's call.
	_, err = handshake(n.HTTPSAddr(), domain, &tls.Config{RootCAs: ca.Pool()})
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a verifying client: %v, want a certificate-expired error", err)
	}
	// The node did serve it: the same client with its clock half an hour
	// back (the test CA is valid from an hour ago) completes the handshake
	// and gets the expired certificate.
	leaf, err := handshake(n.HTTPSAddr(), domain, &tls.Config{RootCAs: ca.Pool(), Time: func() time.Time { return time.Now().Add(-30 * time.Minute) }})
	if err != nil || !leaf.Equal(expired.Cert) {
		t.Fatalf("handshake with a skewed clock: %v", err)
	}
	if got := scrapeMetric(t, n, `outpost_edge_tls_expired_certificate_handshakes_total{domain="www.example.com"}`); got != "2" {
		t.Fatalf("expired-certificate handshakes counted: %q, want 2", got)
	}
	if got := scrapeMetric(t, n, `outpost_edge_certificates_expired`); got != "1" {
		t.Fatalf("expired certificates loaded: %q, want 1", got)
	}
	if got := scrapeMetric(t, n, `outpost_edge_certificate_not_after_timestamp_seconds{certificate_id="`+up.GetCertificate().GetId()+`"}`); got == "" {
		t.Fatal("no expiry gauge for the certificate")
	}

	// Renewing it in place moves the domain at the next handshake.
	fresh := certstest.Issue(t, certstest.Options{DNSNames: []string{domain}, Issuer: ca, NotBefore: time.Now().Add(-72 * time.Hour)})
	ren, err := c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: up.GetCertificate().GetId(), CertificatePem: string(fresh.ChainPEM), PrivateKeyPem: string(fresh.KeyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node to apply the renewal", func() bool { return n.Revision() >= ren.GetCertificate().GetRevision() })
	leaf, err = handshake(n.HTTPSAddr(), domain, &tls.Config{RootCAs: ca.Pool()})
	if err != nil || !leaf.Equal(fresh.Cert) {
		t.Fatalf("after renewal: %v", err)
	}
	if got := scrapeMetric(t, n, `outpost_edge_tls_expired_certificate_handshakes_total{domain="www.example.com"}`); got != "2" {
		t.Fatalf("expired-certificate handshakes after renewal: %q", got)
	}
	if got := scrapeMetric(t, n, `outpost_edge_certificates_expired`); got != "0" {
		t.Fatalf("expired certificates loaded after renewal: %q, want 0", got)
	}
}

// scrapeMetric returns the value of one series from the node's /metrics,
// or "" when it is absent.
func scrapeMetric(t *testing.T, n *node.Node, series string) string {
	t.Helper()
	resp, err := http.Get("http://" + n.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}
