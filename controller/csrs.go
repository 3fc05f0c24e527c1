package controller

// Certificate signing requests: the controller makes the key pair, keeps
// the private key sealed in etcd and hands out only the PKCS#10 request;
// CompleteCsr turns the certificate a CA signed into a certificate of the
// account, with the key moved over still sealed.

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// csrIDPrefix and certIDPrefix begin CSR and certificate IDs.
const (
	csrIDPrefix  = "csr-"
	certIDPrefix = "cert-"
)

// csrCertificateID is the ID of the certificate a CSR becomes: "cert-"
// followed by the CSR ID's random digits. The CSR's key is sealed with
// this ID as associated data, as every certificate's key is sealed with
// its own ID, so CompleteCsr moves the sealed key into the certificate as
// it is: the key is never opened to complete a CSR. The binding is one to
// one: the sealed key of one CSR does not open in the record of another.
func csrCertificateID(csrID string) string {
	return certIDPrefix + strings.TrimPrefix(csrID, csrIDPrefix)
}

func csrNotFound(id string) error {
	return apierr.NotFound(apierr.ReasonCsrNotFound, "CSR %s not found", id).With("csr_id", id)
}

// ownCsr reads a CSR of the caller's account in t. Other accounts' CSRs
// read as not found.
func (c *Controller) ownCsr(ctx context.Context, t *store.Txn, id string) (*storagev1.StoredCsr, error) {
	p := principalFrom(ctx)
	if id == "" {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "a CSR ID is required")
	}
	if !strings.HasPrefix(id, csrIDPrefix) {
		return nil, csrNotFound(id)
	}
	sc := &storagev1.StoredCsr{}
	found, err := t.Get(ctx, store.CsrKey(id), sc)
	if err != nil {
		return nil, err
	}
	if !found || sc.GetCsr().GetAccount() != p.Account {
		return nil, csrNotFound(id)
	}
	return sc, nil
}

func (s *certificateService) CreateCsr(ctx context.Context, req *outpostv1.CreateCsrRequest) (*outpostv1.CreateCsrResponse, error) {
	c, p := s.c, principalFrom(ctx)
	kt, err := certs.CSRKeyType(req.GetKeyType())
	if err != nil {
		return nil, err
	}
	sub, err := certs.NewCSRSubject(req.GetCommonName(), req.GetDnsNames(), req.GetOrganization(), req.GetCountry())
	if err != nil {
		return nil, err
	}
	t := c.store.Begin()
	if found, err := t.Guard(ctx, store.AccountKey(p.Account)); err != nil {
		return nil, err
	} else if !found {
		return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %s does not exist", p.Account)
	}

	key, err := certs.GenerateKey(kt)
	if err != nil {
		return nil, err
	}
	csrPEM, err := certs.CreateCSR(key, sub)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	// Sealed as the PKCS#8 PEM that uploaded keys are sealed as, so the
	// certificate it becomes is like any other.
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	id := newID("csr")
	sealed, err := c.sealer.Seal(ctx, keyPEM, []byte(csrCertificateID(id)))
	clear(der)
	clear(keyPEM)
	if err != nil {
		return nil, err
	}

	name := strings.TrimSpace(req.GetName())
	if name == "" {
		name = sub.CommonName
	}
	csr := &outpostv1.Csr{
		Id:         id,
		Account:    p.Account,
		Name:       name,
		CommonName: sub.CommonName,
		DnsNames:   sub.DNSNames,
		KeyType:    kt,
		CsrPem:     csrPEM,
		CreateTime: c.timestamp(),
	}
	if _, err := t.Guard(ctx, store.CsrKey(id)); err != nil {
		return nil, err
	}
	t.Put(store.CsrKey(id), &storagev1.StoredCsr{Csr: csr, PrivateKey: sealed})
	t.PutRaw(store.AccountCsrKey(p.Account, id), "")
	if _, err := t.Commit(ctx); err != nil {
		return nil, err
	}
	return &outpostv1.CreateCsrResponse{Csr: csr}, nil
}

func (s *certificateService) GetCsr(ctx context.Context, req *outpostv1.GetCsrRequest) (*outpostv1.GetCsrResponse, error) {
	sc, err := s.c.ownCsr(ctx, s.c.store.Begin(), req.GetId())
	if err != nil {
		return nil, err
	}
	return &outpostv1.GetCsrResponse{Csr: sc.GetCsr()}, nil
}

func (s *certificateService) ListCsrs(ctx context.Context, req *outpostv1.ListCsrsRequest) (*outpostv1.ListCsrsResponse, error) {
	c, p := s.c, principalFrom(ctx)
	ids, next, err := c.indexPage(ctx, store.AccountCsrsPrefix(p.Account), req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, err
	}
	resp := &outpostv1.ListCsrsResponse{NextPageToken: next}
	for _, id := range ids {
		sc := &storagev1.StoredCsr{}
		_, found, err := c.store.Get(ctx, store.CsrKey(id), sc)
		if err != nil {
			return nil, err
		}
		if !found || sc.GetCsr().GetAccount() != p.Account {
			continue
		}
		resp.Csrs = append(resp.Csrs, sc.GetCsr())
	}
	return resp, nil
}

