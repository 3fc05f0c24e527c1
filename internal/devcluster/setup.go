package devcluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/grpcauth"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The demo account and its pre-configured domain. FreeDemoDomain is the
// domain the printed tour creates for a free certificate; the set-up does
// not create it.
const (
	DemoAccount    = "demo"
	DemoDomain     = "www.demo.test"
	FreeDemoDomain = "free.demo.test"
)

// Files under Config.Dir.
const (
	operatorTokenFile = "secrets/operator.token"
	demoTokenFile     = "secrets/demo-admin.token"
	demoCertFile      = "demo/" + DemoDomain + ".crt"
	// caCertFile is the cluster CA certificate, written by the controller
	// (-ca-cert-out), for outpostctl (OUTPOST_TLS_CA).
	caCertFile = "ca.crt"
)

// dial connects to the controller over TLS, trusting the cluster CA in
// caFile, as token.
func dial(addr, caFile, token string) (*grpc.ClientConn, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster CA %s: no PEM certificate", caFile)
	}
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})),
		grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: token}))
}

// readSecret returns the trimmed contents of a secret file, "" when it does
// not exist.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSecret(path, secret string) error {
	return writeFile(path, []byte(secret+"\n"), 0o600)
}

// operatorToken returns the bootstrap operator secret kept in dir, making
// one at first start.
func operatorToken(dir string) (string, error) {
	path := filepath.Join(dir, operatorTokenFile)
	secret, err := readSecret(path)
	if err != nil || secret != "" {
		return secret, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	secret = "opt_" + base64.RawURLEncoding.EncodeToString(b)
	if err := writeSecret(path, secret); err != nil {
		return "", fmt.Errorf("write the operator token: %w", err)
	}
	return secret, nil
}

// setup is what the API set-up made: tokens and the demo domain's CNAME.
type setup struct {
	demoToken string
	demoCNAME string
}

// runSetup configures the cluster through the real gRPC API, idempotently:
// the demo account, its admin token, and the demo domain.
func runSetup(ctx context.Context, dir, controllerAddr, opToken string, o *origin, log *slog.Logger) (*setup, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	caFile := filepath.Join(dir, caCertFile)
	op, err := dial(controllerAddr, caFile, opToken)
	if err != nil {
		return nil, err
	}
	defer op.Close()
	accounts := outpostv1.NewAccountServiceClient(op)

	_, err = accounts.GetAccount(ctx, &outpostv1.GetAccountRequest{Id: DemoAccount})
	if status.Code(err) == codes.NotFound {
		_, err = accounts.CreateAccount(ctx, &outpostv1.CreateAccountRequest{Id: DemoAccount, DisplayName: "Demo account of make dev"})
		if err == nil {
			log.Info("created the demo account", "account", DemoAccount)
		} else if status.Code(err) == codes.AlreadyExists {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("demo account: %s", apierr.Describe(err))
	}

	if err := ensureGossipKeyring(ctx, outpostv1.NewNodeServiceClient(op), log); err != nil {
		return nil, err
	}
	s := &setup{}
	if s.demoToken, err = ensureToken(ctx, accounts, controllerAddr, caFile, filepath.Join(dir, demoTokenFile),
		DemoAccount, outpostv1.Role_ROLE_ADMIN, "make dev: demo account admin", log); err != nil {
		return nil, err
	}
	if s.demoCNAME, err = ensureDemoDomain(ctx, dir, controllerAddr, s.demoToken, o, log); err != nil {
		return nil, err
	}
	return s, nil
}

// ensureGossipKeyring sets a random gossip keyring on the controller unless
// one is set: the edge nodes and the scheduler take it from there, so the
// dev cluster's gossip is encrypted as a production one should be.
func ensureGossipKeyring(ctx context.Context, nodes outpostv1.NodeServiceClient, log *slog.Logger) error {
	kr, err := nodes.GetGossipKeyring(ctx, &outpostv1.GetGossipKeyringRequest{})
	if err != nil {
		return fmt.Errorf("gossip keyring: %s", apierr.Describe(err))
	}
	if len(kr.GetFingerprints()) > 0 {
		return nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	set, err := nodes.SetGossipKeyring(ctx, &outpostv1.SetGossipKeyringRequest{Keys: [][]byte{key}})
	if err != nil {
		return fmt.Errorf("gossip keyring: %s", apierr.Describe(err))
	}
	log.Info("set a gossip keyring on the controller", "fingerprints", set.GetFingerprints())
	// The scheduler and the nodes start next: their first config must
	// carry the keyring, or they would gossip unencrypted until a restart.
	for {
		l, err := nodes.ListNodes(ctx, &outpostv1.ListNodesRequest{})
		if err == nil && l.GetCurrentRevision() >= set.GetRevision() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gossip keyring: the controller did not stream revision %d: %w", set.GetRevision(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ensureToken returns the token kept in path if it still authenticates with
// the expected account and role, else creates a new one and keeps it.
func ensureToken(ctx context.Context, accounts outpostv1.AccountServiceClient, addr, caFile, path, account string, role outpostv1.Role, desc string, log *slog.Logger) (string, error) {
	secret, err := readSecret(path)
	if err != nil {
		return "", err
	}
	if secret != "" {
		ok, err := tokenWorks(ctx, addr, caFile, secret, account, role)
		if err != nil {
			return "", err
		}
		if ok {
			return secret, nil
		}
		log.Warn("a stored token no longer works; creating a new one", "file", path)
	}
	resp, err := accounts.CreateToken(ctx, &outpostv1.CreateTokenRequest{Account: account, Role: role, Description: desc})
	if err != nil {
		return "", fmt.Errorf("create a %s token: %s", role, apierr.Describe(err))
	}
	if err := writeSecret(path, resp.GetSecret()); err != nil {
		return "", fmt.Errorf("keep the token: %w", err)
	}
	log.Info("created a token", "token_id", resp.GetToken().GetId(), "role", role.String(), "account", account, "file", path)
	return resp.GetSecret(), nil
}

// tokenWorks asks the controller who secret is. Refusals mean false; other
// failures are errors.
func tokenWorks(ctx context.Context, addr, caFile, secret, account string, role outpostv1.Role) (bool, error) {
	conn, err := dial(addr, caFile, secret)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	who, err := outpostv1.NewAccountServiceClient(conn).WhoAmI(ctx, &outpostv1.WhoAmIRequest{})
	switch status.Code(err) {
	case codes.OK:
		return who.GetToken().GetRole() == role && who.GetToken().GetAccount() == account, nil
	case codes.Unauthenticated, codes.PermissionDenied, codes.NotFound:
		return false, nil
	default:
		return false, fmt.Errorf("check a stored token: %s", apierr.Describe(err))
	}
}

// ensureDemoDomain creates and configures the demo domain unless it is
// already fully set up, in which case it is left as it is (the user may have
// changed it), except that it follows the demo origin to a new port. It
// returns the domain's CNAME.
func ensureDemoDomain(ctx context.Context, dir, addr, token string, o *origin, log *slog.Logger) (string, error) {
	conn, err := dial(addr, filepath.Join(dir, caCertFile), token)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	domains := outpostv1.NewDomainServiceClient(conn)
	origins := outpostv1.NewOriginServiceClient(conn)
	https := outpostv1.NewHttpsServiceClient(conn)
	fail := func(what string, err error) (string, error) {
		return "", fmt.Errorf("demo domain %s: %s: %s", DemoDomain, what, apierr.Describe(err))
	}

	got, err := domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: DemoDomain})
	d := got.GetDomain()
	switch {
	case status.Code(err) == codes.NotFound:
		if d, err = createDemoDomain(ctx, domains, o, log); err != nil {
			return fail("create", err)
		}
	case err != nil:
		return fail("get", err)
	}

	if !d.GetHttps().GetEnabled() && d.GetHttps().GetFree() == nil {
		// New, or a previous start stopped half-way: (re)apply the demo
		// settings. Turning HTTPS on comes last and marks the set-up done
		// (as does a free certificate asked for since, with HTTPS off
		// until it is issued).
		if _, err := origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: DemoDomain, Enabled: true, Value: OriginNameA}); err != nil {
			return fail("set origin SNI", err)
		}
		if _, err := origins.SetOriginHost(ctx, &outpostv1.SetOriginHostRequest{Domain: DemoDomain, HostHeader: OriginNameA}); err != nil {
			return fail("set origin Host", err)
		}
		if _, err := origins.SetOriginProtocol(ctx, &outpostv1.SetOriginProtocolRequest{Domain: DemoDomain, Policy: outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTPS}); err != nil {
			return fail("set origin protocol", err)
		}
		if _, err := origins.SetOriginVerify(ctx, &outpostv1.SetOriginVerifyRequest{Domain: DemoDomain, TrustedCaPem: string(o.caPEM)}); err != nil {
			return fail("set origin verify", err)
		}
		if err := enableDemoHTTPS(ctx, https, dir, log); err != nil {
			return fail("enable HTTPS", err)
		}
		log.Info("configured the demo domain", "domain", DemoDomain, "origin_sni", OriginNameA)
	} else {
		if err := followOriginPort(ctx, origins, d, o, log); err != nil {
			return fail("set origins", err)
		}
		if err := checkDemoHTTPS(ctx, https, dir, log); err != nil {
			return fail("HTTPS", err)
		}
		if !containsCert([]byte(d.GetOriginSettings().GetTrustedCaPem()), o.caCert) {
			log.Warn("the demo domain does not trust the demo origin's current CA; to trust it run: bin/outpostctl origin verify "+DemoDomain+" --ca "+o.caFile,
				"domain", DemoDomain)
		}
	}
	return d.GetCname(), nil
}

// demoOrigin is the demo domain's origin: the demo origin's HTTPS address.
func demoOrigin(o *origin) *outpostv1.Origin {
	host, portText, _ := net.SplitHostPort(o.httpsAddr)
	port, _ := strconv.Atoi(portText)
	return &outpostv1.Origin{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: host, Port: uint32(port)}
}

// createDemoDomain creates the demo domain with the demo origin's HTTPS
// address as its origin.
func createDemoDomain(ctx context.Context, domains outpostv1.DomainServiceClient, o *origin, log *slog.Logger) (*outpostv1.Domain, error) {
	req := &outpostv1.CreateDomainRequest{Name: DemoDomain, Origins: []*outpostv1.Origin{demoOrigin(o)}}
	resp, err := domains.CreateDomain(ctx, req)
	if status.Code(err) == codes.AlreadyExists {
		got, err := domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: DemoDomain})
		return got.GetDomain(), err
	}
	if err != nil {
		return nil, err
	}
	log.Info("created the demo domain", "domain", DemoDomain, "cname", resp.GetDomain().GetCname(), "origin", o.httpsAddr)
	return resp.GetDomain(), nil
}

