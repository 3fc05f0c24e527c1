package controller_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// csrPublicKey parses a CSR's request and returns its public key.
func csrPublicKey(t *testing.T, csr *outpostv1.Csr) crypto.PublicKey {
	t.Helper()
	req, err := certs.ParseCSR(csr.GetCsrPem())
	if err != nil {
		t.Fatalf("CSR %s: %v", csr.GetId(), err)
	}
	return req.PublicKey
}

// bundles reads config messages until they have carried every certificate
// of ids, and returns the last bundle of each.
func (n *fakeNode) bundles(ids ...string) map[string]*outpostv1.CertificateBundle {
	n.t.Helper()
	found := map[string]*outpostv1.CertificateBundle{}
	n.until("certificates "+strings.Join(ids, ", "), func(m *outpostv1.StreamConfigResponse) bool {
		for _, b := range m.GetCertificates() {
			found[b.GetId()] = b
		}
		for _, id := range ids {
			if found[id] == nil {
				return false
			}
		}
		return true
	})
	return found
}

// TestCsrRoundTrip: a CSR made by the controller, signed by a CA and
// completed, becomes a certificate of the account that HTTPS can use; the
// config stream carries it with the CSR's key, and that pair serves TLS
// that verifies against the CA.
func TestCsrRoundTrip(t *testing.T) {
	env := controllertest.Start(t)
	admin, readOnly := env.NewAccount(t, "acme")
	c, ro := env.Clients(t, admin), env.Clients(t, readOnly)
	ctx := ctxT(t)
	ca := certstest.NewCA(t, "CSR test CA")
	inter := ca.NewIntermediate(t, "CSR test intermediate")
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}

	created, err := c.Certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{
		Name: "www", CommonName: "WWW.example.com", DnsNames: []string{"example.com", "*.example.com", "www.example.com"},
		Organization: "ACME Corp", Country: "de",
	})
	if err != nil {
		t.Fatal(err)
	}
	csr := created.GetCsr()
	if !strings.HasPrefix(csr.GetId(), "csr-") || csr.GetAccount() != "acme" || csr.GetName() != "www" || csr.GetCommonName() != "www.example.com" ||
		strings.Join(csr.GetDnsNames(), ",") != "www.example.com,example.com,*.example.com" ||
		csr.GetKeyType() != outpostv1.KeyType_KEY_TYPE_EC_P256 || csr.GetCertificateId() != "" || csr.GetCreateTime() == nil {
		t.Fatalf("created %v", csr)
	}
	req, err := certs.ParseCSR(csr.GetCsrPem())
	if err != nil {
		t.Fatal(err)
	}
	if req.Subject.CommonName != "www.example.com" || strings.Join(req.Subject.Organization, "") != "ACME Corp" ||
		strings.Join(req.Subject.Country, "") != "DE" || strings.Join(req.DNSNames, ",") != "www.example.com,example.com,*.example.com" {
		t.Fatalf("request subject %v, names %v", req.Subject, req.DNSNames)
	}
	rsaCsr, err := c.Certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{CommonName: "api.example.com", KeyType: outpostv1.KeyType_KEY_TYPE_RSA_2048})
	if err != nil {
		t.Fatal(err)
	}
	if k := rsaCsr.GetCsr(); k.GetKeyType() != outpostv1.KeyType_KEY_TYPE_RSA_2048 || k.GetName() != "api.example.com" ||
		certs.KeyTypeOf(csrPublicKey(t, k)) != outpostv1.KeyType_KEY_TYPE_RSA_2048 {
		t.Fatalf("RSA CSR %v", k)
	}

	// Read-only tokens read them; pages of one list both, in ID order.
	got, err := ro.Certs.GetCsr(ctx, &outpostv1.GetCsrRequest{Id: csr.GetId()})
	if err != nil || got.GetCsr().GetCsrPem() != csr.GetCsrPem() {
		t.Fatalf("get: %v, %v", got, err)
	}
	var listed []string
	for token := ""; ; {
		page, err := ro.Certs.ListCsrs(ctx, &outpostv1.ListCsrsRequest{PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range page.GetCsrs() {
			listed = append(listed, x.GetId())
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	want := []string{csr.GetId(), rsaCsr.GetCsr().GetId()}
	if want[0] > want[1] {
		want[0], want[1] = want[1], want[0]
	}
	if strings.Join(listed, " ") != strings.Join(want, " ") {
		t.Fatalf("listed %v, want %v", listed, want)
	}
	_, err = ro.Certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{CommonName: "x.example.com"})
	wantErr(t, err, codes.PermissionDenied, apierr.ReasonReadOnlyToken)

	// The CA signs; completing stores a certificate under the ID the CSR
	// names, with the CSR's key.
	_, chain := inter.SignCSR(t, csr.GetCsrPem(), certstest.SignOptions{})
	done, err := c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: csr.GetId(), CertificatePem: string(chain)})
	if err != nil {
		t.Fatal(err)
	}
	cert := done.GetCertificate()
	if cert.GetId() != "cert-"+strings.TrimPrefix(csr.GetId(), "csr-") || cert.GetName() != "www" || cert.GetAccount() != "acme" ||
		cert.GetSource() != outpostv1.CertificateSource_CERTIFICATE_SOURCE_CSR || cert.GetVersion() != 1 ||
		cert.GetKeyType() != outpostv1.KeyType_KEY_TYPE_EC_P256 || cert.GetRevision() == 0 ||
		strings.Join(cert.GetDnsNames(), ",") != "www.example.com,example.com,*.example.com" ||
		strings.Count(cert.GetCertificatePem(), "BEGIN CERTIFICATE") != 3 {
		t.Fatalf("certificate %v", cert)
	}
	if done.GetCsr().GetCertificateId() != cert.GetId() {
		t.Fatalf("completed CSR %v", done.GetCsr())
	}
	if g, err := ro.Certs.GetCsr(ctx, &outpostv1.GetCsrRequest{Id: csr.GetId()}); err != nil || g.GetCsr().GetCertificateId() != cert.GetId() {
		t.Fatalf("get after completion: %v, %v", g, err)
	}
	if g, err := ro.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: cert.GetId()}); err != nil ||
		g.GetCertificate().GetFingerprintSha256() != cert.GetFingerprintSha256() {
		t.Fatalf("get certificate: %v, %v", g, err)
	}
	// Once is all: the key now belongs to the certificate.
	_, err = c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: csr.GetId(), CertificatePem: string(chain)})
	wantErr(t, err, codes.FailedPrecondition, apierr.ReasonCsrAlreadyCompleted)
	stored := &storagev1.StoredCsr{}
	if _, found, err := env.Controller.Store().Get(ctx, store.CsrKey(csr.GetId()), stored); err != nil || !found || stored.GetPrivateKey() != nil {
		t.Fatalf("completed CSR record: found %v, key %v, %v", found, stored.GetPrivateKey() != nil, err)
	}

	// HTTPS with it: the node receives the certificate with a key that is
	// the CSR's, and the pair serves TLS that verifies to the CA.
	en, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "www.example.com", Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: cert.GetId()}})
	if err != nil || en.GetHttps().GetCertificateId() != cert.GetId() {
		t.Fatalf("enable HTTPS: %v, %v", en, err)
	}
	node := connectNode(t, env, "edge-1", "east", 0)
	b := node.bundles(cert.GetId())[cert.GetId()]
	pair, err := tls.X509KeyPair([]byte(b.GetCertificatePem()), []byte(b.GetPrivateKeyPem()))
	if err != nil {
		t.Fatalf("the config stream's pair does not load: %v", err)
	}
	if !pair.PrivateKey.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(req.PublicKey) {
		t.Fatal("the config stream's key is not the CSR's")
	}
	handshake(t, pair, ca, "www.example.com")
	handshake(t, pair, ca, "shop.example.com") // through *.example.com

	// Renewal keeps the key: the CA signs the same request again, and the
	// certificate moves to the new chain with the CSR's key, still sealed.
	renewedLeaf, renewed := inter.SignCSR(t, csr.GetCsrPem(), certstest.SignOptions{})
	rn, err := c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: cert.GetId(), CertificatePem: string(renewed)})
	if err != nil {
		t.Fatal(err)
	}
	if r := rn.GetCertificate(); r.GetVersion() != 2 || r.GetSource() != outpostv1.CertificateSource_CERTIFICATE_SOURCE_CSR || r.GetFingerprintSha256() == cert.GetFingerprintSha256() {
		t.Fatalf("renewed %v", r)
	}
	var rb *outpostv1.CertificateBundle
	node.until("the renewed certificate", func(m *outpostv1.StreamConfigResponse) bool {
		for _, b := range m.GetCertificates() {
			if blk, _ := pem.Decode([]byte(b.GetCertificatePem())); b.GetId() == cert.GetId() && blk != nil && bytes.Equal(blk.Bytes, renewedLeaf.Raw) {
				rb = b
			}
		}
		return rb != nil
	})
	pair, err = tls.X509KeyPair([]byte(rb.GetCertificatePem()), []byte(rb.GetPrivateKeyPem()))
	if err != nil || !pair.Leaf.Equal(renewedLeaf) {
		t.Fatalf("renewed pair: %v", err)
	}
	handshake(t, pair, ca, "www.example.com")
}

