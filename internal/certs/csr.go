package certs

// Certificate signing requests the controller makes: the key pair, the
// PKCS#10 request and its subject, and the chain a CA signs for it.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// MaxCSRNames is the largest number of DNS names a CSR may carry, the
// common name included.
const MaxCSRNames = 100

// MaxCommonNameLength is the longest common name a CSR may have: the upper
// bound X.509 sets (ub-common-name, RFC 5280), which CAs enforce.
const MaxCommonNameLength = 64

// maxOrganizationLength is X.509's ub-organization-name.
const maxOrganizationLength = 64

// blockCSR is the PEM type of a PKCS#10 request.
const blockCSR = "CERTIFICATE REQUEST"

// CSRKeyTypes are the key types GenerateKey makes, the default first.
var CSRKeyTypes = []outpostv1.KeyType{
	outpostv1.KeyType_KEY_TYPE_EC_P256,
	outpostv1.KeyType_KEY_TYPE_RSA_2048,
	outpostv1.KeyType_KEY_TYPE_RSA_3072,
}

// CSRKeyType resolves the key type asked for a CSR: KEY_TYPE_UNSPECIFIED
// means KEY_TYPE_EC_P256, and a type other than CSRKeyTypes is an
// *apierr.Error with reason UnsupportedKeyType.
func CSRKeyType(kt outpostv1.KeyType) (outpostv1.KeyType, error) {
	if kt == outpostv1.KeyType_KEY_TYPE_UNSPECIFIED {
		return CSRKeyTypes[0], nil
	}
	for _, ok := range CSRKeyTypes {
		if kt == ok {
			return kt, nil
		}
	}
	name := kt.String()
	if _, known := outpostv1.KeyType_name[int32(kt)]; !known {
		name = fmt.Sprintf("key type %d", int32(kt))
	}
	return 0, apierr.InvalidArgument(apierr.ReasonUnsupportedKeyType,
		"%s is not offered for CSRs: use KEY_TYPE_EC_P256 (the default), KEY_TYPE_RSA_2048 or KEY_TYPE_RSA_3072", name).
		With("key_type", name)
}

// GenerateKey returns a new private key of a type CSRKeyType accepts.
func GenerateKey(kt outpostv1.KeyType) (crypto.Signer, error) {
	kt, err := CSRKeyType(kt)
	if err != nil {
		return nil, err
	}
	switch kt {
	case outpostv1.KeyType_KEY_TYPE_RSA_2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case outpostv1.KeyType_KEY_TYPE_RSA_3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	default:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
}

// CSRSubject is what a CSR asks a CA to certify.
type CSRSubject struct {
	// CommonName is also the first DNS name.
	CommonName string
	// DNSNames are the subject alternative names, CommonName first.
	DNSNames []string
	// Organization and Country are optional subject fields.
	Organization string
	Country      string
}

// NewCSRSubject normalises and validates a CSR's subject. The common name
// and every DNS name must be valid accelerated domain names (package names;
// wildcards allowed), and the common name at most MaxCommonNameLength
// characters. DNSNames is the common name followed by the other names,
// without duplicates, at most MaxCSRNames in all. The organization is at
// most 64 printable characters; the country two ASCII letters, upper-cased.
// Errors are *apierr.Error with reason InvalidDomainName,
// DomainNameNotAscii or InvalidCsrSubject.
func NewCSRSubject(commonName string, dnsNames []string, organization, country string) (CSRSubject, error) {
	cn, err := names.Domain(commonName)
	if err != nil {
		return CSRSubject{}, err
	}
	if len(cn) > MaxCommonNameLength {
		return CSRSubject{}, apierr.InvalidArgument(apierr.ReasonInvalidCsrSubject,
			"the common name %q is %d characters; X.509 allows at most %d: use a shorter name as the common name and give this one in dns_names",
			cn, len(cn), MaxCommonNameLength).With("name", cn)
	}
	s := CSRSubject{CommonName: cn, DNSNames: []string{cn}}
	seen := map[string]bool{cn: true}
	for _, n := range dnsNames {
		d, err := names.Domain(n)
		if err != nil {
			return CSRSubject{}, err
		}
		if !seen[d] {
			seen[d] = true
			s.DNSNames = append(s.DNSNames, d)
		}
	}
	if len(s.DNSNames) > MaxCSRNames {
		return CSRSubject{}, apierr.InvalidArgument(apierr.ReasonInvalidCsrSubject,
			"a CSR carries at most %d DNS names, the common name included; this one has %d", MaxCSRNames, len(s.DNSNames)).
			With("limit", fmt.Sprint(MaxCSRNames))
	}
	s.Organization = strings.TrimSpace(organization)
	if err := checkOrganization(s.Organization); err != nil {
		return CSRSubject{}, err
	}
	s.Country = strings.ToUpper(strings.TrimSpace(country))
	if s.Country != "" && (len(s.Country) != 2 || !isASCIILetters(s.Country)) {
		return CSRSubject{}, apierr.InvalidArgument(apierr.ReasonInvalidCsrSubject,
			"the country %q is not a two-letter ISO 3166 code such as \"DE\" or \"US\"", country)
	}
	return s, nil
}

func checkOrganization(o string) error {
	switch {
	case !utf8.ValidString(o):
		return apierr.InvalidArgument(apierr.ReasonInvalidCsrSubject, "the organization is not valid UTF-8")
	case utf8.RuneCountInString(o) > maxOrganizationLength:
		return apierr.InvalidArgument(apierr.ReasonInvalidCsrSubject,
			"the organization is %d characters; X.509 allows at most %d", utf8.RuneCountInString(o), maxOrganizationLength)
	}
	for _, r := range o {
		if !unicode.IsPrint(r) {
			return apierr.InvalidArgument(apierr.ReasonInvalidCsrSubject, "the organization holds a control or other non-printable character")
		}
	}
	return nil
}

func isASCIILetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// CreateCSR returns the PEM of a PKCS#10 request for s, signed by key (with
// SHA-256). s must come from NewCSRSubject.
func CreateCSR(key crypto.Signer, s CSRSubject) (string, error) {
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: s.CommonName},
		DNSNames: s.DNSNames,
	}
	if s.Organization != "" {
		tmpl.Subject.Organization = []string{s.Organization}
	}
	if s.Country != "" {
		tmpl.Subject.Country = []string{s.Country}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", fmt.Errorf("create CSR: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: blockCSR, Bytes: der})), nil
}

// ParseCSR parses a PEM PKCS#10 request and checks its signature.
func ParseCSR(csrPEM string) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode([]byte(csrPEM))
	if b == nil || b.Type != blockCSR {
		return nil, fmt.Errorf("not a PEM %q block", blockCSR)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, err
	}
	return csr, nil
}

// ParseChainFor parses and validates a PEM chain, leaf first, that a CA
// signed for the public key pub, at time now: as ParsePair does, except
// that the leaf is matched against pub rather than against a private key.
// Errors are *apierr.Error with the reasons of ParseChain, and
// CertificateKeyMismatch, CertificateExpired or CertificateNotYetValid.
func ParseChainFor(certPEM []byte, pub crypto.PublicKey, now time.Time) ([]*x509.Certificate, error) {
	chain, err := ParseChain(certPEM)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	lp, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !lp.Equal(pub) {
		return nil, apierr.InvalidArgument(apierr.ReasonCertificateKeyMismatch,
			"the certificate %s was not issued for this CSR's key: its public key differs (the first certificate of the chain must be the one the CA signed for this CSR)",
			describeCert(leaf))
	}
	if err := checkValidity(leaf, now); err != nil {
		return nil, err
	}
	return chain, nil
}
