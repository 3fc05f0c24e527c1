// Package certs parses and validates the TLS certificates and private keys
// users upload, and describes them for the API. Every refusal is an
// *apierr.Error with a reason a client can switch on and a message a person
// can act on; no message ever carries key material.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// MinRSABits is the smallest RSA modulus ParsePair accepts.
const MinRSABits = 2048

// MaxChainLength is the largest number of certificates a chain may hold.
// Real chains have two to four; the limit bounds the work done on hostile
// input.
const MaxChainLength = 10

// PEM block types.
const (
	blockCertificate  = "CERTIFICATE"
	blockPKCS8        = "PRIVATE KEY"
	blockPKCS1        = "RSA PRIVATE KEY"
	blockSEC1         = "EC PRIVATE KEY"
	blockECParameters = "EC PARAMETERS"
	blockEncrypted    = "ENCRYPTED PRIVATE KEY"
)

// Parsed is a validated certificate chain and its private key.
type Parsed struct {
	Chain    []*x509.Certificate // leaf first
	Leaf     *x509.Certificate   // == Chain[0]
	Key      crypto.Signer
	ChainPEM string // the chain re-encoded as clean PEM (only CERTIFICATE blocks, leaf first)
	KeyPEM   []byte // the key re-encoded as unencrypted PKCS#8 PEM ("PRIVATE KEY")
}

// ParsePair parses and validates a PEM chain and PEM private key at time now.
//
// The chain must be leaf first, each certificate signed by the next one; PEM
// blocks other than CERTIFICATE in certPEM are dropped. Only the leaf's
// validity period is checked: an expired cross-signed intermediate is still
// served by some sites on purpose. Extended key usages are not checked.
//
// The key may be PKCS#8, PKCS#1 or SEC 1 (an "EC PARAMETERS" block is
// skipped) and must be RSA of at least MinRSABits bits, ECDSA on P-256,
// P-384 or P-521, or Ed25519. Certificate blocks in keyPEM are ignored, so a
// combined file works for both fields.
//
// Errors are *apierr.Error with code InvalidArgument and one of the reasons
// CertificateNotPem, CertificateChainInvalid, PrivateKeyNotPem,
// PrivateKeyEncrypted, WeakKey, CertificateKeyMismatch, CertificateExpired or
// CertificateNotYetValid. Their messages never include key material.
func ParsePair(certPEM, keyPEM []byte, now time.Time) (*Parsed, error) {
	chain, err := ParseChain(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if err := checkKeyStrength(key.Public()); err != nil {
		return nil, err
	}
	leaf := chain[0]
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, apierr.InvalidArgument(apierr.ReasonCertificateKeyMismatch,
			"the private key does not belong to the certificate %s: its public key differs from the certificate's (the first certificate of the chain must be the one issued for this key)",
			describeCert(leaf))
	}
	if err := checkValidity(leaf, now); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		// Every key parseKey returns can be marshalled; keep the
		// message free of the underlying error all the same.
		return nil, apierr.InvalidArgument(apierr.ReasonPrivateKeyNotPem, "the private key cannot be re-encoded as PKCS#8")
	}
	return &Parsed{
		Chain:    chain,
		Leaf:     leaf,
		Key:      key,
		ChainPEM: EncodeChain(chain),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: blockPKCS8, Bytes: der}),
	}, nil
}

