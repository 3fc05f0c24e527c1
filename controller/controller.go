// Package controller is Outpost's control plane: a stateless gRPC server
// whose only state is etcd. It serves the admin API (domains, certificates,
// HTTPS and origin settings, accounts, nodes, content tasks) to operators and
// their automation, and the config stream to edge nodes. Run several against
// one etcd cluster; every write is an optimistic etcd transaction, so they
// never overwrite each other.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/etcdembed"
	"github.com/outpost-cdn/outpost/internal/seal"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Controller is a running controller.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	etcd   *etcdembed.Server // nil with external etcd
	cli    *clientv3.Client
	store  *store.Store
	sealer *seal.Sealer
	// ca is the cluster CA (pki.go), opened at start.
	ca  *clusterCA
	lis net.Listener
	srv *grpc.Server
	// metrics, and their HTTP server when Config.MetricsAddr is set.
	metrics    *metrics
	metricsSrv *http.Server
	metricsLis net.Listener
	health     *health.Server
	done       chan struct{}

	// The bucket-events HTTP endpoint (bucketevents.go), when configured.
	eventsLis  net.Listener
	events     *http.Server
	eventsDone chan struct{}

	cache    *configCache
	sessions *sessions
	// acme obtains free certificates while this controller leads the
	// issuer election (acme.go); nil when free certificates are disabled.
	acme *acmeIssuer
	// stopping is closed when Close begins, ending config streams so that
	// nodes move to another controller at once.
	stopping chan struct{}
	// bg runs the cache, the session lease and task retention until Close.
	bgCancel context.CancelFunc
	bg       sync.WaitGroup

	// rewrapHook, set by tests, runs before each re-wrap transaction
	// commits (keyring.go).
	rewrapHook atomic.Pointer[func(keys []string)]
}

// Start connects to (or starts) etcd, installs the bootstrap token and
// serves the gRPC API until Close. It returns once the API accepts requests.
func Start(ctx context.Context, cfg Config) (_ *Controller, err error) {
	cfg.setDefaults()
	if slices.Contains(cfg.OriginPorts, 0) {
		return nil, errors.New("bad origin ports (OUTPOST_ORIGIN_PORTS or -origin-ports): want a comma-separated list of ports")
	}
	c := &Controller{cfg: cfg, log: cfg.Logger.With("role", "controller"), done: make(chan struct{}), stopping: make(chan struct{})}
	defer func() {
		if err != nil {
			c.closeStore()
		}
	}()

	etcdTLS, err := etcdClientTLS(cfg, cfg.EtcdEndpoints)
	if err != nil {
		return nil, err
	}
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		c.etcd, err = etcdembed.Start(ctx, etcdembed.Config{
			Dir:                 filepath.Join(cfg.DataDir, "etcd"),
			ClientAddr:          cfg.EtcdClientAddr,
			PeerAddr:            cfg.EtcdPeerAddr,
			Unsafe:              cfg.EtcdUnsafeNoFsync,
			CompactionRetention: cfg.EtcdCompactionRetention,
		})
		if err != nil {
			return nil, err
		}
		endpoints = c.etcd.Endpoints()
		c.log.Info("embedded etcd started", "endpoints", endpoints, "dir", filepath.Join(cfg.DataDir, "etcd"))
	}
	c.cli, err = clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         etcdTLS, // nil: plain HTTP, or the system roots for https://
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		// Reconnect quickly after an etcd restart.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// Let etcd's --max-request-bytes, not the client's 2 MiB default,
		// decide how large a transaction may be (a DeployCertificate to
		// thousands of domains is one transaction).
		MaxCallSendMsgSize: etcdembed.MaxRequestBytes + 1<<20,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	if c.etcd == nil {
		if err := checkEtcd(ctx, endpoints, etcdTLS, c.log); err != nil {
			return nil, err
		}
	}
	c.store = store.New(c.cli)

	kr, err := c.loadKeyring()
	if err != nil {
		return nil, err
	}
	c.sealer = seal.NewSealer(kr)
	c.cache = newConfigCache(c.store, c.sealer, c.log)
	c.sessions = &sessions{cli: c.cli, log: c.log}
	if c.acme, err = newACMEIssuer(c); err != nil {
		return nil, err
	}
	bgCtx, cancel := context.WithCancel(context.Background())
	c.bgCancel = cancel
	c.bg.Add(3)
	go func() { defer c.bg.Done(); c.cache.run(bgCtx) }()
	go func() { defer c.bg.Done(); c.sessions.run(bgCtx) }()
	go func() { defer c.bg.Done(); c.runRetention(bgCtx) }()
	c.bg.Add(1)
	go func() { defer c.bg.Done(); c.runRewrap(bgCtx) }()

	if err := c.bootstrap(ctx); err != nil {
		return nil, err
	}
	if c.ca, err = c.loadCA(ctx); err != nil {
		return nil, err
	}
	if err := c.writeCACert(); err != nil {
		return nil, err
	}
	tlsCfg, err := c.serverTLS()
	if err != nil {
		return nil, err
	}

	c.lis, err = net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.ListenAddr, err)
	}
	var eventsLis net.Listener
	if cfg.BucketEventsAddr != "" {
		if eventsLis, err = net.Listen("tcp", cfg.BucketEventsAddr); err != nil {
			c.lis.Close()
			return nil, fmt.Errorf("listen %s (bucket events): %w", cfg.BucketEventsAddr, err)
		}
	}
	if cfg.MetricsAddr != "" {
		if c.metricsLis, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			c.lis.Close()
			if eventsLis != nil {
				eventsLis.Close()
			}
			return nil, fmt.Errorf("listen %s (metrics): %w", cfg.MetricsAddr, err)
		}
	}
	auth := &authenticator{c: c, store: c.store, policy: methodPolicy}
	c.metrics = newMetrics(c)
	c.srv = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		// Metrics first: they count every call, refused ones included,
		// with the code the client sees.
		grpc.ChainUnaryInterceptor(c.metrics.grpc.UnaryServerInterceptor(), apierr.UnaryServerInterceptor(c.log), c.logUnary, auth.unary()),
		grpc.ChainStreamInterceptor(c.metrics.grpc.StreamServerInterceptor(), apierr.StreamServerInterceptor(c.log), auth.stream()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	c.register()
	c.metrics.grpc.InitializeMetrics(c.srv)
	if c.metricsLis != nil {
		c.serveMetrics(c.metricsLis)
	}
	go func() {
		defer close(c.done)
		if err := c.srv.Serve(c.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			c.log.Error("grpc serve", "err", err)
		}
	}()
	c.log.Info("controller serving", "addr", c.lis.Addr().String())
	if c.acme != nil {
		// Once serving: the election names candidates by their address.
		c.bg.Add(1)
		go func() { defer c.bg.Done(); c.acme.run(bgCtx) }()
	}
	if eventsLis != nil {
		c.startBucketEvents(eventsLis)
	}
	return c, nil
}

