package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// The disk tier (Config.Dir) keeps entries across restarts, bounded in
// bytes by its own W-TinyLFU index.
//
// Layout: one file per entry (format in diskfmt.go) at
// Dir/ab/cd/abcd…, the hex SHA-256 of the entry's key. A file is written
// to a temporary file in the same directory (.tmp-<nonce>-…, mode 0600)
// and renamed into place, so a reader sees a whole old file or a whole new
// one. Files are not fsync'd: that would cost every store a disk flush.
// A crash (of the machine; a crash of the process loses nothing the
// kernel took) can therefore lose recent entries, or leave files whose
// content did not reach the disk; their checksums fail and they are
// discarded, at start-up (header) or when read (body). A torn entry is
// never served.
//
// The index maps each key to a diskMeta (weight: the file's size). Its
// deletions (eviction, replacement, invalidation) are handed to the
// janitor goroutine, which removes the file unless the key was written
// again meanwhile. Start-up re-indexes the files in the background
// (reading only their heads); until then lookups of unindexed entries
// miss.
//
// Ordering. Cache.mu (taken first) orders stores, disk commits, promotions
// and purges; disk.mu (second) orders changes to the files against the
// index:
//
//   - Store queues a job (and records it in pending) under Cache.mu. The
//     writer writes the temporary file without locks, then, under
//     Cache.mu and disk.mu, checks that the job was not cancelled,
//     renames the file into place and indexes it: the commit is atomic
//     with respect to purges.
//   - Purge, under Cache.mu, cancels every matching pending job and
//     removes every matching key from the index (a commit that came first
//     is in the index, one that comes later finds its job cancelled), then
//     removes the files before it returns, skipping a key that a later
//     store (one after the purge, so legitimately) wrote again.
//   - A disk hit is promoted to memory under Cache.mu only if the index
//     still holds the very write that was read: a purge in between
//     removed it, so a purged entry is never brought back.
//   - The start-up scan indexes a file, under disk.mu, only if the key is
//     not indexed already (a newer write) and no purge or invalidation
//     since the scan began matches it (those are recorded while the scan
//     runs); otherwise it deletes the file.
type disk struct {
	dir       string
	maxBytes  int64
	maxObject int64
	nonce     string // names this instance's temporary files and trash
	log       *slog.Logger
	index     *otter.Cache[string, *diskMeta]
	nextID    atomic.Uint64
	epoch     atomic.Uint64 // bumped by PurgeAll, under mu
	held      atomic.Bool   // entries of a previous run are not served (Config.HoldPrevious)

	// Guarded by Cache.mu.
	pending     map[string]*diskJob // the newest queued write of each key
	closed      bool
	queue       chan *diskJob
	queuedBytes int64 // bodies waiting in queue, at most maxQueued
	maxQueued   int64

	// mu orders file renames and removals against the index.
	mu        sync.Mutex
	scanning  bool
	scanAll   bool
	scanPurge []Matcher
	scanKeys  map[string]struct{}

	wmu            sync.Mutex
	wcond          *sync.Cond
	wqueued, wdone uint64

	jmu            sync.Mutex
	jcond          *sync.Cond
	jq             []janitorTask
	jqueued, jdone uint64
	jclosed        bool

	indexed chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup // writer, scanner, trash removers
	jwg     sync.WaitGroup // janitor

	// Test hooks: beforeCommit runs in the writer between writing a
	// temporary file and committing it; beforePromote in a lookup between
	// reading a file and promoting it.
	beforeCommit, beforePromote func(key string)
	lastWarn                    atomic.Int64
}

// diskMeta is the index's record of one written file.
type diskMeta struct {
	base   string
	id     uint64
	size   int64
	varies bool
	epoch  uint64
	// previous: indexed from a file a previous run left (see disk.held).
	previous bool
	// purged (under disk.mu): the purge that removed the entry removes the
	// file itself.
	purged bool
}

// diskJob is a queued disk write.
type diskJob struct {
	e         *Entry
	cancelled bool // under Cache.mu
}

// janitorTask is a file to remove after an index deletion.
type janitorTask struct {
	key string
	m   *diskMeta
}

// purgedFile is a file a purge removes.
type purgedFile struct {
	key string
	m   *diskMeta
}

const (
	tmpPrefix   = ".tmp-"
	trashPrefix = ".trash-"
	// DefaultDiskBytes bounds the disk tier unless Config.DiskBytes says.
	DefaultDiskBytes = 10 << 30
	defaultDiskQueue = 1024
)

var errTooLarge = errors.New("cache: entry larger than the disk tier")

