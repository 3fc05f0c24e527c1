package devcluster

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/outpost-cdn/outpost/controller/acmetest"
)

// The dev ACME CA is Pebble, Let's Encrypt's test CA, run in-process by
// controller/acmetest: the controller gets free certificates from it as it
// would from Let's Encrypt. Its validation authority really fetches the
// HTTP-01 challenges, from the edge nodes' HTTP port (where a public CA
// would use port 80), and its DNS server answers every name with edge-1's
// address, as if every domain's DNS led to the edge nodes.

// acmeRootFile holds the roots Pebble issues from, for curl --cacert.
const acmeRootFile = "acme/pebble-root.pem"

// maxAcmeRoots bounds the roots kept in acmeRootFile. Pebble forgets
// everything when it stops and makes a new root at every start, while the
// free certificates it issued stay stored and served until their renewal
// (60 days later). So the file keeps the roots of earlier starts too, newest
// first: their keys died with their Pebble, so they can sign nothing more.
const maxAcmeRoots = 32

// startACME starts Pebble on the plan's addresses, validating on the HTTP
// port of edge-1, and writes its root to dir. Close it after the
// controller.
func startACME(dir string, p *plan, nodeIP string, log *slog.Logger) (*acmetest.CA, string, error) {
	_, portText, err := net.SplitHostPort(p.nodeHTTP[0])
	if err != nil {
		return nil, "", err
	}
	httpPort, err := strconv.Atoi(portText)
	if err != nil {
		return nil, "", fmt.Errorf("edge-1 HTTP port %q: %w", portText, err)
	}
	ip := net.ParseIP(nodeIP)
	ca, err := acmetest.Open(acmetest.Options{
		Addr:    p.acmeDir,
		DNSAddr: p.acmeDNS,
		Resolve: func(string) net.IP { return ip },
		Log:     &lineLog{log: log.With("component", "pebble")},
	})
	if err != nil {
		return nil, "", fmt.Errorf("start the dev ACME CA (Pebble): %w", err)
	}
	ca.Activate(httpPort)
	path := filepath.Join(dir, acmeRootFile)
	if err := writeAcmeRoots(path, ca.RootPEM()); err != nil {
		ca.Close()
		return nil, "", fmt.Errorf("write Pebble's root: %w", err)
	}
	log.Info("dev ACME CA (Pebble) started", "directory", ca.DirectoryURL, "dns", ca.DNSAddr(),
		"validates", net.JoinHostPort(nodeIP, portText), "root_file", path)
	return ca, path, nil
}

// writeAcmeRoots writes current to path, followed by the roots of earlier
// starts already in the file, up to maxAcmeRoots in all.
func writeAcmeRoots(path string, current []byte) error {
	block, _ := pem.Decode(current)
	if block == nil {
		return fmt.Errorf("no PEM root")
	}
	out := append([]byte(nil), current...)
	kept := 1
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for kept < maxAcmeRoots {
		var b *pem.Block
		if b, old = pem.Decode(old); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" || bytes.Equal(b.Bytes, block.Bytes) {
			continue
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})...)
		kept++
	}
	return writeFile(path, out, 0o644)
}

// lineLog logs what Pebble writes, a line at a time, at debug level.
type lineLog struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimPrefix(string(l.buf[:i]), "pebble ")
		l.buf = l.buf[i+1:]
		// Drop Pebble's own time stamp (log.Lmicroseconds).
		if ts, rest, ok := strings.Cut(line, " "); ok && strings.Count(ts, ":") == 2 {
			line = rest
		}
		l.log.Log(context.Background(), slog.LevelDebug, line)
	}
	return len(p), nil
}