func (s *certificateService) CompleteCsr(ctx context.Context, req *outpostv1.CompleteCsrRequest) (*outpostv1.CompleteCsrResponse, error) {
	c, p := s.c, principalFrom(ctx)
	t := c.store.Begin()
	sc, err := c.ownCsr(ctx, t, req.GetId())
	if err != nil {
		return nil, err
	}
	csr := sc.GetCsr()
	if done := csr.GetCertificateId(); done != "" {
		return nil, apierr.FailedPrecondition(apierr.ReasonCsrAlreadyCompleted,
			"CSR %s was already completed: it became certificate %s; to replace that certificate's chain, renew the certificate", csr.GetId(), done).
			With("csr_id", csr.GetId()).With("certificate_id", done)
	}
	if sc.GetPrivateKey() == nil {
		// Not completed, yet without a key: a damaged record.
		return nil, apierr.FailedPrecondition(apierr.ReasonCsrAlreadyCompleted, "CSR %s holds no private key", csr.GetId()).With("csr_id", csr.GetId())
	}
	// The public key comes from the request the controller signed; the
	// private key stays sealed.
	parsed, err := certs.ParseCSR(csr.GetCsrPem())
	if err != nil {
		return nil, err
	}
	chain, err := certs.ParseChainFor([]byte(req.GetCertificatePem()), parsed.PublicKey, c.cfg.Now())
	if err != nil {
		return nil, err
	}
	if found, err := t.Guard(ctx, store.AccountKey(p.Account)); err != nil {
		return nil, err
	} else if !found {
		return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %s does not exist", p.Account)
	}
	cert, err := c.addSealedCertificate(ctx, t, sealedCertificate{
		id:      csrCertificateID(csr.GetId()),
		account: p.Account,
		name:    csr.GetName(),
		chain:   chain,
		key:     sc.GetPrivateKey(),
		source:  outpostv1.CertificateSource_CERTIFICATE_SOURCE_CSR,
	})
	if err != nil {
		return nil, err
	}
	// The key now belongs to the certificate: the CSR keeps no copy, so
	// deleting the certificate deletes the key.
	csr.CertificateId = cert.GetId()
	t.Put(store.CsrKey(csr.GetId()), &storagev1.StoredCsr{Csr: csr})
	rev, err := t.Commit(ctx)
	if err != nil {
		return nil, err
	}
	cert.Revision = rev
	c.log.Info("CSR completed", "csr_id", csr.GetId(), "certificate_id", cert.GetId(), "account", p.Account)
	return &outpostv1.CompleteCsrResponse{Certificate: cert, Csr: csr}, nil
}

func (s *certificateService) DeleteCsr(ctx context.Context, req *outpostv1.DeleteCsrRequest) (*outpostv1.DeleteCsrResponse, error) {
	c, p := s.c, principalFrom(ctx)
	t := c.store.Begin()
	sc, err := c.ownCsr(ctx, t, req.GetId())
	if err != nil {
		return nil, err
	}
	// A pending CSR's sealed key goes with its record.
	t.Delete(store.CsrKey(sc.GetCsr().GetId()))
	t.Delete(store.AccountCsrKey(p.Account, sc.GetCsr().GetId()))
	if _, err := t.Commit(ctx); err != nil {
		return nil, err
	}
	c.log.Info("CSR deleted", "csr_id", sc.GetCsr().GetId(), "account", p.Account, "pending", sc.GetCsr().GetCertificateId() == "")
	return &outpostv1.DeleteCsrResponse{}, nil
}

// sealedCertificate is a certificate whose private key is already sealed,
// with the certificate's ID as associated data.
type sealedCertificate struct {
	id, account, name string
	chain             []*x509.Certificate // validated, leaf first
	key               *storagev1.SealedSecret
	source            outpostv1.CertificateSource
}

// addSealedCertificate queues on t the writes of a new certificate whose
// key is already sealed: the path of addCertificate (certificates.go)
// without the key ever being opened. The new ID must be free.
func (c *Controller) addSealedCertificate(ctx context.Context, t *store.Txn, sc sealedCertificate) (*outpostv1.Certificate, error) {
	cert := certs.Describe(sc.chain)
	cert.Id = sc.id
	cert.Name = sc.name
	if cert.Name == "" {
		cert.Name = cert.GetCommonName()
	}
	cert.Account = sc.account
	cert.CreateTime = c.timestamp()
	cert.Version = 1
	cert.Source = sc.source
	cert.ChainTrust = certs.ChainTrust(sc.chain, nil, c.cfg.Now())
	if found, err := t.Guard(ctx, store.CertKey(sc.id)); err != nil {
		return nil, err
	} else if found {
		// IDs are random: only a broken record gets here.
		return nil, fmt.Errorf("certificate ID %s is taken", sc.id)
	}
	t.Put(store.CertKey(sc.id), &storagev1.StoredCertificate{Certificate: cert, PrivateKey: sc.key})
	t.PutRaw(store.AccountCertKey(sc.account, sc.id), "")
	return cert, nil
}
