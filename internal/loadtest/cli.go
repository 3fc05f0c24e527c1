package loadtest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit statuses of Main.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Main runs the outpost-loadtest command line with args (without the
// program name) and returns the exit status: 0 when the test ran (whatever
// its errors), 1 when it could not run, 2 on a usage mistake. The first
// SIGINT or SIGTERM stops the test and still reports; a second one kills
// the process.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal takes its default action
	}()
	return run(ctx, args, stdout, stderr)
}

// run is Main with its context passed in, for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if cmd == nil {
		cmd = root
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintf(stderr, "Error: %v (see '%s --help')\n", err, cmd.CommandPath())
		return exitUsage
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	return exitError
}

// usageError is a mistake in how the command was invoked: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func isCobraUsage(err error) bool {
	for _, p := range []string{"required flag(s)", "unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "invalid argument"} {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}

// runFlags are the flags of a test run that do not map one to one onto
// Config fields.
type runFlags struct {
	domains       []string
	domainsFile   string
	domainPattern string
	domainCount   int
	clientSubnet  string
	sizeMix       string
	plain         bool
	cacerts       []string
	jsonOut       string
	htmlOut       string
	quiet         bool
}

func newRootCommand(stderr io.Writer) *cobra.Command {
	var cfg Config
	var f runFlags
	root := &cobra.Command{
		Use:   "outpost-loadtest --duration D (--edge ADDR,... | --resolve dns|grpc ...) (--domain NAME | --domains FILE | --domain-pattern P --domain-count N) [flags]",
		Short: "Load-test Outpost edge nodes",
		Long: `outpost-loadtest sends HTTPS (or HTTP) requests to Outpost edge nodes as a
CDN's clients would, and reports throughput, latency percentiles (HDR
histogram), errors by kind, the cache hit ratio (X-Cache), requests per edge
address and node (Via), and the TLS resumption ratio.

Targets: fixed edge addresses (--edge), or per domain the nodes the scheduler
names, over DNS (--resolve dns --dns ADDR: an A query for the domain's CNAME,
with --client-subnet as EDNS Client Subnet; the port is --port) or over gRPC
(--resolve grpc --scheduler ADDR). Resolutions are cached for their TTL.

Models: with --rate, the open model sends requests at that fixed arrival
rate and measures latency from each request's intended send time (no
coordinated omission); requests that find every worker busy and the backlog
queue full are not sent and count as "backlog" errors. Without --rate, the
closed model runs --concurrency workers back to back for maximum throughput.

Every run is bounded by --duration (required, at most 1h) and --requests.
Only loopback targets are allowed unless --allow-remote is given. Ctrl-C
stops the test and still reports; a second Ctrl-C kills it.

Paths: each request fills --path with {i}, a URL rank drawn from a Zipf
curve over --urls ranks (rank 0 is the most popular), and {size}, a size
class label drawn from --size-mix by weight. The origin decides what each
path returns; the default, /{size}.bin?v={i} with size mix 1k:100, asks
/1k.bin (which the dev cluster's demo origin serves) with a distinct query
per URL, so every URL is its own cache entry.

See docs/loadtest.md.`,
		Example: `  # Against make dev: 500 req/s for 30 s, edges found through the scheduler's DNS
  outpost-loadtest --resolve dns --dns 127.0.0.1:7053 --port 8443 --client-subnet 198.51.100.0/24 \
    --domain www.demo.test --cacert .outpost-dev/demo/www.demo.test.crt \
    --rate 500 --duration 30s --html report.html --json report.json

  # Maximum throughput on fixed edges, HTTP/2, new connections with resumption
  outpost-loadtest --edge 127.0.1.1:8443,127.0.1.2:8443 --domain www.demo.test --insecure \
    --http2 --concurrency 32 --new-conn-ratio 0.2 --resume-ratio 0.9 --duration 10s

  # Merge the JSON results of instances run on several hosts
  outpost-loadtest merge a.json b.json --html all.html`,
		Args:          cobra.NoArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.apply(cmd, &cfg); err != nil {
				return err
			}
			if !f.quiet {
				cfg.Progress = stderr
			}
			res, err := Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return writeOutputs(cmd.OutOrStdout(), res, f.jsonOut, f.htmlOut)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	fl := root.Flags()
	fl.SortFlags = false
	fl.StringSliceVar(&cfg.Edges, "edge", nil, "edge `ADDRESSES` to send to, host:port, comma-separated")
	fl.StringVar(&cfg.Pick, "pick", "", "how to pick among several addresses: round-robin (default with --edge), random, or first (default with --resolve: the scheduler's best)")
	fl.StringVar(&cfg.Resolve, "resolve", "", "find each domain's edges through the scheduler: dns or grpc")
	fl.StringVar(&cfg.DNSServer, "dns", "", "scheduler DNS `ADDRESS`, host:port (with --resolve dns)")
	fl.StringVar(&cfg.Scheduler, "scheduler", "", "scheduler gRPC `ADDRESS`, host:port (with --resolve grpc)")
	fl.StringVar(&f.clientSubnet, "client-subnet", "", "place the client: EDNS Client Subnet `CIDR` of DNS queries, or its address as Resolve's client_ip")
	fl.StringVar(&cfg.CNAMESuffix, "cname-suffix", DefaultCNAMESuffix, "zone of the CNAMEs asked over DNS (DOMAIN.SUFFIX) for domains listed without one")
	fl.IntVar(&cfg.Port, "port", 0, "edge port used with DNS answers (default 443, or 80 with --plain)")
	fl.StringSliceVar(&f.domains, "domain", nil, "`DOMAIN` to request (repeatable, comma-separated)")
	fl.StringVar(&f.domainsFile, "domains", "", "`FILE` of domains, one per line, optionally followed by its CNAME; # comments")
	fl.StringVar(&f.domainPattern, "domain-pattern", "", "domain `PATTERN` with one %d, numbered from 1 to --domain-count")
	fl.IntVar(&f.domainCount, "domain-count", 0, "how many domains --domain-pattern makes (1 to 10000)")
	fl.IntVar(&cfg.URLs, "urls", DefaultURLs, "distinct URL ranks per size class; popularity follows a Zipf curve")
	fl.Float64Var(&cfg.ZipfS, "zipf-s", DefaultZipfS, "Zipf exponent s (> 1); larger is more skewed to the first URLs")
	fl.StringVar(&cfg.PathTemplate, "path", DefaultPathTemplate, "path `TEMPLATE`: {i} is the URL rank, {size} the size class label")
	fl.StringVar(&f.sizeMix, "size-mix", DefaultSizeMix, "size classes and their shares of requests, `LABEL:WEIGHT,...` (e.g. 1k:80,100k:20)")
	fl.BoolVar(&f.plain, "plain", false, "plain HTTP instead of HTTPS")
	fl.BoolVar(&cfg.HTTP2, "http2", false, "offer HTTP/2 (ALPN h2) as well as HTTP/1.1")
	fl.BoolVar(&cfg.Insecure, "insecure", false, "do not verify the edges' certificates")
	fl.StringSliceVar(&f.cacerts, "cacert", nil, "PEM `FILE` of certificates to trust for the edges (repeatable); default the system's")
	fl.Float64Var(&cfg.NewConnRatio, "new-conn-ratio", 0, "share of requests (0-1) sent on a new connection of their own; the rest reuse kept-alive connections")
	fl.Float64Var(&cfg.ResumeRatio, "resume-ratio", 1, "share of new connections (0-1) whose TLS handshake offers a cached session ticket; the rest do full handshakes")
	fl.Float64Var(&cfg.Rate, "rate", 0, "open model: requests per second (fixed arrival rate); 0 runs the closed model")
	fl.IntVar(&cfg.Concurrency, "concurrency", DefaultConcurrency, "workers, the bound on requests in flight")
	fl.IntVar(&cfg.Backlog, "backlog", DefaultBacklog, "open model: due requests that may wait for a worker; more count as backlog errors")
	fl.DurationVar(&cfg.Duration, "duration", 0, "how long to run (required, at most 1h)")
	fl.Int64Var(&cfg.Requests, "requests", DefaultRequests, "stop after this many requests")
	fl.DurationVar(&cfg.Timeout, "timeout", DefaultTimeout, "time limit of each request")
	fl.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow targets outside loopback (127.0.0.0/8, ::1)")
	fl.Uint64Var(&cfg.Seed, "seed", 0, "seed of the random choices (0: random)")
	fl.StringVar(&f.jsonOut, "json", "", "also write the result as JSON to `FILE` (for merge)")
	fl.StringVar(&f.htmlOut, "html", "", "also write an HTML report with plots to `FILE`")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress line every second on stderr")
	_ = root.MarkFlagRequired("duration")
	_ = root.MarkFlagFilename("domains")
	_ = root.MarkFlagFilename("cacert", "pem", "crt")

	root.AddCommand(newMergeCommand())
	return root
}

// apply completes cfg from the flags that need parsing or files, and checks
// the whole configuration.
func (f *runFlags) apply(cmd *cobra.Command, cfg *Config) error {
	if f.clientSubnet != "" {
		p, err := netip.ParsePrefix(f.clientSubnet)
		if err != nil {
			ip, err2 := netip.ParseAddr(f.clientSubnet)
			if err2 != nil {
				return usageErrorf("--client-subnet %q: %v", f.clientSubnet, err)
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		cfg.ClientSubnet = p
	}
	for _, d := range f.domains {
		cfg.Domains = append(cfg.Domains, Domain{Name: d})
	}
	if f.domainsFile != "" {
		ds, err := ReadDomainsFile(f.domainsFile)
		if err != nil {
			return usageErrorf("--domains: %v", err)
		}
		cfg.Domains = append(cfg.Domains, ds...)
	}
	if f.domainPattern != "" || cmd.Flags().Changed("domain-count") {
		if f.domainPattern == "" {
			return usageErrorf("--domain-count needs --domain-pattern")
		}
		ds, err := PatternDomains(f.domainPattern, f.domainCount)
		if err != nil {
			return usageErrorf("%v", err)
		}
		cfg.Domains = append(cfg.Domains, ds...)
	}
	if len(cfg.Domains) == 0 {
		return usageErrorf("no domain: give --domain, --domains or --domain-pattern with --domain-count")
	}
	mix, err := ParseSizeMix(f.sizeMix)
	if err != nil {
		return usageErrorf("--size-mix: %v", err)
	}
	cfg.SizeMix = mix
	if f.plain {
		cfg.Scheme = "http"
		for _, name := range []string{"http2", "insecure", "cacert", "resume-ratio"} {
			if cmd.Flags().Changed(name) {
				return usageErrorf("--%s is for HTTPS; it does not go with --plain", name)
			}
		}
	}
	if cfg.Insecure && len(f.cacerts) > 0 {
		return usageErrorf("--insecure and --cacert exclude each other")
	}
	if len(f.cacerts) > 0 {
		pool := x509.NewCertPool()
		for _, path := range f.cacerts {
			b, err := os.ReadFile(path)
			if err != nil {
				return usageErrorf("--cacert: %v", err)
			}
			if !pool.AppendCertsFromPEM(b) {
				return usageErrorf("--cacert %s: no PEM certificate in it", path)
			}
		}
		cfg.RootCAs = pool
	}
	if cfg.Duration > MaxDuration {
		return usageErrorf("--duration %s: at most %s", cfg.Duration, MaxDuration)
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	return nil
}

// Validate fills in the defaults of c and checks it, as Run does.
func (c *Config) Validate() error { return c.fill() }

// writeOutputs prints the text report and writes the JSON and HTML files.
func writeOutputs(stdout io.Writer, res *Result, jsonOut, htmlOut string) error {
	if err := res.WriteText(stdout); err != nil {
		return err
	}
	if jsonOut != "" {
		if err := res.WriteJSONFile(jsonOut); err != nil {
			return err
		}
	}
	if htmlOut != "" {
		if err := res.WriteHTMLFile(htmlOut); err != nil {
			return err
		}
	}
	return nil
}

func newMergeCommand() *cobra.Command {
	var jsonOut, htmlOut string
	cmd := &cobra.Command{
		Use:   "merge FILE.json... [--json FILE] [--html FILE]",
		Short: "Merge the JSON results of several runs",
		Long: `merge combines the JSON results (--json) of several outpost-loadtest runs,
typically instances run at the same time on several hosts, and prints the
report of the whole. Counts add up; the latency histograms and the
per-second histograms merge exactly, so the percentiles are those of all
requests together, not averages of percentiles. The merged run spans from
the first start to the last end, and its throughput is all responses over
that span: start the instances together.`,
		Example: `  outpost-loadtest merge host1.json host2.json --json all.json --html all.html`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("missing FILE.json")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var rs []*Result
			for _, p := range args {
				r, err := ReadResultFile(p)
				if err != nil {
					return err
				}
				rs = append(rs, r)
			}
			m, err := Merge(rs...)
			if err != nil {
				return err
			}
			return writeOutputs(cmd.OutOrStdout(), m, jsonOut, htmlOut)
		},
	}
	cmd.Flags().StringVar(&jsonOut, "json", "", "write the merged result as JSON to `FILE`")
	cmd.Flags().StringVar(&htmlOut, "html", "", "write an HTML report with plots to `FILE`")
	return cmd
}
