package locate

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

func writeTinyDB(t *testing.T, path, country string) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-City"})
	if err != nil {
		t.Fatal(err)
	}
	_, n, _ := net.ParseCIDR("81.2.69.0/24")
	if err := tree.Insert(n, mmdbtype.Map{
		"country":  mmdbtype.Map{"iso_code": mmdbtype.String(country)},
		"location": mmdbtype.Map{"latitude": mmdbtype.Float64(1), "longitude": mmdbtype.Float64(2)},
	}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
}

// TestReloadClosesAfterLastLookup checks the reference counting: the old
// database stays open while a lookup holds it and is closed by the last
// release.
func TestReloadClosesAfterLastLookup(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := filepath.Join(dir, "1.mmdb"), filepath.Join(dir, "2.mmdb")
	writeTinyDB(t, p1, "GB")
	writeTinyDB(t, p2, "FR")
	g, err := OpenGeoIP(p1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ip := netip.MustParseAddr("81.2.69.1")

	old := g.acquire() // an in-flight lookup
	if err := g.Reload(p2); err != nil {
		t.Fatal(err)
	}
	if n := old.refs.Load(); n != 1 {
		t.Fatalf("old refs = %d, want 1 (the in-flight lookup)", n)
	}
	if !old.r.Lookup(ip).Found() {
		t.Fatal("old database unusable while a lookup holds it")
	}
	if loc, _ := g.Lookup(ip); loc.Country != "FR" {
		t.Fatalf("new lookups use %+v", loc)
	}
	old.release()
	if n := old.refs.Load(); n != 0 {
		t.Fatalf("old refs = %d after last release", n)
	}
	if old.r.Lookup(ip).Err() == nil {
		t.Fatal("old database not closed after the last release")
	}
	if old.tryAcquire() {
		t.Fatal("acquired a closed database")
	}

	// Without in-flight lookups, Reload closes the old database at once.
	cur := g.cur.Load()
	if err := g.Reload(p1); err != nil {
		t.Fatal(err)
	}
	if n := cur.refs.Load(); n != 0 {
		t.Fatalf("replaced database refs = %d", n)
	}
	if n := g.cur.Load().refs.Load(); n != 1 {
		t.Fatalf("current database refs = %d, want 1", n)
	}
}

func TestPrefixLen(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	v6 := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		ip   netip.Addr
		p    netip.Prefix
		want int
	}{
		{v4, netip.MustParsePrefix("192.0.2.0/24"), 24},
		{v4, netip.MustParsePrefix("::/64"), 0}, // record above the IPv4 subtree
		{v4, netip.Prefix{}, 32},
		{v6, netip.MustParsePrefix("2001:db8::/32"), 32},
		{v6, netip.Prefix{}, 128},
	}
	for _, tt := range tests {
		if got := prefixLen(tt.ip, tt.p); got != tt.want {
			t.Errorf("prefixLen(%v, %v) = %d, want %d", tt.ip, tt.p, got, tt.want)
		}
	}
}
