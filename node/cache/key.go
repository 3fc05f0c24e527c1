package cache

import (
	"net/http"
	"strconv"
	"strings"
)

// BaseKey identifies a cached URL: "host/path?query" with the path as the
// origin will see it (dot segments resolved, unreserved percent-escapes
// decoded), and without the query when the domain ignores it. HTTP and
// HTTPS share entries. Purges match on base keys.
func BaseKey(host, escapedPath, rawQuery string, ignoreQuery bool) string {
	k := host + NormalizePath(escapedPath)
	if !ignoreQuery && rawQuery != "" {
		k += "?" + rawQuery
	}
	return k
}

// VariantKey adds the normalised Accept-Encoding to a base key for
// responses that Vary on it.
func VariantKey(base string, r *http.Request) string {
	return variantKey(base, r.Header.Get("Accept-Encoding"))
}

func variantKey(base, acceptEncoding string) string {
	return base + "\x00ae=" + NormalizeAcceptEncoding(acceptEncoding)
}

// NormalizeAcceptEncoding reduces Accept-Encoding to the one coding an
// origin would pick among those edges care about (br, then gzip, else
// identity), so that the endless spellings of browsers map onto three
// variants. A coding with q=0 is not acceptable.
func NormalizeAcceptEncoding(v string) string {
	accept := map[string]bool{}
	for _, part := range strings.Split(strings.ToLower(v), ",") {
		name, params, _ := strings.Cut(part, ";")
		name = strings.TrimSpace(name)
		ok := true
		for _, p := range strings.Split(params, ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.TrimSpace(k) == "q" {
				if q, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil && q <= 0 {
					ok = false
				}
			}
		}
		accept[name] = ok
	}
	switch {
	case accept["br"]:
		return "br"
	case accept["gzip"]:
		return "gzip"
	}
	return "identity"
}

// NormalizePath resolves "." and ".." segments and decodes percent-escapes
// of unreserved characters, so that spellings of one path the origin treats
// as the same share one key. Escapes of reserved characters (%2F, %3F, ...)
// are kept: they change what the origin sees.
func NormalizePath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] == '/' && !strings.Contains(p, "/.") && strings.IndexByte(p, '%') < 0 {
		return p // already normal: the common case costs nothing
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			if unreserved(v) {
				b.WriteByte(v)
			} else {
				b.WriteByte('%')
				b.WriteByte(upperHex(p[i+1]))
				b.WriteByte(upperHex(p[i+2]))
			}
			i += 2
			continue
		}
		if c == '%' {
			b.WriteString("%25") // a stray '%' (Go's server refuses these anyway)
			continue
		}
		b.WriteByte(c)
	}
	segs := strings.Split(b.String(), "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		switch s {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	res := strings.Join(out, "/")
	if !strings.HasPrefix(res, "/") {
		res = "/" + res
	}
	return res
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func upperHex(c byte) byte {
	if c >= 'a' && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}
