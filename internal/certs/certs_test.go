package certs_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

type pairCase struct {
	name    string
	cert    []byte
	key     []byte
	reason  string            // "" for success
	chain   int               // on success, the expected chain length
	keyType outpostv1.KeyType // on success
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// pairCases builds the ParsePair table. It is shared by the table test, the
// key-leak test and the fuzz seeds.
func pairCases(t testing.TB) []pairCase {
	t.Helper()
	now := time.Now()
	ec := certstest.Issue(t, certstest.Options{DNSNames: []string{"a.example.com"}})
	p384 := certstest.Issue(t, certstest.Options{KeyType: outpostv1.KeyType_KEY_TYPE_EC_P384})
	p521 := certstest.Issue(t, certstest.Options{KeyType: outpostv1.KeyType_KEY_TYPE_EC_P521})
	rsa2048 := certstest.Issue(t, certstest.Options{KeyType: outpostv1.KeyType_KEY_TYPE_RSA_2048})
	ed := certstest.Issue(t, certstest.Options{KeyType: outpostv1.KeyType_KEY_TYPE_ED25519})
	other := certstest.Issue(t, certstest.Options{})

	root := certstest.NewCA(t, "Test Root")
	inter := root.NewIntermediate(t, "Test Intermediate")
	viaInter := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.com"}, Issuer: inter})
	viaRoot := certstest.Issue(t, certstest.Options{Issuer: root})

	expired := certstest.Issue(t, certstest.Options{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	future := certstest.Issue(t, certstest.Options{NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)})

	rsaKey := rsa2048.Key.(*rsa.PrivateKey)
	pkcs1 := pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
	sec1DER, err := x509.MarshalECPrivateKey(ec.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	sec1 := cat(ecParams, pemBlock("EC PRIVATE KEY", sec1DER))
	p8, _ := pem.Decode(ec.KeyPEM)

	weakRSA, weakRSAKey := issueWith(t, mustRSA(t, 1024))
	p224Key, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	weakEC, weakECKey := issueWith(t, p224Key)
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519DER, err := x509.MarshalPKCS8PrivateKey(x25519)
	if err != nil {
		t.Fatal(err)
	}

	return []pairCase{
		// Accepted.
		{name: "ecdsa p256 pkcs8", cert: ec.CertPEM, key: ec.KeyPEM, chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},
		{name: "ecdsa p384", cert: p384.CertPEM, key: p384.KeyPEM, chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_EC_P384},
		{name: "ecdsa p521", cert: p521.CertPEM, key: p521.KeyPEM, chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_EC_P521},
		{name: "rsa 2048 pkcs8", cert: rsa2048.CertPEM, key: rsa2048.KeyPEM, chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_RSA_2048},
		{name: "rsa 2048 pkcs1", cert: rsa2048.CertPEM, key: pkcs1, chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_RSA_2048},
		{name: "ed25519", cert: ed.CertPEM, key: ed.KeyPEM, chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_ED25519},
		{name: "sec1 after ec parameters", cert: ec.CertPEM, key: sec1, chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},
		{name: "pkcs8 mislabelled as sec1", cert: ec.CertPEM, key: pemBlock("EC PRIVATE KEY", p8.Bytes), chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},
		{name: "chain with intermediate and root", cert: viaInter.ChainPEM, key: viaInter.KeyPEM, chain: 3, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},
		{name: "chain with intermediate only", cert: cat(viaInter.CertPEM, inter.CertPEM), key: viaInter.KeyPEM, chain: 2, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},
		{name: "leaf issued by root", cert: viaRoot.ChainPEM, key: viaRoot.KeyPEM, chain: 2, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},
		{name: "leaf without its issuer", cert: viaInter.CertPEM, key: viaInter.KeyPEM, chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},
		{name: "combined file in both fields", cert: cat(ec.KeyPEM, ec.CertPEM), key: cat(ec.CertPEM, ec.KeyPEM), chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},
		{name: "text around the blocks", cert: cat([]byte("Bag Attributes\n  friendlyName: x\n"), ec.CertPEM, []byte("trailer\n")), key: cat([]byte("Key Attributes: <No Attributes>\n"), ec.KeyPEM), chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},
		{name: "crlf line endings", cert: bytes.ReplaceAll(ec.CertPEM, []byte("\n"), []byte("\r\n")), key: bytes.ReplaceAll(ec.KeyPEM, []byte("\n"), []byte("\r\n")), chain: 1, keyType: outpostv1.KeyType_KEY_TYPE_EC_P256},

		// CertificateNotPem.
		{name: "empty certificate", cert: nil, key: ec.KeyPEM, reason: apierr.ReasonCertificateNotPem},
		{name: "garbage certificate", cert: []byte("hello, world"), key: ec.KeyPEM, reason: apierr.ReasonCertificateNotPem},
		{name: "der certificate", cert: ec.Cert.Raw, key: ec.KeyPEM, reason: apierr.ReasonCertificateNotPem},
		{name: "pkcs12-like blob", cert: []byte{0x30, 0x82, 0x0a, 0x01, 0x02, 0x01, 0x03, 0x30, 0x82, 0x09, 0xc7, 0x06, 0x09, 0x2a, 0x86, 0x48}, key: ec.KeyPEM, reason: apierr.ReasonCertificateNotPem},
		{name: "key in certificate field", cert: ec.KeyPEM, key: ec.KeyPEM, reason: apierr.ReasonCertificateNotPem},
		{name: "truncated certificate pem", cert: ec.CertPEM[:len(ec.CertPEM)-10], key: ec.KeyPEM, reason: apierr.ReasonCertificateNotPem},

		// CertificateChainInvalid.
		{name: "certificate block of junk", cert: pemBlock("CERTIFICATE", []byte("not x509")), key: ec.KeyPEM, reason: apierr.ReasonCertificateChainInvalid},
		{name: "chain out of order", cert: cat(inter.CertPEM, viaInter.CertPEM), key: viaInter.KeyPEM, reason: apierr.ReasonCertificateChainInvalid},
		{name: "chain missing intermediate", cert: cat(viaInter.CertPEM, root.CertPEM), key: viaInter.KeyPEM, reason: apierr.ReasonCertificateChainInvalid},
		{name: "unrelated certificate appended", cert: cat(ec.CertPEM, other.CertPEM), key: ec.KeyPEM, reason: apierr.ReasonCertificateChainInvalid},
		{name: "chain too long", cert: bytes.Repeat(root.CertPEM, certs.MaxChainLength+1), key: ec.KeyPEM, reason: apierr.ReasonCertificateChainInvalid},

		// PrivateKeyNotPem.
		{name: "empty key", cert: ec.CertPEM, key: nil, reason: apierr.ReasonPrivateKeyNotPem},
		{name: "garbage key", cert: ec.CertPEM, key: []byte("my password is hunter2"), reason: apierr.ReasonPrivateKeyNotPem},
		{name: "der key", cert: ec.CertPEM, key: p8.Bytes, reason: apierr.ReasonPrivateKeyNotPem},
		{name: "key block of junk", cert: ec.CertPEM, key: pemBlock("PRIVATE KEY", []byte("not a key at all")), reason: apierr.ReasonPrivateKeyNotPem},
		{name: "certificate in key field", cert: ec.CertPEM, key: ec.CertPEM, reason: apierr.ReasonPrivateKeyNotPem},
		{name: "openssh key", cert: ec.CertPEM, key: pemBlock("OPENSSH PRIVATE KEY", p8.Bytes), reason: apierr.ReasonPrivateKeyNotPem},
		{name: "two keys", cert: ec.CertPEM, key: cat(ec.KeyPEM, other.KeyPEM), reason: apierr.ReasonPrivateKeyNotPem},
		{name: "x25519 key", cert: ec.CertPEM, key: pemBlock("PRIVATE KEY", x25519DER), reason: apierr.ReasonPrivateKeyNotPem},

		// PrivateKeyEncrypted.
		{name: "pkcs8 encrypted", cert: ec.CertPEM, key: certstest.PKCS8EncryptedKeyPEM(), reason: apierr.ReasonPrivateKeyEncrypted},
		{name: "legacy encrypted ec", cert: ec.CertPEM, key: certstest.EncryptedKeyPEM(t, ec.Key), reason: apierr.ReasonPrivateKeyEncrypted},
		{name: "legacy encrypted rsa", cert: rsa2048.CertPEM, key: certstest.EncryptedKeyPEM(t, rsa2048.Key), reason: apierr.ReasonPrivateKeyEncrypted},

		// WeakKey.
		{name: "rsa 1024", cert: weakRSA, key: weakRSAKey, reason: apierr.ReasonWeakKey},
		{name: "ecdsa p224", cert: weakEC, key: weakECKey, reason: apierr.ReasonWeakKey},

		// CertificateKeyMismatch.
		{name: "key of another certificate", cert: ec.CertPEM, key: other.KeyPEM, reason: apierr.ReasonCertificateKeyMismatch},
		{name: "key of the intermediate", cert: viaInter.ChainPEM, key: certstest.PKCS8KeyPEM(t, inter.Key), reason: apierr.ReasonCertificateKeyMismatch},
		{name: "rsa certificate with ec key", cert: rsa2048.CertPEM, key: ec.KeyPEM, reason: apierr.ReasonCertificateKeyMismatch},

		// Validity.
		{name: "expired", cert: expired.CertPEM, key: expired.KeyPEM, reason: apierr.ReasonCertificateExpired},
		{name: "not yet valid", cert: future.CertPEM, key: future.KeyPEM, reason: apierr.ReasonCertificateNotYetValid},
	}
}

func mustRSA(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issueWith issues a self-signed certificate for key, which certstest does
// not generate (weak keys).
func issueWith(t testing.TB, key crypto.Signer) (certPEM, keyPEM []byte) {
	t.Helper()
	ca := certstest.NewCA(t, "Weak Key Issuer")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "weak.example.com"},
		DNSNames:     []string{"weak.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("CERTIFICATE", der), certstest.PKCS8KeyPEM(t, key)
}

func TestParsePair(t *testing.T) {
	now := time.Now()
	for _, tc := range pairCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			p, err := certs.ParsePair(tc.cert, tc.key, now)
			if tc.reason != "" {
				if err == nil {
					t.Fatalf("ParsePair succeeded, want reason %s", tc.reason)
				}
				var ae *apierr.Error
				if !errors.As(err, &ae) {
					t.Fatalf("error %v (%T) is not an *apierr.Error", err, err)
				}
				if ae.Code != codes.InvalidArgument || ae.Reason != tc.reason {
					t.Fatalf("got %v/%s (%q), want InvalidArgument/%s", ae.Code, ae.Reason, ae.Message, tc.reason)
				}
				if ae.Message == "" {
					t.Fatal("empty error message")
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePair: %v", err)
			}
			if len(p.Chain) != tc.chain {
				t.Fatalf("chain has %d certificates, want %d", len(p.Chain), tc.chain)
			}
			if p.Leaf != p.Chain[0] {
				t.Fatal("Leaf is not Chain[0]")
			}
			if !p.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(p.Key.Public()) {
				t.Fatal("Leaf's public key differs from Key.Public()")
			}
			if got := certs.KeyTypeOf(p.Key.Public()); got != tc.keyType {
				t.Fatalf("key type %v, want %v", got, tc.keyType)
			}

			// ChainPEM is the chain again, and only the chain.
			again, err := certs.ParseChain([]byte(p.ChainPEM))
			if err != nil {
				t.Fatalf("ParseChain(ChainPEM): %v", err)
			}
			if len(again) != len(p.Chain) {
				t.Fatalf("ChainPEM holds %d certificates, want %d", len(again), len(p.Chain))
			}
			for i := range again {
				if !again[i].Equal(p.Chain[i]) {
					t.Fatalf("ChainPEM certificate %d differs", i)
				}
			}
			if strings.Contains(p.ChainPEM, "PRIVATE KEY") || strings.Count(p.ChainPEM, "-----BEGIN ") != len(p.Chain) {
				t.Fatalf("ChainPEM is not clean:\n%s", p.ChainPEM)
			}

			// KeyPEM is one unencrypted PKCS#8 block of the same key.
			b, rest := pem.Decode(p.KeyPEM)
			if b == nil || b.Type != "PRIVATE KEY" || len(b.Headers) != 0 || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("KeyPEM is not one PKCS#8 block:\n%s", p.KeyPEM)
			}
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				t.Fatalf("KeyPEM: %v", err)
			}
			if !k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(p.Key.Public()) {
				t.Fatal("KeyPEM holds another key")
			}
		})
	}
}

