// Command outpost-origin is a tiny HTTP origin for the multi-host deployment
// example (deploy/compose) and other demos: it needs no files and no image
// from a registry. It answers every path with a small text page that names the
// path, the Host header and the origin's name, with a Cache-Control max-age so
// that edges cache it, and /1k.bin with 1 KiB of bytes fixed at start-up
// (/100k.bin, /4m.bin and other /<n>k.bin and /<n>m.bin repeat them, for a
// load test's size mix).
//
// It is not a general web server; a real deployment points its domains at its
// own origins.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/outpost-cdn/outpost/internal/sizedbody"
)

func main() {
	listen := flag.String("listen", envOr("OUTPOST_ORIGIN_LISTEN", ":80"), "HTTP listen address (env OUTPOST_ORIGIN_LISTEN)")
	name := flag.String("name", envOr("OUTPOST_ORIGIN_NAME", "outpost-origin"), "name shown in the pages (env OUTPOST_ORIGIN_NAME)")
	maxAge := flag.Int("max-age", 60, "Cache-Control max-age of the pages, in seconds")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	start := time.Now().UTC()
	blob := make([]byte, 1024)
	_, _ = rand.Read(blob)

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if size, ok := sizedbody.Path(r.URL.Path); ok { // /1k.bin, /100k.bin, /4m.bin…
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", *maxAge))
			http.ServeContent(w, r, "", start, sizedbody.Reader(blob, size))
			return
		}
		log.Info("request", "method", r.Method, "host", r.Host, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", *maxAge))
		w.Header().Set("X-Origin", *name)
		fmt.Fprintf(w, "hello from %s\nhost: %s\npath: %s\nstarted: %s\nserved: %s\n",
			*name, r.Host, r.URL.Path, start.Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339Nano))
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("origin listening", "addr", *listen, "name", *name)
	if err := srv.ListenAndServe(); err != nil {
		log.Error("origin stopped", "err", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