// ParseChain parses a PEM certificate chain, leaf first, and checks that each
// certificate is signed by the next. Blocks of other types are ignored. Errors
// are *apierr.Error with reason CertificateNotPem when there is no
// CERTIFICATE block and CertificateChainInvalid when a block is not X.509 or
// the chain is out of order, broken or longer than MaxChainLength.
func ParseChain(certPEM []byte) ([]*x509.Certificate, error) {
	var (
		chain  []*x509.Certificate
		hasKey bool
		rest   = certPEM
	)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != blockCertificate {
			hasKey = hasKey || strings.Contains(b.Type, "PRIVATE KEY")
			continue
		}
		if len(chain) == MaxChainLength {
			return nil, apierr.InvalidArgument(apierr.ReasonCertificateChainInvalid,
				"the chain has more than %d certificates", MaxChainLength)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, apierr.InvalidArgument(apierr.ReasonCertificateChainInvalid,
				"certificate %d of the chain is not a valid X.509 certificate: %s", len(chain)+1, cleanX509Error(err))
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		msg := "no PEM certificate found: expected one or more \"-----BEGIN CERTIFICATE-----\" blocks, leaf first (DER, PKCS#12 and other binary formats are not accepted)"
		if hasKey {
			msg = "no PEM certificate found: the certificate field holds a private key but no \"-----BEGIN CERTIFICATE-----\" block"
		}
		return nil, apierr.InvalidArgument(apierr.ReasonCertificateNotPem, "%s", msg)
	}
	for i := 0; i+1 < len(chain); i++ {
		child, parent := chain[i], chain[i+1]
		if err := child.CheckSignatureFrom(parent); err != nil {
			return nil, apierr.InvalidArgument(apierr.ReasonCertificateChainInvalid,
				"certificate %d of the chain (%s) is not signed by certificate %d (%s): the chain must be in order, leaf first, each certificate followed by its issuer",
				i+1, describeCert(child), i+2, describeCert(parent))
		}
	}
	return chain, nil
}

// ParseCAs parses PEM CA certificates, used to trust private origins, into a
// pool. Every block must be a CERTIFICATE that parses; the error is an
// *apierr.Error with reason InvalidCaPem otherwise, or when there is none.
func ParseCAs(pemText string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	rest := []byte(pemText)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if b.Type != blockCertificate {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidCaPem,
				"block %d of the CA certificates is not a certificate; only \"-----BEGIN CERTIFICATE-----\" blocks are accepted", n)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidCaPem,
				"CA certificate %d is not a valid X.509 certificate: %s", n, cleanX509Error(err))
		}
		pool.AddCert(c)
	}
	if n == 0 {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidCaPem,
			"no PEM CA certificate found: expected one or more \"-----BEGIN CERTIFICATE-----\" blocks")
	}
	return pool, nil
}

// Covers reports whether leaf covers the normalised accelerated name domain.
// A concrete name is covered by an equal DNS name or by a wildcard one label
// above it ("*.example.com" covers "a.example.com" but not
// "x.a.example.com"); a wildcard name is covered only by the same wildcard.
// Comparison ignores case and a trailing dot. The names are those of Names.
func Covers(leaf *x509.Certificate, domain string) bool {
	if leaf == nil {
		return false
	}
	return CoversNames(Names(leaf), domain)
}

// CoversNames is Covers for a certificate's normalised names (as Names
// returns them and outpostv1.Certificate.DnsNames stores them).
func CoversNames(certNames []string, domain string) bool {
	domain = names.Normalize(domain)
	if domain == "" {
		return false
	}
	for _, n := range certNames {
		if n == domain {
			return true
		}
		// A wildcard domain is covered only by the same wildcard.
		if !names.IsWildcard(domain) && names.IsWildcard(n) && names.Matches(n, domain) {
			return true
		}
	}
	return false
}

// Names returns the normalised DNS names leaf covers, without duplicates: its
// DNS SANs, or, when it has none, its common name if that looks like a host
// name (as legacy clients accept).
func Names(leaf *x509.Certificate) []string {
	if leaf == nil {
		return nil
	}
	var out []string
	seen := make(map[string]bool)
	add := func(n string) {
		n = names.Normalize(n)
		if n == "" || seen[n] {
			return
		}
		seen[n] = true
		out = append(out, n)
	}
	if len(leaf.DNSNames) > 0 {
		for _, n := range leaf.DNSNames {
			add(n)
		}
		return out
	}
	if cn := names.Normalize(leaf.Subject.CommonName); looksLikeHost(cn) {
		add(cn)
	}
	return out
}

