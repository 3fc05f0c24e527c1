package controller

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Limits on origins.
const (
	maxOrigins    = 20
	defaultWeight = 10
	maxWeight     = 100
)

// normalizeOrigins validates a domain's origin list and fills defaults
// (port 80, primary, weight 10). domain is the normalised accelerated name,
// used to refuse origins that would loop back to the edge.
func normalizeOrigins(domain string, in []*outpostv1.Origin, ports []uint32) ([]*outpostv1.Origin, error) {
	if len(in) == 0 {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "at least one origin is required")
	}
	if len(in) > maxOrigins {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "at most %d origins are allowed, got %d", maxOrigins, len(in))
	}
	out := make([]*outpostv1.Origin, 0, len(in))
	seen := map[string]bool{}
	primaries := 0
	for i, o := range in {
		n, err := normalizeOrigin(domain, o, ports)
		if err != nil {
			if ae, ok := err.(*apierr.Error); ok {
				return nil, ae.With("origin_index", itoa(i))
			}
			return nil, err
		}
		key := n.GetType().String() + "|" + n.GetAddress() + "|" + itoa(int(n.GetPort()))
		if seen[key] {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "origin %s:%d is listed twice", n.GetAddress(), n.GetPort())
		}
		seen[key] = true
		if n.GetPriority() == outpostv1.OriginPriority_ORIGIN_PRIORITY_PRIMARY {
			primaries++
		}
		out = append(out, n)
	}
	if primaries == 0 {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "at least one origin must be primary")
	}
	return out, nil
}

func normalizeOrigin(domain string, o *outpostv1.Origin, ports []uint32) (*outpostv1.Origin, error) {
	if o == nil {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "empty origin")
	}
	n := &outpostv1.Origin{Type: o.GetType(), Port: o.GetPort(), Priority: o.GetPriority(), Weight: o.GetWeight()}
	addr := strings.TrimSpace(o.GetAddress())
	switch o.GetType() {
	case outpostv1.OriginType_ORIGIN_TYPE_IP:
		ip, err := netip.ParseAddr(strings.Trim(addr, "[]"))
		if err != nil || ip.Zone() != "" {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "origin %q is not an IP address", addr)
		}
		if ip.IsUnspecified() || ip.IsMulticast() {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "origin %s is not a unicast address", ip)
		}
		n.Address = ip.Unmap().String()
	case outpostv1.OriginType_ORIGIN_TYPE_DOMAIN, outpostv1.OriginType_ORIGIN_TYPE_OSS, outpostv1.OriginType_ORIGIN_TYPE_FC:
		if _, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "origin %q is an IP address: use type ip", addr)
		}
		h, err := names.Host(addr, apierr.ReasonInvalidOrigin)
		if err != nil {
			return nil, err
		}
		if h == domain || names.Matches(domain, h) {
			return nil, apierr.InvalidArgument(apierr.ReasonOriginLoop,
				"origin %s is served by the accelerated domain %s itself: requests would loop back to the edge", h, domain).With("origin", h)
		}
		n.Address = h
	case outpostv1.OriginType_ORIGIN_TYPE_UNSPECIFIED:
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "origin %q has no type: use ip, domain, oss or fc", addr)
	default:
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "origin %q has an unknown type %d", addr, o.GetType())
	}
	if n.Port == 0 {
		n.Port = 80
	}
	if !slices.Contains(ports, n.Port) {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidOriginPort, "origin port %d is not allowed: use one of %v (80 for HTTP, 443 for HTTPS)", n.Port, ports)
	}
	switch n.Priority {
	case outpostv1.OriginPriority_ORIGIN_PRIORITY_UNSPECIFIED:
		n.Priority = outpostv1.OriginPriority_ORIGIN_PRIORITY_PRIMARY
	case outpostv1.OriginPriority_ORIGIN_PRIORITY_PRIMARY, outpostv1.OriginPriority_ORIGIN_PRIORITY_BACKUP:
	default:
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "origin priority %d is unknown", n.Priority)
	}
	switch {
	case n.Weight == 0:
		n.Weight = defaultWeight
	case n.Weight > maxWeight:
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidOrigin, "origin weight %d is out of range 1-%d", n.Weight, maxWeight)
	}
	return n, nil
}

func businessType(t outpostv1.BusinessType) (outpostv1.BusinessType, error) {
	if t == outpostv1.BusinessType_BUSINESS_TYPE_UNSPECIFIED {
		return outpostv1.BusinessType_BUSINESS_TYPE_WEB, nil
	}
	if _, ok := outpostv1.BusinessType_name[int32(t)]; !ok {
		return 0, apierr.InvalidArgument(apierr.ReasonInvalidBusinessType, "business type %d is unknown: use web, download, video or dynamic", t)
	}
	return t, nil
}

func scope(s outpostv1.Scope) (outpostv1.Scope, error) {
	if s == outpostv1.Scope_SCOPE_UNSPECIFIED {
		return outpostv1.Scope_SCOPE_GLOBAL, nil
	}
	if _, ok := outpostv1.Scope_name[int32(s)]; !ok {
		return 0, apierr.InvalidArgument(apierr.ReasonInvalidScope, "scope %d is unknown: use mainland, overseas or global", s)
	}
	return s, nil
}

var accountIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func validAccountID(id string) error {
	if !accountIDPattern.MatchString(id) {
		return apierr.InvalidArgument(apierr.ReasonInvalidAccountID,
			"account ID %q is invalid: use 1-63 lower-case letters, digits and '-', not starting or ending with '-'", id)
	}
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }
