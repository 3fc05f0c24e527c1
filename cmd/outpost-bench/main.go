// Command outpost-bench is `make bench`: it runs Outpost's benchmark
// suite beside the nginx peer and writes the results into
// docs/benchmarks.md; see package internal/benchsuite.
package main

import (
	"os"

	"github.com/outpost-cdn/outpost/internal/benchsuite"
)

func main() {
	os.Exit(benchsuite.Main(os.Args[1:], os.Stdout, os.Stderr))
}
