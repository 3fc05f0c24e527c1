package node

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestFastRequestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		fast bool
	}{
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\n\r\n", true},
		{"HEAD /a.txt?x=1&y=%20 HTTP/1.1\r\nhost: A.Example:8080\r\nAccept-Encoding: gzip, br\r\nConnection: Keep-Alive\r\n\r\n", true},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nCookie: a=b\r\nX-Very-Long-Header-Name-Beyond-Any-We-Look-At: 1\r\n\r\n", true},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\n", false},                        // incomplete
		{"GET /a.txt HTTP/1.0\r\nHost: a.example\r\n\r\n", false},                    // HTTP/1.0
		{"POST /a.txt HTTP/1.1\r\nHost: a.example\r\n\r\n", false},                   // method
		{"GET  /a.txt HTTP/1.1\r\nHost: a.example\r\n\r\n", false},                   // two spaces
		{"GET http://a.example/a.txt HTTP/1.1\r\nHost: a.example\r\n\r\n", false},    // absolute form
		{"GET /a/../b.txt HTTP/1.1\r\nHost: a.example\r\n\r\n", false},               // dot segment
		{"GET /a%2fb.txt HTTP/1.1\r\nHost: a.example\r\n\r\n", false},                // escape
		{"GET /a//b.txt HTTP/1.1\r\nHost: a.example\r\n\r\n", false},                 // empty segment
		{"GET /a.txt?x#y HTTP/1.1\r\nHost: a.example\r\n\r\n", false},                // '#'
		{"GET /a.txt HTTP/1.1\r\n\r\n", false},                                       // no Host
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n", false}, // two Hosts
		{"GET /a.txt HTTP/1.1\r\nHost: a.example/x\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\n Folded: x\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nBad Name: x\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nX: a\x00b\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\nX: y\r\n\r\n", false}, // bare LF
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nAuthorization: Basic x\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nCache-Control: no-cache\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nPragma: no-cache\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nRange: bytes=0-1\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nIf-None-Match: *\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nIF-MODIFIED-SINCE: x\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nAccept-Encoding: gzip\r\nAccept-Encoding: br\r\n\r\n", false},
		{"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\r\n", false},
	} {
		var r fastRequest
		n := r.parse([]byte(tc.in + "NEXT"))
		if (n > 0) != tc.fast {
			t.Errorf("%q: fast %v, want %v", tc.in, n > 0, tc.fast)
			continue
		}
		if tc.fast && n != len(tc.in) {
			t.Errorf("%q: consumed %d bytes, want %d", tc.in, n, len(tc.in))
		}
	}
}

// FuzzFastRequestParse: the fast path's parser never panics, and every
// head it accepts is one Go's own server reads the same way: the same
// method, target, Host and Accept-Encoding, with no body, and none of the
// headers the fast path leaves to net/http.
func FuzzFastRequestParse(f *testing.F) {
	for _, s := range []string{
		"GET /a.txt HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"HEAD /a.txt?x=1 HTTP/1.1\r\nHost: a.example:80\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n",
		"GET /a.txt HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\nabc",
		"GET /a.txt HTTP/1.1\r\nHost: a.example\r\n X: y\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r fastRequest
		n := r.parse(b)
		if n == 0 {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:n])))
		if err != nil {
			t.Fatalf("fast path accepted a head net/http refuses (%v): %q", err, b[:n])
		}
		method := "GET"
		if r.head {
			method = "HEAD"
		}
		if req.Method != method || req.RequestURI != string(r.target) || req.Host != string(r.host) ||
			req.Header.Get("Accept-Encoding") != string(r.acceptEncoding) || req.ProtoMinor != 1 {
			t.Fatalf("fast path read %q differently: method %s target %q host %q ae %q; net/http: %s %q %q %q",
				b[:n], method, r.target, r.host, r.acceptEncoding, req.Method, req.RequestURI, req.Host, req.Header.Get("Accept-Encoding"))
		}
		if req.ContentLength > 0 || len(req.TransferEncoding) > 0 || req.Close {
			t.Fatalf("fast path accepted a request with a body or Connection: close: %q", b[:n])
		}
		if req.URL.EscapedPath() != string(r.path) || req.URL.RawQuery != string(r.query) {
			t.Fatalf("path %q query %q; net/http %q %q", r.path, r.query, req.URL.EscapedPath(), req.URL.RawQuery)
		}
		for _, h := range []string{"Authorization", "Cache-Control", "Pragma", "Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Expect", "Upgrade"} {
			if _, ok := req.Header[h]; ok {
				t.Fatalf("fast path accepted a request with %s: %q", h, b[:n])
			}
		}
		if strings.Contains(string(b[:n-4]), "\r\n\r\n") {
			t.Fatalf("consumed past the first head: %q", b[:n])
		}
	})
}
