package controller_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/internal/clusterpki"
	"github.com/outpost-cdn/outpost/internal/grpcauth"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// csrFor returns a PEM CSR for name, signed by key.
func csrFor(t *testing.T, name string, key any) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// joinClient is an unauthenticated PkiService client over TLS that trusts
// the cluster CA, as a joining member's is.
func joinClient(t *testing.T, env *controllertest.Env) outpostv1.PkiServiceClient {
	return env.Clients(t, "").PKI
}

func TestJoinTokenWorksOnce(t *testing.T) {
	env := controllertest.Start(t)
	ctx := ctxT(t)
	tok := env.NewJoinToken(t, "edge-1", outpostv1.MemberRole_MEMBER_ROLE_NODE)
	pki := joinClient(t, env)

	// Two joins race for the token: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	resps := make([]*outpostv1.JoinResponse, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps[i], errs[i] = pki.Join(ctx, &outpostv1.JoinRequest{Token: tok, CsrPem: csrFor(t, "edge-1", p256(t))})
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		if err == nil {
			won++
			b, _ := pem.Decode([]byte(resps[i].GetCertificatePem()))
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != "edge-1" || clusterpki.CertRole(cert) != outpostv1.MemberRole_MEMBER_ROLE_NODE {
				t.Fatalf("issued %v", cert.Subject)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM([]byte(env.CAPEM()))
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("the member certificate does not chain to the cluster CA: %v", err)
			}
			continue
		}
		wantErr(t, err, codes.Unauthenticated, apierr.ReasonInvalidJoinToken)
	}
	if won != 1 {
		t.Fatalf("%d joins won with one token", won)
	}
	// A third use is refused too; the token is gone from etcd.
	_, err := pki.Join(ctx, &outpostv1.JoinRequest{Token: tok, CsrPem: csrFor(t, "edge-1", p256(t))})
	wantErr(t, err, codes.Unauthenticated, apierr.ReasonInvalidJoinToken)
	if n, err := env.Controller.Store().Count(ctx, store.JoinTokensPrefix()); err != nil || n != 0 {
		t.Fatalf("join tokens left: %d %v", n, err)
	}
	list, err := env.Clients(t, env.OperatorToken).PKI.ListMemberCertificates(ctx, &outpostv1.ListMemberCertificatesRequest{})
	if err != nil || len(list.GetCertificates()) != 1 || list.GetCertificates()[0].GetName() != "edge-1" || !strings.HasPrefix(list.GetCertificates()[0].GetIssuedFor(), "join-") {
		t.Fatalf("member certificates: %v %v", list, err)
	}
}