// followOriginPort points the demo domain at the demo origin's current port
// when its only origin is the demo origin on another port (the cluster was
// started with another --base-port, or on free ports). Other origins are
// the user's and left alone.
func followOriginPort(ctx context.Context, origins outpostv1.OriginServiceClient, d *outpostv1.Domain, o *origin, log *slog.Logger) error {
	want := demoOrigin(o)
	list := d.GetOrigins()
	if len(list) != 1 || list[0].GetType() != want.GetType() || list[0].GetAddress() != want.GetAddress() || list[0].GetPort() == want.GetPort() {
		return nil
	}
	cur := list[0]
	_, err := origins.SetOrigins(ctx, &outpostv1.SetOriginsRequest{Domain: DemoDomain, Origins: []*outpostv1.Origin{{
		Type: want.GetType(), Address: want.GetAddress(), Port: want.GetPort(), Priority: cur.GetPriority(), Weight: cur.GetWeight(),
	}}})
	if err != nil {
		return err
	}
	log.Info("pointed the demo domain at the demo origin's current port", "domain", DemoDomain, "from", cur.GetPort(), "to", want.GetPort())
	return nil
}

// enableDemoHTTPS turns HTTPS on with a new self-signed certificate for the
// demo domain. Its key goes to the controller only; its certificate is
// written to dir for curl --cacert.
func enableDemoHTTPS(ctx context.Context, https outpostv1.HttpsServiceClient, dir string, log *slog.Logger) error {
	leaf, err := issueLeaf(DemoDomain, nil, nil, time.Now())
	if err != nil {
		return err
	}
	resp, err := https.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{
		Domain: DemoDomain,
		Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
			Name:           "make dev self-signed " + DemoDomain,
			CertificatePem: string(leaf.certPEM),
			PrivateKeyPem:  string(leaf.keyPEM),
		}},
	})
	if err != nil {
		return err
	}
	path := filepath.Join(dir, demoCertFile)
	if err := writeFile(path, leaf.certPEM, 0o644); err != nil {
		return err
	}
	log.Info("enabled HTTPS on the demo domain", "certificate_id", resp.GetCertificate().GetId(), "cert_file", path)
	return nil
}

