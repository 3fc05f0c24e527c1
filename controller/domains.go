package controller

import (
	"context"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// domainService implements outpostv1.DomainServiceServer.
type domainService struct {
	outpostv1.UnimplementedDomainServiceServer
	c *Controller
}

var _ outpostv1.DomainServiceServer = (*domainService)(nil)

func (s *domainService) CreateDomain(ctx context.Context, req *outpostv1.CreateDomainRequest) (*outpostv1.CreateDomainResponse, error) {
	c, p := s.c, principalFrom(ctx)
	name, err := names.Domain(req.GetName())
	if err != nil {
		return nil, err
	}
	origins, err := normalizeOrigins(name, req.GetOrigins(), c.cfg.OriginPorts)
	if err != nil {
		return nil, err
	}
	bt, err := businessType(req.GetBusinessType())
	if err != nil {
		return nil, err
	}
	sc, err := scope(req.GetScope())
	if err != nil {
		return nil, err
	}

	t := c.store.Begin()
	acct := &outpostv1.Account{}
	found, err := t.Get(ctx, store.AccountKey(p.Account), acct)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %s does not exist", p.Account)
	}
	if exists, err := t.Guard(ctx, store.DomainKey(name)); err != nil {
		return nil, err
	} else if exists {
		return nil, apierr.AlreadyExists(apierr.ReasonDomainAlreadyExist, "domain %s has already been added to Outpost", name).With("domain", name)
	}
	count, err := t.CountGuarded(ctx, store.AccountDomainsPrefix(p.Account), store.AccountDomainsGuardKey(p.Account))
	if err != nil {
		return nil, err
	}
	if quota := c.quota(acct); count >= int64(quota) {
		return nil, apierr.ResourceExhausted(apierr.ReasonDomainQuotaExceeded,
			"account %s already has %d of its %d domains; ask the operator to raise the quota", p.Account, count, quota).
			With("quota", itoa(quota))
	}
	now := c.timestamp()
	d := &outpostv1.Domain{
		Name:           name,
		Account:        p.Account,
		Cname:          names.CNAME(name, c.cfg.CNAMESuffix),
		Status:         outpostv1.DomainStatus_DOMAIN_STATUS_CONFIGURING,
		BusinessType:   bt,
		Scope:          sc,
		Origins:        origins,
		Https:          &outpostv1.HttpsSettings{Redirect: outpostv1.RedirectPolicy_REDIRECT_POLICY_OFF},
		OriginSettings: &outpostv1.OriginSettings{ProtocolPolicy: outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_FOLLOW},
		CreateTime:     now,
		UpdateTime:     now,
	}
	t.Put(store.DomainKey(name), d)
	t.PutRaw(store.AccountDomainKey(p.Account, name), "")
	t.Bump(store.AccountDomainsGuardKey(p.Account))
	rev, err := t.Commit(ctx)
	if err != nil {
		return nil, err
	}
	d.Revision = rev
	if d, err = c.withStatus(ctx, d); err != nil {
		return nil, err
	}
	return &outpostv1.CreateDomainResponse{Domain: d}, nil
}

func (c *Controller) quota(a *outpostv1.Account) int {
	if a.GetDomainQuota() > 0 {
		return int(a.GetDomainQuota())
	}
	return c.cfg.DefaultDomainQuota
}

func (s *domainService) GetDomain(ctx context.Context, req *outpostv1.GetDomainRequest) (*outpostv1.GetDomainResponse, error) {
	d, err := s.c.ownDomain(ctx, s.c.store.Begin(), req.GetName())
	if err != nil {
		return nil, err
	}
	if d, err = s.c.withStatus(ctx, d); err != nil {
		return nil, err
	}
	return &outpostv1.GetDomainResponse{Domain: d}, nil
}

func (s *domainService) ListDomains(ctx context.Context, req *outpostv1.ListDomainsRequest) (*outpostv1.ListDomainsResponse, error) {
	c, p := s.c, principalFrom(ctx)
	domainNames, next, err := c.indexPage(ctx, store.AccountDomainsPrefix(p.Account), req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, err
	}
	resp := &outpostv1.ListDomainsResponse{NextPageToken: next}
	nodes, err := c.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range domainNames {
		d := &outpostv1.Domain{}
		rev, found, err := c.store.Get(ctx, store.DomainKey(name), d)
		if err != nil {
			return nil, err
		}
		if !found || d.GetAccount() != p.Account {
			continue // removed between the two reads
		}
		d.Revision = rev
		d.Status = domainStatus(d, nodes)
		resp.Domains = append(resp.Domains, d)
	}
	return resp, nil
}

func (s *domainService) DeleteDomain(ctx context.Context, req *outpostv1.DeleteDomainRequest) (*outpostv1.DeleteDomainResponse, error) {
	c := s.c
	t := c.store.Begin()
	d, err := c.ownDomain(ctx, t, req.GetName())
	if err != nil {
		return nil, err
	}
	if err := c.unbindCertificate(ctx, t, d); err != nil {
		return nil, err
	}
	t.Delete(store.DomainKey(d.GetName()))
	t.Delete(store.AccountDomainKey(d.GetAccount(), d.GetName()))
	t.Bump(store.AccountDomainsGuardKey(d.GetAccount()))
	// The bucket-events secret goes with the domain: a domain added again
	// later starts without automatic cache update.
	t.Delete(store.AutoRefreshKey(d.GetName()))
	if _, err := t.Commit(ctx); err != nil {
		return nil, err
	}
	return &outpostv1.DeleteDomainResponse{}, nil
}

func (s *domainService) EnableDomain(ctx context.Context, req *outpostv1.EnableDomainRequest) (*outpostv1.EnableDomainResponse, error) {
	d, err := s.c.updateDomain(ctx, req.GetName(), func(_ *store.Txn, d *outpostv1.Domain) error {
		d.Status = outpostv1.DomainStatus_DOMAIN_STATUS_CONFIGURING
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.EnableDomainResponse{Domain: d}, nil
}

func (s *domainService) DisableDomain(ctx context.Context, req *outpostv1.DisableDomainRequest) (*outpostv1.DisableDomainResponse, error) {
	d, err := s.c.updateDomain(ctx, req.GetName(), func(_ *store.Txn, d *outpostv1.Domain) error {
		d.Status = outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.DisableDomainResponse{Domain: d}, nil
}
