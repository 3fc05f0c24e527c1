package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/seal"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// defaultChangeLog is how many recent changes the cache keeps for streams
// that fall behind; a stream further behind gets a new snapshot instead.
const defaultChangeLog = 1024

// configCache mirrors etcd's config subtree (store.ConfigPrefix) in memory:
// the whole current config, plus a bounded log of the most recent changes,
// one entry per etcd revision. Config streams ask it for "the changes after
// revision N" (Since) and fall back to a snapshot when N is older than the
// log, so a slow node costs the controller at most the log, never an
// unbounded buffer. It reloads from a fresh snapshot whenever its etcd watch
// breaks or is compacted, so no change is ever skipped.
//
// Messages handed out are shared and must not be modified.
type configCache struct {
	store  *store.Store
	sealer *seal.Sealer
	log    *slog.Logger
	maxLog int

	mu      sync.Mutex
	loaded  bool
	rev     int64
	domains map[string]*outpostv1.Domain
	certs   map[string]*outpostv1.CertificateBundle
	// certRefs counts, by certificate ID, the domains that serve it:
	// streams carry only those certificates (and their private keys), so
	// a certificate no domain uses never leaves the controllers.
	certRefs   map[string]int
	purges     map[string]*outpostv1.Purge    // by task ID
	prefetches map[string]*outpostv1.Prefetch // by task ID
	purgeFloor int64
	draining   map[string]bool          // drained node names
	gossipKeys *outpostv1.GossipKeyring // nil: none set
	// challenges are the pending ACME HTTP-01 challenge responses, by token.
	challenges map[string]*outpostv1.AcmeChallenge
	logStart   int64 // the log holds the changes after this revision
	changes    []*outpostv1.StreamConfigResponse
	changed    chan struct{} // closed and replaced on every change
}

func newConfigCache(st *store.Store, sealer *seal.Sealer, log *slog.Logger) *configCache {
	return &configCache{store: st, sealer: sealer, log: log, maxLog: defaultChangeLog, changed: make(chan struct{})}
}

