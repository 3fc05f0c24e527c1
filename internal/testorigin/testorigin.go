// Package testorigin runs a real nginx as an origin server for tests: one
// IP:port serving HTTPS for two names with different certificates chosen by
// SNI (refusing handshakes without SNI), plus plain HTTP, the situation
// origin SNI exists for. Every request that reaches it is logged, so tests
// can prove that a request did not.
package testorigin

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/internal/certs/certstest"
)

// Names are the two virtual hosts of the origin.
var Names = []string{"a.origin.test", "b.origin.test"}

// Origin is a running nginx origin.
type Origin struct {
	// IP is the loopback address it listens on.
	IP string
	// HTTPPort and HTTPSPort are its ports.
	HTTPPort, HTTPSPort uint32
	// CA signed both certificates; trust it to verify the origin.
	CA  *certstest.CA
	dir string
}

// Start starts nginx, or skips the test when nginx is not installed and
// the test does not run in CI (where .ci/deps.sh installs it).
func Start(t testing.TB) *Origin {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	o := &Origin{IP: "127.0.0.1", CA: certstest.NewCA(t, "test origin CA"), dir: dir}
	o.HTTPPort, o.HTTPSPort = freePort(t), freePort(t)
	for _, n := range Names {
		p := certstest.Issue(t, certstest.Options{DNSNames: []string{n}, Issuer: o.CA})
		write(t, filepath.Join(dir, n+".crt"), p.CertPEM)
		write(t, filepath.Join(dir, n+".key"), p.KeyPEM)
		vhost := strings.Split(n, ".")[0]
		write(t, filepath.Join(dir, "www", n, "whoami.txt"), []byte("origin vhost "+vhost+"\n"))
		write(t, filepath.Join(dir, "www", n, "1k.bin"), bytes.Repeat([]byte(vhost), 1024))
	}
	conf := o.config()
	write(t, filepath.Join(dir, "nginx.conf"), []byte(conf))
	run(t, bin, dir)
	waitListening(t, o.HTTPAddr())
	return o
}

// nginxBinary finds nginx, or skips the test when it is not installed and
// the test does not run in CI (where .ci/deps.sh installs it).
func nginxBinary(t testing.TB) string {
	t.Helper()
	if bin, err := exec.LookPath("nginx"); err == nil {
		return bin
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is required in CI: .ci/deps.sh installs it")
	}
	t.Skip("nginx not installed (apt-get install nginx-light)")
	return ""
}

func (o *Origin) config() string {
	var b strings.Builder
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	fmt.Fprintf(&b, `%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 256; }
http {
  default_type application/octet-stream;
  client_body_temp_path %[2]s/tmp-body; proxy_temp_path %[2]s/tmp-proxy;
  fastcgi_temp_path %[2]s/tmp-fcgi; uwsgi_temp_path %[2]s/tmp-uwsgi; scgi_temp_path %[2]s/tmp-scgi;
  log_format origin '$ssl_server_name $host $request_method $request_uri xfh=$http_x_forwarded_host xou=$http_x_original_url inm=$http_if_none_match rng=$http_range';
  access_log %[2]s/origin.log origin;
  # The certificate and the content are chosen by SNI alone, whatever the
  # Host: a handshake without SNI, or for another name, finds no
  # certificate file and fails.
  map $ssl_server_name $vhost { a.origin.test a.origin.test; b.origin.test b.origin.test; default none; }
  server { listen %[3]s:%[4]d ssl default_server;
    ssl_certificate %[2]s/$vhost.crt; ssl_certificate_key %[2]s/$vhost.key;
    root %[2]s/www/$vhost;
%[5]s
  }
`, user, o.dir, o.IP, o.HTTPSPort, locations("$ssl_server_name"))
	fmt.Fprintf(&b, `  server { listen %[1]s:%[2]d; root %[3]s/www/%[4]s;
%[5]s
  }
}
`, o.IP, o.HTTPPort, o.dir, Names[0], locations("-"))
	return b.String()
}

