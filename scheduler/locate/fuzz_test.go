package locate_test

import (
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/outpost-cdn/outpost/scheduler/locate"
)

func FuzzParseCoverageZone(f *testing.F) {
	f.Add(nestedCZ)
	f.Add(`{"regions": {}}`)
	f.Add(`{"regions": {"a": {"latitude": 1, "longitude": 1, "networks": ["10.0.0.0/8", "10.0.0.0/8"]}}}`)
	f.Add(`{"regions": {"a": {"latitude": 1e308, "longitude": -1e308, "networks": ["::/0", "0.0.0.0/0"]}}}`)
	f.Add(`{"regions": {"a": {"latitude": 1, "longitude": 1, "networks": ["::ffff:0.0.0.0/96", "::ffff:1.2.3.4/128"]}}}`)
	f.Add(`{"regions": {"": {"networks": [null, "x"]}}}`)
	f.Add(`{"regions": null}`)
	f.Add(`{`)
	f.Fuzz(func(t *testing.T, in string) {
		cz, err := locate.ParseCoverageZone(strings.NewReader(in))
		if err != nil {
			if cz != nil {
				t.Fatal("non-nil CoverageZone with an error")
			}
			return
		}
		for _, s := range []string{"0.0.0.0", "10.1.2.3", "255.255.255.255", "::", "::ffff:10.1.2.3", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
			ip := netip.MustParseAddr(s)
			loc, ok := cz.Lookup(ip)
			if !ok {
				continue
			}
			if loc.Source != locate.SourceCoverageZone || loc.Region == "" {
				t.Fatalf("%s: %+v", s, loc)
			}
			checkRange(t, ip, loc)
		}
	})
}

// fuzzCZ overlaps the GeoIP test data in several ways.
const fuzzCZ = `{"regions": {
	"a": {"latitude": 10, "longitude": 20, "networks": ["81.2.69.0/25", "81.2.69.192/27", "2001:218:ff::/48"]},
	"b": {"latitude": -10, "longitude": -20, "networks": ["81.0.0.0/8", "2001:200::/23", "2001:218:ff:ff::/64"]},
	"c": {"latitude": 90, "longitude": 180, "networks": ["0.0.0.0/1", "fe80::/10"]}
}}`

func FuzzLocate(f *testing.F) {
	geo := openCity(f)
	cz := mustCZ(f, fuzzCZ)
	chains := []locate.Locator{
		locate.NewChain(cz, geo, testDefault),
		locate.NewChain(nil, geo, testDefault),
		locate.NewChain(cz, nil, testDefault),
	}
	for _, s := range []string{"81.2.69.1", "81.2.69.200", "::ffff:81.2.69.142", "2001:218:ff:1::1", "2001:218::1", "216.160.83.57", "fe80::1", "::"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:], []byte{0xff, 0, 0x55})
	}
	f.Fuzz(func(t *testing.T, addr, other []byte) {
		var b [16]byte
		copy(b[:], addr)
		for _, ip := range []netip.Addr{netip.AddrFrom16(b), netip.AddrFrom4([4]byte(b[12:]))} {
			for _, l := range chains {
				loc := l.Locate(ip)
				checkRange(t, ip, loc)
				if loc.Source == locate.SourceDefault {
					continue
				}
				// Every address in ip/PrefixLen gets the same answer
				// (EDNS Client Subnet scope).
				o := sameNetwork(ip.Unmap(), loc.PrefixLen, other)
				if got := l.Locate(o); got != loc {
					t.Fatalf("%v -> %+v, but %v in the same /%d -> %+v", ip, loc, o, loc.PrefixLen, got)
				}
			}
		}
	})
}

// checkRange checks the invariants of every Location.
func checkRange(t *testing.T, ip netip.Addr, loc locate.Location) {
	t.Helper()
	if math.IsNaN(loc.Latitude) || math.IsNaN(loc.Longitude) ||
		loc.Latitude < -90 || loc.Latitude > 90 || loc.Longitude < -180 || loc.Longitude > 180 {
		t.Fatalf("%v: coordinates out of range: %+v", ip, loc)
	}
	if loc.PrefixLen < 0 || loc.PrefixLen > ip.Unmap().BitLen() {
		t.Fatalf("%v: PrefixLen out of range: %+v", ip, loc)
	}
	switch loc.Source {
	case locate.SourceCoverageZone, locate.SourceGeoIP:
	case locate.SourceDefault:
		if loc.PrefixLen != 0 {
			t.Fatalf("%v: default with PrefixLen %d", ip, loc.PrefixLen)
		}
	default:
		t.Fatalf("%v: bad source: %+v", ip, loc)
	}
}

// sameNetwork returns the address in ip/bits whose host bits come from
// host.
func sameNetwork(ip netip.Addr, bits int, host []byte) netip.Addr {
	a := ip.AsSlice()
	for i := range a {
		var h byte
		if i < len(host) {
			h = host[i]
		}
		// Bits of byte i that belong to the network part.
		nb := min(max(bits-8*i, 0), 8)
		mask := byte(0xff << (8 - nb))
		if nb == 0 {
			mask = 0
		}
		a[i] = a[i]&mask | h&^mask
	}
	o, _ := netip.AddrFromSlice(a)
	return o
}
