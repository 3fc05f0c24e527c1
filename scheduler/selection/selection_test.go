package selection_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler/selection"
)

// north returns the latitude of the point km due north of (0, 0), so tests
// can place nodes at exact distances from a client at (0, 0).
func north(km float64) float64 { return km / selection.EarthRadiusKm * 180 / math.Pi }

// at is a healthy, idle node km north of (0, 0).
func at(name string, km float64) selection.Node {
	return selection.Node{Name: name, Region: "eu", Latitude: north(km), Capacity: 1, Healthy: true}
}

func names(cs []selection.Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Node.Name
	}
	return out
}

// pinned is a Hash that gives each node name a fixed uniform value u in
// (0,1) whatever the domain, so the rendezvous order is known: with equal
// weights, higher u ranks first.
func pinned(u map[string]float64) func([]byte) uint64 {
	return func(key []byte) uint64 {
		_, name, ok := bytes.Cut(key, []byte{0})
		if !ok {
			panic(fmt.Sprintf("key %q has no separator", key))
		}
		return uint64(u[string(name)] * (1 << 63) * 2)
	}
}

// first returns the name of the first candidate, "" if none.
func first(s *selection.Selector, domain string, nodes []selection.Node) string {
	got := s.Select(selection.Request{Domain: domain, Max: 1}, nodes)
	if len(got) == 0 {
		return ""
	}
	return got[0].Node.Name
}

func domains(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("d%d.example.com", i)
	}
	return out
}

func TestDistance(t *testing.T) {
	type city struct{ lat, lon float64 }
	var (
		london     = city{51.5074, -0.1278}
		paris      = city{48.8566, 2.3522}
		newYork    = city{40.7128, -74.0060}
		losAngeles = city{34.0522, -118.2437}
		beijing    = city{39.9042, 116.4074}
		shanghai   = city{31.2304, 121.4737}
		tokyo      = city{35.6762, 139.6503}
		sydney     = city{-33.8688, 151.2093}
		singapore  = city{1.3521, 103.8198}
		frankfurt  = city{50.1109, 8.6821}
		saoPaulo   = city{-23.5505, -46.6333}
		hongKong   = city{22.3193, 114.1694}
		guangzhou  = city{23.1291, 113.2644}
	)
	// Geodesic distances on the WGS84 ellipsoid (Vincenty), km.
	tests := []struct {
		name string
		a, b city
		km   float64
	}{
		{"London-Paris", london, paris, 343.9},
		{"NewYork-LosAngeles", newYork, losAngeles, 3944.4},
		{"Beijing-Shanghai", beijing, shanghai, 1065.8},
		{"Tokyo-Sydney", tokyo, sydney, 7792.2},
		{"Singapore-Frankfurt", singapore, frankfurt, 10261.3},
		{"SaoPaulo-Tokyo", saoPaulo, tokyo, 18533.5},
		{"HongKong-Guangzhou", hongKong, guangzhou, 129.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := selection.Distance(tt.a.lat, tt.a.lon, tt.b.lat, tt.b.lon)
			if math.Abs(got-tt.km) > tt.km*0.01 {
				t.Errorf("Distance = %.1f km, want %.1f ±1%%", got, tt.km)
			}
			if back := selection.Distance(tt.b.lat, tt.b.lon, tt.a.lat, tt.a.lon); math.Abs(back-got) > 1e-6 {
				t.Errorf("not symmetric: %v and %v", got, back)
			}
		})
	}
	if d := selection.Distance(10, 20, 10, 20); d != 0 {
		t.Errorf("same point: %v, want 0", d)
	}
	if d, want := selection.Distance(0, 0, 0, 180), math.Pi*selection.EarthRadiusKm; math.Abs(d-want) > 1e-6 {
		t.Errorf("antipodes: %v, want %v", d, want)
	}
	if d, want := selection.Distance(0, 170, 0, -170), selection.Distance(0, 0, 0, 20); math.Abs(d-want) > 1e-6 {
		t.Errorf("across the antimeridian: %v, want %v", d, want)
	}
	if d := selection.Distance(math.NaN(), 0, 0, 0); !math.IsNaN(d) {
		t.Errorf("NaN input: %v, want NaN", d)
	}
	if d := selection.Distance(0, math.Inf(1), 0, 0); !math.IsNaN(d) {
		t.Errorf("Inf input: %v, want NaN", d)
	}
}

