package locate_test

import (
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/outpost-cdn/outpost/scheduler/locate"
)

// cityRec is one GeoLite2-City-shaped record for a test database. A NaN
// latitude means "no location".
type cityRec struct {
	network   string
	lat, lon  float64
	country   string
	continent string
}

func (r cityRec) value() mmdbtype.Map {
	m := mmdbtype.Map{}
	if r.country != "" {
		m["country"] = mmdbtype.Map{
			"iso_code":   mmdbtype.String(r.country),
			"geoname_id": mmdbtype.Uint32(1),
			"names":      mmdbtype.Map{"en": mmdbtype.String("Country " + r.country)},
		}
	}
	if r.continent != "" {
		m["continent"] = mmdbtype.Map{"code": mmdbtype.String(r.continent)}
	}
	if !math.IsNaN(r.lat) {
		m["location"] = mmdbtype.Map{
			"latitude":        mmdbtype.Float64(r.lat),
			"longitude":       mmdbtype.Float64(r.lon),
			"accuracy_radius": mmdbtype.Uint16(100),
			"time_zone":       mmdbtype.String("UTC"),
		}
	}
	m["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Somewhere")}}
	return m
}

// writeCityDB writes a "GeoLite2-City" database with recs to dir/name and
// returns its path. ipVersion is 4 or 6.
func writeCityDB(t testing.TB, dir, name string, ipVersion int, recs ...cityRec) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoLite2-City",
		IPVersion:               ipVersion,
		RecordSize:              28,
		Languages:               []string{"en"},
		Description:             map[string]string{"en": "Outpost test City database"},
		IncludeReservedNetworks: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		_, n, err := net.ParseCIDR(r.network)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, r.value()); err != nil {
			t.Fatalf("insert %s: %v", r.network, err)
		}
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

var noLoc = math.NaN()

// cityRecs is the standard test data set.
var cityRecs = []cityRec{
	{network: "81.2.69.0/24", lat: 51.5142, lon: -0.0931, country: "GB", continent: "EU"},
	{network: "89.160.20.112/28", lat: 58.4167, lon: 15.6167, country: "SE", continent: "EU"},
	{network: "175.16.199.0/24", lat: 43.88, lon: 125.3228, country: "CN", continent: "AS"},
	{network: "216.160.83.56/29", lat: noLoc, country: "US", continent: "NA"}, // no coordinates
	{network: "2001:218::/32", lat: 35.68536, lon: 139.75309, country: "JP", continent: "AS"},
	{network: "2a02:cf40::/29", lat: 52.5, lon: 13.4, country: "DE", continent: "EU"},
}

func openCity(t testing.TB, recs ...cityRec) *locate.GeoIP {
	t.Helper()
	if len(recs) == 0 {
		recs = cityRecs
	}
	path := writeCityDB(t, t.TempDir(), "city.mmdb", 6, recs...)
	g, err := locate.OpenGeoIP(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func mustCZ(t testing.TB, js string) *locate.CoverageZone {
	t.Helper()
	cz, err := locate.ParseCoverageZone(strings.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return cz
}

func checkLoc(t *testing.T, ip string, got, want locate.Location) {
	t.Helper()
	const eps = 1e-9
	if got.Source != want.Source || got.Region != want.Region || got.Country != want.Country ||
		got.PrefixLen != want.PrefixLen ||
		math.Abs(got.Latitude-want.Latitude) > eps || math.Abs(got.Longitude-want.Longitude) > eps {
		t.Errorf("%s: got %+v, want %+v", ip, got, want)
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
