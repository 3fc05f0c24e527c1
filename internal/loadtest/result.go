package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// ResultVersion is the version of the JSON result format.
const ResultVersion = 1

// Histogram geometry: microseconds from 1 µs to 2 h, 3 significant digits.
// Every histogram of every result has it, so that merges are exact.
const (
	histLowest  = 1
	histHighest = int64(2 * time.Hour / time.Microsecond)
	histDigits  = 3
)

// Result is the outcome of one run, or of several merged. It is what the
// JSON output holds; the unexported fields are rebuilt from it when read.
type Result struct {
	// Version is ResultVersion.
	Version int `json:"version"`
	// Instances is how many runs were merged into this one (1 for a run).
	Instances int `json:"instances"`
	// Hosts are the host names of the machines the runs ran on.
	Hosts []string `json:"hosts"`
	// Settings describe the first run.
	Settings Settings `json:"settings"`
	// Start and End bound the runs (End: when the last request finished).
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// ElapsedSeconds is End - Start.
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// StopReasons count why runs stopped: "duration", "requests" or
	// "interrupted".
	StopReasons map[string]int `json:"stop_reasons"`

	// Requests are the requests that got a response or an error; Responses
	// those that got a response (any status).
	Requests  int64 `json:"requests"`
	Responses int64 `json:"responses"`
	// Errors count failed requests by kind (KindDial, ...); 4xx and 5xx
	// responses are counted both here and in Responses.
	Errors map[string]int64 `json:"errors"`
	// ErrorSamples hold one message per error kind.
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	// Unsent are open-model requests still waiting for a worker when the
	// run ended; Aborted are requests cut off by an interrupt. Neither is
	// in Requests.
	Unsent  int64 `json:"unsent"`
	Aborted int64 `json:"aborted"`
	// Throughput is Responses / ElapsedSeconds.
	Throughput float64 `json:"throughput"`
	// Bytes is the response body bytes received.
	Bytes int64 `json:"bytes"`
	// Status counts responses by status code.
	Status map[string]int64 `json:"status"`
	// Cache counts responses by X-Cache value ("" as "none"); HitRatio is
	// HIT / responses that carry X-Cache.
	Cache    map[string]int64 `json:"cache"`
	HitRatio float64          `json:"hit_ratio"`
	// Edges count requests by the address connected to; Nodes count
	// responses by the node named in Via ("1.1 edge-1 (outpost)").
	Edges map[string]EdgeCount `json:"edges"`
	Nodes map[string]int64     `json:"nodes"`
	// Protocols count responses by HTTP version; Sizes requests by size
	// class label.
	Protocols map[string]int64 `json:"protocols"`
	Sizes     map[string]int64 `json:"sizes"`
	// TLS counts connections and handshakes.
	TLS TLSStats `json:"tls"`
	// Resolutions count the scheduler lookups.
	Resolutions ResolveStats `json:"resolutions"`
	// Latency is the latency of every response, from its intended send time.
	Latency Latency `json:"latency"`
	// Series has one entry per second of the run that had requests due,
	// by their intended send time (seconds since Start).
	Series []Second `json:"series"`

	hist *hdrhistogram.Histogram
}

// Settings are the parameters of a run, for the report.
type Settings struct {
	Model        string   `json:"model"` // "open" or "closed"
	Rate         float64  `json:"rate,omitempty"`
	Concurrency  int      `json:"concurrency"`
	Backlog      int      `json:"backlog,omitempty"`
	Duration     string   `json:"duration"`
	MaxRequests  int64    `json:"max_requests"`
	Timeout      string   `json:"timeout"`
	Targets      string   `json:"targets"`
	Pick         string   `json:"pick"`
	Domains      int      `json:"domains"`
	DomainSample []string `json:"domain_sample"`
	URLs         int      `json:"urls"`
	ZipfS        float64  `json:"zipf_s"`
	Path         string   `json:"path"`
	SizeMix      string   `json:"size_mix"`
	Scheme       string   `json:"scheme"`
	HTTP2        bool     `json:"http2"`
	NewConnRatio float64  `json:"new_conn_ratio"`
	ResumeRatio  float64  `json:"resume_ratio"`
}

