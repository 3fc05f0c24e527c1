package controller_test

import (
	"context"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestAuthentication(t *testing.T) {
	env := controllertest.Start(t)
	admin, readOnly := env.NewAccount(t, "acme")
	ctx := ctxT(t)
	create := &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}

	_, err := env.Clients(t, "").Domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{})
	wantErr(t, err, codes.Unauthenticated, "MissingCredentials")
	_, err = env.Clients(t, "opt_not-a-real-token").Domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{})
	wantErr(t, err, codes.Unauthenticated, "InvalidToken")

	// A malformed authorization header.
	conn := env.Dial(t, "")
	bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+admin)
	_, err = outpostv1.NewDomainServiceClient(conn).ListDomains(bad, &outpostv1.ListDomainsRequest{})
	wantErr(t, err, codes.Unauthenticated, "MissingCredentials")

	// Read-only reads but cannot write; nothing is stored.
	ro := env.Clients(t, readOnly)
	_, err = ro.Domains.CreateDomain(ctx, create)
	wantErr(t, err, codes.PermissionDenied, "ReadOnlyToken")
	if _, err := ro.Domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{}); err != nil {
		t.Fatal(err)
	}
	n, err := env.Controller.Store().Count(ctx, store.DomainsPrefix())
	if err != nil || n != 0 {
		t.Fatalf("domains stored after refused write: %d %v", n, err)
	}

	// Operators manage accounts but own no domains; accounts cannot manage accounts.
	_, err = env.Clients(t, env.OperatorToken).Domains.CreateDomain(ctx, create)
	wantErr(t, err, codes.PermissionDenied, "AccountRequired")
	_, err = env.Clients(t, admin).Accounts.CreateAccount(ctx, &outpostv1.CreateAccountRequest{Id: "evil"})
	wantErr(t, err, codes.PermissionDenied, "OperatorOnly")
	_, err = env.Clients(t, admin).Accounts.CreateToken(ctx, &outpostv1.CreateTokenRequest{Role: outpostv1.Role_ROLE_OPERATOR})
	wantErr(t, err, codes.PermissionDenied, "OperatorOnly")
	_, err = ro.Accounts.CreateToken(ctx, &outpostv1.CreateTokenRequest{Role: outpostv1.Role_ROLE_ADMIN})
	wantErr(t, err, codes.PermissionDenied, "ReadOnlyToken")

	// Node bearer tokens are replaced by join tokens and member
	// certificates; a member certificate opens no admin method.
	_, err = env.Clients(t, env.OperatorToken).Accounts.CreateToken(ctx, &outpostv1.CreateTokenRequest{Role: outpostv1.Role_ROLE_NODE})
	wantErr(t, err, codes.FailedPrecondition, "NodeTokensReplaced")
	_, err = env.NodeClients(t, "edge-auth").Domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{})
	wantErr(t, err, codes.Unauthenticated, "MissingCredentials")

	// An admin can mint a read-only token for its account, and revoke it.
	tok, err := env.Clients(t, admin).Accounts.CreateToken(ctx, &outpostv1.CreateTokenRequest{Role: outpostv1.Role_ROLE_READ_ONLY})
	if err != nil {
		t.Fatal(err)
	}
	who, err := env.Clients(t, tok.GetSecret()).Accounts.WhoAmI(ctx, &outpostv1.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if who.GetToken().GetAccount() != "acme" || who.GetToken().GetRole() != outpostv1.Role_ROLE_READ_ONLY {
		t.Fatalf("whoami %v", who)
	}
	if _, err := env.Clients(t, admin).Accounts.RevokeToken(ctx, &outpostv1.RevokeTokenRequest{Id: tok.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = env.Clients(t, tok.GetSecret()).Accounts.WhoAmI(ctx, &outpostv1.WhoAmIRequest{})
	wantErr(t, err, codes.Unauthenticated, "InvalidToken")

	// Health and reflection need no token.
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "outpost.v1.DomainService"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without token: %v %v", hc, err)
	}
}

// emptyHealth is a zero-field message, for invoking any method.
type emptyHealth = outpostv1.ListNodesRequest

func TestTokensAreStoredHashed(t *testing.T) {
	env := controllertest.Start(t)
	admin, readOnly := env.NewAccount(t, "acme")
	ctx := ctxT(t)
	kvs, _, err := env.Controller.Store().Range(ctx, store.Prefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	tokens := 0
	for _, kv := range kvs {
		for _, secret := range []string{admin, readOnly, env.OperatorToken} {
			if strings.Contains(kv.Key, secret) || strings.Contains(string(kv.Value), secret) {
				t.Fatalf("token secret stored in the clear at %s", kv.Key)
			}
		}
		if strings.HasPrefix(kv.Key, store.TokensPrefix()) {
			tokens++
			var st storagev1.StoredToken
			if err := store.Decode(kv, &st); err != nil {
				t.Fatal(err)
			}
		}
	}
	if tokens != 3 {
		t.Fatalf("%d tokens stored, want 3", tokens)
	}
}

func TestAccountIsolation(t *testing.T) {
	env := controllertest.Start(t)
	a, _ := env.NewAccount(t, "alpha")
	b, _ := env.NewAccount(t, "beta")
	ca, cb := env.Clients(t, a), env.Clients(t, b)
	ctx := ctxT(t)
	if _, err := ca.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "a.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	pair := uploadPair(t, ca, "a.example.com")

	_, err := cb.Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: "a.example.com"})
	wantErr(t, err, codes.NotFound, "DomainNotFound")
	_, err = cb.Domains.DeleteDomain(ctx, &outpostv1.DeleteDomainRequest{Name: "a.example.com"})
	wantErr(t, err, codes.NotFound, "DomainNotFound")
	_, err = cb.Domains.DisableDomain(ctx, &outpostv1.DisableDomainRequest{Name: "a.example.com"})
	wantErr(t, err, codes.NotFound, "DomainNotFound")
	_, err = cb.Origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: "a.example.com", Enabled: true, Value: "x.example.com"})
	wantErr(t, err, codes.NotFound, "DomainNotFound")
	_, err = cb.HTTPS.DisableHttps(ctx, &outpostv1.DisableHttpsRequest{Domain: "a.example.com"})
	wantErr(t, err, codes.NotFound, "DomainNotFound")
	_, err = cb.Certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: pair})
	wantErr(t, err, codes.NotFound, "CertificateNotFound")
	_, err = cb.Certs.DeleteCertificate(ctx, &outpostv1.DeleteCertificateRequest{Id: pair})
	wantErr(t, err, codes.NotFound, "CertificateNotFound")
	_, err = cb.Accounts.GetAccount(ctx, &outpostv1.GetAccountRequest{Id: "alpha"})
	wantErr(t, err, codes.NotFound, "AccountNotFound")

	// Beta cannot bind alpha's certificate to its own domain either.
	if _, err := cb.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "b.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	_, err = cb.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "b.example.com", Source: &outpostv1.EnableHttpsRequest_CertificateId{CertificateId: pair}})
	wantErr(t, err, codes.NotFound, "CertificateNotFound")

	for _, tc := range []struct {
		c    *controllertest.Clients
		want string
	}{{ca, "a.example.com"}, {cb, "b.example.com"}} {
		l, err := tc.c.Domains.ListDomains(ctx, &outpostv1.ListDomainsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.GetDomains()) != 1 || l.GetDomains()[0].GetName() != tc.want {
			t.Fatalf("list shows %v, want only %s", l.GetDomains(), tc.want)
		}
	}
	lc, err := cb.Certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{})
	if err != nil || len(lc.GetCertificates()) != 0 {
		t.Fatalf("beta sees certificates %v %v", lc.GetCertificates(), err)
	}
}

