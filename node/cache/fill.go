package cache

import (
	"context"
	"net/http"
	"time"
)

// Fill is one origin fetch shared by every client that missed on the same
// key at the same time (request collapsing). The leader fetches and writes
// into the fill; every client, the leader's included, streams the body from
// the fill as it arrives, with no polling delay. Once complete, a shareable
// response is stored, unless a purge matched it meanwhile.
//
// A Fill is safe for concurrent use. The leader calls SetHeader once, then
// Write any number of times, then Finish once; the waiters call
// WaitHeader, then Next until it reports done.
type Fill struct {
	c    *Cache
	key  string
	base string

	mu      chan struct{} // a one-slot lock that select can wait beside
	changed chan struct{} // closed and replaced whenever something changes
	hasHead bool
	status  int
	header  http.Header
	shared  bool
	label   string
	body    []byte
	done    bool
	err     error
	doomed  bool
	waiters int
	solo    bool // in Cache.solo, not Cache.fills (a pass: see Acquire)
}

func (f *Fill) lock()   { f.mu <- struct{}{} }
func (f *Fill) unlock() { <-f.mu }

// broadcast wakes waiters. f must be locked.
func (f *Fill) broadcast() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Join returns the fill in progress for key, or starts one: leader is true
// for the one caller that must run the fetch (and call Finish).
func (c *Cache) Join(key, base string) (f *Fill, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.fills[key]; ok {
		f.lock()
		f.waiters++
		f.unlock()
		return f, false
	}
	f = &Fill{c: c, key: key, base: base, mu: make(chan struct{}, 1), changed: make(chan struct{}), waiters: 1}
	c.fills[key] = f
	return f, true
}

// Waiters is how many clients joined the fill (the leader included).
func (f *Fill) Waiters() int {
	f.lock()
	defer f.unlock()
	return f.waiters
}

// doom marks the fill as overtaken by a purge. c.mu is held.
func (f *Fill) doom() {
	f.lock()
	f.doomed = true
	f.unlock()
}

// SetHeader publishes the response head. shared false means the response
// is not for sharing: waiters must fetch for themselves, and no new client
// joins. label is the X-Cache value clients report (MISS, EXPIRED, STALE).
func (f *Fill) SetHeader(status int, header http.Header, shared bool, label string) {
	if !shared {
		c := f.c
		c.mu.Lock()
		if c.fills[f.key] == f {
			delete(c.fills, f.key)
		}
		// Until the pass ends, requests for the key do not wait on one
		// another's fills. Not for origin errors: collapsing is what
		// shields a struggling origin.
		if status < 500 {
			c.passes.Set(f.key, c.cfg.Now().Add(c.cfg.PassTTL))
		}
		c.mu.Unlock()
	}
	f.lock()
	f.hasHead, f.status, f.header, f.shared, f.label = true, status, header, shared, label
	f.broadcast()
	f.unlock()
}

// Write appends body bytes.
func (f *Fill) Write(p []byte) (int, error) {
	f.lock()
	f.body = append(f.body, p...)
	f.broadcast()
	f.unlock()
	return len(p), nil
}

// StoreAs says how to keep a completed fill.
type StoreAs struct {
	Decision Decision
	Varies   bool
	// Key, when set, stores the entry under this key (under the fill's
	// base key for purges), as slices of large objects are.
	Key        string
	Stored     time.Time
	InitialAge time.Duration
}

// Finish completes the fill. With err nil and st not nil the response is
// stored, unless a purge matched it while it was in flight.
func (f *Fill) Finish(err error, st *StoreAs) {
	c := f.c
	c.mu.Lock()
	if c.fills[f.key] == f {
		delete(c.fills, f.key)
	}
	if f.solo {
		delete(c.solo, f)
	}
	f.lock()
	if !f.hasHead && err == nil {
		err = errNoHeader
	}
	keep := err == nil && st != nil && st.Decision.Store && f.shared && !f.doomed
	body, header, status := f.body, f.header, f.status
	f.unlock()
	// Store before telling the waiters: a client that saw its response
	// complete and asks again must find the entry.
	if keep {
		key := f.base
		switch {
		case st.Key != "":
			key = st.Key
		case st.Varies:
			key = f.key
		}
		c.storeLocked(&Entry{Base: f.base, Key: key, Status: status, Header: header, Body: body,
			Stored: st.Stored, InitialAge: st.InitialAge, Fresh: st.Decision.Fresh, StaleIfError: st.Decision.StaleIfError}, st.Varies)
		c.passes.Invalidate(f.key) // cacheable again: collapse again
	}
	c.mu.Unlock()
	f.lock()
	f.done, f.err = true, err
	f.broadcast()
	f.unlock()
}

type fillError string

func (e fillError) Error() string { return string(e) }

const errNoHeader = fillError("the fill ended without a response")

// WaitHeader blocks until the head is known or the fill failed.
func (f *Fill) WaitHeader(ctx context.Context) (status int, header http.Header, shared bool, label string, err error) {
	for {
		f.lock()
		if f.hasHead {
			defer f.unlock()
			return f.status, f.header, f.shared, f.label, nil
		}
		if f.done {
			defer f.unlock()
			return 0, nil, false, "", f.err
		}
		ch := f.changed
		f.unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, nil, false, "", ctx.Err()
		}
	}
}

// Next returns the body bytes after offset off as soon as there are any,
// and whether the body is complete (then err says if it failed).
func (f *Fill) Next(ctx context.Context, off int) (chunk []byte, done bool, err error) {
	for {
		f.lock()
		if off < len(f.body) {
			chunk = f.body[off:len(f.body):len(f.body)]
			f.unlock()
			return chunk, false, nil
		}
		if f.done {
			defer f.unlock()
			return nil, true, f.err
		}
		ch := f.changed
		f.unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// Wait blocks until the fill is complete and returns the whole body.
func (f *Fill) Wait(ctx context.Context) ([]byte, error) {
	for {
		f.lock()
		if f.done {
			defer f.unlock()
			return f.body, f.err
		}
		ch := f.changed
		f.unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
