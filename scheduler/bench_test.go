package scheduler_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// benchClients is how many client goroutines keep one request each in
// flight: enough to keep both cores busy, few enough that queueing does
// not dominate the latency.
const benchClients = 8

// benchSubnets are the client subnets of the benchmark queries: the three
// coverage-zone regions, over IPv4 and IPv6, and a network no source knows
// (the default location).
var benchSubnets = []string{"10.1.7.0/24", "10.2.7.0/24", "10.3.7.0/24", "2001:db8:1:7::/56", "2001:db8:2:7::/56", "192.0.2.0/24"}

// loadResult is what a load run measured.
type loadResult struct {
	elapsed   time.Duration
	latencies []time.Duration
}

// report adds the rate (unit/s, and per GOMAXPROCS core) and the p50 and
// p99 latencies to b.
func (r loadResult) report(b *testing.B, unit string) {
	b.Helper()
	slices.Sort(r.latencies)
	pct := func(p float64) float64 {
		return float64(r.latencies[int(p*float64(len(r.latencies)-1))]) / float64(time.Millisecond)
	}
	rate := float64(len(r.latencies)) / r.elapsed.Seconds()
	b.ReportMetric(rate, unit+"/s")
	b.ReportMetric(rate/float64(runtime.GOMAXPROCS(0)), unit+"/s/core")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// runLoad runs b.N calls of do over benchClients goroutines, each with
// its own client state from newClient, and times each call. do gets the
// call's number.
func runLoad[C any](b *testing.B, newClient func() C, do func(c C, n int) error) loadResult {
	b.Helper()
	clients := make([]C, benchClients)
	for i := range clients {
		clients[i] = newClient()
	}
	var (
		next    atomic.Int64
		failed  atomic.Bool
		wg      sync.WaitGroup
		results = make([][]time.Duration, benchClients)
	)
	b.ResetTimer()
	start := time.Now()
	for i := range benchClients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, b.N/benchClients+1)
			for {
				n := int(next.Add(1))
				if n > b.N || failed.Load() {
					break
				}
				t0 := time.Now()
				err := do(clients[i], n)
				lat = append(lat, time.Since(t0))
				if err != nil {
					failed.Store(true)
					b.Error(err)
					break
				}
			}
			results[i] = lat
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed.Load() {
		b.FailNow()
	}
	return loadResult{elapsed: elapsed, latencies: slices.Concat(results...)}
}

// BenchmarkDNS measures the scheduler's DNS answers over UDP: A queries for
// a domain's CNAME with EDNS Client Subnet, from benchClients clients each
// with its own socket, against a scheduler with a real controller and three
// edges gossiping on loopback. Client and server share the machine.
func BenchmarkDNS(b *testing.B) {
	c := startCluster(b, 2, clusterEdges)
	var queries []*dns.Msg
	for _, s := range benchSubnets {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			b.Fatal(err)
		}
		ones, bits := n.Mask.Size()
		family, addr := uint16(1), n.IP.To4()
		if bits == 128 {
			family, addr = 2, n.IP
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(c.cname), dns.TypeA)
		m.SetEdns0(1232, false).IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: uint8(ones), Address: addr}}
		queries = append(queries, m)
	}
	b.Run("udp-ecs", func(b *testing.B) {
		type client struct {
			conn    *dns.Conn
			queries []*dns.Msg
		}
		var conns []*dns.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		r := runLoad(b, func() *client {
			conn, err := dns.Dial("udp", c.s.DNSAddr())
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, conn)
			cl := &client{conn: conn}
			for _, q := range queries {
				cl.queries = append(cl.queries, q.Copy())
			}
			return cl
		}, func(cl *client, n int) error {
			q := cl.queries[n%len(cl.queries)]
			q.Id = uint16(n)
			_ = cl.conn.SetDeadline(time.Now().Add(5 * time.Second))
			if err := cl.conn.WriteMsg(q); err != nil {
				return err
			}
			r, err := cl.conn.ReadMsg()
			if err != nil {
				return err
			}
			if r.Id != q.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
				return fmt.Errorf("query %d: %v", n, r)
			}
			return nil
		})
		r.report(b, "queries")
	})
}

// BenchmarkResolve measures gRPC Resolve calls from benchClients
// goroutines over two connections, against the same cluster as
// BenchmarkDNS.
func BenchmarkResolve(b *testing.B) {
	c := startCluster(b, 2, clusterEdges)
	var clients []outpostv1.SchedulerServiceClient
	for range 2 {
		conn, err := grpc.NewClient(c.s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		clients = append(clients, outpostv1.NewSchedulerServiceClient(conn))
	}
	var ips []string
	for _, s := range benchSubnets {
		ip, _, _ := net.ParseCIDR(s)
		ips = append(ips, ip.String())
	}
	b.Run("grpc", func(b *testing.B) {
		i := 0
		ctx := context.Background()
		r := runLoad(b, func() outpostv1.SchedulerServiceClient {
			i++
			return clients[i%len(clients)]
		}, func(cl outpostv1.SchedulerServiceClient, n int) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			r, err := cl.Resolve(ctx, &outpostv1.ResolveRequest{Domain: c.domain, ClientIp: ips[n%len(ips)]})
			if err != nil {
				return err
			}
			if len(r.GetCandidates()) != 3 {
				return fmt.Errorf("call %d: %v", n, r)
			}
			return nil
		})
		r.report(b, "calls")
	})
}
