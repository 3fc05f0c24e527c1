package controller

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/outpost-cdn/outpost/internal/cmdutil"
)

// Config is everything a controller needs. Zero values mean the defaults
// documented on each field.
type Config struct {
	// ListenAddr is the gRPC address of the admin and node APIs.
	// Default 127.0.0.1:7000.
	ListenAddr string
	// EtcdEndpoints are the client URLs of an external etcd cluster. Empty
	// starts an embedded single-member etcd in DataDir.
	EtcdEndpoints []string
	// DataDir holds the embedded etcd and its generated keyring. Default
	// ./outpost-data.
	DataDir string
	// EtcdClientAddr and EtcdPeerAddr are the embedded etcd's listen
	// addresses. Defaults 127.0.0.1:2379 and 127.0.0.1:2380; port 0 picks one.
	EtcdClientAddr string
	EtcdPeerAddr   string
	// EtcdCAFile, EtcdCertFile and EtcdKeyFile are PEM files for TLS to an
	// external etcd (https:// endpoints): the CA bundle that signed the
	// members' server certificates (default: the system roots), and the
	// controller's client certificate and key, for members that require
	// client certificates (--client-cert-auth). The client certificate is
	// read again at each new connection, so renewing the files in place
	// needs no restart. EtcdServerName, when set, is the name checked in
	// the members' certificates instead of each endpoint's host. Setting
	// any of them requires every endpoint to be https://. See etcdtls.go.
	EtcdCAFile     string
	EtcdCertFile   string
	EtcdKeyFile    string
	EtcdServerName string
	// CNAMESuffix is the zone every domain's CNAME is placed under; the
	// scheduler answers for it. Default cdn.outpost.test.
	CNAMESuffix string
	// OriginPorts are the ports an origin may listen on. Default 80 and
	// 443, as the product documents say; operators with origins on other
	// ports (or the dev cluster) add theirs.
	OriginPorts []uint32
	// DefaultDomainQuota is the domains an account may have unless its own
	// quota says otherwise. Default 50.
	DefaultDomainQuota int
	// RefreshURLQuota, RefreshDirectoryQuota, RefreshRegexQuota and
	// PrefetchURLQuota are the daily (UTC) content-task quotas of an account
	// unless its own content quota says otherwise. Defaults 10,000, 100, 20
	// and 1,000. Refresh entries of type file and ignore-params count as URLs.
	RefreshURLQuota       int
	RefreshDirectoryQuota int
	RefreshRegexQuota     int
	PrefetchURLQuota      int
	// TaskRetention is how long refresh and prefetch tasks, their purge and
	// prefetch instructions, progress and quota usage are kept. Default 72h.
	TaskRetention time.Duration
	// RetentionInterval is how often the retention loop runs. Default one
	// minute; tests set it shorter.
	RetentionInterval time.Duration
	// KeyringFile holds the key-encryption keys that seal private keys in
	// etcd (see internal/seal). KeyringText is the same text given directly
	// (env OUTPOST_KEYRING). With an embedded etcd and neither set, a keyring
	// is generated in DataDir; with external etcd one of them is required,
	// and every controller must have the same keyring.
	KeyringFile string
	KeyringText string
	// BootstrapToken, when set, is made an operator token at start (if no
	// token with that secret exists yet). BootstrapTokenFile reads it from a file.
	BootstrapToken     string
	BootstrapTokenFile string
	// MetricsAddr serves Prometheus metrics on /metrics (plain HTTP: keep
	// it on a private network); "" disables.
	MetricsAddr string
	// BucketEventsAddr is the HTTP address of the bucket-events endpoint
	// (POST /v1/bucket-events/<domain>) that object-storage buckets send
	// their S3 event notifications to, for automatic cache update. Empty
	// (the default) serves no endpoint.
	BucketEventsAddr string
	// TokenRecheck is how often an open config stream checks that its
	// member certificate was not revoked and has not expired. Default 10s.
	TokenRecheck time.Duration
	// RewrapInterval is how often the controller re-wraps the sealed
	// secrets in etcd that are not under its primary key-encryption key,
	// after a first run at start. It runs only with a keyring of more than
	// one key. Default 10 minutes; negative never re-wraps in the
	// background (RewrapSecrets still does).
	RewrapInterval time.Duration
	// AcmeDirectoryURL is the directory of the ACME CA (RFC 8555) that
	// issues free certificates (EnableHttps with free), for example
	// https://acme-v02.api.letsencrypt.org/directory. Empty (the default)
	// disables free certificates. Every controller sharing an etcd should
	// have the same value: the one elected to issue uses its own.
	AcmeDirectoryURL string
	// AcmeEmail is the contact address of the account registered with the
	// CA. Optional.
	AcmeEmail string
	// AcmeCARoots is PEM of the root certificates to trust for the CA's
	// HTTPS (the directory and everything under it) instead of the system
	// roots: for a private or test CA such as Pebble. AcmeCARootsFile reads
	// the same from a file.
	AcmeCARoots     string
	AcmeCARootsFile string
	// AcmeRenewBefore is how long before it expires a free certificate is
	// renewed. Default 720h (30 days). A certificate whose whole life is
	// shorter than three times this is renewed when a third of its life
	// remains.
	AcmeRenewBefore time.Duration
	// AcmeRetryMin is the wait before the first retry of a free certificate
	// that failed; each further failure doubles it, up to a day. Default
	// 10 minutes.
	AcmeRetryMin time.Duration
	// AcmeChallengeWait bounds how long the issuing controller waits for
	// the connected edge nodes to apply an HTTP-01 challenge response
	// before it asks the CA to validate. Default 10s.
	AcmeChallengeWait time.Duration
	// TLSCertFile and TLSKeyFile are an operator's serving certificate and
	// key (PEM) for the gRPC listener. Empty (the default): the controller
	// issues itself one from the cluster CA, for TLSSANs and its own names,
	// and renews it before it expires. Members then need -ca-file with the
	// issuer of the operator's certificate.
	TLSCertFile string
	TLSKeyFile  string
	// TLSSANs are more DNS names or IP addresses for the issued serving
	// certificate, besides the listen host, localhost, 127.0.0.1, ::1 and
	// the hostname: the names clients dial the controllers by.
	TLSSANs []string
	// CACertOut, when set, is a file the controller writes the cluster CA
	// certificate to at start (PEM, mode 0644), for outpostctl --tls-ca.
	CACertOut string
	// MemberCertTTL is the lifetime of the certificates issued to edge
	// nodes and schedulers; they renew at two thirds of it. Default 24h.
	MemberCertTTL time.Duration
	// Logger receives structured logs; default slog.Default().
	Logger *slog.Logger
	// Now is the clock, for tests; default time.Now.
	Now func() time.Time
	// EtcdUnsafeNoFsync disables fsync in the embedded etcd: tests only.
	EtcdUnsafeNoFsync bool
	// EtcdCompactionRetention sets revision-based auto compaction of the
	// embedded etcd (tests); 0 keeps an hour of history.
	EtcdCompactionRetention int
}

