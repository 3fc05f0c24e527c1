package controller_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/internal/seal"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// kek returns the text of a keyring of one new key named id.
func kek(t *testing.T, id string) string {
	t.Helper()
	text, err := seal.GenerateKeyring(id)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// usage renders a keyring status as "id=secrets" ("?" after an unknown
// KEK), primary first as the response orders them.
func usage(t *testing.T, c *controllertest.Clients) string {
	t.Helper()
	resp, err := c.Keyring.GetKeyringStatus(ctxT(t), &outpostv1.GetKeyringStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, u := range resp.GetUsage() {
		p := fmt.Sprintf("%s=%d", u.GetKekId(), u.GetSecrets())
		if !u.GetKnown() {
			p += "?"
		}
		parts = append(parts, p)
	}
	return resp.GetPrimaryKekId() + ": " + strings.Join(parts, " ")
}

// ciphertexts maps every sealed secret's etcd key to its ciphertext.
func ciphertexts(t *testing.T, env *controllertest.Env) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	ctx := ctxT(t)
	for _, prefix := range []string{store.CertsPrefix(), store.CsrsPrefix()} {
		kvs, _, err := env.Controller.Store().Range(ctx, prefix, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range kvs {
			var key *storagev1.SealedSecret
			if prefix == store.CertsPrefix() {
				sc := &storagev1.StoredCertificate{}
				if err := store.Decode(kv, sc); err != nil {
					t.Fatal(err)
				}
				key = sc.GetPrivateKey()
			} else {
				sc := &storagev1.StoredCsr{}
				if err := store.Decode(kv, sc); err != nil {
					t.Fatal(err)
				}
				key = sc.GetPrivateKey()
			}
			if key != nil {
				out[kv.Key] = key.GetCiphertext()
			}
		}
	}
	gk := &storagev1.StoredGossipKeyring{}
	if _, found, err := env.Controller.Store().Get(ctx, store.GossipKeyringKey(), gk); err != nil {
		t.Fatal(err)
	} else if found {
		out[store.GossipKeyringKey()] = gk.GetKeys().GetCiphertext()
	}
	ca := &storagev1.ClusterCa{}
	if _, found, err := env.Controller.Store().Get(ctx, store.ClusterCAKey(), ca); err != nil {
		t.Fatal(err)
	} else if found {
		out[store.ClusterCAKey()] = ca.GetPrivateKey().GetCiphertext()
	}
	return out
}

// wantServable checks that a fresh node's snapshot carries every listed
// certificate with a key that matches it, and the gossip keyring.
func wantServable(t *testing.T, env *controllertest.Env, c *controllertest.Clients, ids []string, gossip [][]byte) {
	t.Helper()
	serveAll(t, c, ids...)
	node := connectNode(t, env, fmt.Sprintf("edge-%d", time.Now().UnixNano()), "east", 0)
	snap := node.until("a snapshot", func(m *outpostv1.StreamConfigResponse) bool { return m.GetSnapshot() })
	got := map[string]*outpostv1.CertificateBundle{}
	for _, b := range snap.GetCertificates() {
		got[b.GetId()] = b
	}
	for _, id := range ids {
		b := got[id]
		if b == nil {
			t.Fatalf("the snapshot lacks certificate %s (%d certificates)", id, len(got))
		}
		if _, err := tls.X509KeyPair([]byte(b.GetCertificatePem()), []byte(b.GetPrivateKeyPem())); err != nil {
			t.Fatalf("certificate %s: its key does not load with it: %v", id, err)
		}
	}
	if keys := snap.GetGossipKeyring().GetKeys(); len(keys) != len(gossip) || len(keys) > 0 && !bytes.Equal(keys[0], gossip[0]) {
		t.Fatalf("the snapshot's gossip keyring has %d keys, want %d", len(keys), len(gossip))
	}
}

// serveAll makes a domain serve each certificate (one named after the
// certificate's first name, created when missing): the config stream
// carries only certificates that some domain serves.
func serveAll(t *testing.T, c *controllertest.Clients, ids ...string) {
	t.Helper()
	ctx := ctxT(t)
	for _, id := range ids {
		g, err := c.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		name := g.GetCertificate().GetDnsNames()[0]
		d, err := c.Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: name})
		if status.Code(err) == codes.NotFound {
			_, err = c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: name, Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}})
		}
		if err != nil {
			t.Fatal(err)
		}
		if d.GetDomain().GetHttps().GetCertificateId() == id {
			continue
		}
		if _, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: name, Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: id}}); err != nil {
			t.Fatalf("serve %s on %s: %v", id, name, err)
		}
	}
}

