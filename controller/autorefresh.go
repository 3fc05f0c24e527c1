package controller

import (
	"context"
	"crypto/rand"
	"encoding/base64"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Automatic cache update (seeds/004 "Auto CDN Cache Update"): a domain
// whose origin is an object-storage bucket can have the bucket send its S3
// event notifications to the controller's bucket-events endpoint
// (bucketevents.go), which turns changed objects into refresh tasks. The
// bucket authenticates with a per-domain secret; the store keeps only its
// SHA-256, at store.AutoRefreshKey, written in the same transaction as the
// domain's CacheSettings.auto_refresh flag.

// bucketEventsPathPrefix is the path of the endpoint, before the domain.
const bucketEventsPathPrefix = "/v1/bucket-events/"

// bucketEventsPath is the endpoint path of a domain.
func bucketEventsPath(domain string) string { return bucketEventsPathPrefix + domain }

// newBucketEventsSecret returns a fresh webhook secret: "obk_" and 32
// random bytes.
func newBucketEventsSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "obk_" + base64.RawURLEncoding.EncodeToString(b)
}

// hasBucketOrigin reports whether a domain has an object-storage origin.
func hasBucketOrigin(d *outpostv1.Domain) bool {
	for _, o := range d.GetOrigins() {
		if o.GetType() == outpostv1.OriginType_ORIGIN_TYPE_OSS {
			return true
		}
	}
	return false
}

func (s *cacheService) EnableAutoRefresh(ctx context.Context, req *outpostv1.EnableAutoRefreshRequest) (*outpostv1.EnableAutoRefreshResponse, error) {
	secret := newBucketEventsSecret()
	d, err := s.c.updateDomain(ctx, req.GetDomain(), func(t *store.Txn, d *outpostv1.Domain) error {
		if names.IsWildcard(d.GetName()) {
			return apierr.FailedPrecondition(apierr.ReasonWildcardDomain,
				"domain %s is a wildcard domain: automatic cache update needs one bucket behind one domain name", d.GetName()).
				With("domain", d.GetName())
		}
		if !hasBucketOrigin(d) {
			return apierr.FailedPrecondition(apierr.ReasonNoBucketOrigin,
				"domain %s has no object-storage (oss) origin: automatic cache update refreshes objects changed in the origin bucket", d.GetName()).
				With("domain", d.GetName())
		}
		cacheSettings(d).AutoRefresh = true
		// Replaces any earlier secret: enabling again rotates it.
		t.PutRaw(store.AutoRefreshKey(d.GetName()), hashSecret(secret))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.EnableAutoRefreshResponse{
		Secret:       secret,
		EndpointPath: bucketEventsPath(d.GetName()),
		Settings:     cacheSettings(d),
	}, nil
}

func (s *cacheService) DisableAutoRefresh(ctx context.Context, req *outpostv1.DisableAutoRefreshRequest) (*outpostv1.DisableAutoRefreshResponse, error) {
	d, err := s.c.updateDomain(ctx, req.GetDomain(), func(t *store.Txn, d *outpostv1.Domain) error {
		cacheSettings(d).AutoRefresh = false
		t.Delete(store.AutoRefreshKey(d.GetName()))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.DisableAutoRefreshResponse{Settings: cacheSettings(d)}, nil
}