// run keeps the cache in step with etcd until ctx ends.
func (c *configCache) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := c.load(ctx)
		if err == nil {
			backoff = 100 * time.Millisecond
			err = c.watch(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("config cache: reloading", "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// load replaces the cache with a snapshot of the config subtree.
func (c *configCache) load(ctx context.Context) error {
	kvs, rev, err := c.store.Range(ctx, store.ConfigPrefix, "", 0)
	if err != nil {
		return err
	}
	st := newConfigSet()
	for _, kv := range kvs {
		c.decode(ctx, kv, st)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loaded = true
	c.rev, c.domains, c.certs, c.purges, c.prefetches = rev, st.domains, st.certs, st.purges, st.prefetches
	c.certRefs = map[string]int{}
	for _, d := range st.domains {
		if id := servedCert(d); id != "" {
			c.certRefs[id]++
		}
	}
	c.purgeFloor = st.purgeFloor
	c.draining = st.draining
	c.gossipKeys = st.gossipKeys
	c.challenges = st.challenges
	c.logStart, c.changes = rev, nil
	c.broadcast()
	c.log.Debug("config cache loaded", "revision", rev, "domains", len(st.domains), "certificates", len(st.certs),
		"purges", len(st.purges), "prefetches", len(st.prefetches), "purge_floor", st.purgeFloor)
	return nil
}

// configSet is what decode finds in a set of config keys.
type configSet struct {
	domains    map[string]*outpostv1.Domain
	certs      map[string]*outpostv1.CertificateBundle
	purges     map[string]*outpostv1.Purge
	prefetches map[string]*outpostv1.Prefetch
	purgeFloor int64 // 0: not among the keys
	// draining: node name → drained (false: a node-state key that says not
	// draining).
	draining map[string]bool
	// gossipKeys is the gossip keyring, if among the keys.
	gossipKeys *outpostv1.GossipKeyring
	// challenges are ACME HTTP-01 challenge responses, by token.
	challenges map[string]*outpostv1.AcmeChallenge
}

func newConfigSet() *configSet {
	return &configSet{
		domains:    map[string]*outpostv1.Domain{},
		certs:      map[string]*outpostv1.CertificateBundle{},
		purges:     map[string]*outpostv1.Purge{},
		prefetches: map[string]*outpostv1.Prefetch{},
		draining:   map[string]bool{},
		challenges: map[string]*outpostv1.AcmeChallenge{},
	}
}

// decode adds one config key to the set.
func (c *configCache) decode(ctx context.Context, kv store.KV, st *configSet) {
	domains, certs := st.domains, st.certs
	switch {
	case strings.HasPrefix(kv.Key, store.DomainsPrefix()):
		d := &outpostv1.Domain{}
		if err := store.Decode(kv, d); err != nil {
			c.log.Error("config cache: bad domain record", "key", kv.Key, "err", err)
			return
		}
		d.Revision = kv.ModRevision
		domains[d.GetName()] = d
	case strings.HasPrefix(kv.Key, store.CertsPrefix()):
		sc := &storagev1.StoredCertificate{}
		if err := store.Decode(kv, sc); err != nil {
			c.log.Error("config cache: bad certificate record", "key", kv.Key, "err", err)
			return
		}
		id := sc.GetCertificate().GetId()
		key, err := c.sealer.Open(ctx, sc.GetPrivateKey(), []byte(id))
		if err != nil {
			// Never log the record: it holds the sealed key.
			c.log.Error("config cache: cannot unseal a certificate key; is the keyring the same on every controller?", "certificate_id", id, "err", err)
			return
		}
		certs[id] = &outpostv1.CertificateBundle{Id: id, CertificatePem: sc.GetCertificate().GetCertificatePem(), PrivateKeyPem: string(key)}
	case strings.HasPrefix(kv.Key, store.PurgesPrefix()):
		p := &outpostv1.Purge{}
		if err := store.Decode(kv, p); err != nil {
			c.log.Error("config cache: bad purge record", "key", kv.Key, "err", err)
			return
		}
		p.TaskId = strings.TrimPrefix(kv.Key, store.PurgesPrefix())
		p.Revision = kv.ModRevision
		st.purges[p.TaskId] = p
	case strings.HasPrefix(kv.Key, store.PrefetchesPrefix()):
		p := &outpostv1.Prefetch{}
		if err := store.Decode(kv, p); err != nil {
			c.log.Error("config cache: bad prefetch record", "key", kv.Key, "err", err)
			return
		}
		p.TaskId = strings.TrimPrefix(kv.Key, store.PrefetchesPrefix())
		st.prefetches[p.TaskId] = p
	case strings.HasPrefix(kv.Key, store.NodeStatesPrefix()):
		ns := &storagev1.NodeState{}
		if err := store.Decode(kv, ns); err != nil {
			c.log.Error("config cache: bad node state", "key", kv.Key, "err", err)
			return
		}
		st.draining[strings.TrimPrefix(kv.Key, store.NodeStatesPrefix())] = ns.GetDraining()
	case strings.HasPrefix(kv.Key, store.AcmeChallengesPrefix()):
		ch := &outpostv1.AcmeChallenge{}
		if err := store.Decode(kv, ch); err != nil {
			c.log.Error("config cache: bad ACME challenge", "key", kv.Key, "err", err)
			return
		}
		ch.Token = strings.TrimPrefix(kv.Key, store.AcmeChallengesPrefix())
		st.challenges[ch.Token] = ch
	case kv.Key == store.GossipKeyringKey():
		kr, err := c.openGossipKeyring(ctx, kv)
		if err != nil {
			// Never log the record: it holds the sealed keys.
			c.log.Error("config cache: cannot open the gossip keyring; is the keyring the same on every controller?", "err", err)
			return
		}
		st.gossipKeys = kr
	case kv.Key == store.PurgeFloorKey():
		floor, err := strconv.ParseInt(strings.TrimSpace(string(kv.Value)), 10, 64)
		if err != nil || floor < 0 {
			c.log.Error("config cache: bad purge floor", "key", kv.Key, "value", string(kv.Value))
			return
		}
		st.purgeFloor = floor
	}
}

// watch applies etcd changes after the loaded revision until the watch
// fails or is compacted.
func (c *configCache) watch(ctx context.Context) error {
	c.mu.Lock()
	from := c.rev + 1
	c.mu.Unlock()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := c.store.Client().Watch(wctx, store.ConfigPrefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("watch compacted at revision %d", resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		c.apply(ctx, resp.Events)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch closed")
}

// apply turns watch events into one change per revision.
func (c *configCache) apply(ctx context.Context, events []*clientv3.Event) {
	for len(events) > 0 {
		rev := events[0].Kv.ModRevision
		n := 1
		for n < len(events) && events[n].Kv.ModRevision == rev {
			n++
		}
		c.applyRevision(ctx, rev, events[:n])
		events = events[n:]
	}
}

func (c *configCache) applyRevision(ctx context.Context, rev int64, events []*clientv3.Event) {
	change := &outpostv1.StreamConfigResponse{Revision: rev}
	st := newConfigSet()
	var removedDomains, removedCerts, removedPurges, removedPrefetches, removedChallenges []string
	for _, ev := range events {
		key := string(ev.Kv.Key)
		if ev.Type == mvccpb.DELETE {
			switch {
			case strings.HasPrefix(key, store.DomainsPrefix()):
				removedDomains = append(removedDomains, strings.TrimPrefix(key, store.DomainsPrefix()))
			case strings.HasPrefix(key, store.CertsPrefix()):
				removedCerts = append(removedCerts, strings.TrimPrefix(key, store.CertsPrefix()))
			case strings.HasPrefix(key, store.PurgesPrefix()):
				removedPurges = append(removedPurges, strings.TrimPrefix(key, store.PurgesPrefix()))
			case strings.HasPrefix(key, store.PrefetchesPrefix()):
				removedPrefetches = append(removedPrefetches, strings.TrimPrefix(key, store.PrefetchesPrefix()))
			case strings.HasPrefix(key, store.NodeStatesPrefix()):
				st.draining[strings.TrimPrefix(key, store.NodeStatesPrefix())] = false
			case strings.HasPrefix(key, store.AcmeChallengesPrefix()):
				removedChallenges = append(removedChallenges, strings.TrimPrefix(key, store.AcmeChallengesPrefix()))
			}
			continue
		}
		c.decode(ctx, store.KV{Key: key, Value: ev.Kv.Value, ModRevision: ev.Kv.ModRevision, CreateRevision: ev.Kv.CreateRevision}, st)
	}
	change.Domains = sortedValues(st.domains)
	change.Purges = sortedValues(st.purges)
	change.Prefetches = sortedValues(st.prefetches)
	change.RemovedDomains = removedDomains
	change.RemovedPurges, change.RemovedPrefetches = removedPurges, removedPrefetches
	for _, name := range sortedKeys(st.draining) {
		if st.draining[name] {
			change.DrainingNodes = append(change.DrainingNodes, name)
		} else {
			change.UndrainedNodes = append(change.UndrainedNodes, name)
		}
	}
	change.GossipKeyring = st.gossipKeys
	change.AcmeChallenges = sortedValues(st.challenges)
	change.RemovedAcmeChallenges = removedChallenges
	// purge_floor is left out of changes: a node that follows the changes
	// misses no purge. Only snapshots carry it.

	c.mu.Lock()
	defer c.mu.Unlock()
	if rev <= c.rev {
		return // already in the snapshot
	}
	// Which certificates the change carries depends on which domains
	// serve them, before and after it.
	bound, unbound := c.rebindLocked(st.domains, removedDomains)
	// Copy on write: snapshots handed out earlier keep their maps.
	c.domains = merged(c.domains, st.domains, removedDomains)
	c.certs = merged(c.certs, st.certs, removedCerts)
	change.Certificates, change.RemovedCertificates = c.certChangesLocked(st.certs, removedCerts, bound, unbound)
	c.purges = merged(c.purges, st.purges, removedPurges)
	c.prefetches = merged(c.prefetches, st.prefetches, removedPrefetches)
	c.challenges = merged(c.challenges, st.challenges, removedChallenges)
	if st.purgeFloor > c.purgeFloor {
		c.purgeFloor = st.purgeFloor
	}
	if st.gossipKeys != nil {
		c.gossipKeys = st.gossipKeys
	}
	if len(st.draining) > 0 {
		d := make(map[string]bool, len(c.draining))
		for k, v := range c.draining {
			d[k] = v
		}
		for k, v := range st.draining {
			d[k] = v
		}
		c.draining = d
	}
	c.rev = rev
	c.changes = append(c.changes, change)
	if over := len(c.changes) - c.maxLog; over > 0 {
		c.logStart = c.changes[over-1].GetRevision()
		c.changes = append([]*outpostv1.StreamConfigResponse(nil), c.changes[over:]...)
	}
	c.broadcast()
}

// servedCert is the ID of the certificate d serves, or "".
func servedCert(d *outpostv1.Domain) string {
	if h := d.GetHttps(); h.GetEnabled() {
		return h.GetCertificateId()
	}
	return ""
}

// rebindLocked updates certRefs for the domains changed and removed (not
// yet merged into c.domains), and returns the certificates that became
// served (bound) and those no domain serves any more (unbound). c.mu must
// be held.
func (c *configCache) rebindLocked(changed map[string]*outpostv1.Domain, removed []string) (bound, unbound []string) {
	before := map[string]int{} // certificate → its count before, for those touched
	touch := func(id string, delta int) {
		if id == "" {
			return
		}
		if _, ok := before[id]; !ok {
			before[id] = c.certRefs[id]
		}
		if c.certRefs[id] += delta; c.certRefs[id] <= 0 {
			delete(c.certRefs, id)
		}
	}
	for name, d := range changed {
		touch(servedCert(c.domains[name]), -1)
		touch(servedCert(d), +1)
	}
	for _, name := range removed {
		touch(servedCert(c.domains[name]), -1)
	}
	for _, id := range sortedKeys(before) {
		switch was, now := before[id], c.certRefs[id]; {
		case was == 0 && now > 0:
			bound = append(bound, id)
		case was > 0 && now == 0:
			unbound = append(unbound, id)
		}
	}
	return bound, unbound
}

// certChangesLocked is what a change carries of certificates: those
// changed and served, those newly served (changed or not), and as removed
// those deleted or no longer served. c.certs is already merged. c.mu must
// be held.
func (c *configCache) certChangesLocked(changed map[string]*outpostv1.CertificateBundle, deleted, bound, unbound []string) (certs []*outpostv1.CertificateBundle, removed []string) {
	send := map[string]*outpostv1.CertificateBundle{}
	for id, b := range changed {
		if c.certRefs[id] > 0 {
			send[id] = b
		}
	}
	for _, id := range bound {
		if b := c.certs[id]; b != nil {
			send[id] = b
		}
	}
	gone := map[string]bool{}
	for _, id := range deleted {
		gone[id] = true
	}
	for _, id := range unbound {
		gone[id] = true
	}
	return sortedValues(send), sortedKeys(gone)
}

// merged returns a copy of m with added set and removed deleted; m itself
// is not changed. With nothing to change it returns m.
func merged[V any](m, added map[string]V, removed []string) map[string]V {
	if len(added) == 0 && len(removed) == 0 {
		return m
	}
	out := make(map[string]V, len(m)+len(added))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range added {
		out[k] = v
	}
	for _, k := range removed {
		delete(out, k)
	}
	return out
}

// broadcast wakes every waiter. c.mu must be held.
func (c *configCache) broadcast() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Snapshot returns the whole config, or ok=false before the first load.
func (c *configCache) Snapshot() (_ *outpostv1.StreamConfigResponse, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		return nil, false
	}
	purges := sortedValues(c.purges)
	// In the order they were made.
	sort.SliceStable(purges, func(i, j int) bool { return purges[i].GetRevision() < purges[j].GetRevision() })
	return &outpostv1.StreamConfigResponse{
		Revision:      c.rev,
		Snapshot:      true,
		Domains:       sortedValues(c.domains),
		Certificates:  c.servedCertsLocked(),
		Purges:        purges,
		Prefetches:    sortedValues(c.prefetches),
		PurgeFloor:    c.purgeFloor,
		DrainingNodes: drainingNames(c.draining),
		GossipKeyring: c.gossipKeys,
		// Every pending challenge: a node that connects while one is
		// pending must answer it too.
		AcmeChallenges: sortedValues(c.challenges),
	}, true
}

// servedCertsLocked are the certificates some domain serves. c.mu must be
// held.
func (c *configCache) servedCertsLocked() []*outpostv1.CertificateBundle {
	out := make([]*outpostv1.CertificateBundle, 0, len(c.certRefs))
	for id := range c.certRefs {
		if b := c.certs[id]; b != nil {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

// freeDomains returns the enabled domains that asked for a free
// certificate, as of the cache's revision, for the ACME issuer (acme.go)
// to look through. The messages are shared and must not be modified.
func (c *configCache) freeDomains() (domains []*outpostv1.Domain, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		return nil, false
	}
	for _, d := range c.domains {
		// A disabled domain is served by no node, so an HTTP-01 challenge
		// for it would only fail and spend the CA's rate limits; it is
		// attempted again once enabled.
		if d.GetHttps().GetFree() != nil && d.GetStatus() != outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE {
			domains = append(domains, d)
		}
	}
	return domains, true
}

// Since returns the changes after revision rev, in order, and a channel
// that is closed at the next change. ok is false when rev is not in the
// log (too old, or unknown to this cache): the caller must send a snapshot.
func (c *configCache) Since(rev int64) (changes []*outpostv1.StreamConfigResponse, next <-chan struct{}, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded || rev < c.logStart || rev > c.rev {
		return nil, c.changed, false
	}
	i := sort.Search(len(c.changes), func(i int) bool { return c.changes[i].GetRevision() > rev })
	return c.changes[i:], c.changed, true
}

// Revision is the config revision the cache reflects (0 before loading).
func (c *configCache) Revision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// Ready returns a channel closed at the next change, and whether the cache
// has loaded.
func (c *configCache) Ready() (<-chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed, c.loaded
}

func sortedValues[V any](m map[string]V) []V {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]V, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func drainingNames(m map[string]bool) []string {
	var out []string
	for _, k := range sortedKeys(m) {
		if m[k] {
			out = append(out, k)
		}
	}
	return out
}
