package loadtest

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// WriteText writes the report for people.
func (r *Result) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	for _, l := range r.lines() {
		ew.printf("%-12s%s\n", l[0], l[1])
	}
	return ew.err
}

// lines is the report as (label, text) pairs, shared by the text and HTML
// reports.
func (r *Result) lines() [][2]string {
	s := r.Settings
	var out [][2]string
	add := func(label, format string, args ...any) {
		out = append(out, [2]string{label, fmt.Sprintf(format, args...)})
	}
	stop := strings.Join(sortedKeys(r.StopReasons), ", ")
	if s.Model == "open" {
		add("model", "open: %g req/s, %d workers, backlog %d, %s, at most %d requests (stopped: %s)", s.Rate, s.Concurrency, s.Backlog, s.Duration, s.MaxRequests, stop)
	} else {
		add("model", "closed: %d workers, %s, at most %d requests (stopped: %s)", s.Concurrency, s.Duration, s.MaxRequests, stop)
	}
	if r.Instances > 1 {
		add("merged", "%d instances (hosts %s); the settings shown are the first one's", r.Instances, strings.Join(r.Hosts, ", "))
	}
	add("targets", "%s, pick %s", s.Targets, s.Pick)
	proto := "HTTP/1.1"
	if s.HTTP2 {
		proto = "HTTP/2 or HTTP/1.1"
	}
	domains := strings.Join(s.DomainSample, ", ")
	if s.Domains > len(s.DomainSample) {
		domains += ", ..."
	}
	add("traffic", "%s %s, %s (%s), %s (Zipf s=%g), path %s, sizes %s", s.Scheme, proto, plural(s.Domains, "domain"), domains, plural(s.URLs, "URL"), s.ZipfS, s.Path, s.SizeMix)
	if s.Scheme == "https" {
		add("", "%.0f%% of requests on a new connection, %.0f%% of those offering a session ticket", 100*s.NewConnRatio, 100*s.ResumeRatio)
	}
	add("requests", "%d in %.1fs: %d responses, %d errors, %d unsent, %d aborted", r.Requests, r.ElapsedSeconds, r.Responses, sum(r.Errors), r.Unsent, r.Aborted)
	add("throughput", "%.1f responses/s, %s/s", r.Throughput, fmtBytes(float64(r.Bytes)/max(r.ElapsedSeconds, 1e-9)))
	l := r.Latency
	if l.Count > 0 {
		add("latency", "p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, min %s; from the intended send time)",
			fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max), fmtMS(l.Mean), fmtMS(l.Min))
	} else {
		add("latency", "no response")
	}
	if sum(r.Errors) == 0 {
		add("errors", "none")
	} else {
		for _, k := range ErrorKinds {
			if n := r.Errors[k]; n > 0 {
				add("errors", "%-13s %d  (%s)", k, n, oneLine(r.ErrorSamples[k]))
			}
		}
	}
	add("status", "%s", countList(r.Status, byNumber))
	hits := "-"
	if r.Responses-r.Cache[cacheNone] > 0 {
		hits = fmt.Sprintf("%.1f%%", 100*r.HitRatio)
	}
	add("cache", "hit ratio %s  (%s)", hits, countList(r.Cache, byCount))
	for _, e := range sortedByCount(r.Edges, func(e EdgeCount) int64 { return e.Requests }) {
		add("edges", "%-22s %d requests, %d errors", e, r.Edges[e].Requests, r.Edges[e].Errors)
	}
	if len(r.Nodes) > 0 {
		add("nodes", "%s", countList(r.Nodes, byCount))
	} else {
		add("nodes", "no Via header naming an Outpost node")
	}
	if s.Scheme == "https" {
		add("tls", "%d new connections, %d handshakes, %d resumed (%.1f%%), %d offered a ticket",
			r.TLS.Connections, r.TLS.Handshakes, r.TLS.Resumed, 100*r.TLS.ResumeRatio, r.TLS.TicketsOffered)
	} else {
		add("connections", "%d new", r.TLS.Connections)
	}
	add("protocols", "%s", countList(r.Protocols, byCount))
	add("sizes", "%s", countList(r.Sizes, byCount))
	if r.Resolutions.Lookups > 0 {
		add("resolution", "%d lookups, %d failed", r.Resolutions.Lookups, r.Resolutions.Failures)
	}
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func sortedByCount[V any](m map[string]V, count func(V) int64) []string {
	keys := sortedKeys(m)
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(count(m[b]), count(m[a])) })
	return keys
}

const (
	byCount  = false
	byNumber = true
)

// countList renders "k1 n1, k2 n2" ordered by count (or by key as a number).
func countList(m map[string]int64, numeric bool) string {
	if len(m) == 0 {
		return "none"
	}
	var keys []string
	if numeric {
		keys = sortedKeys(m)
		slices.SortFunc(keys, func(a, b string) int {
			x, _ := strconv.Atoi(a)
			y, _ := strconv.Atoi(b)
			return cmp.Compare(x, y)
		})
	} else {
		keys = sortedByCount(m, func(v int64) int64 { return v })
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func fmtBytes(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2f GB", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2f MB", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f kB", v/1e3)
	}
	return fmt.Sprintf("%.0f B", v)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
