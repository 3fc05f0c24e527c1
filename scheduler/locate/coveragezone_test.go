package locate_test

import (
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-cdn/outpost/scheduler/locate"
)

const nestedCZ = `{
  "regions": {
    "east":    {"latitude": 40.7, "longitude": -74.0,
                "networks": ["10.0.0.0/8", "2001:db8:1::/48", "10.0.0.0/8"]},
    "west":    {"latitude": 37.8, "longitude": -122.4,
                "networks": ["10.1.0.0/16", "2001:db8:1:5::/64"]},
    "west-dc": {"latitude": 37.4, "longitude": -122.1,
                "networks": ["::ffff:10.1.2.128/121"]},
    "link":    {"latitude": 0, "longitude": 0, "networks": ["fe80::/10"]},
    "empty":   {"latitude": -33.9, "longitude": 151.2, "networks": []}
  }
}`

func TestCoverageZoneLookup(t *testing.T) {
	cz := mustCZ(t, nestedCZ)
	if got, want := cz.Regions(), []string{"east", "empty", "link", "west", "west-dc"}; !slices.Equal(got, want) {
		t.Errorf("Regions = %v, want %v", got, want)
	}
	if got := cz.Len(); got != 6 {
		t.Errorf("Len = %d, want 6", got)
	}

	east := func(plen int) locate.Location {
		return locate.Location{Latitude: 40.7, Longitude: -74.0, Region: "east", Source: locate.SourceCoverageZone, PrefixLen: plen}
	}
	west := func(plen int) locate.Location {
		return locate.Location{Latitude: 37.8, Longitude: -122.4, Region: "west", Source: locate.SourceCoverageZone, PrefixLen: plen}
	}
	westDC := locate.Location{Latitude: 37.4, Longitude: -122.1, Region: "west-dc", Source: locate.SourceCoverageZone, PrefixLen: 25}

	tests := []struct {
		ip   string
		want locate.Location
	}{
		// Longest prefix wins among nested CIDRs.
		{"10.1.2.200", westDC},
		{"::ffff:10.1.2.200", westDC}, // IPv4-mapped IPv6, and a mapped CIDR in the file
		// PrefixLen is narrowed so that the network does not contain a
		// more specific network with another answer.
		{"10.1.2.1", west(25)},   // 10.1.2.0/25 excludes 10.1.2.128/25
		{"10.1.200.1", west(17)}, // 10.1.128.0/17 excludes 10.1.2.0/24
		{"10.200.0.1", east(9)},  // 10.128.0.0/9 excludes 10.1.0.0/16
		{"10.0.0.1", east(16)},   // 10.0.0.0/16
		{"10.1.2.128", westDC},   // network address
		{"10.255.255.255", east(9)},
		{"2001:db8:1:5::1", west(64)},
		{"2001:db8:1:8000::1", east(49)},
		{"2001:db8:1:4::1", east(64)}, // differs from 2001:db8:1:5:: in bit 63 only
		{"2001:db8:1:6::1", east(63)},
		{"fe80::1%eth0", locate.Location{Region: "link", Source: locate.SourceCoverageZone, PrefixLen: 10}},
	}
	for _, tt := range tests {
		got, ok := cz.Lookup(netip.MustParseAddr(tt.ip))
		if !ok {
			t.Errorf("%s: not found", tt.ip)
		}
		checkLoc(t, tt.ip, got, tt.want)
	}

	for _, ip := range []string{"11.0.0.1", "192.0.2.1", "2001:db8:2::1", "::1", "::ffff:11.0.0.1"} {
		if loc, ok := cz.Lookup(netip.MustParseAddr(ip)); ok {
			t.Errorf("%s: found %+v", ip, loc)
		}
	}
	if _, ok := cz.Lookup(netip.Addr{}); ok {
		t.Error("zero Addr found")
	}
}

func TestCoverageZoneEmpty(t *testing.T) {
	cz := mustCZ(t, `{"regions": {}}`)
	if cz.Len() != 0 || len(cz.Regions()) != 0 {
		t.Errorf("Len %d Regions %v", cz.Len(), cz.Regions())
	}
	if _, ok := cz.Lookup(netip.MustParseAddr("10.0.0.1")); ok {
		t.Error("found in empty zone")
	}
}

