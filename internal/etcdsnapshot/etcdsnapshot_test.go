package etcdsnapshot_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/internal/etcdembed"
	"github.com/outpost-cdn/outpost/internal/etcdsnapshot"
	"github.com/outpost-cdn/outpost/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := etcdsnapshot.Main(args, &out, &errOut)
	return out.String() + errOut.String(), code
}

func client(t *testing.T, srv *etcdembed.Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSaveRestore saves a snapshot of a member holding data, restores it
// into a new data directory with a bumped, compacted revision, starts a
// member from it and finds the data there.
func TestSaveRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src, err := etcdembed.Start(ctx, etcdembed.Config{Dir: filepath.Join(t.TempDir(), "src"), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Unsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cli := client(t, src)
	for i := range 100 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/outpost/test/%03d", i), fmt.Sprint("value ", i)); err != nil {
			t.Fatal(err)
		}
	}
	last, err := cli.Get(ctx, "/outpost/test/099")
	if err != nil {
		t.Fatal(err)
	}
	rev := last.Header.Revision

	file := filepath.Join(t.TempDir(), "backup.db")
	out, code := run(t, "save", file, "--endpoints", src.Endpoints()[0])
	if code != 0 {
		t.Fatalf("save: %d %s", code, out)
	}
	if !strings.Contains(out, "saved "+file) {
		t.Errorf("save printed %q", out)
	}
	out, code = run(t, "status", file)
	if code != 0 {
		t.Fatalf("status: %d %s", code, out)
	}
	var st struct {
		Revision int64 `json:"revision"`
		TotalKey int   `json:"totalKey"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status output %q: %v", out, err)
	}
	if st.Revision != rev || st.TotalKey < 100 {
		t.Errorf("status %+v, want revision %d and at least 100 keys", st, rev)
	}

	// Restore as a new one-member cluster named "outpost" (etcdembed's
	// name), on the peer address the new member will use.
	peer := "http://" + freePort(t)
	dir := filepath.Join(t.TempDir(), "restored")
	const bump = 1000
	out, code = run(t, "restore", file, "--data-dir", dir, "--name", "outpost",
		"--initial-advertise-peer-urls", peer, "--initial-cluster", "outpost="+peer,
		"--initial-cluster-token", "restored", "--bump-revision", fmt.Sprint(bump), "--mark-compacted")
	if code != 0 {
		t.Fatalf("restore: %d %s", code, out)
	}
	// Restoring over existing data is refused.
	if out, code := run(t, "restore", file, "--data-dir", dir, "--name", "outpost", "--initial-advertise-peer-urls", peer); code != 1 || !strings.Contains(out, "not empty") {
		t.Errorf("restore into a used directory: %d %q", code, out)
	}

	src.Close()
	dst, err := etcdembed.Start(ctx, etcdembed.Config{Dir: dir, ClientAddr: "127.0.0.1:0", PeerAddr: strings.TrimPrefix(peer, "http://"), Unsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	cli2 := client(t, dst)
	resp, err := cli2.Get(ctx, "/outpost/test/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 100 || string(resp.Kvs[42].Value) != "value 42" {
		t.Fatalf("restored %d keys (want 100), key 42 = %q", len(resp.Kvs), resp.Kvs[42].Value)
	}
	if resp.Header.Revision < rev+bump {
		t.Errorf("restored revision %d, want at least %d", resp.Header.Revision, rev+bump)
	}
	// A watch from before the restore fails as compacted, rather than
	// silently missing changes.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	wr := <-cli2.Watch(wctx, "/outpost/test/", clientv3.WithPrefix(), clientv3.WithRev(rev))
	if wr.CompactRevision == 0 {
		t.Errorf("watch from revision %d: %+v, want a compaction error", rev, wr)
	}
	// The restored member takes writes.
	if _, err := cli2.Put(ctx, "/outpost/test/after", "x"); err != nil {
		t.Fatal(err)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: outpost-etcd snapshot"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"save"}, 2, "want exactly one FILE"},
		{[]string{"save", "a.db", "--endpoints", "http://a:2379,http://b:2379"}, 2, "exactly one member"},
		{[]string{"save", "a.db", "--cert", "c.pem"}, 2, "--cert and --key go together"},
		{[]string{"save", "a.db", "--cacert", "/nonexistent/ca.pem"}, 1, "--cacert: open /nonexistent/ca.pem"},
		{[]string{"status", "/nonexistent/a.db"}, 1, "no such file"},
		{[]string{"restore", "a.db", "--bump-revision", "5"}, 2, "--bump-revision and --mark-compacted go together"},
		{[]string{"restore", "/nonexistent/a.db", "--data-dir", "/nonexistent/dir", "--initial-advertise-peer-urls", "http://127.0.0.1:2380", "--name", "x"}, 1, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, code := run(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want %d and %q", code, out, tc.code, tc.want)
			}
		})
	}
}

// TestSaveTLS saves a snapshot from a member that requires client
// certificates, with --cacert, --cert and --key, and is refused without
// a client certificate.
func TestSaveTLS(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "etcd CA")
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, usage x509.ExtKeyUsage) (string, string) {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			write(name+".key", certstest.PKCS8KeyPEM(t, key))
	}
	caFile := write("ca.crt", ca.CertPEM)
	srvCert, srvKey := issue("server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := issue("backup", x509.ExtKeyUsageClientAuth)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := etcdembed.Start(ctx, etcdembed.Config{
		Dir: filepath.Join(dir, "etcd"), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Unsafe: true,
		CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: caFile, ClientCertAuth: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ep := srv.Endpoints()[0]

	file := filepath.Join(dir, "backup.db")
	if out, code := run(t, "save", file, "--endpoints", ep, "--cacert", caFile, "--cert", cliCert, "--key", cliKey); code != 0 {
		t.Fatalf("save over TLS: %d %s", code, out)
	}
	if out, code := run(t, "status", file); code != 0 || !strings.Contains(out, `"revision"`) {
		t.Fatalf("status: %d %s", code, out)
	}
	out, code := run(t, "save", filepath.Join(dir, "refused.db"), "--endpoints", ep, "--cacert", caFile, "--timeout", "3s")
	if code != 1 {
		t.Fatalf("save without a client certificate: exit %d, %s", code, out)
	}
}
