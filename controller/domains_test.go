package controller_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestCreateDomainRules(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	other, _ := env.NewAccount(t, "other")
	cli := env.Clients(t, admin).Domains
	ctx := ctxT(t)

	// A domain that exists in another account.
	if _, err := env.Clients(t, other).Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{
		Name: "taken.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")},
	}); err != nil {
		t.Fatal(err)
	}

	ok := []*outpostv1.Origin{ipOrigin("192.0.2.10")}
	cases := []struct {
		name    string
		req     *outpostv1.CreateDomainRequest
		code    codes.Code
		reason  string
		wantNm  string
		wantCNM string
	}{
		{"plain", &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: ok}, codes.OK, "", "www.example.com", "www.example.com.cdn.outpost.test"},
		{"case and trailing dot", &outpostv1.CreateDomainRequest{Name: "IMG.Example.COM.", Origins: ok}, codes.OK, "", "img.example.com", "img.example.com.cdn.outpost.test"},
		{"wildcard", &outpostv1.CreateDomainRequest{Name: "*.static.example.com", Origins: ok}, codes.OK, "", "*.static.example.com", "wc--all.static.example.com.cdn.outpost.test"},
		{"apex of two labels", &outpostv1.CreateDomainRequest{Name: "example.org", Origins: ok}, codes.OK, "", "example.org", "example.org.cdn.outpost.test"},
		{"idn unicode", &outpostv1.CreateDomainRequest{Name: "中文.example.com", Origins: ok}, codes.InvalidArgument, "DomainNameNotAscii", "", ""},
		{"idn punycode", &outpostv1.CreateDomainRequest{Name: "xn--fiq228c.example.com", Origins: ok}, codes.InvalidArgument, "InvalidDomainName", "", ""},
		{"single label", &outpostv1.CreateDomainRequest{Name: "localhost", Origins: ok}, codes.InvalidArgument, "InvalidDomainName", "", ""},
		{"wildcard of a tld", &outpostv1.CreateDomainRequest{Name: "*.com", Origins: ok}, codes.InvalidArgument, "InvalidDomainName", "", ""},
		{"inner wildcard", &outpostv1.CreateDomainRequest{Name: "a.*.example.com", Origins: ok}, codes.InvalidArgument, "InvalidDomainName", "", ""},
		{"underscore", &outpostv1.CreateDomainRequest{Name: "a_b.example.com", Origins: ok}, codes.InvalidArgument, "InvalidDomainName", "", ""},
		{"ip address", &outpostv1.CreateDomainRequest{Name: "192.0.2.1", Origins: ok}, codes.InvalidArgument, "InvalidDomainName", "", ""},
		{"empty", &outpostv1.CreateDomainRequest{Name: "", Origins: ok}, codes.InvalidArgument, "InvalidDomainName", "", ""},
		{"label too long", &outpostv1.CreateDomainRequest{Name: strings.Repeat("a", 64) + ".example.com", Origins: ok}, codes.InvalidArgument, "InvalidDomainName", "", ""},
		{"exists in another account", &outpostv1.CreateDomainRequest{Name: "taken.example.com", Origins: ok}, codes.AlreadyExists, "DomainAlreadyExist", "", ""},
		{"exists, other spelling", &outpostv1.CreateDomainRequest{Name: "TAKEN.example.com.", Origins: ok}, codes.AlreadyExists, "DomainAlreadyExist", "", ""},
		{"no origins", &outpostv1.CreateDomainRequest{Name: "o1.example.com"}, codes.InvalidArgument, "InvalidOrigin", "", ""},
		{"origin without type", &outpostv1.CreateDomainRequest{Name: "o2.example.com", Origins: []*outpostv1.Origin{{Address: "192.0.2.1"}}}, codes.InvalidArgument, "InvalidOrigin", "", ""},
		{"bad ip origin", &outpostv1.CreateDomainRequest{Name: "o3.example.com", Origins: []*outpostv1.Origin{ipOrigin("300.1.1.1")}}, codes.InvalidArgument, "InvalidOrigin", "", ""},
		{"ip given as domain", &outpostv1.CreateDomainRequest{Name: "o4.example.com", Origins: []*outpostv1.Origin{domainOrigin("192.0.2.1")}}, codes.InvalidArgument, "InvalidOrigin", "", ""},
		{"port 8080", &outpostv1.CreateDomainRequest{Name: "o5.example.com", Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "192.0.2.1", Port: 8080}}}, codes.InvalidArgument, "InvalidOriginPort", "", ""},
		{"origin is the domain", &outpostv1.CreateDomainRequest{Name: "loop.example.com", Origins: []*outpostv1.Origin{domainOrigin("loop.example.com")}}, codes.InvalidArgument, "OriginLoop", "", ""},
		{"origin matched by wildcard", &outpostv1.CreateDomainRequest{Name: "*.loop.example.com", Origins: []*outpostv1.Origin{domainOrigin("origin.loop.example.com")}}, codes.InvalidArgument, "OriginLoop", "", ""},
		{"oss origin is the domain", &outpostv1.CreateDomainRequest{Name: "b.example.com", Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_OSS, Address: "B.example.com"}}}, codes.InvalidArgument, "OriginLoop", "", ""},
		{"only backups", &outpostv1.CreateDomainRequest{Name: "o6.example.com", Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "192.0.2.1", Priority: outpostv1.OriginPriority_ORIGIN_PRIORITY_BACKUP}}}, codes.InvalidArgument, "InvalidOrigin", "", ""},
		{"duplicate origins", &outpostv1.CreateDomainRequest{Name: "o7.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1"), ipOrigin("192.0.2.1")}}, codes.InvalidArgument, "InvalidOrigin", "", ""},
		{"weight too high", &outpostv1.CreateDomainRequest{Name: "o8.example.com", Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "192.0.2.1", Weight: 101}}}, codes.InvalidArgument, "InvalidOrigin", "", ""},
		{"unknown business type", &outpostv1.CreateDomainRequest{Name: "o9.example.com", Origins: ok, BusinessType: 42}, codes.InvalidArgument, "InvalidBusinessType", "", ""},
		{"unknown scope", &outpostv1.CreateDomainRequest{Name: "o10.example.com", Origins: ok, Scope: 42}, codes.InvalidArgument, "InvalidScope", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := cli.CreateDomain(ctx, tc.req)
			if tc.code != codes.OK {
				wantErr(t, err, tc.code, tc.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := resp.GetDomain()
			if d.GetName() != tc.wantNm || d.GetCname() != tc.wantCNM {
				t.Fatalf("got name %q cname %q, want %q %q", d.GetName(), d.GetCname(), tc.wantNm, tc.wantCNM)
			}
			if d.GetStatus() != outpostv1.DomainStatus_DOMAIN_STATUS_CONFIGURING || d.GetAccount() != "acme" || d.GetRevision() == 0 {
				t.Fatalf("unexpected domain %v", d)
			}
			o := d.GetOrigins()[0]
			if o.GetPort() != 80 || o.GetWeight() != 10 || o.GetPriority() != outpostv1.OriginPriority_ORIGIN_PRIORITY_PRIMARY {
				t.Fatalf("origin defaults not filled: %v", o)
			}
			if d.GetBusinessType() != outpostv1.BusinessType_BUSINESS_TYPE_WEB || d.GetScope() != outpostv1.Scope_SCOPE_GLOBAL {
				t.Fatalf("defaults not filled: %v %v", d.GetBusinessType(), d.GetScope())
			}
		})
	}

	// Nothing was stored for the refused requests.
	list, err := cli.ListDomains(ctx, &outpostv1.ListDomainsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range list.GetDomains() {
		got = append(got, d.GetName())
	}
	if want := "*.static.example.com example.org img.example.com www.example.com"; strings.Join(got, " ") != want {
		t.Fatalf("domains after the table: %q, want %q", strings.Join(got, " "), want)
	}
}

