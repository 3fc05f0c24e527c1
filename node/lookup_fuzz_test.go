package node

import (
	"net/http"
	"testing"

	"github.com/outpost-cdn/outpost/internal/names"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func fuzzState() *state {
	st := &state{sites: map[string]*site{}}
	for _, n := range []string{"www.example.com", "*.example.com", "*.img.example.com", "example.org"} {
		st.sites[n] = &site{domain: &outpostv1.Domain{Name: n}}
	}
	return st
}

// FuzzHostLookup feeds arbitrary Host headers and SNI names through the
// edge's routing: it never panics, and whatever site it picks is one whose
// accelerated name really matches the host.
func FuzzHostLookup(f *testing.F) {
	for _, s := range []string{"www.example.com", "WWW.Example.COM.", "a.example.com", "a.b.example.com", "x.img.example.com",
		"example.com", "example.org:443", "[::1]:80", "", ".", "*.example.com", "a..example.com", "www.example.com:99999"} {
		f.Add(s)
	}
	st := fuzzState()
	f.Fuzz(func(t *testing.T, host string) {
		r := &http.Request{Host: host}
		h := requestHost(r)
		s := st.lookup(h)
		if s == nil {
			return
		}
		if !names.Matches(s.domain.GetName(), h) {
			t.Fatalf("host %q (normalised %q) routed to %s", host, h, s.domain.GetName())
		}
		// An exact site always wins over a wildcard.
		if exact, ok := st.sites[h]; ok && exact != s {
			t.Fatalf("host %q: wildcard chosen over exact", h)
		}
	})
}
