package clusterpki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Files a member keeps in its directory.
const (
	KeyFile  = "member.key" // PKCS#8 ECDSA P-256, PEM, mode 0600
	CertFile = "member.crt" // its certificate, PEM
	CAFile   = "ca.crt"     // the cluster CA, PEM
)

// MemberConfig says who a member is and how it joins.
type MemberConfig struct {
	// Name is the member's name: its certificate's common name.
	Name string
	// Role is what it joins as; the join token must grant it.
	Role outpostv1.MemberRole
	// Controllers are the controllers' gRPC addresses.
	Controllers []string
	// JoinToken is a one-time token from CreateJoinToken. It is needed only
	// while Dir holds no valid certificate for Name.
	JoinToken string
	// CAFile is PEM of roots to trust for the controllers' serving
	// certificates besides the cluster CA: needed when they serve an
	// operator's certificate (-tls-cert-file). With it, the join verifies
	// the controller against these roots instead of the token's pin.
	CAFile string
	// CAPin overrides the CA pin the join token carries ("sha256:<hex>").
	CAPin string
	// Dir keeps the key, certificate and CA across restarts. Empty keeps
	// them in memory only: a restart needs a new join token.
	Dir string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Identity is a member's certificate and key, renewed in the background
// once Run is called. It is safe for concurrent use.
type Identity struct {
	cfg   MemberConfig
	log   *slog.Logger
	extra *x509.CertPool // from CAFile, or nil

	mu    sync.Mutex
	cert  *tls.Certificate // nil until joined
	caPEM []byte
	roots *x509.CertPool
	gen   uint64
	// changed is closed when a new certificate is stored.
	changed chan struct{}
}

// NewIdentity loads the member's certificate from cfg.Dir if there is a
// valid one for cfg.Name, and otherwise checks that it can join (a join
// token is given). It does not contact the controllers: Ensure joins.
func NewIdentity(cfg MemberConfig) (*Identity, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	id := &Identity{cfg: cfg, log: cfg.Logger, changed: make(chan struct{})}
	if cfg.CAFile != "" {
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		id.extra = x509.NewCertPool()
		if !id.extra.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", cfg.CAFile)
		}
	}
	if cfg.Dir != "" {
		if err := id.load(); errors.Is(err, errNoCertificate) {
			id.log.Info("no member certificate in the data dir yet; joining", "dir", cfg.Dir)
		} else if err != nil {
			id.log.Warn("no usable member certificate in the data dir; joining again", "dir", cfg.Dir, "err", err)
		}
	}
	if id.cert == nil {
		if cfg.JoinToken == "" {
			return nil, fmt.Errorf("member %q has no certificate in %q: give a join token (outpostctl node join-token create)", cfg.Name, cfg.Dir)
		}
		if _, _, err := ParseJoinToken(cfg.JoinToken); err != nil {
			return nil, err
		}
		if cfg.CAPin != "" {
			if _, err := ParsePin(cfg.CAPin); err != nil {
				return nil, err
			}
		}
	}
	return id, nil
}

// errNoCertificate: the member has not joined yet.
var errNoCertificate = errors.New("no member certificate yet")

