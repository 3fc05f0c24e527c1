package controller

import (
	"context"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// httpsService implements outpostv1.HttpsServiceServer.
type httpsService struct {
	outpostv1.UnimplementedHttpsServiceServer
	c *Controller
}

var _ outpostv1.HttpsServiceServer = (*httpsService)(nil)

func (s *httpsService) EnableHttps(ctx context.Context, req *outpostv1.EnableHttpsRequest) (*outpostv1.EnableHttpsResponse, error) {
	c, p := s.c, principalFrom(ctx)
	var cert *outpostv1.Certificate
	d, err := c.updateDomain(ctx, req.GetDomain(), func(t *store.Txn, d *outpostv1.Domain) error {
		owned := false
		switch src := req.GetSource().(type) {
		case *outpostv1.EnableHttpsRequest_Free:
			if !src.Free {
				return apierr.InvalidArgument(apierr.ReasonInvalidArgument, "give a certificate ID, a certificate and key to upload, or free")
			}
			if err := c.enableFreeHTTPS(d); err != nil {
				return err
			}
			// HTTPS stays as it is until the free certificate is issued:
			// answer with the certificate served meanwhile, if any.
			if id := d.GetHttps().GetCertificateId(); id != "" {
				sc, err := c.ownCertificate(ctx, t, id)
				if err != nil {
					return err
				}
				cert = sc.GetCertificate()
			}
			return nil
		case *outpostv1.EnableHttpsRequest_CertificateId:
			sc, err := c.ownCertificate(ctx, t, src.CertificateId)
			if err != nil {
				return err
			}
			cert = sc.GetCertificate()
			// A certificate uploaded inline belongs to its domain: its key
			// is forgotten with that domain's HTTPS, so no other domain may
			// come to depend on it.
			if owner := cert.GetOwnerDomain(); owner != "" {
				if owner != d.GetName() {
					return apierr.FailedPrecondition(apierr.ReasonCertificateOwned,
						"certificate %s was uploaded for %s only; upload it to the certificate list to share it", cert.GetId(), owner)
				}
				owned = true
			}
			if cert.GetNotAfter().AsTime().Before(c.cfg.Now()) {
				return apierr.InvalidArgument(apierr.ReasonCertificateExpired, "certificate %s expired at %s", cert.GetId(), cert.GetNotAfter().AsTime())
			}
		case *outpostv1.EnableHttpsRequest_Upload:
			up := src.Upload
			if up == nil {
				return apierr.InvalidArgument(apierr.ReasonCertificateNotPem, "the inline certificate is empty")
			}
			var err error
			// Check coverage before storing anything.
			if cert, err = c.addCertificate(ctx, t, p.Account, up.GetName(), up.GetCertificatePem(), up.GetPrivateKeyPem(), d.GetName()); err != nil {
				return err
			}
			owned = true
		default:
			return apierr.InvalidArgument(apierr.ReasonInvalidArgument, "give a certificate ID, a certificate and key to upload, or free")
		}
		if !coversDomain(cert, d.GetName()) {
			return apierr.InvalidArgument(apierr.ReasonCertificateDomainMismatch,
				"certificate %s (%v) does not cover domain %s", cert.GetId(), cert.GetDnsNames(), d.GetName()).With("domain", d.GetName())
		}
		if d.GetHttps().GetCertificateId() != cert.GetId() {
			if err := c.unbindCertificate(ctx, t, d); err != nil {
				return err
			}
			t.PutRaw(store.CertDomainKey(cert.GetId(), d.GetName()), "")
		}
		// A certificate given here replaces a free one: free is cleared,
		// and the free certificate (owned by the domain) was unbound and
		// deleted above.
		d.Https = &outpostv1.HttpsSettings{
			Enabled:          true,
			CertificateId:    cert.GetId(),
			Redirect:         d.GetHttps().GetRedirect(),
			CertificateOwned: owned,
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if cert != nil && cert.GetRevision() == 0 {
		cert.Revision = d.GetRevision() // uploaded inline: written with the domain
	}
	return &outpostv1.EnableHttpsResponse{Https: d.GetHttps(), Certificate: cert}, nil
}

// coversDomain checks a certificate's names against an accelerated name
// with the same rules the edge uses when it picks a certificate by SNI.
func coversDomain(cert *outpostv1.Certificate, domain string) bool {
	return certs.CoversNames(cert.GetDnsNames(), domain)
}

// unbindCertificate queues the removal of a domain's certificate binding.
// A certificate uploaded inline for the domain is deleted with its key:
// disabling HTTPS forgets the domain's key material (seeds/003).
func (c *Controller) unbindCertificate(ctx context.Context, t *store.Txn, d *outpostv1.Domain) error {
	id := d.GetHttps().GetCertificateId()
	if id == "" {
		return nil
	}
	t.Delete(store.CertDomainKey(id, d.GetName()))
	if !d.GetHttps().GetCertificateOwned() {
		return nil
	}
	sc := &storagev1.StoredCertificate{}
	found, err := t.Get(ctx, store.CertKey(id), sc)
	if err != nil || !found {
		return err
	}
	t.Delete(store.CertKey(id))
	t.Delete(store.AccountCertKey(sc.GetCertificate().GetAccount(), id))
	return nil
}

func (s *httpsService) DisableHttps(ctx context.Context, req *outpostv1.DisableHttpsRequest) (*outpostv1.DisableHttpsResponse, error) {
	d, err := s.c.updateDomain(ctx, req.GetDomain(), func(t *store.Txn, d *outpostv1.Domain) error {
		if err := s.c.unbindCertificate(ctx, t, d); err != nil {
			return err
		}
		// A forced redirect to HTTPS without HTTPS would break the site.
		d.Https = &outpostv1.HttpsSettings{Redirect: outpostv1.RedirectPolicy_REDIRECT_POLICY_OFF}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.DisableHttpsResponse{Https: d.GetHttps()}, nil
}

func (s *httpsService) SetHttpsRedirect(ctx context.Context, req *outpostv1.SetHttpsRedirectRequest) (*outpostv1.SetHttpsRedirectResponse, error) {
	r := req.GetRedirect()
	if r == outpostv1.RedirectPolicy_REDIRECT_POLICY_UNSPECIFIED {
		r = outpostv1.RedirectPolicy_REDIRECT_POLICY_OFF
	}
	if _, ok := outpostv1.RedirectPolicy_name[int32(r)]; !ok {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidPolicy, "redirect policy %d is unknown: use https, http or off", r)
	}
	d, err := s.c.updateDomain(ctx, req.GetDomain(), func(_ *store.Txn, d *outpostv1.Domain) error {
		if r != outpostv1.RedirectPolicy_REDIRECT_POLICY_OFF && !d.GetHttps().GetEnabled() {
			return apierr.FailedPrecondition(apierr.ReasonHTTPSNotEnabled, "enable HTTPS on %s before forcing a redirect", d.GetName())
		}
		if d.Https == nil {
			d.Https = &outpostv1.HttpsSettings{}
		}
		d.Https.Redirect = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.SetHttpsRedirectResponse{Https: d.GetHttps()}, nil
}

func (s *httpsService) GetHttpsSettings(ctx context.Context, req *outpostv1.GetHttpsSettingsRequest) (*outpostv1.GetHttpsSettingsResponse, error) {
	c := s.c
	t := c.store.Begin()
	d, err := c.ownDomain(ctx, t, req.GetDomain())
	if err != nil {
		return nil, err
	}
	resp := &outpostv1.GetHttpsSettingsResponse{Https: d.GetHttps()}
	if id := d.GetHttps().GetCertificateId(); id != "" {
		sc, err := c.ownCertificate(ctx, t, id)
		if err != nil {
			return nil, err
		}
		resp.Certificate = sc.GetCertificate()
	}
	return resp, nil
}
