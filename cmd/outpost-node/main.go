// Command outpost-node runs an Outpost edge node.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/outpost-cdn/outpost/internal/cmdutil"
	"github.com/outpost-cdn/outpost/node"
)

func main() {
	var cfg node.Config
	os.Exit(cmdutil.Main("outpost-node", os.Args[1:], os.Stderr, func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		func(ctx context.Context, log *slog.Logger) error {
			cfg.Logger = log
			return node.Run(ctx, cfg)
		}))
}
