package controller_test

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// testClock is a controller clock the test moves forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time                { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration)       { c.offset.Add(int64(d)) }
func (c *testClock) config(cfg *controller.Config) { cfg.Now = c.Now }

func createDomains(t *testing.T, c *controllertest.Clients, domains ...string) {
	t.Helper()
	ctx := ctxT(t)
	for _, n := range domains {
		if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: n, Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
			t.Fatalf("create %s: %v", n, err)
		}
	}
}

func upload(t *testing.T, c *controllertest.Clients, name string, p *certstest.Pair) *outpostv1.Certificate {
	t.Helper()
	resp, err := c.Certs.UploadCertificate(ctxT(t), &outpostv1.UploadCertificateRequest{Name: name, CertificatePem: string(p.ChainPEM), PrivateKeyPem: string(p.KeyPEM)})
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	return resp.GetCertificate()
}

func deploy(t *testing.T, c *controllertest.Clients, id string, domains ...string) *outpostv1.DeployCertificateResponse {
	t.Helper()
	resp, err := c.Certs.DeployCertificate(ctxT(t), &outpostv1.DeployCertificateRequest{Id: id, Domains: domains})
	if err != nil {
		t.Fatalf("deploy %s: %v", id, err)
	}
	return resp
}

func certDomains(t *testing.T, c *controllertest.Clients, id string) []string {
	t.Helper()
	resp, err := c.Certs.ListCertificateDomains(ctxT(t), &outpostv1.ListCertificateDomainsRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetDomains()
}

func httpsOf(t *testing.T, c *controllertest.Clients, domain string) *outpostv1.HttpsSettings {
	t.Helper()
	resp, err := c.HTTPS.GetHttpsSettings(ctxT(t), &outpostv1.GetHttpsSettingsRequest{Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetHttps()
}

// TestDeployCertificateToThousandDomains deploys one certificate to 1,000
// domains in one call, then moves all of them to another certificate in
// one call: one etcd transaction each, well past etcd's default 128
// operations per transaction.
func TestDeployCertificateToThousandDomains(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "bulk")
	op := env.Clients(t, env.OperatorToken)
	ctx := ctxT(t)
	if _, err := op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "bulk", DomainQuota: 1000}); err != nil {
		t.Fatal(err)
	}
	c := env.Clients(t, admin)
	const n = 1000
	domains := make([]string, n)
	for i := range domains {
		domains[i] = fmt.Sprintf("d%04d.bulk.example.com", i)
	}
	start := time.Now()
	createDomains(t, c, domains...)
	t.Logf("created %d domains in %v", n, time.Since(start).Round(time.Millisecond))

	a := upload(t, c, "wild-a", certstest.Issue(t, certstest.Options{DNSNames: []string{"*.bulk.example.com"}}))
	b := upload(t, c, "wild-b", certstest.Issue(t, certstest.Options{DNSNames: []string{"*.bulk.example.com"}}))
	revBefore, err := env.Controller.Store().Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	resp := deploy(t, c, a.GetId(), domains...)
	t.Logf("deployed to %d domains in %v", n, time.Since(start).Round(time.Millisecond))
	if len(resp.GetResults()) != n {
		t.Fatalf("%d results", len(resp.GetResults()))
	}
	for i, r := range resp.GetResults() {
		if !r.GetDeployed() || r.GetDomain() != domains[i] || r.GetReason() != "" {
			t.Fatalf("result %d: %v", i, r)
		}
	}
	// One transaction: exactly one new revision.
	if resp.GetRevision() != revBefore+1 {
		t.Fatalf("deployment revision %d, store was at %d: not one transaction", resp.GetRevision(), revBefore)
	}
	if got := certDomains(t, c, a.GetId()); len(got) != n || got[0] != domains[0] || got[n-1] != domains[n-1] {
		t.Fatalf("certificate A serves %d domains", len(got))
	}
	if h := httpsOf(t, c, domains[n-1]); !h.GetEnabled() || h.GetCertificateId() != a.GetId() || h.GetCertificateOwned() {
		t.Fatalf("last domain https %v", h)
	}

	// Move all of them to B: 1,000 index keys deleted, 1,000 written.
	start = time.Now()
	resp = deploy(t, c, b.GetId(), domains...)
	t.Logf("redeployed %d domains in %v", n, time.Since(start).Round(time.Millisecond))
	if resp.GetRevision() != revBefore+2 {
		t.Fatalf("second deployment revision %d", resp.GetRevision())
	}
	if got := certDomains(t, c, a.GetId()); len(got) != 0 {
		t.Fatalf("certificate A still serves %d domains", len(got))
	}
	if got := certDomains(t, c, b.GetId()); len(got) != n {
		t.Fatalf("certificate B serves %d domains", len(got))
	}
	// Every domain, read page by page, serves B.
	served := 0
	token := ""
	for {
		page, err := c.Certs.ListHttpsDomains(ctx, &outpostv1.ListHttpsDomainsRequest{PageSize: 300, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, info := range page.GetDomains() {
			if info.GetCertificateId() != b.GetId() || !info.GetHttpsEnabled() {
				t.Fatalf("https domain %v", info)
			}
			served++
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if served != n {
		t.Fatalf("ListHttpsDomains listed %d domains", served)
	}
	// A is free again.
	if _, err := c.Certs.DeleteCertificate(ctx, &outpostv1.DeleteCertificateRequest{Id: a.GetId()}); err != nil {
		t.Fatalf("delete the replaced certificate: %v", err)
	}
	// Deploying B again changes nothing and reports the revision that
	// already carries it.
	again := deploy(t, c, b.GetId(), domains[:10]...)
	if again.GetRevision() != revBefore+2 {
		t.Fatalf("repeated deployment revision %d, want %d", again.GetRevision(), revBefore+2)
	}
	if rev, _ := env.Controller.Store().Revision(ctx); rev != revBefore+3 { // +1: the delete of A
		t.Fatalf("a repeated deployment wrote: revision %d", rev)
	}
}

// TestDeployCertificateRefusals: per-domain refusals are reported in
// order, the other domains are deployed; whole-call refusals write nothing.
func TestDeployCertificateRefusals(t *testing.T) {
	clock := &testClock{}
	env := controllertest.Start(t, clock.config)
	admin, readOnly := env.NewAccount(t, "acme")
	otherAdmin, _ := env.NewAccount(t, "other")
	c, ro, other := env.Clients(t, admin), env.Clients(t, readOnly), env.Clients(t, otherAdmin)
	ctx := ctxT(t)
	createDomains(t, c, "www.example.com", "shop.example.com", "example.com", "other.example.org", "*.img.example.com")
	createDomains(t, other, "victim.example.com")

	// shop.example.com serves a certificate uploaded inline for it.
	inline := certstest.Issue(t, certstest.Options{DNSNames: []string{"shop.example.com"}})
	en, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "shop.example.com", Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(inline.CertPEM), PrivateKeyPem: string(inline.KeyPEM)}}})
	if err != nil {
		t.Fatal(err)
	}
	inlineID := en.GetCertificate().GetId()
	if _, err := c.HTTPS.SetHttpsRedirect(ctx, &outpostv1.SetHttpsRedirectRequest{Domain: "shop.example.com", Redirect: outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS}); err != nil {
		t.Fatal(err)
	}

	wild := upload(t, c, "wild", certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.com", "example.com"}}))
	resp := deploy(t, c, wild.GetId(),
		"www.example.com", "nope.example.com", "SHOP.example.com.", "other.example.org", "victim.example.com", "bad..name", "*.img.example.com", "example.com", "www.example.com")
	type want struct {
		domain   string
		deployed bool
		reason   string
	}
	wants := []want{
		{"www.example.com", true, ""},
		{"nope.example.com", false, "DomainNotFound"},
		{"shop.example.com", true, ""},
		{"other.example.org", false, "CertificateDomainMismatch"},
		{"victim.example.com", false, "DomainNotFound"}, // another account's: not disclosed
		{"bad..name", false, "InvalidDomainName"},
		{"*.img.example.com", false, "CertificateDomainMismatch"}, // a wildcard only by the same wildcard
		{"example.com", true, ""},
		{"www.example.com", true, ""},
	}
	for i, w := range wants {
		r := resp.GetResults()[i]
		if r.GetDomain() != w.domain || r.GetDeployed() != w.deployed || r.GetReason() != w.reason || (!w.deployed && r.GetMessage() == "") {
			t.Errorf("result %d: %v, want %+v", i, r, w)
		}
	}
	if resp.GetRevision() == 0 {
		t.Fatal("no revision for a deployment")
	}
	if got := strings.Join(certDomains(t, c, wild.GetId()), ","); got != "example.com,shop.example.com,www.example.com" {
		t.Fatalf("certificate serves %s", got)
	}
	// The replaced inline certificate is gone, key and index with it, as
	// EnableHttps does when it replaces one; the redirect is kept.
	if h := httpsOf(t, c, "shop.example.com"); h.GetCertificateId() != wild.GetId() || h.GetCertificateOwned() || h.GetRedirect() != outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS {
		t.Fatalf("shop https %v", h)
	}
	_, err = c.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: inlineID})
	wantErr(t, err, codes.NotFound, "CertificateNotFound")
	kvs, _, err := env.Controller.Store().Range(ctx, store.Prefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if strings.Contains(kv.Key, inlineID) {
			t.Fatalf("the replaced inline certificate is left at %s", kv.Key)
		}
	}
	// The refused domains are untouched.
	if h := httpsOf(t, other, "victim.example.com"); h.GetEnabled() {
		t.Fatalf("another account's domain got HTTPS: %v", h)
	}
	if h := httpsOf(t, c, "other.example.org"); h.GetEnabled() {
		t.Fatalf("an uncovered domain got HTTPS: %v", h)
	}

	// An inline certificate deploys to its own domain only.
	createDomains(t, c, "blog.example.com")
	own := certstest.Issue(t, certstest.Options{DNSNames: []string{"blog.example.com", "*.example.com"}})
	en, err = c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "blog.example.com", Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(own.CertPEM), PrivateKeyPem: string(own.KeyPEM)}}})
	if err != nil {
		t.Fatal(err)
	}
	resp = deploy(t, c, en.GetCertificate().GetId(), "blog.example.com", "www.example.com")
	if r := resp.GetResults(); !r[0].GetDeployed() || r[1].GetDeployed() || r[1].GetReason() != "CertificateOwnedByDomain" {
		t.Fatalf("inline certificate deployment %v", r)
	}

	// Whole-call refusals.
	for _, tc := range []struct {
		name    string
		c       *controllertest.Clients
		req     *outpostv1.DeployCertificateRequest
		code    codes.Code
		reason  string
		limitMD string
	}{
		{"no domains", c, &outpostv1.DeployCertificateRequest{Id: wild.GetId()}, codes.InvalidArgument, "NoEntries", ""},
		{"too many", c, &outpostv1.DeployCertificateRequest{Id: wild.GetId(), Domains: make([]string, controller.MaxDeployDomains+1)}, codes.InvalidArgument, "TooManyEntries", "10000"},
		{"no id", c, &outpostv1.DeployCertificateRequest{Domains: []string{"www.example.com"}}, codes.InvalidArgument, "InvalidArgument", ""},
		{"unknown", c, &outpostv1.DeployCertificateRequest{Id: "cert-0000000000000000", Domains: []string{"www.example.com"}}, codes.NotFound, "CertificateNotFound", ""},
		{"other account's certificate", other, &outpostv1.DeployCertificateRequest{Id: wild.GetId(), Domains: []string{"victim.example.com"}}, codes.NotFound, "CertificateNotFound", ""},
		{"read-only", ro, &outpostv1.DeployCertificateRequest{Id: wild.GetId(), Domains: []string{"www.example.com"}}, codes.PermissionDenied, "ReadOnlyToken", ""},
	} {
		_, err := tc.c.Certs.DeployCertificate(ctx, tc.req)
		wantErr(t, err, tc.code, tc.reason)
		if tc.limitMD != "" && errMetadata(err)["limit"] != tc.limitMD {
			t.Errorf("%s: metadata %v", tc.name, errMetadata(err))
		}
	}
	// An expired certificate is not deployed (the edge keeps serving the
	// domains' certificates as they are).
	clock.advance(120 * 24 * time.Hour)
	_, err = c.Certs.DeployCertificate(ctx, &outpostv1.DeployCertificateRequest{Id: wild.GetId(), Domains: []string{"www.example.com"}})
	wantErr(t, err, codes.InvalidArgument, "CertificateExpired")
}