// EdgeCount is the requests sent to one edge address and how many failed.
type EdgeCount struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
}

// TLSStats count new connections and their TLS handshakes.
type TLSStats struct {
	// Connections are the new connections requests were sent on.
	Connections int64 `json:"connections"`
	// Handshakes are the TLS handshakes among them; Resumed those that
	// resumed a session (ConnectionState.DidResume); TicketsOffered those
	// that offered a cached session.
	Handshakes     int64 `json:"handshakes"`
	Resumed        int64 `json:"resumed"`
	TicketsOffered int64 `json:"tickets_offered"`
	// ResumeRatio is Resumed / Handshakes.
	ResumeRatio float64 `json:"resume_ratio"`
}

// ResolveStats count lookups of edge addresses through the scheduler.
type ResolveStats struct {
	Lookups  int64 `json:"lookups"`
	Failures int64 `json:"failures"`
}

// Latency summarises a latency histogram, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	// Histogram is the HDR histogram of microseconds, V2 compressed and
	// base64 encoded (hdrhistogram-go Encode; readable by HdrHistogram's
	// other implementations).
	Histogram string `json:"histogram"`
}

// Second is one second of the run: the requests whose intended send time
// (open model) or send time (closed model) fell in it.
type Second struct {
	// Offset is the second's start in seconds since the run's start;
	// StartMS is its start in Unix milliseconds (for merges).
	Offset  int64 `json:"offset_s"`
	StartMS int64 `json:"start_ms"`
	// Requests due in this second, Errors among them, Hits among the
	// responses.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	Hits     int64 `json:"hits"`
	// Latency of their responses, in ms.
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
	// Histogram is the second's histogram, encoded like Latency.Histogram.
	Histogram string `json:"histogram"`

	hist *hdrhistogram.PackedHistogram
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histLowest, histHighest, histDigits) }

func newPacked() *hdrhistogram.PackedHistogram {
	return hdrhistogram.NewPacked(histLowest, histHighest, histDigits)
}

// micros converts a latency to a histogram value.
func micros(d time.Duration) int64 {
	return min(max(int64(d/time.Microsecond), histLowest), histHighest)
}

func ms(us int64) float64 { return float64(us) / 1000 }

func newResult() *Result {
	return &Result{
		Version:      ResultVersion,
		StopReasons:  map[string]int{},
		Errors:       map[string]int64{},
		ErrorSamples: map[string]string{},
		Status:       map[string]int64{},
		Cache:        map[string]int64{},
		Edges:        map[string]EdgeCount{},
		Nodes:        map[string]int64{},
		Protocols:    map[string]int64{},
		Sizes:        map[string]int64{},
		hist:         newHist(),
	}
}

// cacheNone is the Cache key of responses without X-Cache.
const cacheNone = "none"

// add counts one outcome of a run that started at start. The Result must
// come from newResult.
func (r *Result) add(o outcome, sizes []SizeClass, seconds map[int64]*Second, start time.Time) {
	if o.aborted {
		r.Aborted++
		return
	}
	r.Requests++
	if o.edge != "" {
		e := r.Edges[o.edge]
		e.Requests++
		if o.kind != "" {
			e.Errors++
		}
		r.Edges[o.edge] = e
	}
	if o.kind != KindBacklog {
		r.Sizes[sizes[o.size].Label]++
	}
	off := max(int64(o.intended.Sub(start)/time.Second), 0)
	sec := seconds[off]
	if sec == nil {
		sec = &Second{Offset: off, StartMS: start.Add(time.Duration(off) * time.Second).UnixMilli(), hist: newPacked()}
		seconds[off] = sec
	}
	sec.Requests++
	if o.kind != "" {
		r.Errors[o.kind]++
		sec.Errors++
		if _, ok := r.ErrorSamples[o.kind]; !ok {
			r.ErrorSamples[o.kind] = o.errMsg
		}
	}
	if o.newConn {
		r.TLS.Connections++
		if o.tls {
			r.TLS.Handshakes++
			if o.resumed {
				r.TLS.Resumed++
			}
			if o.offered {
				r.TLS.TicketsOffered++
			}
		}
	}
	if o.status == 0 {
		return
	}
	r.Responses++
	r.Bytes += o.bytes
	r.Status[strconv.Itoa(o.status)]++
	x := o.xcache
	if x == "" {
		x = cacheNone
	}
	r.Cache[x]++
	if x == "HIT" {
		sec.Hits++
	}
	if o.node != "" {
		r.Nodes[o.node]++
	}
	r.Protocols[o.proto]++
	v := micros(o.done.Sub(o.intended))
	_ = r.hist.RecordValue(v)
	_ = sec.hist.RecordValue(v)
}