func openDisk(cfg Config) (*disk, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	probe, err := os.CreateTemp(cfg.Dir, tmpPrefix+"probe-*")
	if err != nil {
		return nil, fmt.Errorf("cache dir is not writable: %w", err)
	}
	probe.Close()
	os.Remove(probe.Name())
	d := &disk{dir: cfg.Dir, maxBytes: cfg.DiskBytes, maxObject: cfg.MaxObjectBytes,
		nonce: fmt.Sprintf("%016x", rand.Uint64()), log: cfg.Logger,
		pending: map[string]*diskJob{}, queue: make(chan *diskJob, cfg.DiskQueue), maxQueued: max(cfg.MaxBytes/2, cfg.MaxObjectBytes),
		scanning: true, scanKeys: map[string]struct{}{},
		indexed: make(chan struct{}), stop: make(chan struct{})}
	d.wcond = sync.NewCond(&d.wmu)
	d.jcond = sync.NewCond(&d.jmu)
	d.nextID.Store(rand.Uint64())
	d.held.Store(cfg.HoldPrevious)
	d.index = otter.Must(&otter.Options[string, *diskMeta]{
		MaximumWeight: uint64(cfg.DiskBytes),
		Weigher:       func(_ string, m *diskMeta) uint32 { return uint32(min(m.size, math.MaxUint32)) },
		// Atomic: the task is queued in the order the index changed.
		OnAtomicDeletion: d.onDeletion,
	})
	return d, nil
}

// start runs the writer, the janitor and the start-up scan.
func (d *disk) start(c *Cache) {
	d.wg.Add(2)
	d.jwg.Add(1)
	go d.writer(c)
	go d.janitor()
	go d.scan()
}

func (d *disk) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(d.dir, h[:2], h[2:4], h)
}

func (d *disk) stopped() bool {
	select {
	case <-d.stop:
		return true
	default:
		return false
	}
}

func (d *disk) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := d.lastWarn.Load()
	if now-last < int64(time.Minute) || !d.lastWarn.CompareAndSwap(last, now) {
		return
	}
	d.log.Warn(msg, args...)
}

// onDeletion runs inside the index's atomic deletion: it only queues.
func (d *disk) onDeletion(ev otter.DeletionEvent[string, *diskMeta]) {
	if ev.Cause == otter.CauseReplacement {
		return // the new file was renamed over the old one
	}
	if ev.Value.epoch != d.epoch.Load() {
		return // PurgeAll moved the file to the trash
	}
	d.jmu.Lock()
	if !d.jclosed {
		d.jq = append(d.jq, janitorTask{key: ev.Key, m: ev.Value})
		d.jqueued++
		d.jcond.Broadcast()
	}
	d.jmu.Unlock()
}

func (d *disk) janitor() {
	defer d.jwg.Done()
	for {
		d.jmu.Lock()
		for len(d.jq) == 0 && !d.jclosed {
			d.jcond.Wait()
		}
		batch := d.jq
		d.jq = nil
		d.jmu.Unlock()
		if len(batch) == 0 {
			return // closed and drained
		}
		for _, t := range batch {
			d.unlinkDeleted(t.key, t.m)
		}
		d.jmu.Lock()
		d.jdone += uint64(len(batch))
		d.jcond.Broadcast()
		d.jmu.Unlock()
	}
}

// unlinkDeleted removes the file of an entry the index dropped, unless
// the key is indexed again: then the file is the newer write's.
func (d *disk) unlinkDeleted(key string, m *diskMeta) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m.purged || m.epoch != d.epoch.Load() {
		return
	}
	if _, ok := d.index.GetEntryQuietly(key); ok {
		return
	}
	removeFile(d.path(key))
}

func removeFile(p string) {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		slog.Default().Debug("cache: cannot remove a disk entry", "path", p, "err", err)
	}
}

// invalidateLocked drops key from the index (the janitor removes its
// file). d.mu must be held.
func (d *disk) invalidateLocked(key string) {
	if d.scanning {
		d.scanKeys[key] = struct{}{}
	}
	d.index.Invalidate(key)
}