// TestKeyRotation is the operator's rotation: secrets sealed under K1;
// restart with K2 as primary and K1 kept; RewrapSecrets moves every secret
// (certificate keys, inline and uploaded, a CSR's, the gossip keyring) to
// K2 without touching a ciphertext; restart with K2 alone and everything
// still opens.
func TestKeyRotation(t *testing.T) {
	k1, k2 := kek(t, "k1"), kek(t, "k2")
	env := controllertest.Start(t, func(c *controller.Config) { c.KeyringText = k1 })
	admin, _ := env.NewAccount(t, "acme")
	c, op := env.Clients(t, admin), env.Clients(t, env.OperatorToken)
	ctx := ctxT(t)
	ca := certstest.NewCA(t, "rotation CA")

	var ids []string
	for _, n := range []string{"a.example.com", "b.example.com"} {
		p := issue(t, n)
		up, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, up.GetCertificate().GetId())
	}
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "c.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	inline := issue(t, "c.example.com")
	en, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "c.example.com", Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(inline.CertPEM), PrivateKeyPem: string(inline.KeyPEM)}}})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, en.GetHttps().GetCertificateId())
	completed, err := c.Certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{CommonName: "d.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	_, chain := ca.SignCSR(t, completed.GetCsr().GetCsrPem(), certstest.SignOptions{})
	done, err := c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: completed.GetCsr().GetId(), CertificatePem: string(chain)})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, done.GetCertificate().GetId())
	pending, err := c.Certs.CreateCsr(ctx, &outpostv1.CreateCsrRequest{CommonName: "e.example.com", KeyType: outpostv1.KeyType_KEY_TYPE_RSA_2048})
	if err != nil {
		t.Fatal(err)
	}
	gossip := [][]byte{gossipKey(t, 32)}
	if _, err := op.Nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: gossip}); err != nil {
		t.Fatal(err)
	}
	// 4 certificates, 1 pending CSR, the gossip keyring, the cluster CA.
	const secrets = 7
	if got := usage(t, op); got != "k1: k1=7" {
		t.Fatalf("status under K1: %s", got)
	}
	_, err = c.Keyring.GetKeyringStatus(ctx, &outpostv1.GetKeyringStatusRequest{})
	wantErr(t, err, codes.PermissionDenied, apierr.ReasonOperatorOnly)
	_, err = c.Keyring.RewrapSecrets(ctx, &outpostv1.RewrapSecretsRequest{})
	wantErr(t, err, codes.PermissionDenied, apierr.ReasonOperatorOnly)
	before := ciphertexts(t, env)
	if len(before) != secrets {
		t.Fatalf("%d sealed secrets in etcd, want %d", len(before), secrets)
	}

	// Step 1: K2 is the primary, K1 still held. Nothing moved yet.
	env.RestartWith(t, func(cfg *controller.Config) { cfg.KeyringText = k2 + k1; cfg.RewrapInterval = -1 })
	op = env.Clients(t, env.OperatorToken)
	if got := usage(t, op); got != "k2: k2=0 k1=7" {
		t.Fatalf("status after adding K2: %s", got)
	}
	// Step 2: re-wrap.
	rw, err := op.Keyring.RewrapSecrets(ctx, &outpostv1.RewrapSecretsRequest{})
	if err != nil || rw.GetRewrapped() != secrets || rw.GetAlreadyCurrent() != 0 || len(rw.GetFailedKeys()) != 0 {
		t.Fatalf("rewrap: %v, %v", rw, err)
	}
	if got := usage(t, op); got != "k2: k2=7 k1=0" {
		t.Fatalf("status after re-wrapping: %s", got)
	}
	after := ciphertexts(t, env)
	for k, ct := range before {
		if !bytes.Equal(after[k], ct) {
			t.Fatalf("re-wrapping changed the ciphertext of %s", k)
		}
	}
	rw, err = op.Keyring.RewrapSecrets(ctx, &outpostv1.RewrapSecretsRequest{})
	if err != nil || rw.GetRewrapped() != 0 || rw.GetAlreadyCurrent() != secrets {
		t.Fatalf("second rewrap: %v, %v", rw, err)
	}

	// Step 3: K1 is gone. Every certificate still reaches the nodes with
	// its key; the pending CSR still completes.
	env.RestartWith(t, func(cfg *controller.Config) { cfg.KeyringText = k2 })
	op, c = env.Clients(t, env.OperatorToken), env.Clients(t, admin)
	if got := usage(t, op); got != "k2: k2=7" {
		t.Fatalf("status with K2 alone: %s", got)
	}
	_, chain = ca.SignCSR(t, pending.GetCsr().GetCsrPem(), certstest.SignOptions{})
	done, err = c.Certs.CompleteCsr(ctx, &outpostv1.CompleteCsrRequest{Id: pending.GetCsr().GetId(), CertificatePem: string(chain)})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, done.GetCertificate().GetId())
	wantServable(t, env, c, ids, gossip)
	if strings.Contains(env.Logs.String(), "cannot unseal") {
		t.Fatalf("a controller could not unseal a key:\n%s", env.Logs.String())
	}

	// A keyring without the KEK in use: the controller cannot open the
	// cluster CA's key, so it refuses to start, and says why.
	env.Controller.Close()
	cfg := env.Config()
	cfg.KeyringText = kek(t, "k3") + k1
	if c, err := controller.Start(ctx, cfg); err == nil {
		c.Close()
		t.Fatal("a controller started with a keyring lacking the cluster CA's KEK")
	} else if !strings.Contains(err.Error(), "cluster CA") || !strings.Contains(err.Error(), `"k2"`) {
		t.Fatalf("start without K2: %v", err)
	}
}

