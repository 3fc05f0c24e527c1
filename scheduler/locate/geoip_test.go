package locate_test

import (
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"

	"github.com/outpost-cdn/outpost/scheduler/locate"
)

func TestGeoIPLookup(t *testing.T) {
	g := openCity(t)
	g.SetRegionMap(locate.RegionMap{
		Countries:  map[string]string{"GB": "london", "JP": "tokyo"},
		Continents: map[string]string{"EU": "europe", "AS": "asia"},
	})
	if got := g.DatabaseType(); got != "GeoLite2-City" {
		t.Errorf("DatabaseType = %q", got)
	}
	if g.BuildTime().IsZero() {
		t.Error("BuildTime is zero")
	}

	geo := func(lat, lon float64, country, region string, plen int) locate.Location {
		return locate.Location{Latitude: lat, Longitude: lon, Country: country, Region: region,
			Source: locate.SourceGeoIP, PrefixLen: plen}
	}
	tests := []struct {
		ip     string
		want   locate.Location
		wantOK bool
	}{
		{"81.2.69.142", geo(51.5142, -0.0931, "GB", "london", 24), true},
		{"81.2.69.0", geo(51.5142, -0.0931, "GB", "london", 24), true},
		{"89.160.20.120", geo(58.4167, 15.6167, "SE", "europe", 28), true},
		{"175.16.199.1", geo(43.88, 125.3228, "CN", "asia", 24), true},
		{"2001:218:1234::1", geo(35.68536, 139.75309, "JP", "tokyo", 32), true},
		{"2a02:cf47::1", geo(52.5, 13.4, "DE", "europe", 29), true},
		// IPv4-mapped IPv6 is looked up as IPv4, with an IPv4 prefix length.
		{"::ffff:81.2.69.142", geo(51.5142, -0.0931, "GB", "london", 24), true},
		// A zone is ignored.
		{"2001:218::1%eth0", geo(35.68536, 139.75309, "JP", "tokyo", 32), true},
		// A record without coordinates: found, but not ok.
		{"216.160.83.57", locate.Location{Country: "US", Source: locate.SourceGeoIP, PrefixLen: 29}, false},
		// Unknown.
		{"192.0.2.1", locate.Location{}, false},
		{"2001:db8::1", locate.Location{}, false},
	}
	for _, tt := range tests {
		got, ok := g.Lookup(netip.MustParseAddr(tt.ip))
		if ok != tt.wantOK {
			t.Errorf("%s: ok = %v, want %v", tt.ip, ok, tt.wantOK)
		}
		checkLoc(t, tt.ip, got, tt.want)
	}
	if _, ok := g.Lookup(netip.Addr{}); ok {
		t.Error("zero Addr found")
	}
	if n := g.LookupErrors(); n != 0 {
		t.Errorf("LookupErrors = %d", n)
	}
}

func TestGeoIPv4OnlyDatabase(t *testing.T) {
	path := writeCityDB(t, t.TempDir(), "v4.mmdb", 4, cityRecs[:3]...)
	g, err := locate.OpenGeoIP(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if loc, ok := g.Lookup(netip.MustParseAddr("::ffff:81.2.69.1")); !ok || loc.Country != "GB" || loc.PrefixLen != 24 {
		t.Errorf("mapped lookup = %+v, %v", loc, ok)
	}
	if _, ok := g.Lookup(netip.MustParseAddr("2001:218::1")); ok {
		t.Error("IPv6 found in an IPv4 database")
	}
	if n := g.LookupErrors(); n != 0 {
		t.Errorf("IPv6 lookup in IPv4 database counted as error: %d", n)
	}
}

func TestOpenGeoIPErrors(t *testing.T) {
	if _, err := locate.OpenGeoIP(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Error("missing file: no error")
	}
	path := filepath.Join(t.TempDir(), "junk.mmdb")
	writeFile(t, path, "this is not a MaxMind database")
	if _, err := locate.OpenGeoIP(path); err == nil {
		t.Error("junk file: no error")
	}
}

func TestGeoIPReload(t *testing.T) {
	dir := t.TempDir()
	p1 := writeCityDB(t, dir, "1.mmdb", 6, cityRecs...)
	p2 := writeCityDB(t, dir, "2.mmdb", 6,
		cityRec{network: "81.2.0.0/16", lat: 48.85, lon: 2.35, country: "FR", continent: "EU"})
	g, err := locate.OpenGeoIP(p1)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("81.2.69.142")
	if loc, _ := g.Lookup(ip); loc.Country != "GB" || loc.PrefixLen != 24 {
		t.Fatalf("before reload: %+v", loc)
	}

	if err := g.Reload(p2); err != nil {
		t.Fatal(err)
	}
	if loc, _ := g.Lookup(ip); loc.Country != "FR" || loc.PrefixLen != 16 || loc.Latitude != 48.85 {
		t.Errorf("after reload: %+v", loc)
	}
	if _, ok := g.Lookup(netip.MustParseAddr("2001:218::1")); ok {
		t.Error("old data still served after reload")
	}

	// A failed reload keeps the current database.
	if err := g.Reload(filepath.Join(dir, "missing.mmdb")); err == nil {
		t.Error("reload of missing file: no error")
	}
	if loc, _ := g.Lookup(ip); loc.Country != "FR" {
		t.Errorf("after failed reload: %+v", loc)
	}

	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, ok := g.Lookup(ip); ok {
		t.Error("found after Close")
	}
	if got := g.DatabaseType(); got != "" {
		t.Errorf("DatabaseType after Close = %q", got)
	}
	if err := g.Reload(p1); !errors.Is(err, locate.ErrClosed) {
		t.Errorf("Reload after Close = %v, want ErrClosed", err)
	}
}

// TestGeoIPReloadConcurrent runs lookups while the database is swapped back
// and forth; under -race and with real munmaps, a lookup on a closed
// database would crash or race.
func TestGeoIPReloadConcurrent(t *testing.T) {
	dir := t.TempDir()
	p1 := writeCityDB(t, dir, "1.mmdb", 6, cityRecs...)
	p2 := writeCityDB(t, dir, "2.mmdb", 6,
		cityRec{network: "81.2.69.0/24", lat: 48.85, lon: 2.35, country: "FR", continent: "EU"})
	g, err := locate.OpenGeoIP(p1)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("81.2.69.142")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				loc, ok := g.Lookup(ip)
				if !ok || (loc.Country != "GB" && loc.Country != "FR") {
					t.Errorf("lookup during reload: %+v, %v", loc, ok)
					return
				}
			}
		})
	}
	for i := range 100 {
		p := p1
		if i%2 == 0 {
			p = p2
		}
		if err := g.Reload(p); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	g.Close()
	if n := g.LookupErrors(); n != 0 {
		t.Errorf("LookupErrors = %d", n)
	}
}
