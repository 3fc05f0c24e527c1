package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// etcdTLSFlags names the flags of Config.EtcdCAFile and the rest, for errors.
const etcdTLSFlags = "-etcd-ca-file, -etcd-cert-file, -etcd-key-file, -etcd-server-name"

// etcdClientTLS returns the TLS configuration of the controller's etcd
// client, or nil when cfg sets none of EtcdCAFile, EtcdCertFile,
// EtcdKeyFile and EtcdServerName. It reads and checks every file now, so a
// missing file, a key that does not match its certificate or a certificate
// etcd would refuse stops the controller with an error naming the flag.
// Errors never include key material. The client certificate is read again
// at each new connection (see clientCertReloader).
func etcdClientTLS(cfg Config, endpoints []string) (*tls.Config, error) {
	if cfg.EtcdCAFile == "" && cfg.EtcdCertFile == "" && cfg.EtcdKeyFile == "" && cfg.EtcdServerName == "" {
		return nil, nil
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("%s apply to an external etcd: set -etcd-endpoints too (the embedded etcd serves plain HTTP on its own address)", etcdTLSFlags)
	}
	for _, ep := range endpoints {
		if u, err := url.Parse(ep); err != nil || u.Scheme != "https" {
			return nil, fmt.Errorf("etcd endpoint %q is not an https:// URL, but %s are set: use https:// for every endpoint", ep, etcdTLSFlags)
		}
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.EtcdServerName}
	if cfg.EtcdCAFile != "" {
		pem, err := os.ReadFile(cfg.EtcdCAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd CA file (-etcd-ca-file): %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA file (-etcd-ca-file) %s: no PEM certificate in it", cfg.EtcdCAFile)
		}
		conf.RootCAs = pool
	}
	switch {
	case cfg.EtcdCertFile == "" && cfg.EtcdKeyFile == "":
	case cfg.EtcdCertFile == "" || cfg.EtcdKeyFile == "":
		return nil, errors.New("-etcd-cert-file and -etcd-key-file go together: set both or neither")
	default:
		r := &clientCertReloader{certFile: cfg.EtcdCertFile, keyFile: cfg.EtcdKeyFile, log: cfg.Logger}
		if _, err := r.load(); err != nil {
			return nil, err
		}
		conf.GetClientCertificate = r.get
	}
	return conf, nil
}

// clientCertReloader gives the etcd client its certificate, read from the
// files at each TLS handshake (one per new connection to a member), so that
// certificates renewed in place are used from the next reconnect. If the
// files cannot be read or no longer match, it keeps the last good pair and
// logs why. Safe for concurrent use.
type clientCertReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu   sync.Mutex
	last *tls.Certificate
}

// load reads and checks the pair and makes it the last good one.
func (r *clientCertReloader) load() (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// crypto/tls errors name the problem ("private key does not match
		// public key"), never the key's bytes.
		return nil, fmt.Errorf("etcd client certificate (-etcd-cert-file %s, -etcd-key-file %s): %w", r.certFile, r.keyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("etcd client certificate %s: %w", r.certFile, err)
		}
	}
	if len(leaf.ExtKeyUsage) > 0 && !hasClientAuth(leaf.ExtKeyUsage) {
		return nil, fmt.Errorf("etcd client certificate %s lacks the clientAuth extended key usage, so etcd refuses it: issue it for client authentication", r.certFile)
	}
	if time.Now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("etcd client certificate %s expired on %s", r.certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	r.mu.Lock()
	r.last = &pair
	r.mu.Unlock()
	return &pair, nil
}