func TestDomainQuota(t *testing.T) {
	env := controllertest.Start(t, func(c *controller.Config) { c.DefaultDomainQuota = 3 })
	admin, _ := env.NewAccount(t, "small")
	cli := env.Clients(t, admin).Domains
	ctx := ctxT(t)
	create := func(i int) error {
		_, err := cli.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: fmt.Sprintf("d%d.example.com", i), Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}})
		return err
	}
	for i := 0; i < 3; i++ {
		if err := create(i); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, create(3), codes.ResourceExhausted, "DomainQuotaExceeded")

	// Removing one frees a slot; raising the quota frees more.
	if _, err := cli.DeleteDomain(ctx, &outpostv1.DeleteDomainRequest{Name: "d0.example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := create(3); err != nil {
		t.Fatal(err)
	}
	wantErr(t, create(4), codes.ResourceExhausted, "DomainQuotaExceeded")
	op := env.Clients(t, env.OperatorToken).Accounts
	acct, err := op.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "small", DomainQuota: 4})
	if err != nil {
		t.Fatal(err)
	}
	if acct.GetAccount().GetDomainQuota() != 4 || acct.GetAccount().GetDomainCount() != 3 {
		t.Fatalf("account after raise: %v", acct.GetAccount())
	}
	if err := create(4); err != nil {
		t.Fatal(err)
	}
	wantErr(t, create(5), codes.ResourceExhausted, "DomainQuotaExceeded")
}

