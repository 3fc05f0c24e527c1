package controller_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestUploadCertificateRules(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)

	good := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}})
	otherKey := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}})
	rsa := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.com"}, KeyType: outpostv1.KeyType_KEY_TYPE_RSA_2048})
	expired := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	ca := certstest.NewCA(t, "test CA")
	chained := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}, Issuer: ca})
	otherCA := certstest.NewCA(t, "other CA")

	cases := []struct {
		name        string
		cert, key   string
		code        codes.Code
		reason      string
		wantKeyType outpostv1.KeyType
	}{
		{"ecdsa", string(good.CertPEM), string(good.KeyPEM), codes.OK, "", outpostv1.KeyType_KEY_TYPE_EC_P256},
		{"rsa wildcard", string(rsa.CertPEM), string(rsa.KeyPEM), codes.OK, "", outpostv1.KeyType_KEY_TYPE_RSA_2048},
		{"chain", string(chained.ChainPEM), string(chained.KeyPEM), codes.OK, "", outpostv1.KeyType_KEY_TYPE_EC_P256},
		{"cert not pem", "hello", string(good.KeyPEM), codes.InvalidArgument, "CertificateNotPem", 0},
		{"key not pem", string(good.CertPEM), "hello", codes.InvalidArgument, "PrivateKeyNotPem", 0},
		{"mismatched key", string(good.CertPEM), string(otherKey.KeyPEM), codes.InvalidArgument, "CertificateKeyMismatch", 0},
		{"encrypted key", string(good.CertPEM), string(certstest.EncryptedKeyPEM(t, good.Key)), codes.InvalidArgument, "PrivateKeyEncrypted", 0},
		{"pkcs8 encrypted key", string(good.CertPEM), string(certstest.PKCS8EncryptedKeyPEM()), codes.InvalidArgument, "PrivateKeyEncrypted", 0},
		{"expired", string(expired.CertPEM), string(expired.KeyPEM), codes.InvalidArgument, "CertificateExpired", 0},
		{"broken chain", string(chained.CertPEM) + string(otherCA.CertPEM), string(chained.KeyPEM), codes.InvalidArgument, "CertificateChainInvalid", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{Name: tc.name, CertificatePem: tc.cert, PrivateKeyPem: tc.key})
			if tc.code != codes.OK {
				wantErr(t, err, tc.code, tc.reason)
				if strings.Contains(err.Error(), "PRIVATE KEY") {
					t.Fatalf("error echoes key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cert := resp.GetCertificate()
			if cert.GetId() == "" || cert.GetKeyType() != tc.wantKeyType || cert.GetFingerprintSha256() == "" || cert.GetAccount() != "acme" {
				t.Fatalf("certificate %v", cert)
			}
		})
	}
	list, err := c.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetCertificates()); n != 3 {
		t.Fatalf("%d certificates stored, want 3 (the refused ones must not be stored)", n)
	}
}

