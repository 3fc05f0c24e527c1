// Package devcluster runs a whole Outpost cluster in one process for local
// development: it is `make dev`, the first thing a newcomer runs. It starts
// the controller with its embedded etcd, a demo origin, a scheduler, three
// edge nodes on loopback addresses, and Pebble, a test ACME CA, that gives
// the controller free certificates (EnableHttps free); sets up a demo account, tokens and
// a pre-configured domain through the real gRPC API; writes every address
// and token to DIR/endpoints.json; and prints what to try.
//
// All state lives in one directory, so a second start reuses the etcd data,
// the tokens and the certificates, and the set-up is idempotent.
package devcluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/acmetest"
	"github.com/outpost-cdn/outpost/node"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler"
)

// Cluster is a running dev cluster.
type Cluster struct {
	cfg       Config
	log       *slog.Logger
	ctrl      *controller.Controller
	acme      *acmetest.CA
	origin    *origin
	sched     *scheduler.Scheduler
	nodes     []*node.Node
	ep        Endpoints
	closeOnce sync.Once
}

// Start starts every component, sets the demo up through the API and writes
// endpoints.json. It returns once everything serves; Close stops it.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	log := cfg.Logger
	c := &Cluster{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	p := makePlan(&cfg)
	if err := p.check(); err != nil {
		return nil, err
	}
	opToken, err := operatorToken(dir)
	if err != nil {
		return nil, err
	}
	// The ACME CA before the controller, which needs its address. It
	// validates on edge-1, whose port is known from the plan.
	var acmeRoot string
	if c.acme, acmeRoot, err = startACME(dir, p, cfg.NodeIPs[0], log); err != nil {
		return nil, err
	}
	// The origin first: the controller must allow its ports, which may have
	// been picked by the kernel.
	if c.origin, err = startOrigin(dir, p.originHTTP, p.originHTTPS, log); err != nil {
		return nil, err
	}
	c.ctrl, err = controller.Start(ctx, controller.Config{
		ListenAddr:     p.controller,
		DataDir:        filepath.Join(dir, "controller"),
		EtcdClientAddr: p.etcdClient,
		EtcdPeerAddr:   p.etcdPeer,
		CNAMESuffix:    cfg.CNAMESuffix,
		OriginPorts:    []uint32{80, 443, c.origin.httpPort(), c.origin.httpsPort()},
		// The keyring is generated in DataDir at first start and kept.
		BootstrapToken: opToken,
		// The cluster CA, for outpostctl (OUTPOST_TLS_CA) and the set-up.
		CACertOut: filepath.Join(dir, caCertFile),
		// Free certificates from the dev ACME CA. A failed validation is
		// retried after 15 s rather than 10 min: Pebble has no rate limits.
		AcmeDirectoryURL:  c.acme.DirectoryURL,
		AcmeCARoots:       c.acme.TLSRootsPEM,
		AcmeRetryMin:      15 * time.Second,
		Logger:            log,
		EtcdUnsafeNoFsync: cfg.EtcdUnsafeNoFsync,
	})
	if err != nil {
		return nil, fmt.Errorf("start the controller: %w", err)
	}
	s, err := runSetup(ctx, dir, c.ctrl.Addr(), opToken, c.origin, log)
	if err != nil {
		return nil, err
	}
	czf := filepath.Join(dir, coverageZoneFile)
	if err := writeCoverageZone(czf); err != nil {
		return nil, err
	}
	// Each member joins with a one-time token the first time; then it
	// keeps its certificate in its data dir and renews it.
	join := func(name string, role outpostv1.MemberRole) (string, error) {
		return joinToken(ctx, c.ctrl.Addr(), filepath.Join(dir, caCertFile), opToken, name, role)
	}
	if c.sched, err = startScheduler(ctx, dir, p, c.ctrl.Addr(), join, cfg.CNAMESuffix, czf, log); err != nil {
		return nil, err
	}
	var nodeEps []NodeEndpoint
	if c.nodes, nodeEps, err = startNodes(ctx, dir, p, c.ctrl.Addr(), join, p.schedGossip, log); err != nil {
		return nil, err
	}
	waitConfigured(ctx, c.nodes, 20*time.Second, log)

	c.ep = Endpoints{
		Dir:             dir,
		EtcdEndpoints:   c.ctrl.EtcdEndpoints(),
		Controller:      c.ctrl.Addr(),
		Account:         DemoAccount,
		Token:           s.demoToken,
		OperatorToken:   opToken,
		CAFile:          filepath.Join(dir, caCertFile),
		CNAMESuffix:     cfg.CNAMESuffix,
		SchedulerGRPC:   c.sched.GRPCAddr(),
		SchedulerDNS:    c.sched.DNSAddr(),
		Nodes:           nodeEps,
		OriginHTTP:      c.origin.httpAddr,
		OriginHTTPS:     c.origin.httpsAddr,
		DemoDomain:      DemoDomain,
		DemoOriginNames: append([]string(nil), originNames...),
		DemoCNAME:       s.demoCNAME,
		DemoCertFile:    filepath.Join(dir, demoCertFile),
		OriginCAFile:    c.origin.caFile,
		AcmeDirectory:   c.acme.DirectoryURL,
		AcmeDNS:         c.acme.DNSAddr(),
		AcmeRootFile:    acmeRoot,
	}
	c.ep.DemoCAFiles = []string{c.ep.DemoCertFile, c.ep.OriginCAFile}
	c.ep.CoverageZoneFile = czf
	c.ep.DemoClientSubnets = map[string]string{}
	for _, r := range demoRegions {
		c.ep.DemoClientSubnets[r.name] = r.clientSubnet
	}
	if err := writeEndpoints(c.EndpointsPath(), c.ep); err != nil {
		return nil, fmt.Errorf("write %s: %w", EndpointsFile, err)
	}
	log.Info("dev cluster ready", "dir", dir, "controller", c.ep.Controller, "endpoints", c.EndpointsPath())
	return c, nil
}

