package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func openDiskCache(t testing.TB, dir string, mod func(*Config)) *Cache {
	t.Helper()
	cfg := Config{MaxBytes: 8 << 20, Dir: dir, DiskBytes: 8 << 20}
	if mod != nil {
		mod(&cfg)
	}
	c, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var testStored = time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)

func testEntry(key, body string) *Entry {
	base, _, _ := strings.Cut(key, "\x00")
	return &Entry{Base: base, Key: key, Status: 200,
		Header: http.Header{"Content-Type": {"text/plain"}, "Etag": {`"v1"`}, "X-Multi": {"a", "b"}},
		Body:   []byte(body), Stored: testStored, InitialAge: 7 * time.Second, Fresh: time.Hour, StaleIfError: 2 * time.Hour}
}

func lookup(c *Cache, base, acceptEncoding string) *Entry {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	if acceptEncoding != "" {
		r.Header.Set("Accept-Encoding", acceptEncoding)
	}
	return c.Lookup(base, r)
}

// entryFiles lists the entry files under dir's fan-out directories.
func entryFiles(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !e.IsDir() || !isHexName(e.Name(), 2) {
			continue
		}
		err := filepath.WalkDir(filepath.Join(dir, e.Name()), func(p string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			fi, err := de.Info()
			if err != nil {
				return err
			}
			out[p] = fi.Size()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func keyPath(dir, key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(dir, h[:2], h[2:4], h)
}

func sameEntry(t *testing.T, got, want *Entry) {
	t.Helper()
	if got == nil {
		t.Fatalf("%q: not found", want.Key)
	}
	if got.Key != want.Key || got.Base != want.Base || got.Status != want.Status || !bytes.Equal(got.Body, want.Body) ||
		!reflect.DeepEqual(got.Header, want.Header) || !got.Stored.Equal(want.Stored) ||
		got.InitialAge != want.InitialAge || got.Fresh != want.Fresh || got.StaleIfError != want.StaleIfError || got.varies != want.varies {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestDiskSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, nil)
	c.WaitIndexed()
	want := []*Entry{
		testEntry("example.com/a.txt", "alpha"),
		testEntry("example.com/b.txt?x=1", strings.Repeat("b", 100000)),
		{Base: "example.com/empty", Key: "example.com/empty", Status: 404, Header: http.Header{}, Stored: testStored},
	}
	want[0].Header.Set("X-Latin1", "caf\xe9") // not UTF-8: kept as bytes
	for _, e := range want {
		c.Store(e, false)
	}
	c.Close() // flushes the queue: no explicit wait

	c2 := openDiskCache(t, dir, nil)
	_ = lookup(c2, want[0].Base, "") // racing the index: a miss or the entry
	c2.WaitIndexed()
	if n := c2.DiskLen(); n != len(want) {
		t.Fatalf("DiskLen = %d, want %d", n, len(want))
	}
	for _, w := range want {
		got := lookup(c2, w.Base, "")
		sameEntry(t, got, w)
		now := testStored.Add(30 * time.Minute)
		if got.Age(now) != w.Age(now) || got.IsFresh(now) != w.IsFresh(now) || got.UsableOnError(now) != w.UsableOnError(now) {
			t.Fatalf("%s: freshness not kept", w.Key)
		}
	}
	if c2.Len() != len(want) {
		t.Fatalf("memory Len = %d after promoting %d", c2.Len(), len(want))
	}
	// Layout and modes.
	files := entryFiles(t, dir)
	if len(files) != len(want) {
		t.Fatalf("%d files, want %d: %v", len(files), len(want), files)
	}
	for _, w := range want {
		p := keyPath(dir, w.Key)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", p, fi.Mode())
		}
		for _, d := range []string{filepath.Dir(p), filepath.Dir(filepath.Dir(p))} {
			if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v %v", d, fi.Mode(), err)
			}
		}
	}
}

// TestDiskHoldPrevious: with HoldPrevious, what a previous run left is
// not served until ServePrevious, while what this run stores is; a purge
// while held removes held entries for good.
func TestDiskHoldPrevious(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, nil)
	c.WaitIndexed()
	kept, purged := testEntry("example.com/kept.txt", "old kept"), testEntry("example.com/purged.txt", "old purged")
	c.Store(kept, false)
	c.Store(purged, false)
	c.Close()

	c2 := openDiskCache(t, dir, func(cfg *Config) { cfg.HoldPrevious = true })
	c2.WaitIndexed()
	if n := c2.DiskLen(); n != 2 {
		t.Fatalf("DiskLen = %d, want the 2 entries indexed", n)
	}
	for _, e := range []*Entry{kept, purged} {
		if got := lookup(c2, e.Base, ""); got != nil {
			t.Fatalf("%s served while held: %q", e.Key, got.Body)
		}
	}
	// This run's stores are served at once, and replace the held copy.
	fresh := testEntry("example.com/kept.txt", "new kept")
	c2.Store(fresh, false)
	if got := lookup(c2, fresh.Base, ""); got == nil || string(got.Body) != "new kept" {
		t.Fatalf("a store of this run: %v", got)
	}
	if n := c2.Purge(PurgeExact(purged.Base)); n != 1 {
		t.Fatalf("purge of a held entry removed %d", n)
	}
	c2.ServePrevious()
	if got := lookup(c2, purged.Base, ""); got != nil {
		t.Fatalf("purged while held, served after: %q", got.Body)
	}
	c2.Close()

	// The new copy reached the disk; a third run without holding serves it.
	c3 := openDiskCache(t, dir, nil)
	c3.WaitIndexed()
	if got := lookup(c3, fresh.Base, ""); got == nil || string(got.Body) != "new kept" {
		t.Fatalf("after the third start: %v", got)
	}
	if got := lookup(c3, purged.Base, ""); got != nil {
		t.Fatalf("purged entry back after a restart: %q", got.Body)
	}

	// ServePrevious releases what a previous run left.
	c3.Close()
	c4 := openDiskCache(t, dir, func(cfg *Config) { cfg.HoldPrevious = true })
	c4.WaitIndexed()
	if got := lookup(c4, fresh.Base, ""); got != nil {
		t.Fatal("served while held")
	}
	c4.ServePrevious()
	if got := lookup(c4, fresh.Base, ""); got == nil || string(got.Body) != "new kept" {
		t.Fatalf("after ServePrevious: %v", got)
	}
}

func TestDiskVariesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, nil)
	base := "example.com/app.js"
	br := testEntry(base+"\x00ae=br", "brotli")
	gz := testEntry(base+"\x00ae=gzip", "gzipped")
	c.Store(br, true)
	c.Store(gz, true)
	c.Close()

	c2 := openDiskCache(t, dir, nil)
	c2.WaitIndexed()
	if n := c2.DiskLen(); n != 3 {
		t.Fatalf("DiskLen = %d, want 3 (placeholder and two variants)", n)
	}
	sameEntry(t, lookup(c2, base, "gzip, deflate, br"), br)
	sameEntry(t, lookup(c2, base, "gzip"), gz)
	if e := lookup(c2, base, ""); e != nil {
		t.Fatalf("identity variant: got %q", e.Body)
	}
	// The placeholder only on disk still makes a plain store drop the
	// variants.
	c2.mem.InvalidateAll()
	plain := testEntry(base, "plain")
	c2.Store(plain, false)
	c2.disk.flush()
	if n := c2.DiskLen(); n != 1 {
		t.Fatalf("DiskLen = %d after a plain store, want 1", n)
	}
	if n := len(entryFiles(t, dir)); n != 1 {
		t.Fatalf("%d files after a plain store, want 1", n)
	}
	c2.mem.InvalidateAll()
	sameEntry(t, lookup(c2, base, "br"), plain)
}