// TestDeployCertificateConflict: a concurrent edit of any domain the
// deployment read, or of the certificate, aborts the whole call and leaves
// everything as it was.
func TestDeployCertificateConflict(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	domains := []string{"a.example.com", "b.example.com", "c.example.com"}
	createDomains(t, c, domains...)
	p := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.com"}})
	cert := upload(t, c, "wild", p)
	renewed := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.com"}, Key: p.Key})

	for _, tc := range []struct {
		name string
		edit func() error
	}{
		{"a domain", func() error {
			_, err := c.Origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: "b.example.com", Enabled: true, Value: "origin.example.net"})
			return err
		}},
		{"the certificate", func() error {
			_, err := c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: cert.GetId(), CertificatePem: string(renewed.CertPEM)})
			return err
		}},
		{"a refused domain", func() error {
			// Missing when read: its creation changes what the call decided.
			_, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "d.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := env.Controller.Store().Revision(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			var editErr error
			restore := controller.SetBeforeCertCommit(func(op string) {
				if op == "deploy" {
					once.Do(func() { editErr = tc.edit() })
				}
			})
			_, err = c.Certs.DeployCertificate(ctx, &outpostv1.DeployCertificateRequest{Id: cert.GetId(), Domains: append(domains, "d.example.com")})
			restore()
			if editErr != nil {
				t.Fatalf("concurrent edit: %v", editErr)
			}
			wantErr(t, err, codes.Aborted, "ConcurrentModification")
			// Only the concurrent edit was written.
			if after, _ := env.Controller.Store().Revision(ctx); after != before+1 {
				t.Fatalf("revision went from %d to %d", before, after)
			}
			for _, d := range domains {
				if h := httpsOf(t, c, d); h.GetEnabled() {
					t.Fatalf("%s got HTTPS from an aborted deployment", d)
				}
			}
			if got := certDomains(t, c, cert.GetId()); len(got) != 0 {
				t.Fatalf("index written by an aborted deployment: %v", got)
			}
		})
	}
	// Without interference it goes through.
	resp := deploy(t, c, cert.GetId(), append(domains, "d.example.com")...)
	for _, r := range resp.GetResults() {
		if !r.GetDeployed() {
			t.Fatalf("%v", r)
		}
	}
}

