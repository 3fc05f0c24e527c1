package node_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxy measures the uncached request path side by side with the
// peer, nginx proxy_pass, on one machine in one run: a client → proxy
// (plain HTTP, keep-alive) → nginx origin over HTTPS with origin SNI →
// 1 KiB file marked no-store, so that neither caches it. Reproduce with:
//
//	go test -run '^$' -bench BenchmarkProxy -benchtime 5s -count 5 ./node
func BenchmarkProxy(b *testing.B) {
	e := newEdge(b)
	e.addDomain(b, "www.example.com", "a.origin.test")
	peer := e.origin.StartProxy(b, "a.origin.test", 2)
	// no-store: the edge must not answer from its cache (a plain file
	// would be heuristically fresh, from its Last-Modified).
	e.origin.Write(b, "c/no-store/1k.bin", bytes.Repeat([]byte("x"), 1024))
	for _, tc := range []struct{ name, addr string }{{"outpost", e.node.HTTPAddr()}, {"nginx", peer}} {
		b.Run(tc.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr}
			url := "http://" + tc.addr + "/c/no-store/1k.bin"
			b.SetBytes(1024)
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", url, nil)
					req.Host = "www.example.com"
					resp, err := cl.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || n != 1024 {
						b.Errorf("status %d, %d bytes", resp.StatusCode, n)
						return
					}
				}
			})
		})
	}
}
