package node_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkTLSResume: resumed TLS 1.2 handshakes (session tickets) per
// second on a new connection each, Outpost's edge vs nginx, A B A B, with
// the same name and an ECDSA P-256 certificate on both. TLS 1.2, because
// the peer's nginx (1.22, Debian's defaults) does not offer TLS 1.3. Every client
// goroutine keeps its own session cache, filled by one full handshake
// before timing; a handshake that did not resume fails the benchmark.
// Reproduce:
//
//	go test -run '^$' -bench BenchmarkTLSResume -benchtime 3s ./node
func BenchmarkTLSResume(b *testing.B) {
	h := hitSetup(b)
	targets := []struct {
		name, addr string
		roots      *x509.CertPool
	}{{"outpost", h.edgeHTTPS, h.roots}, {"nginx", h.peer.edgeHTTPS, h.peerRoots}}
	for round := range 2 {
		for _, tg := range targets {
			b.Run(fmt.Sprintf("%s/round%d", tg.name, round), func(b *testing.B) { benchResume(b, tg.addr, tg.roots) })
		}
	}
}

func benchResume(b *testing.B, addr string, roots *x509.CertPool) {
	handshake := func(cfg *tls.Config) (time.Duration, bool, error) {
		t0 := time.Now()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return 0, false, err
		}
		d := time.Since(t0)
		resumed := c.ConnectionState().DidResume
		c.Close()
		return d, resumed, nil
	}
	var mu sync.Mutex
	var lat []time.Duration
	var notResumed atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		cfg := &tls.Config{ServerName: host, RootCAs: roots, MaxVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		if _, _, err := handshake(cfg); err != nil { // full: fills the cache
			b.Error(err)
			return
		}
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			d, resumed, err := handshake(cfg)
			if err != nil {
				b.Error(err)
				return
			}
			if !resumed {
				notResumed.Add(1)
			}
			local = append(local, d)
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	if n := notResumed.Load(); n > int64(len(lat)/100) {
		b.Fatalf("%d of %d handshakes did not resume", n, len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
