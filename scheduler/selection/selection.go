// Package selection ranks Outpost edge nodes for one client and one
// accelerated domain. It is the scheduler's node-selection step, with no I/O:
// the caller supplies the membership (which nodes exist, where, and how busy)
// and the client's location, and gets back ranked candidates.
//
// The ranking, for a request with domain D, scope S and client location C:
//
//  1. Eligibility. A node is eligible when it is Healthy, not Draining, has
//     finite coordinates, and its region is within S (see [Config.RegionScope]).
//     Ineligible nodes are never returned.
//  2. Overload. Eligible nodes with Load at or above [Config.Overloaded] are
//     left out, unless every eligible node is overloaded: then the overloaded
//     ones are returned least loaded first, because an overloaded edge serves
//     a client better than no answer at all.
//  3. The band. Among the remaining nodes, those about as near to C as the
//     nearest one (see [Config.BandKm]) form the band, and come first. Within
//     the band the order is weighted rendezvous hashing of (D, node name),
//     weighted by Capacity×(1−Load): each domain sticks to one node while that
//     node stays in the band, and the domains spread over the band's nodes in
//     proportion to their spare capacity, which keeps each domain's cache hot
//     on few nodes.
//  4. The rest follow by great-circle distance, nearest first.
//
// # Why rendezvous hashing
//
// Rendezvous (highest random weight, HRW) hashing scores every (domain, node)
// pair independently and picks the highest score, so there is no ring to
// build, store or rebuild when the membership changes, and the band is a
// different set of nodes for nearly every client anyway. When a node leaves
// the band only the domains it was serving move (about 1/N of them), each to
// its next-highest node, and a node joining takes only the domains it now
// wins; no other domain moves. The weighted form scores a pair
// −w/ln(u), with u the pair's hash mapped into (0,1) and w the node's weight:
// a node wins a share of domains exactly proportional to its weight, and a
// weight change moves only a proportional share of domains.
//
// Because Load is part of the weight, every change in a node's reported load
// moves a share of domains proportional to the change. Callers should report
// smoothed load (and may round it) to keep domains from flapping between
// nodes.
package selection

