// Package controllertest starts real controllers for tests: an embedded etcd
// in t.TempDir() on free loopback ports, the real gRPC server over TLS, and
// clients that trust the cluster CA and send bearer tokens, or join as
// members (edge nodes, schedulers) and use mutual TLS. Everything is
// stopped by t.Cleanup.
package controllertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/clusterpki"
	"github.com/outpost-cdn/outpost/internal/grpcauth"
	"github.com/outpost-cdn/outpost/internal/seal"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// OperatorToken is the bootstrap operator secret of every test controller.
const OperatorToken = "opt_test-operator-bootstrap-secret"

// Env is a running controller.
type Env struct {
	Controller *controller.Controller
	// Addr is the controller's gRPC address.
	Addr string
	// OperatorToken is the bootstrap operator token.
	OperatorToken string
	// Keyring is the controller's keyring text, for more controllers on the
	// same etcd.
	Keyring string
	// Logs holds everything the controller logged.
	Logs *LogBuffer

	cfg controller.Config
}

// Start starts a controller with an embedded etcd. opts may adjust the
// configuration before it starts.
func Start(t testing.TB, opts ...func(*controller.Config)) *Env {
	t.Helper()
	kr, err := seal.GenerateKeyring("test")
	if err != nil {
		t.Fatal(err)
	}
	logs := &LogBuffer{}
	// Fixed free ports (not port 0), so Restart can bring the controller
	// back where nodes expect it.
	cfg := controller.Config{
		ListenAddr:        freeAddr(t),
		DataDir:           filepath.Join(t.TempDir(), "controller"),
		EtcdClientAddr:    freeAddr(t),
		EtcdPeerAddr:      freeAddr(t),
		KeyringText:       kr,
		BootstrapToken:    OperatorToken,
		Logger:            slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		EtcdUnsafeNoFsync: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	return startWith(t, cfg, logs)
}

// StartPeer starts another controller on the same etcd as e, as a second
// replica would run in production.
func (e *Env) StartPeer(t testing.TB) *Env {
	t.Helper()
	logs := &LogBuffer{}
	// The same settings, as replicas deployed from one configuration have.
	cfg := e.cfg
	cfg.ListenAddr = freeAddr(t)
	cfg.EtcdEndpoints = e.Controller.EtcdEndpoints()
	cfg.DataDir = ""
	cfg.BootstrapToken = ""
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return startWith(t, cfg, logs)
}

func startWith(t testing.TB, cfg controller.Config, logs *LogBuffer) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := controller.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start controller: %v", err)
	}
	t.Cleanup(c.Close)
	return &Env{Controller: c, Addr: c.Addr(), OperatorToken: OperatorToken, Keyring: cfg.KeyringText, Logs: logs, cfg: cfg}
}

// Restart stops the controller (and its embedded etcd) and starts it
// again on the same addresses and data, as a process restart would. down
// runs while it is stopped.
func (e *Env) Restart(t testing.TB, down func()) {
	t.Helper()
	e.Controller.Close()
	if down != nil {
		down()
	}
	restarted := startWith(t, e.cfg, e.Logs)
	e.Controller = restarted.Controller
}

// RestartWith restarts the controller as Restart does, with its
// configuration changed by change: for example another keyring
// (KeyringText), as an operator rotating keys would restart it.
func (e *Env) RestartWith(t testing.TB, change func(*controller.Config)) {
	t.Helper()
	e.Controller.Close()
	change(&e.cfg)
	restarted := startWith(t, e.cfg, e.Logs)
	e.Controller = restarted.Controller
	e.Keyring = e.cfg.KeyringText
}

