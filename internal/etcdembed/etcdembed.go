// Package etcdembed runs a single-member etcd inside the process: the
// controller's default store when no --etcd-endpoints are given, the dev
// cluster's store, and the real etcd every test package starts in t.TempDir().
package etcdembed

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Limits of the embedded member, above etcd's defaults (128 operations and
// 1.5 MiB per request). One DeployCertificate of up to 10,000 domains is
// one transaction: per domain up to five writes (the domain, two index keys
// and, when the domain drops a certificate uploaded inline for it, that
// certificate and its index key) and two guards. An external etcd needs
// the same (--max-txn-ops, --max-request-bytes; docs/operations.md).
const (
	// MaxTxnOps bounds the operations of one transaction (etcd's
	// --max-txn-ops): 5 writes for each of 10,000 domains, and room.
	MaxTxnOps = 64 * 1024
	// MaxRequestBytes bounds one request (etcd's --max-request-bytes):
	// 10,000 domain records of up to about 3 KiB each.
	MaxRequestBytes = 32 << 20
)

// Config says where the member keeps its data and listens.
type Config struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// ClientAddr and PeerAddr are host:port; port 0 picks a free port.
	ClientAddr string
	PeerAddr   string
	// Name is the member name; default "outpost".
	Name string
	// CompactionRetention, when set, compacts history older than this many
	// revisions ("revision" auto-compaction). 0 keeps one hour of history.
	CompactionRetention int
	// Unsafe disables fsync: for tests only.
	Unsafe bool
	// CertFile and KeyFile, when set, make the member serve clients over
	// TLS (https URLs) with this PEM certificate and key. With
	// ClientCertAuth it also requires every client to present a
	// certificate signed by a CA in TrustedCAFile, as etcd's
	// --client-cert-auth does. The controller's own embedded etcd serves
	// plain HTTP on loopback; tests of etcd TLS set these.
	CertFile       string
	KeyFile        string
	TrustedCAFile  string
	ClientCertAuth bool
	// Logger receives etcd's own logs; nil discards them.
	Logger *zap.Logger
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
	closeOnce sync.Once
}

// Start starts the member and waits until it serves clients or ctx ends.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Name == "" {
		cfg.Name = "outpost"
	}
	clientURL, err := bindURL(cfg.ClientAddr, "127.0.0.1:2379")
	if err != nil {
		return nil, fmt.Errorf("etcd client address: %w", err)
	}
	peerURL, err := bindURL(cfg.PeerAddr, "127.0.0.1:2380")
	if err != nil {
		return nil, fmt.Errorf("etcd peer address: %w", err)
	}
	if cfg.CertFile != "" {
		clientURL.Scheme = "https"
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*clientURL}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*peerURL}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	ec.UnsafeNoFsync = cfg.Unsafe
	if cfg.CertFile != "" {
		ec.ClientTLSInfo.CertFile = cfg.CertFile
		ec.ClientTLSInfo.KeyFile = cfg.KeyFile
		ec.ClientTLSInfo.TrustedCAFile = cfg.TrustedCAFile
		ec.ClientTLSInfo.ClientCertAuth = cfg.ClientCertAuth
	}
	ec.MaxTxnOps = MaxTxnOps
	ec.MaxRequestBytes = MaxRequestBytes
	if cfg.CompactionRetention > 0 {
		ec.AutoCompactionMode = "revision"
		ec.AutoCompactionRetention = fmt.Sprint(cfg.CompactionRetention)
	} else {
		ec.AutoCompactionMode = "periodic"
		ec.AutoCompactionRetention = "1h"
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd did not become ready within 60s")
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	return &Server{etcd: e, endpoints: []string{clientURL.String()}}, nil
}

// Endpoints returns the client URLs, for clientv3.Config.Endpoints.
func (s *Server) Endpoints() []string { return s.endpoints }

// Close stops the member. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(s.etcd.Close) // embed.Etcd.Close panics the second time
}

// bindURL turns host:port into an http URL, resolving port 0 to a free port
// (etcd must advertise the real port, so it cannot be left to the kernel).
func bindURL(addr, def string) (*url.URL, error) {
	if addr == "" {
		addr = def
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if port == "0" {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		addr = l.Addr().String()
		l.Close()
	}
	return url.Parse("http://" + addr)
}