// load reads the member's files; an error leaves id without a certificate.
func (id *Identity) load() error {
	dir := id.cfg.Dir
	if _, err := os.Stat(filepath.Join(dir, CertFile)); errors.Is(err, os.ErrNotExist) {
		return errNoCertificate
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("member certificate: %w", err)
	}
	if pair.Leaf.Subject.CommonName != id.cfg.Name {
		return fmt.Errorf("the stored certificate is for %q, not %q", pair.Leaf.Subject.CommonName, id.cfg.Name)
	}
	if CertRole(pair.Leaf) != id.cfg.Role {
		return fmt.Errorf("the stored certificate is for another role (%s)", pair.Leaf.Subject.OrganizationalUnit)
	}
	if time.Now().After(pair.Leaf.NotAfter) {
		return fmt.Errorf("the stored certificate expired at %s", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	roots, err := id.rootsWith(caPEM)
	if err != nil {
		return err
	}
	id.mu.Lock()
	id.cert, id.caPEM, id.roots = &pair, caPEM, roots
	id.mu.Unlock()
	return nil
}

func (id *Identity) rootsWith(caPEM []byte) (*x509.CertPool, error) {
	roots := x509.NewCertPool()
	if id.extra != nil {
		roots = id.extra.Clone()
	}
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the cluster CA is not PEM")
	}
	return roots, nil
}

// Joined reports whether the member has a certificate.
func (id *Identity) Joined() bool {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert != nil
}

// Generation counts the certificates the identity has held: it changes
// when a renewal stores a new one. Connections dialled before the change
// still authenticate with the old certificate.
func (id *Identity) Generation() uint64 {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.gen
}

// Certificate returns the current certificate (nil before the join).
func (id *Identity) Certificate() *x509.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.cert == nil {
		return nil
	}
	return id.cert.Leaf
}

// Ensure joins the cluster if the member has no certificate yet, trying
// each controller once. It returns nil once a certificate is held.
func (id *Identity) Ensure(ctx context.Context) error {
	if id.Joined() {
		return nil
	}
	var errs []error
	for _, i := range mrand.Perm(len(id.cfg.Controllers)) {
		addr := id.cfg.Controllers[i]
		err := id.join(ctx, addr)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return errors.New("join: no controllers configured")
	}
	return fmt.Errorf("join: %w", errors.Join(errs...))
}

// Credentials returns TLS credentials for a new connection to a
// controller: the controller is verified against the cluster CA (and
// CAFile), and the client certificate is the one current at each
// handshake. Call it after Ensure succeeded.
func (id *Identity) Credentials() credentials.TransportCredentials {
	id.mu.Lock()
	roots := id.roots
	id.mu.Unlock()
	return credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			id.mu.Lock()
			defer id.mu.Unlock()
			if id.cert == nil {
				return &tls.Certificate{}, nil
			}
			return id.cert, nil
		},
	})
}

// Changed returns a channel closed when a renewal stores a new certificate.
func (id *Identity) Changed() <-chan struct{} {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.changed
}

// Run renews the certificate when two thirds of its lifetime have passed,
// until ctx ends, retrying failures with backoff (1s doubling to a minute).
// A renewal does not touch open connections. Call it after Ensure.
func (id *Identity) Run(ctx context.Context) {
	backoff := time.Second
	for {
		leaf := id.Certificate()
		if leaf == nil {
			return
		}
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		wait := time.Until(leaf.NotBefore.Add(life * 2 / 3))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			err := id.renewOnce(ctx)
			if err == nil {
				backoff = time.Second
				break
			}
			if time.Now().After(leaf.NotAfter) {
				id.log.Error("member certificate expired before it could be renewed; restart with a new join token", "err", err)
			} else {
				id.log.Warn("member certificate renewal failed; retrying", "err", err, "expires", leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Minute)
		}
	}
}