func TestDefaultQuotaIsFifty(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "fifty")
	cli := env.Clients(t, admin).Domains
	ctx := ctxT(t)
	for i := 0; i < 50; i++ {
		if _, err := cli.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: fmt.Sprintf("d%d.example.com", i), Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := cli.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "d50.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}})
	wantErr(t, err, codes.ResourceExhausted, "DomainQuotaExceeded")

	// Paging walks all fifty in order, without repeats.
	seen := map[string]bool{}
	token := ""
	pages := 0
	for {
		resp, err := cli.ListDomains(ctx, &outpostv1.ListDomainsRequest{PageSize: 7, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, d := range resp.GetDomains() {
			if seen[d.GetName()] {
				t.Fatalf("%s listed twice", d.GetName())
			}
			seen[d.GetName()] = true
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(seen) != 50 || pages != 8 {
		t.Fatalf("paged %d domains in %d pages, want 50 in 8", len(seen), pages)
	}
	_, err = cli.ListDomains(ctx, &outpostv1.ListDomainsRequest{PageToken: "bm90LWEtdG9rZW4"})
	wantErr(t, err, codes.InvalidArgument, "InvalidPageToken")
}

func TestDomainLifecycle(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	dis, err := c.Domains.DisableDomain(ctx, &outpostv1.DisableDomainRequest{Name: "www.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if dis.GetDomain().GetStatus() != outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE {
		t.Fatalf("disabled domain status %v", dis.GetDomain().GetStatus())
	}
	got, err := c.Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: "WWW.example.com."})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetDomain().GetStatus() != outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE || got.GetDomain().GetRevision() != dis.GetDomain().GetRevision() {
		t.Fatalf("get after disable: %v", got.GetDomain())
	}
	en, err := c.Domains.EnableDomain(ctx, &outpostv1.EnableDomainRequest{Name: "www.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if en.GetDomain().GetStatus() != outpostv1.DomainStatus_DOMAIN_STATUS_CONFIGURING || en.GetDomain().GetRevision() <= dis.GetDomain().GetRevision() {
		t.Fatalf("enabled domain: %v", en.GetDomain())
	}
	if _, err := c.Domains.DeleteDomain(ctx, &outpostv1.DeleteDomainRequest{Name: "www.example.com"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Domains.GetDomain(ctx, &outpostv1.GetDomainRequest{Name: "www.example.com"})
	wantErr(t, err, codes.NotFound, "DomainNotFound")
	_, err = c.Domains.DeleteDomain(ctx, &outpostv1.DeleteDomainRequest{Name: "www.example.com"})
	wantErr(t, err, codes.NotFound, "DomainNotFound")

	// The index went with it: the etcd prefix holds no trace of the domain.
	kvs, _, err := env.Controller.Store().Range(ctx, store.Prefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if strings.Contains(kv.Key, "www.example.com") {
			t.Fatalf("key %s left behind", kv.Key)
		}
	}
}