func TestDiskEvictionStaysWithinBudget(t *testing.T) {
	dir := t.TempDir()
	const budget = 64 << 10
	c := openDiskCache(t, dir, func(cfg *Config) { cfg.DiskBytes = budget })
	for i := range 200 {
		c.Store(testEntry(fmt.Sprintf("example.com/%d", i), strings.Repeat("x", 1000+i*20)), false)
		if i%20 == 0 {
			c.disk.flush()
		}
	}
	c.disk.flush()
	if w := c.DiskWeightedSize(); w > budget || w == 0 {
		t.Fatalf("DiskWeightedSize = %d, budget %d", w, budget)
	}
	files := entryFiles(t, dir)
	var total int64
	for _, s := range files {
		total += s
	}
	if total > budget {
		t.Fatalf("files hold %d bytes, budget %d", total, budget)
	}
	if len(files) != c.DiskLen() || len(files) >= 200 {
		t.Fatalf("%d files, DiskLen %d", len(files), c.DiskLen())
	}
	for k := range c.disk.index.All() {
		if _, ok := files[keyPath(dir, k)]; !ok {
			t.Fatalf("%s indexed without a file", k)
		}
	}
	// An entry larger than the whole disk tier stays in memory only.
	big := testEntry("example.com/big", strings.Repeat("y", budget))
	c.Store(big, false)
	c.disk.flush()
	if _, err := os.Stat(keyPath(dir, big.Key)); err == nil {
		t.Fatal("an entry over DiskBytes was written")
	}
	if lookup(c, big.Base, "") == nil {
		t.Fatal("the memory tier lost the large entry")
	}
}

func TestDiskMemoryEvictionThenDiskHitPromotes(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, func(cfg *Config) { cfg.MaxBytes = 32 << 10; cfg.MaxObjectBytes = 8 << 10 })
	var all []*Entry
	for i := range 40 {
		e := testEntry(fmt.Sprintf("example.com/p%d", i), strings.Repeat(string(rune('a'+i%26)), 4000))
		all = append(all, e)
		c.Store(e, false)
		c.disk.flush() // the queue holds at most half the memory tier's bytes
	}
	c.disk.flush()
	c.mem.CleanUp()
	var evicted *Entry
	for _, e := range all {
		if _, ok := c.mem.GetEntryQuietly(e.Key); !ok {
			evicted = e
			break
		}
	}
	if evicted == nil {
		t.Fatal("nothing was evicted from memory")
	}
	if c.DiskLen() != len(all) {
		t.Fatalf("DiskLen = %d, want %d", c.DiskLen(), len(all))
	}
	// Every disk hit is promoted; W-TinyLFU may refuse a cold entry
	// admission to a full memory tier, but not one that keeps being hit.
	for i := 0; ; i++ {
		sameEntry(t, lookup(c, evicted.Base, ""), evicted)
		c.mem.CleanUp()
		if _, ok := c.mem.GetEntryQuietly(evicted.Key); ok {
			break
		}
		if i == 20 {
			t.Fatal("repeated disk hits were never promoted to memory")
		}
	}
	// With room in memory, one hit is enough.
	c.mem.InvalidateAll()
	sameEntry(t, lookup(c, evicted.Base, ""), evicted)
	if _, ok := c.mem.GetEntryQuietly(evicted.Key); !ok {
		t.Fatal("the disk hit was not promoted to memory")
	}
}

func TestDiskPurge(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, nil)
	a1, a2, b := testEntry("example.com/a/1", "1"), testEntry("example.com/a/2", "2"), testEntry("example.com/b/1", "3")
	for _, e := range []*Entry{a1, a2, b} {
		c.Store(e, false)
	}
	c.disk.flush()
	c.mem.Invalidate(a2.Key) // only on disk now: still counted
	if n := c.Purge(PurgePrefix("example.com/a/")); n != 2 {
		t.Fatalf("Purge removed %d, want 2", n)
	}
	// The files are gone when Purge returns, without waiting for the
	// janitor.
	for _, e := range []*Entry{a1, a2} {
		if _, err := os.Stat(keyPath(dir, e.Key)); err == nil {
			t.Fatalf("%s: file survived the purge", e.Key)
		}
		if lookup(c, e.Base, "") != nil {
			t.Fatalf("%s: served after the purge", e.Key)
		}
	}
	c.Close()
	c2 := openDiskCache(t, dir, nil)
	c2.WaitIndexed()
	if lookup(c2, a1.Base, "") != nil || lookup(c2, a2.Base, "") != nil {
		t.Fatal("a purged entry came back after a restart")
	}
	sameEntry(t, lookup(c2, b.Base, ""), b)
}

