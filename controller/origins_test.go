package controller_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestOriginSettings(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	c := env.Clients(t, admin)
	ctx := ctxT(t)
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "192.0.2.1", Port: 443}}}); err != nil {
		t.Fatal(err)
	}

	t.Run("sni", func(t *testing.T) {
		resp, err := c.Origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: "www.example.com", Enabled: true, Value: "Origin.Example.NET."})
		if err != nil {
			t.Fatal(err)
		}
		if s := resp.GetSettings().GetSni(); !s.GetEnabled() || s.GetValue() != "origin.example.net" {
			t.Fatalf("sni %v", s)
		}
		for _, bad := range []string{"", "192.0.2.1", "*.example.com", "bad_name.example.com", "例え.jp"} {
			_, err := c.Origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: "www.example.com", Enabled: true, Value: bad})
			reason := "InvalidSniValue"
			if bad == "例え.jp" {
				reason = "DomainNameNotAscii"
			}
			wantErr(t, err, codes.InvalidArgument, reason)
		}
		// A refused value left the stored one alone.
		got, err := c.Origins.GetOriginSettings(ctx, &outpostv1.GetOriginSettingsRequest{Domain: "www.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetSettings().GetSni().GetValue() != "origin.example.net" {
			t.Fatalf("sni after refused update: %v", got.GetSettings().GetSni())
		}
		resp, err = c.Origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: "www.example.com", Enabled: false})
		if err != nil {
			t.Fatal(err)
		}
		if s := resp.GetSettings().GetSni(); s.GetEnabled() || s.GetValue() != "" {
			t.Fatalf("sni after disable %v", s)
		}
	})

	t.Run("host protocol verify", func(t *testing.T) {
		if _, err := c.Origins.SetOriginHost(ctx, &outpostv1.SetOriginHostRequest{Domain: "www.example.com", HostHeader: "origin.example.net"}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Origins.SetOriginHost(ctx, &outpostv1.SetOriginHostRequest{Domain: "www.example.com", HostHeader: "bad host"})
		wantErr(t, err, codes.InvalidArgument, "InvalidHostHeader")
		if _, err := c.Origins.SetOriginProtocol(ctx, &outpostv1.SetOriginProtocolRequest{Domain: "www.example.com", Policy: outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTPS}); err != nil {
			t.Fatal(err)
		}
		_, err = c.Origins.SetOriginProtocol(ctx, &outpostv1.SetOriginProtocolRequest{Domain: "www.example.com", Policy: 9})
		wantErr(t, err, codes.InvalidArgument, "InvalidPolicy")
		ca := certstest.NewCA(t, "private origin CA")
		if _, err := c.Origins.SetOriginVerify(ctx, &outpostv1.SetOriginVerifyRequest{Domain: "www.example.com", TrustedCaPem: string(ca.CertPEM)}); err != nil {
			t.Fatal(err)
		}
		_, err = c.Origins.SetOriginVerify(ctx, &outpostv1.SetOriginVerifyRequest{Domain: "www.example.com", TrustedCaPem: "not a pem"})
		wantErr(t, err, codes.InvalidArgument, "InvalidCaPem")
		got, err := c.Origins.GetOriginSettings(ctx, &outpostv1.GetOriginSettingsRequest{Domain: "www.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		s := got.GetSettings()
		if s.GetHostHeader() != "origin.example.net" || s.GetProtocolPolicy() != outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTPS || s.GetTrustedCaPem() == "" || s.GetSkipVerify() {
			t.Fatalf("settings %v", s)
		}
	})

	t.Run("set origins", func(t *testing.T) {
		resp, err := c.Origins.SetOrigins(ctx, &outpostv1.SetOriginsRequest{Domain: "www.example.com", Origins: []*outpostv1.Origin{
			{Type: outpostv1.OriginType_ORIGIN_TYPE_DOMAIN, Address: "a.origin.example.net", Port: 443, Weight: 30},
			{Type: outpostv1.OriginType_ORIGIN_TYPE_OSS, Address: "bucket.oss.example.net", Priority: outpostv1.OriginPriority_ORIGIN_PRIORITY_BACKUP},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetOrigins()) != 2 || resp.GetOrigins()[1].GetPort() != 80 {
			t.Fatalf("origins %v", resp.GetOrigins())
		}
		_, err = c.Origins.SetOrigins(ctx, &outpostv1.SetOriginsRequest{Domain: "www.example.com", Origins: []*outpostv1.Origin{domainOrigin("www.example.com")}})
		wantErr(t, err, codes.InvalidArgument, "OriginLoop")
	})

	t.Run("unknown domain", func(t *testing.T) {
		_, err := c.Origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: "nope.example.com", Enabled: true, Value: "a.example.com"})
		wantErr(t, err, codes.NotFound, "DomainNotFound")
	})
}
