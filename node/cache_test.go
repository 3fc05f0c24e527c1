package node_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-cdn/outpost/node"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// req sends a request through the edge with optional headers
// ("Name: value" strings) and returns the response and body.
func (e *edge) req(t testing.TB, method, host, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	r, err := http.NewRequest(method, "http://"+e.node.HTTPAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Host = host
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		r.Header.Set(k, strings.TrimSpace(v))
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func wantCache(t testing.TB, resp *http.Response, body, wantX, wantBody string) {
	t.Helper()
	if got := resp.Header.Get("X-Cache"); got != wantX {
		t.Fatalf("X-Cache %q, want %q (status %d)", got, wantX, resp.StatusCode)
	}
	if wantBody != "" && body != wantBody {
		t.Fatalf("body %q, want %q", body, wantBody)
	}
}

func TestCacheFreshnessRules(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	for _, p := range []string{"/c/max-age/a.txt", "/c/no-cache/a.txt", "/c/private/a.txt", "/c/no-store/a.txt", "/c/cookie/a.txt", "/c/plain/a.txt", "/c/plain/b.jpg", "/c/plain/static/c.txt"} {
		e.origin.Write(t, p, []byte("content of "+p))
	}
	const host = "www.example.com"

	t.Run("max-age is a hit with Age", func(t *testing.T) {
		r, b := e.req(t, "GET", host, "/c/max-age/a.txt")
		wantCache(t, r, b, "MISS", "content of /c/max-age/a.txt")
		time.Sleep(1100 * time.Millisecond)
		r, b = e.req(t, "GET", host, "/c/max-age/a.txt")
		wantCache(t, r, b, "HIT", "content of /c/max-age/a.txt")
		if r.Header.Get("Age") != "1" {
			t.Fatalf("Age %q", r.Header.Get("Age"))
		}
		if n := e.origin.Count(t, "/c/max-age/a.txt"); n != 1 {
			t.Fatalf("origin saw %d requests", n)
		}
	})
	t.Run("not shared", func(t *testing.T) {
		for _, p := range []string{"/c/private/a.txt", "/c/no-store/a.txt", "/c/cookie/a.txt"} {
			e.req(t, "GET", host, p)
			r, _ := e.req(t, "GET", host, p)
			if r.Header.Get("X-Cache") == "HIT" || e.origin.Count(t, p) != 2 {
				t.Fatalf("%s served from cache (origin saw %d)", p, e.origin.Count(t, p))
			}
		}
		// A request with credentials is never answered from the cache.
		r, _ := e.req(t, "GET", host, "/c/max-age/a.txt", "Authorization: Bearer x")
		if r.Header.Get("X-Cache") == "HIT" || e.origin.Count(t, "/c/max-age/a.txt") != 2 {
			t.Fatal("a request with Authorization was served from the cache")
		}
	})
	t.Run("no-cache revalidates", func(t *testing.T) {
		r, b := e.req(t, "GET", host, "/c/no-cache/a.txt")
		wantCache(t, r, b, "MISS", "content of /c/no-cache/a.txt")
		// Let the fill finish storing: a request that joins it would be
		// answered from it (HIT), not revalidated.
		time.Sleep(100 * time.Millisecond)
		r, b = e.req(t, "GET", host, "/c/no-cache/a.txt")
		wantCache(t, r, b, "EXPIRED", "content of /c/no-cache/a.txt")
		reqs := e.origin.Requests(t)
		if last := reqs[len(reqs)-1]; !strings.Contains(last, "/c/no-cache/a.txt") || strings.Contains(last, "inm=-") {
			t.Fatalf("revalidation was not conditional: %q", last)
		}
	})
	t.Run("rules", func(t *testing.T) {
		// Without freshness information and without a rule: heuristic from
		// Last-Modified (the file is seconds old: practically nothing).
		ctx := ctxT(t)
		for _, req := range []*outpostv1.AddCacheRuleRequest{
			{Domain: host, Match: &outpostv1.AddCacheRuleRequest_PathPrefix{PathPrefix: "/c/plain/"}, Ttl: durationpb.New(time.Hour)},
			{Domain: host, Match: &outpostv1.AddCacheRuleRequest_Extension{Extension: "jpg"}, Ttl: durationpb.New(0)},
		} {
			if _, err := e.c.Cache.AddCacheRule(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
		e.sync(t)
		e.req(t, "GET", host, "/c/plain/static/c.txt")
		r, _ := e.req(t, "GET", host, "/c/plain/static/c.txt")
		wantCache(t, r, "", "HIT", "")
		e.req(t, "GET", host, "/c/plain/b.jpg")
		r, _ = e.req(t, "GET", host, "/c/plain/b.jpg")
		if r.Header.Get("X-Cache") == "HIT" {
			t.Fatal("the jpg rule with TTL 0 did not win over the path rule")
		}
	})
	t.Run("cache deception", func(t *testing.T) {
		e.req(t, "GET", host, "/c/html.css")
		r, _ := e.req(t, "GET", host, "/c/html.css")
		if r.Header.Get("X-Cache") == "HIT" {
			t.Fatal("an HTML page under a .css name was cached")
		}
	})
}

func TestCacheKeysVaryHeadRangeConditional(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	const host = "www.example.com"
	e.origin.Write(t, "/c/vary/v.txt", []byte("vary me"))
	e.origin.Write(t, "/c/max-age/q.txt", []byte("query"))
	e.origin.Write(t, "/c/max-age/r.bin", []byte("0123456789abcdef"))

	// Vary: Accept-Encoding keeps one entry per normalised coding.
	e.req(t, "GET", host, "/c/vary/v.txt", "Accept-Encoding: gzip, deflate")
	r, b := e.req(t, "GET", host, "/c/vary/v.txt", "Accept-Encoding: deflate, gzip;q=0.8")
	wantCache(t, r, b, "HIT", "vary me")
	r, b = e.req(t, "GET", host, "/c/vary/v.txt")
	wantCache(t, r, b, "MISS", "vary me")
	if n := e.origin.Count(t, "/c/vary/v.txt"); n != 2 {
		t.Fatalf("origin saw %d requests for 2 variants", n)
	}

	// The query is part of the key unless the domain ignores it.
	e.req(t, "GET", host, "/c/max-age/q.txt?a=1")
	r, _ = e.req(t, "GET", host, "/c/max-age/q.txt?a=2")
	wantCache(t, r, "", "MISS", "")
	if _, err := e.c.Cache.SetCacheKeyOptions(ctxT(t), &outpostv1.SetCacheKeyOptionsRequest{Domain: host, IgnoreQuery: true}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	e.req(t, "GET", host, "/c/max-age/q.txt?a=3")
	r, b = e.req(t, "GET", host, "/c/max-age/q.txt?b=4")
	wantCache(t, r, b, "HIT", "query")

	// Path spellings the origin treats alike share the entry.
	r, b = e.req(t, "GET", host, "/c/max-age/../max-age/%71.txt?z")
	wantCache(t, r, b, "HIT", "query")

	// HEAD is answered from the GET entry; a HEAD miss fills with GET.
	e.req(t, "GET", host, "/c/max-age/r.bin")
	r, b = e.req(t, "HEAD", host, "/c/max-age/r.bin")
	if r.Header.Get("X-Cache") != "HIT" || b != "" || r.ContentLength != 16 {
		t.Fatalf("HEAD: %q %q %d", r.Header.Get("X-Cache"), b, r.ContentLength)
	}
	// Ranges are cut from the entry.
	r, b = e.req(t, "GET", host, "/c/max-age/r.bin", "Range: bytes=4-7")
	if r.StatusCode != http.StatusPartialContent || b != "4567" || r.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("range: %d %q %q", r.StatusCode, b, r.Header.Get("X-Cache"))
	}
	// Conditional requests get 304 from the cache.
	etag := r.Header.Get("ETag")
	r, b = e.req(t, "GET", host, "/c/max-age/r.bin", "If-None-Match: "+etag)
	if r.StatusCode != http.StatusNotModified || b != "" {
		t.Fatalf("If-None-Match: %d %q", r.StatusCode, b)
	}
	if n := e.origin.Count(t, "/c/max-age/r.bin"); n != 1 {
		t.Fatalf("origin saw %d requests for r.bin", n)
	}
}

func TestStaleIfError(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	e.origin.Write(t, "/c/short/s.txt", []byte("short lived"))
	r, b := e.req(t, "GET", "www.example.com", "/c/short/s.txt")
	wantCache(t, r, b, "MISS", "short lived")
	// The origin goes away; the entry expires.
	dead := &outpostv1.Origin{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "127.0.0.1", Port: 1}
	if _, err := e.c.Origins.SetOrigins(ctxT(t), &outpostv1.SetOriginsRequest{Domain: "www.example.com", Origins: []*outpostv1.Origin{dead}}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	time.Sleep(1100 * time.Millisecond)
	r, b = e.req(t, "GET", "www.example.com", "/c/short/s.txt")
	wantCache(t, r, b, "STALE", "short lived")
}

// TestRequestCollapsing sends 1,000 concurrent requests for one uncached
// object: the origin sees exactly one.
func TestRequestCollapsing(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	e.origin.Write(t, "/c/max-age/big.bin", body)
	tr := &http.Transport{MaxIdleConnsPerHost: 1000, MaxConnsPerHost: 0}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	const n = 1000
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("GET", "http://"+e.node.HTTPAddr()+"/c/max-age/big.bin", nil)
			req.Host = "www.example.com"
			resp, err := cl.Do(req)
			if err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(got, body) {
				errs <- fmt.Errorf("status %d, %d bytes, %v", resp.StatusCode, len(got), err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := e.origin.Count(t, "/c/max-age/big.bin"); got != 1 {
		t.Fatalf("origin saw %d requests for %d concurrent misses", got, n)
	}
}

// TestCachePoisoningHeadersNotForwarded: headers an origin may vary on but
// the key does not include never reach the origin on a cache fill.
func TestCachePoisoningHeadersNotForwarded(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	e.origin.Write(t, "/c/max-age/p.txt", []byte("p"))
	e.req(t, "GET", "www.example.com", "/c/max-age/p.txt", "X-Forwarded-Host: evil.example.net", "X-Original-URL: /admin")
	for _, l := range e.origin.Requests(t) {
		if strings.Contains(l, "/c/max-age/p.txt") && (!strings.Contains(l, "xfh=-") || !strings.Contains(l, "xou=-")) {
			t.Fatalf("unkeyed header reached the origin: %q", l)
		}
	}
}

// TestDiskCacheSurvivesRestart: with -cache-dir, a node restarted on the
// same directory serves what it cached before without asking the origin.
func TestDiskCacheSurvivesRestart(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	e.node.Close()
	cacheDir := t.TempDir()
	e.node = startNode(t, e.env, e.nodeToken, nodeOpts{dataDir: e.nodeDir, cacheDir: cacheDir})
	e.sync(t)
	e.origin.Write(t, "/c/max-age/disk.txt", []byte("on disk"))
	r, b := e.req(t, "GET", "www.example.com", "/c/max-age/disk.txt")
	wantCache(t, r, b, "MISS", "on disk")
	e.node.Close() // flushes the disk writer
	e.node = startNode(t, e.env, e.nodeToken, nodeOpts{dataDir: e.nodeDir, cacheDir: cacheDir})
	e.node.WaitCacheIndexed()
	r, b = e.req(t, "GET", "www.example.com", "/c/max-age/disk.txt")
	wantCache(t, r, b, "HIT", "on disk")
	if n := e.origin.Count(t, "/c/max-age/disk.txt"); n != 1 {
		t.Fatalf("origin saw %d requests across the restart", n)
	}
}

// TestDiskCacheHeldUntilPurgesCaughtUp: after a restart, what the disk
// tier kept is not served until the node has a controller's config with the
// purges it missed while down (an object purged meanwhile is fetched
// again, even with no controller to tell the node), or until the cache sync
// wait has passed.
func TestDiskCacheHeldUntilPurgesCaughtUp(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	e.node.Close()
	cacheDir := t.TempDir()
	restart := func(o nodeOpts) {
		t.Helper()
		e.node.Close()
		o.dataDir, o.cacheDir = e.nodeDir, cacheDir
		e.node = startNode(t, e.env, e.nodeToken, o)
		e.node.WaitCacheIndexed()
	}
	e.node = startNode(t, e.env, e.nodeToken, nodeOpts{dataDir: e.nodeDir, cacheDir: cacheDir})
	e.sync(t)
	e.origin.Write(t, "/c/max-age/purged.txt", []byte("v1"))
	e.origin.Write(t, "/c/max-age/kept.txt", []byte("kept"))
	for _, p := range []string{"/c/max-age/purged.txt", "/c/max-age/kept.txt"} {
		r, b := e.req(t, "GET", "www.example.com", p)
		wantCache(t, r, b, "MISS", string(b))
	}
	e.node.Close() // flushes the disk writer

	// While the node is down: a new version, and a purge of the old.
	e.origin.Write(t, "/c/max-age/purged.txt", []byte("v2"))
	if _, err := e.c.Content.RefreshObjects(ctxT(t), &outpostv1.RefreshObjectsRequest{Type: outpostv1.RefreshType_REFRESH_TYPE_FILE,
		Entries: []string{"http://www.example.com/c/max-age/purged.txt"}}); err != nil {
		t.Fatal(err)
	}

	// Back without a controller: the kept copy is held, the origin answers.
	unreachable := []string{"127.0.0.1:1"}
	restart(nodeOpts{controllers: unreachable, cacheSyncWait: time.Hour})
	r, b := e.req(t, "GET", "www.example.com", "/c/max-age/purged.txt")
	wantCache(t, r, b, "MISS", "v2")

	// Still no controller, a short wait: once it has passed, the kept copy
	// is served.
	restart(nodeOpts{controllers: unreachable, cacheSyncWait: 100 * time.Millisecond})
	if !node.DiskCacheHeld(e.node) {
		t.Fatal("the disk cache is not held after a restart")
	}
	eventually(t, "the cache sync wait to pass", func() bool { return !node.DiskCacheHeld(e.node) })
	r, b = e.req(t, "GET", "www.example.com", "/c/max-age/kept.txt")
	wantCache(t, r, b, "HIT", "kept")

	// With a controller: served as soon as the config is in sync.
	restart(nodeOpts{cacheSyncWait: time.Hour})
	e.sync(t)
	if node.DiskCacheHeld(e.node) {
		t.Fatal("the disk cache is still held with the config in sync")
	}
	r, b = e.req(t, "GET", "www.example.com", "/c/max-age/kept.txt")
	wantCache(t, r, b, "HIT", "kept")
	if n := e.origin.Count(t, "/c/max-age/kept.txt"); n != 1 {
		t.Fatalf("origin saw %d requests for the kept object across three restarts, want 1", n)
	}
}
