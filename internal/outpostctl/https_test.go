package outpostctl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// TestWriteHTTPSFree: 'https get' shows a free certificate's state, the
// CA's reason of a failure, and when the controllers try next.
func TestWriteHTTPSFree(t *testing.T) {
	next := timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	for _, tc := range []struct {
		name string
		h    *outpostv1.HttpsSettings
		want []string
	}{
		{"applying", &outpostv1.HttpsSettings{Free: &outpostv1.FreeCertificate{Status: outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING}},
			[]string{"HTTPS:", "off, free certificate applying", "Free certificate:", "applying"}},
		{"failed", &outpostv1.HttpsSettings{Free: &outpostv1.FreeCertificate{Status: outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_FAILED,
			Error: "Non-200 status code from HTTP: returned 404 (unauthorized)", Attempts: 3, NextAttemptTime: next}},
			[]string{"off, free certificate failed (3 attempts)", "CA's reason:", "returned 404 (unauthorized)", "Next attempt:", "2030-01-02T03:04:05Z"}},
		{"issued", &outpostv1.HttpsSettings{Enabled: true, CertificateId: "cert-1", CertificateOwned: true,
			Free: &outpostv1.FreeCertificate{Status: outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_ISSUED, NextAttemptTime: next}},
			[]string{"on, certificate cert-1 (free)", "Free certificate:", "issued", "Renewal:", "2030-01-02T03:04:05Z"}},
		{"renewal failed", &outpostv1.HttpsSettings{Enabled: true, CertificateId: "cert-1", CertificateOwned: true,
			Free: &outpostv1.FreeCertificate{Status: outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_FAILED, Error: "rate limited", Attempts: 1}},
			[]string{"on, certificate cert-1, free certificate failed", "CA's reason:", "rate limited"}},
	} {
		var b bytes.Buffer
		if err := writeHTTPS(&b, "www.example.com", tc.h, nil); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, b.String())
			}
		}
	}
}

// TestHTTPSEnableFree: 'https enable --free' asks for a free certificate
// and excludes the other sources; a controller without an ACME CA refuses
// it with FreeCertificatesDisabled.
func TestHTTPSEnableFree(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) { c.AcmeDirectoryURL = "https://127.0.0.1:1/directory" })
	admin, _ := env.NewAccount(t, "free")
	c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}
	c.ok("domain", "add", "www.example.com", "--origin", "ip:203.0.113.10")

	r := c.run("https", "enable", "www.example.com", "--free", "--cert-id", "cert-0123")
	wantFail(t, r, exitUsage, "Error: if any flags in the group [free cert-id] are set none of the others can be")
	out := c.ok("https", "enable", "www.example.com", "--free")
	if !strings.Contains(out, "off, free certificate applying") {
		t.Fatalf("https enable --free:\n%s", out)
	}
	var got outpostv1.GetHttpsSettingsResponse
	c.json(&got, "https", "get", "www.example.com")
	if got.GetHttps().GetFree() == nil {
		t.Fatalf("https get: %v", got.GetHttps())
	}

	plain := controllertest.Start(t)
	admin, _ = plain.NewAccount(t, "free")
	c = cli{t: t, addr: plain.Addr, ca: caFile(t, plain), token: admin}
	c.ok("domain", "add", "www.example.com", "--origin", "ip:203.0.113.10")
	r = c.run("https", "enable", "www.example.com", "--free")
	wantFail(t, r, exitError, "Error: FailedPrecondition (FreeCertificatesDisabled): ")
}