func TestParsePairTime(t *testing.T) {
	p := certstest.Issue(t, certstest.Options{})
	nb, na := p.Cert.NotBefore, p.Cert.NotAfter
	for _, tc := range []struct {
		name   string
		now    time.Time
		reason string
	}{
		{"at not before", nb, ""},
		{"at not after", na, ""},
		{"just before", nb.Add(-time.Second), apierr.ReasonCertificateNotYetValid},
		{"just after", na.Add(time.Second), apierr.ReasonCertificateExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certs.ParsePair(p.CertPEM, p.KeyPEM, tc.now)
			if got := apierr.Reason(err); got != tc.reason {
				t.Fatalf("reason %q, want %q (err %v)", got, tc.reason, err)
			}
		})
	}
}

// TestErrorsCarryNoKeyMaterial checks every refusal: neither the message nor
// the metadata may quote a PEM key header or any base64 line of the key.
func TestErrorsCarryNoKeyMaterial(t *testing.T) {
	now := time.Now()
	checked := 0
	for _, tc := range pairCases(t) {
		if tc.reason == "" {
			continue
		}
		_, err := certs.ParsePair(tc.cert, tc.key, now)
		var ae *apierr.Error
		if !errors.As(err, &ae) {
			t.Fatalf("%s: error %v is not an *apierr.Error", tc.name, err)
		}
		texts := []string{err.Error(), ae.Message}
		for k, v := range ae.Metadata {
			texts = append(texts, k, v)
		}
		for _, text := range texts {
			if strings.Contains(text, "PRIVATE KEY") {
				t.Errorf("%s: error mentions a PEM key header: %q", tc.name, text)
			}
			for _, line := range keyLines(tc.key) {
				if strings.Contains(text, line) {
					t.Errorf("%s: error quotes key line %q: %q", tc.name, line, text)
				}
			}
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("only %d refusals checked", checked)
	}
}

// keyLines returns the body lines of every PEM block in key, and key itself
// when it is not PEM.
func keyLines(key []byte) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(string(key), "\r", ""), "\n") {
		l = strings.TrimSpace(l)
		if len(l) < 8 || strings.HasPrefix(l, "-----") || strings.Contains(l, ": ") {
			continue
		}
		out = append(out, l)
	}
	return out
}

