package controller

import (
	"context"
	"net/netip"
	"strings"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// originService implements outpostv1.OriginServiceServer.
type originService struct {
	outpostv1.UnimplementedOriginServiceServer
	c *Controller
}

var _ outpostv1.OriginServiceServer = (*originService)(nil)

// updateOriginSettings is updateDomain for the origin settings block.
func (s *originService) updateOriginSettings(ctx context.Context, domain string, fn func(d *outpostv1.Domain, o *outpostv1.OriginSettings) error) (*outpostv1.OriginSettings, error) {
	d, err := s.c.updateDomain(ctx, domain, func(_ *store.Txn, d *outpostv1.Domain) error {
		if d.OriginSettings == nil {
			d.OriginSettings = &outpostv1.OriginSettings{}
		}
		return fn(d, d.OriginSettings)
	})
	if err != nil {
		return nil, err
	}
	return d.GetOriginSettings(), nil
}

func (s *originService) GetOriginSettings(ctx context.Context, req *outpostv1.GetOriginSettingsRequest) (*outpostv1.GetOriginSettingsResponse, error) {
	d, err := s.c.ownDomain(ctx, s.c.store.Begin(), req.GetDomain())
	if err != nil {
		return nil, err
	}
	return &outpostv1.GetOriginSettingsResponse{Origins: d.GetOrigins(), Settings: d.GetOriginSettings()}, nil
}

func (s *originService) SetOrigins(ctx context.Context, req *outpostv1.SetOriginsRequest) (*outpostv1.SetOriginsResponse, error) {
	d, err := s.c.updateDomain(ctx, req.GetDomain(), func(_ *store.Txn, d *outpostv1.Domain) error {
		origins, err := normalizeOrigins(d.GetName(), req.GetOrigins(), s.c.cfg.OriginPorts)
		if err != nil {
			return err
		}
		d.Origins = origins
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.SetOriginsResponse{Origins: d.GetOrigins()}, nil
}

func (s *originService) SetOriginSni(ctx context.Context, req *outpostv1.SetOriginSniRequest) (*outpostv1.SetOriginSniResponse, error) {
	sni := &outpostv1.OriginSni{}
	if req.GetEnabled() {
		v := strings.TrimSpace(req.GetValue())
		if v == "" {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidSniValue, "origin SNI needs a value: the host name the origin's certificate is for")
		}
		if _, err := netip.ParseAddr(strings.Trim(v, "[]")); err == nil {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidSniValue, "origin SNI %q is an IP address: SNI carries host names only (RFC 6066)", v)
		}
		h, err := names.Host(v, apierr.ReasonInvalidSniValue)
		if err != nil {
			return nil, err
		}
		sni = &outpostv1.OriginSni{Enabled: true, Value: h}
	}
	o, err := s.updateOriginSettings(ctx, req.GetDomain(), func(_ *outpostv1.Domain, o *outpostv1.OriginSettings) error {
		o.Sni = sni
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.SetOriginSniResponse{Settings: o}, nil
}

func (s *originService) SetOriginHost(ctx context.Context, req *outpostv1.SetOriginHostRequest) (*outpostv1.SetOriginHostResponse, error) {
	host := strings.TrimSpace(req.GetHostHeader())
	if host != "" {
		if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			host = ip.String()
		} else if host, err = names.Host(host, apierr.ReasonInvalidHostHeader); err != nil {
			return nil, err
		}
	}
	o, err := s.updateOriginSettings(ctx, req.GetDomain(), func(_ *outpostv1.Domain, o *outpostv1.OriginSettings) error {
		o.HostHeader = host
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.SetOriginHostResponse{Settings: o}, nil
}

func (s *originService) SetOriginProtocol(ctx context.Context, req *outpostv1.SetOriginProtocolRequest) (*outpostv1.SetOriginProtocolResponse, error) {
	pol := req.GetPolicy()
	if pol == outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_UNSPECIFIED {
		pol = outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_FOLLOW
	}
	if _, ok := outpostv1.OriginProtocolPolicy_name[int32(pol)]; !ok {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidPolicy, "origin protocol policy %d is unknown: use follow, http or https", pol)
	}
	o, err := s.updateOriginSettings(ctx, req.GetDomain(), func(_ *outpostv1.Domain, o *outpostv1.OriginSettings) error {
		o.ProtocolPolicy = pol
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.SetOriginProtocolResponse{Settings: o}, nil
}

func (s *originService) SetOriginVerify(ctx context.Context, req *outpostv1.SetOriginVerifyRequest) (*outpostv1.SetOriginVerifyResponse, error) {
	ca := strings.TrimSpace(req.GetTrustedCaPem())
	if ca != "" {
		if _, err := certs.ParseCAs(ca); err != nil {
			return nil, err
		}
		ca += "\n"
	}
	o, err := s.updateOriginSettings(ctx, req.GetDomain(), func(_ *outpostv1.Domain, o *outpostv1.OriginSettings) error {
		o.SkipVerify = req.GetSkipVerify()
		o.TrustedCaPem = ca
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &outpostv1.SetOriginVerifyResponse{Settings: o}, nil
}
