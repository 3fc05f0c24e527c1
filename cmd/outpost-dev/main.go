// Command outpost-dev runs a whole Outpost cluster in one process for local
// development (`make dev`); see package devcluster.
package main

import (
	"os"

	"github.com/outpost-cdn/outpost/internal/devcluster"
)

func main() {
	os.Exit(devcluster.Main(os.Args[1:], os.Stdout, os.Stderr))
}
