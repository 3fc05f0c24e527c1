package locate_test

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-cdn/outpost/scheduler/locate"
)

// Run `go test ./scheduler/locate/ -run TestDecisionsGolden -update` to
// rewrite testdata/decisions.golden after an intended change, and review
// the diff: every line is where a client of that address is placed.
var update = flag.Bool("update", false, "update .golden files")

// TestDecisionsGolden pins where the coverage zone, the GeoIP database and
// the default place a fixed set of clients, IPv4 and IPv6, together with
// the prefix that an ECS answer's scope would carry.
func TestDecisionsGolden(t *testing.T) {
	geo := openCity(t)
	defer geo.Close()
	cz := mustCZ(t, `{"regions": {
		"london-pop": {"latitude": 51.5, "longitude": -0.12, "networks": ["81.2.69.0/25"]},
		"office":     {"latitude": 52.0, "longitude": 4.3, "networks": ["10.0.0.0/8", "2001:218:ff::/48"]},
		"east":       {"latitude": 40.7, "longitude": -74.0, "networks": ["198.51.100.0/24"]},
		"west":       {"latitude": 37.8, "longitude": -122.4, "networks": ["203.0.113.0/24", "2001:db8:2::/48"]}
	}}`)
	l := locate.NewChain(cz, geo, testDefault)
	clients := []string{
		"81.2.69.1", "81.2.69.127", "81.2.69.128", "81.2.69.200", "::ffff:81.2.69.200",
		"89.160.20.113", "89.160.20.129", "10.0.0.1", "10.255.255.255",
		"198.51.100.7", "203.0.113.250", "2001:db8:2::1", "2001:db8:3::1",
		"2001:218:ff:1::1", "2001:218:1::1", "2001:218:8000::1",
		"216.160.83.57", "192.0.2.1", "0.0.0.0", "::1", "127.0.0.1",
	}
	var b strings.Builder
	for _, c := range clients {
		loc := l.Locate(netip.MustParseAddr(c))
		fmt.Fprintf(&b, "%-20s %-14s region=%-10s country=%-2s lat=%.4f lon=%.4f prefix=%d\n",
			c, loc.Source, loc.Region, loc.Country, loc.Latitude, loc.Longitude, loc.PrefixLen)
	}
	got := b.String()
	path := filepath.Join("testdata", "decisions.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("decisions differ from %s (run with -update after an intended change):\n--- got\n%s--- want\n%s", path, got, want)
	}
}
