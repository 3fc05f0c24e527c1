// Package cmdutil is the shared skeleton of Outpost's daemons: flag parsing
// (with OUTPOST_* environment defaults), structured logging set-up, and a
// context cancelled by SIGINT or SIGTERM, so each cmd/*/main.go stays a few
// lines.
package cmdutil

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Main parses args with the flags register adds (plus -log-level and
// -log-format), then calls run with a logger and a context that ends on
// SIGINT or SIGTERM. It returns the process exit code.
func Main(name string, args []string, stderr io.Writer, register func(*flag.FlagSet), run func(context.Context, *slog.Logger) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	level := fs.String("log-level", Env("OUTPOST_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env OUTPOST_LOG_LEVEL)")
	format := fs.String("log-format", Env("OUTPOST_LOG_FORMAT", "text"), "log format: text or json (env OUTPOST_LOG_FORMAT)")
	register(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "%s: bad -log-level %q\n", name, *level)
		return 2
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if strings.EqualFold(*format, "json") {
		h = slog.NewJSONHandler(stderr, opts)
	}
	log := slog.New(h)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		log.Error(name+" failed", "err", err)
		return 1
	}
	return 0
}

// Env returns the environment variable key, or def when it is unset.
func Env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// List splits a comma-separated list, dropping empty items.
func List(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
