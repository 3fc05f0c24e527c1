// Package node is the Outpost edge node: it takes its configuration from the
// controllers' config stream, terminates HTTP and HTTPS (certificates chosen
// by SNI), and serves each accelerated domain from its origins. A node keeps
// serving its last good configuration when the controllers are unreachable.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-cdn/outpost/internal/membership"
	"github.com/outpost-cdn/outpost/node/cache"
)

// Config is what an edge node needs.
type Config struct {
	// Name identifies the node in the cluster; required.
	Name string
	// Region and location place the node for scheduling.
	Region              string
	Latitude, Longitude float64
	// Controllers are controller gRPC addresses; the node fails over
	// between them.
	Controllers []string
	// JoinToken is a one-time join token (outpostctl node join-token
	// create): the node joins with it when DataDir holds no valid member
	// certificate for Name, and then authenticates to the controllers with
	// that certificate (mutual TLS), renewing it before it expires.
	JoinToken string
	// CAFile is PEM of roots to trust for the controllers besides the
	// cluster CA, for controllers serving an operator's certificate. With
	// it, the join verifies the controllers against it, not the token's pin.
	CAFile string
	// CAPin overrides the CA pin in the join token ("sha256:<hex>").
	CAPin string
	// HTTPAddr and HTTPSAddr are the listen addresses. Defaults :8080, :8443.
	HTTPAddr, HTTPSAddr string
	// DataDir keeps the last good config. Default ./outpost-node.
	DataDir string
	// AdvertiseHTTP and AdvertiseHTTPS are the public host:port the
	// scheduler hands to clients. Default: the bound listen addresses.
	AdvertiseHTTP, AdvertiseHTTPS string
	// KeyringFile seals private keys in the persisted config. Default: a
	// keyring generated in DataDir (mode 0600).
	KeyringFile string
	// CacheMemoryBytes bounds the memory cache. Default 256 MiB.
	CacheMemoryBytes int64
	// CacheDir, if not empty, adds a disk tier to the cache that survives
	// restarts. Default "": memory only.
	CacheDir string
	// CacheDiskBytes bounds the disk tier. Default 10 GiB.
	CacheDiskBytes int64
	// CacheSyncWait holds what the disk tier kept from before a restart
	// (a request for it is a miss, fetched from the origin) until the node
	// has applied a config snapshot from a controller, with the purges it
	// missed while it was down, or until this long has passed, whichever
	// is first. 0: the kept entries are served at once (the binary's flag
	// defaults to 10 s).
	CacheSyncWait time.Duration
	// Gossip joins the node to the cluster's memberlist gossip.
	Gossip membership.Options
	// Capacity is the node's relative weight in scheduling. Default 1.
	Capacity float64
	// MaxInFlight is the number of requests in flight at which the node
	// reports itself fully loaded. Default 10,000.
	MaxInFlight int64
	// AccessLog logs one structured line per request (off by default).
	AccessLog bool
	// DisableFastPath serves every request through net/http, without the
	// HTTP/1.1 cache-hit fast path (fastpath.go). For comparison and as
	// an escape hatch; the responses are the same.
	DisableFastPath bool
	// MetricsAddr serves Prometheus metrics; "" disables.
	MetricsAddr string
	// Pprof also serves Go's profiles (net/http/pprof) under /debug/pprof/
	// on MetricsAddr, for profiling a live node. Keep that address private.
	Pprof  bool
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Name == "" {
		return errors.New("node: a name is required")
	}
	if err := c.Gossip.Validate(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8080"
	}
	if c.HTTPSAddr == "" {
		c.HTTPSAddr = ":8443"
	}
	if c.DataDir == "" {
		c.DataDir = "outpost-node"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Capacity <= 0 {
		c.Capacity = 1
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 10000
	}
	return nil
}

// Request limits: header bytes per request (requests over it get 431) and
// concurrent HTTP/2 streams per connection.
const (
	maxHeaderBytes       = 64 << 10
	maxConcurrentStreams = 250
)

// Node is a running edge node.
type Node struct {
	cfg Config
	log *slog.Logger

	// state is the applied configuration, swapped atomically.
	state atomic.Pointer[state]

	persist    *persister
	saver      *saver
	streamer   *streamer
	metrics    *metrics
	transports *transports
	rp         *httputil.ReverseProxy
	cache      *cache.Cache
	tasks      *tasks
	via        string
	viaValue   []string // []string{via}, shared by responses
	metricsSrv *http.Server
	metricsLis net.Listener
	cancel     context.CancelFunc
	gossip     *membership.Gossiper
	inFlight   atomic.Int64
	// fastPath enables the HTTP/1.1 cache-hit fast path (fastpath.go);
	// fast tracks its connections.
	fastPath atomic.Bool
	fast     *fastConns
	// draining: an operator drained this node (outpostctl node drain); it
	// still serves, and tells the schedulers through gossip.
	draining atomic.Bool
	// servePrevious ends the hold on the disk tier's entries from before
	// the restart (Config.CacheSyncWait), once.
	servePrevious     sync.Once
	servePreviousTime *time.Timer

	httpLis, httpsLis net.Listener
	httpSrv, httpsSrv *http.Server
	wg                sync.WaitGroup
}

// Start binds the listeners and serves until Close.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("role", "node", "node", cfg.Name), metrics: newMetrics(), transports: &transports{},
		via: "1.1 " + cfg.Name + " (outpost)"}
	n.viaValue = []string{n.via}
	n.metrics.reg.MustRegister(certCollector{n})
	n.rp = n.newReverseProxy()
	hold := cfg.CacheDir != "" && cfg.CacheSyncWait > 0
	if n.cache, err = cache.Open(cache.Config{MaxBytes: cfg.CacheMemoryBytes, Dir: cfg.CacheDir, DiskBytes: cfg.CacheDiskBytes,
		Logger: n.log, HoldPrevious: hold}, n.metrics.evictions.Inc); err != nil {
		return nil, fmt.Errorf("node cache: %w", err)
	}
	if hold {
		n.servePreviousTime = time.AfterFunc(cfg.CacheSyncWait, func() { n.serveCachedFromBefore(false) })
	}
	n.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "outpost_edge_cache_disk_held",
		Help: "1 while what the disk cache kept from before a restart is not served, until the config (with the purges missed while down) is in sync or -cache-sync-wait has passed.",
	}, func() float64 {
		if n.cache.HoldingPrevious() {
			return 1
		}
		return 0
	}))
	n.tasks = newTasks(n)
	n.state.Store(emptyState)
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if n.persist, err = newPersister(cfg.DataDir, cfg.KeyringFile); err != nil {
		return nil, err
	}
	n.saver = newSaver(n.persist, n.log)
	// Static stability: serve the last good config at once, before (and
	// whether or not) any controller answers.
	if d, err := n.persist.load(ctx); err != nil {
		n.log.Error("cannot load the persisted config; starting empty", "err", err)
	} else if d != nil {
		if st, err := build(d, emptyState); err != nil {
			n.log.Error("persisted config does not build; starting empty", "err", err)
		} else {
			n.state.Store(st)
			n.applyCluster(d)
			n.metrics.revision.Set(float64(st.revision))
			n.tasks.restore(d)
			n.log.Info("serving the persisted config", "revision", st.revision, "domains", len(st.sites))
		}
	}
	if n.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("node HTTP listen %s: %w", cfg.HTTPAddr, err)
	}
	if n.httpsLis, err = net.Listen("tcp", cfg.HTTPSAddr); err != nil {
		return nil, fmt.Errorf("node HTTPS listen %s: %w", cfg.HTTPSAddr, err)
	}
	// Handshake refusals are routine (scanners, SNI-less clients): they are
	// counted in metrics and logged at debug level only.
	errLog := slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)
	n.httpSrv = &http.Server{Handler: http.HandlerFunc(n.serveHTTP), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idleTimeout,
		MaxHeaderBytes: maxHeaderBytes, ErrorLog: errLog, ConnContext: connContext}
	// The HTTPS server sees connections whose TLS the node already
	// terminated (edgeListener): HTTP/1.1, or HTTP/2 with prior knowledge
	// when ALPN chose h2.
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	n.httpsSrv = &http.Server{Handler: http.HandlerFunc(n.serveHTTP), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idleTimeout,
		MaxHeaderBytes: maxHeaderBytes, ErrorLog: errLog,
		ConnContext: connContext, Protocols: &protos,
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxConcurrentStreams, MaxReadFrameSize: 1 << 20}}
	n.fast = newFastConns()
	n.fastPath.Store(!cfg.DisableFastPath)
	n.serveEdge(n.httpSrv, &edgeListener{Listener: n.httpLis}, "http")
	n.serveEdge(n.httpsSrv, &edgeListener{Listener: n.httpsLis, tls: n.tlsConfig()}, "https")
	if cfg.MetricsAddr != "" {
		ml, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("node metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		n.metricsLis = ml
		mux := http.NewServeMux()
		mux.Handle("/metrics", n.metrics.handler())
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		n.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		n.serve(n.metricsSrv, ml)
	}
	if n.streamer, err = newStreamer(n); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.streamer.run(sctx) }()
	if cfg.Gossip.Addr != "" {
		if n.gossip, err = membership.NewGossiper(cfg.Gossip, cfg.Name, n.gossipMeta, n.log); err != nil {
			return nil, err
		}
		if st := n.state.Load(); st.source != nil {
			// The persisted config's keyring: gossip starts at once.
			n.gossip.ApplyControllerKeys(st.source.gossipKeys.GetKeys())
		}
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.gossipLoadLoop(sctx) }()
	}
	n.log.Info("edge node serving", "http", n.HTTPAddr(), "https", n.HTTPSAddr(), "controllers", cfg.Controllers)
	return n, nil
}

