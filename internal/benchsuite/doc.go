// Package benchsuite is the engine of outpost-bench (`make bench`): it runs
// a fixed set of Go benchmarks one after the other on one machine, Outpost
// and its nginx peer side by side, and writes what they measured, against
// each scenario's target, into docs/benchmarks.md and a JSON copy.
//
// # Scenarios
//
// Scenarios is the table. Each Scenario is one row of the report: one
// metric of one benchmark, split into an Outpost value and a peer (nginx)
// value, with the target that row must meet. Rows name the go test
// command that produces their results as a Bench; rows with equal Benches
// share one command, so the cache-hit benchmark runs once for its
// throughput rows and its p99 rows alike. Adding or renaming a row is one
// line in scenarios.go.
//
// # Running
//
// Run executes every Bench that a selected row needs with
// `go test -run '^$' -bench ... -benchtime ... -count ... PKG`, never two at
// once, in rounds: a Bench with Repeat n runs once in each of the last n
// rounds, so that its runs spread over the whole suite; within a round
// the Bench with the shortest Estimate runs first. The longest command
// thus runs last, where overrunning the time limit costs only its own
// rows. Benchmarks that compare with nginx already run Outpost and nginx
// alternately (A B A B) inside one command; separate runs repeat that.
//
// Each command's standard benchmark lines are parsed (Parse). A row's value
// on each side is the median of all its measurements (rounds, -count and
// runs together); its ratio is Outpost's median over the peer's; its
// target is then met or not (Evaluate).
//
// Commands run with a private TMPDIR. When a command is stopped (the time
// limit, or an interrupt), any nginx its benchmark left running there is
// stopped, since a killed test binary does not run its cleanups.
//
// # Output
//
// WriteMarkdown renders the section between the markers
// `<!-- make bench: begin -->` and `<!-- make bench: end -->`, and Splice
// puts it into the document, adding the markers after the introduction
// when they are missing, and leaving everything outside them as it was.
// The same Report is written as JSON beside it for later comparisons; it
// also keeps the raw benchmark lines, which benchstat reads.
package benchsuite
