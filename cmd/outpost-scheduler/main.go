// Command outpost-scheduler runs an Outpost scheduler: nearest-node answers
// over gRPC and DNS.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/outpost-cdn/outpost/internal/cmdutil"
	"github.com/outpost-cdn/outpost/scheduler"
)

func main() {
	var cfg scheduler.Config
	os.Exit(cmdutil.Main("outpost-scheduler", os.Args[1:], os.Stderr, func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		func(ctx context.Context, log *slog.Logger) error {
			cfg.Logger = log
			return scheduler.Run(ctx, cfg)
		}))
}
