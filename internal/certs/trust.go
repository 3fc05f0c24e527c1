package certs

import (
	"crypto/x509"
	"time"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// ExpiringWithin is how close to its end a certificate is EXPIRING rather
// than VALID.
const ExpiringWithin = 30 * 24 * time.Hour

// State is a certificate's life at time now: NOT_YET_VALID before
// notBefore, EXPIRED after notAfter, EXPIRING within ExpiringWithin of
// notAfter, else VALID. A certificate is still valid at notAfter itself, as
// crypto/x509 has it.
func State(notBefore, notAfter, now time.Time) outpostv1.CertificateState {
	switch {
	case now.Before(notBefore):
		return outpostv1.CertificateState_CERTIFICATE_STATE_NOT_YET_VALID
	case now.After(notAfter):
		return outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRED
	case notAfter.Sub(now) <= ExpiringWithin:
		return outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRING
	}
	return outpostv1.CertificateState_CERTIFICATE_STATE_VALID
}

// legacyRoots are common names of root CAs that the major root programs
// (Mozilla, Chrome, Apple, Microsoft) removed or distrusted, or that expired
// while chains still pointed at them. A chain that reaches one of them only
// works for old clients whose stores still hold it. The list is matched by
// common name alone: it is a hint for people, not a security decision.
var legacyRoots = map[string]bool{
	"DST Root CA X3":                                                 true, // Let's Encrypt's old cross-sign, expired 2021
	"AddTrust External CA Root":                                      true, // Sectigo's old cross-sign, expired 2020
	"Baltimore CyberTrust Root":                                      true, // expired 2025
	"Cybertrust Global Root":                                         true,
	"GeoTrust Global CA":                                             true, // Symantec roots, distrusted 2018
	"GeoTrust Primary Certification Authority":                       true,
	"GeoTrust Primary Certification Authority - G2":                  true,
	"GeoTrust Primary Certification Authority - G3":                  true,
	"GeoTrust Universal CA":                                          true,
	"thawte Primary Root CA":                                         true,
	"thawte Primary Root CA - G2":                                    true,
	"thawte Primary Root CA - G3":                                    true,
	"VeriSign Class 3 Public Primary Certification Authority - G3":   true,
	"VeriSign Class 3 Public Primary Certification Authority - G4":   true,
	"VeriSign Class 3 Public Primary Certification Authority - G5":   true,
	"VeriSign Universal Root Certification Authority":                true,
	"Symantec Class 3 Public Primary Certification Authority - G4":   true,
	"Symantec Class 3 Public Primary Certification Authority - G6":   true,
	"StartCom Certification Authority":                               true, // distrusted 2017
	"StartCom Certification Authority G2":                            true,
	"Certification Authority of WoSign":                              true,
	"Certification Authority of WoSign G2":                           true,
	"CA WoSign ECC Root":                                             true,
	"China Internet Network Information Center EV Certificates Root": true, // CNNIC
	"CNNIC ROOT":                         true,
	"TrustCor RootCert CA-1":             true, // removed 2022
	"TrustCor RootCert CA-2":             true,
	"TrustCor ECA-1":                     true,
	"Chambers of Commerce Root - 2008":   true, // Camerfirma, removed 2021
	"Global Chambersign Root - 2008":     true,
	"Staat der Nederlanden EV Root CA":   true,
	"Staat der Nederlanden Root CA - G3": true,
	"Sonera Class2 CA":                   true,
	"Certinomis - Root CA":               true,
	"E-Tugra Certification Authority":    true,
	"Hongkong Post Root CA 1":            true,
}

// IsLegacyRoot reports whether a common name is on the built-in list of
// roots that the major root programs dropped.
func IsLegacyRoot(commonName string) bool { return legacyRoots[commonName] }

// ChainTrust says how far clients can trust a chain, leaf first, given the
// roots they trust (nil: the system's roots):
//
//   - TRUSTED: the chain verifies to a root in roots that is not a legacy
//     root (IsLegacyRoot);
//   - LEGACY_CA: it verifies only to legacy roots, or it does not verify and
//     one of its certificates is, or is issued by, a legacy root;
//   - UNTRUSTED: anything else: self-signed, or issued by a CA no root
//     vouches for.
//
// Trust is judged apart from time: the chain is verified as of a moment
// within the leaf's validity (now, or the nearest end of that period), so
// an expired certificate of a trusted CA is still TRUSTED; its state says
// it expired. Names are not checked either: coverage is a matter of the
// domains. An empty chain is UNTRUSTED.
func ChainTrust(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) outpostv1.ChainTrust {
	if len(chain) == 0 || chain[0] == nil {
		return outpostv1.ChainTrust_CHAIN_TRUST_UNTRUSTED
	}
	leaf := chain[0]
	at := now
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verified, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err == nil {
		for _, path := range verified {
			if root := path[len(path)-1]; !IsLegacyRoot(root.Subject.CommonName) {
				return outpostv1.ChainTrust_CHAIN_TRUST_TRUSTED
			}
		}
		return outpostv1.ChainTrust_CHAIN_TRUST_LEGACY_CA
	}
	for _, c := range chain {
		if IsLegacyRoot(c.Subject.CommonName) || IsLegacyRoot(c.Issuer.CommonName) {
			return outpostv1.ChainTrust_CHAIN_TRUST_LEGACY_CA
		}
	}
	return outpostv1.ChainTrust_CHAIN_TRUST_UNTRUSTED
}
