package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	"github.com/outpost-cdn/outpost/internal/names"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The certificate center (issue 6): deploying one certificate to many
// domains in one transaction, renewing a certificate in place, and the
// queries about which domains serve what and what expires when.
// docs/certificates.md describes it for users.

// MaxDeployDomains is the most domains one DeployCertificate may name.
const MaxDeployDomains = 10_000

// maxListedDomains bounds the domain names an error message or its metadata
// lists; the count says how many there are in all.
const maxListedDomains = 20

// beforeCertCommit, when set (by tests only, through
// certcenter_export_test.go), runs after a DeployCertificate or
// RenewCertificate has read everything and before it commits, with the
// operation's name. Tests use it to change a key the transaction read and
// prove that the commit then aborts.
var beforeCertCommit atomic.Pointer[func(op string)]

// certCommitHook runs beforeCertCommit, if set.
func certCommitHook(op string) {
	if hook := beforeCertCommit.Load(); hook != nil {
		(*hook)(op)
	}
}

// completeCertificate fills the fields that records stored before the
// certificate center existed lack: version 1, source UPLOADED (every
// certificate was uploaded then) and the chain's trust.
func (c *Controller) completeCertificate(cert *outpostv1.Certificate) {
	if cert == nil {
		return
	}
	if cert.GetVersion() == 0 {
		cert.Version = 1
	}
	if cert.GetSource() == outpostv1.CertificateSource_CERTIFICATE_SOURCE_UNSPECIFIED {
		cert.Source = outpostv1.CertificateSource_CERTIFICATE_SOURCE_UPLOADED
	}
	if cert.GetChainTrust() == outpostv1.ChainTrust_CHAIN_TRUST_UNSPECIFIED {
		chain, err := certs.ParseChain([]byte(cert.GetCertificatePem()))
		if err == nil {
			cert.ChainTrust = certs.ChainTrust(chain, nil, c.cfg.Now())
		}
	}
}

// readCertificates reads certificates of account by ID in t, in one batch.
// An ID that is missing, or of another account, gives nil in its place.
func (c *Controller) readCertificates(ctx context.Context, t *store.Txn, account string, ids []string) ([]*outpostv1.Certificate, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = store.CertKey(id)
	}
	if err := t.Preload(ctx, keys...); err != nil {
		return nil, err
	}
	out := make([]*outpostv1.Certificate, len(ids))
	for i, key := range keys {
		sc := &storagev1.StoredCertificate{}
		found, err := t.Get(ctx, key, sc)
		if err != nil {
			return nil, err
		}
		if !found || sc.GetCertificate().GetAccount() != account {
			continue
		}
		cert := sc.GetCertificate()
		cert.Revision = t.ModRevision(key)
		c.completeCertificate(cert)
		out[i] = cert
	}
	return out, nil
}

// certificateFilter turns ListCertificates' filters into a predicate.
func (c *Controller) certificateFilter(req *outpostv1.ListCertificatesRequest) (func(*outpostv1.Certificate) bool, error) {
	covers := ""
	if strings.TrimSpace(req.GetCovers()) != "" {
		n, err := names.Domain(req.GetCovers())
		if err != nil {
			return nil, err
		}
		covers = n
	}
	state := req.GetState()
	if _, ok := outpostv1.CertificateState_name[int32(state)]; !ok {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "certificate state %d is unknown: use valid, expiring, expired or not-yet-valid", state)
	}
	contains := strings.ToLower(req.GetNameContains())
	now := c.cfg.Now()
	return func(cert *outpostv1.Certificate) bool {
		if contains != "" && !strings.Contains(strings.ToLower(cert.GetName()), contains) {
			return false
		}
		if covers != "" && !coversDomain(cert, covers) {
			return false
		}
		if state != outpostv1.CertificateState_CERTIFICATE_STATE_UNSPECIFIED && certificateState(cert, now) != state {
			return false
		}
		return true
	}, nil
}

