// Command outpost-loadtest is the load-test harness of Outpost's edge
// nodes; see package internal/loadtest and docs/loadtest.md.
package main

import (
	"os"

	"github.com/outpost-cdn/outpost/internal/loadtest"
)

func main() {
	os.Exit(loadtest.Main(os.Args[1:], os.Stdout, os.Stderr))
}
