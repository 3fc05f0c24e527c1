package selection_test

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler/selection"
)

// Run `go test ./scheduler/selection/ -run TestGolden -update` to rewrite
// testdata/*.golden after an intended change, and review the diff. The golden
// files pin the default hash too: a change there moves nearly every domain to
// another node, which must not happen by accident.
var update = flag.Bool("update", false, "update .golden files")

// golden returns the contents of testdata/name.golden, first writing got
// there if -update is set.
func golden(t *testing.T, name, got string) string {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update && got != "" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	return string(want)
}

// fleet is a fixed world-wide set of nodes.
func fleet() []selection.Node {
	n := func(name, region string, lat, lon, capacity, load float64) selection.Node {
		return selection.Node{
			Name: name, Region: region, Latitude: lat, Longitude: lon,
			Capacity: capacity, Load: load, Healthy: true,
			HTTPAddress: name + ".edge.test:80", HTTPSAddress: name + ".edge.test:443",
		}
	}
	nodes := []selection.Node{
		n("bj-1", "cn-north", 39.9042, 116.4074, 2, 0.2),
		n("bj-2", "cn-north", 39.9800, 116.3000, 1, 0.1),
		n("tj-1", "cn-north", 39.3434, 117.3616, 1, 0.3),
		n("sh-1", "cn-east", 31.2304, 121.4737, 2, 0.4),
		n("gz-1", "cn-south", 23.1291, 113.2644, 1, 0.2),
		n("hk-1", "hk", 22.3193, 114.1694, 1, 0.1),
		n("tyo-1", "ap-northeast", 35.6762, 139.6503, 2, 0.3),
		n("sin-1", "ap-southeast", 1.3521, 103.8198, 1, 0.5),
		n("fra-1", "eu-central", 50.1109, 8.6821, 1, 0.2),
		n("fra-2", "eu-central", 50.0379, 8.5622, 1, 0.5),
		n("ams-1", "eu-west", 52.3676, 4.9041, 1, 0.1),
		n("lon-1", "eu-west", 51.5074, -0.1278, 1, 0.3),
		n("iad-1", "us-east", 39.0438, -77.4874, 3, 0.2),
		n("sjc-1", "us-west", 37.3382, -121.8863, 1, 0.1),
		n("lax-1", "us-west", 34.0522, -118.2437, 1, 0.95),
	}
	nodes[10].Draining = true // ams-1
	nodes[13].Healthy = false // sjc-1
	return nodes
}

var fleetRegions = map[string]outpostv1.Scope{
	"cn-north": outpostv1.Scope_SCOPE_MAINLAND,
	"cn-east":  outpostv1.Scope_SCOPE_MAINLAND,
	"cn-south": outpostv1.Scope_SCOPE_MAINLAND,
	"hk":       outpostv1.Scope_SCOPE_GLOBAL,
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name    string
		domains []string
		req     selection.Request
		mutate  func([]selection.Node)
	}{
		{
			name:    "beijing-mainland",
			domains: []string{"img.example.com", "video.example.com", "a.com", "b.org"},
			req:     selection.Request{Scope: outpostv1.Scope_SCOPE_MAINLAND, ClientLat: 39.9042, ClientLon: 116.4074, Max: 5},
		},
		{
			name:    "beijing-overseas",
			domains: []string{"img.example.com"},
			req:     selection.Request{Scope: outpostv1.Scope_SCOPE_OVERSEAS, ClientLat: 39.9042, ClientLon: 116.4074},
		},
		{
			name:    "shenzhen-global",
			domains: []string{"img.example.com", "video.example.com", "a.com", "b.org"},
			req:     selection.Request{Scope: outpostv1.Scope_SCOPE_GLOBAL, ClientLat: 22.5431, ClientLon: 114.0579},
		},
		{
			name:    "paris-global",
			domains: []string{"img.example.com", "video.example.com", "a.com", "b.org"},
			req:     selection.Request{Scope: outpostv1.Scope_SCOPE_GLOBAL, ClientLat: 48.8566, ClientLon: 2.3522, Max: 4},
		},
		{
			name:    "losangeles-overseas",
			domains: []string{"img.example.com"},
			req:     selection.Request{Scope: outpostv1.Scope_SCOPE_OVERSEAS, ClientLat: 34.0522, ClientLon: -118.2437},
		},
		{
			name:    "tokyo-all-overloaded",
			domains: []string{"img.example.com"},
			req:     selection.Request{Scope: outpostv1.Scope_SCOPE_GLOBAL, ClientLat: 35.6762, ClientLon: 139.6503, Max: 4},
			mutate: func(nodes []selection.Node) {
				for i := range nodes {
					nodes[i].Load = 0.9 + float64(i%4)/50
				}
			},
		},
		{
			name:    "unknown-location-mainland",
			domains: []string{"img.example.com", "a.com"},
			req:     selection.Request{Scope: outpostv1.Scope_SCOPE_MAINLAND, ClientLat: math.NaN(), ClientLon: math.NaN(), Max: 10},
		},
	}
	s := selection.New(selection.Config{RegionScope: fleetRegions})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := fleet()
			if tt.mutate != nil {
				tt.mutate(nodes)
			}
			var b strings.Builder
			for _, d := range tt.domains {
				req := tt.req
				req.Domain = d
				fmt.Fprintf(&b, "domain=%s scope=%s client=(%g,%g) max=%d\n", d, req.Scope, req.ClientLat, req.ClientLon, req.Max)
				for i, c := range s.Select(req, nodes) {
					fmt.Fprintf(&b, "  %d. %-6s %-13s %8.1f km  capacity=%g load=%.2f  %s %s\n",
						i+1, c.Node.Name, c.Node.Region, c.DistanceKm, c.Node.Capacity, c.Node.Load,
						c.Node.HTTPAddress, c.Node.HTTPSAddress)
				}
			}
			got := b.String()
			if want := golden(t, tt.name, got); got != want {
				t.Errorf("ranking differs from testdata/%s.golden (run with -update if intended)\ngot:\n%s\nwant:\n%s", tt.name, got, want)
			}
		})
	}
}
