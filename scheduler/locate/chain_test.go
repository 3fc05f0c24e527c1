package locate_test

import (
	"net/netip"
	"testing"

	"github.com/outpost-cdn/outpost/scheduler/locate"
)

var testDefault = locate.Location{Latitude: 50.1, Longitude: 8.7, Region: "fra", Country: "DE"}

func wantDefault() locate.Location {
	d := testDefault
	d.Source = locate.SourceDefault
	return d
}

func TestChain(t *testing.T) {
	geo := openCity(t)
	cz := mustCZ(t, `{"regions": {
		"london-pop": {"latitude": 51.5, "longitude": -0.12, "networks": ["81.2.69.0/25"]},
		"office":     {"latitude": 52.0, "longitude": 4.3, "networks": ["10.0.0.0/8", "2001:218:ff::/48"]}
	}}`)
	def := testDefault
	def.Source = "bogus" // overwritten
	def.PrefixLen = 17   // overwritten
	l := locate.NewChain(cz, geo, def)

	londonPop := locate.Location{Latitude: 51.5, Longitude: -0.12, Region: "london-pop", Source: locate.SourceCoverageZone, PrefixLen: 25}
	tests := []struct {
		ip   string
		want locate.Location
	}{
		// The coverage zone wins over GeoIP.
		{"81.2.69.1", londonPop},
		{"::ffff:81.2.69.1", londonPop},
		// GeoIP, with the prefix narrowed from /24 to /25 so that it does
		// not cover the coverage-zone network.
		{"81.2.69.200", locate.Location{Latitude: 51.5142, Longitude: -0.0931, Country: "GB", Source: locate.SourceGeoIP, PrefixLen: 25}},
		{"::ffff:81.2.69.200", locate.Location{Latitude: 51.5142, Longitude: -0.0931, Country: "GB", Source: locate.SourceGeoIP, PrefixLen: 25}},
		{"89.160.20.113", locate.Location{Latitude: 58.4167, Longitude: 15.6167, Country: "SE", Source: locate.SourceGeoIP, PrefixLen: 28}},
		{"10.3.4.5", locate.Location{Latitude: 52.0, Longitude: 4.3, Region: "office", Source: locate.SourceCoverageZone, PrefixLen: 8}},
		{"2001:218:ff:1::1", locate.Location{Latitude: 52.0, Longitude: 4.3, Region: "office", Source: locate.SourceCoverageZone, PrefixLen: 48}},
		// 2001:218::/32 with 2001:218:ff::/48 carved out.
		{"2001:218:8000::1", locate.Location{Latitude: 35.68536, Longitude: 139.75309, Country: "JP", Source: locate.SourceGeoIP, PrefixLen: 33}},
		{"2001:218:1::1", locate.Location{Latitude: 35.68536, Longitude: 139.75309, Country: "JP", Source: locate.SourceGeoIP, PrefixLen: 41}},
		// GeoIP record without coordinates: the default.
		{"216.160.83.57", wantDefault()},
		// Unknown to both.
		{"192.0.2.1", wantDefault()},
		{"2001:db8::1", wantDefault()},
	}
	for _, tt := range tests {
		checkLoc(t, tt.ip, l.Locate(netip.MustParseAddr(tt.ip)), tt.want)
	}
	checkLoc(t, "zero Addr", l.Locate(netip.Addr{}), wantDefault())

	// A closed GeoIP falls through to the default.
	geo.Close()
	checkLoc(t, "81.2.69.200 after Close", l.Locate(netip.MustParseAddr("81.2.69.200")), wantDefault())
	checkLoc(t, "81.2.69.1 after Close", l.Locate(netip.MustParseAddr("81.2.69.1")), londonPop)
}

func TestChainNilSources(t *testing.T) {
	ip := netip.MustParseAddr("81.2.69.1")
	checkLoc(t, "nil, nil", locate.NewChain(nil, nil, testDefault).Locate(ip), wantDefault())

	geoOnly := locate.NewChain(nil, openCity(t), testDefault)
	checkLoc(t, "geo only", geoOnly.Locate(ip),
		locate.Location{Latitude: 51.5142, Longitude: -0.0931, Country: "GB", Source: locate.SourceGeoIP, PrefixLen: 24})

	czOnly := locate.NewChain(mustCZ(t, `{"regions": {"x": {"latitude": 1, "longitude": 2, "networks": ["81.0.0.0/8"]}}}`), nil, testDefault)
	checkLoc(t, "cz only", czOnly.Locate(ip),
		locate.Location{Latitude: 1, Longitude: 2, Region: "x", Source: locate.SourceCoverageZone, PrefixLen: 8})
	checkLoc(t, "cz only, miss", czOnly.Locate(netip.MustParseAddr("82.0.0.1")), wantDefault())
}

func ExampleNewChain() {
	cz, err := locate.LoadCoverageZone("/etc/outpost/coverage-zone.json")
	if err != nil {
		panic(err)
	}
	geo, err := locate.OpenGeoIP("/var/lib/outpost/GeoLite2-City.mmdb")
	if err != nil {
		panic(err)
	}
	defer geo.Close()
	l := locate.NewChain(cz, geo, locate.Location{Latitude: 50.1, Longitude: 8.7, Region: "fra"})
	_ = l.Locate(netip.MustParseAddr("198.51.100.7"))
	// Weekly, after the new file has been renamed into place:
	_ = geo.Reload("/var/lib/outpost/GeoLite2-City.mmdb")
}
