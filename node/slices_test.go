package node_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// TestLargeFileSlices: for the download business type, a small range of a
// large object costs the origin one slice, and whole-object requests are
// assembled from slices.
func TestLargeFileSlices(t *testing.T) {
	e := newEdge(t)
	ctx := ctxT(t)
	if _, err := e.c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "dl.example.com", BusinessType: outpostv1.BusinessType_BUSINESS_TYPE_DOWNLOAD,
		Origins: []*outpostv1.Origin{ipOrigin(e.origin.IP, e.origin.HTTPPort)}}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	const mib = 1 << 20
	body := make([]byte, 3*mib+mib/2)
	for i := range body {
		body[i] = byte(i * 7 % 251)
	}
	e.origin.Write(t, "/c/max-age/large.bin", body)
	const host = "dl.example.com"
	ranges := func() []string {
		var out []string
		for _, l := range e.origin.Requests(t) {
			if strings.Contains(l, "/c/max-age/large.bin") {
				f := strings.Fields(l)
				out = append(out, f[len(f)-1])
			}
		}
		return out
	}

	r, b := e.req(t, "GET", host, "/c/max-age/large.bin", "Range: bytes=1000-1999")
	if r.StatusCode != 206 || b != string(body[1000:2000]) || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", len(body)) {
		t.Fatalf("small range: %d %q, %d bytes", r.StatusCode, r.Header.Get("Content-Range"), len(b))
	}
	if got := ranges(); len(got) != 1 || got[0] != fmt.Sprintf("rng=bytes=0-%d", mib-1) {
		t.Fatalf("origin saw %v for a 1000-byte range, want one slice", got)
	}
	// Across a slice boundary, from the cache plus one new slice.
	r, b = e.req(t, "GET", host, "/c/max-age/large.bin", fmt.Sprintf("Range: bytes=%d-%d", mib-10, mib+9))
	if r.StatusCode != 206 || b != string(body[mib-10:mib+10]) {
		t.Fatalf("boundary range: %d, %d bytes", r.StatusCode, len(b))
	}
	// A suffix range and HEAD.
	r, b = e.req(t, "GET", host, "/c/max-age/large.bin", "Range: bytes=-10")
	if r.StatusCode != 206 || b != string(body[len(body)-10:]) {
		t.Fatalf("suffix range: %d %q", r.StatusCode, b)
	}
	r, _ = e.req(t, "HEAD", host, "/c/max-age/large.bin")
	if r.ContentLength != int64(len(body)) {
		t.Fatalf("HEAD length %d", r.ContentLength)
	}
	// The whole object, assembled from slices: every slice fetched once.
	r, b = e.req(t, "GET", host, "/c/max-age/large.bin")
	if r.StatusCode != 200 || !bytes.Equal([]byte(b), body) {
		t.Fatalf("whole object: %d, %d bytes", r.StatusCode, len(b))
	}
	if got := ranges(); len(got) != 4 {
		t.Fatalf("origin saw %d slice requests (%v), want 4", len(got), got)
	}
	r, _ = e.req(t, "GET", host, "/c/max-age/large.bin", fmt.Sprintf("Range: bytes=%d-", len(body)+5))
	if r.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: %d", r.StatusCode)
	}
	// A purge removes the slices too.
	e.refresh(t, outpostv1.RefreshType_REFRESH_TYPE_FILE, "http://dl.example.com/c/max-age/large.bin")
	e.req(t, "GET", host, "/c/max-age/large.bin", "Range: bytes=0-9")
	if got := ranges(); len(got) != 5 {
		t.Fatalf("after a purge the slice was not fetched again: %v", got)
	}
}