// TestRenewCertificate: a renewal keeps the ID and name, bumps the version,
// moves every domain at once (the config stream carries the new chain under
// the same ID), and is refused when it would leave a domain uncovered.
func TestRenewCertificate(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	domains := []string{"example.com", "www.example.com", "api.example.com"}
	createDomains(t, c, domains...)
	ca := certstest.NewCA(t, "renewal CA")
	p1 := certstest.Issue(t, certstest.Options{DNSNames: []string{"example.com", "*.example.com"}, Issuer: ca, NotAfter: time.Now().Add(10 * 24 * time.Hour)})
	cert := upload(t, c, "site", p1)
	if cert.GetVersion() != 1 || cert.GetSource() != outpostv1.CertificateSource_CERTIFICATE_SOURCE_UPLOADED || cert.GetChainTrust() != outpostv1.ChainTrust_CHAIN_TRUST_UNTRUSTED {
		t.Fatalf("uploaded %v", cert)
	}
	deploy(t, c, cert.GetId(), domains...)

	node := connectNode(t, env, "edge-1", "test", 0)
	snap := node.join(env.Clients(t, env.OperatorToken))
	bundleOf := func(msg *outpostv1.StreamConfigResponse) *outpostv1.CertificateBundle {
		for _, b := range msg.GetCertificates() {
			if b.GetId() == cert.GetId() {
				return b
			}
		}
		return nil
	}
	if b := bundleOf(snap); b == nil || b.GetCertificatePem() != string(p1.ChainPEM) {
		t.Fatal("snapshot lacks the certificate")
	}

	// The same key, a new chain (as a CA renews a CSR).
	p2 := certstest.Issue(t, certstest.Options{DNSNames: []string{"example.com", "*.example.com"}, Issuer: ca, Key: p1.Key, NotAfter: time.Now().Add(90 * 24 * time.Hour)})
	resp, err := c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: cert.GetId(), CertificatePem: string(p2.ChainPEM)})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetCertificate()
	if got.GetId() != cert.GetId() || got.GetName() != "site" || got.GetVersion() != 2 || got.GetFingerprintSha256() == cert.GetFingerprintSha256() ||
		!got.GetNotAfter().AsTime().After(cert.GetNotAfter().AsTime()) || got.GetCreateTime().AsTime() != cert.GetCreateTime().AsTime() ||
		got.GetSource() != outpostv1.CertificateSource_CERTIFICATE_SOURCE_UPLOADED {
		t.Fatalf("renewed %v (was %v)", got, cert)
	}
	if strings.Join(resp.GetDomains(), ",") != "api.example.com,example.com,www.example.com" {
		t.Fatalf("moved domains %v", resp.GetDomains())
	}
	// The config stream carries the new chain, with the same key, under
	// the same ID: the domains, which name the ID, move with it.
	change := node.until("the renewed certificate", func(m *outpostv1.StreamConfigResponse) bool { return bundleOf(m) != nil })
	b := bundleOf(change)
	if change.GetRevision() != got.GetRevision() || b.GetCertificatePem() != string(p2.ChainPEM) || len(change.GetDomains()) != 0 {
		t.Fatalf("change %d (renewal at %d), domains %d", change.GetRevision(), got.GetRevision(), len(change.GetDomains()))
	}
	if _, err := tls.X509KeyPair([]byte(b.GetCertificatePem()), []byte(b.GetPrivateKeyPem())); err != nil {
		t.Fatalf("the renewed bundle does not pair with its key: %v", err)
	}
	info, err := c.Certs.GetDomainCertificateInfo(ctx, &outpostv1.GetDomainCertificateInfoRequest{Domain: "api.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if !info.GetInfo().GetNotAfter().AsTime().Equal(got.GetNotAfter().AsTime()) || info.GetInfo().GetState() != outpostv1.CertificateState_CERTIFICATE_STATE_VALID {
		t.Fatalf("info after renewal %v", info.GetInfo())
	}

	// A new key with it.
	p3 := certstest.Issue(t, certstest.Options{DNSNames: []string{"example.com", "*.example.com", "extra.example.net"}, Issuer: ca})
	resp, err = c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: cert.GetId(), CertificatePem: string(p3.ChainPEM), PrivateKeyPem: string(p3.KeyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCertificate().GetVersion() != 3 || len(resp.GetCertificate().GetDnsNames()) != 3 {
		t.Fatalf("renewed with a new key %v", resp.GetCertificate())
	}
	b = bundleOf(node.until("the second renewal", func(m *outpostv1.StreamConfigResponse) bool { return bundleOf(m) != nil }))
	if pair, err := tls.X509KeyPair([]byte(b.GetCertificatePem()), []byte(b.GetPrivateKeyPem())); err != nil || !pair.Leaf.Equal(p3.Cert) {
		t.Fatalf("the bundle after a new key: %v", err)
	}

	// Refusals leave the certificate as it is.
	for _, tc := range []struct {
		name      string
		certPEM   string
		keyPEM    string
		code      codes.Code
		reason    string
		domainsMD string
	}{
		// Drops the apex: example.com would be left uncovered.
		{"uncovered", string(certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.com"}, Key: p3.Key}).CertPEM), "", codes.InvalidArgument, "CertificateDomainMismatch", "example.com"},
		{"uncovered wildcard", string(certstest.Issue(t, certstest.Options{DNSNames: []string{"example.com", "www.example.com"}, Key: p3.Key}).CertPEM), "", codes.InvalidArgument, "CertificateDomainMismatch", "api.example.com"},
		// Issued for another key, and no key given.
		{"other key", string(p1.CertPEM), "", codes.InvalidArgument, "CertificateKeyMismatch", ""},
		{"expired", string(certstest.Issue(t, certstest.Options{DNSNames: []string{"example.com", "*.example.com"}, Key: p3.Key, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}).CertPEM), "", codes.InvalidArgument, "CertificateExpired", ""},
		{"not pem", "hello", "", codes.InvalidArgument, "CertificateNotPem", ""},
		{"mismatched pair", string(p2.CertPEM), string(p3.KeyPEM), codes.InvalidArgument, "CertificateKeyMismatch", ""},
	} {
		_, err := c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: cert.GetId(), CertificatePem: tc.certPEM, PrivateKeyPem: tc.keyPEM})
		wantErr(t, err, tc.code, tc.reason)
		if tc.domainsMD != "" && errMetadata(err)["domains"] != tc.domainsMD {
			t.Errorf("%s: metadata %v", tc.name, errMetadata(err))
		}
	}
	_, err = c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: "cert-0000000000000000", CertificatePem: string(p3.CertPEM)})
	wantErr(t, err, codes.NotFound, "CertificateNotFound")
	now, err := c.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: cert.GetId()})
	if err != nil || now.GetCertificate().GetVersion() != 3 {
		t.Fatalf("after refusals: %v %v", now.GetCertificate(), err)
	}

	// A renewal while a domain is being bound to the certificate aborts.
	createDomains(t, c, "late.example.com")
	restore := controller.SetBeforeCertCommit(func(op string) {
		if op == "renew" {
			if _, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "late.example.com", Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: cert.GetId()}}); err != nil {
				t.Errorf("bind meanwhile: %v", err)
			}
		}
	})
	p4 := certstest.Issue(t, certstest.Options{DNSNames: []string{"example.com", "*.example.com"}, Key: p3.Key})
	_, err = c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: cert.GetId(), CertificatePem: string(p4.CertPEM)})
	restore()
	wantErr(t, err, codes.Aborted, "ConcurrentModification")
}

