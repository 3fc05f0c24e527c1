package cache

import (
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Heuristic freshness for responses with a Last-Modified but no explicit
// lifetime and no matching rule: 10% of their age, at most a day (RFC 9111
// 4.2.2).
const maxHeuristic = 24 * time.Hour

// RequestCacheable reports whether a client request may be answered from,
// and filled into, the shared cache. Requests carrying credentials are
// never shared.
func RequestCacheable(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("Authorization") != "" {
		return false
	}
	return !directives(r.Header)["no-store"].present
}

// Decision is what the cache does with an origin response.
type Decision struct {
	// Store is false when the response must not be shared.
	Store bool
	// Why it is not stored (for logs and tests).
	Reason string
	// Fresh is the freshness lifetime (0: revalidate on every use).
	Fresh time.Duration
	// StaleIfError is how long past freshness the entry may be served when
	// the origin fails.
	StaleIfError time.Duration
}

// DefaultStaleIfError applies when the origin gives no stale-if-error.
const DefaultStaleIfError = 24 * time.Hour

// cacheableStatus are the statuses stored (those RFC 9110 calls
// heuristically cacheable, minus partial content: ranges are cut from
// whole entries).
var cacheableStatus = map[int]bool{200: true, 203: true, 300: true, 301: true, 308: true, 404: true, 410: true}

// Decide applies the origin's Cache-Control and Expires, then the domain's
// rules, to a response for urlPath. now is when the response arrived.
func Decide(settings *outpostv1.CacheSettings, urlPath string, resp *http.Response, now time.Time) Decision {
	if !cacheableStatus[resp.StatusCode] {
		return Decision{Reason: "status " + strconv.Itoa(resp.StatusCode)}
	}
	cc := directives(resp.Header)
	switch {
	case cc["no-store"].present:
		return Decision{Reason: "no-store"}
	case cc["private"].present:
		return Decision{Reason: "private"}
	case len(resp.Header.Values("Set-Cookie")) > 0:
		return Decision{Reason: "set-cookie"}
	case resp.Header.Get("Vary") != "" && !varyOnlyAcceptEncoding(resp.Header):
		return Decision{Reason: "vary"}
	case !typeMatchesExtension(urlPath, resp.Header.Get("Content-Type")):
		// Cache-deception armour: /account/profile.css answered with HTML.
		return Decision{Reason: "content-type does not match the extension"}
	}
	d := Decision{Store: true, StaleIfError: DefaultStaleIfError}
	if v, ok := cc["stale-if-error"]; ok && v.seconds >= 0 {
		d.StaleIfError = time.Duration(v.seconds) * time.Second
	}
	if cc["no-cache"].present || cc["must-revalidate"].present && cc["max-age"].seconds == 0 && cc["max-age"].present {
		return d // stored, revalidated on every use
	}
	if v := cc["s-maxage"]; v.present && v.seconds >= 0 {
		d.Fresh = time.Duration(v.seconds) * time.Second
		return d
	}
	if v := cc["max-age"]; v.present && v.seconds >= 0 {
		d.Fresh = time.Duration(v.seconds) * time.Second
		return d
	}
	if exp := resp.Header.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		date := responseDate(resp, now)
		if err != nil || !t.After(date) {
			return d // invalid or past Expires: stale at once
		}
		d.Fresh = t.Sub(date)
		return d
	}
	if ttl, ok := ruleTTL(settings, urlPath); ok {
		if ttl <= 0 {
			return Decision{Reason: "cache rule TTL 0"}
		}
		d.Fresh = ttl
		return d
	}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		if age := responseDate(resp, now).Sub(lm); age > 0 {
			d.Fresh = min(age/10, maxHeuristic)
			return d
		}
	}
	return Decision{Reason: "no freshness information and no cache rule"}
}

// ruleTTL returns the TTL of the rule matching urlPath: an extension rule
// first (in order), else the longest matching path prefix.
func ruleTTL(s *outpostv1.CacheSettings, urlPath string) (time.Duration, bool) {
	ext := strings.TrimPrefix(strings.ToLower(path.Ext(urlPath)), ".")
	best, bestLen, found := time.Duration(0), -1, false
	for _, r := range s.GetRules() {
		switch m := r.GetMatch().(type) {
		case *outpostv1.CacheRule_Extension:
			if ext != "" && strings.EqualFold(m.Extension, ext) {
				return r.GetTtl().AsDuration(), true
			}
		case *outpostv1.CacheRule_PathPrefix:
			if strings.HasPrefix(urlPath, m.PathPrefix) && len(m.PathPrefix) > bestLen {
				best, bestLen, found = r.GetTtl().AsDuration(), len(m.PathPrefix), true
			}
		}
	}
	return best, found
}

func responseDate(resp *http.Response, now time.Time) time.Time {
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		return d
	}
	return now
}

// varyOnlyAcceptEncoding: the only Vary the cache keys on is
// Accept-Encoding (normalised); anything else is not stored.
func varyOnlyAcceptEncoding(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" && !strings.EqualFold(f, "Accept-Encoding") {
				return false
			}
		}
	}
	return true
}

// typeMatchesExtension refuses to cache a dynamic-looking response (HTML,
// JSON, XML) under a path whose extension names another type.
func typeMatchesExtension(urlPath, contentType string) bool {
	ext := strings.ToLower(path.Ext(urlPath))
	if ext == "" || contentType == "" {
		return true
	}
	got, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch got {
	case "text/html", "application/json", "application/xml", "text/xml", "application/xhtml+xml":
	default:
		return true
	}
	want := mime.TypeByExtension(ext)
	if want == "" {
		return false // an unknown extension answered with a dynamic type
	}
	w, _, _ := mime.ParseMediaType(want)
	return w == got || ext == ".htm" && got == "text/html"
}

type directive struct {
	present bool
	seconds int64 // -1 when absent or malformed
}

// directives parses Cache-Control.
func directives(h http.Header) map[string]directive {
	out := map[string]directive{}
	for _, line := range h.Values("Cache-Control") {
		for _, part := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			d := directive{present: true, seconds: -1}
			if val != "" {
				if n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64); err == nil && n >= 0 {
					d.seconds = n
				}
			}
			if _, dup := out[name]; dup && (name == "max-age" || name == "s-maxage") {
				// Conflicting lifetimes: treat as stale at once.
				d.seconds = 0
			}
			out[name] = d
		}
	}
	return out
}