// finish computes the derived fields and encodes the histograms.
func (r *Result) finish(seconds map[int64]*Second) error {
	r.ElapsedSeconds = r.End.Sub(r.Start).Seconds()
	r.Throughput = 0
	if r.ElapsedSeconds > 0 {
		r.Throughput = float64(r.Responses) / r.ElapsedSeconds
	}
	withX := r.Responses - r.Cache[cacheNone]
	r.HitRatio = 0
	if withX > 0 {
		r.HitRatio = float64(r.Cache["HIT"]) / float64(withX)
	}
	r.TLS.ResumeRatio = 0
	if r.TLS.Handshakes > 0 {
		r.TLS.ResumeRatio = float64(r.TLS.Resumed) / float64(r.TLS.Handshakes)
	}
	h := r.hist
	r.Latency = Latency{Count: h.TotalCount()}
	if h.TotalCount() > 0 {
		r.Latency.Min = ms(h.Min())
		r.Latency.Mean = h.Mean() / 1000
		r.Latency.P50 = ms(h.ValueAtPercentile(50))
		r.Latency.P90 = ms(h.ValueAtPercentile(90))
		r.Latency.P99 = ms(h.ValueAtPercentile(99))
		r.Latency.P999 = ms(h.ValueAtPercentile(99.9))
		r.Latency.Max = ms(h.Max())
	}
	enc, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return err
	}
	r.Latency.Histogram = string(enc)
	r.Series = r.Series[:0]
	for _, t := range slices.Sorted(maps.Keys(seconds)) {
		s := seconds[t]
		if s.hist.TotalCount() > 0 {
			s.P50 = ms(s.hist.ValueAtPercentile(50))
			s.P99 = ms(s.hist.ValueAtPercentile(99))
			s.Max = ms(s.hist.Max())
		}
		enc, err := s.hist.Encode()
		if err != nil {
			return err
		}
		s.Histogram = string(enc)
		r.Series = append(r.Series, *s)
	}
	return nil
}

// Percentiles returns the latency in ms at each percentile (0 to 100).
func (r *Result) Percentiles(ps []float64) []float64 {
	out := make([]float64, len(ps))
	if r.hist == nil {
		return out
	}
	for i, v := range r.hist.ValueAtPercentilesSlice(ps) {
		out[i] = ms(v)
	}
	return out
}

