// Package certstest issues throwaway certificates, keys and CAs for tests.
// Keys are generated in memory; RSA keys, which are slow to generate, are
// made once per size and process and then shared, so two RSA pairs of the
// same size have the same key. Nothing here is fit for production use.
package certstest

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// EncryptedKeyPassword is the password of the keys EncryptedKeyPEM returns.
const EncryptedKeyPassword = "outpost-test"

// Options describe a certificate for Issue. The zero value is a self-signed
// ECDSA P-256 certificate for "example.com", valid from an hour ago for 90
// days.
type Options struct {
	DNSNames   []string          // SANs; default {"example.com"}
	CommonName string            // default DNSNames[0]
	KeyType    outpostv1.KeyType // default KEY_TYPE_EC_P256
	NotBefore  time.Time         // default now-1h
	NotAfter   time.Time         // default now+90d
	Issuer     *CA               // nil: self-signed leaf
	IsCA       bool
	// Key is the leaf's key, for a certificate renewed with the same key
	// as an earlier one (Pair.Key); nil makes a key of KeyType.
	Key crypto.Signer
}

// CA is a certificate authority that signs test certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte

	parent *CA // nil for a root
}

// NewCA returns a self-signed ECDSA P-256 root CA with common name name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t, outpostv1.KeyType_KEY_TYPE_EC_P256)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Outpost Test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, certPEM := create(t, tmpl, tmpl, key.Public(), key)
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}
}

// NewIntermediate returns an ECDSA P-256 intermediate CA signed by ca.
// Certificates it issues carry it and its ancestors in their ChainPEM.
func (ca *CA) NewIntermediate(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t, outpostv1.KeyType_KEY_TYPE_EC_P256)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Outpost Test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, certPEM := create(t, tmpl, ca.Cert, key.Public(), ca.Key)
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, parent: ca}
}

// Pool returns a pool holding only ca's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Pair is an issued certificate and its key.
type Pair struct {
	CertPEM  []byte // the leaf alone
	KeyPEM   []byte // PKCS#8
	Cert     *x509.Certificate
	Key      crypto.Signer
	ChainPEM []byte // the leaf, then its issuer and the issuer's ancestors
}

// Issue returns a certificate described by o, signed by o.Issuer or
// self-signed.
func Issue(t testing.TB, o Options) *Pair {
	t.Helper()
	if len(o.DNSNames) == 0 {
		o.DNSNames = []string{"example.com"}
	}
	if o.CommonName == "" {
		o.CommonName = o.DNSNames[0]
	}
	if o.KeyType == outpostv1.KeyType_KEY_TYPE_UNSPECIFIED {
		o.KeyType = outpostv1.KeyType_KEY_TYPE_EC_P256
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(90 * 24 * time.Hour)
	}
	key := o.Key
	if key == nil {
		key = newKey(t, o.KeyType)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: o.CommonName},
		DNSNames:     o.DNSNames,
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if o.IsCA {
		tmpl.BasicConstraintsValid = true
		tmpl.IsCA = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, signer := tmpl, key
	if o.Issuer != nil {
		parent, signer = o.Issuer.Cert, o.Issuer.Key
	}
	cert, certPEM := create(t, tmpl, parent, key.Public(), signer)

	chain := bytes.Clone(certPEM)
	for ca := o.Issuer; ca != nil; ca = ca.parent {
		chain = append(chain, ca.CertPEM...)
	}
	return &Pair{
		CertPEM:  certPEM,
		KeyPEM:   PKCS8KeyPEM(t, key),
		Cert:     cert,
		Key:      key,
		ChainPEM: chain,
	}
}

// TLSCertificate returns the pair, with its chain, as a tls.Certificate.
func (p *Pair) TLSCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(p.ChainPEM, p.KeyPEM)
	if err != nil {
		t.Fatalf("certstest: X509KeyPair: %v", err)
	}
	return c
}

