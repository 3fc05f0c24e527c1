// Package acmetest runs Pebble, Let's Encrypt's test ACME CA
// (github.com/letsencrypt/pebble/v2), inside the calling process, with no
// internet: its web front end is served over HTTPS with a certificate made
// at start, its validation authority resolves every name through a small
// DNS server of its own, and it issues from a root Pebble makes at start.
// Validation is real: the authority fetches HTTP-01 challenges from the
// port it is given, as Let's Encrypt would from port 80.
//
// Tests use New and Start, which stop everything in t.Cleanup; other
// callers (the dev cluster of `make dev`) use Open and Activate, and Close.
//
// Pebble reads a few environment variables when it is built; Open (and so
// New) sets them for the whole process: no random validation delays
// (PEBBLE_VA_NOSLEEP=1), no random nonce refusals (PEBBLE_WFE_NONCEREJECT=0)
// and no reuse of earlier authorizations (PEBBLE_AUTHZREUSE=0), so every
// order is validated afresh. It unsets PEBBLE_VA_ALWAYS_VALID, so that
// validation is real whatever the environment says.
package acmetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Options shape a CA. The zero value issues certificates valid for Pebble's
// default (about 90 days), resolves every name to 127.0.0.1, and listens on
// free loopback ports.
type Options struct {
	// Validity is how long issued certificates are valid, rounded down to
	// whole seconds. Zero: Pebble's default.
	Validity time.Duration
	// Resolve gives the address of a name (without the trailing dot) for
	// the validation authority: an IPv4 address is answered as an A
	// record, an IPv6 one as AAAA; nil answers no address. A nil Resolve
	// answers 127.0.0.1 for every name.
	Resolve func(name string) net.IP
	// Log receives Pebble's log; nil discards it.
	Log io.Writer
	// Addr is the TCP address of the HTTPS front end (the ACME
	// directory). Empty: a free port on 127.0.0.1.
	Addr string
	// DNSAddr is the TCP address of the DNS server the validation
	// authority asks (Pebble's resolver uses TCP only). Empty: a free port
	// on 127.0.0.1.
	DNSAddr string
}

// CA is a Pebble CA running in the process. Create it with New (tests) or
// Open, point the client at DirectoryURL (trusting TLSRootsPEM), and start
// it with Start (tests) or Activate once the port the validation authority
// must use is known.
type CA struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// TLSRootsPEM is the certificate to trust for DirectoryURL's HTTPS.
	TLSRootsPEM string

	opts      Options
	srv       *http.Server
	served    chan struct{} // closed when srv.Serve has returned
	dns       *dns.Server
	dnsDone   chan error
	dnsAddr   string
	handler   atomic.Pointer[http.Handler]
	ca        atomic.Pointer[ca.CAImpl]
	closeOnce sync.Once
}

// New starts the CA's DNS server and HTTPS front end, as Open does, for a
// test. Until Start, the front end answers 503. Everything stops in
// t.Cleanup.
func New(t testing.TB, opts Options) *CA {
	t.Helper()
	c, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Start is Activate, for a test.
func (c *CA) Start(t testing.TB, httpPort int) {
	t.Helper()
	c.Activate(httpPort)
}

// Open starts the CA's DNS server and HTTPS front end on Options.DNSAddr
// and Options.Addr. Until Activate, the front end answers 503. Close stops
// both.
func Open(opts Options) (_ *CA, err error) {
	for k, v := range map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"} {
		if err := os.Setenv(k, v); err != nil {
			return nil, err
		}
	}
	if err := os.Unsetenv("PEBBLE_VA_ALWAYS_VALID"); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.DNSAddr == "" {
		opts.DNSAddr = "127.0.0.1:0"
	}
	c := &CA{opts: opts}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := c.startDNS(); err != nil {
		return nil, fmt.Errorf("ACME test CA: DNS server: %w", err)
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("ACME test CA: directory: %w", err)
	}
	addr := l.Addr().(*net.TCPAddr)
	cert, err := serverCertificate(addr.IP)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("ACME test CA: directory certificate: %w", err)
	}
	c.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := c.handler.Load()
			if h == nil {
				http.Error(w, "the test CA is not started yet", http.StatusServiceUnavailable)
				return
			}
			(*h).ServeHTTP(w, r)
		}),
		ErrorLog:          log.New(io.Discard, "", 0),
		ReadHeaderTimeout: 10 * time.Second,
	}
	c.served = make(chan struct{})
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	go func() {
		defer close(c.served)
		_ = c.srv.Serve(tl)
	}()
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	c.DirectoryURL = "https://" + net.JoinHostPort(host, fmt.Sprint(addr.Port)) + wfe.DirectoryPath
	c.TLSRootsPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	return c, nil
}

