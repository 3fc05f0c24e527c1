// Command outpost-controller runs the Outpost control plane: the gRPC admin
// API and the nodes' config stream, on etcd.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/internal/cmdutil"
)

func main() {
	var cfg controller.Config
	os.Exit(cmdutil.Main("outpost-controller", os.Args[1:], os.Stderr, func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) },
		func(ctx context.Context, log *slog.Logger) error {
			cfg.Logger = log
			return controller.Run(ctx, cfg)
		}))
}
