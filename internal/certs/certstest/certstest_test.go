package certstest_test

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestIssueDefaults(t *testing.T) {
	before := time.Now()
	p := certstest.Issue(t, certstest.Options{})
	c := p.Cert
	if len(c.DNSNames) != 1 || c.DNSNames[0] != "example.com" || c.Subject.CommonName != "example.com" {
		t.Fatalf("names %q / %q", c.DNSNames, c.Subject.CommonName)
	}
	if c.NotBefore.After(before) || c.NotAfter.Before(before.Add(89*24*time.Hour)) {
		t.Fatalf("validity %v..%v", c.NotBefore, c.NotAfter)
	}
	if c.PublicKeyAlgorithm != x509.ECDSA || c.IsCA {
		t.Fatalf("algorithm %v, IsCA %v", c.PublicKeyAlgorithm, c.IsCA)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		t.Fatalf("not self-signed: %v", err)
	}
	if string(p.ChainPEM) != string(p.CertPEM) {
		t.Fatal("self-signed ChainPEM is not the certificate alone")
	}
	if b, _ := pem.Decode(p.KeyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatal("KeyPEM is not PKCS#8")
	}
}

func TestIssueKeyTypes(t *testing.T) {
	for _, kt := range []outpostv1.KeyType{
		outpostv1.KeyType_KEY_TYPE_EC_P256,
		outpostv1.KeyType_KEY_TYPE_EC_P384,
		outpostv1.KeyType_KEY_TYPE_RSA_2048,
		outpostv1.KeyType_KEY_TYPE_RSA_3072,
		outpostv1.KeyType_KEY_TYPE_ED25519,
	} {
		t.Run(kt.String(), func(t *testing.T) {
			p := certstest.Issue(t, certstest.Options{KeyType: kt})
			if !p.Cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(p.Key.Public()) {
				t.Fatal("certificate is not for Key")
			}
			tc := p.TLSCertificate(t)
			if len(tc.Certificate) != 1 || tc.PrivateKey == nil {
				t.Fatalf("TLSCertificate: %d certs", len(tc.Certificate))
			}
		})
	}
}

func TestIssuedByIntermediate(t *testing.T) {
	root := certstest.NewCA(t, "Root")
	inter := root.NewIntermediate(t, "Intermediate")
	p := certstest.Issue(t, certstest.Options{DNSNames: []string{"a.example.com", "*.example.com"}, Issuer: inter})

	var blocks int
	for rest := p.ChainPEM; ; blocks++ {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
	}
	if blocks != 3 {
		t.Fatalf("ChainPEM has %d blocks, want leaf, intermediate and root", blocks)
	}

	inters := x509.NewCertPool()
	inters.AddCert(inter.Cert)
	if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inters, DNSName: "b.example.com"}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: certstest.NewCA(t, "Other").Pool()}); err == nil {
		t.Fatal("verified against an unrelated root")
	}

	// The pair serves TLS with its chain.
	tc := p.TLSCertificate(t)
	if len(tc.Certificate) != 3 {
		t.Fatalf("TLS chain has %d certificates", len(tc.Certificate))
	}
	srv := &tls.Config{Certificates: []tls.Certificate{tc}}
	cli := &tls.Config{RootCAs: root.Pool(), ServerName: "a.example.com"}
	checkHandshake(t, srv, cli)
}

func pipe(t *testing.T) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func checkHandshake(t *testing.T, srv, cli *tls.Config) {
	t.Helper()
	a, b := pipe(t)
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(a, srv).Handshake() }()
	if err := tls.Client(b, cli).Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}

func TestIssueCA(t *testing.T) {
	p := certstest.Issue(t, certstest.Options{IsCA: true})
	if !p.Cert.IsCA || p.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatal("IsCA not honoured")
	}
}

func TestEncryptedKeyPEM(t *testing.T) {
	for _, kt := range []outpostv1.KeyType{
		outpostv1.KeyType_KEY_TYPE_EC_P256,
		outpostv1.KeyType_KEY_TYPE_RSA_2048,
	} {
		p := certstest.Issue(t, certstest.Options{KeyType: kt})
		b, _ := pem.Decode(certstest.EncryptedKeyPEM(t, p.Key))
		if b == nil || b.Headers["Proc-Type"] != "4,ENCRYPTED" || !strings.HasPrefix(b.Headers["DEK-Info"], "AES-256-CBC,") {
			t.Fatalf("%v: not a legacy encrypted block: %v", kt, b)
		}
		// The block is a real one: the deprecated decrypter opens it.
		der, err := x509.DecryptPEMBlock(b, []byte(certstest.EncryptedKeyPassword)) //nolint:staticcheck // checking the legacy format on purpose
		if err != nil {
			t.Fatalf("%v: DecryptPEMBlock: %v", kt, err)
		}
		var k any
		if b.Type == "RSA PRIVATE KEY" {
			k, err = x509.ParsePKCS1PrivateKey(der)
		} else {
			k, err = x509.ParseECPrivateKey(der)
		}
		if err != nil {
			t.Fatalf("%v: parse decrypted key: %v", kt, err)
		}
		if !k.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(p.Key.Public()) {
			t.Fatalf("%v: decrypted another key", kt)
		}
	}
	b, _ := pem.Decode(certstest.PKCS8EncryptedKeyPEM())
	if b == nil || b.Type != "ENCRYPTED PRIVATE KEY" || len(b.Bytes) == 0 {
		t.Fatalf("PKCS8EncryptedKeyPEM: %v", b)
	}
}

func TestRSAKeyIsShared(t *testing.T) {
	a := certstest.Issue(t, certstest.Options{KeyType: outpostv1.KeyType_KEY_TYPE_RSA_2048})
	b := certstest.Issue(t, certstest.Options{KeyType: outpostv1.KeyType_KEY_TYPE_RSA_2048})
	if a.Key != b.Key || a.Cert.Equal(b.Cert) {
		t.Fatal("RSA keys should be shared between distinct certificates")
	}
	c := certstest.Issue(t, certstest.Options{})
	d := certstest.Issue(t, certstest.Options{})
	if c.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(d.Key.Public()) {
		t.Fatal("ECDSA keys should be fresh")
	}
}

func TestSignCSR(t *testing.T) {
	root := certstest.NewCA(t, "Root")
	inter := root.NewIntermediate(t, "Intermediate")
	key := certstest.Issue(t, certstest.Options{}).Key
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "csr.example.com"}, DNSNames: []string{"csr.example.com", "*.csr.example.com"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))

	cert, chain := inter.SignCSR(t, csrPEM, certstest.SignOptions{})
	if cert.Subject.CommonName != "csr.example.com" || strings.Join(cert.DNSNames, ",") != "csr.example.com,*.csr.example.com" {
		t.Fatalf("names %q / %q", cert.Subject.CommonName, cert.DNSNames)
	}
	if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
		t.Fatal("certificate is not for the CSR's key")
	}
	inters := x509.NewCertPool()
	inters.AddCert(inter.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inters, DNSName: "a.csr.example.com"}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if n := strings.Count(string(chain), "-----BEGIN CERTIFICATE-----"); n != 3 {
		t.Fatalf("chain has %d certificates, want leaf, intermediate and root", n)
	}

	expired, _ := root.SignCSR(t, csrPEM, certstest.SignOptions{DNSNames: []string{"other.example.com"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if expired.NotAfter.After(time.Now()) || expired.DNSNames[0] != "other.example.com" {
		t.Fatalf("options not honoured: %v %v", expired.NotAfter, expired.DNSNames)
	}
}
