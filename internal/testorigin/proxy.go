package testorigin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// StartProxy runs a second nginx doing an edge's job without a cache, the
// way nginx users do it: proxy_pass to the origin's HTTPS port with origin
// SNI sni, verifying the origin with its CA, upstream keep-alive. It is the
// peer benchmarks compare an Outpost edge with. It returns the proxy's
// host:port (plain HTTP).
func (o *Origin) StartProxy(t testing.TB, sni string, workers int) string {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "ca.pem"), o.CA.CertPEM)
	port := freePort(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
worker_processes %d;
pid %[3]s/nginx.pid;
error_log %[3]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[3]s/tmp-body; proxy_temp_path %[3]s/tmp-proxy;
  fastcgi_temp_path %[3]s/tmp-fcgi; uwsgi_temp_path %[3]s/tmp-uwsgi; scgi_temp_path %[3]s/tmp-scgi;
  upstream origin_tls { server %[4]s; keepalive 64; }
  server { listen %[5]s:%[6]d;
    location / { proxy_pass https://origin_tls; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_server_name on; proxy_ssl_name %[7]s;
      proxy_ssl_verify on; proxy_ssl_trusted_certificate %[3]s/ca.pem; proxy_ssl_session_reuse on;
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; }
  }
}
`, user, workers, dir, o.HTTPSAddr(), o.IP, port, sni)
	write(t, filepath.Join(dir, "nginx.conf"), []byte(conf))
	run(t, bin, dir)
	addr := net.JoinHostPort(o.IP, fmt.Sprint(port))
	waitListening(t, addr)
	return addr
}

func run(t testing.TB, bin, dir string) {
	t.Helper()
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not start on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