// putLocked queues e for the writer, superseding a queued write of the
// same key. When the queue is full (DiskQueue entries, or half the memory
// tier's bytes: queued bodies evicted from memory are held by the queue
// alone) the write is dropped (memory still serves e) and the disk copy,
// now older than memory, is dropped too. Cache.mu must be held.
func (d *disk) putLocked(e *Entry) {
	if d.closed {
		return
	}
	if old := d.pending[e.Key]; old != nil {
		old.cancelled = true
		delete(d.pending, e.Key)
	}
	j := &diskJob{e: e}
	if d.queuedBytes+int64(len(e.Body)) > d.maxQueued {
		d.mu.Lock()
		d.invalidateLocked(e.Key)
		d.mu.Unlock()
		return
	}
	select {
	case d.queue <- j:
		d.pending[e.Key] = j
		d.queuedBytes += int64(len(e.Body))
		d.wmu.Lock()
		d.wqueued++
		d.wmu.Unlock()
	default:
		d.mu.Lock()
		d.invalidateLocked(e.Key)
		d.mu.Unlock()
	}
}

// forgetLocked cancels a queued write of key and drops key from the disk
// tier. Cache.mu must be held.
func (d *disk) forgetLocked(key string) {
	if j := d.pending[key]; j != nil {
		j.cancelled = true
		delete(d.pending, key)
	}
	d.mu.Lock()
	d.invalidateLocked(key)
	d.mu.Unlock()
}

// placeholderLocked reports whether the disk tier has, or is about to
// have, a Vary placeholder under base. Cache.mu must be held.
func (d *disk) placeholderLocked(base string) bool {
	if j := d.pending[base]; j != nil {
		return j.e.varies
	}
	m, ok := d.index.GetEntryQuietly(base)
	return ok && m.Value.varies
}

func (d *disk) writer(c *Cache) {
	defer d.wg.Done()
	for j := range d.queue {
		d.write(c, j)
		d.wmu.Lock()
		d.wdone++
		d.wcond.Broadcast()
		d.wmu.Unlock()
	}
}

func (d *disk) write(c *Cache, j *diskJob) {
	c.mu.Lock()
	cancelled := j.cancelled
	if cancelled {
		d.queuedBytes -= int64(len(j.e.Body))
	}
	c.mu.Unlock()
	if cancelled {
		return
	}
	e := j.e
	p := d.path(e.Key)
	id := d.nextID.Add(1)
	tmp, size, err := d.writeTemp(p, e, id)
	if d.beforeCommit != nil {
		d.beforeCommit(e.Key)
	}
	c.mu.Lock()
	d.queuedBytes -= int64(len(e.Body))
	if d.pending[e.Key] == j {
		delete(d.pending, e.Key)
	}
	if j.cancelled {
		c.mu.Unlock()
		if tmp != "" {
			removeFile(tmp)
		}
		return
	}
	d.mu.Lock()
	if err == nil {
		if err = os.Rename(tmp, p); err != nil {
			removeFile(tmp)
		}
	}
	if err == nil {
		d.index.Set(e.Key, &diskMeta{base: e.Base, id: id, size: size, varies: e.varies, epoch: d.epoch.Load()})
	} else {
		// The disk copy, if any, is older than the memory one.
		d.invalidateLocked(e.Key)
	}
	d.mu.Unlock()
	c.mu.Unlock()
	if err != nil && !errors.Is(err, errTooLarge) {
		d.warn("cache: cannot write to the disk tier", "dir", d.dir, "err", err)
	}
}

// writeTemp writes e's file next to p, returning its name and size.
func (d *disk) writeTemp(p string, e *Entry, id uint64) (string, int64, error) {
	head, err := encodeHead(e, id)
	if err != nil {
		return "", 0, errTooLarge
	}
	size := int64(len(head)) + int64(len(e.Body))
	if size > d.maxBytes || size > math.MaxUint32 {
		return "", 0, errTooLarge
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, err
	}
	f, err := os.CreateTemp(dir, tmpPrefix+d.nonce+"-*") // mode 0600
	if err != nil {
		return "", 0, err
	}
	if _, err = f.Write(head); err == nil {
		_, err = f.Write(e.Body)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		removeFile(f.Name())
		return "", 0, err
	}
	return f.Name(), size, nil
}