// Activate builds Pebble: its CA (ECDSA keys, one intermediate), its
// validation authority, which fetches HTTP-01 challenges from port
// httpPort of the address DNS gives, and its front end. Pebble's root is
// new: certificates of an earlier CA do not chain to it.
func (c *CA) Activate(httpPort int) {
	logger := log.New(c.opts.Log, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	profile := ca.Profile{Description: "the test profile"}
	if c.opts.Validity > 0 {
		profile.ValidityPeriod = uint64(c.opts.Validity / time.Second)
	}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": profile})
	validator := va.New(logger, httpPort, 0, false, c.dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	c.ca.Store(authority)
	c.handler.Store(&h)
}

// Close stops the front end and the DNS server. Pebble's validation
// authority keeps one idle goroutine: it has no way to stop. Close may be
// called more than once.
func (c *CA) Close() {
	c.closeOnce.Do(func() {
		if c.srv != nil {
			_ = c.srv.Close()
			<-c.served
		}
		if c.dns != nil {
			_ = c.dns.Shutdown()
			<-c.dnsDone
		}
	})
}

// DNSAddr is the TCP address of the DNS server the validation authority
// asks.
func (c *CA) DNSAddr() string { return c.dnsAddr }

// Roots returns a pool with the root that issued certificates chain to.
// It is valid after Start or Activate.
func (c *CA) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.Load().GetRootCert(0).Cert)
	return pool
}

// RootPEM is the root that issued certificates chain to, as PEM (for curl
// --cacert). It is valid after Start or Activate.
func (c *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.ca.Load().GetRootCert(0).Cert.Raw})
}

// startDNS serves DNS over TCP (Pebble's resolver uses TCP) on
// Options.DNSAddr: A or AAAA records from Options.Resolve, nothing else.
func (c *CA) startDNS() error {
	l, err := net.Listen("tcp", c.opts.DNSAddr)
	if err != nil {
		return err
	}
	resolve := c.opts.Resolve
	if resolve == nil {
		resolve = func(string) net.IP { return net.IPv4(127, 0, 0, 1) }
	}
	srv := &dns.Server{Listener: l, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		for _, q := range req.Question {
			if q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA {
				continue
			}
			name := q.Name
			if len(name) > 0 && name[len(name)-1] == '.' {
				name = name[:len(name)-1]
			}
			ip := resolve(name)
			hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 0}
			switch v4 := ip.To4(); {
			case q.Qtype == dns.TypeA && v4 != nil:
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: v4})
			case q.Qtype == dns.TypeAAAA && v4 == nil && len(ip) == net.IPv6len:
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
			}
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-errc:
		l.Close()
		return err
	case <-time.After(5 * time.Second):
		l.Close()
		<-errc
		return errors.New("did not start")
	}
	c.dns, c.dnsDone = srv, errc
	c.dnsAddr = l.Addr().String()
	return nil
}

// serverCertificate makes a self-signed certificate for the front end, for
// 127.0.0.1, ::1, localhost and ip.
func serverCertificate(ip net.IP) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ip != nil && !ip.IsUnspecified() && !ip.Equal(ips[0]) && !ip.Equal(ips[1]) {
		ips = append(ips, ip)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "Pebble ACME directory (in-process test CA)"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           ips,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