// TestEveryMethodHasAPolicy calls every registered method without
// credentials: each must answer Unauthenticated (it has a policy and checks
// it) rather than run, or be one of the public services.
func TestEveryMethodHasAPolicy(t *testing.T) {
	env := controllertest.Start(t)
	conn := env.Dial(t, "")
	ctx := ctxT(t)
	var methods []string
	for svc, info := range serviceInfo(t, env) {
		if strings.HasPrefix(svc, "grpc.") {
			continue
		}
		for _, m := range info {
			methods = append(methods, "/"+svc+"/"+m)
		}
	}
	sort.Strings(methods)
	if len(methods) < 30 {
		t.Fatalf("only %d methods found", len(methods))
	}
	for _, m := range methods {
		err := conn.Invoke(ctx, m, &emptyHealth{}, &emptyHealth{})
		if strings.HasSuffix(m, "StreamConfig") {
			s, serr := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, m)
			if serr != nil {
				t.Fatal(serr)
			}
			err = s.RecvMsg(&emptyHealth{})
		}
		switch {
		case strings.HasSuffix(m, "/GetCaCertificate"):
			if err != nil {
				t.Fatalf("%s is public: %v", m, err)
			}
		case strings.HasSuffix(m, "/Join"):
			wantErr(t, err, codes.Unauthenticated, "InvalidJoinToken")
		case strings.HasSuffix(m, "StreamConfig"), strings.HasSuffix(m, "/RenewMemberCertificate"):
			wantErr(t, err, codes.Unauthenticated, "MemberCertificateRequired")
		default:
			wantErr(t, err, codes.Unauthenticated, "MissingCredentials")
		}
	}
}

func serviceInfo(t *testing.T, env *controllertest.Env) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for name, info := range env.Controller.ServiceInfo() {
		for _, m := range info.Methods {
			out[name] = append(out[name], m.Name)
		}
	}
	return out
}

func uploadPair(t *testing.T, c *controllertest.Clients, names ...string) string {
	t.Helper()
	p := issue(t, names...)
	resp, err := c.Certs.UploadCertificate(context.Background(), &outpostv1.UploadCertificateRequest{Name: names[0], CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetCertificate().GetId()
}