// apply builds, validates and swaps in a new config, then has it persisted
// in the background.
// On error the current config stays.
func (n *Node) apply(ctx context.Context, d *desired) error {
	prev := n.state.Load()
	st, err := build(d, prev)
	if err != nil {
		return err
	}
	n.state.Store(st)
	n.applyCluster(d)
	n.tasks.apply(ctx, d, st, prev.revision)
	n.metrics.revision.Set(float64(st.revision))
	n.saver.submit(d) // in the background: the ACK does not wait for the disk
	n.log.Debug("applied config", "revision", d.revision, "domains", len(st.sites))
	return nil
}

// serveCachedFromBefore ends the hold on what the disk tier kept from
// before the restart (Config.CacheSyncWait): synced says a controller's
// snapshot, and so every purge the node missed, has been applied.
func (n *Node) serveCachedFromBefore(synced bool) {
	if n.servePreviousTime == nil {
		return
	}
	n.servePrevious.Do(func() {
		n.servePreviousTime.Stop()
		n.cache.ServePrevious()
		if synced {
			n.log.Info("serving the disk cache kept from before the restart: the config is in sync")
			return
		}
		n.log.Warn("no config from a controller within the cache sync wait: serving the disk cache kept from before the restart; purges made while this node was down apply when a controller answers",
			"wait", n.cfg.CacheSyncWait)
	})
}