// RegisterFlags binds the configuration to command-line flags, taking
// defaults from OUTPOST_* environment variables.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddr, "listen", cmdutil.Env("OUTPOST_LISTEN", "127.0.0.1:7000"), "gRPC listen address of the admin and node APIs (env OUTPOST_LISTEN)")
	fs.Func("etcd-endpoints", "comma-separated etcd client URLs; empty starts an embedded etcd (env OUTPOST_ETCD_ENDPOINTS)", func(s string) error {
		c.EtcdEndpoints = cmdutil.List(s)
		return nil
	})
	c.EtcdEndpoints = cmdutil.List(os.Getenv("OUTPOST_ETCD_ENDPOINTS"))
	fs.StringVar(&c.DataDir, "data-dir", cmdutil.Env("OUTPOST_DATA_DIR", "outpost-data"), "directory of the embedded etcd and its keyring (env OUTPOST_DATA_DIR)")
	fs.StringVar(&c.EtcdClientAddr, "etcd-client-addr", cmdutil.Env("OUTPOST_ETCD_CLIENT_ADDR", "127.0.0.1:2379"), "embedded etcd client address (env OUTPOST_ETCD_CLIENT_ADDR)")
	fs.StringVar(&c.EtcdPeerAddr, "etcd-peer-addr", cmdutil.Env("OUTPOST_ETCD_PEER_ADDR", "127.0.0.1:2380"), "embedded etcd peer address (env OUTPOST_ETCD_PEER_ADDR)")
	fs.StringVar(&c.EtcdCAFile, "etcd-ca-file", cmdutil.Env("OUTPOST_ETCD_CA_FILE", ""), "PEM CA bundle to verify the etcd members' certificates, with https:// endpoints; default the system roots (env OUTPOST_ETCD_CA_FILE)")
	fs.StringVar(&c.EtcdCertFile, "etcd-cert-file", cmdutil.Env("OUTPOST_ETCD_CERT_FILE", ""), "PEM client certificate for etcd members started with --client-cert-auth (env OUTPOST_ETCD_CERT_FILE)")
	fs.StringVar(&c.EtcdKeyFile, "etcd-key-file", cmdutil.Env("OUTPOST_ETCD_KEY_FILE", ""), "PEM private key of -etcd-cert-file (env OUTPOST_ETCD_KEY_FILE)")
	fs.StringVar(&c.EtcdServerName, "etcd-server-name", cmdutil.Env("OUTPOST_ETCD_SERVER_NAME", ""), "name to verify in the etcd members' certificates instead of each endpoint's host (env OUTPOST_ETCD_SERVER_NAME)")
	fs.StringVar(&c.CNAMESuffix, "cname-suffix", cmdutil.Env("OUTPOST_CNAME_SUFFIX", "cdn.outpost.test"), "zone under which each domain gets its CNAME (env OUTPOST_CNAME_SUFFIX)")
	quota, _ := strconv.Atoi(cmdutil.Env("OUTPOST_DEFAULT_DOMAIN_QUOTA", "50"))
	fs.IntVar(&c.DefaultDomainQuota, "default-domain-quota", quota, "domains per account unless the account's quota says otherwise (env OUTPOST_DEFAULT_DOMAIN_QUOTA)")
	envInt := func(name string, def int) int {
		if v, err := strconv.Atoi(cmdutil.Env(name, "")); err == nil {
			return v
		}
		return def
	}
	fs.IntVar(&c.RefreshURLQuota, "refresh-url-quota", envInt("OUTPOST_REFRESH_URL_QUOTA", 10000), "refresh URLs (file and ignore-params entries) per account per UTC day, unless the account's quota says otherwise (env OUTPOST_REFRESH_URL_QUOTA)")
	fs.IntVar(&c.RefreshDirectoryQuota, "refresh-directory-quota", envInt("OUTPOST_REFRESH_DIRECTORY_QUOTA", 100), "refresh directories per account per UTC day, unless the account's quota says otherwise (env OUTPOST_REFRESH_DIRECTORY_QUOTA)")
	fs.IntVar(&c.RefreshRegexQuota, "refresh-regex-quota", envInt("OUTPOST_REFRESH_REGEX_QUOTA", 20), "refresh regular expressions per account per UTC day, unless the account's quota says otherwise (env OUTPOST_REFRESH_REGEX_QUOTA)")
	fs.IntVar(&c.PrefetchURLQuota, "prefetch-url-quota", envInt("OUTPOST_PREFETCH_URL_QUOTA", 1000), "prefetch URLs per account per UTC day, unless the account's quota says otherwise (env OUTPOST_PREFETCH_URL_QUOTA)")
	retention, err := time.ParseDuration(cmdutil.Env("OUTPOST_TASK_RETENTION", "72h"))
	if err != nil {
		retention = 72 * time.Hour
	}
	fs.DurationVar(&c.TaskRetention, "task-retention", retention, "how long refresh and prefetch tasks (and their purges, progress and quota usage) are kept (env OUTPOST_TASK_RETENTION)")
	fs.Func("origin-ports", "comma-separated ports origins may use (default 80,443; env OUTPOST_ORIGIN_PORTS)", func(v string) error {
		ports, err := parsePorts(v)
		c.OriginPorts = ports
		return err
	})
	if v := os.Getenv("OUTPOST_ORIGIN_PORTS"); v != "" {
		// A bad value is reported by Start (an empty list would silently
		// mean the defaults).
		ports, err := parsePorts(v)
		if err != nil {
			ports = []uint32{0}
		}
		c.OriginPorts = ports
	}
	fs.StringVar(&c.KeyringFile, "keyring-file", cmdutil.Env("OUTPOST_KEYRING_FILE", ""), "file of key-encryption keys sealing private keys at rest (mode 0600; env OUTPOST_KEYRING_FILE; or the keyring text in OUTPOST_KEYRING)")
	c.KeyringText = os.Getenv("OUTPOST_KEYRING")
	fs.StringVar(&c.BootstrapTokenFile, "bootstrap-token-file", cmdutil.Env("OUTPOST_BOOTSTRAP_TOKEN_FILE", ""), "file holding a secret to install as an operator token at start (env OUTPOST_BOOTSTRAP_TOKEN_FILE; or the secret itself in OUTPOST_BOOTSTRAP_TOKEN)")
	c.BootstrapToken = os.Getenv("OUTPOST_BOOTSTRAP_TOKEN")
	rewrap, err := time.ParseDuration(cmdutil.Env("OUTPOST_REWRAP_INTERVAL", "10m"))
	if err != nil {
		rewrap = defaultRewrapInterval
	}
	fs.DurationVar(&c.RewrapInterval, "rewrap-interval", rewrap, "how often to re-wrap sealed secrets not under the keyring's primary key (with a keyring of two keys or more); negative: only on request (env OUTPOST_REWRAP_INTERVAL)")
	fs.StringVar(&c.AcmeDirectoryURL, "acme-directory-url", cmdutil.Env("OUTPOST_ACME_DIRECTORY_URL", ""), "directory URL of the ACME CA that issues free certificates (EnableHttps free); empty disables them (env OUTPOST_ACME_DIRECTORY_URL)")
	fs.StringVar(&c.AcmeEmail, "acme-email", cmdutil.Env("OUTPOST_ACME_EMAIL", ""), "contact e-mail of the account registered with the ACME CA (env OUTPOST_ACME_EMAIL)")
	fs.StringVar(&c.AcmeCARootsFile, "acme-ca-roots-file", cmdutil.Env("OUTPOST_ACME_CA_ROOTS_FILE", ""), "PEM file of the roots to trust for the ACME CA's HTTPS instead of the system roots, for a private or test CA (env OUTPOST_ACME_CA_ROOTS_FILE)")
	renewBefore, err := time.ParseDuration(cmdutil.Env("OUTPOST_ACME_RENEW_BEFORE", "720h"))
	if err != nil {
		renewBefore = 720 * time.Hour
	}
	fs.DurationVar(&c.AcmeRenewBefore, "acme-renew-before", renewBefore, "renew a free certificate this long before it expires, or when a third of its life remains if that is later (env OUTPOST_ACME_RENEW_BEFORE)")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", cmdutil.Env("OUTPOST_TLS_CERT_FILE", ""), "serving certificate (PEM) of the gRPC listener; default: one issued from the cluster CA (env OUTPOST_TLS_CERT_FILE)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", cmdutil.Env("OUTPOST_TLS_KEY_FILE", ""), "key (PEM) of -tls-cert-file (env OUTPOST_TLS_KEY_FILE)")
	c.TLSSANs = cmdutil.List(os.Getenv("OUTPOST_TLS_SANS"))
	fs.Func("tls-san", "a DNS name or IP address clients reach the controller by, for its issued serving certificate; repeatable (env OUTPOST_TLS_SANS, comma-separated)", func(s string) error {
		c.TLSSANs = append(c.TLSSANs, cmdutil.List(s)...)
		return nil
	})
	fs.StringVar(&c.CACertOut, "ca-cert-out", cmdutil.Env("OUTPOST_CA_CERT_OUT", ""), "write the cluster CA certificate (PEM) to this file at start, for outpostctl --tls-ca (env OUTPOST_CA_CERT_OUT)")
	memberTTL, err := time.ParseDuration(cmdutil.Env("OUTPOST_NODE_CERT_TTL", "24h"))
	if err != nil {
		memberTTL = defaultMemberCertTTL
	}
	fs.DurationVar(&c.MemberCertTTL, "node-cert-ttl", memberTTL, "lifetime of the certificates issued to edge nodes and schedulers; they renew at two thirds of it (env OUTPOST_NODE_CERT_TTL)")
	fs.StringVar(&c.MetricsAddr, "metrics", cmdutil.Env("OUTPOST_METRICS_ADDR", ""), "Prometheus metrics listen address (plain HTTP, /metrics); empty disables (env OUTPOST_METRICS_ADDR)")
	fs.StringVar(&c.BucketEventsAddr, "bucket-events-addr", cmdutil.Env("OUTPOST_BUCKET_EVENTS_ADDR", ""), "HTTP address of the bucket-events endpoint for automatic cache update, POST /v1/bucket-events/<domain>; empty serves none (env OUTPOST_BUCKET_EVENTS_ADDR)")
}

