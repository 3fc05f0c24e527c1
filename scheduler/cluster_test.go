package scheduler_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/membership"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler"
)

// edgeSpec is one gossip edge member of a test cluster.
type edgeSpec struct {
	name, region string
	lat, lon     float64
	http         string // host:port, IPv4 or [IPv6]
}

// cluster is a real controller with one accelerated domain, edge members
// gossiping on 127.0.0.1, and a scheduler that learns both.
type cluster struct {
	s      *scheduler.Scheduler
	domain string
	cname  string
	edges  []*membership.Member
	client outpostv1.SchedulerServiceClient

	mu     sync.Mutex
	killed map[int]bool
}

// clusterCZ is the coverage zone of test clusters: three regions, where
// the edges of clusterEdges are.
const clusterCZ = `{"regions": {
	"east": {"latitude": 40.7, "longitude": -74.0, "networks": ["10.1.0.0/16", "2001:db8:1::/48"]},
	"west": {"latitude": 37.8, "longitude": -122.4, "networks": ["10.2.0.0/16", "2001:db8:2::/48"]},
	"eu": {"latitude": 50.1, "longitude": 8.7, "networks": ["10.3.0.0/16", "2001:db8:3::/48"]}}}`

// clusterEdges are three edges, one per coverage-zone region.
var clusterEdges = []edgeSpec{
	{"edge-east", "east", 40.7, -74.0, "127.0.1.1:8080"},
	{"edge-west", "west", 37.4, -122.1, "127.0.1.2:8080"},
	{"edge-eu", "eu", 50.1, 8.7, "127.0.1.3:8080"},
}

// startCluster starts a controller, the domain www.example.com, the edges
// and a scheduler giving answers nodes per DNS answer, and waits until the
// scheduler resolves the domain to min(3, len(edges)) nodes. Everything is
// stopped by tb.Cleanup.
func startCluster(tb testing.TB, answers int, edges []edgeSpec) *cluster {
	tb.Helper()
	return startClusterLog(tb, answers, edges, quiet)
}

// startClusterLog is startCluster with the members and the scheduler
// logging to log.
func startClusterLog(tb testing.TB, answers int, edges []edgeSpec, log *slog.Logger) *cluster {
	tb.Helper()
	return startClusterCZ(tb, answers, edges, log, clusterCZ)
}

// startClusterCZ is startClusterLog with the coverage zone cz (JSON).
func startClusterCZ(tb testing.TB, answers int, edges []edgeSpec, log *slog.Logger, czJSON string) *cluster {
	tb.Helper()
	env := controllertest.Start(tb)
	admin, _ := env.NewAccount(tb, "acme")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := &cluster{domain: "www.example.com", killed: map[int]bool{}}
	created, err := env.Clients(tb, admin).Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: c.domain,
		Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "192.0.2.1"}}})
	if err != nil {
		tb.Fatal(err)
	}
	c.cname = created.GetDomain().GetCname()

	for i, e := range edges {
		var join []string
		if i > 0 {
			join = []string{c.edges[0].Addr()}
		}
		m, err := membership.Start(membership.Config{Name: e.name, BindAddr: "127.0.0.1:0", Join: join, Fast: true, Logger: log,
			Meta: func() membership.Meta {
				return membership.Meta{Role: membership.RoleNode, Region: e.region, Latitude: e.lat, Longitude: e.lon, HTTP: e.http, HTTPS: e.http, Capacity: 1}
			}})
		if err != nil {
			tb.Fatal(err)
		}
		c.edges = append(c.edges, m)
	}
	// At the end the scheduler is gone (cleanups run last first): no one
	// needs the edges' leave messages, each of which takes a gossip round.
	tb.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, m := range c.edges {
			if !c.killed[i] {
				m.Shutdown()
			}
		}
	})

	cz := filepath.Join(tb.TempDir(), "czf.json")
	if err := os.WriteFile(cz, []byte(czJSON), 0o600); err != nil {
		tb.Fatal(err)
	}
	c.s, err = scheduler.Start(ctx, scheduler.Config{
		GRPCAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0", Controllers: []string{env.Addr}, JoinToken: env.SchedulerJoinToken(tb),
		Gossip: membership.Options{Addr: "127.0.0.1:0", Join: []string{c.edges[0].Addr()}, Local: true}, CoverageZoneFile: cz, Answers: answers, TTL: 20 * time.Second, Logger: log,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.s.Close)

	conn, err := grpc.NewClient(c.s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	c.client = outpostv1.NewSchedulerServiceClient(conn)

	want := min(3, len(edges))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, err := c.resolve("10.1.2.3")
		if err == nil && len(r.GetCandidates()) == want {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("scheduler never saw the domain and %d nodes: %v %v", want, r, err)
		}
	}
	return c
}

// resolve asks the scheduler over gRPC for the domain's nodes for client.
func (c *cluster) resolve(client string) (*outpostv1.ResolveResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.client.Resolve(ctx, &outpostv1.ResolveRequest{Domain: c.domain, ClientIp: client})
}

// kill stops edge i's gossip without a leave, as a crash would.
func (c *cluster) kill(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.killed[i] {
		panic(fmt.Sprintf("edge %d killed twice", i))
	}
	c.killed[i] = true
	c.edges[i].Shutdown()
}
