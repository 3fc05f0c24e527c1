package controller_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/controller"
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

	// The certificate center: a deployment that replaces an inline
	// certificate, renewals that unseal the stored key or bring a new one,
	// and refusals that involve keys.
	wild, p4 := issue(t, "*.example.com"), issue(t, "*.example.com")
	fingerprints = append(fingerprints, keyFingerprints(wild.KeyPEM)...)
	fingerprints = append(fingerprints, keyFingerprints(p4.KeyPEM)...)
	wup, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{Name: "wild", CertificatePem: string(wild.CertPEM), PrivateKeyPem: string(wild.KeyPEM)})
	record(wup, err)
	wildID := wup.GetCertificate().GetId()
	record(c.Certs.DeployCertificate(ctx, &outpostv1.DeployCertificateRequest{Id: wildID, Domains: []string{"www.example.com", "shop.example.com", "nope.example.org"}}))
	sameKey := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.example.com"}, Key: wild.Key})
	renewed, err := c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: wildID, CertificatePem: string(sameKey.CertPEM)})
	if err != nil || len(renewed.GetDomains()) != 2 {
		t.Fatalf("renewal with the stored key: %v %v", renewed, err)
	}
	record(renewed, nil)
	record(c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: wildID, CertificatePem: string(p4.CertPEM)}))
	record(c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: wildID, CertificatePem: string(p4.CertPEM), PrivateKeyPem: string(p3.KeyPEM)}))
	record(c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: wildID, CertificatePem: string(p3.CertPEM), PrivateKeyPem: string(p3.KeyPEM)}))
	renewed, err = c.Certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: wildID, CertificatePem: string(p4.CertPEM), PrivateKeyPem: string(p4.KeyPEM)})
	if err != nil || renewed.GetCertificate().GetVersion() != 3 {
		t.Fatalf("renewal with a new key: %v %v", renewed, err)
	}
	record(renewed, nil)

	for _, cl := range []*controllertest.Clients{c, ro} {
		record(cl.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{}))
		record(cl.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: up.GetCertificate().GetId()}))
		record(cl.Domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{}))
		record(cl.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{Covers: "www.example.com", State: outpostv1.CertificateState_CERTIFICATE_STATE_VALID}))
		record(cl.Certs.ListCertificateDomains(ctx, &outpostv1.ListCertificateDomainsRequest{Id: wildID}))
		record(cl.Certs.ListHttpsDomains(ctx, &outpostv1.ListHttpsDomainsRequest{}))
		record(cl.Certs.GetCertificateStats(ctx, &outpostv1.GetCertificateStatsRequest{}))
		for _, n := range []string{"www.example.com", "shop.example.com"} {
			record(cl.Certs.GetDomainCertificateInfo(ctx, &outpostv1.GetDomainCertificateInfoRequest{Domain: n}))
			record(cl.Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: n}))
			record(cl.HTTPS.GetHttpsSettings(ctx, &outpostv1.GetHttpsSettingsRequest{Domain: n}))
			record(cl.Origins.GetOriginSettings(ctx, &outpostv1.GetOriginSettingsRequest{Domain: n}))
		}
	}
	if len(responses) < 20 {
		t.Fatalf("only %d responses recorded", len(responses))
	}
	// The cluster CA's key is never anywhere either, nor a member's.
	fingerprints = append(fingerprints, keyFingerprints([]byte(controller.CAKeyPEM(env.Controller)))...)
	record(env.Clients(t, "").PKI.GetCaCertificate(ctx, &outpostv1.GetCaCertificateRequest{}))
	record(env.Clients(t, env.OperatorToken).PKI.ListMemberCertificates(ctx, &outpostv1.ListMemberCertificatesRequest{}))

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

// keyMaterial returns byte strings that would betray a private key given
// as PEM: the fingerprints of keyFingerprints, its DER, and the private
// scalar or primes themselves.
func keyMaterial(t *testing.T, keyPEM string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range keyFingerprints([]byte(keyPEM)) {
		out = append(out, []byte(f))
	}
	b, _ := pem.Decode([]byte(keyPEM))
	if b == nil {
		t.Fatal("the config stream's key is not PEM")
	}
	out = append(out, b.Bytes)
	key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	case *rsa.PrivateKey:
		out = append(out, k.D.Bytes())
		for _, p := range k.Primes {
			out = append(out, p.Bytes())
		}
	default:
		t.Fatalf("unexpected key type %T", key)
	}
	return out
}

