// Package cache is the edge node's shared HTTP cache: responses kept in
// memory up to a byte budget, evicted by W-TinyLFU (the otter library, a Go
// port of Caffeine's policy), with freshness from the origin's headers and
// the domain's rules (policy.go), and request collapsing that streams one
// origin response to every waiting client as it arrives (fill.go).
//
// With Config.Dir set, a disk tier (disk.go) keeps entries across
// restarts: every stored entry is also written there in the background,
// and a memory miss that the disk holds is read back and promoted.
package cache

import (
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// Entry is a stored response. It is immutable: revalidation stores a new
// Entry.
type Entry struct {
	// Base is the base key (BaseKey), Key the full key (with the variant).
	Base, Key string
	Status    int
	Header    http.Header
	Body      []byte
	// Stored is when the response arrived; InitialAge the Age it came with.
	Stored       time.Time
	InitialAge   time.Duration
	Fresh        time.Duration
	StaleIfError time.Duration
	// varies marks the placeholder kept under a base key whose responses
	// Vary on Accept-Encoding: the real entries are under variant keys.
	varies bool
	// memo holds what Memo derived from the entry.
	memo atomic.Pointer[any]
}

// Memo returns a value derived from the entry, calling derive on first use
// and keeping its result with the entry (the node keeps the entry's
// prepared HTTP/1.1 response head there). Entries are immutable, so the
// value never goes stale; derive must be a pure function of the entry,
// since concurrent first uses may each call it, and one result is kept.
// The memoised value is not counted in the entry's weight.
func (e *Entry) Memo(derive func(*Entry) any) any {
	if p := e.memo.Load(); p != nil {
		return *p
	}
	v := derive(e)
	e.memo.Store(&v)
	return v
}

// Age is the entry's current age.
func (e *Entry) Age(now time.Time) time.Duration { return e.InitialAge + now.Sub(e.Stored) }

// IsFresh reports whether the entry may be served without revalidation.
func (e *Entry) IsFresh(now time.Time) bool { return e.Age(now) < e.Fresh }

// UsableOnError reports whether the stale entry may stand in for a failed
// origin (stale-if-error).
func (e *Entry) UsableOnError(now time.Time) bool { return e.Age(now) < e.Fresh+e.StaleIfError }

// entryOverhead approximates the memory of an entry beyond its body.
const entryOverhead = 512

func (e *Entry) weight() uint32 {
	n := entryOverhead + len(e.Key) + len(e.Body)
	for k, vs := range e.Header {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return uint32(min(n, 1<<31))
}

// Config sizes the cache.
type Config struct {
	// MaxBytes bounds the memory tier. Default 256 MiB.
	MaxBytes int64
	// MaxObjectBytes is the largest response stored. Default MaxBytes/16.
	MaxObjectBytes int64
	// Now is the clock; default time.Now.
	Now func() time.Time

	// Dir, if not empty, enables the disk tier: entries are also kept
	// there, one file each, and found again after a restart.
	Dir string
	// DiskBytes bounds the disk tier (the sum of its files' sizes).
	// Default DefaultDiskBytes (10 GiB).
	DiskBytes int64
	// DiskQueue is how many stores may wait for the disk writer; a store
	// that finds the queue full is kept in memory only. Default 1024.
	DiskQueue int
	// Logger reports disk tier trouble; default slog.Default().
	Logger *slog.Logger
	// PassTTL is how long a key whose origin response could not be shared
	// (no-store, private, a cookie…) is fetched without request
	// collapsing: concurrent requests go to the origin side by side
	// instead of each waiting for the one before (Varnish's hit-for-miss).
	// A response that can be stored ends it early. Default DefaultPassTTL.
	PassTTL time.Duration
	// HoldPrevious keeps the entries a previous run left in Dir from
	// being served until ServePrevious: lookups find them absent (a miss
	// stores a fresh copy over them), while purges remove them as usual.
	// It is for an owner that must catch up on what happened while it was
	// down (purges it missed) before it serves what it kept.
	HoldPrevious bool
}

// DefaultPassTTL is Config.PassTTL's default, Varnish's for hit-for-miss.
const DefaultPassTTL = 2 * time.Minute

// maxPasses bounds the keys remembered as uncacheable (the least used go
// first): a forgotten one costs one collapsed round, not correctness.
const maxPasses = 1 << 16

// Stats are cumulative counters.
type Stats struct {
	Evictions uint64
}

// Cache is safe for concurrent use.
type Cache struct {
	cfg  Config
	mem  *otter.Cache[string, *Entry]
	disk *disk // nil without Config.Dir

	// mu orders stores against purges, so that a fill that started before
	// a purge never stores its (stale) response after it.
	mu    sync.Mutex
	fills map[string]*Fill
	// solo are fills of uncacheable keys (passes), which nobody joins;
	// purges doom them as they doom shared fills.
	solo map[*Fill]struct{}
	// passes marks keys whose last origin response could not be shared,
	// until a time (hit-for-miss): Acquire does not collapse their
	// requests, which would only queue each behind the one before.
	passes *otter.Cache[string, time.Time]

	evictions func()
	closeOnce sync.Once
}

// New returns a cache. onEvict, if not nil, is called for every entry
// evicted for size from the memory tier. If the disk tier cannot be set
// up, New logs why and returns a memory-only cache; Open reports it.
func New(cfg Config, onEvict func()) *Cache {
	c, err := Open(cfg, onEvict)
	if err != nil {
		cfg.Dir = ""
		c, _ = Open(cfg, onEvict)
		c.cfg.Logger.Error("cache: disk tier disabled", "err", err)
	}
	return c
}

// Open is New, failing when Config.Dir cannot be used. The disk tier's
// files are indexed in the background (WaitIndexed); lookups of entries
// not indexed yet miss.
func Open(cfg Config, onEvict func()) (*Cache, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 256 << 20
	}
	if cfg.MaxObjectBytes <= 0 {
		cfg.MaxObjectBytes = cfg.MaxBytes / 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DiskBytes <= 0 {
		cfg.DiskBytes = DefaultDiskBytes
	}
	if cfg.DiskQueue <= 0 {
		cfg.DiskQueue = defaultDiskQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PassTTL <= 0 {
		cfg.PassTTL = DefaultPassTTL
	}
	c := &Cache{cfg: cfg, fills: map[string]*Fill{}, solo: map[*Fill]struct{}{}, evictions: onEvict,
		passes: otter.Must(&otter.Options[string, time.Time]{MaximumSize: maxPasses})}
	if cfg.Dir != "" {
		d, err := openDisk(cfg)
		if err != nil {
			return nil, err
		}
		c.disk = d
	}
	c.mem = otter.Must(&otter.Options[string, *Entry]{
		MaximumWeight: uint64(cfg.MaxBytes),
		Weigher:       func(_ string, e *Entry) uint32 { return e.weight() },
		OnDeletion: func(ev otter.DeletionEvent[string, *Entry]) {
			if ev.WasEvicted() && c.evictions != nil {
				c.evictions()
			}
		},
	})
	if c.disk != nil {
		c.disk.start(c)
	}
	return c, nil
}

// Close stops the cache's background work: the disk writer finishes the
// writes queued so far, the start-up index stops.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		if c.disk != nil {
			c.disk.close(c)
		}
		c.mem.StopAllGoroutines()
		c.passes.StopAllGoroutines()
	})
}

