package selection_test

import (
	"fmt"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler/selection"
)

func ExampleSelector_Select() {
	s := selection.New(selection.Config{RegionScope: map[string]outpostv1.Scope{
		"cn-south": outpostv1.Scope_SCOPE_MAINLAND,
		"hk":       outpostv1.Scope_SCOPE_GLOBAL,
	}})
	nodes := []selection.Node{
		{Name: "gz-1", Region: "cn-south", Latitude: 23.1291, Longitude: 113.2644, Capacity: 1, Load: 0.2, Healthy: true},
		{Name: "hk-1", Region: "hk", Latitude: 22.3193, Longitude: 114.1694, Capacity: 1, Load: 0.1, Healthy: true},
		{Name: "sin-1", Region: "ap-southeast", Latitude: 1.3521, Longitude: 103.8198, Capacity: 1, Healthy: true},
		{Name: "sh-1", Region: "cn-east", Latitude: 31.2304, Longitude: 121.4737, Capacity: 1, Draining: true, Healthy: true},
	}
	// A client in Shenzhen: Guangzhou and Hong Kong are about equally near,
	// so the domain picks between them; Singapore follows by distance.
	for _, c := range s.Select(selection.Request{
		Domain:    "img.example.com",
		Scope:     outpostv1.Scope_SCOPE_GLOBAL,
		ClientLat: 22.5431, ClientLon: 114.0579,
	}, nodes) {
		fmt.Printf("%s %.0f km\n", c.Node.Name, c.DistanceKm)
	}
	// Output:
	// gz-1 104 km
	// hk-1 27 km
	// sin-1 2603 km
}