// scanIndex reads one page of a filtered list over an account index (keys
// under prefix, in key order), after a page token. load reads the items of
// a run of IDs in a transaction of its own and returns nil for those that
// do not belong on the list; scanIndex reads runs until it has a page, so a
// page is short only when it is the last. The next page's token is the key
// of the page's last item.
func scanIndex[T any](ctx context.Context, c *Controller, prefix, token string, size int32,
	load func(ctx context.Context, t *store.Txn, ids []string) ([]*T, error)) ([]*T, string, error) {
	after, err := decodePageToken(token, prefix)
	if err != nil {
		return nil, "", err
	}
	n := pageSize(size)
	var (
		items []*T
		keys  []string
	)
	for int64(len(items)) <= n {
		idx, _, err := c.store.Range(ctx, prefix, after, n+1)
		if err != nil {
			return nil, "", err
		}
		if len(idx) == 0 {
			break
		}
		ids := make([]string, len(idx))
		for i, kv := range idx {
			ids[i] = store.LastSegment(kv.Key)
		}
		got, err := load(ctx, c.store.Begin(), ids)
		if err != nil {
			return nil, "", err
		}
		for i, item := range got {
			if item != nil {
				items = append(items, item)
				keys = append(keys, idx[i].Key)
			}
		}
		if int64(len(idx)) <= n {
			break // the index ends here
		}
		after = idx[len(idx)-1].Key
	}
	next := ""
	if int64(len(items)) > n {
		items = items[:n]
		next = encodePageToken(keys[n-1])
	}
	return items, next, nil
}

// certificateState is a certificate's state at now.
func certificateState(cert *outpostv1.Certificate, now time.Time) outpostv1.CertificateState {
	return certs.State(cert.GetNotBefore().AsTime(), cert.GetNotAfter().AsTime(), now)
}

// refusal fills a deployment result from the error that refused a domain.
func refusal(r *outpostv1.DeployResult, err error) {
	r.Deployed = false
	var ae *apierr.Error
	if errors.As(err, &ae) {
		r.Reason, r.Message = ae.Reason, ae.Message
		return
	}
	r.Reason, r.Message = apierr.ReasonInternal, "internal error"
}

