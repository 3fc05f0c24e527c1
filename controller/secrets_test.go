package controller_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func issue(t *testing.T, names ...string) *certstest.Pair {
	t.Helper()
	return certstest.Issue(t, certstest.Options{DNSNames: names})
}

// keyFingerprints returns strings that would betray a private key: its PEM
// header and every base64 line of its body, and the raw DER as base64.
func keyFingerprints(keyPEM []byte) []string {
	out := []string{"PRIVATE KEY"}
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}

// TestNoPrivateKeyInResponsesLogsOrEtcd drives every read and write that
// touches certificates, then scans every response, the controller's log
// and every etcd value for key material.
func TestNoPrivateKeyInResponsesLogsOrEtcd(t *testing.T) {
	env := controllertest.Start(t)
	admin, readOnly := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ro := env.Clients(t, readOnly)
	ctx := ctxT(t)

	p1 := issue(t, "www.example.com")
	p2 := issue(t, "shop.example.com")
	p3 := issue(t, "bad.example.com")
	var fingerprints []string
	for _, p := range []*certstest.Pair{p1, p2, p3} {
		fingerprints = append(fingerprints, keyFingerprints(p.KeyPEM)...)
	}
	var responses []proto.Message
	record := func(m proto.Message, err error) {
		t.Helper()
		if err != nil {
			// Error messages are responses too.
			responses = append(responses, &outpostv1.Nack{Error: err.Error()})
			return
		}
		responses = append(responses, m)
	}

	for _, n := range []string{"www.example.com", "shop.example.com"} {
		record(c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: n, Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}))
	}
	up, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{Name: "www", CertificatePem: string(p1.CertPEM), PrivateKeyPem: string(p1.KeyPEM)})
	record(up, err)
	record(c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "www.example.com", Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: up.GetCertificate().GetId()}}))
	record(c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "shop.example.com", Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(p2.CertPEM), PrivateKeyPem: string(p2.KeyPEM)}}}))
	// Refusals that involve keys: mismatch and not covering.
	record(c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{CertificatePem: string(p1.CertPEM), PrivateKeyPem: string(p3.KeyPEM)}))
	record(c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "shop.example.com", Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(p3.CertPEM), PrivateKeyPem: string(p3.KeyPEM)}}}))
	record(c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{CertificatePem: string(p3.CertPEM), PrivateKeyPem: "garbage" + string(p3.KeyPEM)[10:]}))

	for _, cl := range []*controllertest.Clients{c, ro} {
		record(cl.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{}))
		record(cl.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: up.GetCertificate().GetId()}))
		record(cl.Domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{}))
		for _, n := range []string{"www.example.com", "shop.example.com"} {
			record(cl.Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: n}))
			record(cl.HTTPS.GetHttpsSettings(ctx, &outpostv1.GetHttpsSettingsRequest{Domain: n}))
			record(cl.Origins.GetOriginSettings(ctx, &outpostv1.GetOriginSettingsRequest{Domain: n}))
		}
	}
	if len(responses) < 20 {
		t.Fatalf("only %d responses recorded", len(responses))
	}

	scan := func(where string, data []byte) {
		t.Helper()
		for _, f := range fingerprints {
			if bytes.Contains(data, []byte(f)) {
				t.Fatalf("%s contains private key material (%q)", where, f[:min(len(f), 24)])
			}
		}
	}
	for i, m := range responses {
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		scan("response "+string(rune('0'+i%10)), b)
		raw, _ := proto.Marshal(m)
		scan("binary response", raw)
	}
	scan("controller log", []byte(env.Logs.String()))

	// At rest: no PEM key, no base64 of the key, in any etcd value.
	kvs, _, err := env.Controller.Store().Range(context.Background(), store.Prefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		scan("etcd "+kv.Key, kv.Value)
		// protojson renders bytes fields as base64; decode any that parse.
		for _, field := range strings.FieldsFunc(string(kv.Value), func(r rune) bool { return r == '"' }) {
			if dec, err := base64.StdEncoding.DecodeString(field); err == nil && len(dec) > 32 {
				scan("decoded etcd "+kv.Key, dec)
			}
		}
	}
}