// WaitCacheIndexed blocks until the disk cache tier, if any, has indexed
// what an earlier run left in the cache directory.
func (n *Node) WaitCacheIndexed() { n.cache.WaitIndexed() }

// Revision is the revision of the config the node serves (0: none).
func (n *Node) Revision() int64 { return n.state.Load().revision }

func (n *Node) publicHTTP() string {
	if n.cfg.AdvertiseHTTP != "" {
		return n.cfg.AdvertiseHTTP
	}
	return n.HTTPAddr()
}

func (n *Node) publicHTTPS() string {
	if n.cfg.AdvertiseHTTPS != "" {
		return n.cfg.AdvertiseHTTPS
	}
	return n.HTTPSAddr()
}

func (n *Node) serve(srv *http.Server, l net.Listener) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("serve", "err", err)
		}
	}()
}

// Run starts a node and serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	n, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	n.Close()
	return nil
}

// HTTPAddr is the bound HTTP address.
func (n *Node) HTTPAddr() string { return n.httpLis.Addr().String() }

// MetricsAddr is the bound metrics address ("" when disabled).
func (n *Node) MetricsAddr() string {
	if n.metricsLis == nil {
		return ""
	}
	return n.metricsLis.Addr().String()
}

// HTTPSAddr is the bound HTTPS address.
func (n *Node) HTTPSAddr() string { return n.httpsLis.Addr().String() }

// Close stops serving, letting requests in flight finish for up to five
// seconds.
func (n *Node) Close() {
	if n.servePreviousTime != nil {
		n.servePreviousTime.Stop()
	}
	if n.gossip != nil {
		n.gossip.Close() // leave first, so schedulers stop sending clients
	}
	if n.cancel != nil {
		n.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range []net.Listener{n.httpLis, n.httpsLis} {
		if l != nil {
			l.Close() // ends the accept loops (serveEdge)
		}
	}
	var shut sync.WaitGroup
	if n.fast != nil {
		shut.Go(func() {
			deadline, _ := ctx.Deadline()
			n.fast.shutdown(deadline)
		})
	}
	for _, s := range []*http.Server{n.httpSrv, n.httpsSrv, n.metricsSrv} {
		if s != nil {
			shut.Go(func() { _ = s.Shutdown(ctx) })
		}
	}
	shut.Wait()
	n.wg.Wait()
	if n.streamer != nil {
		n.streamer.close()
	}
	if n.saver != nil {
		n.saver.close() // writes the last config applied
	}
	n.transports.closeIdle()
	n.cache.Close()
}