// Run starts a controller and serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	c, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	c.Close()
	return nil
}

func (c *Controller) register() {
	s := c.srv
	outpostv1.RegisterDomainServiceServer(s, &domainService{c: c})
	outpostv1.RegisterCertificateServiceServer(s, &certificateService{c: c})
	outpostv1.RegisterKeyringServiceServer(s, &keyringService{c: c})
	outpostv1.RegisterHttpsServiceServer(s, &httpsService{c: c})
	outpostv1.RegisterOriginServiceServer(s, &originService{c: c})
	outpostv1.RegisterAccountServiceServer(s, &accountService{c: c})
	outpostv1.RegisterNodeServiceServer(s, &nodeService{c: c})
	outpostv1.RegisterCacheServiceServer(s, &cacheService{c: c})
	outpostv1.RegisterContentServiceServer(s, &contentService{c: c})
	outpostv1.RegisterConfigDiscoveryServiceServer(s, &configService{c: c})
	outpostv1.RegisterPkiServiceServer(s, &pkiService{c: c})
	c.health = health.NewServer()
	healthpb.RegisterHealthServer(s, c.health)
	reflection.Register(s)
	for name := range s.GetServiceInfo() {
		c.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
}

// Addr is the address the gRPC API listens on.
func (c *Controller) Addr() string { return c.lis.Addr().String() }

// MetricsAddr is the address /metrics is served on ("" when disabled).
func (c *Controller) MetricsAddr() string {
	if c.metricsLis == nil {
		return ""
	}
	return c.metricsLis.Addr().String()
}

// EtcdEndpoints are the client URLs of the etcd the controller uses.
func (c *Controller) EtcdEndpoints() []string { return c.cli.Endpoints() }

// ConfigRevision is the config revision the controller streams now: its
// config cache has every change up to it.
func (c *Controller) ConfigRevision() int64 { return c.cache.Revision() }

// CACertificatePEM is the cluster CA's certificate: what clients of the
// gRPC API trust (outpostctl --tls-ca, grpcurl -cacert).
func (c *Controller) CACertificatePEM() string { return c.ca.certPEM }

// Store exposes the store, for tests and tools in this module.
func (c *Controller) Store() *store.Store { return c.store }

// Close stops serving (letting in-flight unary calls finish for up to five
// seconds) and releases etcd. It is safe to call more than once.
func (c *Controller) Close() {
	select {
	case <-c.stopping:
	default:
		close(c.stopping)
	}
	c.stopBucketEvents()
	if c.metricsSrv != nil {
		_ = c.metricsSrv.Close()
		c.metricsSrv = nil
	}
	if c.srv != nil {
		c.health.Shutdown()
		stopped := make(chan struct{})
		go func() { c.srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			c.srv.Stop()
		}
		<-c.done
		c.srv = nil
	}
	c.closeStore()
}

func (c *Controller) closeStore() {
	if c.bgCancel != nil {
		c.bgCancel()
		c.bg.Wait()
		c.bgCancel = nil
	}
	if c.cli != nil {
		c.cli.Close()
		c.cli = nil
	}
	if c.etcd != nil {
		c.etcd.Close()
		c.etcd = nil
	}
}

func (c *Controller) loadKeyring() (*seal.Keyring, error) {
	switch {
	case c.cfg.KeyringFile != "":
		return seal.LoadKeyring(c.cfg.KeyringFile)
	case c.cfg.KeyringText != "":
		return seal.ParseKeyring(c.cfg.KeyringText)
	case c.etcd == nil:
		return nil, errors.New("a keyring is required with --etcd-endpoints (--keyring-file or OUTPOST_KEYRING), the same on every controller")
	}
	path := filepath.Join(c.cfg.DataDir, "keyring")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		text, err := seal.GenerateKeyring(newID("kek"))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return nil, fmt.Errorf("write keyring: %w", err)
		}
		c.log.Warn("generated a keyring for the embedded etcd; back it up with the data dir", "path", path)
	}
	return seal.LoadKeyring(path)
}

