package node

import (
	"flag"
	"strconv"
	"time"

	"github.com/outpost-cdn/outpost/internal/cmdutil"
)

// RegisterFlags binds the configuration to flags with OUTPOST_* environment
// defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", cmdutil.Env("OUTPOST_NODE_NAME", ""), "node name, unique in the cluster (env OUTPOST_NODE_NAME)")
	fs.StringVar(&c.Region, "region", cmdutil.Env("OUTPOST_NODE_REGION", ""), "region the node serves (env OUTPOST_NODE_REGION)")
	lat, _ := strconv.ParseFloat(cmdutil.Env("OUTPOST_NODE_LATITUDE", "0"), 64)
	lon, _ := strconv.ParseFloat(cmdutil.Env("OUTPOST_NODE_LONGITUDE", "0"), 64)
	fs.Float64Var(&c.Latitude, "latitude", lat, "node latitude in degrees (env OUTPOST_NODE_LATITUDE)")
	fs.Float64Var(&c.Longitude, "longitude", lon, "node longitude in degrees (env OUTPOST_NODE_LONGITUDE)")
	c.Controllers = cmdutil.List(cmdutil.Env("OUTPOST_CONTROLLERS", "127.0.0.1:7000"))
	fs.Func("controllers", "comma-separated controller gRPC addresses (env OUTPOST_CONTROLLERS)", func(s string) error {
		c.Controllers = cmdutil.List(s)
		return nil
	})
	fs.StringVar(&c.JoinToken, "join-token", cmdutil.Env("OUTPOST_NODE_JOIN_TOKEN", ""), "one-time join token (outpostctl node join-token create), needed until the data dir holds the node's certificate (env OUTPOST_NODE_JOIN_TOKEN)")
	fs.StringVar(&c.CAFile, "ca-file", cmdutil.Env("OUTPOST_CA_FILE", ""), "PEM roots to trust for the controllers besides the cluster CA, when they serve an operator's certificate (env OUTPOST_CA_FILE)")
	fs.StringVar(&c.CAPin, "ca-pin", cmdutil.Env("OUTPOST_CA_PIN", ""), "sha256:<hex> pin of the cluster CA, overriding the one in the join token (env OUTPOST_CA_PIN)")
	fs.StringVar(&c.HTTPAddr, "http", cmdutil.Env("OUTPOST_HTTP_ADDR", ":8080"), "HTTP listen address (env OUTPOST_HTTP_ADDR)")
	fs.StringVar(&c.HTTPSAddr, "https", cmdutil.Env("OUTPOST_HTTPS_ADDR", ":8443"), "HTTPS listen address (env OUTPOST_HTTPS_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", cmdutil.Env("OUTPOST_NODE_DATA_DIR", "outpost-node"), "directory for the last good config and its keyring (env OUTPOST_NODE_DATA_DIR)")
	fs.StringVar(&c.KeyringFile, "keyring-file", cmdutil.Env("OUTPOST_NODE_KEYRING_FILE", ""), "keyring sealing private keys in the persisted config; default: generated in the data dir (env OUTPOST_NODE_KEYRING_FILE)")
	fs.StringVar(&c.AdvertiseHTTP, "advertise-http", cmdutil.Env("OUTPOST_ADVERTISE_HTTP", ""), "public HTTP host:port given to clients; default: the listen address (env OUTPOST_ADVERTISE_HTTP)")
	fs.StringVar(&c.AdvertiseHTTPS, "advertise-https", cmdutil.Env("OUTPOST_ADVERTISE_HTTPS", ""), "public HTTPS host:port given to clients; default: the listen address (env OUTPOST_ADVERTISE_HTTPS)")
	c.Gossip.RegisterFlags(fs)
	fs.Float64Var(&c.Capacity, "capacity", 1, "relative capacity weight in scheduling")
	fs.BoolVar(&c.AccessLog, "access-log", cmdutil.Env("OUTPOST_ACCESS_LOG", "") == "true", "log every request, one structured line each (env OUTPOST_ACCESS_LOG=true)")
	envInt64 := func(name string, def int64) int64 {
		if v, err := strconv.ParseInt(cmdutil.Env(name, ""), 10, 64); err == nil {
			return v
		}
		return def
	}
	envDuration := func(name string, def time.Duration) time.Duration {
		if v, err := time.ParseDuration(cmdutil.Env(name, "")); err == nil {
			return v
		}
		return def
	}
	fs.Int64Var(&c.CacheMemoryBytes, "cache-memory-bytes", envInt64("OUTPOST_CACHE_MEMORY_BYTES", 256<<20), "bytes the memory cache may hold (env OUTPOST_CACHE_MEMORY_BYTES)")
	fs.StringVar(&c.CacheDir, "cache-dir", cmdutil.Env("OUTPOST_CACHE_DIR", ""), "directory for the disk cache tier, kept across restarts; empty: memory only (env OUTPOST_CACHE_DIR)")
	fs.DurationVar(&c.CacheSyncWait, "cache-sync-wait", envDuration("OUTPOST_CACHE_SYNC_WAIT", 10*time.Second), "after a restart, treat what the disk cache kept as absent until a controller's config (with the purges missed while down) is applied, or for this long at most; 0 serves it at once (env OUTPOST_CACHE_SYNC_WAIT)")
	fs.Int64Var(&c.CacheDiskBytes, "cache-disk-bytes", envInt64("OUTPOST_CACHE_DISK_BYTES", 10<<30), "bytes the disk cache tier may hold, with -cache-dir (env OUTPOST_CACHE_DISK_BYTES)")
	fs.BoolVar(&c.DisableFastPath, "disable-fast-path", cmdutil.Env("OUTPOST_DISABLE_FAST_PATH", "") == "true", "serve cache hits through net/http only, without the HTTP/1.1 hit fast path (env OUTPOST_DISABLE_FAST_PATH=true)")
	fs.BoolVar(&c.Pprof, "pprof", cmdutil.Env("OUTPOST_PPROF", "") == "true", "also serve Go profiles under /debug/pprof/ on the metrics address; keep it private (env OUTPOST_PPROF=true)")
	fs.StringVar(&c.MetricsAddr, "metrics", cmdutil.Env("OUTPOST_METRICS_ADDR", ""), "Prometheus metrics listen address; empty disables (env OUTPOST_METRICS_ADDR)")
}