func hasClientAuth(usages []x509.ExtKeyUsage) bool {
	for _, u := range usages {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// get is tls.Config.GetClientCertificate.
func (r *clientCertReloader) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	pair, err := r.load()
	if err == nil {
		return pair, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log != nil {
		r.log.Warn("etcd client certificate not reloaded; using the last good one", "err", err)
	}
	return r.last, nil
}

// checkEtcd asks every endpoint for /version over HTTP(S), with tlsConf, at
// once. It returns nil as soon as one answers. If none answers and at least
// one failed in a way that waiting cannot fix (a TLS or certificate error
// on either side, or plain HTTP sent to a TLS member), it returns an error
// that says so for each endpoint, so that a misconfigured controller stops
// at start instead of hanging. If every endpoint is merely unreachable (etcd
// not started yet, no quorum), it logs a warning and returns nil: the etcd
// client keeps retrying, as it always did.
func checkEtcd(ctx context.Context, endpoints []string, tlsConf *tls.Config, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// No proxy from the environment (Proxy is nil), no idle connections
	// left behind.
	tr := &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	type result struct {
		ep    string
		err   error
		fatal bool
	}
	results := make(chan result, len(endpoints))
	for _, ep := range endpoints {
		go func() {
			fatal, err := probeEtcd(ctx, client, ep)
			results <- result{ep, err, fatal}
		}()
	}
	var fatal, transient []error
	for range endpoints {
		r := <-results
		switch {
		case r.err == nil:
			cancel() // the others' answers no longer matter
			for range len(endpoints) - len(fatal) - len(transient) - 1 {
				<-results
			}
			return nil
		case r.fatal:
			fatal = append(fatal, fmt.Errorf("%s: %w", r.ep, r.err))
		default:
			transient = append(transient, fmt.Errorf("%s: %w", r.ep, r.err))
		}
	}
	if len(fatal) > 0 {
		return fmt.Errorf("cannot use etcd (check %s and the members' TLS flags): %w", etcdTLSFlags, errors.Join(fatal...))
	}
	log.Warn("no etcd endpoint answers yet; the etcd client keeps trying", "err", errors.Join(transient...))
	return nil
}

// probeEtcd GETs ep's /version. fatal reports an error that retrying does
// not fix.
func probeEtcd(ctx context.Context, client *http.Client, ep string) (fatal bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(ep, "/")+"/version", nil)
	if err != nil {
		return true, fmt.Errorf("bad etcd endpoint: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		var opErr *net.OpError
		connected := !(errors.As(err, &opErr) && opErr.Op == "dial")
		if connected && req.URL.Scheme == "http" && speaksTLS(ctx, req.URL.Host) {
			return true, errServesTLS
		}
		if connected && req.URL.Scheme == "https" && speaksHTTP(ctx, req.URL.Host) {
			return true, errNoTLS
		}
		return describeTLSError(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "HTTPS server") {
		return true, errServesTLS
	}
	return false, nil
}

var errNoTLS = errors.New("the member does not speak TLS: use an http:// endpoint, or start the member with --cert-file and --key-file")

var errServesTLS = errors.New("the member serves TLS: use an https:// endpoint with -etcd-ca-file (and -etcd-cert-file, -etcd-key-file if it requires client certificates)")

// speaksHTTP reports whether the server at host:port answers a plain
// HTTP/1.0 request for /version: an etcd member without --cert-file closes
// a TLS handshake without an answer.
func speaksHTTP(ctx context.Context, hostport string) bool {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return false
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, "GET /version HTTP/1.0\r\n\r\n"); err != nil {
		return false
	}
	buf := make([]byte, 5)
	_, err = io.ReadFull(conn, buf)
	return err == nil && string(buf) == "HTTP/"
}

// speaksTLS reports whether the server at host:port completes a TLS
// handshake: an etcd member with --cert-file closes plain HTTP requests
// without an answer. Nothing is sent after the handshake, so the
// certificate it shows need not be trusted here.
func speaksTLS(ctx context.Context, hostport string) bool {
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only detects TLS; sends nothing
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// describeTLSError classifies a failed probe and puts the likely cause in
// words next to crypto/tls's own message.
func describeTLSError(err error) (fatal bool, _ error) {
	var (
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		verify     *tls.CertificateVerificationError
		recordHdr  tls.RecordHeaderError
		opErr      *net.OpError
		remoteSide = errors.As(err, &opErr) && opErr.Op == "remote error"
	)
	switch {
	case errors.As(err, &unknownCA):
		return true, fmt.Errorf("the member's certificate is not signed by a CA in -etcd-ca-file: %w", err)
	case errors.As(err, &hostname):
		return true, fmt.Errorf("the member's certificate does not name the endpoint's host (set -etcd-server-name, or add the host to its SANs): %w", err)
	case errors.As(err, &invalid), errors.As(err, &verify):
		return true, fmt.Errorf("the member's certificate is not valid: %w", err)
	case errors.As(err, &recordHdr):
		return true, fmt.Errorf("%w: %w", errNoTLS, err)
	case remoteSide:
		// The member refused the handshake: with --client-cert-auth, no
		// client certificate or one from a CA it does not trust.
		return true, fmt.Errorf("the member refused the TLS handshake; with --client-cert-auth it needs a client certificate (-etcd-cert-file, -etcd-key-file) signed by a CA in its --trusted-ca-file: %w", err)
	}
	return false, err
}