import (
	"cmp"
	"math"
	"slices"
	"strings"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Defaults for the zero values of [Config] and [Request].
const (
	DefaultMax        = 3
	DefaultOverloaded = 0.9
	DefaultBandKm     = 100.0
	DefaultBandRatio  = 1.2
)

// EarthRadiusKm is the mean Earth radius (IUGG) used by [Distance].
const EarthRadiusKm = 6371.0088

// minHeadroom is the smallest spare-capacity factor (1−Load) a node is
// weighted with, so a node at full load that still takes traffic (when
// Overloaded is above 1, or in the band of a fallback) keeps a non-zero weight.
const minHeadroom = 0.01

// Node is one edge node as the membership sees it.
type Node struct {
	// Name identifies the node; it is also the node's half of the rendezvous
	// hash key, so renaming a node moves its domains. Names are assumed
	// unique; nodes with the same name are ranked as separate nodes.
	Name string
	// Region is the node's region, such as "east". Its scope comes from
	// Config.RegionScope.
	Region string
	// Latitude and Longitude are in degrees. A node whose coordinates are NaN
	// or infinite is never selected.
	Latitude, Longitude float64
	// Capacity is the node's relative weight; 0, negative, NaN and infinite
	// values mean 1.
	Capacity float64
	// Load is the node's current utilisation, 0 to 1. A node whose Load is at
	// or above Config.Overloaded is overloaded. Negative values mean 0, NaN
	// means 1 (fully loaded).
	Load float64
	// Draining nodes are never selected.
	Draining bool
	// Healthy says the node is alive in the membership. Unhealthy nodes are
	// never selected.
	Healthy bool
	// HTTPAddress and HTTPSAddress are host:port, passed through untouched.
	HTTPAddress, HTTPSAddress string
}

// Request is one client asking for the nodes that should serve a domain.
type Request struct {
	// Domain is the accelerated domain, the rendezvous hash key. ASCII
	// letters are lower-cased and a trailing dot is dropped first, so
	// "WWW.example.com." and "www.example.com" get the same nodes.
	Domain string
	// Scope is the domain's scope: only nodes of regions within it are
	// returned. SCOPE_UNSPECIFIED means SCOPE_GLOBAL (as the controller
	// defaults it); an unknown value matches no node.
	Scope outpostv1.Scope
	// ClientLat and ClientLon are the client's location in degrees. If either
	// is NaN or infinite the location is unknown: every eligible node is then
	// in the band, and Candidate.DistanceKm is NaN.
	ClientLat, ClientLon float64
	// Max is the number of candidates wanted; 0 or negative means DefaultMax.
	Max int
}

// Candidate is one ranked node.
type Candidate struct {
	// Node is a copy of the selected node.
	Node Node
	// DistanceKm is the great-circle distance from the client, NaN if the
	// client's location is unknown.
	DistanceKm float64
}

// Config tunes a [Selector]. The zero value is usable.
type Config struct {
	// RegionScope gives each region's scope: SCOPE_MAINLAND or
	// SCOPE_OVERSEAS, or SCOPE_GLOBAL for a region whose nodes may serve both
	// mainland and overseas domains. Regions not listed, or listed with any
	// other value, are overseas. Region names are matched exactly. New copies
	// the map.
	//
	// A SCOPE_MAINLAND request gets nodes of mainland (and global) regions, a
	// SCOPE_OVERSEAS request nodes of every other region, and a SCOPE_GLOBAL
	// request every node.
	RegionScope map[string]outpostv1.Scope
	// Overloaded is the Load at or above which a node is overloaded.
	// 0, negative and NaN mean DefaultOverloaded.
	Overloaded float64
	// BandKm and BandRatio say which nodes are about as near as the nearest:
	// with d0 the distance of the nearest non-overloaded eligible node, a
	// node at distance d is in the band when
	//
	//	d <= max(d0+BandKm, d0*BandRatio)
	//
	// That is, within BandKm of the nearest, or at most BandRatio times as
	// far, whichever is more generous. BandKm 0, negative, NaN or infinite
	// means DefaultBandKm; BandRatio below 1 (including 0), NaN or infinite
	// means DefaultBandRatio.
	BandKm, BandRatio float64
	// Hash hashes a rendezvous key: the request's normalised Domain, a 0
	// byte, and the node's Name. It must be deterministic, safe for
	// concurrent use, must not retain the slice, and must be well mixed in
	// its high bits (the top 53 bits become the pair's uniform value).
	// nil means FNV-1a 64 followed by the MurmurHash3 64-bit finaliser
	// (FNV-1a alone leaves keys that differ only at the end, like "edge-1"
	// and "edge-2", with nearly equal high bits). Changing the hash moves
	// almost every domain. Tests swap it to force an order.
	Hash func(data []byte) uint64
}

// Picker ranks edge nodes for a request. [*Selector] implements it; the
// scheduler depends on this interface so tests can substitute a fixed order.
type Picker interface {
	Select(req Request, nodes []Node) []Candidate
}

var _ Picker = (*Selector)(nil)

// Selector ranks nodes for requests. It holds only its configuration: it is
// immutable and safe for concurrent use.
type Selector struct {
	regions    map[string]outpostv1.Scope // only MAINLAND and GLOBAL kept
	overloaded float64
	bandKm     float64
	bandRatio  float64
	hash       func([]byte) uint64
}

// New returns a Selector for cfg, with defaults filled in.
func New(cfg Config) *Selector {
	s := &Selector{
		regions:    make(map[string]outpostv1.Scope),
		overloaded: cfg.Overloaded,
		bandKm:     cfg.BandKm,
		bandRatio:  cfg.BandRatio,
		hash:       cfg.Hash,
	}
	for region, sc := range cfg.RegionScope {
		if sc == outpostv1.Scope_SCOPE_MAINLAND || sc == outpostv1.Scope_SCOPE_GLOBAL {
			s.regions[region] = sc
		} // anything else is overseas, like an unlisted region
	}
	if !(s.overloaded > 0) { // also NaN
		s.overloaded = DefaultOverloaded
	}
	if !(s.bandKm > 0) || math.IsInf(s.bandKm, 0) {
		s.bandKm = DefaultBandKm
	}
	if !(s.bandRatio >= 1) || math.IsInf(s.bandRatio, 0) {
		s.bandRatio = DefaultBandRatio
	}
	if s.hash == nil {
		s.hash = defaultHash
	}
	return s
}

// inScope says whether a node of region may serve a domain of scope sc.
func (s *Selector) inScope(region string, sc outpostv1.Scope) bool {
	switch sc {
	case outpostv1.Scope_SCOPE_GLOBAL:
		return true
	case outpostv1.Scope_SCOPE_MAINLAND:
		rs := s.regions[region]
		return rs == outpostv1.Scope_SCOPE_MAINLAND || rs == outpostv1.Scope_SCOPE_GLOBAL
	case outpostv1.Scope_SCOPE_OVERSEAS:
		return s.regions[region] != outpostv1.Scope_SCOPE_MAINLAND
	}
	return false
}

// entry is a node being ranked: an index into the caller's slice, so sorting
// moves small values.
type entry struct {
	i     int
	dist  float64
	load  float64 // normalised
	score float64 // rendezvous score, band only
}

// Select ranks nodes for req, best first, and returns at most req.Max of
// them (DefaultMax if Max is not positive).
//
// It never returns a node that is unhealthy, draining, without finite
// coordinates, or outside req.Scope (SCOPE_GLOBAL: every region). Nor does
// it return an overloaded node (Load >= Config.Overloaded) while any other
// eligible node exists; if every eligible node is overloaded, it falls back
// to those, least loaded first (then nearest, then by name), rather than
// return nothing.
//
// Otherwise the nodes about as near as the nearest (the band; see
// Config.BandKm) come first, in weighted rendezvous-hash order of
// (req.Domain, node name) with weight Capacity×(1−Load): a domain keeps the
// same first node while that node stays in the band and its weight is
// steady, and domains spread over the band in proportion to the weights.
// The remaining nodes follow nearest first. Ties are broken by node name, so
// the result does not depend on the order of nodes.
//
// Select returns nil when no node is eligible. It does not modify nodes.
func (s *Selector) Select(req Request, nodes []Node) []Candidate {
	want := req.Max
	if want <= 0 {
		want = DefaultMax
	}
	scope := req.Scope
	if scope == outpostv1.Scope_SCOPE_UNSPECIFIED {
		scope = outpostv1.Scope_SCOPE_GLOBAL
	}
	known := finite(req.ClientLat) && finite(req.ClientLon)
	var from point
	if known {
		from = newPoint(req.ClientLat, req.ClientLon)
	}

	var (
		ok, over []entry
		nearest  = math.Inf(1)
	)
	for i := range nodes {
		n := &nodes[i]
		if !n.Healthy || n.Draining || !finite(n.Latitude) || !finite(n.Longitude) || !s.inScope(n.Region, scope) {
			continue
		}
		e := entry{i: i, dist: math.NaN(), load: normLoad(n.Load)}
		if known {
			e.dist = from.distance(newPoint(n.Latitude, n.Longitude))
		}
		if e.load >= s.overloaded {
			over = append(over, e)
			continue
		}
		if ok == nil {
			ok = make([]entry, 0, len(nodes)-i)
		}
		ok = append(ok, e)
		if known {
			nearest = min(nearest, e.dist)
		}
	}

	if len(ok) == 0 {
		if len(over) == 0 {
			return nil
		}
		slices.SortStableFunc(over, func(a, b entry) int {
			if c := cmp.Compare(a.load, b.load); c != 0 {
				return c
			}
			if c := cmp.Compare(a.dist, b.dist); c != 0 {
				return c
			}
			return strings.Compare(nodes[a.i].Name, nodes[b.i].Name)
		})
		return candidates(nodes, over, want)
	}

	// Partition into the band (front) and the rest.
	band := ok
	var rest []entry
	if known {
		limit := max(nearest+s.bandKm, nearest*s.bandRatio)
		k := 0
		for j := range ok {
			if ok[j].dist <= limit {
				ok[j], ok[k] = ok[k], ok[j]
				k++
			}
		}
		band, rest = ok[:k], ok[k:]
	}

	key := rendezvousPrefix(req.Domain)
	prefix := len(key)
	for j := range band {
		n := &nodes[band[j].i]
		key = append(key[:prefix], n.Name...)
		band[j].score = rendezvousScore(s.hash(key), weight(n.Capacity, band[j].load))
	}
	slices.SortStableFunc(band, func(a, b entry) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return strings.Compare(nodes[a.i].Name, nodes[b.i].Name)
	})
	if len(band) < want {
		slices.SortStableFunc(rest, func(a, b entry) int {
			if c := cmp.Compare(a.dist, b.dist); c != 0 {
				return c
			}
			return strings.Compare(nodes[a.i].Name, nodes[b.i].Name)
		})
	}
	return candidates(nodes, ok, want) // band and rest share ok's array
}