// load reads key from the disk tier and promotes it to memory.
func (d *disk) load(c *Cache, key string) *Entry {
	m, ok := d.index.GetIfPresent(key)
	if !ok || (m.previous && d.held.Load()) {
		return nil
	}
	b, err := os.ReadFile(d.path(key))
	var e *Entry
	if err == nil {
		var r *diskRecord
		if r, e, err = parseEntry(b); err == nil && (r.key != key || r.id != m.id) {
			err = errCorrupt
		}
	}
	if err != nil && !errors.Is(err, errCorrupt) && !errors.Is(err, fs.ErrNotExist) {
		d.warn("cache: cannot read from the disk tier", "err", err)
		return nil // transient (out of file descriptors, …): keep the file
	}
	if err != nil {
		// Missing, torn or corrupt: forget it, unless it was replaced
		// meanwhile.
		d.mu.Lock()
		if cur, ok := d.index.GetEntryQuietly(key); ok && cur.Value == m {
			d.invalidateLocked(key)
		}
		d.mu.Unlock()
		return nil
	}
	if d.beforePromote != nil {
		d.beforePromote(key)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := d.index.GetEntryQuietly(key); !ok || cur.Value != m {
		return nil // purged, evicted or replaced while being read
	}
	if me, ok := c.mem.GetIfPresent(key); ok {
		return me // stored meanwhile: newer
	}
	c.mem.Set(key, e)
	return e
}

// purgeLocked cancels matching queued writes and drops matching entries
// from the index; the caller removes the returned files with
// unlinkPurged once Cache.mu is released. Cache.mu must be held.
func (d *disk) purgeLocked(match Matcher) []purgedFile {
	for k, j := range d.pending {
		if match(j.e.Base) {
			j.cancelled = true
			delete(d.pending, k)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.scanning {
		d.scanPurge = append(d.scanPurge, match)
	}
	var out []purgedFile
	for k, m := range d.index.All() {
		if match(m.base) {
			out = append(out, purgedFile{key: k, m: m})
		}
	}
	for _, f := range out {
		f.m.purged = true
		d.index.Invalidate(f.key)
	}
	return out
}

// unlinkPurged removes purged files before the purge returns, so that a
// restart does not bring them back. A key written again since the purge
// keeps its (new) file.
func (d *disk) unlinkPurged(files []purgedFile) {
	const batch = 256
	for i := 0; i < len(files); i += batch {
		d.mu.Lock()
		for _, f := range files[i:min(i+batch, len(files))] {
			if _, ok := d.index.GetEntryQuietly(f.key); ok || f.m.epoch != d.epoch.Load() {
				continue
			}
			removeFile(d.path(f.key))
		}
		d.mu.Unlock()
	}
}

// purgeAllLocked cancels every queued write, empties the index and moves
// every file to a trash directory (one rename per top-level directory);
// the trash is removed in the background. Cache.mu must be held.
func (d *disk) purgeAllLocked() {
	for _, j := range d.pending {
		j.cancelled = true
	}
	clear(d.pending)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.scanning {
		d.scanAll = true
	}
	epoch := d.epoch.Add(1)
	d.index.InvalidateAll() // files of the old epoch: left to the trash
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		d.warn("cache: cannot list the disk tier", "dir", d.dir, "err", err)
		return
	}
	trash := ""
	for _, e := range ents {
		if !e.IsDir() || !isHexName(e.Name(), 2) {
			continue
		}
		src := filepath.Join(d.dir, e.Name())
		if trash == "" {
			trash = filepath.Join(d.dir, fmt.Sprintf("%s%s-%d", trashPrefix, d.nonce, epoch))
			if err := os.Mkdir(trash, 0o700); err != nil {
				d.warn("cache: cannot make a trash directory; removing in place", "err", err)
				trash = "-"
			}
		}
		if trash == "-" || os.Rename(src, filepath.Join(trash, e.Name())) != nil {
			// Slow, but a restart must not bring purged entries back.
			if err := os.RemoveAll(src); err != nil {
				d.warn("cache: cannot empty the disk tier", "dir", src, "err", err)
			}
		}
	}
	if trash != "" && trash != "-" && !d.closed {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.removeTree(trash)
		}()
	}
}

// removeTree removes a trash directory, stopping early on Close (the next
// start-up finishes the job).
func (d *disk) removeTree(root string) {
	var walk func(p string) bool
	walk = func(p string) bool {
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if d.stopped() {
				return false
			}
			cp := filepath.Join(p, e.Name())
			if e.IsDir() && !walk(cp) {
				return false
			}
			removeFile(cp)
		}
		return true
	}
	if walk(root) {
		removeFile(root)
	}
}

