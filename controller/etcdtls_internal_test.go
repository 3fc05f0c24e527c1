package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/internal/certs/certstest"
)

// TestClientCertReload renews the etcd client certificate in place and
// checks that the next handshake uses the new one, and that a broken
// renewal keeps the last good certificate.
func TestClientCertReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	ca := certstest.NewCA(t, "etcd CA")
	// issue writes a client certificate named cn and returns its serial.
	issue := func(cn string) *big.Int {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, certstest.PKCS8KeyPEM(t, key), 0o600); err != nil {
			t.Fatal(err)
		}
		return tmpl.SerialNumber
	}
	serialOf := func(r *clientCertReloader) *big.Int {
		t.Helper()
		pair, err := r.get(nil)
		if err != nil || pair == nil {
			t.Fatalf("get: %v %v", pair, err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber
	}

	first := issue("first")
	r := &clientCertReloader{certFile: certFile, keyFile: keyFile, log: slog.New(slog.DiscardHandler)}
	if _, err := r.load(); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(r); got.Cmp(first) != 0 {
		t.Fatalf("serial %v, want the first certificate's %v", got, first)
	}
	second := issue("second")
	if got := serialOf(r); got.Cmp(second) != 0 {
		t.Fatalf("serial %v, want the renewed certificate's %v", got, second)
	}
	// A renewal caught half-written: the key no longer matches.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(r); got.Cmp(second) != 0 {
		t.Fatalf("serial %v after a broken renewal, want the last good %v", got, second)
	}
}
