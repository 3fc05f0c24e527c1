package node

import (
	"strings"
	"testing"
)

var framingCases = []struct {
	name, stream string
	// verdicts for requests 0..n-1 ("" accepted)
	want []string
}{
	{"simple", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", []string{"", ""}},
	{"sized body", "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n", []string{"", ""}},
	{"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n", []string{"", ""}},
	{"cl and te", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []string{"both Content-Length and Transfer-Encoding"}},
	{"te and cl", "GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n", []string{"", "both Content-Length and Transfer-Encoding"}},
	{"two cl", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", []string{"duplicate Content-Length"}},
	{"folding", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", []string{"obsolete header line folding"}},
	{"space in name", "GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc", []string{"white space in a header name"}},
	{"smuggled in body", "POST / HTTP/1.1\r\nContent-Length: 59\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\nGET / HTTP/1.1\r\n\r\n", []string{"", ""}},
	{"leading blank lines", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", []string{""}},
}

func verdicts(f *framing, n int) []string {
	out := make([]string, n)
	for k := range out {
		out[k] = f.Verdict(k)
	}
	return out
}

func TestFraming(t *testing.T) {
	for _, tc := range framingCases {
		f := &framing{}
		f.Feed([]byte(tc.stream))
		if got := verdicts(f, len(tc.want)); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: verdicts %q, want %q", tc.name, got, tc.want)
		}
	}
}

// FuzzFraming checks that the tracker never panics and that its verdicts
// do not depend on how the stream is cut into reads.
func FuzzFraming(f *testing.F) {
	for _, tc := range framingCases {
		f.Add(tc.stream, uint8(1))
		f.Add(tc.stream, uint8(7))
	}
	f.Fuzz(func(t *testing.T, stream string, step uint8) {
		whole := &framing{}
		whole.Feed([]byte(stream))
		parts := &framing{}
		n := int(step%16) + 1
		for i := 0; i < len(stream); i += n {
			parts.Feed([]byte(stream[i:min(i+n, len(stream))]))
		}
		a, b := verdicts(whole, 8), verdicts(parts, 8)
		if strings.Join(a, "|") != strings.Join(b, "|") {
			t.Fatalf("verdicts depend on read size: %q vs %q", a, b)
		}
	})
}
