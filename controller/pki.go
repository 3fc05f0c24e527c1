package controller

import (
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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/clusterpki"
	"github.com/outpost-cdn/outpost/internal/seal"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Certificate validity follows the real clock (time.Now), not Config.Now:
// every TLS stack that checks these certificates uses the real clock.
//
// The cluster CA: created once in etcd by the first controller to start,
// its key sealed with the controllers' keyring (associated data
// caKeyAAD). It signs the member certificates of edge nodes and schedulers
// (client authentication) and the controllers' own serving certificates.
const (
	caKeyAAD       = "cluster-ca"
	caLifetime     = 10 * 365 * 24 * time.Hour
	servingTTL     = 7 * 24 * time.Hour
	maxJoinTTL     = 7 * 24 * time.Hour
	defaultJoinTTL = time.Hour
)

// clusterCA is the opened CA. Its key never leaves the controller's memory:
// no RPC returns it and nothing logs it.
type clusterCA struct {
	cert    *x509.Certificate
	certPEM string
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
}

// loadCA reads the cluster CA from etcd, creating it if it is absent. The
// creation is a put-if-absent transaction, so controllers starting at once
// agree on one CA: the losers read the winner's.
func (c *Controller) loadCA(ctx context.Context) (*clusterCA, error) {
	for attempt := 0; attempt < 5; attempt++ {
		var rec storagev1.ClusterCa
		_, found, err := c.store.Get(ctx, store.ClusterCAKey(), &rec)
		if err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
		if found {
			return openCA(ctx, c.sealer, &rec)
		}
		created, err := newCARecord(ctx, c.sealer, time.Now())
		if err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
		t := c.store.Begin()
		if found, err := t.Guard(ctx, store.ClusterCAKey()); err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		} else if found {
			continue
		}
		t.Put(store.ClusterCAKey(), created)
		if _, err := t.Commit(ctx); errors.Is(err, store.ErrConflict) {
			continue // another controller created it first
		} else if err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
		c.log.Info("created the cluster CA")
		return openCA(ctx, c.sealer, created)
	}
	return nil, errors.New("cluster CA: too many conflicting writes")
}

func newCARecord(ctx context.Context, s *seal.Sealer, now time.Time) (*storagev1.ClusterCa, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: "Outpost cluster CA", Organization: []string{"Outpost"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	sealed, err := s.Seal(ctx, keyDER, []byte(caKeyAAD))
	if err != nil {
		return nil, err
	}
	return &storagev1.ClusterCa{CertificatePem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), PrivateKey: sealed}, nil
}