// handshake serves pair over a pipe and checks that a client trusting
// only ca's root accepts it for serverName.
func handshake(t *testing.T, pair tls.Certificate, ca *certstest.CA, serverName string) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(a, &tls.Config{Certificates: []tls.Certificate{pair}}).Handshake() }()
	if err := tls.Client(b, &tls.Config{RootCAs: ca.Pool(), ServerName: serverName}).Handshake(); err != nil {
		t.Fatalf("client handshake for %s: %v", serverName, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}

// TestCompleteCsrRefusals: a chain for another key, an expired or broken
// chain, another account's CSR: each is refused and nothing is stored; the
// CSR can still be completed after.
func TestCompleteCsrRefusals(t *testing.T) {
	env := controllertest.Start(t)
	admin, readOnly := env.NewAccount(t, "acme")
	other, _ := env.NewAccount(t, "other")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	ca := certstest.NewCA(t, "CSR test CA")
	otherCA := certstest.NewCA(t, "other CA")

	created, err := c.Certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{CommonName: "www.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	csr := created.GetCsr()
	wrongKey := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}, Issuer: ca})
	_, expired := ca.SignCSR(t, csr.GetCsrPem(), certstest.SignOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	_, future := ca.SignCSR(t, csr.GetCsrPem(), certstest.SignOptions{NotBefore: time.Now().Add(time.Hour)})
	_, good := ca.SignCSR(t, csr.GetCsrPem(), certstest.SignOptions{})
	leafPEM := good[:strings.Index(string(good), "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")]

	for _, tc := range []struct {
		name   string
		client *controllertest.Clients
		id     string
		chain  string
		code   codes.Code
		reason string
	}{
		{"another key", c, csr.GetId(), string(wrongKey.ChainPEM), codes.InvalidArgument, apierr.ReasonCertificateKeyMismatch},
		{"another key, with its key", c, csr.GetId(), string(wrongKey.ChainPEM) + string(wrongKey.KeyPEM), codes.InvalidArgument, apierr.ReasonCertificateKeyMismatch},
		{"expired", c, csr.GetId(), string(expired), codes.InvalidArgument, apierr.ReasonCertificateExpired},
		{"not yet valid", c, csr.GetId(), string(future), codes.InvalidArgument, apierr.ReasonCertificateNotYetValid},
		{"broken chain", c, csr.GetId(), string(leafPEM) + string(otherCA.CertPEM), codes.InvalidArgument, apierr.ReasonCertificateChainInvalid},
		{"not PEM", c, csr.GetId(), "hello", codes.InvalidArgument, apierr.ReasonCertificateNotPem},
		{"no ID", c, "", string(good), codes.InvalidArgument, apierr.ReasonInvalidArgument},
		{"unknown ID", c, "csr-0000000000000000", string(good), codes.NotFound, apierr.ReasonCsrNotFound},
		{"not a CSR ID", c, "cert-" + strings.TrimPrefix(csr.GetId(), "csr-"), string(good), codes.NotFound, apierr.ReasonCsrNotFound},
		{"another account", env.Clients(t, other), csr.GetId(), string(good), codes.NotFound, apierr.ReasonCsrNotFound},
		{"read-only", env.Clients(t, readOnly), csr.GetId(), string(good), codes.PermissionDenied, apierr.ReasonReadOnlyToken},
		{"operator", env.Clients(t, env.OperatorToken), csr.GetId(), string(good), codes.PermissionDenied, apierr.ReasonAccountRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: tc.id, CertificatePem: tc.chain})
			wantErr(t, err, tc.code, tc.reason)
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("error echoes key material: %v", err)
			}
		})
	}
	_, err = env.Clients(t, other).Certs.GetCsr(ctx, &outpostv1.GetCsrRequest{Id: csr.GetId()})
	wantErr(t, err, codes.NotFound, apierr.ReasonCsrNotFound)

	// Nothing was stored: no certificate, and the CSR still pending with
	// its key.
	if n, err := env.Controller.Store().Count(ctx, store.CertsPrefix()); err != nil || n != 0 {
		t.Fatalf("%d certificates stored by refused completions (%v)", n, err)
	}
	stored := &storagev1.StoredCsr{}
	if _, _, err := env.Controller.Store().Get(ctx, store.CsrKey(csr.GetId()), stored); err != nil ||
		stored.GetCsr().GetCertificateId() != "" || stored.GetPrivateKey() == nil {
		t.Fatalf("CSR record after refusals: %v, %v", stored.GetCsr(), err)
	}

	// The leaf alone completes it.
	done, err := c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: csr.GetId(), CertificatePem: string(leafPEM)})
	if err != nil || done.GetCertificate().GetFingerprintSha256() == "" {
		t.Fatalf("complete: %v, %v", done, err)
	}
	list, err := c.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{})
	if err != nil || len(list.GetCertificates()) != 1 {
		t.Fatalf("certificates after completion: %v, %v", list, err)
	}
}

