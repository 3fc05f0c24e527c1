//go:build e2e

// Package compose holds the end-to-end test of the Docker topology in
// docker-compose.yml. It needs Docker and the images from `make images`, so
// it runs only with the e2e build tag: `make test-e2e`.
package compose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
)

const (
	domain = "www.demo.test"
	cname  = "www.demo.test.cdn.outpost.test."
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func portEnv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// resolve asks the scheduler for the CNAME's A records as seen from subnet.
func resolve(t *testing.T, subnet string) ([]string, error) {
	t.Helper()
	_, ipnet, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion(cname, dns.TypeA)
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(1232)
	ones, _ := ipnet.Mask.Size()
	o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ones), Address: ipnet.IP.To4()})
	m.Extra = append(m.Extra, o)
	c := &dns.Client{Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, "127.0.0.1:"+portEnv("OUTPOST_DNS_PORT", "7053"))
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

func waitFor(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestComposeTopology(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker not found")
	}
	t.Cleanup(func() {
		if os.Getenv("KEEP_UP") != "" {
			return
		}
		out, err := exec.Command("./down.sh").CombinedOutput()
		if err != nil {
			t.Errorf("down.sh: %v\n%s", err, out)
		}
	})
	t.Log(run(t, "./up.sh"))

	// Every published edge serves the demo domain from the origin container.
	for region, port := range map[string]string{
		"eu": portEnv("OUTPOST_EU_HTTP_PORT", "8081"),
		"us": portEnv("OUTPOST_US_HTTP_PORT", "8082"),
		"ap": portEnv("OUTPOST_AP_HTTP_PORT", "8083"),
	} {
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
	pem, err := os.ReadFile(".state/demo.crt")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in .state/demo.crt")
	}
	httpsPort := portEnv("OUTPOST_US_HTTPS_PORT", "8442")
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
		"192.0.2.0/24":    {"10.88.1.11", "10.88.1.12"},
		"198.51.100.0/24": {"10.88.2.11", "10.88.2.12"},
		"203.0.113.0/24":  {"10.88.3.11", "10.88.3.12"},
	}
	for subnet, ips := range want {
		waitFor(t, "DNS for "+subnet, 30*time.Second, func() error {
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

	// A stopped edge leaves the answers once gossip notices.
	// The container's name differs between Compose v1 and v2; its labels do not.
	id := strings.TrimSpace(run(t, "docker", "ps", "-aq",
		"--filter", "label=com.docker.compose.project=outpost",
		"--filter", "label=com.docker.compose.service=edge-us-1"))
	if id == "" || strings.Contains(id, "\n") {
		t.Fatalf("edge-us-1 container: %q", id)
	}
	run(t, "docker", "stop", id)
	waitFor(t, "edge-us-1 out of DNS", 60*time.Second, func() error {
		got, err := resolve(t, "198.51.100.0/24")
		if err != nil {
			return err
		}
		if slices.Contains(got, "10.88.2.11") {
			return fmt.Errorf("still answered: %v", got)
		}
		return nil
	})
	run(t, "docker", "start", id)
	waitFor(t, "edge-us-1 back in DNS", 60*time.Second, func() error {
		got, err := resolve(t, "198.51.100.0/24")
		if err != nil {
			return err
		}
		if !slices.Contains(got, "10.88.2.11") {
			return fmt.Errorf("not answered yet: %v", got)
		}
		return nil
	})
}
