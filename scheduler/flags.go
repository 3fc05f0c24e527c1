package scheduler

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/outpost-cdn/outpost/internal/cmdutil"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// RegisterFlags binds the configuration to flags with OUTPOST_* environment
// defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GRPCAddr, "grpc", cmdutil.Env("OUTPOST_SCHEDULER_GRPC", "127.0.0.1:7100"), "gRPC listen address (env OUTPOST_SCHEDULER_GRPC)")
	fs.StringVar(&c.DNSAddr, "dns", cmdutil.Env("OUTPOST_SCHEDULER_DNS", "127.0.0.1:7053"), "DNS listen address, UDP and TCP (env OUTPOST_SCHEDULER_DNS)")
	c.Controllers = cmdutil.List(cmdutil.Env("OUTPOST_CONTROLLERS", "127.0.0.1:7000"))
	fs.Func("controllers", "comma-separated controller gRPC addresses (env OUTPOST_CONTROLLERS)", func(s string) error {
		c.Controllers = cmdutil.List(s)
		return nil
	})
	fs.StringVar(&c.JoinToken, "join-token", cmdutil.Env("OUTPOST_SCHEDULER_JOIN_TOKEN", ""), "one-time join token for the scheduler role (outpostctl node join-token create --role scheduler), needed until the data dir holds its certificate (env OUTPOST_SCHEDULER_JOIN_TOKEN)")
	fs.StringVar(&c.CAFile, "ca-file", cmdutil.Env("OUTPOST_CA_FILE", ""), "PEM roots to trust for the controllers besides the cluster CA, when they serve an operator's certificate (env OUTPOST_CA_FILE)")
	fs.StringVar(&c.CAPin, "ca-pin", cmdutil.Env("OUTPOST_CA_PIN", ""), "sha256:<hex> pin of the cluster CA, overriding the one in the join token (env OUTPOST_CA_PIN)")
	fs.StringVar(&c.DataDir, "data-dir", cmdutil.Env("OUTPOST_SCHEDULER_DATA_DIR", "outpost-scheduler"), "directory keeping the scheduler's key and certificate (env OUTPOST_SCHEDULER_DATA_DIR)")
	fs.StringVar(&c.CNAMESuffix, "cname-suffix", cmdutil.Env("OUTPOST_CNAME_SUFFIX", "cdn.outpost.test"), "zone the scheduler answers for (env OUTPOST_CNAME_SUFFIX)")
	fs.StringVar(&c.Name, "name", cmdutil.Env("OUTPOST_SCHEDULER_NAME", ""), "scheduler name in gossip (env OUTPOST_SCHEDULER_NAME; default scheduler-<grpc port>)")
	c.Gossip.RegisterFlags(fs)
	fs.StringVar(&c.GeoIPFile, "geoip", cmdutil.Env("OUTPOST_GEOIP_FILE", ""), "MaxMind-format city database (GeoLite2-City, DB-IP City) (env OUTPOST_GEOIP_FILE)")
	fs.StringVar(&c.CoverageZoneFile, "coverage-zone", cmdutil.Env("OUTPOST_COVERAGE_ZONE_FILE", ""), "coverage-zone JSON file mapping client CIDRs to regions; wins over GeoIP (env OUTPOST_COVERAGE_ZONE_FILE)")
	fs.Float64Var(&c.DefaultLatitude, "default-latitude", 0, "latitude for clients no source places")
	fs.Float64Var(&c.DefaultLongitude, "default-longitude", 0, "longitude for clients no source places")
	fs.Func("region-scope", "comma-separated REGION=mainland|overseas|global: the scope of each node region (unlisted regions are overseas)", func(v string) error {
		c.RegionScope = map[string]outpostv1.Scope{}
		for _, kv := range cmdutil.List(v) {
			region, scope, ok := strings.Cut(kv, "=")
			val, known := outpostv1.Scope_value["SCOPE_"+strings.ToUpper(scope)]
			if !ok || !known {
				return fmt.Errorf("bad region scope %q: want REGION=mainland|overseas|global", kv)
			}
			c.RegionScope[region] = outpostv1.Scope(val)
		}
		return nil
	})
	fs.IntVar(&c.Answers, "answers", 2, "nodes per DNS answer")
	fs.StringVar(&c.MetricsAddr, "metrics", cmdutil.Env("OUTPOST_METRICS_ADDR", ""), "Prometheus metrics listen address (plain HTTP, /metrics); empty disables (env OUTPOST_METRICS_ADDR)")
	fs.StringVar(&c.HTTPAddr, "http", cmdutil.Env("OUTPOST_SCHEDULER_HTTP", ""), "HTTP mode listen address: 302 to the nearest node; empty is off (env OUTPOST_SCHEDULER_HTTP)")
	ttl, err := time.ParseDuration(cmdutil.Env("OUTPOST_SCHEDULER_TTL", "30s"))
	if err != nil {
		ttl = 30 * time.Second
	}
	fs.DurationVar(&c.TTL, "ttl", ttl, "TTL of DNS answers (env OUTPOST_SCHEDULER_TTL)")
}
