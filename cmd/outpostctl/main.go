// Command outpostctl is the admin command line of the Outpost CDN; see
// package internal/outpostctl.
package main

import (
	"os"

	"github.com/outpost-cdn/outpost/internal/outpostctl"
)

func main() {
	os.Exit(outpostctl.Main(os.Args[1:], os.Stdout, os.Stderr))
}