func (s *certificateService) DeployCertificate(ctx context.Context, req *outpostv1.DeployCertificateRequest) (*outpostv1.DeployCertificateResponse, error) {
	c, p := s.c, principalFrom(ctx)
	switch n := len(req.GetDomains()); {
	case n == 0:
		return nil, apierr.InvalidArgument(apierr.ReasonNoEntries, "give at least one domain to deploy the certificate to")
	case n > MaxDeployDomains:
		return nil, apierr.InvalidArgument(apierr.ReasonTooManyEntries,
			"%d domains given; one deployment takes at most %d: split the list", n, MaxDeployDomains).With("limit", itoa(MaxDeployDomains))
	}
	t := c.store.Begin()
	sc, err := c.ownCertificate(ctx, t, req.GetId())
	if err != nil {
		return nil, err
	}
	cert := sc.GetCertificate()
	id := cert.GetId()
	if na := cert.GetNotAfter().AsTime(); na.Before(c.cfg.Now()) {
		return nil, apierr.InvalidArgument(apierr.ReasonCertificateExpired,
			"certificate %s expired at %s: renew it before deploying it", id, na.UTC().Format(time.RFC3339)).
			With("certificate_id", id).With("not_after", na.UTC().Format(time.RFC3339))
	}

	// One outcome per distinct name; a name given twice shares it.
	results := make([]*outpostv1.DeployResult, len(req.GetDomains()))
	outcome := map[string]*outpostv1.DeployResult{}
	var order []string
	for i, raw := range req.GetDomains() {
		name, err := names.Domain(raw)
		if err != nil {
			results[i] = &outpostv1.DeployResult{Domain: raw}
			refusal(results[i], err)
			continue
		}
		r, seen := outcome[name]
		if !seen {
			r = &outpostv1.DeployResult{Domain: name}
			outcome[name] = r
			order = append(order, name)
		}
		results[i] = r
	}

	// Read every domain at the snapshot, in batches; each read guards
	// its key, refused domains included.
	keys := make([]string, len(order))
	for i, name := range order {
		keys[i] = store.DomainKey(name)
	}
	if err := t.Preload(ctx, keys...); err != nil {
		return nil, err
	}
	targets := make(map[string]*outpostv1.Domain, len(order))
	var inline []string // certificates uploaded inline that the deployment replaces
	for _, name := range order {
		d := &outpostv1.Domain{}
		found, err := t.Get(ctx, store.DomainKey(name), d)
		if err != nil {
			return nil, err
		}
		switch {
		case !found || d.GetAccount() != p.Account:
			refusal(outcome[name], domainNotFound(name))
			continue
		case cert.GetOwnerDomain() != "" && cert.GetOwnerDomain() != name:
			refusal(outcome[name], apierr.FailedPrecondition(apierr.ReasonCertificateOwned,
				"certificate %s was uploaded for %s only; upload it to the certificate list to share it", id, cert.GetOwnerDomain()))
			continue
		case !coversDomain(cert, name):
			refusal(outcome[name], apierr.InvalidArgument(apierr.ReasonCertificateDomainMismatch,
				"certificate %s (%s) does not cover %s", id, strings.Join(cert.GetDnsNames(), ", "), name))
			continue
		}
		d.Revision = t.ModRevision(store.DomainKey(name))
		targets[name] = d
		if h := d.GetHttps(); h.GetCertificateOwned() && h.GetCertificateId() != "" && h.GetCertificateId() != id {
			inline = append(inline, store.CertKey(h.GetCertificateId()))
		}
	}
	// unbindCertificate reads each inline certificate it deletes: read
	// them all at once first.
	if err := t.Preload(ctx, inline...); err != nil {
		return nil, err
	}

	now := c.timestamp()
	deployed := 0
	// With nothing to write, the revision that carries the deployment is
	// the newest of the certificate and the domains that already serve it.
	latest := cert.GetRevision()
	for _, name := range order {
		d := targets[name]
		if d == nil {
			continue
		}
		deployed++
		outcome[name].Deployed = true
		h := d.GetHttps()
		if h.GetEnabled() && h.GetCertificateId() == id && h.GetFree() == nil {
			latest = max(latest, d.GetRevision())
			continue // serves it already
		}
		if h.GetCertificateId() != id {
			if err := c.unbindCertificate(ctx, t, d); err != nil {
				return nil, err
			}
			t.PutRaw(store.CertDomainKey(id, name), "")
		}
		// As EnableHttps: a certificate given replaces a pending free one.
		d.Https = &outpostv1.HttpsSettings{
			Enabled:          true,
			CertificateId:    id,
			Redirect:         h.GetRedirect(),
			CertificateOwned: cert.GetOwnerDomain() == name,
		}
		d.UpdateTime = now
		d.Revision = 0
		d.Status = storedStatus(d.Status)
		t.Put(store.DomainKey(name), d)
	}
	certCommitHook("deploy")
	resp := &outpostv1.DeployCertificateResponse{Results: results}
	switch {
	case t.Writes() > 0:
		if resp.Revision, err = t.Commit(ctx); err != nil {
			return nil, err
		}
	case deployed > 0:
		resp.Revision = latest
	}
	c.log.Info("certificate deployed", "certificate_id", id, "account", p.Account,
		"deployed", deployed, "refused", len(order)-deployed, "revision", resp.Revision)
	return resp, nil
}