func TestParseChain(t *testing.T) {
	root := certstest.NewCA(t, "Root")
	inter := root.NewIntermediate(t, "Intermediate")
	leaf := certstest.Issue(t, certstest.Options{Issuer: inter})
	chain, err := certs.ParseChain(leaf.ChainPEM)
	if err != nil {
		t.Fatal(err)
	}
	want := []*x509.Certificate{leaf.Cert, inter.Cert, root.Cert}
	if !slices.EqualFunc(chain, want, (*x509.Certificate).Equal) {
		t.Fatal("ParseChain returned another chain")
	}
	if got := certs.EncodeChain(chain); got != string(leaf.ChainPEM) {
		t.Fatalf("EncodeChain:\n%s\nwant\n%s", got, leaf.ChainPEM)
	}
	for _, tc := range []struct {
		name   string
		in     []byte
		reason string
	}{
		{"empty", nil, apierr.ReasonCertificateNotPem},
		{"der", leaf.Cert.Raw, apierr.ReasonCertificateNotPem},
		{"key only", leaf.KeyPEM, apierr.ReasonCertificateNotPem},
		{"reversed", cat(root.CertPEM, inter.CertPEM, leaf.CertPEM), apierr.ReasonCertificateChainInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certs.ParseChain(tc.in)
			if got := apierr.Reason(err); got != tc.reason {
				t.Fatalf("reason %q, want %q (err %v)", got, tc.reason, err)
			}
		})
	}
}

