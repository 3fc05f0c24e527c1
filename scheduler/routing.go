package scheduler

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"

	"google.golang.org/grpc/peer"

	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/clusterpki"
	"github.com/outpost-cdn/outpost/internal/membership"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler/locate"
	"github.com/outpost-cdn/outpost/scheduler/selection"
)

// startRouting sets up what answers need: the domain table from the config
// stream, the node membership from gossip, client location and selection.
func (s *Scheduler) startRouting() error {
	cfg := s.cfg
	var cz *locate.CoverageZone
	var err error
	if cfg.CoverageZoneFile != "" {
		if cz, err = locate.LoadCoverageZone(cfg.CoverageZoneFile); err != nil {
			return fmt.Errorf("coverage zone: %w", err)
		}
	}
	if cfg.GeoIPFile != "" {
		if s.geo, err = locate.OpenGeoIP(cfg.GeoIPFile); err != nil {
			return fmt.Errorf("geoip: %w", err)
		}
	}
	s.locator = locate.NewChain(cz, s.geo, locate.Location{Latitude: cfg.DefaultLatitude, Longitude: cfg.DefaultLongitude})
	s.selector = selection.New(selection.Config{RegionScope: cfg.RegionScope})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if cfg.Gossip.Addr != "" {
		meta := func() membership.Meta { return membership.Meta{Role: membership.RoleScheduler} }
		if s.gossip, err = membership.NewGossiper(cfg.Gossip, cfg.Name, meta, s.log); err != nil {
			return err
		}
	}
	if len(cfg.Controllers) > 0 && (cfg.JoinToken != "" || clusterpki.HasCertificate(cfg.DataDir)) {
		id, err := clusterpki.NewIdentity(clusterpki.MemberConfig{
			Name: cfg.Name, Role: outpostv1.MemberRole_MEMBER_ROLE_SCHEDULER, Controllers: cfg.Controllers,
			JoinToken: cfg.JoinToken, CAFile: cfg.CAFile, CAPin: cfg.CAPin, Dir: cfg.DataDir, Logger: s.log,
		})
		if err != nil {
			return fmt.Errorf("scheduler certificate: %w", err)
		}
		s.domains = newDomainStream(cfg.Name, id, cfg.Controllers)
		if s.gossip != nil {
			// Gossip keys may come from the controller: the member starts
			// with the first config.
			s.domains.applied = func(t *domainTable) {
				s.gossip.AddSeeds(t.gossipSeeds)
				s.gossip.ApplyControllerKeys(t.gossipKeys)
			}
		}
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.domains.run(ctx, func(err error) { s.log.Info("config stream ended; reconnecting", "err", err) })
		}()
	}
	if s.gossip != nil && s.domains == nil {
		s.gossip.ApplyControllerKeys(nil) // no controller: its own keys, or none
	}
	return nil
}

func (s *Scheduler) stopRouting() {
	if s.cancel != nil {
		s.cancel()
	}
	s.bg.Wait()
	if s.gossip != nil {
		s.gossip.Close()
	}
	if s.domains != nil {
		s.domains.close()
	}
	if s.geo != nil {
		s.geo.Close()
	}
}

// nodes are the live edge nodes as gossip reports them.
func (s *Scheduler) nodes() []selection.Node {
	if s.gossip == nil {
		return nil
	}
	drained := emptyTable.draining
	if s.domains != nil {
		drained = s.domains.table.Load().draining
	}
	var out []selection.Node
	for _, p := range s.gossip.Peers() {
		m := p.Meta
		if m.Role != membership.RoleNode {
			continue
		}
		out = append(out, selection.Node{
			Name: p.Name, Region: m.Region, Latitude: m.Latitude, Longitude: m.Longitude,
			Capacity: m.Capacity, Load: m.Load, Draining: m.Draining || drained[p.Name], Healthy: p.Alive,
			HTTPAddress: m.HTTP, HTTPSAddress: m.HTTPS,
		})
	}
	return out
}

// route ranks the nodes for a name (an accelerated domain or its CNAME)
// and a client address.
func (s *Scheduler) route(name string, client netip.Addr, max int) (*outpostv1.Domain, locate.Location, []selection.Candidate, error) {
	t := emptyTable
	if s.domains != nil {
		t = s.domains.table.Load()
	}
	d := t.lookup(name)
	if d == nil {
		return nil, locate.Location{}, nil, apierr.NotFound(apierr.ReasonDomainNotFound, "no accelerated domain or CNAME %q", name)
	}
	loc := s.locator.Locate(client)
	cands := s.selector.Select(selection.Request{Domain: d.GetName(), Scope: d.GetScope(), ClientLat: loc.Latitude, ClientLon: loc.Longitude, Max: max}, s.nodes())
	return d, loc, cands, nil
}

// Resolve implements outpostv1.SchedulerServiceServer.
func (r *resolver) Resolve(ctx context.Context, req *outpostv1.ResolveRequest) (*outpostv1.ResolveResponse, error) {
	s := r.s
	var client netip.Addr
	if req.GetClientIp() != "" {
		a, err := netip.ParseAddr(req.GetClientIp())
		if err != nil {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "client_ip %q is not an IP address", req.GetClientIp())
		}
		client = a
	} else if p, ok := peer.FromContext(ctx); ok {
		if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
			client = ap.Addr()
		}
	}
	_, loc, cands, err := s.route(req.GetDomain(), client.Unmap(), 0)
	if err != nil {
		return nil, err
	}
	resp := &outpostv1.ResolveResponse{TtlSeconds: uint32(s.cfg.TTL.Seconds()), ClientLocation: &outpostv1.Location{Latitude: loc.Latitude, Longitude: loc.Longitude}, ClientRegion: loc.Region}
	for _, c := range cands {
		dist := c.DistanceKm
		if math.IsNaN(dist) {
			dist = 0
		}
		resp.Candidates = append(resp.Candidates, &outpostv1.Candidate{Node: c.Node.Name, Region: c.Node.Region, HttpAddress: c.Node.HTTPAddress, HttpsAddress: c.Node.HTTPSAddress, DistanceKm: dist})
	}
	return resp, nil
}

// hostIP is the IP of a host:port address, if its host is an IP.
func hostIP(addr string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil || ip.IsUnspecified() {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}
