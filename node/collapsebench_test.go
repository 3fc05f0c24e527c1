package node_test

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"
)

// collapseClients is how many clients ask for the same missing object at
// once in BenchmarkCollapse.
const collapseClients = 1000

// BenchmarkCollapse: 1,000 clients ask at once, over plain HTTP keep-alive,
// for a 100 KiB object neither edge has (a new URL every operation). It
// reports how many requests reached the origin per operation and how long
// the clients waited (p50, p99): Outpost streams one origin fetch to every
// waiting client; nginx's proxy_cache_lock makes the others poll for the
// cache entry. Outpost and nginx alternate, A B A B, with the same origin.
// Reproduce:
//
//	go test -run '^$' -bench BenchmarkCollapse -benchtime 5x ./node
func BenchmarkCollapse(b *testing.B) {
	h := hitSetup(b)
	targets := []struct{ name, addr string }{{"outpost", h.edgeHTTP}, {"nginx", h.peer.edgeHTTP}}
	for round := range 2 {
		for _, tg := range targets {
			b.Run(fmt.Sprintf("%s/round%d", tg.name, round), func(b *testing.B) { benchCollapse(b, h, tg.addr) })
		}
	}
}

func benchCollapse(b *testing.B, h *hitBench, addr string) {
	tr := &http.Transport{MaxIdleConnsPerHost: collapseClients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	get := func(path string) error {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = host
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: status %d", path, resp.StatusCode)
		}
		return err
	}
	// all runs fn on every client at once and returns each one's time.
	all := func(fn func() error) ([]time.Duration, error) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		lat := make([]time.Duration, collapseClients)
		errs := make(chan error, collapseClients)
		for i := range collapseClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				t0 := time.Now()
				if err := fn(); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(t0)
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		return lat, <-errs
	}
	// Open every client's connection first (a cached object), so that the
	// operations measure the edge, not TCP set-up.
	if err := get("/1k.bin"); err != nil {
		b.Fatal(err)
	}
	if _, err := all(func() error { return get("/1k.bin") }); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	origin := 0
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		path := fmt.Sprintf("/100k.bin?collapse=%d-%d", time.Now().UnixNano(), i)
		before := h.peer.originRequests(b)
		b.StartTimer()
		l, err := all(func() error { return get(path) })
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, l...)
		// The origin logs a request when it finished sending it: wait for
		// the count to settle (bounded).
		after := h.peer.originRequests(b)
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			n := h.peer.originRequests(b)
			if n == after {
				break
			}
			after = n
		}
		origin += after - before
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(origin)/float64(b.N), "origin-requests/op")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