func TestParseCAs(t *testing.T) {
	a, b := certstest.NewCA(t, "A"), certstest.NewCA(t, "B")
	leafA := certstest.Issue(t, certstest.Options{Issuer: a})
	leafB := certstest.Issue(t, certstest.Options{Issuer: b})
	for _, tc := range []struct {
		name     string
		in       string
		reason   string
		trustA   bool
		trustB   bool
		selfLeaf bool
	}{
		{name: "one", in: string(a.CertPEM), trustA: true},
		{name: "two", in: string(a.CertPEM) + "\n" + string(b.CertPEM), trustA: true, trustB: true},
		{name: "leading text", in: "# my origin CA\n" + string(b.CertPEM), trustB: true},
		{name: "empty", in: "", reason: apierr.ReasonInvalidCaPem},
		{name: "blank", in: " \n\t", reason: apierr.ReasonInvalidCaPem},
		{name: "garbage", in: "not a certificate", reason: apierr.ReasonInvalidCaPem},
		{name: "der", in: string(a.Cert.Raw), reason: apierr.ReasonInvalidCaPem},
		{name: "junk block", in: string(pemBlock("CERTIFICATE", []byte("junk"))), reason: apierr.ReasonInvalidCaPem},
		{name: "key block", in: string(a.CertPEM) + string(leafA.KeyPEM), reason: apierr.ReasonInvalidCaPem},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := certs.ParseCAs(tc.in)
			if got := apierr.Reason(err); got != tc.reason {
				t.Fatalf("reason %q, want %q (err %v)", got, tc.reason, err)
			}
			if tc.reason != "" {
				if pool != nil {
					t.Fatal("pool returned with an error")
				}
				if strings.Contains(err.Error(), "PRIVATE KEY") {
					t.Fatalf("error mentions a key header: %v", err)
				}
				return
			}
			verifies := func(c *x509.Certificate) bool {
				_, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"})
				return err == nil
			}
			if got := verifies(leafA.Cert); got != tc.trustA {
				t.Errorf("leaf of A verifies = %v, want %v", got, tc.trustA)
			}
			if got := verifies(leafB.Cert); got != tc.trustB {
				t.Errorf("leaf of B verifies = %v, want %v", got, tc.trustB)
			}
		})
	}
}