func TestLoadCoverageZone(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "czf.json")
	writeFile(t, good, nestedCZ)
	cz, err := locate.LoadCoverageZone(good)
	if err != nil {
		t.Fatal(err)
	}
	if loc, ok := cz.Lookup(netip.MustParseAddr("10.1.0.1")); !ok || loc.Region != "west" {
		t.Errorf("lookup = %+v, %v", loc, ok)
	}

	if _, err := locate.LoadCoverageZone(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, `{"regions": {"a": {"latitude": 1, "longitude": 1, "networks": ["10.0.0.0/33"]}}}`)
	_, err = locate.LoadCoverageZone(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "10.0.0.0/33") {
		t.Errorf("bad file: error %v should name the file and the network", err)
	}
}

func TestParseCoverageZoneErrors(t *testing.T) {
	region := func(name, body string) string {
		return `{"regions": {"` + name + `": ` + body + `}}`
	}
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"empty input", ``, []string{"invalid JSON"}},
		{"truncated", `{"regions": {`, []string{"invalid JSON"}},
		{"not an object", `[]`, []string{"invalid JSON"}},
		{"trailing data", `{"regions": {}} {}`, []string{"after the top-level object"}},
		{"missing regions", `{}`, []string{`missing "regions"`}},
		{"null regions", `{"regions": null}`, []string{`missing "regions"`}},
		{"unknown key", region("a", `{"latitude": 1, "longitude": 1, "network": ["10.0.0.0/8"]}`), []string{"invalid JSON", `"network"`}},
		{"wrong type", region("a", `{"latitude": "1", "longitude": 1}`), []string{"invalid JSON"}},
		{"empty name", region("", `{"latitude": 1, "longitude": 1}`), []string{"empty region name"}},
		{"missing latitude", region("a", `{"longitude": 1}`), []string{`region "a": missing latitude`}},
		{"missing longitude", region("a", `{"latitude": 1}`), []string{`region "a": missing longitude`}},
		{"latitude too big", region("a", `{"latitude": 90.5, "longitude": 1}`), []string{"latitude 90.5 out of range"}},
		{"latitude too small", region("a", `{"latitude": -91, "longitude": 1}`), []string{"latitude -91 out of range"}},
		{"longitude too big", region("a", `{"latitude": 1, "longitude": 180.01}`), []string{"longitude 180.01 out of range"}},
		{"longitude too small", region("a", `{"latitude": 1, "longitude": -181}`), []string{"longitude -181 out of range"}},
		{"bad length", region("a", `{"latitude": 1, "longitude": 1, "networks": ["10.0.0.0/33"]}`), []string{`network "10.0.0.0/33": not a valid CIDR`}},
		{"no length", region("a", `{"latitude": 1, "longitude": 1, "networks": ["10.0.0.1"]}`), []string{`network "10.0.0.1": not a valid CIDR`}},
		{"garbage", region("a", `{"latitude": 1, "longitude": 1, "networks": ["east coast"]}`), []string{"not a valid CIDR"}},
		{"zone", region("a", `{"latitude": 1, "longitude": 1, "networks": ["fe80::%eth0/64"]}`), []string{"not a valid CIDR"}},
		{"host bits", region("a", `{"latitude": 1, "longitude": 1, "networks": ["10.1.2.0/16"]}`), []string{"host bits set", "10.1.0.0/16"}},
		{"host bits v6", region("a", `{"latitude": 1, "longitude": 1, "networks": ["2001:db8::1/64"]}`), []string{"host bits set", "2001:db8::/64"}},
		{"same CIDR in two regions", `{"regions": {
			"a": {"latitude": 1, "longitude": 1, "networks": ["10.0.0.0/8"]},
			"b": {"latitude": 1, "longitude": 1, "networks": ["10.0.0.0/8"]}}}`,
			[]string{`region "b": network "10.0.0.0/8": 10.0.0.0/8 is already in region "a"`}},
		{"same CIDR, one IPv4-mapped", `{"regions": {
			"a": {"latitude": 1, "longitude": 1, "networks": ["10.0.0.0/8"]},
			"b": {"latitude": 1, "longitude": 1, "networks": ["::ffff:10.0.0.0/104"]}}}`,
			[]string{`already in region "a"`}},
		{"several problems reported together", `{"regions": {
			"a": {"latitude": 100, "longitude": 1, "networks": ["10.0.0.0/8", "bogus"]},
			"b": {"latitude": 1, "longitude": 1, "networks": ["10.0.0.0/8"]}}}`,
			[]string{"latitude 100 out of range", `"bogus"`, `already in region "a"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cz, err := locate.ParseCoverageZone(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("no error; got %d networks", cz.Len())
			}
			if cz != nil {
				t.Error("non-nil CoverageZone with an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseCoverageZoneReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := locate.ParseCoverageZone(errReader{boom})
	if !errors.Is(err, boom) {
		t.Errorf("error = %v, want it to wrap %v", err, boom)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
