package controller

import (
	"context"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// certificateService implements outpostv1.CertificateServiceServer.
type certificateService struct {
	outpostv1.UnimplementedCertificateServiceServer
	c *Controller
}

var _ outpostv1.CertificateServiceServer = (*certificateService)(nil)

// addCertificate validates a certificate and key, seals the key, and queues
// the certificate's writes on t. ownerDomain is set for certificates
// uploaded inline with EnableHttps.
func (c *Controller) addCertificate(ctx context.Context, t *store.Txn, account, name, certPEM, keyPEM, ownerDomain string) (*outpostv1.Certificate, error) {
	parsed, err := certs.ParsePair([]byte(certPEM), []byte(keyPEM), c.cfg.Now())
	if err != nil {
		return nil, err
	}
	id := newID("cert")
	sealed, err := c.sealer.Seal(ctx, parsed.KeyPEM, []byte(id))
	if err != nil {
		return nil, err
	}
	cert := certs.Describe(parsed.Chain)
	cert.Id = id
	cert.Name = name
	if cert.Name == "" {
		cert.Name = cert.GetCommonName()
	}
	cert.Account = account
	cert.CreateTime = c.timestamp()
	cert.OwnerDomain = ownerDomain
	cert.Version = 1
	cert.Source = outpostv1.CertificateSource_CERTIFICATE_SOURCE_UPLOADED
	cert.ChainTrust = certs.ChainTrust(parsed.Chain, nil, c.cfg.Now())
	if _, err := t.Guard(ctx, store.CertKey(id)); err != nil {
		return nil, err
	}
	t.Put(store.CertKey(id), &storagev1.StoredCertificate{Certificate: cert, PrivateKey: sealed})
	t.PutRaw(store.AccountCertKey(account, id), "")
	return cert, nil
}

func certificateNotFound(id string) error {
	return apierr.NotFound(apierr.ReasonCertificateNotFound, "certificate %s not found", id).With("certificate_id", id)
}

// ownCertificate reads a certificate of the caller's account in t.
func (c *Controller) ownCertificate(ctx context.Context, t *store.Txn, id string) (*storagev1.StoredCertificate, error) {
	p := principalFrom(ctx)
	if id == "" {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "a certificate ID is required")
	}
	sc := &storagev1.StoredCertificate{}
	found, err := t.Get(ctx, store.CertKey(id), sc)
	if err != nil {
		return nil, err
	}
	if !found || sc.GetCertificate().GetAccount() != p.Account {
		return nil, certificateNotFound(id)
	}
	sc.Certificate.Revision = t.ModRevision(store.CertKey(id))
	c.completeCertificate(sc.GetCertificate())
	return sc, nil
}

func (s *certificateService) UploadCertificate(ctx context.Context, req *outpostv1.UploadCertificateRequest) (*outpostv1.UploadCertificateResponse, error) {
	c, p := s.c, principalFrom(ctx)
	t := c.store.Begin()
	if found, err := t.Guard(ctx, store.AccountKey(p.Account)); err != nil {
		return nil, err
	} else if !found {
		return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %s does not exist", p.Account)
	}
	cert, err := c.addCertificate(ctx, t, p.Account, req.GetName(), req.GetCertificatePem(), req.GetPrivateKeyPem(), "")
	if err != nil {
		return nil, err
	}
	rev, err := t.Commit(ctx)
	if err != nil {
		return nil, err
	}
	cert.Revision = rev
	return &outpostv1.UploadCertificateResponse{Certificate: cert}, nil
}

func (s *certificateService) GetCertificate(ctx context.Context, req *outpostv1.GetCertificateRequest) (*outpostv1.GetCertificateResponse, error) {
	sc, err := s.c.ownCertificate(ctx, s.c.store.Begin(), req.GetId())
	if err != nil {
		return nil, err
	}
	return &outpostv1.GetCertificateResponse{Certificate: sc.GetCertificate()}, nil
}

func (s *certificateService) ListCertificates(ctx context.Context, req *outpostv1.ListCertificatesRequest) (*outpostv1.ListCertificatesResponse, error) {
	c, p := s.c, principalFrom(ctx)
	match, err := c.certificateFilter(req)
	if err != nil {
		return nil, err
	}
	list, next, err := scanIndex(ctx, c, store.AccountCertsPrefix(p.Account), req.GetPageToken(), req.GetPageSize(),
		func(ctx context.Context, t *store.Txn, ids []string) ([]*outpostv1.Certificate, error) {
			all, err := c.readCertificates(ctx, t, p.Account, ids)
			if err != nil {
				return nil, err
			}
			for i, cert := range all {
				if cert != nil && !match(cert) {
					all[i] = nil
				}
			}
			return all, nil
		})
	if err != nil {
		return nil, err
	}
	return &outpostv1.ListCertificatesResponse{Certificates: list, NextPageToken: next}, nil
}

func (s *certificateService) DeleteCertificate(ctx context.Context, req *outpostv1.DeleteCertificateRequest) (*outpostv1.DeleteCertificateResponse, error) {
	c := s.c
	t := c.store.Begin()
	sc, err := c.ownCertificate(ctx, t, req.GetId())
	if err != nil {
		return nil, err
	}
	id := sc.GetCertificate().GetId()
	n, err := t.Count(ctx, store.CertDomainsPrefix(id))
	if err != nil {
		return nil, err
	}
	if n > 0 {
		return nil, apierr.FailedPrecondition(apierr.ReasonCertificateInUse,
			"certificate %s is used by %d domain(s): disable HTTPS on them or deploy another certificate first", id, n)
	}
	t.Delete(store.CertKey(id))
	t.Delete(store.AccountCertKey(sc.GetCertificate().GetAccount(), id))
	if _, err := t.Commit(ctx); err != nil {
		return nil, err
	}
	return &outpostv1.DeleteCertificateResponse{}, nil
}
