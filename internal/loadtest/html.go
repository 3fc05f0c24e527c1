package loadtest

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// WriteHTML writes the report as one self-contained HTML page: the summary
// and inline SVG plots (no scripts, fonts or other external resources) of
// latency over time (p50 and p99 per second), latency by percentile (log
// scale, as HDR histogram plots are drawn) and requests per second.
func (r *Result) WriteHTML(w io.Writer) error {
	data := struct {
		Title     string
		Generated string
		Lines     [][2]string
		Plots     []template.HTML
	}{
		Title:     "Outpost load test, " + r.Start.Local().Format("2006-01-02 15:04:05"),
		Generated: time.Now().Format(time.RFC3339),
		Lines:     r.lines(),
		Plots:     []template.HTML{r.timePlot(), r.percentilePlot(), r.ratePlot()},
	}
	return pageTemplate.Execute(w, data)
}

// WriteHTMLFile writes the HTML report to path.
func (r *Result) WriteHTMLFile(path string) error { return writeFile(path, r.WriteHTML) }

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 20px; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 24px; }
td { padding: 2px 12px 2px 0; vertical-align: top; }
td:first-child { color: #666; white-space: nowrap; }
td:last-child { font-family: ui-monospace, monospace; }
figure { margin: 0 0 24px 0; }
svg { background: #fff; border: 1px solid #ddd; }
footer { color: #888; font-size: 12px; }
</style></head>
<body>
<h1>{{.Title}}</h1>
<table>{{range .Lines}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>
{{end}}</table>
{{range .Plots}}<figure>{{.}}</figure>
{{end}}<footer>outpost-loadtest, generated {{.Generated}}. Latency is measured from each request's intended send time.</footer>
</body></html>
`))

// plot is a line chart drawn as SVG.
type plot struct {
	id, title, xLabel, yLabel string
	xMin, xMax, yMax          float64
	xTicks, yTicks            []tick
	series                    []series
}

type tick struct {
	v     float64
	label string
}

type series struct {
	name, color string
	x, y        []float64
	step        bool
}

// Plot geometry.
const (
	plotW, plotH                    = 900, 320
	marginL, marginR, marginT, marB = 70, 20, 36, 46
)

func (p *plot) svg() template.HTML {
	var b strings.Builder
	iw, ih := float64(plotW-marginL-marginR), float64(plotH-marginT-marB)
	sx := func(x float64) float64 {
		if p.xMax <= p.xMin {
			return marginL
		}
		return marginL + (x-p.xMin)/(p.xMax-p.xMin)*iw
	}
	sy := func(y float64) float64 {
		if p.yMax <= 0 {
			return marginT + ih
		}
		return marginT + ih - y/p.yMax*ih
	}
	fmt.Fprintf(&b, `<svg id="%s" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`, p.id, plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`, marginL, html.EscapeString(p.title))
	// Grid and ticks.
	for _, t := range p.yTicks {
		y := sy(t.v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`, marginL, y, marginL+iw, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle" fill="#555">%s</text>`, marginL-6, y, html.EscapeString(t.label))
	}
	for _, t := range p.xTicks {
		x := sx(t.v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#eee"/>`, x, marginT, x, marginT+ih)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%s</text>`, x, marginT+ih+16, html.EscapeString(t.label))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`, marginL, marginT, iw, ih)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>`, marginL+iw/2, plotH-8, html.EscapeString(p.xLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle" fill="#333">%s</text>`, marginT+ih/2, html.EscapeString(p.yLabel))
	empty := true
	for _, s := range p.series {
		if len(s.x) == 0 {
			continue
		}
		empty = false
		var pts strings.Builder
		for i := range s.x {
			x, y := sx(s.x[i]), sy(s.y[i])
			if s.step && i > 0 {
				fmt.Fprintf(&pts, "%.1f,%.1f ", x, sy(s.y[i-1]))
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" stroke-linejoin="round" points="%s"/>`, s.color, strings.TrimSpace(pts.String()))
		if len(s.x) == 1 {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, sx(s.x[0]), sy(s.y[0]), s.color)
		}
	}
	if empty {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#999">no data</text>`, marginL+iw/2, marginT+ih/2)
	}
	// Legend, top right.
	lx := float64(plotW - marginR - 10)
	for i := len(p.series) - 1; i >= 0; i-- {
		s := p.series[i]
		label := html.EscapeString(s.name)
		lx -= float64(len(s.name))*7 + 34
		fmt.Fprintf(&b, `<line x1="%.1f" y1="20" x2="%.1f" y2="20" stroke="%s" stroke-width="3"/><text x="%.1f" y="24">%s</text>`, lx, lx+20, s.color, lx+24, label)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every text inside is escaped above
}

// niceTicks returns about n ticks from 0 (or lo) to hi at 1, 2 or 5 times a
// power of ten, and the top of the axis (the last tick at or above hi).
func niceTicks(lo, hi float64, n int, format func(float64) string) ([]tick, float64) {
	if !(hi > lo) {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []tick
	top := lo
	for i := 0; ; i++ {
		v := lo + float64(i)*step
		if v > hi+step*0.999 {
			break
		}
		ticks = append(ticks, tick{v, format(v)})
		top = v
	}
	return ticks, top
}

func fmtAxisMS(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1000:
		return fmt.Sprintf("%.6gs", v/1000)
	case v >= 1:
		return fmt.Sprintf("%.6gms", v)
	}
	return fmt.Sprintf("%.6gµs", v*1000)
}

// timePlot draws p50 and p99 per second.
func (r *Result) timePlot() template.HTML {
	p := &plot{id: "latency-over-time", title: "Latency over time (p50 and p99 per second of intended send time)", xLabel: "time since start (s)", yLabel: "latency"}
	p50 := series{name: "p50", color: "#1f77b4"}
	p99 := series{name: "p99", color: "#d62728"}
	var yMax float64
	for _, s := range r.Series {
		if s.Requests == s.Errors {
			continue // no latency that second
		}
		x := float64(s.Offset) + 0.5
		p50.x, p50.y = append(p50.x, x), append(p50.y, s.P50)
		p99.x, p99.y = append(p99.x, x), append(p99.y, s.P99)
		yMax = max(yMax, s.P99)
	}
	p.series = []series{p50, p99}
	p.xTicks, p.xMax = niceTicks(0, r.seriesEnd(), timeTicks(r.seriesEnd()), func(v float64) string { return fmt.Sprintf("%.6g", v) })
	p.yTicks, p.yMax = niceTicks(0, yMax*1.05, 6, fmtAxisMS)
	return p.svg()
}

// seriesEnd is the end of the last second of the series, in seconds
// since the start (at least 1).
func (r *Result) seriesEnd() float64 {
	end := 1.0
	if n := len(r.Series); n > 0 {
		end = math.Max(end, float64(r.Series[n-1].Offset+1))
	}
	return end
}

// timeTicks is how many ticks a time axis of end seconds gets: about 10,
// but never less than a second apart.
func timeTicks(end float64) int { return int(math.Max(1, math.Min(10, end))) }

// percentileTicks are the x ticks of a percentile plot: x = log10(1/(1-q)).
var percentileTicks = []tick{{0, "0%"}, {1, "90%"}, {2, "99%"}, {3, "99.9%"}, {4, "99.99%"}, {5, "99.999%"}, {6, "99.9999%"}}

// percentilePlot draws latency by percentile, with x = log10(1/(1-q)) so
// that the tail spreads out as in HdrHistogram's plots.
func (r *Result) percentilePlot() template.HTML {
	p := &plot{id: "latency-by-percentile", title: "Latency by percentile", xLabel: "percentile", yLabel: "latency"}
	s := series{name: "latency", color: "#2ca02c", step: true}
	n := r.LatencyCount()
	xMax := 2.0
	if n > 0 {
		// As far into the tail as the sample count resolves, at least to
		// 99% and at most to 99.9999%.
		xMax = math.Min(math.Max(math.Ceil(math.Log10(float64(n))), 2), 6)
		const steps = 300
		qs := make([]float64, 0, steps+1)
		for i := 0; i <= steps; i++ {
			x := xMax * float64(i) / steps
			qs = append(qs, 100*(1-math.Pow(10, -x)))
			s.x = append(s.x, x)
		}
		s.y = r.Percentiles(qs)
		// The last point is the maximum.
		s.y[len(s.y)-1] = r.Latency.Max
	}
	p.series = []series{s}
	p.xMin, p.xMax = 0, xMax
	for _, t := range percentileTicks {
		if t.v <= xMax {
			p.xTicks = append(p.xTicks, t)
		}
	}
	p.yTicks, p.yMax = niceTicks(0, r.Latency.Max*1.05, 6, fmtAxisMS)
	return p.svg()
}

// ratePlot draws requests and errors per second.
func (r *Result) ratePlot() template.HTML {
	p := &plot{id: "requests-per-second", title: "Requests and errors per second of intended send time", xLabel: "time since start (s)", yLabel: "requests/s"}
	req := series{name: "requests", color: "#1f77b4"}
	errs := series{name: "errors", color: "#d62728"}
	var yMax float64
	for _, s := range r.Series {
		x := float64(s.Offset) + 0.5
		req.x, req.y = append(req.x, x), append(req.y, float64(s.Requests))
		errs.x, errs.y = append(errs.x, x), append(errs.y, float64(s.Errors))
		yMax = max(yMax, float64(s.Requests))
	}
	p.series = []series{req, errs}
	p.xTicks, p.xMax = niceTicks(0, r.seriesEnd(), timeTicks(r.seriesEnd()), func(v float64) string { return fmt.Sprintf("%.6g", v) })
	p.yTicks, p.yMax = niceTicks(0, yMax*1.05, 6, func(v float64) string { return fmt.Sprintf("%.6g", v) })
	return p.svg()
}
