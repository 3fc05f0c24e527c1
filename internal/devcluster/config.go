package devcluster

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
)

// Defaults of the command-line flags.
const (
	DefaultDir           = ".outpost-dev"
	DefaultBasePort      = 7000
	DefaultNodeHTTPPort  = 8080
	DefaultNodeHTTPSPort = 8443
	DefaultCNAMESuffix   = "cdn.outpost.test"
)

// DefaultNodeIPs are the loopback addresses of the three edge nodes. All of
// 127.0.0.0/8 is loopback on Linux, so they bind without any set-up.
var DefaultNodeIPs = []string{"127.0.1.1", "127.0.1.2", "127.0.1.3"}

// Port offsets from Config.BasePort.
const (
	offController  = 0
	offAcmeDir     = 14 // the dev ACME CA's directory (Pebble, HTTPS)
	offAcmeDNS     = 15 // the DNS server Pebble validates through (TCP)
	offEtcdClient  = 379
	offEtcdPeer    = 380
	offSchedGRPC   = 100
	offSchedDNS    = 53
	offSchedGossip = 946
	offOriginHTTP  = 80
	offOriginHTTPS = 443
	// offMax is the highest offset.
	offMax = offSchedGossip
)

// Config says where the dev cluster keeps its state and listens. The zero
// value of a port means "any free port", which is what tests use; the
// command-line defaults are the fixed ports of `make dev`.
type Config struct {
	// Dir holds all state: etcd data, tokens, certificates, node data,
	// endpoints.json and, with LogFile, the log. Default .outpost-dev.
	Dir string
	// BasePort places the cluster's own services on 127.0.0.1: controller
	// BasePort, etcd client BasePort+379 and peer BasePort+380, scheduler
	// gRPC BasePort+100, DNS BasePort+53 (UDP and TCP) and gossip
	// BasePort+946 (UDP and TCP), demo origin HTTP BasePort+80 and HTTPS
	// BasePort+443, the dev ACME CA's directory BasePort+14 and the DNS
	// server it validates through BasePort+15 (TCP). 0 picks free ports.
	BasePort int
	// NodeHTTPPort and NodeHTTPSPort are the edge nodes' ports, on each of
	// NodeIPs. 0 picks free ports.
	NodeHTTPPort, NodeHTTPSPort int
	// NodeIPs are the addresses of edge-1, edge-2 and edge-3. Default
	// DefaultNodeIPs.
	NodeIPs []string
	// CNAMESuffix is the zone domains get their CNAME in; the scheduler
	// answers for it. Default cdn.outpost.test.
	CNAMESuffix string
	// LogFile sends the logs to Dir/logs/outpost.log instead of stderr
	// (used by Main).
	LogFile bool
	// LogLevel is the minimum level logged (used by Main).
	LogLevel slog.Level
	// Logger receives the logs of every component; default slog.Default().
	Logger *slog.Logger
	// Stdout receives the "what to try" block printed by Run; default
	// io.Discard.
	Stdout io.Writer
	// EtcdUnsafeNoFsync disables fsync in etcd: tests only.
	EtcdUnsafeNoFsync bool
}

// RegisterFlags binds the configuration to command-line flags with the
// defaults of `make dev`.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Dir, "dir", DefaultDir, "directory of the cluster's state (etcd data, tokens, certificates, endpoints.json)")
	fs.IntVar(&c.BasePort, "base-port", DefaultBasePort, "first port of the services on 127.0.0.1: controller +0, ACME CA directory +14 and its DNS +15, scheduler DNS +53, origin HTTP +80, scheduler gRPC +100, etcd +379/+380, origin HTTPS +443, scheduler gossip +946")
	fs.IntVar(&c.NodeHTTPPort, "node-http-port", DefaultNodeHTTPPort, "HTTP port of every edge node")
	fs.IntVar(&c.NodeHTTPSPort, "node-https-port", DefaultNodeHTTPSPort, "HTTPS port of every edge node")
	c.NodeIPs = append([]string(nil), DefaultNodeIPs...)
	fs.Func("node-ips", "comma-separated addresses of the three edge nodes (default "+strings.Join(DefaultNodeIPs, ",")+")", func(s string) error {
		var ips []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				ips = append(ips, p)
			}
		}
		c.NodeIPs = ips
		return nil
	})
	fs.StringVar(&c.CNAMESuffix, "cname-suffix", DefaultCNAMESuffix, "zone under which domains get their CNAME")
	fs.BoolVar(&c.LogFile, "log-file", false, "write the logs to DIR/logs/outpost.log instead of stderr")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
}

func (c *Config) setDefaults() error {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if len(c.NodeIPs) == 0 {
		c.NodeIPs = append([]string(nil), DefaultNodeIPs...)
	}
	if c.CNAMESuffix == "" {
		c.CNAMESuffix = DefaultCNAMESuffix
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.BasePort < 0 || c.BasePort+offMax > 65535 {
		return fmt.Errorf("--base-port %d is out of range: the cluster uses ports up to base+%d, so use 1-%d (or 0 for free ports)", c.BasePort, offMax, 65535-offMax)
	}
	for _, p := range []struct {
		flag string
		port int
	}{{"--node-http-port", c.NodeHTTPPort}, {"--node-https-port", c.NodeHTTPSPort}} {
		if p.port < 0 || p.port > 65535 {
			return fmt.Errorf("%s %d is out of range", p.flag, p.port)
		}
	}
	if c.NodeHTTPPort != 0 && c.NodeHTTPPort == c.NodeHTTPSPort {
		return errors.New("--node-http-port and --node-https-port must differ")
	}
	if len(c.NodeIPs) != len(nodePlan) {
		return fmt.Errorf("--node-ips needs %d addresses, got %d", len(nodePlan), len(c.NodeIPs))
	}
	seen := map[string]bool{}
	for _, ip := range c.NodeIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("--node-ips: %q is not an IP address", ip)
		}
		if seen[ip] {
			return fmt.Errorf("--node-ips: %s is listed twice", ip)
		}
		seen[ip] = true
	}
	return nil
}

// nodeSpec is one edge node of the dev cluster.
type nodeSpec struct {
	name, region string
	lat, lon     float64
}

// demoRegions are the dev regions as the scheduler's coverage zone knows
// them: where each is, and a documentation-range client subnet placed there
// (clients are only ever named in EDNS Client Subnet options, never reached).
var demoRegions = []struct {
	name         string
	lat, lon     float64
	clientSubnet string
}{
	{name: "east", lat: 40.7, lon: -74.0, clientSubnet: "198.51.100.0/24"},
	{name: "west", lat: 37.8, lon: -122.4, clientSubnet: "203.0.113.0/24"},
}

// nodePlan is the dev cluster's edge nodes: two in the east, one in the west.
var nodePlan = []nodeSpec{
	{name: "edge-1", region: "east", lat: 40.7, lon: -74.0},
	{name: "edge-2", region: "east", lat: 39.0, lon: -77.5},
	{name: "edge-3", region: "west", lat: 37.4, lon: -122.1},
}