// ServePrevious serves the entries a previous run left on disk from now
// on (see Config.HoldPrevious). It may be called any number of times.
func (c *Cache) ServePrevious() {
	if c.disk != nil {
		c.disk.held.Store(false)
	}
}

// HoldingPrevious reports whether what a previous run left on disk is
// held (Config.HoldPrevious, until ServePrevious).
func (c *Cache) HoldingPrevious() bool { return c.disk != nil && c.disk.held.Load() }

// WaitIndexed blocks until the disk tier has indexed the files a previous
// run left (at once without a disk tier).
func (c *Cache) WaitIndexed() {
	if c.disk != nil {
		<-c.disk.indexed
	}
}

// Now is the cache's clock.
func (c *Cache) Now() time.Time { return c.cfg.Now() }

// MaxObjectBytes is the largest response the cache stores.
func (c *Cache) MaxObjectBytes() int64 { return c.cfg.MaxObjectBytes }

// Lookup returns the entry for a request's base key (following a Vary on
// Accept-Encoding to the request's variant), or nil.
func (c *Cache) Lookup(base string, r *http.Request) *Entry {
	return c.LookupEncoding(base, r.Header.Get("Accept-Encoding"))
}

// LookupEncoding is Lookup for a request whose Accept-Encoding header has
// the value acceptEncoding ("" when it has none).
func (c *Cache) LookupEncoding(base, acceptEncoding string) *Entry {
	e := c.get(base)
	if e != nil && e.varies {
		e = c.get(variantKey(base, acceptEncoding))
	}
	return e
}

// get looks in memory, then on disk (promoting a disk hit to memory).
func (c *Cache) get(key string) *Entry {
	if e, ok := c.mem.GetIfPresent(key); ok {
		return e
	}
	if c.disk == nil {
		return nil
	}
	return c.disk.load(c, key)
}