func openCA(ctx context.Context, s *seal.Sealer, rec *storagev1.ClusterCa) (*clusterCA, error) {
	b, _ := pem.Decode([]byte(rec.GetCertificatePem()))
	if b == nil {
		return nil, errors.New("cluster CA: the stored certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	keyDER, err := s.Open(ctx, rec.GetPrivateKey(), []byte(caKeyAAD))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: open the key (is this the controllers' keyring?): %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("cluster CA: the key does not match the certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &clusterCA{cert: cert, certPEM: rec.GetCertificatePem(), key: key, pool: pool}, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// sign issues a certificate from tmpl for pub. The result is leaf PEM.
func (ca *clusterCA) sign(tmpl *x509.Certificate, pub any) (*x509.Certificate, string, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, "", err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, "", err
	}
	return cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

// backdate is how far before its issue a certificate's NotBefore is set,
// for clocks a little behind: a minute, or a quarter of short lifetimes.
func backdate(ttl time.Duration) time.Duration { return min(time.Minute, ttl/4) }

// memberTemplate is the certificate a member (edge node or scheduler) gets:
// its name as CN and DNS name, its role as OU, client authentication only.
func memberTemplate(name string, role outpostv1.MemberRole, now time.Time, ttl time.Duration) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Outpost"}, OrganizationalUnit: []string{clusterpki.RoleOU(role)}},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-backdate(ttl)),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// servingCert is the certificate the gRPC listener presents: issued from
// the cluster CA at start and again once two thirds of its life passed
// (at the next handshake), or the operator's (-tls-cert-file), loaded once.
type servingCert struct {
	ca    *clusterCA
	sans  []string
	now   func() time.Time
	fixed *tls.Certificate

	mu    sync.Mutex
	cert  *tls.Certificate
	renew time.Time
}

func (s *servingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.fixed != nil {
		return s.fixed, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.cert != nil && now.Before(s.renew) {
		return s.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: "outpost-controller", Organization: []string{"Outpost"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(servingTTL),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, san := range s.sans {
		if ip := net.ParseIP(san); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	leaf, _, err := s.ca.sign(tmpl, key.Public())
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	// The CA certificate goes with the leaf, so that a member joining
	// with only the CA pin finds the CA to check the pin against.
	s.cert = &tls.Certificate{Certificate: [][]byte{leaf.Raw, s.ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
	s.renew = now.Add(servingTTL * 2 / 3)
	return s.cert, nil
}

// servingSANs are the names the issued serving certificate covers.
func servingSANs(listen string, extra []string) []string {
	sans := []string{"localhost", "127.0.0.1", "::1"}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			sans = append(sans, host)
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		sans = append(sans, h)
	}
	sans = append(sans, extra...)
	slices.Sort(sans)
	return slices.Compact(sans)
}

// serverTLS is the gRPC listener's TLS: the serving certificate, and
// client certificates requested and, when sent, verified against the
// cluster CA. Admin clients send none and authenticate with bearer tokens.
func (c *Controller) serverTLS() (*tls.Config, error) {
	sc := &servingCert{ca: c.ca, sans: servingSANs(c.cfg.ListenAddr, c.cfg.TLSSANs), now: time.Now}
	switch {
	case c.cfg.TLSCertFile != "" && c.cfg.TLSKeyFile != "":
		pair, err := tls.LoadX509KeyPair(c.cfg.TLSCertFile, c.cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("serving certificate (-tls-cert-file, -tls-key-file): %w", err)
		}
		// Members joining with only the pin need the CA in the chain.
		pair.Certificate = append(pair.Certificate, c.ca.cert.Raw)
		sc.fixed = &pair
	case c.cfg.TLSCertFile != "" || c.cfg.TLSKeyFile != "":
		return nil, errors.New("give both -tls-cert-file and -tls-key-file, or neither")
	default:
		if _, err := sc.get(nil); err != nil {
			return nil, err
		}
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: sc.get,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      c.ca.pool,
		NextProtos:     []string{"h2"},
	}, nil
}

// writeCACert writes the CA certificate to -ca-cert-out, if set. It writes
// a temporary file of its own and renames it over the path, so that
// several controllers may share one path (they write the same CA).
func (c *Controller) writeCACert() error {
	path := c.cfg.CACertOut
	if path == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return fmt.Errorf("ca cert out: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(c.ca.certPEM)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("ca cert out: %w", err)
	}
	return nil
}

// checkMemberCert checks a member certificate by its record: known, for
// name, not revoked, and not expired.
func (c *Controller) checkMemberCert(ctx context.Context, serial string, name string, notAfter time.Time) error {
	var rec outpostv1.MemberCertificate
	_, found, err := c.store.Get(ctx, store.MemberCertKey(serial), &rec)
	if err != nil {
		return err
	}
	switch {
	case !found || rec.GetName() != name:
		return apierrUnknownCert()
	case rec.GetRevokeTime() != nil:
		return apierrRevoked(name)
	case !time.Now().Before(notAfter):
		return apierrExpired()
	}
	return nil
}

// pruneMemberCerts deletes the records of member certificates that expired
// more than a day ago: nothing can present them any more.
func (c *Controller) pruneMemberCerts(ctx context.Context) {
	cutoff := time.Now().Add(-24 * time.Hour)
	after := ""
	for {
		kvs, _, err := c.store.Range(ctx, store.MemberCertsPrefix(), after, 256)
		if err != nil || len(kvs) == 0 {
			return
		}
		for _, kv := range kvs {
			after = kv.Key
			var rec outpostv1.MemberCertificate
			if store.Decode(kv, &rec) != nil || rec.GetNotAfter() == nil || rec.GetNotAfter().AsTime().After(cutoff) {
				continue
			}
			if _, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(kv.Key), "=", kv.ModRevision)).Then(clientv3.OpDelete(kv.Key)).Commit(); err != nil {
				c.log.Debug("cannot prune a member certificate record", "key", kv.Key, "err", err)
			}
		}
		if len(kvs) < 256 {
			return
		}
	}
}

// defaultMemberCertTTL is the lifetime of member certificates unless
// -node-cert-ttl says otherwise.
const defaultMemberCertTTL = 24 * time.Hour
