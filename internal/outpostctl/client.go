package outpostctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/outpost-cdn/outpost/internal/grpcauth"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// client is the connection to a controller and its admin API services.
type client struct {
	conn     *grpc.ClientConn
	domains  outpostv1.DomainServiceClient
	origins  outpostv1.OriginServiceClient
	certs    outpostv1.CertificateServiceClient
	https    outpostv1.HttpsServiceClient
	cache    outpostv1.CacheServiceClient
	content  outpostv1.ContentServiceClient
	nodes    outpostv1.NodeServiceClient
	accounts outpostv1.AccountServiceClient
	keyring  outpostv1.KeyringServiceClient
	pki      outpostv1.PkiServiceClient
}

// dial creates the client. grpc.NewClient connects on the first request, so
// this fails only on bad flags or an unreadable --tls-ca file.
func dial(f globalFlags) (*client, error) {
	useTLS := !f.plaintext
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.tlsServerName}
		if f.tlsCA != "" {
			pem, err := os.ReadFile(f.tlsCA)
			if err != nil {
				return nil, fmt.Errorf("cannot read --tls-ca (or %s): %w", envTLSCA, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", f.tlsCA)
			}
			cfg.RootCAs = pool
		}
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("outpostctl"),
	}
	if f.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: f.token, RequireTLS: useTLS}))
	}
	conn, err := grpc.NewClient(f.controller, opts...)
	if err != nil {
		return nil, fmt.Errorf("controller address %q: %w", f.controller, err)
	}
	return &client{
		conn:     conn,
		domains:  outpostv1.NewDomainServiceClient(conn),
		origins:  outpostv1.NewOriginServiceClient(conn),
		certs:    outpostv1.NewCertificateServiceClient(conn),
		https:    outpostv1.NewHttpsServiceClient(conn),
		cache:    outpostv1.NewCacheServiceClient(conn),
		content:  outpostv1.NewContentServiceClient(conn),
		nodes:    outpostv1.NewNodeServiceClient(conn),
		accounts: outpostv1.NewAccountServiceClient(conn),
		keyring:  outpostv1.NewKeyringServiceClient(conn),
		pki:      outpostv1.NewPkiServiceClient(conn),
	}, nil
}

func (c *client) close() error { return c.conn.Close() }

// listAll fetches every page of a paginated list, each page bounded by --timeout.
func listAll[T any](ctx context.Context, timeout time.Duration, page func(ctx context.Context, token string) ([]T, string, error)) ([]T, error) {
	var all []T
	token := ""
	seen := map[string]bool{}
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		items, next, err := page(rctx, token)
		cancel()
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("the controller returned page token %q twice; stopping", next)
		}
		seen[next] = true
		token = next
	}
}

// pageSizeFlag adds --page-size to a list command. The command still fetches
// every page; the flag only sets how many items each request asks for.
func pageSizeFlag(cmd *cobra.Command, size *int32) {
	cmd.Flags().Int32Var(size, "page-size", 0, "items per request; every page is fetched either way (default: the controller's, 100)")
}