// TestRewrapKeepsConcurrentEdits: a certificate deleted and a gossip
// keyring set between a re-wrap's read and its write stay deleted and set:
// the guarded write fails, and the re-wrap reads the records again.
func TestRewrapKeepsConcurrentEdits(t *testing.T) {
	k1, k2 := kek(t, "k1"), kek(t, "k2")
	env := controllertest.Start(t, func(c *controller.Config) { c.KeyringText = k1 })
	admin, _ := env.NewAccount(t, "acme")
	c, op := env.Clients(t, admin), env.Clients(t, env.OperatorToken)
	ctx := ctxT(t)
	var ids []string
	for _, n := range []string{"a.example.com", "b.example.com", "c.example.com"} {
		p := issue(t, n)
		up, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, up.GetCertificate().GetId())
	}
	if _, err := op.Nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: [][]byte{gossipKey(t, 32)}}); err != nil {
		t.Fatal(err)
	}

	env.RestartWith(t, func(cfg *controller.Config) { cfg.KeyringText = k2 + k1; cfg.RewrapInterval = -1 })
	c, op = env.Clients(t, admin), env.Clients(t, env.OperatorToken)
	deleted, edited := ids[1], [][]byte{gossipKey(t, 32), gossipKey(t, 16)}
	var once sync.Map
	controller.SetRewrapHook(env.Controller, func(keys []string) {
		for _, k := range keys {
			if _, again := once.LoadOrStore(k, true); again {
				continue
			}
			switch k {
			case store.CertKey(deleted):
				if _, err := c.Certs.DeleteCertificate(ctx, &outpostv1.DeleteCertificateRequest{Id: deleted}); err != nil {
					t.Errorf("delete during the re-wrap: %v", err)
				}
			case store.GossipKeyringKey():
				if _, err := op.Nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: edited}); err != nil {
					t.Errorf("set the gossip keyring during the re-wrap: %v", err)
				}
			}
		}
	})
	t.Cleanup(func() { controller.SetRewrapHook(env.Controller, nil) })
	rw, err := op.Keyring.RewrapSecrets(ctx, &outpostv1.RewrapSecretsRequest{})
	// The two other certificates are re-wrapped; the edited keyring was
	// sealed under K2 by its edit.
	if err != nil || rw.GetRewrapped() != 3 || rw.GetAlreadyCurrent() != 1 || len(rw.GetFailedKeys()) != 0 {
		t.Fatalf("rewrap: %v, %v", rw, err)
	}
	controller.SetRewrapHook(env.Controller, nil)
	_, err = c.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: deleted})
	wantErr(t, err, codes.NotFound, apierr.ReasonCertificateNotFound)
	if got := usage(t, op); got != "k2: k2=4 k1=0" {
		t.Fatalf("status: %s", got)
	}
	env.RestartWith(t, func(cfg *controller.Config) { cfg.KeyringText = k2 })
	wantServable(t, env, env.Clients(t, admin), []string{ids[0], ids[2]}, edited)
}