// bootstrap installs the operator bootstrap token if it is configured and
// not present yet.
func (c *Controller) bootstrap(ctx context.Context) error {
	secret := c.cfg.BootstrapToken
	if c.cfg.BootstrapTokenFile != "" {
		b, err := os.ReadFile(c.cfg.BootstrapTokenFile)
		if err != nil {
			return fmt.Errorf("bootstrap token: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if secret == "" {
		return nil
	}
	if len(secret) < 16 {
		return errors.New("bootstrap token: use at least 16 characters")
	}
	for {
		t := c.store.Begin()
		key := store.TokenKey(hashSecret(secret))
		found, err := t.Guard(ctx, key)
		if err != nil {
			return fmt.Errorf("bootstrap token: %w", err)
		}
		if found {
			return nil
		}
		// One ID per secret, so that a changed bootstrap secret is a new
		// token and the old one can still be revoked by its own ID.
		id := "bootstrap-" + hashSecret(secret)[:12]
		if _, err := t.Guard(ctx, store.TokenIDKey(id)); err != nil {
			return err
		}
		t.Put(key, &storagev1.StoredToken{Token: &outpostv1.Token{
			Id: id, Role: outpostv1.Role_ROLE_OPERATOR, Description: "bootstrap operator token",
			CreateTime: c.timestamp(),
		}})
		t.PutRaw(store.TokenIDKey(id), hashSecret(secret))
		if _, err := t.Commit(ctx); errors.Is(err, store.ErrConflict) {
			continue // another controller raced us; look again
		} else if err != nil {
			return fmt.Errorf("bootstrap token: %w", err)
		}
		c.log.Info("installed the bootstrap operator token", "token_id", id)
		return nil
	}
}

// logUnary logs one line per admin call: never request or response bodies,
// which can hold private keys.
func (c *Controller) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	call := &callInfo{}
	resp, err := handler(context.WithValue(ctx, callInfoKey{}, call), req)
	attrs := []any{"method", info.FullMethod, "code", status.Code(err).String(), "duration", time.Since(start).Round(time.Microsecond)}
	if p := call.principal; p != nil {
		attrs = append(attrs, "account", p.Account, "token_id", p.TokenID)
	}
	if r := apierr.Reason(err); r != "" {
		attrs = append(attrs, "reason", r)
	}
	c.log.Info("rpc", attrs...)
	return resp, err
}

// callInfo lets the auth interceptor, which runs inside logUnary, report
// who called.
type callInfo struct{ principal *Principal }

type callInfoKey struct{}

// ServiceInfo lists the registered gRPC services and methods.
func (c *Controller) ServiceInfo() map[string]grpc.ServiceInfo { return c.srv.GetServiceInfo() }
