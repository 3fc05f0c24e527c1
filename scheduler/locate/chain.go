package locate

import "net/netip"

// chain is the Locator returned by NewChain.
type chain struct {
	cz  *CoverageZone
	geo *GeoIP
	def Location
}

// NewChain returns a Locator that consults the coverage zone first, then
// GeoIP (only records with coordinates count), and otherwise answers def.
// cz and geo may be nil. def is returned as given except that its Source is
// set to SourceDefault and its PrefixLen to 0; the caller is responsible for
// giving it sensible coordinates.
//
// When a GeoIP answer's network contains coverage-zone networks (which
// would answer differently), its PrefixLen is lengthened until it does not.
//
// The chain does not own cz or geo: closing or reloading geo is the
// caller's business, and lookups after geo is closed fall through to the
// default.
func NewChain(cz *CoverageZone, geo *GeoIP, def Location) Locator {
	def.Source = SourceDefault
	def.PrefixLen = 0
	return &chain{cz: cz, geo: geo, def: def}
}

func (c *chain) Locate(ip netip.Addr) Location {
	ip = normalize(ip)
	if !ip.IsValid() {
		return c.def
	}
	if c.cz != nil {
		if loc, ok := c.cz.Lookup(ip); ok {
			return loc
		}
	}
	if c.geo != nil {
		if loc, ok := c.geo.Lookup(ip); ok {
			if c.cz != nil {
				loc.PrefixLen = c.cz.scope(ip, loc.PrefixLen, -1)
			}
			return loc
		}
	}
	return c.def
}
