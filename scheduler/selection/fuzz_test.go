package selection

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"testing"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestDefaultHashIsFNV1aWithFinaliser(t *testing.T) {
	for _, key := range []string{"", "a", "www.example.com\x00edge-1", "www.example.com\x00edge-2"} {
		h := fnv.New64a()
		h.Write([]byte(key))
		if got, want := defaultHash([]byte(key)), fmix64(h.Sum64()); got != want {
			t.Errorf("defaultHash(%q) = %#x, want %#x", key, got, want)
		}
	}
}

var fuzzRegions = []string{"cn", "hk", "eu", "us", "odd"}

// fuzzInScope is the documented scope rule for fuzzRegionScope, written out
// independently of Selector.inScope.
func fuzzInScope(region string, sc outpostv1.Scope) bool {
	switch sc {
	case outpostv1.Scope_SCOPE_UNSPECIFIED, outpostv1.Scope_SCOPE_GLOBAL:
		return true
	case outpostv1.Scope_SCOPE_MAINLAND:
		return region == "cn" || region == "hk"
	case outpostv1.Scope_SCOPE_OVERSEAS:
		return region != "cn"
	}
	return false
}

var fuzzRegionScope = map[string]outpostv1.Scope{
	"cn":  outpostv1.Scope_SCOPE_MAINLAND,
	"hk":  outpostv1.Scope_SCOPE_GLOBAL,
	"eu":  outpostv1.Scope_SCOPE_OVERSEAS,
	"odd": outpostv1.Scope(99),
}