func TestJoinRefusals(t *testing.T) {
	env := controllertest.Start(t)
	ctx := ctxT(t)
	op := env.Clients(t, env.OperatorToken).PKI
	pki := joinClient(t, env)

	// An expired token.
	short, err := op.CreateJoinToken(ctx, &outpostv1.CreateJoinTokenRequest{Ttl: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	_, err = pki.Join(ctx, &outpostv1.JoinRequest{Token: short.GetToken(), CsrPem: csrFor(t, "edge-1", p256(t))})
	wantErr(t, err, codes.Unauthenticated, apierr.ReasonInvalidJoinToken)

	// Made-up and malformed tokens.
	for _, tok := range []string{"", "opt_whatever", clusterpki.FormatJoinToken(make([]byte, 32), "opt_guess")} {
		_, err = pki.Join(ctx, &outpostv1.JoinRequest{Token: tok, CsrPem: csrFor(t, "edge-1", p256(t))})
		wantErr(t, err, codes.Unauthenticated, apierr.ReasonInvalidJoinToken)
	}

	tok := env.NewJoinToken(t, "edge-1", outpostv1.MemberRole_MEMBER_ROLE_NODE)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	bad := []byte(csrFor(t, "edge-1", p256(t)))
	blk, _ := pem.Decode(bad)
	blk.Bytes[len(blk.Bytes)-5] ^= 0xff // break the signature
	for _, tt := range []struct {
		name, csr string
		code      codes.Code
		reason    string
	}{
		{"rsa key", csrFor(t, "edge-1", rsaKey), codes.InvalidArgument, apierr.ReasonUnsupportedKeyType},
		{"bad signature", string(pem.EncodeToMemory(blk)), codes.InvalidArgument, apierr.ReasonInvalidCsr},
		{"not pem", "hello", codes.InvalidArgument, apierr.ReasonInvalidCsr},
		{"bad name", csrFor(t, "edge 1/../x", p256(t)), codes.InvalidArgument, apierr.ReasonInvalidCsrSubject},
		{"other name", csrFor(t, "edge-2", p256(t)), codes.PermissionDenied, apierr.ReasonMemberNameMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pki.Join(ctx, &outpostv1.JoinRequest{Token: tok, CsrPem: tt.csr})
			wantErr(t, err, tt.code, tt.reason)
		})
	}
	// None of the refusals consumed the token.
	if _, err := pki.Join(ctx, &outpostv1.JoinRequest{Token: tok, CsrPem: csrFor(t, "edge-1", p256(t))}); err != nil {
		t.Fatalf("join after refusals: %v", err)
	}

	// Join tokens are for operators; node bearer tokens are gone.
	admin, _ := env.NewAccount(t, "acme")
	_, err = env.Clients(t, admin).PKI.CreateJoinToken(ctx, &outpostv1.CreateJoinTokenRequest{})
	wantErr(t, err, codes.PermissionDenied, apierr.ReasonOperatorOnly)
	_, err = op.CreateJoinToken(ctx, &outpostv1.CreateJoinTokenRequest{Ttl: durationpb.New(30 * 24 * time.Hour)})
	wantErr(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
}

// memberConn dials env with a client certificate.
func memberConn(t *testing.T, env *controllertest.Env, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := env.TLSConfig()
	if cert != nil {
		// Sent whatever CAs the server names as acceptable.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// streamErr opens the config stream on conn, subscribes as name and
// returns the error the stream ends with (nil if a snapshot arrives).
func streamErr(t *testing.T, conn *grpc.ClientConn, name string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := outpostv1.NewConfigDiscoveryServiceClient(conn).StreamConfig(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Subscribe{Subscribe: &outpostv1.Subscribe{Node: &outpostv1.NodeInfo{Name: name}}}}); err != nil && err != io.EOF {
		return err
	}
	_, err = stream.Recv()
	return err
}

func TestStreamNeedsAValidMemberCertificate(t *testing.T) {
	env := controllertest.Start(t)
	ctx := ctxT(t)
	op := env.Clients(t, env.OperatorToken)

	// A member certificate opens the stream, for its own name only.
	id := env.Join(t, "edge-1", outpostv1.MemberRole_MEMBER_ROLE_NODE)
	good, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(id.Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := streamErr(t, good, "edge-1"); err != nil {
		t.Fatalf("a member's stream: %v", err)
	}
	wantErr(t, streamErr(t, good, "edge-2"), codes.PermissionDenied, apierr.ReasonMemberNameMismatch)

	// No client certificate, even with an operator token.
	wantErr(t, streamErr(t, env.Dial(t, env.OperatorToken), "edge-1"), codes.Unauthenticated, apierr.ReasonMemberCertificateRequired)
	wantErr(t, streamErr(t, env.Dial(t, ""), "edge-1"), codes.Unauthenticated, apierr.ReasonMemberCertificateRequired)

	// A certificate from another CA, sent anyway: the handshake fails.
	other := certstest.NewCA(t, "another CA")
	foreign := certstest.Issue(t, certstest.Options{DNSNames: []string{"edge-1"}, Issuer: other}).TLSCertificate(t)
	if err := streamErr(t, memberConn(t, env, &foreign), "edge-1"); status.Code(err) != codes.Unavailable {
		t.Fatalf("a certificate from another CA: %v", err)
	}

	// Plaintext: no.
	plain, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := streamErr(t, plain, "edge-1"); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext: %v", err)
	}

	// Revoked: refused, and it cannot renew.
	if r, err := op.PKI.RevokeMember(ctx, &outpostv1.RevokeMemberRequest{Name: "edge-1"}); err != nil || r.GetRevoked() != 1 {
		t.Fatalf("revoke: %v %v", r, err)
	}
	wantErr(t, streamErr(t, good, "edge-1"), codes.Unauthenticated, apierr.ReasonMemberCertificateRevoked)
	_, err = outpostv1.NewPkiServiceClient(good).RenewMemberCertificate(ctx, &outpostv1.RenewMemberCertificateRequest{CsrPem: csrFor(t, "edge-1", p256(t))})
	wantErr(t, err, codes.Unauthenticated, apierr.ReasonMemberCertificateRevoked)
	list, err := op.PKI.ListMemberCertificates(ctx, &outpostv1.ListMemberCertificatesRequest{Name: "edge-1"})
	if err != nil || len(list.GetCertificates()) != 1 || list.GetCertificates()[0].GetRevokeTime() == nil {
		t.Fatalf("list after revoke: %v %v", list, err)
	}
	// A new join token brings it back.
	again := env.DialMember(t, "edge-1", outpostv1.MemberRole_MEMBER_ROLE_NODE)
	if err := streamErr(t, again, "edge-1"); err != nil {
		t.Fatalf("after a new join: %v", err)
	}
}

func TestRevokedMemberStreamIsCut(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) { c.TokenRecheck = 50 * time.Millisecond })
	ctx := ctxT(t)
	node := connectNode(t, env, "edge-1", "east", 0)
	node.next() // the snapshot
	start := time.Now()
	if _, err := env.Clients(t, env.OperatorToken).PKI.RevokeMember(ctx, &outpostv1.RevokeMemberRequest{Name: "edge-1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-node.errs:
		wantErr(t, err, codes.Unauthenticated, apierr.ReasonMemberCertificateRevoked)
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked member's stream is still open after 5s")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cut after %s", d)
	}
}

func TestRenewMemberCertificate(t *testing.T) {
	env := controllertest.Start(t)
	ctx := ctxT(t)
	conn := env.DialMember(t, "sched-1", outpostv1.MemberRole_MEMBER_ROLE_SCHEDULER)
	pki := outpostv1.NewPkiServiceClient(conn)
	_, err := pki.RenewMemberCertificate(ctx, &outpostv1.RenewMemberCertificateRequest{CsrPem: csrFor(t, "sched-2", p256(t))})
	wantErr(t, err, codes.PermissionDenied, apierr.ReasonMemberNameMismatch)
	resp, err := pki.RenewMemberCertificate(ctx, &outpostv1.RenewMemberCertificateRequest{CsrPem: csrFor(t, "sched-1", p256(t))})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(resp.GetCertificatePem()))
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "sched-1" || clusterpki.CertRole(cert) != outpostv1.MemberRole_MEMBER_ROLE_SCHEDULER {
		t.Fatalf("renewed %v", cert.Subject)
	}
	// An operator token cannot renew: renewal needs the member certificate.
	_, err = env.Clients(t, env.OperatorToken).PKI.RenewMemberCertificate(ctx, &outpostv1.RenewMemberCertificateRequest{CsrPem: csrFor(t, "sched-1", p256(t))})
	wantErr(t, err, codes.Unauthenticated, apierr.ReasonMemberCertificateRequired)
}

func TestAdminAPIOverTLS(t *testing.T) {
	env := controllertest.Start(t)
	ctx := ctxT(t)
	// Trusting the cluster CA: works.
	if _, err := env.Clients(t, env.OperatorToken).Accounts.WhoAmI(ctx, &outpostv1.WhoAmIRequest{}); err != nil {
		t.Fatal(err)
	}
	// The public CA certificate, with its pin, needs no token.
	ca, err := env.Clients(t, "").PKI.GetCaCertificate(ctx, &outpostv1.GetCaCertificateRequest{})
	if err != nil || ca.GetCaCertificatePem() != env.CAPEM() || !strings.HasPrefix(ca.GetCaPin(), "sha256:") {
		t.Fatalf("GetCaCertificate: %v %v", ca, err)
	}
	// Not trusting it (system roots), or plaintext: refused before any token is sent.
	sys, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if _, err := outpostv1.NewAccountServiceClient(sys).WhoAmI(ctx, &outpostv1.WhoAmIRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("without trusting the CA: %v", err)
	}
	plain, err := grpc.NewClient(env.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := outpostv1.NewAccountServiceClient(plain).WhoAmI(ctx, &outpostv1.WhoAmIRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext: %v", err)
	}
	// A peer on the same etcd has the same CA, and a member joined on one
	// is accepted by the other.
	peer := env.StartPeer(t)
	if peer.CAPEM() != env.CAPEM() {
		t.Fatal("two controllers on one etcd have different CAs")
	}
	id := env.Join(t, "edge-1", outpostv1.MemberRole_MEMBER_ROLE_NODE)
	conn, err := grpc.NewClient(peer.Addr, grpc.WithTransportCredentials(id.Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := streamErr(t, conn, "edge-1"); err != nil {
		t.Fatalf("the member on the peer: %v", err)
	}
}

func TestServingCertificateFromFiles(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "operator CA")
	pair := certstest.Issue(t, certstest.Options{DNSNames: []string{"localhost"}, Issuer: ca})
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(certFile, pair.ChainPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pair.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	caOut := filepath.Join(dir, "cluster-ca.pem")
	env := controllertest.Start(t, func(c *controller.Config) {
		c.TLSCertFile, c.TLSKeyFile, c.CACertOut = certFile, keyFile, caOut
	})
	ctx := ctxT(t)
	_, port, _ := net.SplitHostPort(env.Addr)
	byName := net.JoinHostPort("localhost", port)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	conn, err := grpc.NewClient(byName, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := outpostv1.NewPkiServiceClient(conn).GetCaCertificate(ctx, &outpostv1.GetCaCertificateRequest{}); err != nil {
		t.Fatalf("with the operator's certificate: %v", err)
	}
	if b, err := os.ReadFile(caOut); err != nil || string(b) != env.CAPEM() {
		t.Fatalf("-ca-cert-out: %v", err)
	}
	// A member joins trusting the operator's CA (-ca-file), then streams.
	caFile := filepath.Join(dir, "operator-ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := outpostv1.NewPkiServiceClient(conn).CreateJoinToken(ctx, &outpostv1.CreateJoinTokenRequest{}, grpc.PerRPCCredentials(grpcauth.Bearer{Token: env.OperatorToken}))
	if err != nil {
		t.Fatal(err)
	}
	id, err := clusterpki.NewIdentity(clusterpki.MemberConfig{Name: "edge-1", Role: outpostv1.MemberRole_MEMBER_ROLE_NODE,
		Controllers: []string{byName}, JoinToken: tok.GetToken(), CAFile: caFile, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	mc, err := grpc.NewClient(byName, grpc.WithTransportCredentials(id.Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if err := streamErr(t, mc, "edge-1"); err != nil {
		t.Fatalf("member with -ca-file: %v", err)
	}
}

// TestJoinChecksThePin: a member whose token carries another CA's pin
// refuses the controller before sending anything.
func TestJoinChecksThePin(t *testing.T) {
	env := controllertest.Start(t)
	ctx := ctxT(t)
	_, secret, err := clusterpki.ParseJoinToken(env.JoinToken(t))
	if err != nil {
		t.Fatal(err)
	}
	wrong := clusterpki.FormatJoinToken(bytes.Repeat([]byte{7}, 32), secret)
	id, err := clusterpki.NewIdentity(clusterpki.MemberConfig{Name: "edge-1", Role: outpostv1.MemberRole_MEMBER_ROLE_NODE,
		Controllers: []string{env.Addr}, JoinToken: wrong, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Ensure(ctx); err == nil || !strings.Contains(err.Error(), "pin") {
		t.Fatalf("join with a wrong pin: %v", err)
	}
	// The token was not used up: the right pin still joins.
	right, err := clusterpki.NewIdentity(clusterpki.MemberConfig{Name: "edge-1", Role: outpostv1.MemberRole_MEMBER_ROLE_NODE,
		Controllers: []string{env.Addr}, JoinToken: clusterpki.FormatJoinToken(pinOf(t, env), secret), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := right.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
}

func pinOf(t *testing.T, env *controllertest.Env) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(env.CAPEM()))
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return clusterpki.PinBytes(c)
}

// TestPKIKeysNeverLeave: the CA key is sealed in etcd, and neither it nor
// a member's key appears in any PKI response, the log or etcd.
func TestPKIKeysNeverLeave(t *testing.T) {
	env := controllertest.Start(t)
	ctx := ctxT(t)
	op := env.Clients(t, env.OperatorToken).PKI
	var responses []proto.Message
	record := func(m proto.Message, err error) {
		t.Helper()
		if err != nil {
			responses = append(responses, &outpostv1.Nack{Error: err.Error()})
			return
		}
		responses = append(responses, m)
	}
	dir := t.TempDir()
	id, err := clusterpki.NewIdentity(clusterpki.MemberConfig{Name: "edge-1", Role: outpostv1.MemberRole_MEMBER_ROLE_NODE,
		Controllers: []string{env.Addr}, JoinToken: env.JoinToken(t), Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	record(op.GetCaCertificate(ctx, &outpostv1.GetCaCertificateRequest{}))
	record(op.CreateJoinToken(ctx, &outpostv1.CreateJoinTokenRequest{Name: "edge-2"}))
	record(op.ListMemberCertificates(ctx, &outpostv1.ListMemberCertificatesRequest{}))
	record(op.RevokeMember(ctx, &outpostv1.RevokeMemberRequest{Name: "nobody"}))
	memberPKI := outpostv1.NewPkiServiceClient(env.DialMember(t, "edge-3", outpostv1.MemberRole_MEMBER_ROLE_NODE))
	record(memberPKI.RenewMemberCertificate(ctx, &outpostv1.RenewMemberCertificateRequest{CsrPem: csrFor(t, "edge-3", p256(t))}))
	record(memberPKI.RenewMemberCertificate(ctx, &outpostv1.RenewMemberCertificateRequest{CsrPem: "junk"}))

	memberKey, err := os.ReadFile(filepath.Join(dir, clusterpki.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, clusterpki.KeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("the member key has mode %v", st.Mode().Perm())
	}
	var material [][]byte
	material = append(material, keyMaterial(t, controller.CAKeyPEM(env.Controller))...)
	material = append(material, keyMaterial(t, string(memberKey))...)
	scan := func(where string, data []byte) {
		t.Helper()
		for _, m := range material {
			if bytes.Contains(data, m) {
				t.Fatalf("%s contains private key material", where)
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
	// The CA record holds a sealed key.
	var rec storagev1.ClusterCa
	if _, found, err := env.Controller.Store().Get(ctx, store.ClusterCAKey(), &rec); err != nil || !found {
		t.Fatalf("CA record: %v %v", found, err)
	}
	if rec.GetPrivateKey().GetKekId() == "" || len(rec.GetPrivateKey().GetCiphertext()) == 0 {
		t.Fatalf("the CA key is not sealed: %v", rec.GetPrivateKey())
	}
}

// TestSchedulersGetNoPrivateKeys: a scheduler routes by domain and never
// terminates TLS, so its config stream carries no certificate (no private
// key) even when an edge node's does, in the snapshot and in changes.
func TestSchedulersGetNoPrivateKeys(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	enable := func(name string) {
		t.Helper()
		p := issue(t, name)
		if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: name, Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: name, Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
			CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)}}}); err != nil {
			t.Fatal(err)
		}
	}
	enable("www.example.com")
	env.SyncConfig(t)
	open := func(name string, role outpostv1.MemberRole) outpostv1.ConfigDiscoveryService_StreamConfigClient {
		t.Helper()
		stream, err := outpostv1.NewConfigDiscoveryServiceClient(env.DialMember(t, name, role)).StreamConfig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_Subscribe{Subscribe: &outpostv1.Subscribe{Node: &outpostv1.NodeInfo{Name: name}}}}); err != nil {
			t.Fatal(err)
		}
		return stream
	}
	// recvDomain reads until a message brings domain name with HTTPS on
	// and returns the certificates seen on the way.
	recvDomain := func(stream outpostv1.ConfigDiscoveryService_StreamConfigClient, name string) (certs int) {
		t.Helper()
		for {
			m, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			certs += len(m.GetCertificates())
			for _, d := range m.GetDomains() {
				if d.GetName() == name && d.GetHttps().GetCertificateId() != "" {
					return certs
				}
			}
		}
	}
	edge, sched := open("edge-1", outpostv1.MemberRole_MEMBER_ROLE_NODE), open("sched-1", outpostv1.MemberRole_MEMBER_ROLE_SCHEDULER)
	if n := recvDomain(edge, "www.example.com"); n == 0 {
		t.Fatal("the edge node's snapshot has no certificate")
	}
	if n := recvDomain(sched, "www.example.com"); n != 0 {
		t.Fatalf("the scheduler's snapshot has %d certificates", n)
	}
	enable("shop.example.com")
	if n := recvDomain(edge, "shop.example.com"); n == 0 {
		t.Fatal("the edge node's change has no certificate")
	}
	if n := recvDomain(sched, "shop.example.com"); n != 0 {
		t.Fatalf("the scheduler's change has %d certificates", n)
	}
}
