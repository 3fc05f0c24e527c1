// Package scheduler is Outpost's request router: it answers, over gRPC and
// as the authoritative DNS server of the CNAME zone, which edge nodes should
// serve a client. It is stateless; run several. Node selection (gossip,
// GeoIP, nearest healthy node) is built on top of the servers here.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/membership"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler/locate"
	"github.com/outpost-cdn/outpost/scheduler/selection"
)

// Config is what a scheduler needs.
type Config struct {
	// GRPCAddr serves SchedulerService. Default 127.0.0.1:7100.
	GRPCAddr string
	// DNSAddr serves DNS over UDP and TCP. Default 127.0.0.1:7053.
	DNSAddr string
	// Controllers are controller gRPC addresses, for the config stream.
	Controllers []string
	// JoinToken is a one-time join token for the scheduler role
	// (outpostctl node join-token create --role scheduler): the scheduler
	// joins with it when DataDir holds no valid certificate for Name, then
	// streams config over mutual TLS with that certificate. With neither a
	// token nor a stored certificate it streams nothing.
	JoinToken string
	// CAFile and CAPin are as in node.Config: more roots to trust for the
	// controllers, and a CA pin overriding the join token's.
	CAFile string
	CAPin  string
	// DataDir keeps the scheduler's key and certificate. Empty keeps them
	// in memory: a restart needs a new join token.
	DataDir string
	// CNAMESuffix is the zone the scheduler is authoritative for.
	// Default cdn.outpost.test.
	CNAMESuffix string
	// TTL of DNS answers. Default 30s.
	TTL time.Duration
	// Name identifies the scheduler in gossip and on the config stream.
	// Default "scheduler-" + the gRPC port.
	Name string
	// Gossip joins the cluster as edge nodes do. The scheduler is a member
	// that serves nothing: it only listens to the nodes.
	Gossip membership.Options
	// GeoIPFile is a MaxMind-format city database; CoverageZoneFile a
	// coverage-zone JSON file (see package locate), which wins over GeoIP.
	GeoIPFile, CoverageZoneFile string
	// DefaultLatitude and DefaultLongitude place clients neither source
	// knows.
	DefaultLatitude, DefaultLongitude float64
	// RegionScope says which scope each node region belongs to.
	RegionScope map[string]outpostv1.Scope
	// HTTPAddr serves the HTTP mode (302 to the nearest node); "" is off.
	HTTPAddr string
	// Answers is how many nodes a DNS answer carries. Default 2.
	Answers int
	// MetricsAddr serves Prometheus metrics on /metrics (plain HTTP);
	// "" disables.
	MetricsAddr string
	Logger      *slog.Logger
}

func (c *Config) setDefaults() {
	if c.GRPCAddr == "" {
		c.GRPCAddr = "127.0.0.1:7100"
	}
	if c.DNSAddr == "" {
		c.DNSAddr = "127.0.0.1:7053"
	}
	if c.CNAMESuffix == "" {
		c.CNAMESuffix = "cdn.outpost.test"
	}
	if c.TTL <= 0 {
		c.TTL = 30 * time.Second
	}
	if c.Answers <= 0 {
		c.Answers = 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Scheduler is a running scheduler.
type Scheduler struct {
	cfg  Config
	log  *slog.Logger
	lis  net.Listener
	srv  *grpc.Server
	dns  *dnsServer
	done chan struct{}

	domains  *domainStream
	gossip   *membership.Gossiper
	locator  locate.Locator
	geo      *locate.GeoIP
	selector *selection.Selector
	cancel   context.CancelFunc
	bg       sync.WaitGroup
	httpLis  net.Listener
	httpSrv  *http.Server

	metrics    *metrics
	metricsSrv *http.Server
	metricsLis net.Listener
}

// Start serves gRPC and DNS until Close.
func Start(ctx context.Context, cfg Config) (*Scheduler, error) {
	cfg.setDefaults()
	if err := cfg.Gossip.Validate(); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	s := &Scheduler{cfg: cfg, log: cfg.Logger.With("role", "scheduler"), done: make(chan struct{}), metrics: newMetrics()}
	var err error
	if s.lis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("scheduler gRPC listen %s: %w", cfg.GRPCAddr, err)
	}
	if s.cfg.Name == "" {
		_, port, _ := net.SplitHostPort(s.lis.Addr().String())
		s.cfg.Name = "scheduler-" + port
	}
	if err := s.startRouting(); err != nil {
		s.lis.Close()
		return nil, err
	}
	if s.dns, err = startDNS(cfg.DNSAddr, cfg.CNAMESuffix, cfg.TTL, s.log, s); err != nil {
		s.lis.Close()
		s.stopRouting()
		return nil, err
	}
	if cfg.HTTPAddr != "" {
		if err := s.startHTTP(cfg.HTTPAddr); err != nil {
			s.lis.Close()
			s.dns.close()
			s.stopRouting()
			return nil, fmt.Errorf("scheduler HTTP listen %s: %w", cfg.HTTPAddr, err)
		}
	}
	if cfg.MetricsAddr != "" {
		if s.metricsLis, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			s.lis.Close()
			s.dns.close()
			if s.httpSrv != nil {
				_ = s.httpSrv.Close()
			}
			s.stopRouting()
			return nil, fmt.Errorf("scheduler metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		s.serveMetrics(s.metricsLis)
	}
	s.srv = grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.metrics.grpc.UnaryServerInterceptor(), apierr.UnaryServerInterceptor(s.log)),
		grpc.ChainStreamInterceptor(s.metrics.grpc.StreamServerInterceptor(), apierr.StreamServerInterceptor(s.log)),
	)
	outpostv1.RegisterSchedulerServiceServer(s.srv, &resolver{s: s})
	h := health.NewServer()
	healthpb.RegisterHealthServer(s.srv, h)
	reflection.Register(s.srv)
	s.metrics.grpc.InitializeMetrics(s.srv)
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc serve", "err", err)
		}
	}()
	s.log.Info("scheduler serving", "grpc", s.GRPCAddr(), "dns", s.DNSAddr(), "zone", cfg.CNAMESuffix)
	return s, nil
}

// Run starts a scheduler and serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	s.Close()
	return nil
}

// GRPCAddr is the bound gRPC address.
func (s *Scheduler) GRPCAddr() string { return s.lis.Addr().String() }

// GossipAddr is the address the scheduler gossips on ("" without gossip).
func (s *Scheduler) GossipAddr() string {
	if s.gossip == nil {
		return ""
	}
	return s.gossip.Addr()
}

// DNSAddr is the bound DNS address (UDP and TCP).
func (s *Scheduler) DNSAddr() string { return s.dns.addr }

// Close stops both servers.
func (s *Scheduler) Close() {
	stopped := make(chan struct{})
	go func() { s.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		s.srv.Stop()
	}
	<-s.done
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.httpSrv.Shutdown(ctx)
		cancel()
	}
	if s.metricsSrv != nil {
		_ = s.metricsSrv.Close()
	}
	s.dns.close()
	s.stopRouting()
}

// MetricsAddr is the address /metrics is served on ("" when disabled).
func (s *Scheduler) MetricsAddr() string {
	if s.metricsLis == nil {
		return ""
	}
	return s.metricsLis.Addr().String()
}

// resolver implements outpostv1.SchedulerServiceServer.
type resolver struct {
	outpostv1.UnimplementedSchedulerServiceServer
	s *Scheduler
}

var _ outpostv1.SchedulerServiceServer = (*resolver)(nil)