func (s *certificateService) RenewCertificate(ctx context.Context, req *outpostv1.RenewCertificateRequest) (*outpostv1.RenewCertificateResponse, error) {
	c := s.c
	t := c.store.Begin()
	sc, err := c.ownCertificate(ctx, t, req.GetId())
	if err != nil {
		return nil, err
	}
	old := sc.GetCertificate()
	id := old.GetId()
	now := c.cfg.Now()
	sealed := sc.GetPrivateKey()
	source := old.GetSource()
	var parsed *certs.Parsed
	if strings.TrimSpace(req.GetPrivateKeyPem()) != "" {
		if parsed, err = certs.ParsePair([]byte(req.GetCertificatePem()), []byte(req.GetPrivateKeyPem()), now); err != nil {
			return nil, err
		}
		if sealed, err = c.sealer.Seal(ctx, parsed.KeyPEM, []byte(id)); err != nil {
			return nil, err
		}
		source = outpostv1.CertificateSource_CERTIFICATE_SOURCE_UPLOADED
	} else {
		// The same key: the new chain must have been issued for it.
		if _, err := certs.ParseChain([]byte(req.GetCertificatePem())); err != nil {
			return nil, err
		}
		key, err := c.sealer.Open(ctx, sealed, []byte(id))
		if err != nil {
			// The error names the key-encryption key, never key bytes.
			return nil, fmt.Errorf("open the private key of certificate %s: %w", id, err)
		}
		parsed, err = certs.ParsePair([]byte(req.GetCertificatePem()), key, now)
		clear(key)
		if apierr.Reason(err) == apierr.ReasonCertificateKeyMismatch {
			return nil, apierr.InvalidArgument(apierr.ReasonCertificateKeyMismatch,
				"the new certificate was not issued for the private key of certificate %s: give its new private key too, or have the CA sign the current key", id).
				With("certificate_id", id)
		}
		if err != nil {
			return nil, err
		}
	}

	// Every domain that uses the certificate moves to the new version, so
	// the new version must cover each of them. The prefix guard makes a
	// domain bound meanwhile abort the renewal.
	idx, err := t.List(ctx, store.CertDomainsPrefix(id))
	if err != nil {
		return nil, err
	}
	newNames := certs.Names(parsed.Leaf)
	var domains, uncovered []string
	for _, kv := range idx {
		d := store.LastSegment(kv.Key)
		domains = append(domains, d)
		if !certs.CoversNames(newNames, d) {
			uncovered = append(uncovered, d)
		}
	}
	if len(uncovered) > 0 {
		return nil, apierr.InvalidArgument(apierr.ReasonCertificateDomainMismatch,
			"the new certificate (%s) does not cover %d domain(s) that use certificate %s: %s; deploy another certificate to them first, or get a certificate that covers them",
			strings.Join(newNames, ", "), len(uncovered), id, listNames(uncovered)).
			With("certificate_id", id).With("domain", uncovered[0]).With("domains", strings.Join(uncovered[:min(len(uncovered), maxListedDomains)], ","))
	}

	cert := certs.Describe(parsed.Chain)
	cert.Id = id
	cert.Name = old.GetName()
	cert.Account = old.GetAccount()
	cert.CreateTime = old.GetCreateTime()
	cert.OwnerDomain = old.GetOwnerDomain()
	cert.Version = old.GetVersion() + 1
	cert.Source = source
	cert.ChainTrust = certs.ChainTrust(parsed.Chain, nil, now)
	t.Put(store.CertKey(id), &storagev1.StoredCertificate{Certificate: cert, PrivateKey: sealed})
	certCommitHook("renew")
	rev, err := t.Commit(ctx)
	if err != nil {
		return nil, err
	}
	cert.Revision = rev
	c.log.Info("certificate renewed", "certificate_id", id, "account", cert.GetAccount(), "version", cert.GetVersion(),
		"domains", len(domains), "revision", rev)
	return &outpostv1.RenewCertificateResponse{Certificate: cert, Domains: domains}, nil
}

// listNames renders names for a message: the first maxListedDomains, and
// how many more there are.
func listNames(list []string) string {
	if len(list) <= maxListedDomains {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(list[:maxListedDomains], ", "), len(list)-maxListedDomains)
}

func (s *certificateService) ListCertificateDomains(ctx context.Context, req *outpostv1.ListCertificateDomainsRequest) (*outpostv1.ListCertificateDomainsResponse, error) {
	c := s.c
	t := c.store.Begin()
	sc, err := c.ownCertificate(ctx, t, req.GetId())
	if err != nil {
		return nil, err
	}
	idx, err := t.List(ctx, store.CertDomainsPrefix(sc.GetCertificate().GetId()))
	if err != nil {
		return nil, err
	}
	resp := &outpostv1.ListCertificateDomainsResponse{}
	for _, kv := range idx {
		resp.Domains = append(resp.Domains, store.LastSegment(kv.Key))
	}
	return resp, nil
}

// domainCertificateInfo describes the certificate d serves as of now.
// cert is that certificate, or nil when d has none (or it is missing).
func (c *Controller) domainCertificateInfo(d *outpostv1.Domain, cert *outpostv1.Certificate) *outpostv1.DomainCertificateInfo {
	info := &outpostv1.DomainCertificateInfo{
		Domain:        d.GetName(),
		HttpsEnabled:  d.GetHttps().GetEnabled(),
		CertificateId: d.GetHttps().GetCertificateId(),
		Free:          d.GetHttps().GetFree(),
	}
	if cert == nil {
		return info
	}
	now := c.cfg.Now()
	info.CertificateName = cert.GetName()
	info.CommonName = cert.GetCommonName()
	info.DnsNames = cert.GetDnsNames()
	info.Issuer = cert.GetIssuer()
	info.NotBefore = cert.GetNotBefore()
	info.NotAfter = cert.GetNotAfter()
	info.State = certificateState(cert, now)
	info.Remaining = durationpb.New(cert.GetNotAfter().AsTime().Sub(now))
	info.ChainTrust = cert.GetChainTrust()
	info.Source = cert.GetSource()
	return info
}

