package benchsuite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// The markers around the generated section of docs/benchmarks.md.
const (
	BeginMarker = "<!-- make bench: begin -->"
	EndMarker   = "<!-- make bench: end -->"
)

// Report is what one suite run measured.
type Report struct {
	Started time.Time `json:"started"`
	// Seconds is the run's wall time.
	Seconds float64 `json:"seconds"`
	// Command reproduces the run: "make bench", with BENCHFLAGS when the
	// run used flags that change what it measures.
	Command string `json:"command"`
	Quick   bool   `json:"quick"`
	// Stopped says why the run ended before every selected command ran
	// ("time limit", "interrupted"); "" when it did not.
	Stopped  string       `json:"stopped,omitempty"`
	Machine  Machine      `json:"machine"`
	Rows     []Outcome    `json:"rows"`
	Commands []CommandLog `json:"commands"`
	// JSONLink is where the Markdown section says the JSON copy is,
	// relative to the Markdown file; "" leaves it out.
	JSONLink string `json:"-"`
}

// CommandLog is every run of one go test command.
type CommandLog struct {
	Command string `json:"command"`
	// Scenarios are the rows that read the command's results.
	Scenarios []string `json:"scenarios"`
	Runs      []RunLog `json:"runs"`
}

// RunLog is one run of a command.
type RunLog struct {
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	// Load is the load average before the run.
	Load string `json:"load,omitempty"`
	// Error is why the command failed, with the end of its output; ""
	// when it exited 0.
	Error string `json:"error,omitempty"`
	// Lines are the raw benchmark lines, for benchstat.
	Lines   []string `json:"lines,omitempty"`
	Results []Result `json:"results,omitempty"`
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// WriteMarkdown writes r as the generated section of docs/benchmarks.md,
// markers included.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("%s\n", BeginMarker)
	p("## Latest `make bench` run\n\n")
	p("Written by `make bench` (`cmd/outpost-bench`) on %s, in %s. Do not edit\n",
		r.Started.UTC().Format("2006-01-02 at 15:04 UTC"), seconds(r.Seconds))
	p("between the markers: run it again.")
	if r.JSONLink != "" {
		p(" The same results as JSON: [%s](%s).", path.Base(r.JSONLink), r.JSONLink)
	}
	p("\n\n")
	if r.Quick {
		p("**A quick smoke run (`-quick`): short benchtimes, one run each. These numbers\nare not measurements.**\n\n")
	}
	if r.Stopped != "" {
		p("**Stopped early (%s): the rows and runs that did not run say so.**\n\n", r.Stopped)
	}
	m := r.Machine
	p("- Machine: %s\n", machineLine(m))
	p("- Load average (1, 5, 15 min): %s before the run, %s after\n", orDash(m.LoadBefore), orDash(m.LoadAfter))
	p("- Software: %s, nginx %s\n", orDash(m.Go), orDash(m.Nginx))
	p("- Reproduce: `%s`\n\n", r.Command)

	p("| scenario | Outpost | nginx | ratio | target | met |\n")
	p("| --- | --- | --- | --- | --- | --- |\n")
	var notes []string                // in the order first seen
	noteRows := map[string][]string{} // note → the rows it is about
	note := func(row, text string) {
		if noteRows[text] == nil {
			notes = append(notes, text)
		}
		noteRows[text] = append(noteRows[text], "**"+row+"**")
	}
	for _, o := range r.Rows {
		out, peer, ratio, met := "—", "—", "—", string(o.Status)
		if o.Status == StatusNotRun && o.Reason != "" {
			met += " (" + o.Reason + ")"
		}
		if o.Status == StatusOK {
			out = withUnit(o.Outpost, o.Show)
			peer = withUnit(o.Peer, o.Show)
			if o.Ratio != nil {
				ratio = formatRatio(*o.Ratio)
			}
			met = metCell(o)
		}
		p("| %s | %s | %s | %s | %s | %s |\n", cell(o.Scenario), out, peer, ratio, cell(o.Target), met)
		if o.Reason != "" && o.Status != StatusOK && o.Status != StatusNotRun {
			note(o.Scenario, o.Reason)
		}
		for _, n := range o.Notes {
			note(o.Scenario, n)
		}
	}
	p("\nEach value is the median of every measurement of its row (the runs, `-count`\n")
	p("and the benchmark's own rounds, all listed below); ratio is Outpost's median\n")
	p("over nginx's. The table's order is the suite's, not the order the commands ran.\n")
	if len(notes) > 0 {
		p("\nNotes:\n\n")
		for _, n := range notes {
			text := n
			if !strings.HasSuffix(text, "?") && !strings.HasSuffix(text, ".") {
				text += "."
			}
			p("- %s: %s\n", strings.Join(noteRows[n], ", "), text)
		}
	}

	p("\n### Raw numbers\n\n")
	rows := map[string]Outcome{}
	for _, o := range r.Rows {
		rows[o.Scenario] = o
	}
	for _, c := range r.Commands {
		if len(c.Runs) == 0 {
			continue
		}
		var runs []string
		for _, run := range c.Runs {
			s := seconds(run.Seconds).String()
			if run.Load != "" {
				s += " at load " + strings.Fields(run.Load)[0]
			}
			if run.Error != "" {
				s += ", failed"
			}
			runs = append(runs, s)
		}
		p("- `%s`, %s (%s):\n", c.Command, plural(len(c.Runs), "run"), strings.Join(runs, "; "))
		for _, name := range c.Scenarios {
			o := rows[name]
			if o.Status != StatusOK {
				p("  - %s: %s\n", name, o.Status)
				continue
			}
			line := fmt.Sprintf("  - %s: Outpost %s", name, values(o.Outpost, o.Show))
			if o.Peer != nil {
				line += "; nginx " + values(o.Peer, o.Show)
			}
			if o.Ref != nil {
				line += "; Outpost, " + refLabel(o) + ", " + values(o.Ref, o.Show)
			}
			p("%s\n", line)
		}
		for i, run := range c.Runs {
			if run.Error != "" {
				p("  - run %d failed: %s\n", i+1, firstLine(run.Error))
			}
		}
	}
	p("%s\n", EndMarker)
	_, err := io.WriteString(w, b.String())
	return err
}