func TestScope(t *testing.T) {
	s := selection.New(selection.Config{RegionScope: map[string]outpostv1.Scope{
		"cn-north": outpostv1.Scope_SCOPE_MAINLAND,
		"cn-south": outpostv1.Scope_SCOPE_MAINLAND,
		"hk":       outpostv1.Scope_SCOPE_GLOBAL,
		"eu":       outpostv1.Scope_SCOPE_OVERSEAS,
		"odd":      outpostv1.Scope(42), // unknown: overseas
		"blank":    outpostv1.Scope_SCOPE_UNSPECIFIED,
	}})
	var nodes []selection.Node
	for i, region := range []string{"cn-north", "cn-south", "hk", "eu", "odd", "blank", "us"} {
		n := at(region, float64(i))
		n.Region = region
		nodes = append(nodes, n)
	}
	tests := []struct {
		scope outpostv1.Scope
		want  []string
	}{
		{outpostv1.Scope_SCOPE_MAINLAND, []string{"cn-north", "cn-south", "hk"}},
		{outpostv1.Scope_SCOPE_OVERSEAS, []string{"blank", "eu", "hk", "odd", "us"}},
		{outpostv1.Scope_SCOPE_GLOBAL, []string{"blank", "cn-north", "cn-south", "eu", "hk", "odd", "us"}},
		{outpostv1.Scope_SCOPE_UNSPECIFIED, []string{"blank", "cn-north", "cn-south", "eu", "hk", "odd", "us"}},
		{outpostv1.Scope(42), []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.scope.String(), func(t *testing.T) {
			got := names(s.Select(selection.Request{Domain: "a.example.com", Scope: tt.scope, Max: 100}, nodes))
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRegionScopeCopied(t *testing.T) {
	regions := map[string]outpostv1.Scope{"cn": outpostv1.Scope_SCOPE_MAINLAND}
	s := selection.New(selection.Config{RegionScope: regions})
	regions["cn"] = outpostv1.Scope_SCOPE_OVERSEAS
	n := at("cn-1", 0)
	n.Region = "cn"
	if got := s.Select(selection.Request{Scope: outpostv1.Scope_SCOPE_MAINLAND}, []selection.Node{n}); len(got) != 1 {
		t.Fatalf("changing the map after New changed the selector: %v", names(got))
	}
}

func TestSkipsIneligible(t *testing.T) {
	mk := func(name string, f func(*selection.Node)) selection.Node {
		n := at(name, 10)
		f(&n)
		return n
	}
	nodes := []selection.Node{
		mk("ok", func(n *selection.Node) {}),
		mk("busy-but-ok", func(n *selection.Node) { n.Load = 0.89 }),
		mk("draining", func(n *selection.Node) { n.Draining = true }),
		mk("unhealthy", func(n *selection.Node) { n.Healthy = false }),
		mk("overloaded", func(n *selection.Node) { n.Load = 0.95 }),
		mk("at-threshold", func(n *selection.Node) { n.Load = 0.9 }),
		mk("unknown-load", func(n *selection.Node) { n.Load = math.NaN() }),
		mk("nowhere", func(n *selection.Node) { n.Latitude = math.NaN() }),
		mk("infinite", func(n *selection.Node) { n.Longitude = math.Inf(-1) }),
	}
	got := names(selection.New(selection.Config{}).Select(selection.Request{Domain: "a.example.com", Max: 100}, nodes))
	slices.Sort(got)
	if want := []string{"busy-but-ok", "ok"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	// A lower threshold.
	got = names(selection.New(selection.Config{Overloaded: 0.5}).Select(selection.Request{Max: 100}, nodes))
	if want := []string{"ok"}; !slices.Equal(got, want) {
		t.Errorf("Overloaded 0.5: got %v, want %v", got, want)
	}
}

func TestAllOverloadedFallback(t *testing.T) {
	nodes := []selection.Node{
		at("near-97", 10), at("far-92", 3000), at("mid-95", 500), at("mid-2-95", 400),
		at("draining", 5), at("unhealthy", 5), at("mainland", 5),
	}
	nodes[0].Load, nodes[1].Load, nodes[2].Load, nodes[3].Load = 0.97, 0.92, 0.95, 0.95
	nodes[4].Draining = true
	nodes[5].Healthy = false
	nodes[6].Region = "cn"
	s := selection.New(selection.Config{RegionScope: map[string]outpostv1.Scope{"cn": outpostv1.Scope_SCOPE_MAINLAND}})
	req := selection.Request{Domain: "a.example.com", Scope: outpostv1.Scope_SCOPE_OVERSEAS, Max: 10}

	got := s.Select(req, nodes)
	// Least loaded first; equal loads nearest first.
	if want := []string{"far-92", "mid-2-95", "mid-95", "near-97"}; !slices.Equal(names(got), want) {
		t.Fatalf("got %v, want %v", names(got), want)
	}
	if math.Abs(got[0].DistanceKm-3000) > 1e-6 {
		t.Errorf("fallback DistanceKm = %v, want 3000", got[0].DistanceKm)
	}
	if got := s.Select(selection.Request{Domain: "a.example.com", Scope: outpostv1.Scope_SCOPE_OVERSEAS, Max: 2}, nodes); len(got) != 2 {
		t.Errorf("Max 2 in fallback: %v", names(got))
	}

	// One node with room, however far, and the overloaded ones are not used.
	nodes = append(nodes, at("far-ok", 9000))
	if got := names(s.Select(req, nodes)); !slices.Equal(got, []string{"far-ok"}) {
		t.Errorf("with one node under the threshold: got %v, want [far-ok]", got)
	}

	// No eligible node at all.
	if got := s.Select(req, []selection.Node{nodes[4], nodes[5], nodes[6]}); got != nil {
		t.Errorf("no eligible node: got %v, want nil", names(got))
	}
}

func TestBand(t *testing.T) {
	// "out" has the best hash, then "in", then "near": the order shows which
	// nodes are in the band.
	hash := pinned(map[string]float64{"out": 0.9, "in": 0.5, "near": 0.1})
	tests := []struct {
		name          string
		cfg           selection.Config
		near, in, out float64 // km from the client
		want          []string
	}{
		{"ratio", selection.Config{}, 1000, 1190, 1210, []string{"in", "near", "out"}},
		{"km", selection.Config{}, 10, 105, 115, []string{"in", "near", "out"}},
		{"zero distance", selection.Config{}, 0, 99, 101, []string{"in", "near", "out"}},
		{"wider km", selection.Config{BandKm: 300}, 10, 105, 115, []string{"out", "in", "near"}},
		{"wider ratio", selection.Config{BandRatio: 2}, 1000, 1190, 1210, []string{"out", "in", "near"}},
		{"narrower", selection.Config{BandKm: 1, BandRatio: 1}, 10, 10.5, 12, []string{"in", "near", "out"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Hash = hash
			nodes := []selection.Node{at("near", tt.near), at("in", tt.in), at("out", tt.out)}
			got := selection.New(tt.cfg).Select(selection.Request{Domain: "a.example.com"}, nodes)
			if !slices.Equal(names(got), tt.want) {
				t.Errorf("got %v, want %v", names(got), tt.want)
			}
		})
	}
}

func TestHashKey(t *testing.T) {
	var keys []string
	s := selection.New(selection.Config{Hash: func(b []byte) uint64 {
		keys = append(keys, string(b))
		return 1
	}})
	s.Select(selection.Request{Domain: "WWW.Example.com."}, []selection.Node{at("edge-1", 0)})
	s.Select(selection.Request{Domain: "www.example.com"}, []selection.Node{at("edge-1", 0)})
	want := []string{"www.example.com\x00edge-1", "www.example.com\x00edge-1"}
	if !slices.Equal(keys, want) {
		t.Errorf("hash keys %q, want %q", keys, want)
	}
}

// band is four nodes within 100 km of (0, 0) and four far ones.
func band() []selection.Node {
	nodes := []selection.Node{at("b0", 0), at("b1", 20), at("b2", 50), at("b3", 90)}
	for i, km := range []float64{2000, 3000, 5000, 8000} {
		nodes = append(nodes, at(fmt.Sprintf("far%d", i), km))
	}
	return nodes
}

func TestStickiness(t *testing.T) {
	s := selection.New(selection.Config{})
	nodes := band()
	reversed := slices.Clone(nodes)
	slices.Reverse(reversed)
	for _, d := range domains(1000) {
		req := selection.Request{Domain: d, Max: 4}
		want := names(s.Select(req, nodes))
		if got := names(s.Select(req, nodes)); !slices.Equal(got, want) {
			t.Fatalf("%s: second call %v, first %v", d, got, want)
		}
		if got := names(s.Select(req, reversed)); !slices.Equal(got, want) {
			t.Fatalf("%s: reversed input %v, want %v", d, got, want)
		}
		// An unrelated far node disappearing changes nothing in the band.
		for i := 4; i < len(nodes); i++ {
			without := slices.Delete(slices.Clone(nodes), i, i+1)
			if got := names(s.Select(req, without)); !slices.Equal(got, want) {
				t.Fatalf("%s: without %s: %v, want %v", d, nodes[i].Name, got, want)
			}
		}
		// Another band node disappearing keeps the first node.
		for i := range 4 {
			if nodes[i].Name == want[0] {
				continue
			}
			without := slices.Delete(slices.Clone(nodes), i, i+1)
			if got := first(s, d, without); got != want[0] {
				t.Fatalf("%s: without %s: first %s, want %s", d, nodes[i].Name, got, want[0])
			}
		}
	}
}

// shares returns the fraction of 10,000 domains whose first node is each
// node.
func shares(t *testing.T, s *selection.Selector, nodes []selection.Node) map[string]float64 {
	t.Helper()
	const n = 10000
	count := map[string]int{}
	for _, d := range domains(n) {
		count[first(s, d, nodes)]++
	}
	out := map[string]float64{}
	for name, c := range count {
		out[name] = float64(c) / n
	}
	return out
}

func TestSpread(t *testing.T) {
	s := selection.New(selection.Config{})
	tests := []struct {
		name  string
		a, b  func(*selection.Node)
		wantA float64
	}{
		{"equal", func(*selection.Node) {}, func(*selection.Node) {}, 0.5},
		{"capacity 3 to 1", func(n *selection.Node) { n.Capacity = 3 }, func(*selection.Node) {}, 0.75},
		{"capacity 0 means 1", func(n *selection.Node) { n.Capacity = 0 }, func(*selection.Node) {}, 0.5},
		{"half loaded", func(n *selection.Node) { n.Load = 0.5 }, func(*selection.Node) {}, 1.0 / 3},
		{"double capacity half loaded", func(n *selection.Node) { n.Capacity, n.Load = 2, 0.5 }, func(*selection.Node) {}, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := []selection.Node{at("a", 10), at("b", 50), at("far", 1000)}
			tt.a(&nodes[0])
			tt.b(&nodes[1])
			got := shares(t, s, nodes)
			t.Logf("shares %v", got)
			if math.Abs(got["a"]-tt.wantA) > 0.05 || math.Abs(got["b"]-(1-tt.wantA)) > 0.05 {
				t.Errorf("shares %v, want a %.2f ±0.05", got, tt.wantA)
			}
		})
	}
}

func TestMinimalDisruption(t *testing.T) {
	s := selection.New(selection.Config{})
	const n = 5
	var nodes []selection.Node
	for i := range n {
		nodes = append(nodes, at(fmt.Sprintf("edge-%d", i), float64(10*i)))
	}
	ds := domains(10000)
	before := make([]string, len(ds))
	for i, d := range ds {
		before[i] = first(s, d, nodes)
	}

	// edge-2 leaves: only its domains move.
	without := slices.Delete(slices.Clone(nodes), 2, 3)
	moved := 0
	for i, d := range ds {
		if got := first(s, d, without); got != before[i] {
			moved++
			if before[i] != "edge-2" {
				t.Fatalf("%s moved from %s to %s when edge-2 left", d, before[i], got)
			}
		}
	}
	if frac := float64(moved) / float64(len(ds)); math.Abs(frac-1.0/n) > 0.03 {
		t.Errorf("%.3f of domains moved, want about %.3f", frac, 1.0/n)
	}

	// A new node joins: domains move only to it, about 1/(n+1) of them.
	joined := append(slices.Clone(nodes), at("edge-new", 25))
	moved = 0
	for i, d := range ds {
		if got := first(s, d, joined); got != before[i] {
			moved++
			if got != "edge-new" {
				t.Fatalf("%s moved from %s to %s when edge-new joined", d, before[i], got)
			}
		}
	}
	if frac := float64(moved) / float64(len(ds)); math.Abs(frac-1.0/(n+1)) > 0.03 {
		t.Errorf("%.3f of domains moved to the new node, want about %.3f", frac, 1.0/(n+1))
	}
}

func TestRankingBeyondBand(t *testing.T) {
	nodes := []selection.Node{at("km500", 500), at("km2000", 2000), at("km10", 10), at("km300", 300), at("km1000", 1000), at("km300b", 300)}
	got := selection.New(selection.Config{}).Select(selection.Request{Domain: "a.example.com", Max: 10}, nodes)
	if want := []string{"km10", "km300", "km300b", "km500", "km1000", "km2000"}; !slices.Equal(names(got), want) {
		t.Fatalf("got %v, want %v", names(got), want)
	}
	for _, c := range got {
		var km float64
		fmt.Sscanf(c.Node.Name, "km%g", &km)
		if math.Abs(c.DistanceKm-km) > 1e-6 {
			t.Errorf("%s: DistanceKm %v", c.Node.Name, c.DistanceKm)
		}
	}
}

func TestMax(t *testing.T) {
	var nodes []selection.Node
	for i := range 6 {
		nodes = append(nodes, at(fmt.Sprintf("n%d", i), float64(300*i)))
	}
	s := selection.New(selection.Config{})
	for _, tt := range []struct{ max, want int }{{0, 3}, {-1, 3}, {1, 1}, {4, 4}, {6, 6}, {100, 6}} {
		got := s.Select(selection.Request{Domain: "a.example.com", Max: tt.max}, nodes)
		if len(got) != tt.want {
			t.Errorf("Max %d: %d candidates, want %d", tt.max, len(got), tt.want)
		}
		// A shorter list is a prefix of a longer one.
		all := s.Select(selection.Request{Domain: "a.example.com", Max: 100}, nodes)
		if !slices.Equal(names(got), names(all[:len(got)])) {
			t.Errorf("Max %d: %v is not a prefix of %v", tt.max, names(got), names(all))
		}
	}
}

func TestUnknownClientLocation(t *testing.T) {
	nodes := []selection.Node{at("a", 0), at("b", 5000), at("c", 10000), at("drain", 0)}
	nodes[3].Draining = true
	s := selection.New(selection.Config{Hash: pinned(map[string]float64{"a": 0.1, "b": 0.9, "c": 0.5, "drain": 0.99})})
	got := s.Select(selection.Request{Domain: "a.example.com", ClientLat: math.NaN(), Max: 10}, nodes)
	// One band, rendezvous order.
	if want := []string{"b", "c", "a"}; !slices.Equal(names(got), want) {
		t.Fatalf("got %v, want %v", names(got), want)
	}
	for _, c := range got {
		if !math.IsNaN(c.DistanceKm) {
			t.Errorf("%s: DistanceKm %v, want NaN", c.Node.Name, c.DistanceKm)
		}
	}
}

func TestPicker(t *testing.T) {
	var p selection.Picker = selection.New(selection.Config{})
	if got := p.Select(selection.Request{Domain: "a.example.com"}, []selection.Node{at("a", 0)}); len(got) != 1 {
		t.Fatalf("got %v", names(got))
	}
}

func BenchmarkSelect(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	nodes := make([]selection.Node, 100)
	for i := range nodes {
		nodes[i] = selection.Node{
			Name:        fmt.Sprintf("edge-%03d", i),
			Region:      []string{"cn-north", "cn-east", "hk", "eu", "us"}[i%5],
			Latitude:    r.Float64()*140 - 70,
			Longitude:   r.Float64()*360 - 180,
			Capacity:    float64(1 + r.IntN(4)),
			Load:        r.Float64(),
			Healthy:     i%17 != 0,
			Draining:    i%23 == 0,
			HTTPAddress: fmt.Sprintf("10.0.%d.%d:80", i/256, i%256),
		}
	}
	s := selection.New(selection.Config{RegionScope: map[string]outpostv1.Scope{
		"cn-north": outpostv1.Scope_SCOPE_MAINLAND,
		"cn-east":  outpostv1.Scope_SCOPE_MAINLAND,
		"hk":       outpostv1.Scope_SCOPE_GLOBAL,
	}})
	ds := domains(64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req := selection.Request{
			Domain:    ds[i%len(ds)],
			Scope:     outpostv1.Scope_SCOPE_GLOBAL,
			ClientLat: 39.9042, ClientLon: 116.4074,
		}
		if got := s.Select(req, nodes); len(got) == 0 {
			b.Fatal("no candidates")
		}
		i++
	}
}
