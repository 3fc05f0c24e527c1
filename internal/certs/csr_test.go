package certs_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestCSRKeyType(t *testing.T) {
	for _, tc := range []struct {
		in, want outpostv1.KeyType
		ok       bool
	}{
		{outpostv1.KeyType_KEY_TYPE_UNSPECIFIED, outpostv1.KeyType_KEY_TYPE_EC_P256, true},
		{outpostv1.KeyType_KEY_TYPE_EC_P256, outpostv1.KeyType_KEY_TYPE_EC_P256, true},
		{outpostv1.KeyType_KEY_TYPE_RSA_2048, outpostv1.KeyType_KEY_TYPE_RSA_2048, true},
		{outpostv1.KeyType_KEY_TYPE_RSA_3072, outpostv1.KeyType_KEY_TYPE_RSA_3072, true},
		{outpostv1.KeyType_KEY_TYPE_EC_P384, 0, false},
		{outpostv1.KeyType_KEY_TYPE_EC_P521, 0, false},
		{outpostv1.KeyType_KEY_TYPE_RSA_4096, 0, false},
		{outpostv1.KeyType_KEY_TYPE_ED25519, 0, false},
		{outpostv1.KeyType(99), 0, false},
	} {
		got, err := certs.CSRKeyType(tc.in)
		if !tc.ok {
			if apierr.Reason(err) != apierr.ReasonUnsupportedKeyType || !strings.Contains(err.Error(), "KEY_TYPE_EC_P256 (the default)") {
				t.Errorf("CSRKeyType(%v) = %v, %v; want UnsupportedKeyType", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CSRKeyType(%v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := certs.GenerateKey(outpostv1.KeyType_KEY_TYPE_ED25519); apierr.Reason(err) != apierr.ReasonUnsupportedKeyType {
		t.Fatalf("GenerateKey(ED25519): %v", err)
	}
}

// TestCSRRoundTrip makes a key and a request of each type, has a CA sign
// it, and matches the chain back to the key.
func TestCSRRoundTrip(t *testing.T) {
	ca := certstest.NewCA(t, "CSR CA")
	sub, err := certs.NewCSRSubject("WWW.Example.com.", []string{"example.com", "*.example.com", "www.example.com"}, " ACME Corp ", "de")
	if err != nil {
		t.Fatal(err)
	}
	if sub.CommonName != "www.example.com" || strings.Join(sub.DNSNames, ",") != "www.example.com,example.com,*.example.com" ||
		sub.Organization != "ACME Corp" || sub.Country != "DE" {
		t.Fatalf("subject %+v", sub)
	}
	types := []outpostv1.KeyType{outpostv1.KeyType_KEY_TYPE_UNSPECIFIED, outpostv1.KeyType_KEY_TYPE_RSA_2048}
	if !testing.Short() {
		types = append(types, outpostv1.KeyType_KEY_TYPE_RSA_3072)
	}
	for _, kt := range types {
		t.Run(kt.String(), func(t *testing.T) {
			key, err := certs.GenerateKey(kt)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := certs.CSRKeyType(kt)
			if got := certs.KeyTypeOf(key.Public()); got != want {
				t.Fatalf("generated a %v key, want %v", got, want)
			}
			csrPEM, err := certs.CreateCSR(key, sub)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := certs.ParseCSR(csrPEM)
			if err != nil {
				t.Fatal(err)
			}
			if csr.Subject.CommonName != "www.example.com" || strings.Join(csr.DNSNames, ",") != strings.Join(sub.DNSNames, ",") ||
				fmt.Sprint(csr.Subject.Organization) != "[ACME Corp]" || fmt.Sprint(csr.Subject.Country) != "[DE]" {
				t.Fatalf("CSR subject %v, names %v", csr.Subject, csr.DNSNames)
			}
			if strings.Contains(csrPEM, "PRIVATE KEY") {
				t.Fatal("the CSR PEM holds a private key")
			}
			_, chain := ca.SignCSR(t, csrPEM, certstest.SignOptions{})
			got, err := certs.ParseChainFor(chain, csr.PublicKey, time.Now())
			if err != nil || len(got) != 2 {
				t.Fatalf("ParseChainFor: %d certificates, %v", len(got), err)
			}
		})
	}
}

func TestParseChainFor(t *testing.T) {
	ca := certstest.NewCA(t, "CSR CA")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := certs.NewCSRSubject("a.example.com", nil, "", "")
	csrPEM, err := certs.CreateCSR(key, sub)
	if err != nil {
		t.Fatal(err)
	}
	_, good := ca.SignCSR(t, csrPEM, certstest.SignOptions{})
	_, expired := ca.SignCSR(t, csrPEM, certstest.SignOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	_, future := ca.SignCSR(t, csrPEM, certstest.SignOptions{NotBefore: time.Now().Add(time.Hour)})
	other := certstest.Issue(t, certstest.Options{DNSNames: []string{"a.example.com"}, Issuer: ca})
	otherCA := certstest.NewCA(t, "other")
	leafOnly := good[:strings.Index(string(good), "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")]

	for _, tc := range []struct {
		name   string
		chain  []byte
		pub    crypto.PublicKey
		reason string
	}{
		{"good", good, key.Public(), ""},
		{"leaf only", leafOnly, key.Public(), ""},
		{"other key", other.ChainPEM, key.Public(), apierr.ReasonCertificateKeyMismatch},
		{"rsa pub", good, certstest.RSAKey(t, 2048).Public().(*rsa.PublicKey), apierr.ReasonCertificateKeyMismatch},
		{"expired", expired, key.Public(), apierr.ReasonCertificateExpired},
		{"not yet valid", future, key.Public(), apierr.ReasonCertificateNotYetValid},
		{"broken chain", append(append([]byte(nil), leafOnly...), otherCA.CertPEM...), key.Public(), apierr.ReasonCertificateChainInvalid},
		{"not pem", []byte("hello"), key.Public(), apierr.ReasonCertificateNotPem},
	} {
		_, err := certs.ParseChainFor(tc.chain, tc.pub, time.Now())
		if got := apierr.Reason(err); got != tc.reason {
			t.Errorf("%s: reason %q (%v), want %q", tc.name, got, err, tc.reason)
		}
	}
}

func TestNewCSRSubject(t *testing.T) {
	long := strings.Repeat("a", 60) + ".example.com"
	many := make([]string, certs.MaxCSRNames)
	for i := range many {
		many[i] = fmt.Sprintf("n%d.example.com", i)
	}
	for _, tc := range []struct {
		name     string
		cn       string
		sans     []string
		org, cty string
		reason   string
	}{
		{"ok", "a.example.com", []string{"b.example.com"}, "Org", "US", ""},
		{"wildcard cn", "*.example.com", nil, "", "", ""},
		{"duplicates dropped", "a.example.com", []string{"A.example.com", "a.example.com."}, "", "", ""},
		{"100 names", "n0.example.com", many[1:], "", "", ""},
		{"empty cn", "", nil, "", "", apierr.ReasonInvalidDomainName},
		{"ip cn", "192.0.2.1", nil, "", "", apierr.ReasonInvalidDomainName},
		{"bad san", "a.example.com", []string{"a..example.com"}, "", "", apierr.ReasonInvalidDomainName},
		{"non-ascii san", "a.example.com", []string{"bücher.example.com"}, "", "", apierr.ReasonDomainNameNotASCII},
		{"long cn", long, nil, "", "", apierr.ReasonInvalidCsrSubject},
		{"long name as san", "a.example.com", []string{long}, "", "", ""},
		{"101 names", "a.example.com", many, "", "", apierr.ReasonInvalidCsrSubject},
		{"long org", "a.example.com", nil, strings.Repeat("o", 65), "", apierr.ReasonInvalidCsrSubject},
		{"control org", "a.example.com", nil, "a\nb", "", apierr.ReasonInvalidCsrSubject},
		{"bad utf-8 org", "a.example.com", nil, "\xff", "", apierr.ReasonInvalidCsrSubject},
		{"country of 3", "a.example.com", nil, "", "USA", apierr.ReasonInvalidCsrSubject},
		{"country digits", "a.example.com", nil, "", "12", apierr.ReasonInvalidCsrSubject},
	} {
		_, err := certs.NewCSRSubject(tc.cn, tc.sans, tc.org, tc.cty)
		if got := apierr.Reason(err); got != tc.reason {
			t.Errorf("%s: reason %q (%v), want %q", tc.name, got, err, tc.reason)
		}
	}
	s, _ := certs.NewCSRSubject("a.example.com", []string{"A.example.com", "a.example.com."}, "", "")
	if len(s.DNSNames) != 1 {
		t.Fatalf("duplicates kept: %q", s.DNSNames)
	}
}