func TestDiskPurgeAll(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, nil)
	for i := range 50 {
		c.Store(testEntry(fmt.Sprintf("example.com/%d", i), "x"), false)
	}
	c.disk.flush()
	c.PurgeAll()
	if n := len(entryFiles(t, dir)); n != 0 {
		t.Fatalf("%d files after PurgeAll", n)
	}
	if c.DiskLen() != 0 || lookup(c, "example.com/1", "") != nil {
		t.Fatal("PurgeAll left entries")
	}
	// Stores after PurgeAll land.
	after := testEntry("example.com/after", "after")
	c.Store(after, false)
	c.disk.flush()
	c.Close()
	c2 := openDiskCache(t, dir, nil)
	c2.WaitIndexed()
	if c2.DiskLen() != 1 {
		t.Fatalf("DiskLen = %d after restart, want 1", c2.DiskLen())
	}
	sameEntry(t, lookup(c2, after.Base, ""), after)
	// The trash (of the first cache, or left for the second) goes.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ents, _ := os.ReadDir(dir)
		trash := ""
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), trashPrefix) {
				trash = e.Name()
			}
		}
		if trash == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trash left behind: %s", trash)
		}
	}
}

// blockWriter makes the disk writer stop before committing key, until
// the returned release is called; reached is closed when it stops there.
func blockWriter(c *Cache, key string) (reached <-chan struct{}, release func()) {
	r, rel := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.disk.beforeCommit = func(k string) {
		if k == key {
			once.Do(func() { close(r); <-rel })
		}
	}
	return r, func() { close(rel) }
}

func assertGone(t *testing.T, c *Cache, dir string, e *Entry) {
	t.Helper()
	c.disk.flush()
	if _, ok := c.disk.index.GetEntryQuietly(e.Key); ok {
		t.Fatalf("%s: indexed after the purge", e.Key)
	}
	if _, err := os.Stat(keyPath(dir, e.Key)); err == nil {
		t.Fatalf("%s: on disk after the purge", e.Key)
	}
	if got := lookup(c, e.Base, ""); got != nil {
		t.Fatalf("%s: served after the purge", e.Key)
	}
}

func TestDiskPurgeCancelsQueuedWrite(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, nil)
	blocker, target := testEntry("example.com/blocker", "b"), testEntry("example.com/target", "t")
	reached, release := blockWriter(c, blocker.Key)
	c.Store(blocker, false)
	<-reached
	c.Store(target, false) // queued behind the blocked writer
	c.Purge(PurgeExact(target.Base))
	release()
	assertGone(t, c, dir, target)
	if lookup(c, blocker.Base, "") == nil {
		t.Fatal("the unrelated entry was lost")
	}
}

func TestDiskPurgeDuringWriteOfTemp(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprint("all=", all), func(t *testing.T) {
			dir := t.TempDir()
			c := openDiskCache(t, dir, nil)
			target := testEntry("example.com/target", "t")
			reached, release := blockWriter(c, target.Key)
			c.Store(target, false)
			<-reached // the temporary file is written, not yet renamed
			if all {
				c.PurgeAll()
			} else {
				c.Purge(PurgeExact(target.Base))
			}
			release()
			assertGone(t, c, dir, target)
			c.Close()
			c2 := openDiskCache(t, dir, nil)
			c2.WaitIndexed()
			if c2.DiskLen() != 0 {
				t.Fatalf("DiskLen = %d after restart", c2.DiskLen())
			}
			// No temporary file is left either.
			if n := len(entryFiles(t, dir)); n != 0 {
				t.Fatalf("%d files left", n)
			}
		})
	}
}

