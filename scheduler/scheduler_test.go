package scheduler_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/leakcheck"
	"github.com/outpost-cdn/outpost/internal/membership"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
	"github.com/outpost-cdn/outpost/scheduler"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// edge joins the gossip as an edge node would, with its location and
// address in its metadata.
func edge(t *testing.T, name, region string, lat, lon float64, http string, join ...string) *membership.Member {
	t.Helper()
	m, err := membership.Start(membership.Config{Name: name, BindAddr: "127.0.0.1:0", Join: join, Fast: true, Logger: quiet,
		Meta: func() membership.Meta {
			return membership.Meta{Role: membership.RoleNode, Region: region, Latitude: lat, Longitude: lon, HTTP: http, HTTPS: http, Capacity: 1}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestSchedulerRoutesToTheNearestNode(t *testing.T) {
	env := controllertest.Start(t)
	admin, _ := env.NewAccount(t, "acme")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	created, err := env.Clients(t, admin).Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com",
		Origins: []*outpostv1.Origin{{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "192.0.2.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	cname := created.GetDomain().GetCname()

	east := edge(t, "edge-east", "east", 40.7, -74.0, "127.0.1.1:8080")
	edge(t, "edge-west", "west", 37.4, -122.1, "127.0.1.3:8080", east.Addr())
	cz := filepath.Join(t.TempDir(), "czf.json")
	if err := os.WriteFile(cz, []byte(`{"regions": {
		"east": {"latitude": 40.7, "longitude": -74.0, "networks": ["10.1.0.0/16"]},
		"west": {"latitude": 37.8, "longitude": -122.4, "networks": ["10.2.0.0/16"]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.Start(ctx, scheduler.Config{
		GRPCAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0", Controllers: []string{env.Addr}, JoinToken: env.SchedulerJoinToken(t),
		Gossip: membership.Options{Addr: "127.0.0.1:0", Join: []string{east.Addr()}}, CoverageZoneFile: cz, Answers: 1, TTL: 20 * time.Second, Logger: quiet, HTTPAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := outpostv1.NewSchedulerServiceClient(conn)
	resolve := func(client string) *outpostv1.ResolveResponse {
		r, err := cl.Resolve(ctx, &outpostv1.ResolveRequest{Domain: "www.example.com", ClientIp: client})
		if err != nil {
			return nil
		}
		return r
	}
	deadline := time.Now().Add(20 * time.Second)
	for r := resolve("10.1.2.3"); r == nil || len(r.GetCandidates()) < 2; r = resolve("10.1.2.3") {
		if time.Now().After(deadline) {
			t.Fatalf("scheduler never saw the domain and both nodes: %v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := resolve("10.1.2.3"); r.GetCandidates()[0].GetNode() != "edge-east" || r.GetClientRegion() != "east" || r.GetTtlSeconds() != 20 {
		t.Fatalf("east client: %v", r)
	}
	if r := resolve("10.2.9.9"); r.GetCandidates()[0].GetNode() != "edge-west" {
		t.Fatalf("west client: %v", r)
	}
	if _, err := cl.Resolve(ctx, &outpostv1.ResolveRequest{Domain: "nope.example.com", ClientIp: "10.1.2.3"}); err == nil {
		t.Fatal("unknown domain resolved")
	}

	// A drained node gets no clients (outpostctl node drain writes this
	// state; the node here is a bare gossip member, unknown to the
	// controller, so the state is written directly).
	drain := func(on bool) {
		b, err := store.Encode(&storagev1.NodeState{Draining: on})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Controller.Store().Client().Put(ctx, store.NodeStateKey("edge-east"), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	drain(true)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r := resolve("10.1.2.3")
		if r != nil && len(r.GetCandidates()) == 1 && r.GetCandidates()[0].GetNode() == "edge-west" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drained node still scheduled: %v", r)
		}
	}
	drain(false)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if r := resolve("10.1.2.3"); r != nil && len(r.GetCandidates()) == 2 && r.GetCandidates()[0].GetNode() == "edge-east" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("undrained node not scheduled again")
		}
	}

	// DNS: the CNAME target answers the nearest node for the client subnet.
	query := func(net, name string, qtype uint16, subnet string) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		if subnet != "" {
			_, n, _ := netParseCIDR(subnet)
			o := m.SetEdns0(4096, false).IsEdns0()
			ones, _ := n.Mask.Size()
			o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ones), Address: n.IP})
		}
		c := &dns.Client{Net: net, Timeout: 5 * time.Second}
		r, _, err := c.Exchange(m, s.DNSAddr())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct{ subnet, want string }{{"10.2.7.0/24", "127.0.1.3"}, {"10.1.7.0/24", "127.0.1.1"}} {
		for _, proto := range []string{"udp", "tcp"} {
			r := query(proto, cname, dns.TypeA, tc.subnet)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
				t.Fatalf("%s %s: %v", proto, tc.subnet, r)
			}
			if a := r.Answer[0].(*dns.A); a.A.String() != tc.want || a.Hdr.Ttl != 20 {
				t.Fatalf("%s %s: answer %v, want %s", proto, tc.subnet, a, tc.want)
			}
			var ecs *dns.EDNS0_SUBNET
			for _, o := range r.IsEdns0().Option {
				if e, ok := o.(*dns.EDNS0_SUBNET); ok {
					ecs = e
				}
			}
			if ecs == nil || ecs.SourceScope != 16 {
				t.Fatalf("%s %s: ECS scope %v, want 16 (the coverage-zone network)", proto, tc.subnet, ecs)
			}
		}
	}
	if r := query("udp", "nope.cdn.outpost.test", dns.TypeA, ""); r.Rcode != dns.RcodeNameError || len(r.Ns) == 0 {
		t.Fatalf("unknown name: %v", r)
	}
	if r := query("udp", "cdn.outpost.test", dns.TypeSOA, ""); len(r.Answer) != 1 {
		t.Fatalf("SOA: %v", r)
	}
	if r := query("udp", "cdn.outpost.test", dns.TypeNS, ""); len(r.Answer) != 1 {
		t.Fatalf("NS: %v", r)
	}
	if r := query("udp", cname, dns.TypeAAAA, ""); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Fatalf("AAAA for IPv4-only nodes should be NODATA: %v", r)
	}
	if r := query("udp", "www.example.org", dns.TypeA, ""); r.Rcode != dns.RcodeRefused {
		t.Fatalf("outside the zone: %v", r)
	}

	// HTTP mode: a 302 to the nearest node under "<node>.<cname>", a name
	// the scheduler's DNS answers with that node's address.
	req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr()+"/a/b.txt?v=1", nil)
	req.Host = "www.example.com"
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The test client connects from 127.0.0.1, which the coverage zone does
	// not know: the default location (0, 0) is nearer the east node.
	if want := "http://edge-east." + cname + ":8080/a/b.txt?v=1"; resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Fatalf("HTTP mode: %d %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if r := query("udp", "edge-east."+cname, dns.TypeA, ""); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.1.1" {
		t.Fatalf("node name: %v", r)
	}
	if r := query("udp", "edge-nope."+cname, dns.TypeA, ""); r.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown node name: %v", r)
	}
	req.Host = "nope.example.com"
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HTTP mode, unknown host: %d", resp.StatusCode)
	}
}

func netParseCIDR(s string) (net.IP, *net.IPNet, error) { return net.ParseCIDR(s) }

// TestSchedulerJoinsAndKeepsItsCertificate: a scheduler joins with a
// scheduler join token, keeps its certificate in its data dir, and on a
// restart streams again without a token. A node-role token does not make
// it a member.
func TestSchedulerJoinsAndKeepsItsCertificate(t *testing.T) {
	env := controllertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	op := env.Clients(t, env.OperatorToken)
	dir := t.TempDir()
	start := func(token string) *scheduler.Scheduler {
		t.Helper()
		s, err := scheduler.Start(ctx, scheduler.Config{Name: "sched-1", GRPCAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0",
			Controllers: []string{env.Addr}, JoinToken: token, DataDir: dir, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	certs := func() []*outpostv1.MemberCertificate {
		l, err := op.PKI.ListMemberCertificates(ctx, &outpostv1.ListMemberCertificatesRequest{Name: "sched-1"})
		if err != nil {
			t.Fatal(err)
		}
		return l.GetCertificates()
	}
	s := start(env.SchedulerJoinToken(t))
	for _, err := os.Stat(filepath.Join(dir, "member.crt")); err != nil; _, err = os.Stat(filepath.Join(dir, "member.crt")) {
		if ctx.Err() != nil {
			t.Fatal("the scheduler did not join")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := certs()[0]; c.GetRole() != outpostv1.MemberRole_MEMBER_ROLE_SCHEDULER {
		t.Fatalf("joined as %v", c)
	}
	if st, err := os.Stat(filepath.Join(dir, "member.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("member.key: %v %v", st, err)
	}
	s.Close()
	// No token now: the stored certificate is enough.
	s = start("")
	defer s.Close()
	time.Sleep(200 * time.Millisecond)
	if n := len(certs()); n != 1 {
		t.Fatalf("%d certificates after a restart, want the first one only", n)
	}

	// A scheduler with a node token refuses the node certificate it gets.
	other, err := scheduler.Start(ctx, scheduler.Config{Name: "sched-2", GRPCAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0",
		Controllers: []string{env.Addr}, JoinToken: env.JoinToken(t), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	time.Sleep(500 * time.Millisecond)
	nodes, err := op.Nodes.ListNodes(ctx, &outpostv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.GetNodes() {
		if n.GetName() == "sched-2" {
			t.Fatal("a scheduler with a node token appears as an edge node")
		}
	}
}
