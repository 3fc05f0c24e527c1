//go:build e2e

// Package compose holds the end-to-end and fault tests of the Docker
// topology in docker-compose.yml (docs/deployment.md). They need Docker,
// root (faults are iptables rules in containers' network namespaces) and
// the images from deploy/images/build.sh, so they run only with the e2e
// build tag: `make test-e2e`. TestMain brings one topology up for all of
// them and tears it down at the end.
package compose

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

const (
	domain = "www.demo.test"
	cname  = "www.demo.test.cdn.outpost.test."
)

// resolve asks scheduler-1 for the CNAME's A records as seen from subnet.
func resolve(t testing.TB, subnet string) ([]string, error) {
	t.Helper()
	return resolveAt("127.0.0.1:"+topo.dnsPort, subnet)
}

// resolveAt asks the scheduler DNS server at server.
func resolveAt(server, subnet string) ([]string, error) {
	_, ipnet, err := net.ParseCIDR(subnet)
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	m.SetQuestion(cname, dns.TypeA)
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(1232)
	ones, _ := ipnet.Mask.Size()
	o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ones), Address: ipnet.IP.To4()})
	m.Extra = append(m.Extra, o)
	c := &dns.Client{Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	var ips []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips = append(ips, a.A.String())
		}
	}
	slices.Sort(ips)
	return ips, nil
}

// TestMain brings the topology up once (down.sh first, for a fresh one,
// unless KEEP_UP=1 asks to reuse what a previous KEEP_UP=1 run left), runs
// the tests, and tears it down unless KEEP_UP=1.
func TestMain(m *testing.M) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		fmt.Println("e2e: Docker is not available (docker info failed): skipping the e2e and fault tests")
		os.Exit(0)
	}
	keep := os.Getenv("KEEP_UP") != ""
	fmt.Printf("e2e: compose project %s, images tag %s, networks %s.x.0/24, state directory %s\n", topo.project, topo.tag, topo.net, topo.state)
	start := time.Now()
	if !keep {
		if out, err := command(5*time.Minute, "./down.sh"); err != nil {
			fmt.Println(out, err)
		}
	}
	out, err := command(10*time.Minute, "./up.sh")
	fmt.Print(out)
	code := 1
	if err != nil {
		fmt.Println("e2e: up.sh:", err)
	} else {
		fmt.Printf("e2e: topology up in %.0f s\n", time.Since(start).Seconds())
		code = m.Run()
	}
	if !keep {
		if out, err := command(5*time.Minute, "./down.sh"); err != nil {
			fmt.Println("e2e: down.sh:", err, out)
			code = 1
		}
	}
	fmt.Printf("e2e: total %.0f s\n", time.Since(start).Seconds())
	os.Exit(code)
}

func TestComposeTopology(t *testing.T) {
	ensureUp(t)

	// Every published edge serves the demo domain from the origin container.
	for region, port := range topo.httpPorts {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://127.0.0.1:"+port+"/e2e", nil)
		req.Host = domain
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("edge %s: %v", region, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "hello from origin") {
			t.Fatalf("edge %s: %d %q", region, resp.StatusCode, body)
		}
		if via := resp.Header.Get("Via"); !strings.Contains(via, "edge-"+region+"-1") {
			t.Fatalf("edge %s: Via %q", region, via)
		}
	}

	// HTTPS with the self-signed certificate up.sh made, through edge-us-1.
	roots := certPool(t, "demo.crt")
	httpsPort := topo.httpsPorts["us"]
	tlsClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: domain},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+httpsPort)
		},
	}}
	resp, err := tlsClient.Get("https://" + domain + "/e2e-tls")
	if err != nil {
		t.Fatalf("HTTPS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "path: /e2e-tls") {
		t.Fatalf("HTTPS: %d %q", resp.StatusCode, body)
	}

	// The scheduler answers each region's clients with that region's nodes.
	want := map[string][]string{
		"192.0.2.0/24":    {topo.ip("1.11"), topo.ip("1.12")},
		"198.51.100.0/24": {topo.ip("2.11"), topo.ip("2.12")},
		"203.0.113.0/24":  {topo.ip("3.11"), topo.ip("3.12")},
	}
	for subnet, ips := range want {
		waitFor(t, "DNS for "+subnet, 30*time.Second, 500*time.Millisecond, func() error {
			got, err := resolve(t, subnet)
			if err != nil {
				return err
			}
			if !slices.Equal(got, ips) {
				return fmt.Errorf("got %v, want %v", got, ips)
			}
			return nil
		})
	}

	// Every edge node and scheduler joined with its own name-bound join
	// token: one certificate each.
	op := operator(t)
	for _, m := range slices.Concat(edges, schedulers) {
		if got := op.memberCerts(t, m); len(got) != 1 {
			t.Fatalf("%s has certificates %v, want one", m, got)
		}
	}
	certsBefore := op.memberCerts(t, "edge-us-1")

	// A stopped edge leaves the answers once gossip notices.
	docker(t, "stop", "edge-us-1")
	t.Cleanup(func() { compose("start", "edge-us-1") })
	waitFor(t, "edge-us-1 out of DNS", 60*time.Second, 500*time.Millisecond, func() error {
		got, err := resolve(t, "198.51.100.0/24")
		if err != nil {
			return err
		}
		if slices.Contains(got, topo.ip("2.11")) {
			return fmt.Errorf("still answered: %v", got)
		}
		return nil
	})
	waitFor(t, "edge-us-1 disconnected", 30*time.Second, 500*time.Millisecond, func() error {
		if h, err := op.nodeHealth("edge-us-1"); err != nil || h == outpostv1.NodeHealth_NODE_HEALTH_CONNECTED {
			return fmt.Errorf("health %s (%v)", h, err)
		}
		return nil
	})
	docker(t, "start", "edge-us-1")
	// Its join token is used up: it reconnects over mutual TLS with the
	// certificate kept in its volume, and no new one is issued.
	waitFor(t, "edge-us-1 connected again", 60*time.Second, 500*time.Millisecond, func() error {
		if h, err := op.nodeHealth("edge-us-1"); err != nil || h != outpostv1.NodeHealth_NODE_HEALTH_CONNECTED {
			return fmt.Errorf("health %s (%v)", h, err)
		}
		return nil
	})
	if got := op.memberCerts(t, "edge-us-1"); !slices.Equal(got, certsBefore) {
		t.Fatalf("edge-us-1 certificates %v after the restart, want %v", got, certsBefore)
	}
	waitFor(t, "edge-us-1 back in DNS", 60*time.Second, 500*time.Millisecond, func() error {
		got, err := resolve(t, "198.51.100.0/24")
		if err != nil {
			return err
		}
		if !slices.Contains(got, topo.ip("2.11")) {
			return fmt.Errorf("not answered yet: %v", got)
		}
		return nil
	})
}
