package cache

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func resp(status int, headers ...string) *http.Response {
	h := http.Header{}
	for _, kv := range headers {
		k, v, _ := strings.Cut(kv, ": ")
		h.Add(k, v)
	}
	return &http.Response{StatusCode: status, Header: h}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	date := "Date: " + now.Format(http.TimeFormat)
	rules := &outpostv1.CacheSettings{Rules: []*outpostv1.CacheRule{
		{Match: &outpostv1.CacheRule_PathPrefix{PathPrefix: "/static/"}, Ttl: durationpb.New(time.Hour)},
		{Match: &outpostv1.CacheRule_PathPrefix{PathPrefix: "/static/long/"}, Ttl: durationpb.New(24 * time.Hour)},
		{Match: &outpostv1.CacheRule_Extension{Extension: "jpg"}, Ttl: durationpb.New(7 * 24 * time.Hour)},
		{Match: &outpostv1.CacheRule_Extension{Extension: "php"}, Ttl: durationpb.New(0)},
	}}
	cases := []struct {
		name  string
		path  string
		resp  *http.Response
		store bool
		fresh time.Duration
	}{
		{"max-age", "/a.txt", resp(200, "Cache-Control: max-age=60"), true, time.Minute},
		{"s-maxage wins", "/a.txt", resp(200, "Cache-Control: max-age=60, s-maxage=120"), true, 2 * time.Minute},
		{"origin wins over rules", "/static/a.txt", resp(200, "Cache-Control: max-age=5"), true, 5 * time.Second},
		{"expires", "/a.txt", resp(200, date, "Expires: "+now.Add(10*time.Minute).Format(http.TimeFormat)), true, 10 * time.Minute},
		{"expired expires", "/a.txt", resp(200, date, "Expires: "+now.Add(-time.Minute).Format(http.TimeFormat)), true, 0},
		{"bad expires", "/a.txt", resp(200, "Expires: 0"), true, 0},
		{"no-store", "/a.txt", resp(200, "Cache-Control: no-store, max-age=60"), false, 0},
		{"private", "/a.txt", resp(200, "Cache-Control: private, max-age=60"), false, 0},
		{"set-cookie", "/a.txt", resp(200, "Cache-Control: max-age=60", "Set-Cookie: a=b"), false, 0},
		{"no-cache stored, revalidated", "/a.txt", resp(200, "Cache-Control: no-cache, max-age=60"), true, 0},
		{"vary on cookie", "/a.txt", resp(200, "Cache-Control: max-age=60", "Vary: Cookie"), false, 0},
		{"vary on accept-encoding", "/a.txt", resp(200, "Cache-Control: max-age=60", "Vary: accept-encoding"), true, time.Minute},
		{"prefix rule", "/static/x.txt", resp(200), true, time.Hour},
		{"longest prefix", "/static/long/x.txt", resp(200), true, 24 * time.Hour},
		{"extension before prefix", "/static/x.JPG", resp(200), true, 7 * 24 * time.Hour},
		{"rule ttl 0", "/static/x.php", resp(200), false, 0},
		{"heuristic", "/a.txt", resp(200, date, "Last-Modified: "+now.Add(-100*time.Hour).Format(http.TimeFormat)), true, 10 * time.Hour},
		{"heuristic capped", "/a.txt", resp(200, date, "Last-Modified: "+now.Add(-1000*time.Hour).Format(http.TimeFormat)), true, 24 * time.Hour},
		{"nothing", "/a.txt", resp(200), false, 0},
		{"500", "/a.txt", resp(500, "Cache-Control: max-age=60"), false, 0},
		{"404 cacheable", "/a.txt", resp(404, "Cache-Control: max-age=60"), true, time.Minute},
		{"deception html as css", "/profile.css", resp(200, "Cache-Control: max-age=60", "Content-Type: text/html; charset=utf-8"), false, 0},
		{"deception json as png", "/me.png", resp(200, "Cache-Control: max-age=60", "Content-Type: application/json"), false, 0},
		{"css as css", "/site.css", resp(200, "Cache-Control: max-age=60", "Content-Type: text/css"), true, time.Minute},
		{"html page", "/index.html", resp(200, "Cache-Control: max-age=60", "Content-Type: text/html"), true, time.Minute},
		{"duplicate max-age", "/a.txt", resp(200, "Cache-Control: max-age=60", "Cache-Control: max-age=600"), true, 0},
	}
	for _, tc := range cases {
		d := Decide(rules, tc.path, tc.resp, now)
		if d.Store != tc.store || d.Store && d.Fresh != tc.fresh {
			t.Errorf("%s: store=%v fresh=%v (%s), want store=%v fresh=%v", tc.name, d.Store, d.Fresh, d.Reason, tc.store, tc.fresh)
		}
	}
}

var pathCases = []struct{ in, want string }{
	{"/a/b", "/a/b"},
	{"", "/"},
	{"/a/./b", "/a/b"},
	{"/a/../b", "/b"},
	{"/../../b", "/b"},
	{"/a/b/..", "/a/"},
	{"/a/b/.", "/a/b/"},
	{"/%61%62%2e%7E", "/ab.~"},
	{"/a%2fb", "/a%2Fb"},
	{"/a%2Fb/%3f", "/a%2Fb/%3F"},
	{"/a//b", "/a//b"},
	{"/100%", "/100%25"},
	{"/%0%61", "/%250a"},
}

func TestNormalizePath(t *testing.T) {
	for _, tc := range pathCases {
		if got := NormalizePath(tc.in); got != tc.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzNormalizePath: never panics, always absolute, idempotent, and free
// of dot segments.
func FuzzNormalizePath(f *testing.F) {
	for _, tc := range pathCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := NormalizePath(p)
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("%q -> %q not absolute", p, got)
		}
		if again := NormalizePath(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", p, got, again)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q keeps a dot segment", p, got)
			}
		}
	})
}

func TestNormalizeAcceptEncoding(t *testing.T) {
	for in, want := range map[string]string{
		"": "identity", "gzip": "gzip", "gzip, deflate, br": "br", "br;q=0, gzip": "gzip", "BR;Q=0.5": "br",
		"deflate": "identity", "gzip;q=0": "identity", "*": "identity", "gzip;q=0.001": "gzip",
	} {
		if got := NormalizeAcceptEncoding(in); got != want {
			t.Errorf("NormalizeAcceptEncoding(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecide: arbitrary origin headers never panic and never store a
// response the rules forbid sharing.
func FuzzDecide(f *testing.F) {
	f.Add("/a.txt", "max-age=60", "", "text/plain")
	f.Add("/a.css", "public, s-maxage=10", "a=b", "text/html")
	f.Add("/x", "no-cache, stale-if-error=abc", "", "")
	f.Fuzz(func(t *testing.T, path, cc, cookie, ctype string) {
		r := resp(200)
		r.Header.Set("Cache-Control", cc)
		if cookie != "" {
			r.Header.Set("Set-Cookie", cookie)
		}
		r.Header.Set("Content-Type", ctype)
		d := Decide(nil, path, r, time.Now())
		if d.Store && (cookie != "" || strings.Contains(strings.ToLower(cc), "no-store") || strings.Contains(strings.ToLower(cc), "private")) {
			t.Fatalf("stored a response that must not be shared: %q %q", cc, cookie)
		}
		if d.Fresh < 0 {
			t.Fatalf("negative freshness %v", d.Fresh)
		}
	})
}
