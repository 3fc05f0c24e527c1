package controller_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The free certificate flow against a real CA is tested end to end in
// controller/acmetest. These tests cover the API around it.

func freeSource() *outpostv1.EnableHttpsRequest_Free {
	return &outpostv1.EnableHttpsRequest_Free{Free: true}
}

// TestEnableHttpsFreeRefused: without an ACME CA configured, EnableHttps
// free fails with FailedPrecondition; a wildcard domain cannot have one;
// free: false is no source.
func TestEnableHttpsFreeRefused(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acct")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	_, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "www.example.com", Source: freeSource()})
	wantErr(t, err, codes.FailedPrecondition, "FreeCertificatesDisabled")

	// A CA that is never reached: these requests are refused before.
	env = controllertest.Start(t, func(c *controller.Config) { c.AcmeDirectoryURL = "https://127.0.0.1:1/directory" })
	admin, _ = env.NewAccount(t, "acct")
	c = env.Clients(t, admin)
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "*.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "*.example.com", Source: freeSource()})
	wantErr(t, err, codes.InvalidArgument, "FreeCertificateWildcard")
	_, err = c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "*.example.com", Source: &outpostv1.EnableHttpsRequest_Free{}})
	wantErr(t, err, codes.InvalidArgument, "InvalidArgument")
}

// TestEnableHttpsFreeKeepsCurrentCertificate: asking for a free certificate
// leaves HTTPS on with the uploaded certificate until one is issued. A CA
// that cannot be reached makes it FAILED, with HTTPS untouched; asking
// again retries at once; enabling HTTPS with a certificate clears it.
func TestEnableHttpsFreeKeepsCurrentCertificate(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) { c.AcmeDirectoryURL = "https://127.0.0.1:1/directory" })
	admin, _ := env.NewAccount(t, "acct")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	const name = "www.example.com"
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: name, Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	pair := certstest.Issue(t, certstest.Options{DNSNames: []string{name}})
	up, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: name, Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(pair.CertPEM), PrivateKeyPem: string(pair.KeyPEM),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	uploaded := up.GetCertificate().GetId()

	resp, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: name, Source: freeSource()})
	if err != nil {
		t.Fatal(err)
	}
	h := resp.GetHttps()
	if h.GetFree().GetStatus() != outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING || !h.GetEnabled() ||
		h.GetCertificateId() != uploaded || resp.GetCertificate().GetId() != uploaded {
		t.Fatalf("EnableHttps free answered %v with certificate %v; want APPLYING, HTTPS on with %s", h, resp.GetCertificate(), uploaded)
	}

	waitFailed := func(attempts uint32) *outpostv1.HttpsSettings {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			got, err := c.HTTPS.GetHttpsSettings(ctx, &outpostv1.GetHttpsSettingsRequest{Domain: name})
			if err != nil {
				t.Fatal(err)
			}
			f := got.GetHttps().GetFree()
			if f.GetStatus() == outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_FAILED && f.GetAttempts() == attempts {
				return got.GetHttps()
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for failure %d; HTTPS is %v", attempts, got.GetHttps())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	h = waitFailed(1)
	if !h.GetEnabled() || h.GetCertificateId() != uploaded || h.GetFree().GetError() == "" || strings.Contains(h.GetFree().GetError(), "127.0.0.1") {
		t.Fatalf("after a failure HTTPS is %v; want on with %s, and a reason without internals", h, uploaded)
	}
	if next := h.GetFree().GetNextAttemptTime().AsTime(); next.Before(time.Now().Add(5 * time.Minute)) {
		t.Errorf("the next attempt is at %v; want the default backoff of 10 minutes", next)
	}

	// Asking again retries now.
	resp, err = c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: name, Source: freeSource()})
	if err != nil {
		t.Fatal(err)
	}
	if s := resp.GetHttps().GetFree().GetStatus(); s != outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING {
		t.Fatalf("EnableHttps free after a failure: %v, want APPLYING", s)
	}
	waitFailed(2)

	// A certificate given by ID replaces the free one.
	resp, err = c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: name, Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: uploaded}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetHttps().GetFree() != nil {
		t.Fatalf("EnableHttps with a certificate left free set: %v", resp.GetHttps())
	}
}