// domainCertificates reads, in t and in one batch, the certificates the
// given domains serve, by ID.
func (c *Controller) domainCertificates(ctx context.Context, t *store.Txn, account string, domains []*outpostv1.Domain) (map[string]*outpostv1.Certificate, error) {
	var ids []string
	seen := map[string]bool{}
	for _, d := range domains {
		if id := d.GetHttps().GetCertificateId(); id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	list, err := c.readCertificates(ctx, t, account, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*outpostv1.Certificate, len(ids))
	for i, cert := range list {
		if cert != nil {
			out[ids[i]] = cert
		}
	}
	return out, nil
}

func (s *certificateService) ListHttpsDomains(ctx context.Context, req *outpostv1.ListHttpsDomainsRequest) (*outpostv1.ListHttpsDomainsResponse, error) {
	c, p := s.c, principalFrom(ctx)
	list, next, err := scanIndex(ctx, c, store.AccountDomainsPrefix(p.Account), req.GetPageToken(), req.GetPageSize(),
		func(ctx context.Context, t *store.Txn, domainNames []string) ([]*outpostv1.DomainCertificateInfo, error) {
			keys := make([]string, len(domainNames))
			for i, n := range domainNames {
				keys[i] = store.DomainKey(n)
			}
			if err := t.Preload(ctx, keys...); err != nil {
				return nil, err
			}
			domains := make([]*outpostv1.Domain, len(keys))
			for i, key := range keys {
				d := &outpostv1.Domain{}
				found, err := t.Get(ctx, key, d)
				if err != nil {
					return nil, err
				}
				if found && d.GetAccount() == p.Account && d.GetHttps().GetEnabled() {
					domains[i] = d
				}
			}
			byID, err := c.domainCertificates(ctx, t, p.Account, domains)
			if err != nil {
				return nil, err
			}
			out := make([]*outpostv1.DomainCertificateInfo, len(domains))
			for i, d := range domains {
				if d != nil {
					out[i] = c.domainCertificateInfo(d, byID[d.GetHttps().GetCertificateId()])
				}
			}
			return out, nil
		})
	if err != nil {
		return nil, err
	}
	return &outpostv1.ListHttpsDomainsResponse{Domains: list, NextPageToken: next}, nil
}

func (s *certificateService) GetDomainCertificateInfo(ctx context.Context, req *outpostv1.GetDomainCertificateInfoRequest) (*outpostv1.GetDomainCertificateInfoResponse, error) {
	c, p := s.c, principalFrom(ctx)
	t := c.store.Begin()
	d, err := c.ownDomain(ctx, t, req.GetDomain())
	if err != nil {
		return nil, err
	}
	byID, err := c.domainCertificates(ctx, t, p.Account, []*outpostv1.Domain{d})
	if err != nil {
		return nil, err
	}
	return &outpostv1.GetDomainCertificateInfoResponse{Info: c.domainCertificateInfo(d, byID[d.GetHttps().GetCertificateId()])}, nil
}

func (s *certificateService) GetCertificateStats(ctx context.Context, _ *outpostv1.GetCertificateStatsRequest) (*outpostv1.GetCertificateStatsResponse, error) {
	c, p := s.c, principalFrom(ctx)
	// One snapshot for the whole count.
	t := c.store.Begin()
	idx, err := t.List(ctx, store.AccountCertsPrefix(p.Account))
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(idx))
	for i, kv := range idx {
		ids[i] = store.LastSegment(kv.Key)
	}
	list, err := c.readCertificates(ctx, t, p.Account, ids)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	resp := &outpostv1.GetCertificateStatsResponse{}
	for _, cert := range list {
		if cert == nil {
			continue
		}
		resp.Certificates++
		state := certificateState(cert, now)
		if state != outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRED && state != outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRING {
			continue
		}
		// A domain serves one certificate, so the counts add up without
		// counting a domain twice.
		n, err := t.Count(ctx, store.CertDomainsPrefix(cert.GetId()))
		if err != nil {
			return nil, err
		}
		if state == outpostv1.CertificateState_CERTIFICATE_STATE_EXPIRED {
			resp.ExpiredCertificates++
			resp.DomainsWithExpired += uint32(n)
		} else {
			resp.ExpiringCertificates++
			resp.DomainsWithExpiring += uint32(n)
		}
	}
	return resp, nil
}
