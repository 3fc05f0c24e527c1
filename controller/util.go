package controller

import (
	"context"
	"encoding/base64"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func (c *Controller) timestamp() *timestamppb.Timestamp { return timestamppb.New(c.cfg.Now()) }

func pageSize(n int32) int64 {
	switch {
	case n <= 0:
		return defaultPageSize
	case n > maxPageSize:
		return maxPageSize
	}
	return int64(n)
}

// Page tokens are the opaque base64 of the last key returned.
func encodePageToken(lastKey string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastKey))
}

func decodePageToken(token, prefix string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) <= len(prefix) || string(b[:len(prefix)]) != prefix {
		return "", apierr.InvalidArgument(apierr.ReasonInvalidPageToken, "the page token is not valid for this list")
	}
	return string(b), nil
}

// indexPage reads one page of an account index (keys under prefix, in key
// order) after a page token, returning the IDs (the keys' last segments)
// and the token of the next page ("" on the last).
func (c *Controller) indexPage(ctx context.Context, prefix, token string, size int32) (ids []string, next string, err error) {
	after, err := decodePageToken(token, prefix)
	if err != nil {
		return nil, "", err
	}
	n := pageSize(size)
	idx, _, err := c.store.Range(ctx, prefix, after, n+1)
	if err != nil {
		return nil, "", err
	}
	if int64(len(idx)) > n {
		idx = idx[:n]
		next = encodePageToken(idx[len(idx)-1].Key)
	}
	for _, kv := range idx {
		ids = append(ids, store.LastSegment(kv.Key))
	}
	return ids, next, nil
}

// domainName normalises and validates a domain name given to look one up.
func domainName(name string) (string, error) { return names.Domain(name) }

func domainNotFound(name string) error {
	return apierr.NotFound(apierr.ReasonDomainNotFound, "domain %s not found", name).With("domain", name)
}

// ownDomain reads a domain of the caller's account in a transaction. Domains
// of other accounts are reported as not found, so they are not disclosed.
func (c *Controller) ownDomain(ctx context.Context, t *store.Txn, name string) (*outpostv1.Domain, error) {
	p := principalFrom(ctx)
	n, err := domainName(name)
	if err != nil {
		return nil, err
	}
	d := &outpostv1.Domain{}
	found, err := t.Get(ctx, store.DomainKey(n), d)
	if err != nil {
		return nil, err
	}
	if !found || d.GetAccount() != p.Account {
		return nil, domainNotFound(n)
	}
	d.Revision = t.ModRevision(store.DomainKey(n))
	return d, nil
}

// updateDomain is the read-modify-write of one domain of the caller's
// account: fn changes d (and may queue more writes on t); the domain is
// written back in the same transaction.
func (c *Controller) updateDomain(ctx context.Context, name string, fn func(t *store.Txn, d *outpostv1.Domain) error) (*outpostv1.Domain, error) {
	t := c.store.Begin()
	d, err := c.ownDomain(ctx, t, name)
	if err != nil {
		return nil, err
	}
	if err := fn(t, d); err != nil {
		return nil, err
	}
	d.UpdateTime = c.timestamp()
	d.Revision = 0
	d.Status = storedStatus(d.Status)
	t.Put(store.DomainKey(d.GetName()), d)
	rev, err := t.Commit(ctx)
	if err != nil {
		return nil, err
	}
	d.Revision = rev
	return c.withStatus(ctx, d)
}

// storedStatus is what the store keeps of a domain's status: OFFLINE for a
// disabled domain, else CONFIGURING. ONLINE is derived when read.
func storedStatus(s outpostv1.DomainStatus) outpostv1.DomainStatus {
	if s == outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE {
		return s
	}
	return outpostv1.DomainStatus_DOMAIN_STATUS_CONFIGURING
}

// withStatus sets a domain's status as clients see it: OFFLINE when
// disabled; ONLINE once every connected edge node has applied a config
// revision at or after the domain's last change; else CONFIGURING.
func (c *Controller) withStatus(ctx context.Context, d *outpostv1.Domain) (*outpostv1.Domain, error) {
	if d.Status == outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE {
		return d, nil
	}
	nodes, err := c.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	d.Status = domainStatus(d, nodes)
	return d, nil
}

func domainStatus(d *outpostv1.Domain, nodes []*outpostv1.Node) outpostv1.DomainStatus {
	if d.Status == outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE {
		return d.Status
	}
	connected := 0
	for _, n := range nodes {
		if n.GetHealth() != outpostv1.NodeHealth_NODE_HEALTH_CONNECTED {
			continue
		}
		connected++
		if n.GetAppliedRevision() < d.GetRevision() {
			return outpostv1.DomainStatus_DOMAIN_STATUS_CONFIGURING
		}
	}
	if connected == 0 {
		return outpostv1.DomainStatus_DOMAIN_STATUS_CONFIGURING
	}
	return outpostv1.DomainStatus_DOMAIN_STATUS_ONLINE
}
