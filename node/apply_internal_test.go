package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// BenchmarkBuildAfterPurge measures what one config change that leaves
// the certificates alone (a purge) costs build, with 10,000 certificates
// loaded: the certificates must be carried over, not hashed or parsed
// again. Reproduce:
//
//	go test -run '^$' -bench BenchmarkBuildAfterPurge ./node
func BenchmarkBuildAfterPurge(b *testing.B) {
	const n = 10_000
	p := certstest.Issue(b, certstest.Options{DNSNames: []string{"bench.example.test"}})
	bundles := make([]*outpostv1.CertificateBundle, n)
	for i := range bundles {
		bundles[i] = &outpostv1.CertificateBundle{Id: fmt.Sprintf("cert-%016x", i), CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)}
	}
	d := (*desired)(nil).merge(&outpostv1.StreamConfigResponse{Revision: 1, Snapshot: true, Certificates: bundles})
	st, err := build(d, emptyState)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		d = d.merge(&outpostv1.StreamConfigResponse{Revision: int64(i + 2), Purges: []*outpostv1.Purge{{TaskId: fmt.Sprintf("t%d", i)}}})
		if st, err = build(d, st); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSaverCoalescesAndFlushes: configs submitted while a save runs are
// coalesced into the newest; close writes the one still waiting; the
// snapshot on disk is the last config submitted.
func TestSaverCoalescesAndFlushes(t *testing.T) {
	dir := t.TempDir()
	p, err := newPersister(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	s := newSaver(p, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var mu sync.Mutex
	var saved []int64
	block := make(chan struct{})
	first := true
	s.mu.Lock()
	s.saved = func(rev int64) {
		mu.Lock()
		saved = append(saved, rev)
		wasFirst := first
		first = false
		mu.Unlock()
		if wasFirst {
			<-block // hold the writer while more configs arrive
		}
	}
	s.mu.Unlock()
	d := (*desired)(nil).merge(&outpostv1.StreamConfigResponse{Revision: 1, Snapshot: true})
	s.submit(d)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(saved)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first config was never saved")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for rev := int64(2); rev <= 50; rev++ {
		d = d.merge(&outpostv1.StreamConfigResponse{Revision: rev})
		s.submit(d)
	}
	close(block)
	s.close()
	s.submit(d.merge(&outpostv1.StreamConfigResponse{Revision: 51})) // after close: ignored
	mu.Lock()
	defer mu.Unlock()
	if len(saved) != 2 || saved[0] != 1 || saved[1] != 50 {
		t.Fatalf("saved revisions %v, want [1 50]: the 48 in between coalesced", saved)
	}
	got, err := p.load(context.Background())
	if err != nil || got == nil || got.revision != 50 {
		t.Fatalf("on disk: %v, %v; want revision 50", got, err)
	}
}

// BenchmarkPersistSave measures writing the last good config with 10,000
// certificates (keys already sealed, as after the first save): the work
// that the background saver keeps off the path from a config change to
// its ACK. Reproduce:
//
//	go test -run '^$' -bench BenchmarkPersistSave ./node
func BenchmarkPersistSave(b *testing.B) {
	const n = 10_000
	p := certstest.Issue(b, certstest.Options{DNSNames: []string{"bench.example.test"}})
	bundles := make([]*outpostv1.CertificateBundle, n)
	for i := range bundles {
		bundles[i] = &outpostv1.CertificateBundle{Id: fmt.Sprintf("cert-%016x", i), CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)}
	}
	d := (*desired)(nil).merge(&outpostv1.StreamConfigResponse{Revision: 1, Snapshot: true, Certificates: bundles})
	per, err := newPersister(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := per.save(ctx, d); err != nil { // seals every key once
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if err := per.save(ctx, d); err != nil {
			b.Fatal(err)
		}
	}
}
