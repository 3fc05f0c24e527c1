// Package locate places client IP addresses on the map for the scheduler,
// which routes each client to the nearest healthy edge node.
//
// Three sources are combined by [NewChain], in order of precedence:
//
//  1. A [CoverageZone]: an operator-maintained JSON file mapping CIDRs to
//     named regions with coordinates (the Apache Traffic Router "coverage
//     zone file" idea). The longest matching prefix wins.
//  2. A [GeoIP] database in MaxMind DB format (GeoLite2-City, GeoIP2-City or
//     DB-IP City files work as they are). Only records that carry
//     coordinates are used.
//  3. A configured default [Location].
//
// IPv4-mapped IPv6 addresses (::ffff:192.0.2.1) are unmapped before any
// lookup, and IPv6 zones are ignored, so a client is located the same way
// whether it arrived over an IPv4 or a dual-stack socket.
//
// All types are safe for concurrent use. A [GeoIP] can be reloaded in place
// while lookups are running; a [CoverageZone] is immutable once parsed (to
// change it, parse a new one and build a new chain).
package locate

import (
	"math"
	"net/netip"
)

// Values of [Location.Source].
const (
	SourceCoverageZone = "coverage-zone"
	SourceGeoIP        = "geoip"
	SourceDefault      = "default"
)

// Location is where a client is, as far as routing cares.
type Location struct {
	// Latitude and Longitude in degrees (WGS 84). Locations returned by the
	// coverage zone and GeoIP sources are always in range (latitude within
	// [-90, 90], longitude within [-180, 180]); the default location is
	// returned as configured.
	Latitude, Longitude float64
	// Region is from the coverage zone, or the GeoIP country/continent
	// mapping (see [GeoIP.SetRegionMap]); it may be "".
	Region string
	// Country is the ISO 3166-1 alpha-2 code from GeoIP; it may be "".
	Country string
	// Source is SourceCoverageZone, SourceGeoIP or SourceDefault.
	Source string
	// PrefixLen is the length of the network the answer covers, for the
	// EDNS Client Subnet scope: every address in ip/PrefixLen gets the same
	// answer from the same source. It is the coverage-zone CIDR length, or
	// the GeoIP record's network prefix length (for IPv4 clients an IPv4
	// length, 0-32); either is lengthened when needed so the network does
	// not contain a more specific coverage-zone network that would answer
	// differently. It is 0 for the default.
	PrefixLen int
}

// Locator places client addresses.
//
// Locate never fails: an address that no source knows, including the zero
// netip.Addr, gets the default location. IPv4-mapped IPv6 addresses are
// treated as the IPv4 address they map, and IPv6 zones are ignored.
// Implementations are safe for concurrent use.
type Locator interface {
	Locate(ip netip.Addr) Location
}

// validCoordinates reports whether lat and lon are finite and in range.
func validCoordinates(lat, lon float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lon) &&
		lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

// normalize unmaps IPv4-mapped IPv6 addresses and drops IPv6 zones.
func normalize(ip netip.Addr) netip.Addr {
	return ip.Unmap().WithZone("")
}