// TestDiskPurgeRacesWrites: a purge that follows a store (and a fill) must
// win over the disk write, whatever the writer is doing at the time.
func TestDiskPurgeRacesWrites(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, func(cfg *Config) { cfg.DiskQueue = 8 })
	c.disk.beforeCommit = func(string) {
		if rand.IntN(3) == 0 {
			runtime.Gosched()
		}
	}
	var noise sync.WaitGroup
	stop := make(chan struct{})
	noise.Add(1)
	go func() { // keeps the writer and the index busy
		defer noise.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Store(testEntry(fmt.Sprintf("noise.example/%d", i%50), "n"), i%7 == 0)
			lookup(c, fmt.Sprintf("noise.example/%d", (i*7)%50), "")
		}
	}()
	const rounds = 300
	var purged []*Entry
	var wg sync.WaitGroup
	for i := range rounds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := testEntry(fmt.Sprintf("example.com/race/%d", i), "stale")
			switch i % 3 {
			case 0:
				c.Store(e, false)
			case 1: // through a fill
				f, _ := c.Join(e.Key, e.Base)
				f.SetHeader(200, e.Header, true, "MISS")
				f.Write(e.Body)
				f.Finish(nil, &StoreAs{Decision: Decision{Store: true, Fresh: time.Hour}, Stored: testStored})
			case 2: // a variant and its placeholder
				e = testEntry(e.Base+"\x00ae=gzip", "stale")
				c.Store(e, true)
			}
			if rand.IntN(2) == 0 {
				runtime.Gosched()
			}
			c.Purge(PurgeExact(e.Base))
		}()
		purged = append(purged, testEntry(fmt.Sprintf("example.com/race/%d", i), ""))
	}
	wg.Wait()
	close(stop)
	noise.Wait()
	c.disk.flush()
	for k, m := range c.disk.index.All() {
		if strings.HasPrefix(m.base, "example.com/race/") {
			t.Fatalf("%q: a purged entry's write landed", k)
		}
	}
	for _, e := range purged {
		for _, k := range []string{e.Key, e.Key + "\x00ae=gzip"} {
			if _, err := os.Stat(keyPath(dir, k)); err == nil {
				t.Fatalf("%q: file survived its purge", k)
			}
		}
	}
	c.Close()
	c2 := openDiskCache(t, dir, nil)
	c2.WaitIndexed()
	for k, m := range c2.disk.index.All() {
		if strings.HasPrefix(m.base, "example.com/race/") {
			t.Fatalf("%q: a purged entry came back after a restart", k)
		}
	}
}

// TestDiskPurgeBetweenReadAndPromote: a lookup that read a file before a
// purge must not promote it to memory after.
func TestDiskPurgeBetweenReadAndPromote(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, nil)
	e := testEntry("example.com/x", "stale")
	c.Store(e, false)
	c.disk.flush()
	c.mem.Invalidate(e.Key)
	c.disk.beforePromote = func(string) { c.Purge(PurgeExact(e.Base)) }
	if got := lookup(c, e.Base, ""); got != nil {
		t.Fatalf("a lookup racing a purge returned %q", got.Body)
	}
	c.disk.beforePromote = nil
	if _, ok := c.mem.GetEntryQuietly(e.Key); ok {
		t.Fatal("a purged entry was promoted to memory")
	}
	if got := lookup(c, e.Base, ""); got != nil {
		t.Fatalf("served after the purge: %q", got.Body)
	}
}

func TestDiskPurgeDuringStartupIndex(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, nil)
	for i := range 300 {
		c.Store(testEntry(fmt.Sprintf("example.com/%c/%d", 'a'+i%2, i), "x"), false)
	}
	c.Close()
	c2 := openDiskCache(t, dir, nil)
	c2.Purge(PurgePrefix("example.com/a/")) // races the index
	c2.WaitIndexed()
	c2.disk.flush()
	for k, m := range c2.disk.index.All() {
		if strings.HasPrefix(m.base, "example.com/a/") {
			t.Fatalf("%q indexed after its purge", k)
		}
	}
	if n := c2.DiskLen(); n != 150 {
		t.Fatalf("DiskLen = %d, want 150", n)
	}
	if n := len(entryFiles(t, dir)); n != 150 {
		t.Fatalf("%d files, want 150", n)
	}
}