// fuzzNodes decodes up to 64 nodes, 8 bytes each.
func fuzzNodes(data []byte) []Node {
	var nodes []Node
	for i := 0; len(data) >= 8 && i < 64; i, data = i+1, data[8:] {
		flags := data[1]
		n := Node{
			Name:      fmt.Sprintf("n%d", i),
			Region:    fuzzRegions[int(data[0])%len(fuzzRegions)],
			Latitude:  float64(int16(binary.LittleEndian.Uint16(data[2:]))) / 32768 * 100, // a little beyond ±90
			Longitude: float64(int16(binary.LittleEndian.Uint16(data[4:]))) / 32768 * 200,
			Load:      float64(data[6]) / 200,
			Capacity:  float64(int(data[7])-16) / 8,
			Draining:  flags&1 != 0,
			Healthy:   flags&2 == 0,
		}
		if flags&4 != 0 {
			n.Latitude = math.NaN()
		}
		if flags&8 != 0 {
			n.Load = math.NaN()
		}
		if flags&16 != 0 {
			n.Capacity = math.Inf(1)
		}
		if flags&32 != 0 { // cluster near (0, 0) to fill the band
			n.Latitude /= 50
			n.Longitude /= 50
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// FuzzSelect checks that Select never panics and keeps its contract: no
// excluded node returned, no overloaded node unless all are, at most Max,
// the band first and then non-decreasing distances, independent of the
// order of nodes.
func FuzzSelect(f *testing.F) {
	f.Add("img.example.com", int32(3), 0.0, 0.0, 3, 0.0, 0.0, 0.0,
		[]byte("\x00\x20\x10\x00\x10\x00\x20\x18\x01\x20\x20\x00\x00\x10\x40\x20\x02\x20\x00\x10\x00\x20\x60\x08\x03\x00\x00\x40\x00\x40\xf0\x10"))
	f.Add("WWW.example.COM.", int32(1), 39.9, 116.4, 0, 0.5, 10.0, 1.0,
		[]byte("\x00\x00\x00\x38\x00\x52\x10\x10\x01\x00\x10\x38\x00\x52\xff\x10\x02\x01\x00\x10\x00\x10\x10\x10"))
	f.Add("", int32(2), math.NaN(), 0.0, -1, math.NaN(), math.Inf(1), -3.0,
		[]byte("\x03\x08\x00\x00\x00\x00\xf0\x00\x04\x10\x00\x00\x00\x00\x00\xff"))
	f.Add("a", int32(42), 95.0, 400.0, 100, 2.0, 0.0, 0.0, []byte("\x02\x00\x00\x00\x00\x00\xc8\x10"))

	f.Fuzz(func(t *testing.T, domain string, scope int32, lat, lon float64, maxN int,
		overloaded, bandKm, bandRatio float64, data []byte) {
		nodes := fuzzNodes(data)
		s := New(Config{RegionScope: fuzzRegionScope, Overloaded: overloaded, BandKm: bandKm, BandRatio: bandRatio})
		req := Request{Domain: domain, Scope: outpostv1.Scope(scope), ClientLat: lat, ClientLon: lon, Max: maxN}
		orig := slices.Clone(nodes)
		got := s.Select(req, nodes)

		for i := range nodes {
			if nodes[i].Name != orig[i].Name || math.Float64bits(nodes[i].Load) != math.Float64bits(orig[i].Load) {
				t.Fatalf("Select modified node %d", i)
			}
		}
		want := maxN
		if want <= 0 {
			want = DefaultMax
		}
		if len(got) > want {
			t.Fatalf("%d candidates, Max %d", len(got), want)
		}

		// The eligible nodes, by the documented rules.
		known := finite(lat) && finite(lon)
		eligible, fits := 0, 0
		nearest := math.Inf(1)
		for _, n := range nodes {
			if !n.Healthy || n.Draining || !finite(n.Latitude) || !finite(n.Longitude) || !fuzzInScope(n.Region, req.Scope) {
				continue
			}
			eligible++
			if normLoad(n.Load) < s.overloaded {
				fits++
				if known {
					nearest = min(nearest, Distance(lat, lon, n.Latitude, n.Longitude))
				}
			}
		}
		if fits > 0 && len(got) != min(want, fits) || fits == 0 && len(got) != min(want, eligible) {
			t.Fatalf("%d candidates; want %d of %d eligible, %d not overloaded", len(got), want, eligible, fits)
		}

		seen := map[string]bool{}
		for _, c := range got {
			n := c.Node
			if seen[n.Name] {
				t.Fatalf("%s returned twice", n.Name)
			}
			seen[n.Name] = true
			if !n.Healthy || n.Draining || !finite(n.Latitude) || !finite(n.Longitude) {
				t.Fatalf("excluded node returned: %+v", n)
			}
			if !fuzzInScope(n.Region, req.Scope) {
				t.Fatalf("%s of region %s returned for scope %v", n.Name, n.Region, req.Scope)
			}
			if fits > 0 && normLoad(n.Load) >= s.overloaded {
				t.Fatalf("overloaded %s (load %v) returned while %d nodes fit", n.Name, n.Load, fits)
			}
			if !known && !math.IsNaN(c.DistanceKm) {
				t.Fatalf("client location unknown but DistanceKm %v", c.DistanceKm)
			}
			if known {
				if d := Distance(lat, lon, n.Latitude, n.Longitude); math.Abs(d-c.DistanceKm) > 1e-9*max(1, d) {
					t.Fatalf("%s: DistanceKm %v, want %v", n.Name, c.DistanceKm, d)
				}
			}
		}

		if fits == 0 {
			for i := 1; i < len(got); i++ {
				if normLoad(got[i-1].Node.Load) > normLoad(got[i].Node.Load) {
					t.Fatalf("fallback not least loaded first: %v then %v", got[i-1].Node.Load, got[i].Node.Load)
				}
			}
		} else if known {
			// The band first, then the rest by distance.
			limit := max(nearest+s.bandKm, nearest*s.bandRatio)
			k := 0
			for k < len(got) && got[k].DistanceKm <= limit {
				k++
			}
			inBand := 0
			for _, n := range nodes {
				if n.Healthy && !n.Draining && finite(n.Latitude) && finite(n.Longitude) && fuzzInScope(n.Region, req.Scope) &&
					normLoad(n.Load) < s.overloaded && Distance(lat, lon, n.Latitude, n.Longitude) <= limit {
					inBand++
				}
			}
			if k != min(want, inBand) {
				t.Fatalf("%d band nodes lead the %d candidates, want %d of %d", k, len(got), min(want, inBand), inBand)
			}
			for i := k; i < len(got); i++ {
				if got[i].DistanceKm <= limit {
					t.Fatalf("band node %s (%.3f km, limit %.3f) after a node outside the band", got[i].Node.Name, got[i].DistanceKm, limit)
				}
				if i > k && got[i].DistanceKm < got[i-1].DistanceKm {
					t.Fatalf("distances beyond the band decrease: %v then %v", got[i-1].DistanceKm, got[i].DistanceKm)
				}
			}
		}

		// The same answer for the nodes in another order.
		reversed := slices.Clone(nodes)
		slices.Reverse(reversed)
		again := s.Select(req, reversed)
		if len(again) != len(got) {
			t.Fatalf("reversed input: %d candidates, want %d", len(again), len(got))
		}
		for i := range got {
			if again[i].Node.Name != got[i].Node.Name {
				t.Fatalf("reversed input ranks %s at %d, want %s", again[i].Node.Name, i, got[i].Node.Name)
			}
		}
	})
}