// TestCreateCsrRefusals: every invalid request is refused with its reason,
// and nothing is stored.
func TestCreateCsrRefusals(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	many := make([]string, certs.MaxCSRNames)
	for i := range many {
		many[i] = fmt.Sprintf("n%d.example.com", i)
	}

	for _, tc := range []struct {
		name   string
		req    *outpostv1.CreateCsrRequest
		reason string
	}{
		{"ed25519", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", KeyType: outpostv1.KeyType_KEY_TYPE_ED25519}, apierr.ReasonUnsupportedKeyType},
		{"p384", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", KeyType: outpostv1.KeyType_KEY_TYPE_EC_P384}, apierr.ReasonUnsupportedKeyType},
		{"p521", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", KeyType: outpostv1.KeyType_KEY_TYPE_EC_P521}, apierr.ReasonUnsupportedKeyType},
		{"rsa4096", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", KeyType: outpostv1.KeyType_KEY_TYPE_RSA_4096}, apierr.ReasonUnsupportedKeyType},
		{"unknown key type", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", KeyType: outpostv1.KeyType(42)}, apierr.ReasonUnsupportedKeyType},
		{"no common name", &outpostv1.CreateCsrRequest{DnsNames: []string{"a.example.com"}}, apierr.ReasonInvalidDomainName},
		{"IP common name", &outpostv1.CreateCsrRequest{CommonName: "192.0.2.1"}, apierr.ReasonInvalidDomainName},
		{"one label", &outpostv1.CreateCsrRequest{CommonName: "localhost"}, apierr.ReasonInvalidDomainName},
		{"bad SAN", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", DnsNames: []string{"b_c.example.com"}}, apierr.ReasonInvalidDomainName},
		{"wildcard inside", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", DnsNames: []string{"a.*.example.com"}}, apierr.ReasonInvalidDomainName},
		{"non-ASCII", &outpostv1.CreateCsrRequest{CommonName: "bücher.example.com"}, apierr.ReasonDomainNameNotASCII},
		{"long common name", &outpostv1.CreateCsrRequest{CommonName: strings.Repeat("a", 60) + ".example.com"}, apierr.ReasonInvalidCsrSubject},
		{"too many names", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", DnsNames: many}, apierr.ReasonInvalidCsrSubject},
		{"long organization", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", Organization: strings.Repeat("o", 65)}, apierr.ReasonInvalidCsrSubject},
		{"organization with a newline", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", Organization: "a\nb"}, apierr.ReasonInvalidCsrSubject},
		{"three-letter country", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", Country: "DEU"}, apierr.ReasonInvalidCsrSubject},
		{"digit country", &outpostv1.CreateCsrRequest{CommonName: "a.example.com", Country: "4"}, apierr.ReasonInvalidCsrSubject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Certs.CreateCsr(ctx, tc.req)
			wantErr(t, err, codes.InvalidArgument, tc.reason)
		})
	}
	_, err := env.Clients(t, env.OperatorToken).Certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{CommonName: "a.example.com"})
	wantErr(t, err, codes.PermissionDenied, apierr.ReasonAccountRequired)
	_, err = c.Certs.GetCsr(ctx, &outpostv1.GetCsrRequest{})
	wantErr(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
	_, err = c.Certs.ListCsrs(ctx, &outpostv1.ListCsrsRequest{PageToken: "bogus"})
	wantErr(t, err, codes.InvalidArgument, apierr.ReasonInvalidPageToken)

	for _, prefix := range []string{store.CsrsPrefix(), store.AccountCsrsPrefix("acme"), store.CertsPrefix()} {
		if n, err := env.Controller.Store().Count(context.Background(), prefix); err != nil || n != 0 {
			t.Fatalf("%d keys under %s after refused requests (%v)", n, prefix, err)
		}
	}
	if list, err := c.Certs.ListCsrs(ctx, &outpostv1.ListCsrsRequest{}); err != nil || len(list.GetCsrs()) != 0 {
		t.Fatalf("list: %v, %v", list, err)
	}
}

// TestDeleteCsr: deleting a pending CSR deletes its sealed key with it, so
// a chain signed for it later cannot be completed; deleting a completed
// CSR leaves its certificate (and the key it holds) in place. Read-only
// tokens and other accounts cannot delete.
func TestDeleteCsr(t *testing.T) {
	env := controllertest.Start(t)
	admin, readOnly := env.NewAccount(t, "acme")
	otherAdmin, _ := env.NewAccount(t, "other")
	c, ro, other := env.Clients(t, admin), env.Clients(t, readOnly), env.Clients(t, otherAdmin)
	ctx := ctxT(t)
	ca := certstest.NewCA(t, "CSR delete CA")
	create := func(cn string) *outpostv1.Csr {
		t.Helper()
		r, err := c.Certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{CommonName: cn})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetCsr()
	}
	pending, completed := create("pending.example.com"), create("done.example.com")
	_, chain := ca.SignCSR(t, completed.GetCsrPem(), certstest.SignOptions{})
	done, err := c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: completed.GetId(), CertificatePem: string(chain)})
	if err != nil {
		t.Fatal(err)
	}

	_, err = ro.Certs.DeleteCsr(ctx, &outpostv1.DeleteCsrRequest{Id: pending.GetId()})
	wantErr(t, err, codes.PermissionDenied, apierr.ReasonReadOnlyToken)
	_, err = other.Certs.DeleteCsr(ctx, &outpostv1.DeleteCsrRequest{Id: pending.GetId()})
	wantErr(t, err, codes.NotFound, apierr.ReasonCsrNotFound)
	_, err = c.Certs.DeleteCsr(ctx, &outpostv1.DeleteCsrRequest{})
	wantErr(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
	if _, found, err := env.Controller.Store().GetRaw(ctx, store.CsrKey(pending.GetId())); err != nil || !found {
		t.Fatalf("a refused delete removed the CSR: %v %v", found, err)
	}

	// Pending: the record, with its sealed key, and its index entry go.
	if _, err := c.Certs.DeleteCsr(ctx, &outpostv1.DeleteCsrRequest{Id: pending.GetId()}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{store.CsrKey(pending.GetId()), store.AccountCsrKey("acme", pending.GetId())} {
		if _, found, err := env.Controller.Store().GetRaw(ctx, key); err != nil || found {
			t.Fatalf("%s still stored after DeleteCsr: %v", key, err)
		}
	}
	_, err = c.Certs.GetCsr(ctx, &outpostv1.GetCsrRequest{Id: pending.GetId()})
	wantErr(t, err, codes.NotFound, apierr.ReasonCsrNotFound)
	_, late := ca.SignCSR(t, pending.GetCsrPem(), certstest.SignOptions{})
	_, err = c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: pending.GetId(), CertificatePem: string(late)})
	wantErr(t, err, codes.NotFound, apierr.ReasonCsrNotFound)
	_, err = c.Certs.DeleteCsr(ctx, &outpostv1.DeleteCsrRequest{Id: pending.GetId()})
	wantErr(t, err, codes.NotFound, apierr.ReasonCsrNotFound)

	// Completed: the CSR goes, its certificate stays.
	if _, err := c.Certs.DeleteCsr(ctx, &outpostv1.DeleteCsrRequest{Id: completed.GetId()}); err != nil {
		t.Fatal(err)
	}
	g, err := c.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: done.GetCertificate().GetId()})
	if err != nil || g.GetCertificate().GetFingerprintSha256() != done.GetCertificate().GetFingerprintSha256() {
		t.Fatalf("the completed CSR's certificate after DeleteCsr: %v, %v", g, err)
	}
	list, err := c.Certs.ListCsrs(ctx, &outpostv1.ListCsrsRequest{})
	if err != nil || len(list.GetCsrs()) != 0 {
		t.Fatalf("CSRs left: %v, %v", list.GetCsrs(), err)
	}
}