// KeyTypeOf maps a public key to its outpostv1.KeyType. RSA keys map by
// modulus size to the nearest listed size at or below it; RSA keys under 2048
// bits, other curves and other algorithms are KEY_TYPE_UNSPECIFIED. A
// crypto.Signer is mapped by its public key.
func KeyTypeOf(pub crypto.PublicKey) outpostv1.KeyType {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			break
		}
		switch bits := k.N.BitLen(); {
		case bits >= 4096:
			return outpostv1.KeyType_KEY_TYPE_RSA_4096
		case bits >= 3072:
			return outpostv1.KeyType_KEY_TYPE_RSA_3072
		case bits >= 2048:
			return outpostv1.KeyType_KEY_TYPE_RSA_2048
		}
	case *ecdsa.PublicKey:
		if k == nil {
			break
		}
		switch k.Curve {
		case elliptic.P256():
			return outpostv1.KeyType_KEY_TYPE_EC_P256
		case elliptic.P384():
			return outpostv1.KeyType_KEY_TYPE_EC_P384
		case elliptic.P521():
			return outpostv1.KeyType_KEY_TYPE_EC_P521
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return outpostv1.KeyType_KEY_TYPE_ED25519
		}
	case crypto.Signer:
		if k == nil {
			break
		}
		// A Signer whose public key is again a Signer would recurse.
		if p := k.Public(); p != nil {
			if _, again := p.(crypto.Signer); !again {
				return KeyTypeOf(p)
			}
		}
	}
	return outpostv1.KeyType_KEY_TYPE_UNSPECIFIED
}

// Describe fills an outpostv1.Certificate from a chain, leaf first: common
// name, DNS names, issuer, validity, fingerprint, key type and the clean PEM
// chain. It leaves id, name, account, owner and times of record empty. An
// empty chain gives an empty message.
func Describe(chain []*x509.Certificate) *outpostv1.Certificate {
	if len(chain) == 0 || chain[0] == nil {
		return &outpostv1.Certificate{}
	}
	leaf := chain[0]
	sum := sha256.Sum256(leaf.Raw)
	return &outpostv1.Certificate{
		CommonName:        leaf.Subject.CommonName,
		DnsNames:          Names(leaf),
		Issuer:            leaf.Issuer.String(),
		NotBefore:         timestamppb.New(leaf.NotBefore),
		NotAfter:          timestamppb.New(leaf.NotAfter),
		FingerprintSha256: hex.EncodeToString(sum[:]),
		KeyType:           KeyTypeOf(leaf.PublicKey),
		CertificatePem:    EncodeChain(chain),
	}
}

// EncodeChain returns the PEM of a chain: one CERTIFICATE block per
// certificate, in order, without headers.
func EncodeChain(chain []*x509.Certificate) string {
	var buf bytes.Buffer
	for _, c := range chain {
		if c == nil {
			continue
		}
		// Encoding to a bytes.Buffer fails only for invalid headers,
		// and there are none.
		_ = pem.Encode(&buf, &pem.Block{Type: blockCertificate, Bytes: c.Raw})
	}
	return buf.String()
}

// parseKey finds the one private key in keyPEM. Its errors never mention
// the bytes it was given, nor the PEM type names (which contain "PRIVATE
// KEY" and would be echoed to logs that are scanned for key leaks).
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	var (
		key     crypto.Signer
		sawCert bool
		rest    = keyPEM
	)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == blockCertificate:
			sawCert = true
			continue
		case b.Type == blockECParameters:
			continue
		case b.Type == blockEncrypted || isLegacyEncrypted(b):
			return nil, apierr.InvalidArgument(apierr.ReasonPrivateKeyEncrypted,
				"the private key is encrypted (password-protected); upload it unencrypted, for example after \"openssl pkey -in key.pem -out key-plain.pem\"")
		case b.Type != blockPKCS8 && b.Type != blockPKCS1 && b.Type != blockSEC1:
			if strings.HasSuffix(b.Type, "PRIVATE KEY") {
				return nil, apierr.InvalidArgument(apierr.ReasonPrivateKeyNotPem,
					"the private key is in an unsupported format; use PKCS#8, PKCS#1 (RSA) or SEC 1 (EC) PEM, for example by converting it with \"openssl pkey -in key.pem -out key-pkcs8.pem\"")
			}
			continue
		}
		if key != nil {
			return nil, apierr.InvalidArgument(apierr.ReasonPrivateKeyNotPem,
				"the key field holds more than one private key; upload only the key of the certificate")
		}
		k, err := parseKeyDER(b.Type, b.Bytes)
		if err != nil {
			return nil, err
		}
		key = k
	}
	if key == nil {
		msg := "no PEM private key found: expected an unencrypted PKCS#8, PKCS#1 (RSA) or SEC 1 (EC) private key in PEM form (DER, PKCS#12 and other binary formats are not accepted)"
		if sawCert {
			msg = "no PEM private key found: the key field holds a certificate but no private key"
		}
		return nil, apierr.InvalidArgument(apierr.ReasonPrivateKeyNotPem, "%s", msg)
	}
	return key, nil
}

