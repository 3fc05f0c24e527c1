package controller_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/internal/etcdembed"
	"github.com/outpost-cdn/outpost/internal/seal"
)

// etcdPKI is a throwaway CA with the files an etcd member and its clients
// need, written into a temporary directory.
type etcdPKI struct {
	dir    string
	ca     *certstest.CA
	CAFile string
}

func newEtcdPKI(t *testing.T, name string) *etcdPKI {
	t.Helper()
	p := &etcdPKI{dir: t.TempDir(), ca: certstest.NewCA(t, name)}
	p.CAFile = p.write(t, "ca.crt", p.ca.CertPEM)
	return p
}

func (p *etcdPKI) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue writes a certificate and key signed by the CA, for usage (server
// or client authentication), and returns their paths. Server certificates
// name 127.0.0.1 and localhost.
func (p *etcdPKI) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.Cert, key.Public(), p.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = p.write(t, name+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyFile = p.write(t, name+".key", certstest.PKCS8KeyPEM(t, key))
	return certFile, keyFile
}

// startTLSEtcd starts an embedded etcd that serves clients over TLS and
// requires client certificates signed by pki's CA (--client-cert-auth).
func startTLSEtcd(t *testing.T, pki *etcdPKI) *etcdembed.Server {
	t.Helper()
	cert, key := pki.issue(t, "etcd-server", x509.ExtKeyUsageServerAuth)
	srv, err := etcdembed.Start(ctxT(t), etcdembed.Config{
		Dir:            filepath.Join(t.TempDir(), "etcd"),
		ClientAddr:     "127.0.0.1:0",
		PeerAddr:       "127.0.0.1:0",
		Unsafe:         true,
		CertFile:       cert,
		KeyFile:        key,
		TrustedCAFile:  pki.CAFile,
		ClientCertAuth: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if ep := srv.Endpoints()[0]; !strings.HasPrefix(ep, "https://") {
		t.Fatalf("endpoint %s, want https", ep)
	}
	return srv
}

func etcdTLSConfig(t *testing.T, endpoints []string, change func(*controller.Config)) controller.Config {
	t.Helper()
	kr, err := seal.GenerateKeyring("test")
	if err != nil {
		t.Fatal(err)
	}
	cfg := controller.Config{
		ListenAddr:     "127.0.0.1:0",
		EtcdEndpoints:  endpoints,
		KeyringText:    kr,
		BootstrapToken: "opt_etcd-tls-bootstrap-secret",
		Logger:         slog.New(slog.DiscardHandler),
	}
	if change != nil {
		change(&cfg)
	}
	return cfg
}

// TestEtcdTLS starts an etcd that requires client certificates and shows
// that a controller with the right CA and client certificate works, and
// that every wrong set-up stops the controller at start with an error that
// names the cause, instead of hanging.
func TestEtcdTLS(t *testing.T) {
	pki := newEtcdPKI(t, "etcd test CA")
	other := newEtcdPKI(t, "another CA")
	srv := startTLSEtcd(t, pki)
	eps := srv.Endpoints()
	clientCert, clientKey := pki.issue(t, "outpost-controller", x509.ExtKeyUsageClientAuth)
	otherCert, otherKey := other.issue(t, "outpost-controller", x509.ExtKeyUsageClientAuth)
	plain, err := etcdembed.Start(ctxT(t), etcdembed.Config{Dir: filepath.Join(t.TempDir(), "plain"), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Unsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plain.Close)

	t.Run("client certificate", func(t *testing.T) {
		cfg := etcdTLSConfig(t, eps, func(c *controller.Config) {
			c.EtcdCAFile, c.EtcdCertFile, c.EtcdKeyFile = pki.CAFile, clientCert, clientKey
		})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := controller.Start(ctx, cfg)
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		defer c.Close()
		// Start installed the bootstrap token through etcd; read it back
		// with a client of our own, over the same TLS.
		pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   eps,
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
			TLS:         &tls.Config{RootCAs: pki.ca.Pool(), Certificates: []tls.Certificate{pair}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == 0 {
			t.Fatal("etcd holds no keys after the controller started")
		}
		// The controller keeps working through etcd: a write and its read.
		if _, err := c.Store().Client().Put(ctx, "/outpost-test/etcd-tls", "ok"); err != nil {
			t.Fatalf("put through the controller's client: %v", err)
		}
		got, err := cli.Get(ctx, "/outpost-test/etcd-tls")
		if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "ok" {
			t.Fatalf("read back: %v %v", got, err)
		}
	})

	for _, tc := range []struct {
		name   string
		change func(*controller.Config)
		want   []string // substrings of the error
	}{{
		name: "no client certificate",
		change: func(c *controller.Config) {
			c.EtcdCAFile = pki.CAFile
		},
		want: []string{"refused the TLS handshake", "-etcd-cert-file", "certificate required"},
	}, {
		name: "client certificate of another CA",
		change: func(c *controller.Config) {
			c.EtcdCAFile, c.EtcdCertFile, c.EtcdKeyFile = pki.CAFile, otherCert, otherKey
		},
		want: []string{"refused the TLS handshake", "unknown certificate authority"},
	}, {
		name: "server certificate of an untrusted CA",
		change: func(c *controller.Config) {
			c.EtcdCAFile, c.EtcdCertFile, c.EtcdKeyFile = other.CAFile, clientCert, clientKey
		},
		want: []string{"not signed by a CA in -etcd-ca-file", "unknown authority"},
	}, {
		name: "wrong server name",
		change: func(c *controller.Config) {
			c.EtcdCAFile, c.EtcdCertFile, c.EtcdKeyFile = pki.CAFile, clientCert, clientKey
			c.EtcdServerName = "etcd.example.net"
		},
		want: []string{"does not name the endpoint's host", "etcd.example.net"},
	}, {
		name: "plain HTTP to a TLS member",
		change: func(c *controller.Config) {
			c.EtcdEndpoints = []string{strings.Replace(eps[0], "https://", "http://", 1)}
		},
		want: []string{"the member serves TLS"},
	}, {
		name: "TLS to a plain member",
		change: func(c *controller.Config) {
			c.EtcdEndpoints = []string{strings.Replace(plain.Endpoints()[0], "http://", "https://", 1)}
			c.EtcdCAFile, c.EtcdCertFile, c.EtcdKeyFile = pki.CAFile, clientCert, clientKey
		},
		want: []string{"the member does not speak TLS"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			c, err := controller.Start(ctx, etcdTLSConfig(t, eps, tc.change))
			if err == nil {
				c.Close()
				t.Fatal("controller started")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s to fail", d)
			}
		})
	}
}

// TestEtcdTLSFlags checks the errors for TLS settings that are wrong
// before any connection is tried.
func TestEtcdTLSFlags(t *testing.T) {
	pki := newEtcdPKI(t, "etcd test CA")
	cert, key := pki.issue(t, "outpost-controller", x509.ExtKeyUsageClientAuth)
	_, key2 := pki.issue(t, "other-controller", x509.ExtKeyUsageClientAuth)
	serverOnly, serverOnlyKey := pki.issue(t, "server-only", x509.ExtKeyUsageServerAuth)
	notPEM := pki.write(t, "not.pem", []byte("not a certificate\n"))
	eps := []string{"https://127.0.0.1:1"}
	for _, tc := range []struct {
		name   string
		change func(*controller.Config)
		want   string
	}{{
		name:   "missing CA file",
		change: func(c *controller.Config) { c.EtcdCAFile = filepath.Join(pki.dir, "missing.crt") },
		want:   "etcd CA file (-etcd-ca-file): open",
	}, {
		name:   "CA file without certificates",
		change: func(c *controller.Config) { c.EtcdCAFile = notPEM },
		want:   "no PEM certificate in it",
	}, {
		name:   "certificate without key",
		change: func(c *controller.Config) { c.EtcdCertFile = cert },
		want:   "-etcd-cert-file and -etcd-key-file go together",
	}, {
		name:   "key without certificate",
		change: func(c *controller.Config) { c.EtcdKeyFile = key },
		want:   "-etcd-cert-file and -etcd-key-file go together",
	}, {
		name:   "missing certificate file",
		change: func(c *controller.Config) { c.EtcdCertFile, c.EtcdKeyFile = filepath.Join(pki.dir, "missing.crt"), key },
		want:   "etcd client certificate (-etcd-cert-file",
	}, {
		name:   "key of another certificate",
		change: func(c *controller.Config) { c.EtcdCertFile, c.EtcdKeyFile = cert, key2 },
		want:   "private key does not match public key",
	}, {
		name:   "server-only certificate",
		change: func(c *controller.Config) { c.EtcdCertFile, c.EtcdKeyFile = serverOnly, serverOnlyKey },
		want:   "lacks the clientAuth extended key usage",
	}, {
		name: "http endpoint",
		change: func(c *controller.Config) {
			c.EtcdEndpoints = []string{"http://127.0.0.1:2379"}
			c.EtcdCAFile = pki.CAFile
		},
		want: `etcd endpoint "http://127.0.0.1:2379" is not an https:// URL`,
	}, {
		name: "embedded etcd",
		change: func(c *controller.Config) {
			c.EtcdEndpoints = nil
			c.DataDir = t.TempDir()
			c.EtcdCAFile = pki.CAFile
		},
		want: "apply to an external etcd",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := controller.Start(ctxT(t), etcdTLSConfig(t, eps, tc.change))
			if err == nil {
				c.Close()
				t.Fatal("controller started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nlacks %q", err, tc.want)
			}
			// Never key material in errors.
			for _, f := range []string{key, key2, serverOnlyKey} {
				b, _ := os.ReadFile(f)
				block, _ := pem.Decode(b)
				if block != nil && strings.Contains(err.Error(), string(pem.EncodeToMemory(block)[30:60])) {
					t.Fatalf("error holds key bytes: %v", err)
				}
			}
		})
	}
}