// TestCertificateQueries covers the list filters, the HTTPS domain list,
// the per-domain information and the statistics, with certificates of
// different expiry seen through a clock the test moves.
func TestCertificateQueries(t *testing.T) {
	clock := &testClock{}
	env := controllertest.Start(t, clock.config)
	admin, readOnly := env.NewAccount(t, "acme")
	c, ro := env.Clients(t, admin), env.Clients(t, readOnly)
	ctx := ctxT(t)
	day := 24 * time.Hour
	now := time.Now()
	issue := func(notAfter time.Duration, names ...string) *certstest.Pair {
		return certstest.Issue(t, certstest.Options{DNSNames: names, NotAfter: now.Add(notAfter)})
	}
	soon := upload(t, c, "Prod soon", issue(1*day, "a.example.com", "b.example.com"))
	month := upload(t, c, "prod-month", issue(20*day, "*.shop.example.com"))
	edge := upload(t, c, "test-edge", issue(31*day, "edge.example.org"))
	long := upload(t, c, "long", issue(100*day, "www.example.net"))
	createDomains(t, c, "a.example.com", "b.example.com", "x.shop.example.com", "www.example.net", "plain.example.com")
	deploy(t, c, soon.GetId(), "a.example.com", "b.example.com")
	deploy(t, c, month.GetId(), "x.shop.example.com")
	deploy(t, c, long.GetId(), "www.example.net")

	list := func(req *outpostv1.ListCertificatesRequest) string {
		t.Helper()
		var ids []string
		for {
			resp, err := ro.Certs.ListCertificates(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if req.GetPageSize() > 0 && len(resp.GetCertificates()) > int(req.GetPageSize()) {
				t.Fatalf("page of %d", len(resp.GetCertificates()))
			}
			for _, cert := range resp.GetCertificates() {
				ids = append(ids, cert.GetName())
			}
			if resp.GetNextPageToken() == "" {
				return strings.Join(ids, ",")
			}
			if len(resp.GetCertificates()) == 0 {
				t.Fatal("an empty page before the last")
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	// names lists certificates' names in ID order, the order of the list.
	names := func(certs ...*outpostv1.Certificate) string {
		sorted := slices.SortedFunc(slices.Values(certs), func(a, b *outpostv1.Certificate) int { return strings.Compare(a.GetId(), b.GetId()) })
		var out []string
		for _, c := range sorted {
			out = append(out, c.GetName())
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		req  *outpostv1.ListCertificatesRequest
		want string
	}{
		{&outpostv1.ListCertificatesRequest{}, names(soon, month, edge, long)},
		{&outpostv1.ListCertificatesRequest{PageSize: 1}, names(soon, month, edge, long)},
		{&outpostv1.ListCertificatesRequest{NameContains: "PROD", PageSize: 1}, names(soon, month)},
		{&outpostv1.ListCertificatesRequest{Covers: "y.shop.example.com"}, names(month)},
		{&outpostv1.ListCertificatesRequest{Covers: "*.shop.example.com"}, names(month)},
		{&outpostv1.ListCertificatesRequest{Covers: "a.y.shop.example.com"}, ""},
		{&outpostv1.ListCertificatesRequest{Covers: "B.example.com."}, names(soon)},
		{&outpostv1.ListCertificatesRequest{State: outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRING, PageSize: 1}, names(soon, month)},
		{&outpostv1.ListCertificatesRequest{State: outpostv1.CertificateState_CERTIFICATE_STATE_VALID}, names(edge, long)},
		{&outpostv1.ListCertificatesRequest{State: outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRED}, ""},
		{&outpostv1.ListCertificatesRequest{State: outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRING, NameContains: "month"}, names(month)},
	} {
		if got := list(tc.req); got != tc.want {
			t.Errorf("list %v: %q, want %q", tc.req, got, tc.want)
		}
	}
	_, err := ro.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{Covers: "not a name"})
	wantErr(t, err, codes.InvalidArgument, "InvalidDomainName")
	_, err = ro.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{State: 42})
	wantErr(t, err, codes.InvalidArgument, "InvalidArgument")

	stats := func() *outpostv1.GetCertificateStatsResponse {
		t.Helper()
		resp, err := ro.Certs.GetCertificateStats(ctx, &outpostv1.GetCertificateStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if s := stats(); s.GetCertificates() != 4 || s.GetExpiredCertificates() != 0 || s.GetExpiringCertificates() != 2 ||
		s.GetDomainsWithExpired() != 0 || s.GetDomainsWithExpiring() != 3 {
		t.Fatalf("stats now %v", s)
	}

	// Two days on: soon has expired, edge is within 30 days.
	clock.advance(2 * day)
	if s := stats(); s.GetCertificates() != 4 || s.GetExpiredCertificates() != 1 || s.GetExpiringCertificates() != 2 ||
		s.GetDomainsWithExpired() != 2 || s.GetDomainsWithExpiring() != 1 {
		t.Fatalf("stats in two days %v", s)
	}
	if got := list(&outpostv1.ListCertificatesRequest{State: outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRED}); got != names(soon) {
		t.Fatalf("expired: %q", got)
	}
	if got := list(&outpostv1.ListCertificatesRequest{State: outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRING}); got != names(month, edge) {
		t.Fatalf("expiring: %q", got)
	}

	info := func(domain string) *outpostv1.DomainCertificateInfo {
		t.Helper()
		resp, err := ro.Certs.GetDomainCertificateInfo(ctx, &outpostv1.GetDomainCertificateInfoRequest{Domain: domain})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetInfo()
	}
	a := info("A.example.com")
	if a.GetDomain() != "a.example.com" || !a.GetHttpsEnabled() || a.GetCertificateId() != soon.GetId() || a.GetCertificateName() != "Prod soon" ||
		a.GetState() != outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRED || a.GetRemaining().AsDuration() > -day/2 ||
		a.GetChainTrust() != outpostv1.ChainTrust_CHAIN_TRUST_UNTRUSTED || a.GetSource() != outpostv1.CertificateSource_CERTIFICATE_SOURCE_UPLOADED ||
		strings.Join(a.GetDnsNames(), ",") != "a.example.com,b.example.com" || a.GetCommonName() != "a.example.com" || a.GetIssuer() == "" {
		t.Fatalf("info a %v", a)
	}
	if x := info("x.shop.example.com"); x.GetState() != outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRING ||
		x.GetRemaining().AsDuration() < 17*day || x.GetRemaining().AsDuration() > 18*day {
		t.Fatalf("info x %v", x)
	}
	if p := info("plain.example.com"); p.GetHttpsEnabled() || p.GetCertificateId() != "" || p.GetState() != 0 || p.GetRemaining() != nil {
		t.Fatalf("info plain %v", p)
	}
	_, err = ro.Certs.GetDomainCertificateInfo(ctx, &outpostv1.GetDomainCertificateInfoRequest{Domain: "nope.example.com"})
	wantErr(t, err, codes.NotFound, "DomainNotFound")

	// HTTPS domains in name order, in pages, without plain.example.com.
	var listed []string
	token := ""
	for {
		resp, err := ro.Certs.ListHttpsDomains(ctx, &outpostv1.ListHttpsDomainsRequest{PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.GetDomains() {
			listed = append(listed, d.GetDomain()+"="+d.GetCertificateName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if got := strings.Join(listed, " "); got != "a.example.com=Prod soon b.example.com=Prod soon www.example.net=long x.shop.example.com=prod-month" {
		t.Fatalf("https domains %s", got)
	}
	_, err = ro.Certs.ListHttpsDomains(ctx, &outpostv1.ListHttpsDomainsRequest{PageToken: "bogus"})
	wantErr(t, err, codes.InvalidArgument, "InvalidPageToken")

	if got := certDomains(t, ro, soon.GetId()); strings.Join(got, ",") != "a.example.com,b.example.com" {
		t.Fatalf("domains of soon %v", got)
	}
	if got := certDomains(t, ro, edge.GetId()); len(got) != 0 {
		t.Fatalf("domains of edge %v", got)
	}
	_, err = ro.Certs.ListCertificateDomains(ctx, &outpostv1.ListCertificateDomainsRequest{Id: "cert-0000000000000000"})
	wantErr(t, err, codes.NotFound, "CertificateNotFound")

	// Another account sees none of it.
	otherAdmin, _ := env.NewAccount(t, "other")
	other := env.Clients(t, otherAdmin)
	if s, err := other.Certs.GetCertificateStats(ctx, &outpostv1.GetCertificateStatsRequest{}); err != nil || s.GetCertificates() != 0 {
		t.Fatalf("other account's stats %v %v", s, err)
	}
	_, err = other.Certs.ListCertificateDomains(ctx, &outpostv1.ListCertificateDomainsRequest{Id: soon.GetId()})
	wantErr(t, err, codes.NotFound, "CertificateNotFound")
	_, err = other.Certs.GetDomainCertificateInfo(ctx, &outpostv1.GetDomainCertificateInfoRequest{Domain: "a.example.com"})
	wantErr(t, err, codes.NotFound, "DomainNotFound")
	if resp, err := other.Certs.ListHttpsDomains(ctx, &outpostv1.ListHttpsDomainsRequest{}); err != nil || len(resp.GetDomains()) != 0 {
		t.Fatalf("other account's https domains %v %v", resp, err)
	}
}