// LatencyCount is the number of latencies in the histogram.
func (r *Result) LatencyCount() int64 {
	if r.hist == nil {
		return 0
	}
	return r.hist.TotalCount()
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteJSONFile writes r as JSON to path.
func (r *Result) WriteJSONFile(path string) error {
	return writeFile(path, r.WriteJSON)
}

// writeFile writes a file through write, reporting the first error.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// ReadResult reads a JSON result and decodes its histograms.
func ReadResult(rd io.Reader) (*Result, error) {
	r := newResult()
	dec := json.NewDecoder(rd)
	if err := dec.Decode(r); err != nil {
		return nil, err
	}
	if r.Version != ResultVersion {
		return nil, fmt.Errorf("result version %d, want %d", r.Version, ResultVersion)
	}
	h, err := decodeHist(r.Latency.Histogram)
	if err != nil {
		return nil, fmt.Errorf("latency histogram: %w", err)
	}
	r.hist = h
	for i := range r.Series {
		p, err := hdrhistogram.DecodePacked([]byte(r.Series[i].Histogram))
		if err != nil {
			return nil, fmt.Errorf("histogram of second %d: %w", r.Series[i].Offset, err)
		}
		r.Series[i].hist = p
	}
	for _, m := range []*map[string]int64{&r.Errors, &r.Status, &r.Cache, &r.Nodes, &r.Protocols, &r.Sizes} {
		if *m == nil {
			*m = map[string]int64{}
		}
	}
	if r.Edges == nil {
		r.Edges = map[string]EdgeCount{}
	}
	if r.ErrorSamples == nil {
		r.ErrorSamples = map[string]string{}
	}
	if r.StopReasons == nil {
		r.StopReasons = map[string]int{}
	}
	return r, nil
}

// ReadResultFile is ReadResult on a file.
func ReadResultFile(path string) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := ReadResult(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

func decodeHist(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, err
	}
	if h.LowestTrackableValue() != histLowest || h.HighestTrackableValue() != histHighest || h.SignificantFigures() != histDigits {
		// Re-record into the standard geometry so that merges are exact.
		std := newHist()
		std.Merge(h)
		h = std
	}
	return h, nil
}

// Merge combines results of several runs, typically instances run at the
// same time on several hosts: counts add up, histograms merge exactly (so
// the percentiles are those of all the requests together, not averages),
// and the per-second series add up second by second: each second of each
// result goes to the merged second nearest to it in wall-clock time,
// counted from the earliest start. The merged run lasts from the first
// start to the last end; its
// throughput is all responses over that span. Settings are the first
// result's.
func Merge(results ...*Result) (*Result, error) {
	if len(results) == 0 {
		return nil, errors.New("nothing to merge")
	}
	m := newResult()
	m.Settings = results[0].Settings
	seconds := map[int64]*Second{}
	for i, r := range results {
		if r.hist == nil {
			return nil, fmt.Errorf("result %d has no histogram", i+1)
		}
		m.Instances += max(r.Instances, 1)
		m.Hosts = append(m.Hosts, r.Hosts...)
		if m.Start.IsZero() || r.Start.Before(m.Start) {
			m.Start = r.Start
		}
		if r.End.After(m.End) {
			m.End = r.End
		}
		for k, v := range r.StopReasons {
			m.StopReasons[k] += v
		}
		m.Requests += r.Requests
		m.Responses += r.Responses
		m.Unsent += r.Unsent
		m.Aborted += r.Aborted
		m.Bytes += r.Bytes
		for _, pair := range []struct{ dst, src map[string]int64 }{
			{m.Errors, r.Errors}, {m.Status, r.Status}, {m.Cache, r.Cache}, {m.Nodes, r.Nodes}, {m.Protocols, r.Protocols}, {m.Sizes, r.Sizes},
		} {
			for k, v := range pair.src {
				pair.dst[k] += v
			}
		}
		for k, v := range r.ErrorSamples {
			if _, ok := m.ErrorSamples[k]; !ok {
				m.ErrorSamples[k] = v
			}
		}
		for k, v := range r.Edges {
			e := m.Edges[k]
			e.Requests += v.Requests
			e.Errors += v.Errors
			m.Edges[k] = e
		}
		m.TLS.Connections += r.TLS.Connections
		m.TLS.Handshakes += r.TLS.Handshakes
		m.TLS.Resumed += r.TLS.Resumed
		m.TLS.TicketsOffered += r.TLS.TicketsOffered
		m.Resolutions.Lookups += r.Resolutions.Lookups
		m.Resolutions.Failures += r.Resolutions.Failures
		if dropped := m.hist.Merge(r.hist); dropped != 0 {
			return nil, fmt.Errorf("result %d: %d latencies out of range", i+1, dropped)
		}
	}
	for _, r := range results {
		for _, s := range r.Series {
			off := max(int64(math.Round(float64(s.StartMS-m.Start.UnixMilli())/1000)), 0)
			d := seconds[off]
			if d == nil {
				d = &Second{Offset: off, StartMS: m.Start.UnixMilli() + off*1000, hist: newPacked()}
				seconds[off] = d
			}
			d.Requests += s.Requests
			d.Errors += s.Errors
			d.Hits += s.Hits
			if s.hist != nil {
				d.hist.Merge(s.hist)
			}
		}
	}
	if err := m.finish(seconds); err != nil {
		return nil, err
	}
	return m, nil
}
