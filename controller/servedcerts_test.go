package controller_test

import (
	"strings"
	"testing"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// TestStreamCarriesOnlyServedCertificates: a certificate no domain serves
// never reaches the nodes (it and its private key stay in the
// controllers); binding one sends it with the domain's change, a renewal
// of a served one is sent, and unbinding or deleting one removes it from
// the nodes.
func TestStreamCarriesOnlyServedCertificates(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	p := issue(t, "www.example.com")
	up, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	id := up.GetCertificate().GetId()
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	node := connectNode(t, env, "edge-1", "east", 0)
	carries := func(m *outpostv1.StreamConfigResponse) bool {
		for _, b := range m.GetCertificates() {
			if b.GetId() == id {
				return true
			}
		}
		return false
	}
	removes := func(m *outpostv1.StreamConfigResponse) bool {
		for _, r := range m.GetRemovedCertificates() {
			if r == id {
				return true
			}
		}
		return false
	}
	snap := node.until("the snapshot", func(m *outpostv1.StreamConfigResponse) bool { return m.GetSnapshot() })
	if carries(snap) || len(snap.GetCertificates()) != 0 {
		t.Fatalf("the snapshot carries %d certificates; no domain serves any", len(snap.GetCertificates()))
	}

	// Bound: the domain's change carries the certificate with its key.
	if _, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "www.example.com", Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: id}}); err != nil {
		t.Fatal(err)
	}
	https := func(on bool) func(m *outpostv1.StreamConfigResponse) bool {
		return func(m *outpostv1.StreamConfigResponse) bool {
			for _, d := range m.GetDomains() {
				if d.GetName() == "www.example.com" && d.GetHttps().GetEnabled() == on {
					return true
				}
			}
			return false
		}
	}
	m := node.until("the domain bound to the certificate", https(true))
	if !carries(m) || len(m.GetDomains()) != 1 || !strings.Contains(m.GetCertificates()[0].GetPrivateKeyPem(), "PRIVATE KEY") {
		t.Fatalf("the binding change: %d domains, carries the certificate %v", len(m.GetDomains()), carries(m))
	}
	// A renewal of a served certificate is sent.
	renewed := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}, Key: p.Key})
	rn, err := c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: id, CertificatePem: string(renewed.CertPEM)})
	if err != nil {
		t.Fatal(err)
	}
	m = node.until("the renewal", func(m *outpostv1.StreamConfigResponse) bool {
		return m.GetRevision() >= rn.GetCertificate().GetRevision()
	})
	if !carries(m) {
		t.Fatal("the renewal of a served certificate was not sent")
	}
	// Unbound: removed from the nodes; a second, unbound upload is not sent.
	if _, err := c.HTTPS.DisableHttps(ctx, &outpostv1.DisableHttpsRequest{Domain: "www.example.com"}); err != nil {
		t.Fatal(err)
	}
	m = node.until("the unbinding", https(false))
	if !removes(m) || carries(m) {
		t.Fatalf("the unbinding change removes the certificate: %v", removes(m))
	}
	other := issue(t, "shop.example.com")
	up2, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{CertificatePem: string(other.CertPEM), PrivateKeyPem: string(other.KeyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	m = node.until("the second upload", func(m *outpostv1.StreamConfigResponse) bool {
		return m.GetRevision() >= up2.GetCertificate().GetRevision()
	})
	if len(m.GetCertificates()) != 0 {
		t.Fatalf("an unbound upload was sent: %d certificates", len(m.GetCertificates()))
	}
	// A new node's snapshot: none of them.
	if s := connectNode(t, env, "edge-2", "east", 0).until("a snapshot", func(m *outpostv1.StreamConfigResponse) bool { return m.GetSnapshot() }); len(s.GetCertificates()) != 0 {
		t.Fatalf("a new node's snapshot carries %d certificates", len(s.GetCertificates()))
	}
}
