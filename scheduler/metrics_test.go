package scheduler_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler"
)

// TestSchedulerMetrics: /metrics counts DNS responses by transport and
// code, and gRPC calls by method and code.
func TestSchedulerMetrics(t *testing.T) {
	s, err := scheduler.Start(context.Background(), scheduler.Config{GRPCAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	query := func(network, name string) {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		exchange(t, network, s.DNSAddr(), m)
	}
	query("udp", "nope.cdn.outpost.test.") // NXDOMAIN
	query("udp", "nope.cdn.outpost.test.")
	query("tcp", "www.example.org.") // outside the zone: REFUSED
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := outpostv1.NewSchedulerServiceClient(conn).Resolve(context.Background(), &outpostv1.ResolveRequest{Domain: "nope.example.com", ClientIp: "10.1.2.3"}); err == nil {
		t.Fatal("an unknown domain resolved")
	}

	resp, err := http.Get("http://" + s.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`outpost_scheduler_dns_responses_total{proto="udp",rcode="NXDOMAIN"} 2`,
		`outpost_scheduler_dns_responses_total{proto="tcp",rcode="REFUSED"} 1`,
		`outpost_scheduler_dns_responses_total{proto="udp",rcode="NOERROR"} 0`,
		`grpc_server_handled_total{grpc_code="NotFound",grpc_method="Resolve",grpc_service="outpost.v1.SchedulerService",grpc_type="unary"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", b)
	}
}
