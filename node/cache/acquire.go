package cache

import "net/http"

// Acquire is Join with one more look at the cache under the lock: a fill
// that finished between the caller's Lookup and its Join has stored its
// entry by then, and usable (fresh enough, as the caller judges) is
// returned instead of starting another origin fetch. Exactly one of e and
// f is non-nil.
//
// A key whose last origin response could not be shared (see
// Config.PassTTL) gets a fill of its own, which nobody joins: the caller
// leads it, and its response is stored if it can be after all.
func (c *Cache) Acquire(key, base string, r *http.Request, usable func(*Entry) bool) (e *Entry, f *Fill, leader bool) {
	c.mu.Lock()
	if until, ok := c.passes.GetIfPresent(key); ok {
		if c.cfg.Now().Before(until) {
			f = &Fill{c: c, key: key, base: base, mu: make(chan struct{}, 1), changed: make(chan struct{}), waiters: 1, solo: true}
			c.solo[f] = struct{}{}
			c.mu.Unlock()
			return nil, f, true
		}
		c.passes.Invalidate(key)
	}
	if f, ok := c.fills[key]; ok {
		c.mu.Unlock()
		f.lock()
		f.waiters++
		f.unlock()
		return nil, f, false
	}
	if e := c.Lookup(base, r); e != nil && usable(e) {
		c.mu.Unlock()
		return e, nil, false
	}
	f = &Fill{c: c, key: key, base: base, mu: make(chan struct{}, 1), changed: make(chan struct{}), waiters: 1}
	c.fills[key] = f
	c.mu.Unlock()
	return nil, f, true
}