// store keeps e (its Key already set) unless a purge doomed the fill.
// c.mu must be held.
func (c *Cache) storeLocked(e *Entry, varies bool) {
	if int64(len(e.Body)) > c.cfg.MaxObjectBytes {
		return
	}
	if varies {
		ph := &Entry{Base: e.Base, Key: e.Base, varies: true}
		c.mem.Set(e.Base, ph)
		if c.disk != nil && !c.disk.placeholderLocked(e.Base) {
			c.disk.putLocked(ph)
		}
	} else if c.variesLocked(e.Base) {
		c.invalidateBaseLocked(e.Base)
	}
	c.mem.Set(e.Key, e)
	if c.disk != nil {
		c.disk.putLocked(e)
	}
}

// variesLocked reports whether either tier holds a Vary placeholder under
// base. c.mu must be held.
func (c *Cache) variesLocked(base string) bool {
	if old, ok := c.mem.GetIfPresent(base); ok && old.varies {
		return true
	}
	return c.disk != nil && c.disk.placeholderLocked(base)
}

// Store keeps e directly (prefetch and revalidation paths that do not use
// a fill). e.Key must be set.
func (c *Cache) Store(e *Entry, varies bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.storeLocked(e, varies)
}

func (c *Cache) invalidateBaseLocked(base string) {
	for _, k := range []string{base, base + "\x00ae=br", base + "\x00ae=gzip", base + "\x00ae=identity"} {
		c.mem.Invalidate(k)
		if c.disk != nil {
			c.disk.forgetLocked(k)
		}
	}
}

// Len is the number of entries in the memory tier.
func (c *Cache) Len() int { return c.mem.EstimatedSize() }

// WeightedSize is the memory tier's use in bytes (approximate).
func (c *Cache) WeightedSize() uint64 { return c.mem.WeightedSize() }

// DiskLen is the number of entries in the disk tier (0 without one).
func (c *Cache) DiskLen() int {
	if c.disk == nil {
		return 0
	}
	return c.disk.index.EstimatedSize()
}

// DiskWeightedSize is the disk tier's use in bytes (0 without one).
func (c *Cache) DiskWeightedSize() uint64 {
	if c.disk == nil {
		return 0
	}
	return c.disk.index.WeightedSize()
}

// Matcher selects base keys to purge.
type Matcher func(base string) bool

// PurgeExact removes one URL (every variant).
func PurgeExact(base string) Matcher { return func(b string) bool { return b == base } }

// PurgePrefix removes every base key starting with prefix (a directory,
// or a URL without query for ignore-params purges).
func PurgePrefix(prefix string) Matcher {
	return func(b string) bool { return strings.HasPrefix(b, prefix) }
}

// PurgeIgnoringQuery removes a URL with any query string.
func PurgeIgnoringQuery(base string) Matcher {
	return func(b string) bool { return b == base || strings.HasPrefix(b, base+"?") }
}

// PurgeRegexp removes base keys of host whose path and query match re.
func PurgeRegexp(host string, re *regexp.Regexp) Matcher {
	return func(b string) bool {
		rest, ok := strings.CutPrefix(b, host)
		return ok && strings.HasPrefix(rest, "/") && re.MatchString(rest)
	}
}

// Purge removes every entry whose base key matches, from both tiers, and
// dooms in-flight fills and queued disk writes that match so they do not
// store what they fetched. The purged files are gone when it returns. It
// returns how many entries (keys) it removed.
func (c *Cache) Purge(match Matcher) int {
	c.mu.Lock()
	for _, f := range c.fills {
		if match(f.base) {
			f.doom()
		}
	}
	for f := range c.solo {
		if match(f.base) {
			f.doom()
		}
	}
	var doomed []string
	for k, e := range c.mem.All() {
		if match(e.Base) {
			doomed = append(doomed, k)
		}
	}
	for _, k := range doomed {
		c.mem.Invalidate(k)
	}
	if c.disk == nil {
		c.mu.Unlock()
		return len(doomed)
	}
	files := c.disk.purgeLocked(match)
	c.mu.Unlock()
	c.disk.unlinkPurged(files)
	n := len(doomed)
	if len(files) > 0 {
		seen := make(map[string]bool, len(doomed))
		for _, k := range doomed {
			seen[k] = true
		}
		for _, f := range files {
			if !seen[f.key] {
				n++
			}
		}
	}
	return n
}

// PurgeAll empties the cache, both tiers (a node that may have missed
// purges).
func (c *Cache) PurgeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.fills {
		f.doom()
	}
	for f := range c.solo {
		f.doom()
	}
	c.mem.InvalidateAll()
	if c.disk != nil {
		c.disk.purgeAllLocked()
	}
}
