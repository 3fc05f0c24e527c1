// Package acmetest runs Pebble, Let's Encrypt's test ACME CA
// (github.com/letsencrypt/pebble/v2), inside a test process, for tests of
// free certificates that need no internet: its web front end is served
// over HTTPS by httptest, its validation authority resolves every name
// through a small DNS server of the test's own, and it issues from a root
// made for the test. Validation is real: the authority fetches HTTP-01
// challenges from the port it is given, as Let's Encrypt would from port 80.
//
// Pebble reads a few environment variables when it is built; New sets them
// for the whole process: no random validation delays
// (PEBBLE_VA_NOSLEEP=1), no random nonce refusals (PEBBLE_WFE_NONCEREJECT=0)
// and no reuse of earlier authorizations (PEBBLE_AUTHZREUSE=0), so every
// order is validated afresh. PEBBLE_VA_ALWAYS_VALID is never set.
package acmetest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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
// default (about 90 days) and resolves every name to 127.0.0.1.
type Options struct {
	// Validity is how long issued certificates are valid, rounded down to
	// whole seconds. Zero: Pebble's default.
	Validity time.Duration
	// Resolve gives the IPv4 address of a name (without the trailing dot)
	// for the validation authority; nil answers no address. A nil Resolve
	// answers 127.0.0.1 for every name.
	Resolve func(name string) net.IP
	// Log receives Pebble's log; nil discards it.
	Log io.Writer
}

// CA is a Pebble CA running in the test process. Create it with New, point
// the client at DirectoryURL (trusting TLSRootsPEM), and Start it once the
// port the validation authority must use is known.
type CA struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// TLSRootsPEM is the certificate to trust for DirectoryURL's HTTPS.
	TLSRootsPEM string

	opts    Options
	srv     *httptest.Server
	dnsAddr string
	handler atomic.Pointer[http.Handler]
	ca      atomic.Pointer[ca.CAImpl]
}

// New starts the CA's DNS server and HTTPS front end. Until Start, the
// front end answers 503. Everything stops in t.Cleanup.
func New(t testing.TB, opts Options) *CA {
	t.Helper()
	for k, v := range map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"} {
		if err := os.Setenv(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	c := &CA{opts: opts}
	c.startDNS(t)
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := c.handler.Load()
		if h == nil {
			http.Error(w, "the test CA is not started yet", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	c.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	c.srv.StartTLS()
	t.Cleanup(c.srv.Close)
	c.DirectoryURL = c.srv.URL + wfe.DirectoryPath
	c.TLSRootsPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.srv.Certificate().Raw}))
	return c
}

// Start builds Pebble: its CA (ECDSA keys, one intermediate), its
// validation authority, which fetches HTTP-01 challenges from port
// httpPort of the address DNS gives, and its front end.
func (c *CA) Start(t testing.TB, httpPort int) {
	t.Helper()
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

// Roots returns a pool with the root that issued certificates chain to.
// It is valid after Start.
func (c *CA) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.Load().GetRootCert(0).Cert)
	return pool
}

// startDNS serves DNS over TCP (Pebble's resolver uses TCP) on a free
// loopback port: A records from Options.Resolve, nothing else.
func (c *CA) startDNS(t testing.TB) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
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
			if q.Qtype != dns.TypeA {
				continue
			}
			name := q.Name
			if len(name) > 0 && name[len(name)-1] == '.' {
				name = name[:len(name)-1]
			}
			if ip := resolve(name).To4(); ip != nil {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}, A: ip})
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
		t.Fatalf("test DNS server: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("test DNS server did not start")
	}
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-errc
	})
	c.dnsAddr = l.Addr().String()
}
