package locate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/gaissmai/bart"
)

// CoverageZone maps client networks to named regions, from a coverage-zone
// file. The file is JSON:
//
//	{
//	  "regions": {
//	    "east": {
//	      "latitude": 40.7, "longitude": -74.0,
//	      "networks": ["10.1.0.0/16", "2001:db8:1::/48"]
//	    },
//	    "west": {"latitude": 37.8, "longitude": -122.4, "networks": ["10.2.0.0/16"]}
//	  }
//	}
//
// Every region needs a non-empty name and both coordinates (latitude within
// [-90, 90], longitude within [-180, 180]); "networks" may be empty. Unknown
// keys are rejected, so that a misspelt key is not silently ignored.
// Networks are CIDRs (IPv4 or IPv6) without host bits set; IPv4-mapped IPv6
// CIDRs (::ffff:10.0.0.0/104) are stored as the IPv4 CIDR they map. Nested
// networks are allowed, in the same or in different regions, and the
// longest prefix wins; the same CIDR in two regions is an error.
//
// A CoverageZone is immutable and safe for concurrent use.
type CoverageZone struct {
	table   bart.Table[czEntry]
	regions []string // sorted
}

type czRegion struct {
	name     string
	lat, lon float64
}

type czEntry struct {
	region *czRegion
	bits   int
}

// czFile and czFileRegion are the JSON form.
type czFile struct {
	Regions map[string]czFileRegion `json:"regions"`
}

type czFileRegion struct {
	Latitude  *float64 `json:"latitude"`
	Longitude *float64 `json:"longitude"`
	Networks  []string `json:"networks"`
}

// LoadCoverageZone reads and parses the coverage-zone file at path.
func LoadCoverageZone(path string) (*CoverageZone, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("coverage zone: %w", err)
	}
	cz, err := ParseCoverageZone(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cz, nil
}

// ParseCoverageZone parses a coverage-zone file (see [CoverageZone] for the
// format). All problems found are reported together (joined with
// errors.Join), each naming the region and network at fault.
func ParseCoverageZone(r io.Reader) (*CoverageZone, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var f czFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("coverage zone: invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("coverage zone: invalid JSON: unexpected data after the top-level object")
	}
	if f.Regions == nil {
		return nil, errors.New(`coverage zone: missing "regions" object`)
	}

	cz := &CoverageZone{}
	owner := make(map[netip.Prefix]string) // CIDR -> region, for duplicates
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("coverage zone: "+format, args...))
	}

	// Sorted, so that errors (and which region a duplicate is blamed on)
	// do not depend on map order.
	names := make([]string, 0, len(f.Regions))
	for name := range f.Regions {
		names = append(names, name)
	}
	slices.Sort(names)

	for _, name := range names {
		fr := f.Regions[name]
		if strings.TrimSpace(name) == "" {
			bad("region %q: empty region name", name)
			continue
		}
		switch {
		case fr.Latitude == nil:
			bad("region %q: missing latitude", name)
		case *fr.Latitude < -90 || *fr.Latitude > 90:
			bad("region %q: latitude %v out of range [-90, 90]", name, *fr.Latitude)
		}
		switch {
		case fr.Longitude == nil:
			bad("region %q: missing longitude", name)
		case *fr.Longitude < -180 || *fr.Longitude > 180:
			bad("region %q: longitude %v out of range [-180, 180]", name, *fr.Longitude)
		}
		reg := &czRegion{name: name}
		if fr.Latitude != nil && fr.Longitude != nil {
			reg.lat, reg.lon = *fr.Latitude, *fr.Longitude
		}
		cz.regions = append(cz.regions, name)

		for _, s := range fr.Networks {
			p, err := parseCIDR(s)
			if err != nil {
				bad("region %q: network %q: %v", name, s, err)
				continue
			}
			if prev, dup := owner[p]; dup {
				if prev != name {
					bad("region %q: network %q: %v is already in region %q", name, s, p, prev)
				}
				continue // the same CIDR twice in one region is harmless
			}
			owner[p] = name
			cz.table.Insert(p, czEntry{region: reg, bits: p.Bits()})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cz, nil
}

// parseCIDR parses a canonical CIDR, unmapping IPv4-mapped IPv6 ones.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, errors.New("not a valid CIDR (want address/length, such as 10.1.0.0/16 or 2001:db8::/32)")
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits set (did you mean %v?)", m)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// Lookup returns the location of the region whose network is the longest
// match for ip, and whether there was one. See [Location.PrefixLen] for the
// prefix length reported.
func (cz *CoverageZone) Lookup(ip netip.Addr) (Location, bool) {
	ip = normalize(ip)
	if !ip.IsValid() {
		return Location{}, false
	}
	e, ok := cz.table.Lookup(ip)
	if !ok {
		return Location{}, false
	}
	return Location{
		Latitude:  e.region.lat,
		Longitude: e.region.lon,
		Region:    e.region.name,
		Source:    SourceCoverageZone,
		PrefixLen: cz.scope(ip, e.bits, e.bits),
	}, true
}

// Regions returns the region names, sorted.
func (cz *CoverageZone) Regions() []string {
	return slices.Clone(cz.regions)
}

// Len returns the number of networks.
func (cz *CoverageZone) Len() int {
	return cz.table.Size()
}

// scope returns the smallest length l >= minBits such that ip/l contains no
// coverage-zone network longer than matched (the length of the network
// ip matched, or -1 if none): the widest network around ip, no wider than
// ip/minBits, in which every address gets the same answer as ip.
//
// Containing such a network is monotone in l (ip/l only shrinks as l
// grows), and ip/bitlen never contains one, so a binary search works.
func (cz *CoverageZone) scope(ip netip.Addr, minBits, matched int) int {
	lo, hi := max(minBits, 0), ip.BitLen()
	if lo >= hi {
		return hi
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if cz.containsLonger(netip.PrefixFrom(ip, mid).Masked(), matched) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// containsLonger reports whether p contains a coverage-zone network longer
// than bits. Subnets yields in CIDR order, so p itself (if present) comes
// first and any longer network right after it.
func (cz *CoverageZone) containsLonger(p netip.Prefix, bits int) bool {
	for q := range cz.table.Subnets(p) {
		if q.Bits() > bits {
			return true
		}
	}
	return false
}