// parseKeyDER parses a key block, trying the format its type names first
// and then the others, since some tools mislabel PKCS#8 blocks.
func parseKeyDER(typ string, der []byte) (crypto.Signer, error) {
	parsers := []func([]byte) (any, error){
		x509.ParsePKCS8PrivateKey,
		func(b []byte) (any, error) { return x509.ParsePKCS1PrivateKey(b) },
		func(b []byte) (any, error) { return x509.ParseECPrivateKey(b) },
	}
	switch typ {
	case blockPKCS1:
		parsers[0], parsers[1] = parsers[1], parsers[0]
	case blockSEC1:
		parsers[0], parsers[2] = parsers[2], parsers[0]
	}
	for _, parse := range parsers {
		k, err := parse(der)
		if err != nil {
			continue
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, apierr.InvalidArgument(apierr.ReasonPrivateKeyNotPem,
				"the private key's algorithm is not supported; use RSA, ECDSA (P-256, P-384 or P-521) or Ed25519")
		}
	}
	return nil, apierr.InvalidArgument(apierr.ReasonPrivateKeyNotPem,
		"the private key cannot be parsed: its PEM block does not hold a valid PKCS#8, PKCS#1 or SEC 1 key")
}

// isLegacyEncrypted reports whether a block carries the RFC 1421 headers of
// an OpenSSL "traditional" password-protected key.
func isLegacyEncrypted(b *pem.Block) bool {
	if _, ok := b.Headers["DEK-Info"]; ok {
		return true
	}
	return strings.Contains(strings.ToUpper(b.Headers["Proc-Type"]), "ENCRYPTED")
}

// checkKeyStrength refuses RSA keys under MinRSABits and ECDSA keys on
// curves other than P-256, P-384 and P-521.
func checkKeyStrength(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return apierr.InvalidArgument(apierr.ReasonWeakKey,
				"the RSA key has %d bits; at least %d are required", bits, MinRSABits).
				With("key_bits", fmt.Sprint(bits))
		}
	case *ecdsa.PublicKey:
		if KeyTypeOf(k) == outpostv1.KeyType_KEY_TYPE_UNSPECIFIED {
			return apierr.InvalidArgument(apierr.ReasonWeakKey,
				"the ECDSA key is on curve %s; only P-256, P-384 and P-521 are accepted", k.Curve.Params().Name)
		}
	}
	return nil
}

func checkValidity(leaf *x509.Certificate, now time.Time) error {
	const layout = time.RFC3339
	switch {
	case now.After(leaf.NotAfter):
		return apierr.InvalidArgument(apierr.ReasonCertificateExpired,
			"the certificate %s expired at %s", describeCert(leaf), leaf.NotAfter.UTC().Format(layout)).
			With("not_after", leaf.NotAfter.UTC().Format(layout))
	case now.Before(leaf.NotBefore):
		return apierr.InvalidArgument(apierr.ReasonCertificateNotYetValid,
			"the certificate %s is not valid before %s", describeCert(leaf), leaf.NotBefore.UTC().Format(layout)).
			With("not_before", leaf.NotBefore.UTC().Format(layout))
	}
	return nil
}

// describeCert names a certificate for a message: its subject, or its first
// DNS name when the subject is empty.
func describeCert(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return fmt.Sprintf("%q", s)
	}
	if len(c.DNSNames) > 0 {
		return fmt.Sprintf("for %q", c.DNSNames[0])
	}
	return "with an empty subject"
}

// cleanX509Error drops the package prefix of an x509 parse error.
func cleanX509Error(err error) string {
	return strings.TrimPrefix(err.Error(), "x509: ")
}

// looksLikeHost reports whether a normalised common name can be a DNS name:
// dot-separated, LDH labels, with an optional leading "*." wildcard.
func looksLikeHost(n string) bool {
	n = strings.TrimPrefix(n, "*.")
	if n == "" || len(n) > names.MaxNameLength || !strings.Contains(n, ".") {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
