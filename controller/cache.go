package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Limits on cache rules.
const (
	maxCacheRules      = 64
	maxPathPrefixBytes = 1024
	maxCacheTTL        = 365 * 24 * time.Hour
)

var extensionPattern = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// cacheService implements outpostv1.CacheServiceServer. Every change goes
// through updateDomain, so it reaches the edge nodes with the domain on the
// config stream.
type cacheService struct {
	outpostv1.UnimplementedCacheServiceServer
	c *Controller
}

var _ outpostv1.CacheServiceServer = (*cacheService)(nil)

func invalidCacheRule(format string, args ...any) *apierr.Error {
	return apierr.InvalidArgument(apierr.ReasonInvalidCacheRule, format, args...)
}

// normalizeCacheRule checks a rule's match and TTL and returns the rule as
// stored (without its ID).
func normalizeCacheRule(req *outpostv1.AddCacheRuleRequest) (*outpostv1.CacheRule, error) {
	rule := &outpostv1.CacheRule{}
	switch m := req.GetMatch().(type) {
	case *outpostv1.AddCacheRuleRequest_PathPrefix:
		p := m.PathPrefix
		switch {
		case !strings.HasPrefix(p, "/"):
			return nil, invalidCacheRule("path prefix %q must start with \"/\"", p)
		case len(p) > maxPathPrefixBytes:
			return nil, invalidCacheRule("path prefix is %d bytes long; at most %d are allowed", len(p), maxPathPrefixBytes)
		case strings.IndexFunc(p, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return nil, invalidCacheRule("path prefix %q contains whitespace or control characters", p)
		}
		rule.Match = &outpostv1.CacheRule_PathPrefix{PathPrefix: p}
	case *outpostv1.AddCacheRuleRequest_Extension:
		ext := strings.TrimPrefix(strings.ToLower(m.Extension), ".")
		if !extensionPattern.MatchString(ext) {
			return nil, invalidCacheRule("extension %q is invalid: use 1-16 letters or digits, such as jpg", m.Extension)
		}
		rule.Match = &outpostv1.CacheRule_Extension{Extension: ext}
	default:
		return nil, invalidCacheRule("a cache rule needs a path_prefix or an extension")
	}
	ttl := req.GetTtl()
	if ttl == nil {
		return nil, invalidCacheRule("a cache rule needs a ttl (0 to leave matching responses uncached)")
	}
	if err := ttl.CheckValid(); err != nil {
		return nil, invalidCacheRule("ttl is not a valid duration")
	}
	if d := ttl.AsDuration(); d < 0 || d > maxCacheTTL {
		return nil, invalidCacheRule("ttl %s is out of range: 0 to 365 days", d)
	}
	rule.Ttl = durationpb.New(ttl.AsDuration())
	return rule, nil
}

func sameMatch(a, b *outpostv1.CacheRule) bool {
	switch {
	case a.GetPathPrefix() != "" || b.GetPathPrefix() != "":
		return a.GetPathPrefix() == b.GetPathPrefix()
	default:
		return a.GetExtension() == b.GetExtension()
	}
}

func describeMatch(r *outpostv1.CacheRule) string {
	if r.GetPathPrefix() != "" {
		return "path prefix " + r.GetPathPrefix()
	}
	return "extension " + r.GetExtension()
}

func newRuleID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "rule-" + hex.EncodeToString(b)
}

// cacheSettings returns the domain's cache settings, creating them if unset.
func cacheSettings(d *outpostv1.Domain) *outpostv1.CacheSettings {
	if d.Cache == nil {
		d.Cache = &outpostv1.CacheSettings{}
	}
	return d.Cache
}

func (s *cacheService) AddCacheRule(ctx context.Context, req *outpostv1.AddCacheRuleRequest) (*outpostv1.AddCacheRuleResponse, error) {
	rule, err := normalizeCacheRule(req)
	if err != nil {
		return nil, err
	}
	d, err := s.c.updateDomain(ctx, req.GetDomain(), func(_ *store.Txn, d *outpostv1.Domain) error {
		cs := cacheSettings(d)
		if len(cs.Rules) >= maxCacheRules {
			return apierr.ResourceExhausted(apierr.ReasonTooManyCacheRules,
				"domain %s already has %d cache rules, the most allowed; remove one first", d.GetName(), len(cs.Rules)).
				With("limit", itoa(maxCacheRules))
		}
		ids := map[string]bool{}
		for _, r := range cs.Rules {
			if sameMatch(r, rule) {
				return invalidCacheRule("domain %s already has a rule for %s (%s); remove it first", d.GetName(), describeMatch(r), r.GetId()).
					With("rule_id", r.GetId())
			}
			ids[r.GetId()] = true
		}
		for rule.Id = newRuleID(); ids[rule.Id]; rule.Id = newRuleID() {
		}
		cs.Rules = append(cs.Rules, rule)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.AddCacheRuleResponse{Rule: proto.Clone(rule).(*outpostv1.CacheRule), Settings: cacheSettings(d)}, nil
}

func (s *cacheService) RemoveCacheRule(ctx context.Context, req *outpostv1.RemoveCacheRuleRequest) (*outpostv1.RemoveCacheRuleResponse, error) {
	d, err := s.c.updateDomain(ctx, req.GetDomain(), func(_ *store.Txn, d *outpostv1.Domain) error {
		cs := cacheSettings(d)
		for i, r := range cs.Rules {
			if r.GetId() == req.GetRuleId() && req.GetRuleId() != "" {
				cs.Rules = append(cs.Rules[:i], cs.Rules[i+1:]...)
				return nil
			}
		}
		return apierr.NotFound(apierr.ReasonCacheRuleNotFound, "domain %s has no cache rule %q", d.GetName(), req.GetRuleId()).
			With("rule_id", req.GetRuleId())
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.RemoveCacheRuleResponse{Settings: cacheSettings(d)}, nil
}

func (s *cacheService) ListCacheRules(ctx context.Context, req *outpostv1.ListCacheRulesRequest) (*outpostv1.ListCacheRulesResponse, error) {
	d, err := s.c.ownDomain(ctx, s.c.store.Begin(), req.GetDomain())
	if err != nil {
		return nil, err
	}
	return &outpostv1.ListCacheRulesResponse{Settings: cacheSettings(d)}, nil
}

func (s *cacheService) SetCacheKeyOptions(ctx context.Context, req *outpostv1.SetCacheKeyOptionsRequest) (*outpostv1.SetCacheKeyOptionsResponse, error) {
	d, err := s.c.updateDomain(ctx, req.GetDomain(), func(_ *store.Txn, d *outpostv1.Domain) error {
		cacheSettings(d).IgnoreQuery = req.GetIgnoreQuery()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.SetCacheKeyOptionsResponse{Settings: cacheSettings(d)}, nil
}