// TestBackgroundRewrap: controllers re-wrap by themselves at start, and
// two controllers re-wrapping at once re-wrap each secret exactly once.
func TestBackgroundRewrap(t *testing.T) {
	k1, k2 := kek(t, "k1"), kek(t, "k2")
	env := controllertest.Start(t, func(c *controller.Config) { c.KeyringText = k1; c.DefaultDomainQuota = 1000 })
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	const n = 70 // more than one page of a scan
	var ids []string
	for i := range n {
		p := issue(t, fmt.Sprintf("n%d.example.com", i))
		up, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, up.GetCertificate().GetId())
	}

	// Two controllers with K2 primary and no background job race two
	// RewrapSecrets: every secret moves once, none is lost.
	env.RestartWith(t, func(cfg *controller.Config) { cfg.KeyringText = k2 + k1; cfg.RewrapInterval = -1 })
	peer := env.StartPeer(t)
	var wg sync.WaitGroup
	results := make([]*outpostv1.RewrapSecretsResponse, 2)
	for i, e := range []*controllertest.Env{env, peer} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rw, err := e.Clients(t, e.OperatorToken).Keyring.RewrapSecrets(ctx, &outpostv1.RewrapSecretsRequest{})
			if err != nil {
				t.Errorf("rewrap on controller %d: %v", i, err)
			}
			results[i] = rw
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if sum := results[0].GetRewrapped() + results[1].GetRewrapped(); sum != n+1 || len(results[0].GetFailedKeys())+len(results[1].GetFailedKeys()) != 0 {
		t.Fatalf("two racing re-wraps re-wrapped %d secrets in all, want %d: %v / %v", sum, n+1, results[0], results[1])
	}
	if got := usage(t, env.Clients(t, env.OperatorToken)); got != fmt.Sprintf("k2: k2=%d k1=0", n+1) {
		t.Fatalf("status: %s", got)
	}
	peer.Controller.Close()

	// The background job: K3 becomes primary, and the controller moves
	// every secret to it at start, unasked.
	k3 := kek(t, "k3")
	env.RestartWith(t, func(cfg *controller.Config) { cfg.KeyringText = k3 + k2; cfg.RewrapInterval = 0 })
	op := env.Clients(t, env.OperatorToken)
	want := fmt.Sprintf("k3: k3=%d k2=0", n+1)
	deadline := time.Now().Add(20 * time.Second)
	for got := usage(t, op); got != want; got = usage(t, op) {
		if time.Now().After(deadline) {
			t.Fatalf("the background re-wrap did not finish in 20s: %s", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(env.Logs.String(), "background re-wrap of sealed secrets") {
		t.Fatal("the background re-wrap was not logged")
	}
	env.RestartWith(t, func(cfg *controller.Config) { cfg.KeyringText = k3 })
	wantServable(t, env, env.Clients(t, admin), ids, nil)
}