func (c *Config) setDefaults() {
	if c.ListenAddr == "" {
		c.ListenAddr = "127.0.0.1:7000"
	}
	if c.DataDir == "" {
		c.DataDir = "outpost-data"
	}
	if c.CNAMESuffix == "" {
		c.CNAMESuffix = "cdn.outpost.test"
	}
	if c.DefaultDomainQuota <= 0 {
		c.DefaultDomainQuota = 50
	}
	if c.RefreshURLQuota <= 0 {
		c.RefreshURLQuota = 10000
	}
	if c.RefreshDirectoryQuota <= 0 {
		c.RefreshDirectoryQuota = 100
	}
	if c.RefreshRegexQuota <= 0 {
		c.RefreshRegexQuota = 20
	}
	if c.PrefetchURLQuota <= 0 {
		c.PrefetchURLQuota = 1000
	}
	if c.TaskRetention <= 0 {
		c.TaskRetention = 72 * time.Hour
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = time.Minute
	}
	if len(c.OriginPorts) == 0 {
		c.OriginPorts = []uint32{80, 443}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.TokenRecheck <= 0 {
		c.TokenRecheck = 10 * time.Second
	}
	if c.RewrapInterval == 0 {
		c.RewrapInterval = defaultRewrapInterval
	}
	if c.AcmeRenewBefore <= 0 {
		c.AcmeRenewBefore = 720 * time.Hour
	}
	if c.AcmeRetryMin <= 0 {
		c.AcmeRetryMin = 10 * time.Minute
	}
	if c.MemberCertTTL <= 0 {
		c.MemberCertTTL = defaultMemberCertTTL
	}
	if c.AcmeChallengeWait <= 0 {
		c.AcmeChallengeWait = 10 * time.Second
	}
}

func parsePorts(v string) ([]uint32, error) {
	var out []uint32
	for _, p := range cmdutil.List(v) {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("bad port %q", p)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}