func (id *Identity) renewOnce(ctx context.Context) error {
	var errs []error
	for _, i := range mrand.Perm(len(id.cfg.Controllers)) {
		addr := id.cfg.Controllers[i]
		err := id.renew(ctx, addr)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return errors.Join(errs...)
}

func (id *Identity) renew(ctx context.Context, addr string) error {
	key, csrPEM, err := id.newKeyAndCSR()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(id.Credentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := outpostv1.NewPkiServiceClient(conn).RenewMemberCertificate(cctx, &outpostv1.RenewMemberCertificateRequest{CsrPem: csrPEM})
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	id.mu.Lock()
	caPEM := id.caPEM
	id.mu.Unlock()
	if err := id.store(key, []byte(resp.GetCertificatePem()), caPEM, nil); err != nil {
		return err
	}
	id.log.Info("member certificate renewed", "not_after", id.Certificate().NotAfter.UTC().Format(time.RFC3339), "serial", SerialHex(id.Certificate()))
	return nil
}

func (id *Identity) newKeyAndCSR() (*ecdsa.PrivateKey, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id.cfg.Name}}, key)
	if err != nil {
		return nil, "", fmt.Errorf("create CSR: %w", err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// join sends a CSR with the join token to one controller.
func (id *Identity) join(ctx context.Context, addr string) error {
	tokPin, _, err := ParseJoinToken(id.cfg.JoinToken)
	if err != nil {
		return err
	}
	pin := tokPin
	if id.cfg.CAPin != "" {
		if pin, err = ParsePin(id.cfg.CAPin); err != nil {
			return err
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if id.extra != nil {
		tc.RootCAs = id.extra
	} else {
		// Trust on first use, pinned: the controller's chain must verify
		// against a CA certificate in it whose public key has the pin.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error { return verifyPinned(cs, pin) }
	}
	key, csrPEM, err := id.newKeyAndCSR()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := outpostv1.NewPkiServiceClient(conn).Join(cctx, &outpostv1.JoinRequest{Token: id.cfg.JoinToken, CsrPem: csrPEM})
	if err != nil {
		return err
	}
	if err := id.store(key, []byte(resp.GetCertificatePem()), []byte(resp.GetCaCertificatePem()), pin); err != nil {
		return err
	}
	id.log.Info("joined the cluster", "name", id.cfg.Name, "controller", addr, "not_after", id.Certificate().NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// verifyPinned checks a controller's chain against the CA with the pin
// among the certificates it sent.
func verifyPinned(cs tls.ConnectionState, pin []byte) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the controller sent no certificate")
	}
	pool := x509.NewCertPool()
	found := false
	for _, c := range cs.PeerCertificates {
		if c.IsCA && bytes.Equal(PinBytes(c), pin) {
			pool.AddCert(c)
			found = true
		}
	}
	if !found {
		return errors.New("the controller's chain has no CA with the join token's pin")
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: cs.ServerName})
	return err
}

// store checks a certificate the controller issued for key (chaining to
// caPEM, whose pin must be pin unless pin is nil), writes the files and
// makes it current.
func (id *Identity) store(key *ecdsa.PrivateKey, certPEM, caPEM, pin []byte) error {
	caBlock, _ := pem.Decode(caPEM)
	if caBlock == nil {
		return errors.New("the controller sent no CA certificate")
	}
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	if pin != nil && !bytes.Equal(PinBytes(ca), pin) {
		return errors.New("the controller's CA certificate does not have the pin")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if pair.Leaf.Subject.CommonName != id.cfg.Name {
		return fmt.Errorf("issued certificate is for %q", pair.Leaf.Subject.CommonName)
	}
	if r := CertRole(pair.Leaf); r != id.cfg.Role {
		return fmt.Errorf("issued certificate is for role %s, not %s: the join token is for another role", r, id.cfg.Role)
	}
	roots, err := id.rootsWith(caPEM)
	if err != nil {
		return err
	}
	if dir := id.cfg.Dir; dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		// The key first: a certificate on disk always has its key.
		for _, f := range []struct {
			name string
			data []byte
		}{{KeyFile, keyPEM}, {CAFile, caPEM}, {CertFile, certPEM}} {
			if err := writeFileAtomic(filepath.Join(dir, f.name), f.data); err != nil {
				return err
			}
		}
	}
	id.mu.Lock()
	id.cert, id.caPEM, id.roots = &pair, caPEM, roots
	id.gen++
	close(id.changed)
	id.changed = make(chan struct{})
	id.mu.Unlock()
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// HasCertificate reports whether dir holds a member certificate (valid or
// not): a member started without a join token may still have joined before.
func HasCertificate(dir string) bool {
	if dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, CertFile))
	return err == nil
}