func freeAddr(t testing.TB) string {
	t.Helper()
	// A port below the kernel's ephemeral range (32768-60999 by default):
	// the port is released before the controller binds it, and in that gap
	// a kernel-picked port (port 0, any other test's listener or outgoing
	// connection) can never take it. Only another random pick here could,
	// one chance in tens of thousands.
	for range 100 {
		port := 10000 + rand.IntN(22000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return l.Addr().String()
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// Config is the controller's configuration, for a test that starts one
// itself (after closing this one).
func (e *Env) Config() controller.Config { return e.cfg }

// CAPEM is the cluster CA certificate, PEM: what clients trust.
func (e *Env) CAPEM() string { return e.Controller.CACertificatePEM() }

// TLSConfig trusts the cluster CA, as an admin client with --tls-ca does.
func (e *Env) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(e.CAPEM()))
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Dial returns a TLS connection, trusting the cluster CA, that sends token
// as a bearer token ("" sends none).
func (e *Env) Dial(t testing.TB, token string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(e.TLSConfig()))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: token}))
	}
	conn, err := grpc.NewClient(e.Addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// NewJoinToken creates a one-time join token for role, valid for an hour,
// for member name ("" for any name).
func (e *Env) NewJoinToken(t testing.TB, name string, role outpostv1.MemberRole) string {
	t.Helper()
	resp, err := outpostv1.NewPkiServiceClient(e.Dial(t, e.OperatorToken)).CreateJoinToken(context.Background(),
		&outpostv1.CreateJoinTokenRequest{Name: name, Role: role, Ttl: durationpb.New(time.Hour), Description: t.Name()})
	if err != nil {
		t.Fatalf("create a join token: %v", err)
	}
	return resp.GetToken()
}

// JoinToken creates a one-time join token for an edge node of any name.
func (e *Env) JoinToken(t testing.TB) string {
	t.Helper()
	return e.NewJoinToken(t, "", outpostv1.MemberRole_MEMBER_ROLE_NODE)
}

// SchedulerJoinToken creates a one-time join token for a scheduler.
func (e *Env) SchedulerJoinToken(t testing.TB) string {
	t.Helper()
	return e.NewJoinToken(t, "", outpostv1.MemberRole_MEMBER_ROLE_SCHEDULER)
}

// Join makes name a member of role with a new join token, its key and
// certificate kept in memory, and returns its identity.
func (e *Env) Join(t testing.TB, name string, role outpostv1.MemberRole) *clusterpki.Identity {
	t.Helper()
	id, err := clusterpki.NewIdentity(clusterpki.MemberConfig{
		Name: name, Role: role, Controllers: []string{e.Addr}, JoinToken: e.NewJoinToken(t, name, role),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := id.Ensure(ctx); err != nil {
		t.Fatalf("join as %s: %v", name, err)
	}
	return id
}

// DialMember joins as member name of role (see Join) and returns a
// connection that authenticates with its certificate (mutual TLS).
func (e *Env) DialMember(t testing.TB, name string, role outpostv1.MemberRole) *grpc.ClientConn {
	t.Helper()
	id := e.Join(t, name, role)
	conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(id.Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// NodeClients joins as edge node name and returns API clients that
// authenticate with its certificate.
func (e *Env) NodeClients(t testing.TB, name string) *Clients {
	t.Helper()
	return clientsOf(e.DialMember(t, name, outpostv1.MemberRole_MEMBER_ROLE_NODE))
}

// Clients bundles the API clients of one connection.
type Clients struct {
	Domains  outpostv1.DomainServiceClient
	Certs    outpostv1.CertificateServiceClient
	HTTPS    outpostv1.HttpsServiceClient
	Origins  outpostv1.OriginServiceClient
	Accounts outpostv1.AccountServiceClient
	Nodes    outpostv1.NodeServiceClient
	Content  outpostv1.ContentServiceClient
	Config   outpostv1.ConfigDiscoveryServiceClient
	Cache    outpostv1.CacheServiceClient
	Keyring  outpostv1.KeyringServiceClient
	PKI      outpostv1.PkiServiceClient
}

// Clients returns API clients that authenticate with token.
func (e *Env) Clients(t testing.TB, token string) *Clients {
	return clientsOf(e.Dial(t, token))
}

func clientsOf(conn *grpc.ClientConn) *Clients {
	return &Clients{
		Domains:  outpostv1.NewDomainServiceClient(conn),
		Certs:    outpostv1.NewCertificateServiceClient(conn),
		HTTPS:    outpostv1.NewHttpsServiceClient(conn),
		Origins:  outpostv1.NewOriginServiceClient(conn),
		Accounts: outpostv1.NewAccountServiceClient(conn),
		Nodes:    outpostv1.NewNodeServiceClient(conn),
		Content:  outpostv1.NewContentServiceClient(conn),
		Config:   outpostv1.NewConfigDiscoveryServiceClient(conn),
		Cache:    outpostv1.NewCacheServiceClient(conn),
		Keyring:  outpostv1.NewKeyringServiceClient(conn),
		PKI:      outpostv1.NewPkiServiceClient(conn),
	}
}

// NewAccount creates an account and returns an admin and a read-only token
// for it.
func (e *Env) NewAccount(t testing.TB, id string) (admin, readOnly string) {
	t.Helper()
	ctx := context.Background()
	op := e.Clients(t, e.OperatorToken).Accounts
	if _, err := op.CreateAccount(ctx, &outpostv1.CreateAccountRequest{Id: id}); err != nil {
		t.Fatalf("create account %s: %v", id, err)
	}
	return e.NewToken(t, id, outpostv1.Role_ROLE_ADMIN), e.NewToken(t, id, outpostv1.Role_ROLE_READ_ONLY)
}

// NewToken creates a token of role for account ("" for operator tokens)
// and returns its secret. Edge nodes and schedulers use join tokens
// (JoinToken) instead.
func (e *Env) NewToken(t testing.TB, account string, role outpostv1.Role) string {
	t.Helper()
	resp, err := e.Clients(t, e.OperatorToken).Accounts.CreateToken(context.Background(),
		&outpostv1.CreateTokenRequest{Account: account, Role: role, Description: t.Name()})
	if err != nil {
		t.Fatalf("create %s token for %q: %v", role, account, err)
	}
	return resp.GetSecret()
}

// LogBuffer collects log output safely across goroutines.
type LogBuffer struct {
	mu  sync.Mutex
	buf []byte
}

var _ io.Writer = (*LogBuffer)(nil)

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	return len(p), nil
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// SyncConfig waits until the controller streams every config change made so
// far: a node that subscribes next finds them in its snapshot. (The
// controller's config cache follows etcd through a watch, a little behind
// the writes.)
func (e *Env) SyncConfig(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.Controller.Store().Client().Get(ctx, store.ConfigPrefix, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return
	}
	want := resp.Kvs[0].ModRevision
	for e.Controller.ConfigRevision() < want {
		if ctx.Err() != nil {
			t.Fatalf("the controller's config cache is at revision %d, not %d", e.Controller.ConfigRevision(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