type coversCase struct {
	name   string
	sans   []string
	cn     string
	domain string
	want   bool
}

var coversCases = []coversCase{
	{"exact", []string{"a.example.com"}, "", "a.example.com", true},
	{"other name", []string{"a.example.com"}, "", "b.example.com", false},
	{"second san", []string{"a.example.com", "b.example.com"}, "", "b.example.com", true},
	{"wildcard covers one label", []string{"*.example.com"}, "", "a.example.com", true},
	{"wildcard not two labels", []string{"*.example.com"}, "", "x.a.example.com", false},
	{"wildcard not apex", []string{"*.example.com"}, "", "example.com", false},
	{"wildcard domain by same wildcard", []string{"*.example.com"}, "", "*.example.com", true},
	{"wildcard domain not by concrete", []string{"a.example.com"}, "", "*.example.com", false},
	{"wildcard domain not by parent wildcard", []string{"*.com"}, "", "*.example.com", false},
	{"wildcard domain not by deeper wildcard", []string{"*.a.example.com"}, "", "*.example.com", false},
	{"case and trailing dot in san", []string{"A.Example.COM."}, "", "a.example.com", true},
	{"case and trailing dot in domain", []string{"a.example.com"}, "", "A.EXAMPLE.com.", true},
	{"wildcard case", []string{"*.EXAMPLE.com"}, "", "WWW.example.com", true},
	{"cn ignored with sans", []string{"a.example.com"}, "b.example.com", "b.example.com", false},
	{"cn counts without sans", nil, "b.example.com", "b.example.com", true},
	{"wildcard cn without sans", nil, "*.example.com", "x.example.com", true},
	{"cn not a host name", nil, "Acme Corp", "acme corp", false},
	{"partial wildcard is literal", []string{"a*.example.com"}, "", "ab.example.com", false},
	{"bare star", []string{"*"}, "", "a.example.com", false},
	{"empty domain", []string{"a.example.com"}, "", "", false},
	{"no names", nil, "", "a.example.com", false},
	{"suffix is not a label", []string{"*.example.com"}, "", "aexample.com", false},
}

