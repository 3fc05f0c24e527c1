package certs_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/internal/certs"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestState(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		notBefore, notAfter time.Time
		want                outpostv1.CertificateState
	}{
		{now.Add(-day), now.Add(90 * day), outpostv1.CertificateState_CERTIFICATE_STATE_VALID},
		{now.Add(-day), now.Add(30*day + time.Second), outpostv1.CertificateState_CERTIFICATE_STATE_VALID},
		{now.Add(-day), now.Add(30 * day), outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRING},
		{now.Add(-day), now, outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRING}, // valid up to NotAfter itself
		{now.Add(-day), now.Add(-time.Second), outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRED},
		{now.Add(time.Second), now.Add(90 * day), outpostv1.CertificateState_CERTIFICATE_STATE_NOT_YET_VALID},
	} {
		if got := certs.State(tc.notBefore, tc.notAfter, now); got != tc.want {
			t.Errorf("State(%v, %v): %v, want %v", tc.notBefore, tc.notAfter, got, tc.want)
		}
	}
}

func chainOf(t *testing.T, p *certstest.Pair) []*x509.Certificate {
	t.Helper()
	chain, err := certs.ParseChain(p.ChainPEM)
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

func TestChainTrust(t *testing.T) {
	now := time.Now()
	root := certstest.NewCA(t, "Outpost Test Root")
	inter := root.NewIntermediate(t, "Outpost Test Issuing CA")
	legacy := certstest.NewCA(t, "DST Root CA X3")
	legacyInter := legacy.NewIntermediate(t, "Cross-signed Issuing CA")
	other := certstest.NewCA(t, "Private CA")
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	withLegacy := x509.NewCertPool()
	withLegacy.AddCert(root.Cert)
	withLegacy.AddCert(legacy.Cert)

	leaf := func(o certstest.Options) []*x509.Certificate {
		if o.DNSNames == nil {
			o.DNSNames = []string{"www.example.com"}
		}
		return chainOf(t, certstest.Issue(t, o))
	}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		roots *x509.CertPool
		want  outpostv1.ChainTrust
	}{
		{"root and intermediate", leaf(certstest.Options{Issuer: inter}), roots, outpostv1.ChainTrust_CHAIN_TRUST_TRUSTED},
		{"straight from the root", leaf(certstest.Options{Issuer: root}), roots, outpostv1.ChainTrust_CHAIN_TRUST_TRUSTED},
		// Trust is about the chain, not the time: the state says expired.
		{"expired leaf", leaf(certstest.Options{Issuer: inter, NotBefore: now.Add(-72 * time.Hour), NotAfter: now.Add(-time.Hour)}), roots, outpostv1.ChainTrust_CHAIN_TRUST_TRUSTED},
		{"self-signed", leaf(certstest.Options{}), roots, outpostv1.ChainTrust_CHAIN_TRUST_UNTRUSTED},
		{"unknown CA", leaf(certstest.Options{Issuer: other}), roots, outpostv1.ChainTrust_CHAIN_TRUST_UNTRUSTED},
		{"intermediate missing", chainOf(t, certstest.Issue(t, certstest.Options{Issuer: inter}))[:1], roots, outpostv1.ChainTrust_CHAIN_TRUST_UNTRUSTED},
		{"through a dropped root no longer trusted", leaf(certstest.Options{Issuer: legacyInter}), roots, outpostv1.ChainTrust_CHAIN_TRUST_LEGACY_CA},
		{"only through a dropped root still in the store", leaf(certstest.Options{Issuer: legacyInter}), withLegacy, outpostv1.ChainTrust_CHAIN_TRUST_LEGACY_CA},
		{"no chain", nil, roots, outpostv1.ChainTrust_CHAIN_TRUST_UNTRUSTED},
	} {
		if got := certs.ChainTrust(tc.chain, tc.roots, now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// A private CA is untrusted by the system's roots.
	if got := certs.ChainTrust(leaf(certstest.Options{Issuer: inter}), nil, now); got != outpostv1.ChainTrust_CHAIN_TRUST_UNTRUSTED {
		t.Errorf("a test CA against the system roots: %v", got)
	}
	if !certs.IsLegacyRoot("DST Root CA X3") || certs.IsLegacyRoot("ISRG Root X1") {
		t.Error("legacy root list")
	}
}