// Endpoints returns where everything is, as written to endpoints.json.
func (c *Cluster) Endpoints() Endpoints { return c.ep }

// EndpointsPath is the path of endpoints.json.
func (c *Cluster) EndpointsPath() string { return filepath.Join(c.cfg.Dir, EndpointsFile) }

// Close stops everything in reverse order of start: edge nodes, scheduler,
// demo origin, the controller and its etcd, then the ACME CA. It is safe to
// call more than once.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		if c.nodes != nil {
			closeNodes(c.nodes)
		}
		if c.sched != nil {
			c.sched.Close()
		}
		if c.origin != nil {
			c.origin.close()
		}
		if c.ctrl != nil {
			c.ctrl.Close()
		}
		if c.acme != nil {
			c.acme.Close()
		}
	})
}

// Run starts the cluster, prints what to try to cfg.Stdout and serves until
// ctx is done.
func Run(ctx context.Context, cfg Config) error {
	c, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.Stdout != nil {
		printTry(cfg.Stdout, c.ep, c.EndpointsPath())
	}
	<-ctx.Done()
	c.log.Info("stopping the dev cluster")
	start := time.Now()
	c.Close()
	c.log.Info("dev cluster stopped", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Main is the outpost-dev command: it parses args, sets up logging, and runs
// the cluster until SIGINT or SIGTERM. It returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outpost-dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: outpost-dev [flags]\n\nRuns a whole Outpost cluster (controller and etcd, scheduler, three edge\nnodes, a demo origin, an ACME CA for free certificates) in the foreground.\nCtrl-C stops it.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var cfg Config
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "outpost-dev: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logOut := stderr
	if cfg.LogFile {
		path := filepath.Join(cfg.Dir, "logs", "outpost.log")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			fmt.Fprintf(stderr, "outpost-dev: %v\n", err)
			return 1
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "outpost-dev: %v\n", err)
			return 1
		}
		defer f.Close()
		fmt.Fprintf(stderr, "outpost-dev: logging to %s\n", path)
		logOut = f
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: cfg.LogLevel}))
	cfg.Stdout = stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one kills at once.
		<-ctx.Done()
		stop()
	}()
	if err := Run(ctx, cfg); err != nil {
		cfg.Logger.Error("outpost-dev failed", "err", err)
		if cfg.LogFile {
			fmt.Fprintf(stderr, "outpost-dev: %v\n", err)
		}
		return 1
	}
	return 0
}
