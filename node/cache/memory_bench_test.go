package cache

import (
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// BenchmarkMemoryPerObject measures the heap one cached 1 KiB object costs
// (body, headers, key and the cache's bookkeeping). Reproduce:
//
//	go test -run '^$' -bench BenchmarkMemoryPerObject ./node/cache
func BenchmarkMemoryPerObject(b *testing.B) {
	const objects = 20000
	const bodySize = 1024
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := New(Config{MaxBytes: 1 << 30}, nil)
		now := time.Now()
		for j := 0; j < objects; j++ {
			base := fmt.Sprintf("www.example.com/static/img/%08d.jpg", j)
			h := http.Header{}
			h.Set("Content-Type", "image/jpeg")
			h.Set("Cache-Control", "max-age=3600")
			h.Set("ETag", fmt.Sprintf(`"%08x-400"`, j))
			h.Set("Last-Modified", now.UTC().Format(http.TimeFormat))
			h.Set("Date", now.UTC().Format(http.TimeFormat))
			c.Store(&Entry{Base: base, Key: base, Status: 200, Header: h, Body: make([]byte, bodySize), Stored: now, Fresh: time.Hour}, false)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if c.Len() < objects*9/10 {
			b.Fatalf("only %d of %d objects kept", c.Len(), objects)
		}
		per := float64(after.HeapAlloc-before.HeapAlloc) / float64(c.Len())
		b.ReportMetric(per, "bytes/object")
		b.ReportMetric(per-bodySize, "overhead-bytes/object")
		c.Close()
	}
}
