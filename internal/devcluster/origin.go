package devcluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-cdn/outpost/internal/sizedbody"
)

// The demo origin's virtual hosts. Both are served on one IP and port over
// HTTPS, each with its own certificate chosen by SNI: the situation origin
// SNI exists for.
const (
	OriginNameA = "a.origin.test"
	OriginNameB = "b.origin.test"
)

// originNames lists the demo origin's virtual hosts; the first one is also
// served over plain HTTP.
var originNames = []string{OriginNameA, OriginNameB}

// originCAFile is the demo origin's CA certificate, under Dir.
const originCAFile = "origin/ca.crt"

// vhost is one virtual host of the demo origin.
type vhost struct {
	name  string
	label string // "a" or "b"
	cert  *tls.Certificate
	blob  []byte // /1k.bin, random per start; larger sizes repeat it
	start time.Time
}

// origin is the demo origin: HTTPS with SNI-chosen certificates for two
// names, and plain HTTP serving the first name's content.
type origin struct {
	log                 *slog.Logger
	caPEM               []byte
	caCert              *x509.Certificate
	caFile              string
	vhosts              map[string]*vhost
	httpLis, httpsLis   net.Listener
	httpSrv, httpsSrv   *http.Server
	httpAddr, httpsAddr string
	wg                  sync.WaitGroup
	closeOnce           sync.Once
}

// originCerts loads the demo origin's CA and certificates from dir/origin,
// or makes new ones when they are missing, unreadable or expiring. The CA's
// key is never written: it is only needed to issue the two certificates.
func originCerts(dir string, log *slog.Logger, now time.Time) (caPEM []byte, certs map[string]*tls.Certificate, err error) {
	caPath := filepath.Join(dir, originCAFile)
	certs = map[string]*tls.Certificate{}
	load := func() error {
		b, err := os.ReadFile(caPath)
		if err != nil {
			return err
		}
		ca, err := parseCertPEM(b)
		if err != nil {
			return fmt.Errorf("%s: %w", caPath, err)
		}
		if !fresh(ca, now) {
			return fmt.Errorf("%s expires soon", caPath)
		}
		for _, name := range originNames {
			c, err := loadLeaf(filepath.Join(dir, "origin", name+".crt"), filepath.Join(dir, "origin", name+".key"), ca, now)
			if err != nil {
				return err
			}
			certs[name] = c
		}
		caPEM = b
		return nil
	}
	err = load()
	if err == nil {
		return caPEM, certs, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		log.Warn("replacing the demo origin's certificates", "reason", err)
	}
	ca, caKey, err := newCA("Outpost dev origin CA", now)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range originNames {
		leaf, err := issueLeaf(name, ca, caKey, now)
		if err != nil {
			return nil, nil, err
		}
		pair, err := tls.X509KeyPair(leaf.certPEM, leaf.keyPEM)
		if err != nil {
			return nil, nil, err
		}
		certs[name] = &pair
		if err := writeFile(filepath.Join(dir, "origin", name+".key"), leaf.keyPEM, 0o600); err != nil {
			return nil, nil, err
		}
		if err := writeFile(filepath.Join(dir, "origin", name+".crt"), leaf.certPEM, 0o644); err != nil {
			return nil, nil, err
		}
	}
	// The CA last: its presence marks a complete set.
	if err := writeFile(caPath, ca.certPEM, 0o644); err != nil {
		return nil, nil, err
	}
	log.Info("generated the demo origin's CA and certificates", "ca", caPath)
	return ca.certPEM, certs, nil
}

// startOrigin serves the demo origin on httpAddr and httpsAddr.
func startOrigin(dir, httpAddr, httpsAddr string, log *slog.Logger) (_ *origin, err error) {
	log = log.With("role", "origin")
	now := time.Now()
	caPEM, certs, err := originCerts(dir, log, now)
	if err != nil {
		return nil, fmt.Errorf("demo origin certificates: %w", err)
	}
	caCert, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, err
	}
	o := &origin{log: log, caPEM: caPEM, caCert: caCert, caFile: filepath.Join(dir, originCAFile), vhosts: map[string]*vhost{}}
	for i, name := range originNames {
		blob := make([]byte, 1024)
		if _, err := rand.Read(blob); err != nil {
			return nil, err
		}
		o.vhosts[name] = &vhost{name: name, label: string(rune('a' + i)), cert: certs[name], blob: blob, start: now}
	}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	if o.httpLis, err = net.Listen("tcp", httpAddr); err != nil {
		return nil, fmt.Errorf("demo origin HTTP listen %s: %w", httpAddr, err)
	}
	if o.httpsLis, err = net.Listen("tcp", httpsAddr); err != nil {
		return nil, fmt.Errorf("demo origin HTTPS listen %s: %w", httpsAddr, err)
	}
	o.httpAddr, o.httpsAddr = o.httpLis.Addr().String(), o.httpsLis.Addr().String()
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelInfo)
	o.httpSrv = &http.Server{
		Handler:           o.handler(func(*http.Request) *vhost { return o.vhosts[originNames[0]] }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errLog,
	}
	o.httpsSrv = &http.Server{
		Handler:           o.handler(func(r *http.Request) *vhost { return o.vhosts[sniName(r.TLS.ServerName)] }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errLog,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: o.getCertificate,
		},
	}
	o.wg.Add(2)
	go func() {
		defer o.wg.Done()
		if err := o.httpSrv.Serve(o.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo origin HTTP", "err", err)
		}
	}()
	go func() {
		defer o.wg.Done()
		if err := o.httpsSrv.ServeTLS(o.httpsLis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo origin HTTPS", "err", err)
		}
	}()
	log.Info("demo origin serving", "http", o.httpAddr, "https", o.httpsAddr, "names", strings.Join(originNames, ","), "ca", o.caFile)
	return o, nil
}

