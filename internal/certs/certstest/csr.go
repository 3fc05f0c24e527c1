package certstest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

// SignOptions adjust how a CA signs a CSR. The zero value issues what the
// request asks for, valid from an hour ago for 90 days.
type SignOptions struct {
	DNSNames  []string  // default: the request's
	NotBefore time.Time // default now-1h
	NotAfter  time.Time // default now+90d
}

// SignCSR signs a PEM PKCS#10 request as a CA would: a server certificate
// for the request's public key, subject and DNS names. It returns the
// certificate and the PEM chain, leaf first, followed by ca and its
// ancestors.
func (ca *CA) SignCSR(t testing.TB, csrPEM string, o SignOptions) (*x509.Certificate, []byte) {
	t.Helper()
	b, _ := pem.Decode([]byte(csrPEM))
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("certstest: SignCSR: not a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatalf("certstest: parse CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("certstest: CSR signature: %v", err)
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(90 * 24 * time.Hour)
	}
	if o.DNSNames == nil {
		o.DNSNames = csr.DNSNames
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      csr.Subject,
		DNSNames:     o.DNSNames,
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	cert, certPEM := create(t, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	chain := bytes.Clone(certPEM)
	for c := ca; c != nil; c = c.parent {
		chain = append(chain, c.CertPEM...)
	}
	return cert, chain
}