// TestNoCsrKeyInResponsesLogsOrEtcd: the keys the controller makes for
// CSRs appear nowhere but on the config stream: not in any CSR or
// certificate response (refusals included), not in the log, not in etcd in
// the clear. The keys are learnt from the config stream after completion,
// the one place that must carry them.
func TestNoCsrKeyInResponsesLogsOrEtcd(t *testing.T) {
	env := controllertest.Start(t)
	admin, readOnly := env.NewAccount(t, "acme")
	c, ro := env.Clients(t, admin), env.Clients(t, readOnly)
	ctx := ctxT(t)
	ca := certstest.NewCA(t, "CSR CA")
	var responses []proto.Message
	record := func(m proto.Message, err error) {
		t.Helper()
		if err != nil {
			responses = append(responses, &outpostv1.Nack{Error: err.Error()})
			return
		}
		responses = append(responses, m)
	}

	var csrs []*outpostv1.Csr
	// Names of one length (a domain each, to serve the certificates): the
	// last PEM line of an EC key encodes public bytes, which a name of
	// another length can align with the request's or certificate's base64.
	for i, kt := range []outpostv1.KeyType{outpostv1.KeyType_KEY_TYPE_EC_P256, outpostv1.KeyType_KEY_TYPE_RSA_2048} {
		resp, err := c.Certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{CommonName: fmt.Sprintf("ww%d.example.com", i), KeyType: kt})
		record(resp, err)
		if err != nil {
			t.Fatal(err)
		}
		csrs = append(csrs, resp.GetCsr())
	}
	for _, cl := range []*controllertest.Clients{c, ro} {
		record(cl.Certs.ListCsrs(ctx, &outpostv1.ListCsrsRequest{}))
		record(cl.Certs.GetCsr(ctx, &outpostv1.GetCsrRequest{Id: csrs[0].GetId()}))
	}
	// Refusals: another key, an expired chain.
	wrong := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}, Issuer: ca})
	record(c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: csrs[0].GetId(), CertificatePem: string(wrong.ChainPEM)}))
	_, expired := ca.SignCSR(t, csrs[0].GetCsrPem(), certstest.SignOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	record(c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: csrs[0].GetId(), CertificatePem: string(expired)}))
	var certIDs []string
	for _, csr := range csrs {
		_, chain := ca.SignCSR(t, csr.GetCsrPem(), certstest.SignOptions{})
		done, err := c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: csr.GetId(), CertificatePem: string(chain)})
		record(done, err)
		if err != nil {
			t.Fatal(err)
		}
		certIDs = append(certIDs, done.GetCertificate().GetId())
		record(c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: csr.GetId(), CertificatePem: string(chain)}))
	}
	for _, cl := range []*controllertest.Clients{c, ro} {
		record(cl.Certs.ListCsrs(ctx, &outpostv1.ListCsrsRequest{}))
		record(cl.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{}))
		for i := range csrs {
			record(cl.Certs.GetCsr(ctx, &outpostv1.GetCsrRequest{Id: csrs[i].GetId()}))
			record(cl.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: certIDs[i]}))
		}
	}

	// The keys, from the config stream (which carries served certificates).
	serveAll(t, c, certIDs...)
	node := connectNode(t, env, "edge-1", "east", 0)
	var material [][]byte
	bundles := node.bundles(certIDs...)
	for i, id := range certIDs {
		b := bundles[id]
		// It is the CSR's key.
		pair, err := tls.X509KeyPair([]byte(b.GetCertificatePem()), []byte(b.GetPrivateKeyPem()))
		if err != nil {
			t.Fatalf("certificate %s: %v", id, err)
		}
		if !pair.PrivateKey.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csrPublicKey(t, csrs[i])) {
			t.Fatalf("certificate %s: the key on the stream is not the CSR's", id)
		}
		material = append(material, keyMaterial(t, b.GetPrivateKeyPem())...)
	}
	scan := func(where string, data []byte) {
		t.Helper()
		for i, m := range material {
			if bytes.Contains(data, m) {
				// Which piece, not the piece: a failure must not print a key.
				t.Fatalf("%s contains private key material (piece %d of %d, %d bytes)", where, i+1, len(material), len(m))
			}
		}
	}
	for _, m := range responses {
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		scan("a response", b)
		raw, _ := proto.Marshal(m)
		scan("a binary response", raw)
	}
	scan("the controller log", []byte(env.Logs.String()))
	kvs, _, err := env.Controller.Store().Range(context.Background(), store.Prefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		scan("etcd "+kv.Key, kv.Value)
		for _, field := range strings.FieldsFunc(string(kv.Value), func(r rune) bool { return r == '"' }) {
			if dec, err := base64.StdEncoding.DecodeString(field); err == nil && len(dec) > 16 {
				scan("decoded etcd "+kv.Key, dec)
			}
		}
	}
}