func TestHTTPS(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	for _, n := range []string{"www.example.com", "*.img.example.com", "shop.example.org"} {
		if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: n, Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
			t.Fatal(err)
		}
	}
	wild := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.com", "example.com"}})
	up, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{Name: "wild", CertificatePem: string(wild.CertPEM), PrivateKeyPem: string(wild.KeyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	wildID := up.GetCertificate().GetId()

	// Coverage: *.example.com covers www.example.com, not *.img.example.com or shop.example.org.
	en, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "www.example.com", Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: wildID}})
	if err != nil {
		t.Fatal(err)
	}
	if !en.GetHttps().GetEnabled() || en.GetHttps().GetCertificateId() != wildID || en.GetHttps().GetCertificateOwned() {
		t.Fatalf("https %v", en.GetHttps())
	}
	for _, d := range []string{"*.img.example.com", "shop.example.org"} {
		_, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: d, Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: wildID}})
		wantErr(t, err, codes.InvalidArgument, "CertificateDomainMismatch")
	}
	_, err = c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "shop.example.org", Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: "cert-nope"}})
	wantErr(t, err, codes.NotFound, "CertificateNotFound")

	// A certificate in use cannot be deleted.
	_, err = c.Certs.DeleteCertificate(ctx, &outpostv1.DeleteCertificateRequest{Id: wildID})
	wantErr(t, err, codes.FailedPrecondition, "CertificateInUse")

	// Redirects need HTTPS.
	_, err = c.HTTPS.SetHttpsRedirect(ctx, &outpostv1.SetHttpsRedirectRequest{Domain: "shop.example.org", Redirect: outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS})
	wantErr(t, err, codes.FailedPrecondition, "HttpsNotEnabled")
	red, err := c.HTTPS.SetHttpsRedirect(ctx, &outpostv1.SetHttpsRedirectRequest{Domain: "www.example.com", Redirect: outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS})
	if err != nil {
		t.Fatal(err)
	}
	if red.GetHttps().GetRedirect() != outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS || red.GetHttps().GetCertificateId() != wildID {
		t.Fatalf("redirect %v", red.GetHttps())
	}

	// An inline upload is owned by the domain and forgotten on disable.
	shop := certstest.Issue(t, certstest.Options{DNSNames: []string{"shop.example.org"}, KeyType: outpostv1.KeyType_KEY_TYPE_RSA_2048})
	inl, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "shop.example.org", Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(shop.CertPEM), PrivateKeyPem: string(shop.KeyPEM)}}})
	if err != nil {
		t.Fatal(err)
	}
	shopID := inl.GetCertificate().GetId()
	if !inl.GetHttps().GetCertificateOwned() || inl.GetCertificate().GetOwnerDomain() != "shop.example.org" {
		t.Fatalf("inline https %v", inl)
	}
	// A domain's own certificate cannot be bound to another domain by ID.
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "shop2.example.org", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "shop2.example.org", Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: shopID}})
	wantErr(t, err, codes.FailedPrecondition, "CertificateOwnedByDomain")
	// Re-binding it to its own domain by ID keeps it owned.
	again, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "shop.example.org", Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: shopID}})
	if err != nil || !again.GetHttps().GetCertificateOwned() {
		t.Fatalf("re-enable with own certificate: %v %v", again, err)
	}
	// An inline certificate that does not cover the domain is refused and not stored.
	_, err = c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "*.img.example.com", Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(shop.CertPEM), PrivateKeyPem: string(shop.KeyPEM)}}})
	wantErr(t, err, codes.InvalidArgument, "CertificateDomainMismatch")

	got, err := c.HTTPS.GetHttpsSettings(ctx, &outpostv1.GetHttpsSettingsRequest{Domain: "shop.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetCertificate().GetId() != shopID || got.GetCertificate().GetKeyType() != outpostv1.KeyType_KEY_TYPE_RSA_2048 {
		t.Fatalf("settings %v", got)
	}
	dis, err := c.HTTPS.DisableHttps(ctx, &outpostv1.DisableHttpsRequest{Domain: "shop.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if dis.GetHttps().GetEnabled() || dis.GetHttps().GetCertificateId() != "" {
		t.Fatalf("after disable %v", dis.GetHttps())
	}
	_, err = c.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: shopID})
	wantErr(t, err, codes.NotFound, "CertificateNotFound")
	kvs, _, err := env.Controller.Store().Range(ctx, store.Prefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if strings.Contains(kv.Key, shopID) {
			t.Fatalf("key material of the disabled domain left at %s", kv.Key)
		}
	}
	list, err := c.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetCertificates()) != 1 {
		t.Fatalf("certificates left: %v", list.GetCertificates())
	}

	// Disabling HTTPS with a certificate-center certificate keeps the certificate.
	if _, err := c.HTTPS.DisableHttps(ctx, &outpostv1.DisableHttpsRequest{Domain: "www.example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: wildID}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Certs.DeleteCertificate(ctx, &outpostv1.DeleteCertificateRequest{Id: wildID}); err != nil {
		t.Fatalf("delete after unbinding: %v", err)
	}
}