func leafWith(sans []string, cn string) *x509.Certificate {
	return &x509.Certificate{DNSNames: sans, Subject: pkix.Name{CommonName: cn}}
}

func TestCovers(t *testing.T) {
	for _, tc := range coversCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := certs.Covers(leafWith(tc.sans, tc.cn), tc.domain); got != tc.want {
				t.Fatalf("Covers(%q, cn %q, %q) = %v, want %v", tc.sans, tc.cn, tc.domain, got, tc.want)
			}
		})
	}
	if certs.Covers(nil, "a.example.com") {
		t.Fatal("a nil leaf covers a name")
	}
	// And on a real certificate.
	p := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.com", "example.com"}})
	if !certs.Covers(p.Cert, "www.example.com") || !certs.Covers(p.Cert, "example.com") || certs.Covers(p.Cert, "example.org") {
		t.Fatal("Covers on an issued certificate")
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		sans []string
		cn   string
		want []string
	}{
		{"sans normalised and deduplicated", []string{"A.example.com.", "a.example.com", "*.Example.com", ""}, "cn.example.com", []string{"a.example.com", "*.example.com"}},
		{"cn fallback", nil, "WWW.Example.com.", []string{"www.example.com"}},
		{"cn not a name", nil, "Acme Corp", nil},
		{"nothing", nil, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := certs.Names(leafWith(tc.sans, tc.cn)); !slices.Equal(got, tc.want) {
				t.Fatalf("Names = %q, want %q", got, tc.want)
			}
		})
	}
}

func rsaPub(bits int) *rsa.PublicKey {
	return &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), uint(bits-1)), E: 65537}
}

