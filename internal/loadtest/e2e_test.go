package loadtest

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/internal/devcluster"
)

// End to end: the dev cluster (embedded etcd, controller, scheduler, three
// real edge nodes, the demo origin), its demo domain resolved through the
// scheduler's gRPC Resolve, then through its DNS: every request is answered
// by an edge node, which names itself in Via, and repeated URLs are hits.
func TestEndToEndDevCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole dev cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Config{
		Dir:               t.TempDir(),
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		EtcdUnsafeNoFsync: true,
	})
	if err != nil {
		t.Fatalf("dev cluster: %v", err)
	}
	t.Cleanup(c.Close)
	ep := c.Endpoints()
	pem, err := os.ReadFile(ep.DemoCertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)

	cfg := Config{
		Resolve:      ResolveGRPC,
		Scheduler:    ep.SchedulerGRPC,
		ClientSubnet: netip.MustParsePrefix(ep.DemoClientSubnets["west"]),
		Domains:      []Domain{{Name: ep.DemoDomain}},
		RootCAs:      pool,
		URLs:         10,
		Requests:     200,
		Concurrency:  4,
		Duration:     10 * time.Second,
		Seed:         1,
	}
	// The nodes join the scheduler's gossip once they have their first
	// configuration: wait until it names one.
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tg, err := newTargets(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	began := time.Now()
	for {
		addrs, _, err := tg.lookup(ctx, cfg.Domains[0])
		if err == nil && len(addrs) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the scheduler names no edge node: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the scheduler knew the nodes after %s", time.Since(began))
	res := runTest(t, cfg)
	if res.Responses != 200 || len(res.Errors) != 0 {
		t.Fatalf("responses %d, errors %v %v", res.Responses, res.Errors, res.ErrorSamples)
	}
	if len(res.Nodes) != 1 || res.Nodes["edge-3"] != 200 {
		t.Errorf("nodes %v: want edge-3, the west node, for a west client", res.Nodes)
	}
	if res.Cache["HIT"] < 150 || res.Cache["HIT"]+res.Cache["MISS"] != 200 {
		t.Errorf("cache %v", res.Cache)
	}
	t.Log(res.lines())
}