// PKCS8KeyPEM returns key as an unencrypted PKCS#8 ("PRIVATE KEY") PEM.
func PKCS8KeyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("certstest: MarshalPKCS8PrivateKey: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// EncryptedKeyPEM returns key as an OpenSSL "traditional" password-protected
// PEM ("Proc-Type: 4,ENCRYPTED", AES-256-CBC), the format
// x509.EncryptPEMBlock wrote, under EncryptedKeyPassword. RSA keys are
// PKCS#1, ECDSA keys SEC 1, and other keys PKCS#8 (which OpenSSL never
// writes in this form, but which a parser must refuse all the same).
func EncryptedKeyPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	var (
		typ string
		der []byte
		err error
	)
	switch k := key.(type) {
	case *rsa.PrivateKey:
		typ, der = "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)
	case *ecdsa.PrivateKey:
		typ = "EC PRIVATE KEY"
		der, err = x509.MarshalECPrivateKey(k)
	default:
		typ = "PRIVATE KEY"
		der, err = x509.MarshalPKCS8PrivateKey(key)
	}
	if err != nil {
		t.Fatalf("certstest: marshal key: %v", err)
	}
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(iv); err != nil {
		t.Fatalf("certstest: %v", err)
	}
	// OpenSSL's EVP_BytesToKey with MD5, one iteration, the first 8
	// bytes of the IV as salt: RFC 1423 key derivation.
	pw, salt := []byte(EncryptedKeyPassword), iv[:8]
	var kek, prev []byte
	for len(kek) < 32 {
		h := md5.New()
		h.Write(prev)
		h.Write(pw)
		h.Write(salt)
		prev = h.Sum(nil)
		kek = append(kek, prev...)
	}

	block, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatalf("certstest: %v", err)
	}
	pad := aes.BlockSize - len(der)%aes.BlockSize
	data := append(bytes.Clone(der), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)
	return pem.EncodeToMemory(&pem.Block{
		Type: typ,
		Headers: map[string]string{
			"Proc-Type": "4,ENCRYPTED",
			"DEK-Info":  "AES-256-CBC," + hex.EncodeToString(iv),
		},
		Bytes: data,
	})
}

// PKCS8EncryptedKeyPEM returns an "ENCRYPTED PRIVATE KEY" PEM block whose
// body is arbitrary bytes, for tests of refusal.
func PKCS8EncryptedKeyPEM() []byte {
	body := bytes.Repeat([]byte("outpost-encrypted-key-placeholder"), 4)
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: body})
}

// RSAKey returns the process-wide RSA key of the given size, generating it on
// first use.
func RSAKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	rsaKeysMu.Lock()
	once, ok := rsaKeys[bits]
	if !ok {
		once = &rsaOnce{}
		rsaKeys[bits] = once
	}
	rsaKeysMu.Unlock()
	once.once.Do(func() { once.key, once.err = rsa.GenerateKey(rand.Reader, bits) })
	if once.err != nil {
		t.Fatalf("certstest: generate RSA-%d key: %v", bits, once.err)
	}
	return once.key
}

type rsaOnce struct {
	once sync.Once
	key  *rsa.PrivateKey
	err  error
}

var (
	rsaKeysMu sync.Mutex
	rsaKeys   = map[int]*rsaOnce{}
)

// newKey returns a fresh key of type kt, or the shared one for RSA.
func newKey(t testing.TB, kt outpostv1.KeyType) crypto.Signer {
	t.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch kt {
	case outpostv1.KeyType_KEY_TYPE_EC_P256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case outpostv1.KeyType_KEY_TYPE_EC_P384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case outpostv1.KeyType_KEY_TYPE_EC_P521:
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case outpostv1.KeyType_KEY_TYPE_RSA_2048:
		return RSAKey(t, 2048)
	case outpostv1.KeyType_KEY_TYPE_RSA_3072:
		return RSAKey(t, 3072)
	case outpostv1.KeyType_KEY_TYPE_RSA_4096:
		return RSAKey(t, 4096)
	case outpostv1.KeyType_KEY_TYPE_ED25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("certstest: unsupported key type %v", kt)
	}
	if err != nil {
		t.Fatalf("certstest: generate %v key: %v", kt, err)
	}
	return key
}

func create(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, []byte) {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("certstest: create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certstest: parse certificate: %v", err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("certstest: serial: %v", err)
	}
	return n
}