func flipByte(t *testing.T, p string, off int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += len(b)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDiskCorruptFilesAreDiscarded(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, nil)
	body, meta, trunc, good := testEntry("example.com/body", "body bytes"), testEntry("example.com/meta", "m"),
		testEntry("example.com/trunc", "truncated"), testEntry("example.com/good", "good")
	for _, e := range []*Entry{body, meta, trunc, good} {
		c.Store(e, false)
	}
	c.Close()
	flipByte(t, keyPath(dir, body.Key), -1)           // in the body: found when read
	flipByte(t, keyPath(dir, meta.Key), diskFixedLen) // in the metadata: found at start-up
	if err := os.Truncate(keyPath(dir, trunc.Key), 40); err != nil {
		t.Fatal(err)
	}
	// Foreign and stale files.
	goodDir := filepath.Dir(keyPath(dir, good.Key))
	foreign := filepath.Join(goodDir, "not-an-entry")
	staleTmp := filepath.Join(goodDir, tmpPrefix+"0123456789abcdef-1")
	topLevel := filepath.Join(dir, "README")
	for _, p := range []string{foreign, staleTmp, topLevel} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A valid file under the wrong name.
	misnamed := keyPath(dir, "example.com/other")
	os.MkdirAll(filepath.Dir(misnamed), 0o700)
	if b, err := os.ReadFile(keyPath(dir, good.Key)); err != nil || os.WriteFile(misnamed, b, 0o600) != nil {
		t.Fatal(err)
	}

	c2 := openDiskCache(t, dir, nil)
	c2.WaitIndexed()
	if n := c2.DiskLen(); n != 2 {
		t.Fatalf("DiskLen = %d, want 2 (the body corruption is found on read)", n)
	}
	if e := lookup(c2, body.Base, ""); e != nil {
		t.Fatalf("served a corrupt entry: %q", e.Body)
	}
	for _, e := range []*Entry{meta, trunc} {
		if lookup(c2, e.Base, "") != nil {
			t.Fatalf("%s served", e.Key)
		}
	}
	sameEntry(t, lookup(c2, good.Base, ""), good)
	c2.disk.flush()
	for _, p := range []string{keyPath(dir, body.Key), keyPath(dir, meta.Key), keyPath(dir, trunc.Key), foreign, staleTmp, misnamed} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s: not removed", p)
		}
	}
	if _, err := os.Stat(topLevel); err != nil {
		t.Errorf("a file at the top of Dir was removed: %v", err)
	}
	if c2.DiskLen() != 1 {
		t.Fatalf("DiskLen = %d, want 1", c2.DiskLen())
	}

	// Corruption while running: the memory copy is gone, the file is bad.
	c2.mem.InvalidateAll()
	flipByte(t, keyPath(dir, good.Key), -2)
	if e := lookup(c2, good.Base, ""); e != nil {
		t.Fatalf("served a corrupt entry: %q", e.Body)
	}
}

func TestDiskQueueFullKeepsMemoryAndDropsOldDiskCopy(t *testing.T) {
	dir := t.TempDir()
	c := openDiskCache(t, dir, func(cfg *Config) { cfg.DiskQueue = 1 })
	old := testEntry("example.com/k", "old")
	c.Store(old, false)
	c.disk.flush()
	blocker := testEntry("example.com/blocker", "b")
	reached, release := blockWriter(c, blocker.Key)
	c.Store(blocker, false)
	<-reached
	c.Store(testEntry("example.com/filler", "f"), false) // fills the queue
	newer := testEntry("example.com/k", "newer")
	c.Store(newer, false) // dropped from the disk queue
	if e := lookup(c, newer.Base, ""); e == nil || string(e.Body) != "newer" {
		t.Fatal("memory does not serve the newest entry")
	}
	release()
	c.disk.flush()
	c.mem.InvalidateAll()
	if e := lookup(c, old.Base, ""); e != nil {
		t.Fatalf("the disk served a copy older than memory had: %q", e.Body)
	}
}

func TestDiskOpenFailsOnBadDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: filepath.Join(file, "sub")}, nil); err == nil {
		t.Fatal("Open accepted a directory under a file")
	}
	c := New(Config{Dir: filepath.Join(file, "sub")}, nil) // memory only
	defer c.Close()
	c.Store(testEntry("example.com/x", "x"), false)
	if lookup(c, "example.com/x", "") == nil || c.DiskLen() != 0 {
		t.Fatal("the memory-only fallback does not work")
	}
}

func TestDiskCloseStopsGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	for range 2 {
		c, err := Open(Config{Dir: dir}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			c.Store(testEntry(fmt.Sprintf("example.com/%d", i), "x"), i%2 == 0)
		}
		c.Purge(PurgeExact("example.com/3"))
		c.PurgeAll()
		c.Store(testEntry("example.com/after", "x"), false)
		c.Close()
		c.Close() // idempotent
	}
}