func candidates(nodes []Node, ranked []entry, want int) []Candidate {
	ranked = ranked[:min(want, len(ranked))]
	out := make([]Candidate, len(ranked))
	for j, e := range ranked {
		out[j] = Candidate{Node: nodes[e.i], DistanceKm: e.dist}
	}
	return out
}

// rendezvousPrefix returns the domain's half of the rendezvous key,
// normalised, with room for a node name.
func rendezvousPrefix(domain string) []byte {
	domain = strings.TrimSuffix(domain, ".")
	key := make([]byte, 0, len(domain)+1+32)
	for i := 0; i < len(domain); i++ {
		c := domain[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		key = append(key, c)
	}
	return append(key, 0)
}

// rendezvousScore is the weighted rendezvous score −w/ln(u), with u the top
// 53 bits of h mapped into the open interval (0,1). For u uniform, the node
// with the highest score is node i with probability w_i/Σw.
func rendezvousScore(h uint64, w float64) float64 {
	u := (float64(h>>11) + 0.5) * 0x1p-53
	return -w / math.Log(u)
}

// weight is a node's rendezvous weight: capacity times spare capacity.
func weight(capacity, load float64) float64 {
	if !(capacity > 0) || math.IsInf(capacity, 0) {
		capacity = 1
	}
	return capacity * max(1-load, minHeadroom)
}

// normLoad maps Load into a comparable value: NaN is full, negative is idle.
func normLoad(load float64) float64 {
	switch {
	case math.IsNaN(load):
		return 1
	case load < 0:
		return 0
	}
	return load
}

// defaultHash is FNV-1a 64 with the MurmurHash3 fmix64 finaliser.
func defaultHash(data []byte) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for _, c := range data {
		h ^= uint64(c)
		h *= prime64
	}
	return fmix64(h)
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// point is a location with its trigonometry precomputed.
type point struct{ lat, lon, cosLat float64 }

func newPoint(latDeg, lonDeg float64) point {
	lat, lon := latDeg*math.Pi/180, lonDeg*math.Pi/180
	return point{lat: lat, lon: lon, cosLat: math.Cos(lat)}
}

// distance is the haversine great-circle distance in km.
func (p point) distance(q point) float64 {
	sinLat := math.Sin((q.lat - p.lat) / 2)
	sinLon := math.Sin((q.lon - p.lon) / 2)
	a := sinLat*sinLat + p.cosLat*q.cosLat*sinLon*sinLon
	// Rounding, or latitudes beyond ±90°, can push a out of [0,1].
	a = min(max(a, 0), 1)
	return 2 * EarthRadiusKm * math.Asin(math.Sqrt(a))
}

// Distance returns the great-circle distance in km between two points given
// in degrees, by the haversine formula on a sphere of radius EarthRadiusKm.
// It is within about 0.5% of the distance on the WGS84 ellipsoid. It is NaN
// if any coordinate is NaN or infinite.
func Distance(lat1, lon1, lat2, lon2 float64) float64 {
	if !finite(lat1) || !finite(lon1) || !finite(lat2) || !finite(lon2) {
		return math.NaN()
	}
	return newPoint(lat1, lon1).distance(newPoint(lat2, lon2))
}
