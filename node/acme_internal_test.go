package node

import (
	"net/http"
	"net/http/httptest"
	"testing"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// TestACMEChallengesMergeAndServe: challenges arrive in snapshots and
// changes and leave with removals; a node answers a pending one for its
// own domain only, answers unknown tokens of a free-certificate domain
// itself, and lets other domains' requests under the path through.
func TestACMEChallengesMergeAndServe(t *testing.T) {
	origin := []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "192.0.2.1"}}
	free := &outpostv1.HttpsSettings{Free: &outpostv1.FreeCertificate{Status: outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING}}
	const tokA, tokB = "tokenAAAAAAAAAAAAAAAAAAAA", "token_BBBBBBBBBBBBBBBBBB-"
	d := (*desired)(nil).merge(&outpostv1.StreamConfigResponse{Revision: 1, Snapshot: true,
		Domains: []*outpostv1.Domain{
			{Name: "free.example.com", Origins: origin, Https: free},
			{Name: "plain.example.com", Origins: origin},
		},
		AcmeChallenges: []*outpostv1.AcmeChallenge{
			{Token: tokA, Domain: "free.example.com", KeyAuthorization: tokA + ".thumb"},
			{Token: "bad/token", Domain: "free.example.com", KeyAuthorization: "x"},
		}})
	d = d.merge(&outpostv1.StreamConfigResponse{Revision: 2,
		AcmeChallenges: []*outpostv1.AcmeChallenge{{Token: tokB, Domain: "plain.example.com", KeyAuthorization: tokB + ".thumb"}}})
	st, err := build(d, emptyState)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.challenges) != 2 {
		t.Fatalf("challenges after a snapshot and a change: %v; want %s and %s (the malformed one left out)", st.challenges, tokA, tokB)
	}

	n := &Node{}
	serve := func(st *state, method, host, path string) (handled bool, code int, body string) {
		r := httptest.NewRequest(method, "http://"+host+path, nil)
		w := httptest.NewRecorder()
		handled = n.serveACMEChallenge(w, r, st, st.lookup(host))
		return handled, w.Code, w.Body.String()
	}
	cases := []struct {
		name, method, host, path string
		handled                  bool
		code                     int
		body                     string
	}{
		{"pending", http.MethodGet, "free.example.com", "/.well-known/acme-challenge/" + tokA, true, 200, tokA + ".thumb"},
		{"head", http.MethodHead, "free.example.com", "/.well-known/acme-challenge/" + tokA, true, 200, ""},
		{"unknown token of a free domain", http.MethodGet, "free.example.com", "/.well-known/acme-challenge/nope", true, 404, ""},
		{"another domain's token", http.MethodGet, "free.example.com", "/.well-known/acme-challenge/" + tokB, true, 404, ""},
		{"post", http.MethodPost, "free.example.com", "/.well-known/acme-challenge/" + tokA, true, 405, ""},
		{"other path", http.MethodGet, "free.example.com", "/index.html", false, 0, ""},
		{"pending on a domain without free", http.MethodGet, "plain.example.com", "/.well-known/acme-challenge/" + tokB, true, 200, tokB + ".thumb"},
		{"unknown token of a domain without free goes on", http.MethodGet, "plain.example.com", "/.well-known/acme-challenge/nope", false, 0, ""},
	}
	for _, tc := range cases {
		handled, code, body := serve(st, tc.method, tc.host, tc.path)
		if handled != tc.handled || handled && (code != tc.code || tc.body != "" && body != tc.body) {
			t.Errorf("%s: handled %v, %d %q; want %v, %d %q", tc.name, handled, code, body, tc.handled, tc.code, tc.body)
		}
	}

	// Removed in a change: no longer answered. A new snapshot replaces all.
	d = d.merge(&outpostv1.StreamConfigResponse{Revision: 3, RemovedAcmeChallenges: []string{tokA}})
	if st, err = build(d, st); err != nil {
		t.Fatal(err)
	}
	if _, code, _ := serve(st, http.MethodGet, "free.example.com", "/.well-known/acme-challenge/"+tokA); code != 404 {
		t.Errorf("a removed challenge: %d, want 404", code)
	}
	d = d.merge(&outpostv1.StreamConfigResponse{Revision: 4, Snapshot: true, Domains: []*outpostv1.Domain{{Name: "plain.example.com", Origins: origin}}})
	if st, err = build(d, st); err != nil {
		t.Fatal(err)
	}
	if len(st.challenges) != 0 {
		t.Errorf("challenges after a snapshot without any: %v", st.challenges)
	}
}