func TestDiskFormatRoundTrip(t *testing.T) {
	e := testEntry("example.com/p?q=\xff\x00ae=br", "body")
	e.Base = "example.com/p?q=\xff"
	e.Header["Set-Weird"] = []string{"\x80\x81", ""}
	head, err := encodeHead(e, 42)
	if err != nil {
		t.Fatal(err)
	}
	b := append(head, e.Body...)
	r, got, err := parseEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.id != 42 {
		t.Fatalf("id %d", r.id)
	}
	sameEntry(t, got, e)
	ph := &Entry{Base: "example.com/v", Key: "example.com/v", varies: true}
	head, _ = encodeHead(ph, 1)
	if _, got, err := parseEntry(head); err != nil || !got.varies || got.Key != ph.Key {
		t.Fatalf("placeholder: %+v %v", got, err)
	}
	// Every single-byte corruption is caught.
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 1
		if _, _, err := parseEntry(c); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}

func FuzzDiskEntry(f *testing.F) {
	for _, e := range []*Entry{
		testEntry("example.com/a", "hello"),
		testEntry("example.com/a\x00ae=gzip", ""),
		{Base: "b", Key: "b", varies: true},
	} {
		head, _ := encodeHead(e, 7)
		f.Add(append(head, e.Body...))
		f.Add(head[:diskFixedLen])
	}
	f.Add([]byte(diskMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, h, err := parseHead(b, int64(len(b))); err == nil && (r == nil || h.size() != int64(len(b))) {
			t.Fatal("parseHead accepted an inconsistent head")
		}
		r, e, err := parseEntry(b)
		if err != nil {
			return
		}
		h, ferr := parseFixed(b)
		if ferr != nil || h.size() != int64(len(b)) {
			t.Fatal("accepted a file of the wrong size")
		}
		if !checksumOK(b, h) {
			t.Fatal("accepted a file whose checksum does not verify")
		}
		if e.Key != r.key || !r.valid() || (!e.varies && e.Header == nil) {
			t.Fatalf("accepted an invalid entry %+v", e)
		}
	})
}

// FuzzDiskMetadata reaches the metadata decoder past the checksums: the
// input is sealed with valid checksums first. Whatever it accepts must
// re-encode to a file that parses to the same entry.
func FuzzDiskMetadata(f *testing.F) {
	for _, e := range []*Entry{testEntry("example.com/a", "hello"), {Base: "b", Key: "b", varies: true}} {
		f.Add(recordOf(e, 9).marshal(), e.Body)
	}
	f.Fuzz(func(t *testing.T, meta, body []byte) {
		if len(meta) > 1<<16 {
			return
		}
		b := make([]byte, diskFixedLen, diskFixedLen+len(meta)+len(body))
		copy(b, diskMagic)
		binary.BigEndian.PutUint16(b[4:], diskVersion)
		binary.BigEndian.PutUint32(b[8:], uint32(len(meta)))
		binary.BigEndian.PutUint64(b[12:], uint64(len(body)))
		b = append(append(b, meta...), body...)
		tab := crc32.MakeTable(crc32.Castagnoli)
		binary.BigEndian.PutUint32(b[20:], crc32.Update(crc32.Checksum(b[:20], tab), tab, meta))
		binary.BigEndian.PutUint32(b[24:], crc32.Checksum(b[diskFixedLen:], tab))
		r, e, err := parseEntry(b)
		if err != nil {
			return
		}
		head, err := encodeHead(e, r.id)
		if err != nil {
			t.Fatal(err)
		}
		r2, e2, err := parseEntry(append(head, e.Body...))
		if err != nil || r2.id != r.id || !reflect.DeepEqual(e, e2) {
			t.Fatalf("re-encoding changed the entry: %v\n%+v\n%+v", err, e, e2)
		}
	})
}

// checksumOK recomputes the data checksum independently of parseEntry.
func checksumOK(b []byte, h diskHead) bool {
	return crc32.Checksum(b[diskFixedLen:], crc32.MakeTable(crc32.Castagnoli)) == h.dataCRC
}

func BenchmarkDiskHit(b *testing.B) {
	dir := b.TempDir()
	c := openDiskCache(b, dir, nil)
	const n = 64
	body := strings.Repeat("x", 16<<10)
	for i := range n {
		c.Store(testEntry(fmt.Sprintf("example.com/%d", i), body), false)
	}
	c.disk.flush()
	r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	b.SetBytes(int64(len(body)))
	i := 0
	for b.Loop() {
		key := fmt.Sprintf("example.com/%d", i%n)
		c.mem.Invalidate(key) // force the disk path
		if c.Lookup(key, r) == nil {
			b.Fatal("miss")
		}
		i++
	}
}
