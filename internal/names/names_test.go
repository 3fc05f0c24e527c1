package names

import (
	"strings"
	"testing"

	"github.com/outpost-cdn/outpost/internal/apierr"
)

var domainCases = []struct {
	in, want, reason string
}{
	{"www.example.com", "www.example.com", ""},
	{"WWW.Example.COM.", "www.example.com", ""},
	{"  img.example.com  ", "img.example.com", ""},
	{"*.example.com", "*.example.com", ""},
	{"*.a.example.com", "*.a.example.com", ""},
	{"example.com", "example.com", ""},
	{"a-b.example.com", "a-b.example.com", ""},
	{"1.example.com", "1.example.com", ""},
	{"", "", apierr.ReasonInvalidDomainName},
	{".", "", apierr.ReasonInvalidDomainName},
	{"com", "", apierr.ReasonInvalidDomainName},
	{"*.com", "", apierr.ReasonInvalidDomainName},
	{"*", "", apierr.ReasonInvalidDomainName},
	{"*.", "", apierr.ReasonInvalidDomainName},
	{"a.*.example.com", "", apierr.ReasonInvalidDomainName},
	{"*a.example.com", "", apierr.ReasonInvalidDomainName},
	{"**.example.com", "", apierr.ReasonInvalidDomainName},
	{"a..example.com", "", apierr.ReasonInvalidDomainName},
	{"-a.example.com", "", apierr.ReasonInvalidDomainName},
	{"a-.example.com", "", apierr.ReasonInvalidDomainName},
	{"a_b.example.com", "", apierr.ReasonInvalidDomainName},
	{"a b.example.com", "", apierr.ReasonInvalidDomainName},
	{"a\x00b.example.com", "", apierr.ReasonInvalidDomainName},
	{"192.0.2.1", "", apierr.ReasonInvalidDomainName},
	{"::1", "", apierr.ReasonInvalidDomainName},
	{"example.123", "", apierr.ReasonInvalidDomainName},
	{"xn--fiqs8s.example.com", "", apierr.ReasonInvalidDomainName},
	{"ab--cd.example.com", "", apierr.ReasonInvalidDomainName},
	{"wc--all.example.com", "", apierr.ReasonInvalidDomainName},
	{"中国.example.com", "", apierr.ReasonDomainNameNotASCII},
	{"bücher.example.com", "", apierr.ReasonDomainNameNotASCII},
	{strings.Repeat("a", 63) + ".example.com", strings.Repeat("a", 63) + ".example.com", ""},
	{strings.Repeat("a", 64) + ".example.com", "", apierr.ReasonInvalidDomainName},
	{strings.Repeat("abcdefghi.", 26) + "com", "", apierr.ReasonInvalidDomainName},
	{"a.example.com:443", "", apierr.ReasonInvalidDomainName},
	{"https://a.example.com", "", apierr.ReasonInvalidDomainName},
}

func TestDomain(t *testing.T) {
	for _, tc := range domainCases {
		got, err := Domain(tc.in)
		if tc.reason == "" {
			if err != nil || got != tc.want {
				t.Errorf("Domain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		if r := apierr.Reason(err); r != tc.reason {
			t.Errorf("Domain(%q) reason %q (%v), want %q", tc.in, r, err, tc.reason)
		}
	}
}

func TestHost(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want string
	}{
		{"origin.example.com", true, "origin.example.com"},
		{"localhost", true, "localhost"},
		{"Origin.Example.com.", true, "origin.example.com"},
		{"*.example.com", false, ""},
		{"192.0.2.1", false, ""},
		{"", false, ""},
		{"bad_host", false, ""},
	} {
		got, err := Host(tc.in, apierr.ReasonInvalidSniValue)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Host(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && apierr.Reason(err) != apierr.ReasonInvalidSniValue {
			t.Errorf("Host(%q) reason %q", tc.in, apierr.Reason(err))
		}
	}
}

var matchCases = []struct {
	pattern, host string
	want          bool
}{
	{"www.example.com", "www.example.com", true},
	{"www.example.com", "example.com", false},
	{"*.example.com", "a.example.com", true},
	{"*.example.com", "example.com", false},
	{"*.example.com", "a.b.example.com", false},
	{"*.example.com", ".example.com", false},
	{"*.example.com", "aexample.com", false},
	{"*.b.example.com", "a.b.example.com", true},
}

func TestMatches(t *testing.T) {
	for _, tc := range matchCases {
		if got := Matches(tc.pattern, tc.host); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v", tc.pattern, tc.host, got)
		}
	}
	if got := WildcardOf("a.b.example.com"); got != "*.b.example.com" {
		t.Errorf("WildcardOf = %q", got)
	}
	if got := WildcardOf("example.com"); got != "" {
		t.Errorf("WildcardOf(example.com) = %q", got)
	}
}

func TestCNAME(t *testing.T) {
	if got := CNAME("www.example.com", "CDN.Outpost.test."); got != "www.example.com.cdn.outpost.test" {
		t.Errorf("CNAME = %q", got)
	}
	if got := CNAME("*.example.com", "cdn.outpost.test"); got != "wc--all.example.com.cdn.outpost.test" {
		t.Errorf("wildcard CNAME = %q", got)
	}
}

// FuzzDomain checks that validation never panics, that what it accepts is
// stable (normalising again changes nothing) and is a well-formed name.
func FuzzDomain(f *testing.F) {
	for _, tc := range domainCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Domain(in)
		if err != nil {
			if apierr.Reason(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		again, err := Domain(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, got, again, err)
		}
		if len(got) > MaxNameLength || strings.ToLower(got) != got || strings.HasSuffix(got, ".") {
			t.Fatalf("accepted malformed %q", got)
		}
		if strings.Contains(got[1:], "*") {
			t.Fatalf("accepted inner wildcard %q", got)
		}
	})
}

// FuzzMatches checks Matches against its definition.
func FuzzMatches(f *testing.F) {
	for _, tc := range matchCases {
		f.Add(tc.pattern, tc.host)
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		got := Matches(pattern, host)
		want := pattern == host
		if rest, ok := strings.CutPrefix(pattern, "*."); ok && !want {
			label, parent, found := strings.Cut(host, ".")
			want = found && label != "" && parent == rest
		}
		if got != want {
			t.Fatalf("Matches(%q, %q) = %v, want %v", pattern, host, got, want)
		}
	})
}