func TestKeyTypeOf(t *testing.T) {
	ecKey := func(c elliptic.Curve) crypto.PublicKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pub  crypto.PublicKey
		want outpostv1.KeyType
	}{
		{"p256", ecKey(elliptic.P256()), outpostv1.KeyType_KEY_TYPE_EC_P256},
		{"p384", ecKey(elliptic.P384()), outpostv1.KeyType_KEY_TYPE_EC_P384},
		{"p521", ecKey(elliptic.P521()), outpostv1.KeyType_KEY_TYPE_EC_P521},
		{"p224", ecKey(elliptic.P224()), outpostv1.KeyType_KEY_TYPE_UNSPECIFIED},
		{"rsa 1024", rsaPub(1024), outpostv1.KeyType_KEY_TYPE_UNSPECIFIED},
		{"rsa 2047", rsaPub(2047), outpostv1.KeyType_KEY_TYPE_UNSPECIFIED},
		{"rsa 2048", rsaPub(2048), outpostv1.KeyType_KEY_TYPE_RSA_2048},
		{"rsa 2560", rsaPub(2560), outpostv1.KeyType_KEY_TYPE_RSA_2048},
		{"rsa 3072", rsaPub(3072), outpostv1.KeyType_KEY_TYPE_RSA_3072},
		{"rsa 4000", rsaPub(4000), outpostv1.KeyType_KEY_TYPE_RSA_3072},
		{"rsa 4096", rsaPub(4096), outpostv1.KeyType_KEY_TYPE_RSA_4096},
		{"rsa 8192", rsaPub(8192), outpostv1.KeyType_KEY_TYPE_RSA_4096},
		{"ed25519", edPub, outpostv1.KeyType_KEY_TYPE_ED25519},
		{"ed25519 signer", edPriv, outpostv1.KeyType_KEY_TYPE_ED25519},
		{"nil", nil, outpostv1.KeyType_KEY_TYPE_UNSPECIFIED},
		{"not a key", "ssh-ed25519 AAAA", outpostv1.KeyType_KEY_TYPE_UNSPECIFIED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := certs.KeyTypeOf(tc.pub); got != tc.want {
				t.Fatalf("KeyTypeOf = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	root := certstest.NewCA(t, "Root")
	inter := root.NewIntermediate(t, "Intermediate")
	p := certstest.Issue(t, certstest.Options{
		DNSNames:   []string{"www.example.com", "*.example.com"},
		CommonName: "www.example.com",
		KeyType:    outpostv1.KeyType_KEY_TYPE_EC_P384,
		Issuer:     inter,
	})
	chain, err := certs.ParseChain(p.ChainPEM)
	if err != nil {
		t.Fatal(err)
	}
	d := certs.Describe(chain)
	sum := sha256.Sum256(p.Cert.Raw)
	switch {
	case d.GetCommonName() != "www.example.com":
		t.Errorf("CommonName %q", d.GetCommonName())
	case !slices.Equal(d.GetDnsNames(), []string{"www.example.com", "*.example.com"}):
		t.Errorf("DnsNames %q", d.GetDnsNames())
	case d.GetIssuer() != "CN=Intermediate,O=Outpost Test":
		t.Errorf("Issuer %q", d.GetIssuer())
	case !d.GetNotBefore().AsTime().Equal(p.Cert.NotBefore) || !d.GetNotAfter().AsTime().Equal(p.Cert.NotAfter):
		t.Errorf("validity %v..%v, want %v..%v", d.GetNotBefore().AsTime(), d.GetNotAfter().AsTime(), p.Cert.NotBefore, p.Cert.NotAfter)
	case d.GetFingerprintSha256() != hex.EncodeToString(sum[:]) || strings.ToLower(d.GetFingerprintSha256()) != d.GetFingerprintSha256():
		t.Errorf("fingerprint %q", d.GetFingerprintSha256())
	case d.GetKeyType() != outpostv1.KeyType_KEY_TYPE_EC_P384:
		t.Errorf("KeyType %v", d.GetKeyType())
	case d.GetCertificatePem() != string(p.ChainPEM):
		t.Errorf("CertificatePem:\n%s", d.GetCertificatePem())
	case d.GetId() != "" || d.GetName() != "" || d.GetAccount() != "" || d.GetCreateTime() != nil:
		t.Errorf("record fields set: %v", d)
	}
	if e := certs.Describe(nil); e == nil || e.GetFingerprintSha256() != "" {
		t.Fatalf("Describe(nil) = %v", e)
	}
}

func FuzzParsePair(f *testing.F) {
	for _, tc := range pairCases(f) {
		f.Add(tc.cert, tc.key)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		p, err := certs.ParsePair(certPEM, keyPEM, now)
		if err != nil {
			var ae *apierr.Error
			if !errors.As(err, &ae) || ae.Code != codes.InvalidArgument || ae.Reason == "" {
				t.Fatalf("error %v is not an InvalidArgument *apierr.Error with a reason", err)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("error mentions a key header: %v", err)
			}
			return
		}
		if len(p.Chain) == 0 || p.Leaf != p.Chain[0] {
			t.Fatal("Leaf is not Chain[0]")
		}
		pub, ok := p.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(p.Key.Public()) {
			t.Fatal("accepted a pair whose leaf public key is not Key.Public()")
		}
		if strings.Contains(p.ChainPEM, "PRIVATE KEY") {
			t.Fatal("ChainPEM holds a key")
		}
	})
}

func FuzzCovers(f *testing.F) {
	for _, tc := range coversCases {
		f.Add(strings.Join(tc.sans, ","), tc.cn, tc.domain)
	}
	f.Fuzz(func(t *testing.T, sans, cn, domain string) {
		var list []string
		if sans != "" {
			list = strings.Split(sans, ",")
		}
		leaf := leafWith(list, cn)
		got := certs.Covers(leaf, domain)
		ns := certs.Names(leaf)

		isASCII := true
		for i := 0; i < len(domain); i++ {
			isASCII = isASCII && domain[i] < 0x80
		}
		if isASCII && certs.Covers(leaf, strings.ToUpper(names.Normalize(domain))+".") != got {
			t.Fatalf("Covers depends on case or a trailing dot for %q", domain)
		}
		if !got {
			return
		}
		// Whatever is covered is covered by a name Names reports:
		// the name itself, or the wildcard one label above it.
		d := names.Normalize(domain)
		if slices.Contains(ns, d) {
			return
		}
		if strings.HasPrefix(d, "*.") {
			t.Fatalf("wildcard %q covered by %q, which do not include it", d, ns)
		}
		i := strings.IndexByte(d, '.')
		if i <= 0 || !slices.Contains(ns, "*"+d[i:]) {
			t.Fatalf("%q covered by %q, which hold neither it nor its wildcard", d, ns)
		}
	})
}
