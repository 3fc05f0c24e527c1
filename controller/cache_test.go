package controller_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func prefixRule(domain, prefix string, ttl time.Duration) *outpostv1.AddCacheRuleRequest {
	return &outpostv1.AddCacheRuleRequest{Domain: domain, Match: &outpostv1.AddCacheRuleRequest_PathPrefix{PathPrefix: prefix}, Ttl: durationpb.New(ttl)}
}

func extRule(domain, ext string, ttl time.Duration) *outpostv1.AddCacheRuleRequest {
	return &outpostv1.AddCacheRuleRequest{Domain: domain, Match: &outpostv1.AddCacheRuleRequest_Extension{Extension: ext}, Ttl: durationpb.New(ttl)}
}

func TestCacheRules(t *testing.T) {
	env := controllertest.Start(t)
	admin, readOnly := env.NewAccount(t, "acme")
	other, _ := env.NewAccount(t, "other")
	c, ro, oc := env.Clients(t, admin), env.Clients(t, readOnly), env.Clients(t, other)
	ctx := ctxT(t)
	const dom = "www.example.com"
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: dom, Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	list := func() *outpostv1.CacheSettings {
		t.Helper()
		resp, err := ro.Cache.ListCacheRules(ctx, &outpostv1.ListCacheRulesRequest{Domain: dom})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetSettings()
	}

	t.Run("add and normalise", func(t *testing.T) {
		resp, err := c.Cache.AddCacheRule(ctx, prefixRule(dom, "/static/", time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		r := resp.GetRule()
		if len(r.GetId()) != len("rule-")+8 || !strings.HasPrefix(r.GetId(), "rule-") || r.GetPathPrefix() != "/static/" || r.GetTtl().AsDuration() != time.Hour {
			t.Fatalf("rule %v", r)
		}
		resp, err = c.Cache.AddCacheRule(ctx, extRule(dom, ".JPG", 0))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetRule().GetExtension() != "jpg" || resp.GetRule().GetTtl().AsDuration() != 0 {
			t.Fatalf("extension rule %v", resp.GetRule())
		}
		if _, err := c.Cache.AddCacheRule(ctx, prefixRule(dom, "/"+strings.Repeat("a", 1023), 365*24*time.Hour)); err != nil {
			t.Fatalf("a 1024-byte prefix with a 365-day TTL: %v", err)
		}
		s := list()
		if len(s.GetRules()) != 3 || s.GetRules()[0].GetPathPrefix() != "/static/" || s.GetRules()[1].GetExtension() != "jpg" {
			t.Fatalf("rules %v", s.GetRules())
		}
		// The rules are part of the domain, so they reach nodes on the config stream.
		d, err := c.Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: dom})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(d.GetDomain().GetCache(), s) {
			t.Fatalf("domain cache %v, listed %v", d.GetDomain().GetCache(), s)
		}
	})

	t.Run("refused", func(t *testing.T) {
		before := list()
		for _, tc := range []struct {
			name   string
			req    *outpostv1.AddCacheRuleRequest
			code   codes.Code
			reason string
		}{
			{"no match", &outpostv1.AddCacheRuleRequest{Domain: dom, Ttl: durationpb.New(time.Hour)}, codes.InvalidArgument, "InvalidCacheRule"},
			{"relative prefix", prefixRule(dom, "static/", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"empty prefix", prefixRule(dom, "", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"space in prefix", prefixRule(dom, "/a b/", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"tab in prefix", prefixRule(dom, "/a\tb/", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"control in prefix", prefixRule(dom, "/a\x01b/", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"unicode space in prefix", prefixRule(dom, "/a\u00a0b/", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"long prefix", prefixRule(dom, "/"+strings.Repeat("a", 1024), time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"empty extension", extRule(dom, "", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"dot only", extRule(dom, ".", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"two dots", extRule(dom, "..jpg", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"dotted extension", extRule(dom, "tar.gz", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"long extension", extRule(dom, strings.Repeat("a", 17), time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"symbol in extension", extRule(dom, "j_g", time.Hour), codes.InvalidArgument, "InvalidCacheRule"},
			{"no ttl", &outpostv1.AddCacheRuleRequest{Domain: dom, Match: &outpostv1.AddCacheRuleRequest_Extension{Extension: "png"}}, codes.InvalidArgument, "InvalidCacheRule"},
			{"negative ttl", extRule(dom, "png", -time.Second), codes.InvalidArgument, "InvalidCacheRule"},
			{"ttl over a year", extRule(dom, "png", 365*24*time.Hour+time.Second), codes.InvalidArgument, "InvalidCacheRule"},
			{"invalid ttl", &outpostv1.AddCacheRuleRequest{Domain: dom, Match: &outpostv1.AddCacheRuleRequest_Extension{Extension: "png"}, Ttl: &durationpb.Duration{Seconds: 1, Nanos: -5}}, codes.InvalidArgument, "InvalidCacheRule"},
			{"duplicate prefix", prefixRule(dom, "/static/", time.Minute), codes.InvalidArgument, "InvalidCacheRule"},
			{"duplicate extension", extRule(dom, "jpg", time.Minute), codes.InvalidArgument, "InvalidCacheRule"},
			{"unknown domain", extRule("nope.example.com", "png", time.Hour), codes.NotFound, "DomainNotFound"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := c.Cache.AddCacheRule(ctx, tc.req)
				wantErr(t, err, tc.code, tc.reason)
			})
		}
		if after := list(); !proto.Equal(before, after) {
			t.Fatalf("a refused rule changed the settings: %v → %v", before, after)
		}
	})

	t.Run("other accounts and read-only tokens", func(t *testing.T) {
		before := list()
		_, err := oc.Cache.AddCacheRule(ctx, extRule(dom, "png", time.Hour))
		wantErr(t, err, codes.NotFound, "DomainNotFound")
		_, err = oc.Cache.ListCacheRules(ctx, &outpostv1.ListCacheRulesRequest{Domain: dom})
		wantErr(t, err, codes.NotFound, "DomainNotFound")
		_, err = oc.Cache.RemoveCacheRule(ctx, &outpostv1.RemoveCacheRuleRequest{Domain: dom, RuleId: before.GetRules()[0].GetId()})
		wantErr(t, err, codes.NotFound, "DomainNotFound")
		_, err = oc.Cache.SetCacheKeyOptions(ctx, &outpostv1.SetCacheKeyOptionsRequest{Domain: dom, IgnoreQuery: true})
		wantErr(t, err, codes.NotFound, "DomainNotFound")
		_, err = ro.Cache.AddCacheRule(ctx, extRule(dom, "png", time.Hour))
		wantErr(t, err, codes.PermissionDenied, "ReadOnlyToken")
		_, err = ro.Cache.SetCacheKeyOptions(ctx, &outpostv1.SetCacheKeyOptionsRequest{Domain: dom, IgnoreQuery: true})
		wantErr(t, err, codes.PermissionDenied, "ReadOnlyToken")
		if after := list(); !proto.Equal(before, after) {
			t.Fatalf("settings changed: %v → %v", before, after)
		}
	})

	t.Run("remove and key options", func(t *testing.T) {
		s := list()
		id := s.GetRules()[1].GetId()
		resp, err := c.Cache.RemoveCacheRule(ctx, &outpostv1.RemoveCacheRuleRequest{Domain: dom, RuleId: id})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetSettings().GetRules()); n != 2 {
			t.Fatalf("%d rules after remove", n)
		}
		_, err = c.Cache.RemoveCacheRule(ctx, &outpostv1.RemoveCacheRuleRequest{Domain: dom, RuleId: id})
		wantErr(t, err, codes.NotFound, "CacheRuleNotFound")
		_, err = c.Cache.RemoveCacheRule(ctx, &outpostv1.RemoveCacheRuleRequest{Domain: dom})
		wantErr(t, err, codes.NotFound, "CacheRuleNotFound")

		k, err := c.Cache.SetCacheKeyOptions(ctx, &outpostv1.SetCacheKeyOptionsRequest{Domain: dom, IgnoreQuery: true})
		if err != nil {
			t.Fatal(err)
		}
		if !k.GetSettings().GetIgnoreQuery() || len(k.GetSettings().GetRules()) != 2 {
			t.Fatalf("key options %v", k.GetSettings())
		}
		if !list().GetIgnoreQuery() {
			t.Fatal("ignore_query not stored")
		}
		k, err = c.Cache.SetCacheKeyOptions(ctx, &outpostv1.SetCacheKeyOptionsRequest{Domain: dom})
		if err != nil || k.GetSettings().GetIgnoreQuery() {
			t.Fatalf("keep query: %v %v", k, err)
		}
	})

	t.Run("at most 64 rules", func(t *testing.T) {
		if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "many.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
			t.Fatal(err)
		}
		for i := range 64 {
			if _, err := c.Cache.AddCacheRule(ctx, prefixRule("many.example.com", fmt.Sprintf("/p%d/", i), time.Minute)); err != nil {
				t.Fatalf("rule %d: %v", i, err)
			}
		}
		_, err := c.Cache.AddCacheRule(ctx, prefixRule("many.example.com", "/one-more/", time.Minute))
		wantErr(t, err, codes.ResourceExhausted, "TooManyCacheRules")
		resp, err := c.Cache.ListCacheRules(ctx, &outpostv1.ListCacheRulesRequest{Domain: "many.example.com"})
		if err != nil || len(resp.GetSettings().GetRules()) != 64 {
			t.Fatalf("%d rules, %v", len(resp.GetSettings().GetRules()), err)
		}
		ids := map[string]bool{}
		for _, r := range resp.GetSettings().GetRules() {
			ids[r.GetId()] = true
		}
		if len(ids) != 64 {
			t.Fatalf("rule IDs are not unique: %d distinct", len(ids))
		}
	})
}