func (o *origin) httpPort() uint32  { return addrPort(o.httpAddr) }
func (o *origin) httpsPort() uint32 { return addrPort(o.httpsAddr) }

func addrPort(addr string) uint32 {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return uint32(n)
}

// getCertificate chooses the certificate by SNI and refuses a handshake
// without SNI or for an unknown name.
func (o *origin) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := sniName(hello.ServerName)
	if name == "" {
		return nil, fmt.Errorf("demo origin: no SNI in the ClientHello; this origin serves %s only by name", strings.Join(originNames, " and "))
	}
	v, ok := o.vhosts[name]
	if !ok {
		return nil, fmt.Errorf("demo origin: unknown SNI %q; this origin serves %s", name, strings.Join(originNames, " and "))
	}
	return v.cert, nil
}

func sniName(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// handler serves the virtual host pick chooses.
func (o *origin) handler(pick func(*http.Request) *vhost) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := pick(r)
		if v == nil {
			http.Error(w, "unknown virtual host\n", http.StatusMisdirectedRequest)
			return
		}
		h := w.Header()
		h.Set("X-Origin-Vhost", v.name)
		h.Set("Cache-Control", "public, max-age=60")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed\n", http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case "/whoami.txt":
			// Not cached, so a change of origin SNI shows at once.
			h.Set("Cache-Control", "no-store")
			h.Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "origin vhost %s\n", v.label)
		case "/time.txt":
			// Cacheable, and different every time the origin makes it: shows
			// hits, refreshes and prefetches.
			h.Set("Cache-Control", "public, max-age=3600")
			h.Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "made by origin vhost %s at %s\n", v.label, time.Now().UTC().Format(time.RFC3339Nano))
		case "/":
			h.Set("Content-Type", "text/html; charset=utf-8")
			sni := "(plain HTTP)"
			if r.TLS != nil {
				sni = r.TLS.ServerName
			}
			fmt.Fprintf(w, `<!doctype html>
<html><head><title>origin vhost %[1]s</title></head>
<body>
<h1>Outpost demo origin: vhost %[1]s (%[2]s)</h1>
<p>TLS server name (SNI): %[3]s<br>Host header: %[4]s</p>
<ul><li><a href="/whoami.txt">/whoami.txt</a></li><li><a href="/time.txt">/time.txt</a> (cacheable)</li><li><a href="/1k.bin">/1k.bin</a> (1024 random bytes; /100k.bin, /4m.bin… repeat them)</li></ul>
</body></html>
`, v.label, v.name, html.EscapeString(sni), html.EscapeString(r.Host))
		default:
			// /1k.bin, /100k.bin, /4m.bin…: the vhost's 1 KiB repeated.
			size, ok := sizedbody.Path(r.URL.Path)
			if !ok {
				http.NotFound(w, r)
				return
			}
			h.Set("Content-Type", "application/octet-stream")
			h.Set("ETag", fmt.Sprintf(`"%s-%d-%d"`, v.label, v.start.UnixNano(), size))
			http.ServeContent(w, r, "", v.start, sizedbody.Reader(v.blob, size))
		}
	})
}

// close stops both listeners, letting requests in flight finish for up to
// two seconds.
func (o *origin) close() {
	o.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, s := range []*http.Server{o.httpSrv, o.httpsSrv} {
			if s != nil {
				_ = s.Shutdown(ctx)
			}
		}
		for _, l := range []net.Listener{o.httpLis, o.httpsLis} {
			if l != nil {
				l.Close()
			}
		}
		o.wg.Wait()
	})
}
