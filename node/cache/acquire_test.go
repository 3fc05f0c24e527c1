package cache

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestAcquirePassesUncacheableKeys: once a key's origin response could not
// be shared, its requests are not collapsed (each gets a fill of its own)
// until PassTTL has passed or a response could be stored; origin errors
// do not start a pass; a purge dooms a pass's fill as any other.
func TestAcquirePassesUncacheableKeys(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c := New(Config{MaxBytes: 1 << 20, PassTTL: time.Minute, Now: clock}, nil)
	t.Cleanup(c.Close)
	r := httptest.NewRequest(http.MethodGet, "http://example.com/p", nil)
	const base = "example.com/p"
	fresh := func(*Entry) bool { return true }
	acquire := func() (*Fill, bool) {
		t.Helper()
		e, f, leader := c.Acquire(base, base, r, fresh)
		if e != nil {
			t.Fatalf("an entry: %+v", e)
		}
		return f, leader
	}
	store := &StoreAs{Decision: Decision{Store: true, Fresh: time.Hour}, Stored: now}

	// A cacheable key collapses: the second request joins the first.
	f1, l1 := acquire()
	f2, l2 := acquire()
	if !l1 || l2 || f1 != f2 {
		t.Fatalf("collapsing: leaders %v %v, same fill %v", l1, l2, f1 == f2)
	}
	// The response may not be shared: a pass starts.
	f1.SetHeader(200, http.Header{"Cache-Control": {"no-store"}}, false, "MISS")
	f1.Finish(nil, &StoreAs{Decision: Decision{Reason: "no-store"}})
	a, la := acquire()
	b, lb := acquire()
	if !la || !lb || a == b {
		t.Fatalf("during the pass: leaders %v %v, same fill %v; want two fills of their own", la, lb, a == b)
	}
	// A purge dooms a pass's fill: what it fetched is not stored.
	c.Purge(PurgeExact(base))
	a.SetHeader(200, http.Header{}, true, "MISS")
	a.Write([]byte("before the purge"))
	a.Finish(nil, store)
	if e := c.Lookup(base, r); e != nil {
		t.Fatalf("a doomed pass fill stored %q", e.Body)
	}
	b.Finish(errNoHeader, nil) // doomed too
	// A pass fill whose response can be stored after all ends the pass.
	b, lb = acquire()
	if !lb {
		t.Fatal("the pass ended with a purge")
	}
	b.SetHeader(200, http.Header{}, true, "MISS")
	b.Write([]byte("cacheable now"))
	b.Finish(nil, store)
	if e := c.Lookup(base, r); e == nil || string(e.Body) != "cacheable now" {
		t.Fatalf("stored: %v", e)
	}
	c.Purge(PurgeExact(base))
	f1, _ = acquire()
	if f2, l2 := acquire(); l2 || f1 != f2 {
		t.Fatal("not collapsing again after a stored response")
	}

	// The pass ends after PassTTL.
	f1.SetHeader(200, http.Header{}, false, "MISS")
	f1.Finish(nil, nil)
	if x, _ := acquire(); x == f1 {
		t.Fatal("joined a finished fill")
	} else {
		x.Finish(errNoHeader, nil)
	}
	advance(time.Minute + time.Second)
	f1, _ = acquire()
	if f2, l2 := acquire(); l2 || f1 != f2 {
		t.Fatal("still passing after PassTTL")
	}

	// An origin error does not start a pass.
	f1.SetHeader(503, http.Header{}, false, "MISS")
	f1.Finish(nil, nil)
	f1, _ = acquire()
	if f2, l2 := acquire(); l2 || f1 != f2 {
		t.Fatal("passing after a 503")
	}
	f1.Finish(errNoHeader, nil)
}