// scan indexes the files a previous run left, deleting invalid and
// foreign files inside the ab/cd directories, stale temporary files and
// old trash. Unknown entries at the top of Dir are left alone (Dir may
// have been shared by mistake).
func (d *disk) scan() {
	defer d.wg.Done()
	var trash []string
	defer func() {
		d.mu.Lock()
		d.scanning, d.scanAll, d.scanPurge, d.scanKeys = false, false, nil, nil
		d.mu.Unlock()
		close(d.indexed)
		for _, t := range trash {
			if d.stopped() {
				return
			}
			d.removeTree(t)
		}
	}()
	top, err := os.ReadDir(d.dir)
	if err != nil {
		d.warn("cache: cannot list the disk tier", "dir", d.dir, "err", err)
		return
	}
	for _, t := range top {
		name := t.Name()
		switch {
		case d.stopped():
			return
		case t.IsDir() && isHexName(name, 2):
			d.scanDir(filepath.Join(d.dir, name), name, 1)
		case t.IsDir() && strings.HasPrefix(name, trashPrefix) && !strings.HasPrefix(name, trashPrefix+d.nonce):
			trash = append(trash, filepath.Join(d.dir, name))
		}
	}
}

// scanDir scans Dir/ab (level 1) or Dir/ab/cd (level 2); prefix is ab or
// abcd.
func (d *disk) scanDir(dir, prefix string, level int) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if d.stopped() {
			return
		}
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case level == 1 && e.IsDir() && isHexName(name, 2):
			d.scanDir(p, prefix+name, 2)
		case level == 2 && strings.HasPrefix(name, tmpPrefix):
			if !strings.HasPrefix(name, tmpPrefix+d.nonce) {
				removeFile(p) // left by a previous run
			}
		case level == 2 && e.Type().IsRegular() && isHexName(name, 64) && strings.HasPrefix(name, prefix):
			d.indexFile(p)
		default:
			if err := os.RemoveAll(p); err != nil {
				d.warn("cache: cannot remove a foreign file", "path", p, "err", err)
			}
		}
	}
}

// indexFile indexes one file left by a previous run, or deletes it.
func (d *disk) indexFile(p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, h, err := readHead(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil && !errors.Is(err, errCorrupt):
		d.warn("cache: cannot read from the disk tier", "path", p, "err", err)
		return
	case err != nil, d.path(r.key) != p, h.bodyLen > d.maxObject, h.size() > d.maxBytes:
		removeFile(p)
		return
	}
	if _, ok := d.index.GetEntryQuietly(r.key); ok {
		return // written again since start-up: this is that write's file
	}
	_, invalidated := d.scanKeys[r.key]
	drop := d.scanAll || invalidated
	for _, m := range d.scanPurge {
		drop = drop || m(r.base)
	}
	if drop {
		removeFile(p)
		return
	}
	d.index.Set(r.key, &diskMeta{base: r.base, id: r.id, size: h.size(), varies: r.varies, epoch: d.epoch.Load(), previous: true})
}

// readHead reads and checks a file's fixed header and metadata (not its
// body).
func readHead(p string) (*diskRecord, diskHead, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, diskHead{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, diskHead{}, err
	}
	size := fi.Size()
	b := make([]byte, min(size, maxHeaderRead))
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, diskHead{}, shortRead(err)
	}
	h, err := parseFixed(b)
	if err != nil {
		return nil, h, err
	}
	if need := diskFixedLen + h.metaLen; need > len(b) && int64(need) <= size {
		have := len(b)
		b = append(b, make([]byte, need-have)...)
		if _, err := io.ReadFull(f, b[have:]); err != nil {
			return nil, h, shortRead(err)
		}
	}
	r, h, err := parseHead(b, size)
	return r, h, err
}

// shortRead: a file shorter than it said is corrupt; other errors are
// the disk's.
func shortRead(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errCorrupt
	}
	return err
}

func isHexName(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < n; i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// flush waits until every queued write is done and every deleted entry's
// file is removed (tests).
func (d *disk) flush() {
	for {
		d.wmu.Lock()
		for target := d.wqueued; d.wdone < target; {
			d.wcond.Wait()
		}
		d.wmu.Unlock()
		d.index.CleanUp() // pending evictions
		d.jmu.Lock()
		target := d.jqueued
		for d.jdone < target {
			d.jcond.Wait()
		}
		settled := d.jqueued == target
		d.jmu.Unlock()
		d.wmu.Lock()
		settled = settled && d.wdone >= d.wqueued
		d.wmu.Unlock()
		if settled {
			return
		}
	}
}

// close stops accepting writes, lets the writer finish the queue, stops
// the scan and the trash removal, drains the janitor and stops the index.
func (d *disk) close(c *Cache) {
	c.mu.Lock()
	if d.closed {
		c.mu.Unlock()
		return
	}
	d.closed = true
	close(d.queue)
	c.mu.Unlock()
	close(d.stop)
	d.wg.Wait()
	d.jmu.Lock()
	d.jclosed = true
	d.jcond.Broadcast()
	d.jmu.Unlock()
	d.jwg.Wait()
	d.index.StopAllGoroutines()
}