// checkDemoHTTPS renews the demo domain's own self-signed certificate when it
// is about to expire, and rewrites its certificate file (public material)
// from the controller's copy.
func checkDemoHTTPS(ctx context.Context, https outpostv1.HttpsServiceClient, dir string, log *slog.Logger) error {
	got, err := https.GetHttpsSettings(ctx, &outpostv1.GetHttpsSettingsRequest{Domain: DemoDomain})
	if err != nil {
		return err
	}
	if got.GetHttps().GetFree() != nil {
		// Switched to a free certificate: the controller renews it, and it
		// chains to the dev ACME CA's root, not to the demo certificate file.
		return nil
	}
	cert := got.GetCertificate()
	if got.GetHttps().GetCertificateOwned() && cert.GetNotAfter() != nil && time.Until(cert.GetNotAfter().AsTime()) < renewBefore {
		log.Info("renewing the demo domain's self-signed certificate", "not_after", cert.GetNotAfter().AsTime())
		return enableDemoHTTPS(ctx, https, dir, log)
	}
	if pemText := cert.GetCertificatePem(); pemText != "" {
		return writeFile(filepath.Join(dir, demoCertFile), []byte(pemText), 0o644)
	}
	return nil
}

// joinToken creates a one-time join token for member name of role, valid
// for ten minutes. A member whose data dir holds a valid certificate
// ignores it, and it expires unused.
func joinToken(ctx context.Context, addr, caFile, opToken, name string, role outpostv1.MemberRole) (string, error) {
	conn, err := dial(addr, caFile, opToken)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	resp, err := outpostv1.NewPkiServiceClient(conn).CreateJoinToken(ctx, &outpostv1.CreateJoinTokenRequest{
		Name: name, Role: role, Ttl: durationpb.New(10 * time.Minute), Description: "make dev: " + name,
	})
	if err != nil {
		return "", fmt.Errorf("join token for %s: %s", name, apierr.Describe(err))
	}
	return resp.GetToken(), nil
}
