package locate

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// ErrClosed is returned by [GeoIP.Reload] after [GeoIP.Close].
var ErrClosed = errors.New("geoip: closed")

// GeoIP locates addresses with a MaxMind DB format database. It reads
// location.latitude, location.longitude, country.iso_code (falling back to
// registered_country.iso_code) and continent.code, the layout of
// GeoLite2-City, GeoIP2-City and DB-IP City (Lite) files.
//
// The database file is memory-mapped. To refresh it, write the new file
// elsewhere and rename it into place (or use a new path), then call Reload;
// never overwrite a mapped file in place, which can crash the process.
//
// Reload swaps the database atomically. Each lookup holds a reference to the
// database it started on, and the old database is closed (unmapped) only
// when the last in-flight lookup on it has finished, so lookups never see a
// closed database and never wait. A GeoIP is safe for concurrent use.
type GeoIP struct {
	cur     atomic.Pointer[geoDB]
	regions atomic.Pointer[RegionMap]
	errs    atomic.Uint64
}

// RegionMap gives GeoIP answers a region: the country's entry if there is
// one, else the continent's, else "".
type RegionMap struct {
	// Countries maps ISO 3166-1 alpha-2 codes ("US", "DE") to regions.
	Countries map[string]string
	// Continents maps MaxMind continent codes (AF, AN, AS, EU, NA, OC, SA)
	// to regions.
	Continents map[string]string
}

// geoDB is a reader with a reference count. The GeoIP holds one reference
// while the database is current; each lookup holds one while it runs. The
// reader is closed when the count drops to zero, and a zero count never
// rises again.
type geoDB struct {
	r        *maxminddb.Reader
	refs     atomic.Int64
	ipv4Only bool
}

func openDB(path string) (*geoDB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geoip: %w", err)
	}
	db := &geoDB{r: r, ipv4Only: r.Metadata.IPVersion == 4}
	db.refs.Store(1)
	return db, nil
}

// tryAcquire takes a reference unless the database is already closed.
func (db *geoDB) tryAcquire() bool {
	for {
		n := db.refs.Load()
		if n <= 0 {
			return false
		}
		if db.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (db *geoDB) release() {
	if db.refs.Add(-1) == 0 {
		_ = db.r.Close()
	}
}

// OpenGeoIP opens the MaxMind DB file at path.
func OpenGeoIP(path string) (*GeoIP, error) {
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	g := &GeoIP{}
	g.cur.Store(db)
	return g, nil
}

// Reload opens the database at path and, if that works, makes it current.
// Lookups already running finish on the old database, which is closed
// after the last of them. If opening fails, the current database stays.
func (g *GeoIP) Reload(path string) error {
	db, err := openDB(path)
	if err != nil {
		return err
	}
	for {
		old := g.cur.Load()
		if old == nil {
			db.release()
			return ErrClosed
		}
		if g.cur.CompareAndSwap(old, db) {
			old.release()
			return nil
		}
	}
}

// Close closes the database once in-flight lookups have finished. Later
// lookups find nothing. Close is idempotent and always returns nil.
func (g *GeoIP) Close() error {
	if old := g.cur.Swap(nil); old != nil {
		old.release()
	}
	return nil
}

// acquire returns the current database with a reference held, or nil after
// Close. If a Reload dropped the last reference between the load and the
// acquire, the new current database is tried.
func (g *GeoIP) acquire() *geoDB {
	for {
		db := g.cur.Load()
		if db == nil || db.tryAcquire() {
			return db
		}
	}
}

// SetRegionMap sets how GeoIP answers get a region. The maps are copied.
func (g *GeoIP) SetRegionMap(m RegionMap) {
	m.Countries = maps.Clone(m.Countries)
	m.Continents = maps.Clone(m.Continents)
	g.regions.Store(&m)
}

// DatabaseType returns the current database's type (such as
// "GeoLite2-City"), or "" after Close.
func (g *GeoIP) DatabaseType() string {
	db := g.acquire()
	if db == nil {
		return ""
	}
	defer db.release()
	return db.r.Metadata.DatabaseType
}

// BuildTime returns when the current database was built, or the zero time
// after Close.
func (g *GeoIP) BuildTime() time.Time {
	db := g.acquire()
	if db == nil {
		return time.Time{}
	}
	defer db.release()
	return db.r.Metadata.BuildTime()
}

// LookupErrors returns how many lookups failed because the database is
// corrupt or its records could not be decoded (they count as not found).
func (g *GeoIP) LookupErrors() uint64 {
	return g.errs.Load()
}

// geoRecord is the part of a City record that is read.
type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// Lookup returns the GeoIP location of ip. ok is true only if a record was
// found and it has valid coordinates; if a record without coordinates is
// found, the Location still carries its Country, Region and PrefixLen.
// Source is SourceGeoIP whenever a record was found. After Close, nothing
// is found.
func (g *GeoIP) Lookup(ip netip.Addr) (loc Location, ok bool) {
	ip = normalize(ip)
	if !ip.IsValid() {
		return Location{}, false
	}
	db := g.acquire()
	if db == nil {
		return Location{}, false
	}
	defer db.release()
	if db.ipv4Only && ip.Is6() {
		return Location{}, false
	}

	res := db.r.Lookup(ip)
	if !res.Found() {
		if res.Err() != nil {
			g.errs.Add(1)
		}
		return Location{}, false
	}
	var rec geoRecord
	if err := res.Decode(&rec); err != nil {
		g.errs.Add(1)
		return Location{}, false
	}

	loc.Source = SourceGeoIP
	loc.Country = rec.Country.ISOCode
	if loc.Country == "" {
		loc.Country = rec.RegisteredCountry.ISOCode
	}
	if rm := g.regions.Load(); rm != nil {
		if r, found := rm.Countries[loc.Country]; found && loc.Country != "" {
			loc.Region = r
		} else if r, found := rm.Continents[rec.Continent.Code]; found && rec.Continent.Code != "" {
			loc.Region = r
		}
	}
	loc.PrefixLen = prefixLen(ip, res.Prefix())

	lat, lon := rec.Location.Latitude, rec.Location.Longitude
	if lat == nil || lon == nil || !validCoordinates(*lat, *lon) {
		return loc, false
	}
	loc.Latitude, loc.Longitude = *lat, *lon
	return loc, true
}

// prefixLen returns the length of the record's network in ip's family. An
// IPv4 address matched by a record above the IPv4 part of an IPv6 tree (the
// library then reports an IPv6 prefix) is covered as a whole: length 0.
func prefixLen(ip netip.Addr, p netip.Prefix) int {
	if !p.IsValid() {
		return ip.BitLen()
	}
	if ip.Is4() && !p.Addr().Is4() {
		return 0
	}
	return min(max(p.Bits(), 0), ip.BitLen())
}
