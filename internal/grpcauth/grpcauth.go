// Package grpcauth carries Outpost's bearer tokens on gRPC calls: the
// client side of the controller's "authorization: Bearer <token>" check,
// shared by outpostctl, the dev cluster and tests. (Edge nodes and
// schedulers authenticate with member certificates: internal/clusterpki.)
package grpcauth

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// Bearer is per-RPC credentials sending a bearer token.
type Bearer struct {
	Token string
	// RequireTLS refuses to send the token over a plaintext connection.
	// Plaintext is for loopback and tests; production deployments run the
	// API over TLS.
	RequireTLS bool
}

var _ credentials.PerRPCCredentials = Bearer{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.Token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b Bearer) RequireTransportSecurity() bool { return b.RequireTLS }