// seconds converts a number of seconds into a Duration to show.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Second)
}

// machineLine describes m in one line.
func machineLine(m Machine) string {
	s := plural(m.Cores, "core")
	if m.CPU != "" {
		s += " (" + m.CPU + ")"
	}
	s += fmt.Sprintf(", GOMAXPROCS %d", m.GOMAXPROCS)
	if m.MemoryGiB > 0 {
		s += fmt.Sprintf(", %d GiB", m.MemoryGiB)
	}
	return s
}

// metCell is the met column of a row with numbers.
func metCell(o Outcome) string {
	var s string
	switch o.Met {
	case MetYes:
		s = "yes"
	case MetNo:
		s = "**no**"
	case MetNoTarget:
		return "—"
	default:
		return "unknown"
	}
	if o.RefRatio != nil {
		s += " (" + formatRatio(*o.RefRatio) + " " + refLabel(o) + ")"
	}
	return s
}

// refLabel names a row's reference results, from its target's text.
func refLabel(o Outcome) string {
	if _, after, ok := strings.Cut(o.Target, "% of "); ok {
		return after
	}
	return "reference"
}

func withUnit(s *Stat, unit string) string {
	if s == nil {
		return "—"
	}
	return formatValue(s.Median) + " " + unit
}

func values(s *Stat, unit string) string {
	var v []string
	for _, x := range s.Values {
		v = append(v, formatValue(x))
	}
	return strings.Join(v, ", ") + " " + unit
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// cell escapes a table cell's pipes.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// Splice returns doc with section (markers included) in place of the
// text between doc's markers, markers included; a marker counts only on a
// line of its own. When doc has neither
// marker, the section goes after the introduction: the first paragraph
// after the first "# " title (or at the very top without a title). The
// rest of doc is kept byte for byte. A doc with only one marker, or with
// the end before the begin, is an error.
//
// A nil section only checks doc.
func Splice(doc, section []byte) ([]byte, error) {
	if section != nil {
		section = append(bytes.TrimRight(section, "\n"), '\n')
	}
	begin, end := markerLine(doc, BeginMarker), markerLine(doc, EndMarker)
	switch {
	case (begin >= 0) != (end >= 0) || end < begin:
		return nil, errors.New("the document has one generated-section marker without the other, or the end before the begin")
	case section == nil:
		return doc, nil
	case begin >= 0:
		end += len(EndMarker)
		if end < len(doc) && doc[end] == '\n' {
			end++
		}
		return concat(doc[:begin], section, doc[end:]), nil
	}
	lines := bytes.SplitAfter(doc, []byte("\n"))
	at := 0 // insert before lines[at]
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte("# ")) {
			at = i + 1
			for at < len(lines) && len(bytes.TrimSpace(lines[at])) == 0 {
				at++
			}
			if at < len(lines) && !bytes.HasPrefix(lines[at], []byte("#")) {
				for at < len(lines) && len(bytes.TrimSpace(lines[at])) > 0 {
					at++
				}
			}
			break
		}
	}
	before := bytes.Join(lines[:at], nil)
	after := bytes.Join(lines[at:], nil)
	var b bytes.Buffer
	b.Write(before)
	if len(before) > 0 {
		if !bytes.HasSuffix(before, []byte("\n")) {
			b.WriteByte('\n')
		}
		if !bytes.HasSuffix(before, []byte("\n\n")) {
			b.WriteByte('\n')
		}
	}
	b.Write(section)
	if len(after) > 0 {
		if len(bytes.TrimSpace(lines[at])) > 0 {
			b.WriteByte('\n')
		}
		b.Write(after)
	}
	return b.Bytes(), nil
}

// markerLine returns the index of the first line of doc that is marker
// alone, or -1. A marker quoted inside a line (as the docs do) is not one.
func markerLine(doc []byte, marker string) int {
	for from := 0; ; {
		i := bytes.Index(doc[from:], []byte(marker))
		if i < 0 {
			return -1
		}
		i += from
		end := i + len(marker)
		if (i == 0 || doc[i-1] == '\n') && (end == len(doc) || doc[end] == '\n' || doc[end] == '\r') {
			return i
		}
		from = end
	}
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