// locations are the paths every vhost serves:
//
//	/whoami.txt   says which vhost answered; Cache-Control: no-store
//	/echo         the request as the origin saw it; no-store
//	/c/max-age/*  files with Cache-Control: max-age=3600
//	/c/no-cache/* no-cache (stored, revalidated every time)
//	/c/short/*    max-age=1, stale-if-error=60
//	/c/private/*, /c/no-store/*, /c/cookie/* (Set-Cookie), /c/plain/* (no
//	              Cache-Control: heuristic freshness or cache rules)
//	/c/vary/*     Vary: Accept-Encoding, max-age=3600
//	/c/html.css   an HTML page under a .css name (cache deception)
//	/c/slow/*     max-age=3600, sent at 200 KB/s (fills that take a while)
//
// Files under /c/ are created with Write.
func locations(sni string) string {
	return `    location = /whoami.txt { add_header Cache-Control no-store; }
    location = /echo { default_type text/plain; add_header Cache-Control no-store; return 200 "host=$host sni=` + sni + ` xff=$http_x_forwarded_for via=$http_via connection=$http_connection xfh=$http_x_forwarded_host xou=$http_x_original_url ua=$http_user_agent uri=$request_uri\n"; }
    location /c/max-age/ { add_header Cache-Control "max-age=3600"; }
    location /c/no-cache/ { add_header Cache-Control "no-cache"; }
    location /c/short/ { add_header Cache-Control "max-age=1, stale-if-error=60"; }
    location /c/private/ { add_header Cache-Control "private, max-age=3600"; }
    location /c/no-store/ { add_header Cache-Control "no-store"; }
    location /c/cookie/ { add_header Cache-Control "max-age=3600"; add_header Set-Cookie "s=1"; }
    location /c/vary/ { add_header Cache-Control "max-age=3600"; add_header Vary "Accept-Encoding"; }
    location = /c/html.css { default_type text/html; add_header Cache-Control "max-age=3600"; }
    location /c/slow/ { limit_rate 200k; add_header Cache-Control "max-age=3600"; }
    location /c/plain/ { }`
}

// Write creates (or replaces) a file under every vhost's root, e.g.
// Write(t, "/c/max-age/x.txt", data).
func (o *Origin) Write(t testing.TB, path string, data []byte) {
	t.Helper()
	for _, n := range Names {
		write(t, filepath.Join(o.dir, "www", n, filepath.FromSlash(path)), data)
	}
}

// HTTPAddr and HTTPSAddr are host:port.
func (o *Origin) HTTPAddr() string  { return net.JoinHostPort(o.IP, fmt.Sprint(o.HTTPPort)) }
func (o *Origin) HTTPSAddr() string { return net.JoinHostPort(o.IP, fmt.Sprint(o.HTTPSPort)) }

// Requests returns the requests that reached the origin so far, one line
// each: "<sni> <host> <method> <uri> xfh=<X-Forwarded-Host>
// xou=<X-Original-URL> inm=<If-None-Match>" ("-" for an absent header).
func (o *Origin) Requests(t testing.TB) []string {
	t.Helper()
	// nginx logs a request just after its response: wait until the log has
	// been steady for 60 ms (at most 2 s).
	size := func() int64 {
		if fi, err := os.Stat(filepath.Join(o.dir, "origin.log")); err == nil {
			return fi.Size()
		}
		return 0
	}
	last, steady := size(), time.Now()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n := size(); n != last {
			last, steady = n, time.Now()
		} else if time.Since(steady) >= 60*time.Millisecond {
			break
		}
	}
	b, err := os.ReadFile(filepath.Join(o.dir, "origin.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// CAPEM is the PEM of the CA that signed the origin's certificates.
func (o *Origin) CAPEM() string { return string(o.CA.CertPEM) }

func freePort(t testing.TB) uint32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Count returns how many requests for uri (path and query) reached the
// origin. nginx logs a request just after sending its response, so Count
// waits until the count has been steady for 100 ms (at most 2 s).
func (o *Origin) Count(t testing.TB, uri string) int {
	t.Helper()
	count := func() int {
		n := 0
		for _, l := range o.Requests(t) {
			if f := strings.Fields(l); len(f) >= 4 && f[3] == uri {
				n++
			}
		}
		return n
	}
	last, steady := count(), time.Now()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n := count(); n != last {
			last, steady = n, time.Now()
		} else if time.Since(steady) >= 100*time.Millisecond {
			break
		}
	}
	return last
}
