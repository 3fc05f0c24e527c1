package outpostctl

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// echoAccounts answers WhoAmI with the authorization header it received, in
// the token's description, so tests can see what the CLI sent.
type echoAccounts struct {
	outpostv1.UnimplementedAccountServiceServer
}

func (echoAccounts) WhoAmI(ctx context.Context, _ *outpostv1.WhoAmIRequest) (*outpostv1.WhoAmIResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	return &outpostv1.WhoAmIResponse{Token: &outpostv1.Token{
		Id:          "tok-echo",
		Description: strings.Join(md.Get("authorization"), "|"),
	}}, nil
}

// startEcho serves echoAccounts on a loopback port, with TLS when cert is set.
func startEcho(t *testing.T, cert *tls.Certificate) string {
	t.Helper()
	var opts []grpc.ServerOption
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*cert}})))
	}
	s := grpc.NewServer(opts...)
	outpostv1.RegisterAccountServiceServer(s, echoAccounts{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

func whoAmIHeader(t *testing.T, r result) string {
	t.Helper()
	wantOK(t, r)
	var resp outpostv1.WhoAmIResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	return resp.GetToken().GetDescription()
}

func TestBearerToken(t *testing.T) {
	addr := startEcho(t, nil)
	env := map[string]string{envController: addr, envToken: "env-secret\n"}

	if got := whoAmIHeader(t, runCLI(t, env, "--plaintext", "whoami", "-o", "json")); got != "Bearer env-secret" {
		t.Errorf("token from %s sent as %q", envToken, got)
	}
	if got := whoAmIHeader(t, runCLI(t, env, "--plaintext", "--token", "flag-secret", "whoami", "-o", "json")); got != "Bearer flag-secret" {
		t.Errorf("--token sent as %q", got)
	}
	if got := whoAmIHeader(t, runCLI(t, env, "--plaintext", "--token", "Bearer pasted", "whoami", "-o", "json")); got != "Bearer pasted" {
		t.Errorf("--token 'Bearer pasted' sent as %q", got)
	}
	if got := whoAmIHeader(t, runCLI(t, map[string]string{envController: addr}, "--plaintext", "whoami", "-o", "json")); got != "" {
		t.Errorf("no token, but sent %q", got)
	}
}

func TestTLS(t *testing.T) {
	ca := certstest.NewCA(t, "Outpost test CA")
	leaf := certstest.Issue(t, certstest.Options{DNSNames: []string{"controller.test"}, Issuer: ca})
	cert := leaf.TLSCertificate(t)
	addr := startEcho(t, &cert)
	caFile := writeFile(t, t.TempDir(), "ca.pem", ca.CertPEM)
	env := map[string]string{envController: addr, envToken: "tls-secret"}

	r := runCLI(t, env, "--tls-ca", caFile, "--tls-server-name", "controller.test", "whoami", "-o", "json")
	if got := whoAmIHeader(t, r); got != "Bearer tls-secret" {
		t.Errorf("over TLS the token was sent as %q", got)
	}

	// The certificate names controller.test, not 127.0.0.1.
	r = runCLI(t, env, "--tls-ca", caFile, "whoami")
	wantFail(t, r, exitError, "Error: Unavailable: ")
	// The test CA is not among the system roots.
	r = runCLI(t, env, "--tls", "--tls-server-name", "controller.test", "whoami")
	wantFail(t, r, exitError, "Error: Unavailable: ")
	// TLS is the default: without the CA, the controller is not trusted.
	r = runCLI(t, env, "whoami")
	wantFail(t, r, exitError, "Error: Unavailable: ")
	// OUTPOST_TLS_CA stands in for --tls-ca.
	r = runCLI(t, map[string]string{envController: addr, envToken: "tls-secret", envTLSCA: caFile}, "--tls-server-name", "controller.test", "whoami", "-o", "json")
	if got := whoAmIHeader(t, r); got != "Bearer tls-secret" {
		t.Errorf("with %s the token was sent as %q", envTLSCA, got)
	}
	// --plaintext excludes the TLS flags.
	r = runCLI(t, env, "--plaintext", "--tls-ca", caFile, "whoami")
	wantFail(t, r, exitUsage, "Error: --plaintext excludes")
	// Plaintext to a TLS server.
	r = runCLI(t, env, "--plaintext", "whoami")
	wantFail(t, r, exitError, "Error: Unavailable: ")
}
