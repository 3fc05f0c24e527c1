package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/outpost-cdn/outpost/internal/names"
	"github.com/outpost-cdn/outpost/node/cache"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// prefetchConcurrency bounds the origin fetches prefetching runs at once on
// one node, so warming never crowds out client traffic; prefetchQueue
// bounds the prefetch tasks waiting for them. A task beyond the queue is
// reported done and failed at once.
const (
	prefetchConcurrency = 4
	prefetchQueue       = 64
)

// tasks applies purges and runs prefetches the config carries, each once.
type tasks struct {
	n *Node

	mu      sync.Mutex
	seen    map[string]bool                  // task IDs acted on
	reports map[string]*outpostv1.TaskReport // latest prefetch report, re-sent after a reconnect
	sem     chan struct{}
	queued  int // prefetch tasks running or waiting
}

func newTasks(n *Node) *tasks {
	return &tasks{n: n, seen: map[string]bool{}, reports: map[string]*outpostv1.TaskReport{}, sem: make(chan struct{}, prefetchConcurrency)}
}

// restore marks the tasks of a persisted config as done: they were acted on
// before the restart.
func (t *tasks) restore(d *desired) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range d.purges {
		t.seen[id] = true
	}
	for id := range d.prefetches {
		t.seen[id] = true
	}
}

// apply acts on a newly applied config. prevRevision is the revision the
// node served before it. Purges run before this returns (so the ACK that
// follows means "purged"); prefetches run in the background.
func (t *tasks) apply(ctx context.Context, d *desired, st *state, prevRevision int64) {
	if d.snapshot && d.purgeFloor > prevRevision {
		// Purges older than the floor are gone from the controller: this
		// node may have missed some, so nothing it holds can be trusted.
		t.n.cache.PurgeAll()
		t.n.log.Info("emptied the cache: purges may have been missed while away", "revision", prevRevision, "purge_floor", d.purgeFloor)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range sortedValues(d.purges) {
		if t.seen[p.GetTaskId()] {
			continue
		}
		t.seen[p.GetTaskId()] = true
		start := time.Now()
		removed := t.purge(st, p)
		t.n.metrics.purges.Observe(time.Since(start).Seconds())
		t.n.log.Debug("purged", "task", p.GetTaskId(), "type", p.GetType().String(), "entries", len(p.GetEntries()), "removed", removed)
	}
	for _, p := range sortedValues(d.prefetches) {
		if t.seen[p.GetTaskId()] {
			continue
		}
		t.seen[p.GetTaskId()] = true
		if r := p.GetRegion(); r != "" && r != t.n.cfg.Region {
			continue
		}
		if t.queued >= prefetchQueue {
			rep := &outpostv1.TaskReport{TaskId: p.GetTaskId(), Done: true, Failed: uint32(len(p.GetUrls())), Error: "the node's prefetch queue is full"}
			t.reports[p.GetTaskId()] = rep
			t.n.streamer.send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_TaskReport{TaskReport: rep}})
			continue
		}
		t.queued++
		go t.prefetch(p)
	}
	// Forget tasks the controller no longer retains.
	for id := range t.seen {
		if d.purges[id] == nil && d.prefetches[id] == nil {
			delete(t.seen, id)
			delete(t.reports, id)
		}
	}
}

// purge removes what one purge names. Entries were checked by the
// controller; any that do not parse are skipped.
func (t *tasks) purge(st *state, p *outpostv1.Purge) int {
	removed := 0
	for _, e := range p.GetEntries() {
		m := matcher(st, p.GetType(), e)
		if m != nil {
			removed += t.n.cache.Purge(m)
		}
	}
	return removed
}

func matcher(st *state, typ outpostv1.RefreshType, entry string) cache.Matcher {
	scheme, rest, ok := strings.Cut(entry, "://")
	if !ok || scheme != "http" && scheme != "https" {
		return nil
	}
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return nil
	}
	hostport, target := rest[:i], rest[i:]
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		hostport = h // cache keys carry no port
	}
	host := names.Normalize(strings.Trim(hostport, "[]"))
	if typ == outpostv1.RefreshType_REFRESH_TYPE_REGEX {
		re, err := regexp.Compile(target)
		if err != nil {
			return nil
		}
		return cache.PurgeRegexp(host, re)
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil
	}
	ignoreQuery := false
	if s := st.lookup(host); s != nil {
		ignoreQuery = s.domain.GetCache().GetIgnoreQuery()
	}
	switch typ {
	case outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY:
		return cache.PurgePrefix(host + cache.NormalizePath(u.EscapedPath()))
	case outpostv1.RefreshType_REFRESH_TYPE_IGNORE_PARAMS:
		return cache.PurgeIgnoringQuery(host + cache.NormalizePath(u.EscapedPath()))
	default:
		return cache.PurgeExact(cache.BaseKey(host, u.EscapedPath(), u.RawQuery, ignoreQuery))
	}
}

// prefetch warms every URL of a task through the cache, as a client miss
// would, reporting progress to the controller.
func (t *tasks) prefetch(p *outpostv1.Prefetch) {
	rep := &outpostv1.TaskReport{TaskId: p.GetTaskId()}
	for _, raw := range p.GetUrls() {
		t.sem <- struct{}{}
		err := t.warm(raw)
		<-t.sem
		if err != nil {
			rep.Failed++
			rep.Error = err.Error()
		} else {
			rep.Succeeded++
		}
		t.report(rep, false)
	}
	t.report(rep, true)
	t.mu.Lock()
	t.queued--
	t.mu.Unlock()
}

func (t *tasks) report(r *outpostv1.TaskReport, done bool) {
	c := &outpostv1.TaskReport{TaskId: r.GetTaskId(), Done: done, Succeeded: r.GetSucceeded(), Failed: r.GetFailed(), Error: r.GetError()}
	t.mu.Lock()
	t.reports[c.GetTaskId()] = c
	t.mu.Unlock()
	t.n.streamer.send(&outpostv1.StreamConfigRequest{Kind: &outpostv1.StreamConfigRequest_TaskReport{TaskReport: c}})
}

// pending returns the latest prefetch reports, to send again on a new
// stream (reports sent on a broken stream may have been lost).
func (t *tasks) pending() []*outpostv1.TaskReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sortedValues(t.reports)
}

// warm fetches one URL into the cache unless a fresh entry is there.
func (t *tasks) warm(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad URL %q", raw)
	}
	host := names.Normalize(u.Hostname())
	s := t.n.state.Load().lookup(host)
	if s == nil {
		return fmt.Errorf("%s is not served by this node", host)
	}
	r := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}, Host: host}
	path := cache.NormalizePath(u.EscapedPath())
	base := cache.BaseKey(host, path, u.RawQuery, s.domain.GetCache().GetIgnoreQuery())
	prior := t.n.cache.Lookup(base, r)
	if prior != nil && prior.IsFresh(t.n.cache.Now()) {
		return nil
	}
	f, leader := t.n.cache.Join(cache.VariantKey(base, r), base)
	if leader {
		t.n.runFill(f, &fillJob{site: s, host: host, scheme: u.Scheme, path: path, rawQuery: u.RawQuery,
			acceptEncoding: "identity", clientIP: "127.0.0.1", prior: prior})
	}
	ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
	defer cancel()
	status, _, _, _, err := f.WaitHeader(ctx)
	if err != nil {
		return err
	}
	if _, err := f.Wait(ctx); err != nil {
		return err
	}
	if status >= 400 {
		return fmt.Errorf("%s: origin answered %d", raw, status)
	}
	return nil
}