// TestACMEIssuerElection: of two controllers configured for free
// certificates, exactly one is elected to issue; when it shuts down, it
// resigns and the other takes over at once, without waiting for its lease
// to expire. A controller without a CA does not campaign.
func TestACMEIssuerElection(t *testing.T) {
	env := controllertest.Start(t) // no CA: hosts etcd, never campaigns
	type candidate struct {
		c    *controller.Controller
		logs *controllertest.LogBuffer
	}
	start := func() candidate {
		logs := &controllertest.LogBuffer{}
		c, err := controller.Start(ctxT(t), controller.Config{
			ListenAddr:       "127.0.0.1:0",
			EtcdEndpoints:    env.Controller.EtcdEndpoints(),
			KeyringText:      env.Keyring,
			AcmeDirectoryURL: "https://127.0.0.1:1/directory",
			Logger:           slog.New(slog.NewTextHandler(logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return candidate{c, logs}
	}
	a, b := start(), start()
	elected := func(c candidate) bool { return strings.Contains(c.logs.String(), "acme: elected") }
	candidates := func() int {
		kvs, _, err := env.Controller.Store().Range(ctxT(t), store.AcmeElectionPrefix()+"/", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(kvs)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("two candidates and a leader", func() bool { return candidates() == 2 && (elected(a) || elected(b)) })
	if elected(a) && elected(b) {
		t.Fatal("both controllers were elected")
	}
	if strings.Contains(env.Logs.String(), "acme:") {
		t.Error("a controller without a CA campaigned")
	}
	leader, other := a, b
	if elected(b) {
		leader, other = b, a
	}
	leader.c.Close()
	waitFor("the other controller to take over", func() bool { return elected(other) && candidates() == 1 })
}

// TestFreeCertificateWaitsWhileDisabled: a disabled domain's free
// certificate is not attempted (no node would answer the challenge); it is
// once the domain is enabled again.
func TestFreeCertificateWaitsWhileDisabled(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) { c.AcmeDirectoryURL = "https://127.0.0.1:1/directory" })
	admin, _ := env.NewAccount(t, "acct")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	for _, name := range []string{"off.example.com", "on.example.com"} {
		if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: name, Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Domains.DisableDomain(ctx, &outpostv1.DisableDomainRequest{Name: "off.example.com"}); err != nil {
		t.Fatal(err)
	}
	free := func(name string) *outpostv1.FreeCertificate {
		t.Helper()
		got, err := c.HTTPS.GetHttpsSettings(ctx, &outpostv1.GetHttpsSettingsRequest{Domain: name})
		if err != nil {
			t.Fatal(err)
		}
		return got.GetHttps().GetFree()
	}
	waitAttempts := func(name string, n uint32) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); free(name).GetAttempts() < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: timed out waiting for attempt %d: %v", name, n, free(name))
			}
		}
	}
	// The disabled domain asks first, so an issuer that attempted it would
	// have done so before the enabled one's attempt, which is the witness.
	for _, name := range []string{"off.example.com", "on.example.com"} {
		if _, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: name, Source: freeSource()}); err != nil {
			t.Fatal(err)
		}
	}
	waitAttempts("on.example.com", 1)
	if f := free("off.example.com"); f.GetAttempts() != 0 || f.GetStatus() != outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING {
		t.Fatalf("the disabled domain's free certificate was attempted: %v", f)
	}
	if _, err := c.Domains.EnableDomain(ctx, &outpostv1.EnableDomainRequest{Name: "off.example.com"}); err != nil {
		t.Fatal(err)
	}
	waitAttempts("off.example.com", 1)
}
