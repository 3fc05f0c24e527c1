package devcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// syncBuffer collects logs across goroutines; they are shown when a test
// fails.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig is a cluster on free ports only, with the nodes on 127.0.1.x.
func testConfig(t *testing.T, dir string) Config {
	t.Helper()
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs:\n%s", logs.String())
		}
	})
	return Config{
		Dir:               dir,
		Logger:            slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		EtcdUnsafeNoFsync: true,
	}
}

func startCluster(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestCluster(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, testConfig(t, dir))
	ep := c.Endpoints()

	t.Run("endpoints.json", func(t *testing.T) { checkEndpointsFile(t, dir, ep) })
	t.Run("demo domain", func(t *testing.T) { checkDemoDomain(t, ep) })
	t.Run("demo origin", func(t *testing.T) { checkOrigin(t, ep) })
	t.Run("scheduler routes by client subnet", func(t *testing.T) { checkScheduler(t, ep) })
	t.Run("secrets are private", func(t *testing.T) {
		for _, f := range []string{operatorTokenFile, demoTokenFile, nodeTokenFile, "origin/a.origin.test.key", "origin/b.origin.test.key"} {
			st, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
			}
		}
		// The demo domain's private key went to the controller only.
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.Contains(path, string(filepath.Separator)+"origin"+string(filepath.Separator)) {
				return err
			}
			if strings.HasPrefix(path, filepath.Join(dir, "controller")) || strings.HasPrefix(path, filepath.Join(dir, "nodes")) {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if strings.Contains(string(b), "PRIVATE KEY") {
				t.Errorf("%s holds a private key", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	// Stop and start again on the same directory: the state, the tokens
	// and the demo domain are reused.
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return within 15s")
	}
	c2 := startCluster(t, testConfig(t, dir))
	ep2 := c2.Endpoints()
	if ep2.Token != ep.Token {
		t.Errorf("demo token changed across restarts")
	}
	if ep2.OperatorToken != ep.OperatorToken {
		t.Errorf("operator token changed across restarts")
	}
	if ep2.DemoCNAME != ep.DemoCNAME {
		t.Errorf("demo CNAME %q, was %q", ep2.DemoCNAME, ep.DemoCNAME)
	}
	checkDemoDomain(t, ep2)
	checkOrigin(t, ep2)

	// A stored demo token that no longer works is replaced by a new one.
	revokeToken(t, ep2.Controller, ep2.OperatorToken, ep2.Token)
	c2.Close()
	ep3 := startCluster(t, testConfig(t, dir)).Endpoints()
	if ep3.Token == ep2.Token {
		t.Fatal("the revoked demo token was kept")
	}
	checkDemoDomain(t, ep3)
	stored, err := readFile(filepath.Join(dir, demoTokenFile))
	if err != nil || strings.TrimSpace(stored) != ep3.Token {
		t.Errorf("the new demo token was not stored (%v)", err)
	}
}

func revokeToken(t *testing.T, addr, operator, secret string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dial(addr, secret)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	who, err := outpostv1.NewAccountServiceClient(conn).WhoAmI(ctx, &outpostv1.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	op, err := dial(addr, operator)
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	if _, err := outpostv1.NewAccountServiceClient(op).RevokeToken(ctx, &outpostv1.RevokeTokenRequest{Id: who.GetToken().GetId()}); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
}

func checkEndpointsFile(t *testing.T, dir string, ep Endpoints) {
	path := filepath.Join(dir, EndpointsFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("endpoints.json has mode %v, want 0600", st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("endpoints.json: %v", err)
	}
	for _, k := range []string{"etcd_endpoints", "controller", "token", "operator_token", "cname_suffix",
		"scheduler_grpc", "scheduler_dns", "nodes", "origin_http", "origin_https", "demo_domain",
		"demo_origin_names", "demo_cname", "demo_ca_files", "demo_client_subnets"} {
		v, ok := m[k]
		if !ok {
			t.Errorf("endpoints.json lacks %q", k)
			continue
		}
		switch v := v.(type) {
		case string:
			if v == "" {
				t.Errorf("endpoints.json: %q is empty", k)
			}
		case []any:
			if len(v) == 0 {
				t.Errorf("endpoints.json: %q is empty", k)
			}
		case map[string]any:
			if len(v) == 0 {
				t.Errorf("endpoints.json: %q is empty", k)
			}
		default:
			t.Errorf("endpoints.json: %q is %T", k, v)
		}
	}
	if _, ok := m["node_token"]; ok {
		t.Error("endpoints.json holds the node token")
	}
	var got Endpoints
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Token != ep.Token || got.Controller != ep.Controller || got.DemoDomain != DemoDomain {
		t.Errorf("endpoints.json = %+v, want %+v", got, ep)
	}
	if len(got.Nodes) != 3 {
		t.Fatalf("nodes = %+v, want 3", got.Nodes)
	}
	for i, n := range got.Nodes {
		host, _, err := net.SplitHostPort(n.HTTP)
		if err != nil || host != DefaultNodeIPs[i] || n.Name != nodePlan[i].name || n.Region != nodePlan[i].region {
			t.Errorf("node %d = %+v", i, n)
		}
	}
	for _, f := range got.DemoCAFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseCertPEM(pem); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.HasSuffix(got.DemoCNAME, "."+got.CNAMESuffix) {
		t.Errorf("demo CNAME %q is not under %q", got.DemoCNAME, got.CNAMESuffix)
	}
}

func checkDemoDomain(t *testing.T, ep Endpoints) {
	t.Helper()
	conn, err := dial(ep.Controller, ep.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := outpostv1.NewDomainServiceClient(conn).GetDomain(ctx, &outpostv1.GetDomainRequest{Name: DemoDomain})
	if err != nil {
		t.Fatalf("GetDomain: %v", err)
	}
	d := resp.GetDomain()
	if d.GetAccount() != DemoAccount || d.GetCname() != ep.DemoCNAME {
		t.Errorf("domain account %q cname %q", d.GetAccount(), d.GetCname())
	}
	// The origin is the demo origin's HTTPS address, also after a restart
	// on other ports.
	if o := d.GetOrigins(); len(o) != 1 || o[0].GetType() != outpostv1.OriginType_ORIGIN_TYPE_IP ||
		net.JoinHostPort(o[0].GetAddress(), fmt.Sprint(o[0].GetPort())) != ep.OriginHTTPS {
		t.Errorf("origins = %v, want %s", o, ep.OriginHTTPS)
	}
	if p := d.GetOriginSettings().GetProtocolPolicy(); p != outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTPS {
		t.Errorf("origin protocol = %v, want HTTPS", p)
	}
	settings := d.GetOriginSettings()
	if !settings.GetSni().GetEnabled() || settings.GetSni().GetValue() != OriginNameA {
		t.Errorf("origin SNI = %v, want %s", settings.GetSni(), OriginNameA)
	}
	if settings.GetHostHeader() != OriginNameA {
		t.Errorf("origin Host = %q, want %s", settings.GetHostHeader(), OriginNameA)
	}
	ca, err := readFile(ep.OriginCAFile)
	if err != nil {
		t.Fatal(err)
	}
	if settings.GetTrustedCaPem() != ca {
		t.Errorf("origin trusted CA is not the demo origin's CA")
	}
	if !d.GetHttps().GetEnabled() || !d.GetHttps().GetCertificateOwned() {
		t.Errorf("https = %v, want enabled with its own certificate", d.GetHttps())
	}
	// The certificate file for curl is the one the controller serves.
	h, err := outpostv1.NewHttpsServiceClient(conn).GetHttpsSettings(ctx, &outpostv1.GetHttpsSettingsRequest{Domain: DemoDomain})
	if err != nil {
		t.Fatal(err)
	}
	certFile, err := readFile(ep.DemoCertFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(h.GetCertificate().GetCertificatePem()) != strings.TrimSpace(certFile) {
		t.Errorf("%s is not the demo domain's certificate", ep.DemoCertFile)
	}
	cert, err := parseCertPEM([]byte(certFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: DemoDomain, Roots: pool}); err != nil {
		t.Errorf("the demo certificate does not verify against itself: %v", err)
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// originClient talks HTTPS to the demo origin's one address, sending name
// as SNI and verifying against the demo origin's CA.
func originClient(t *testing.T, ep Endpoints, name string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(ep.OriginCAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA in", ep.OriginCAFile)
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, ep.OriginHTTPS)
			},
			TLSClientConfig:   &tls.Config{ServerName: name, RootCAs: pool},
			DisableKeepAlives: true,
		},
	}
}

func get(t *testing.T, client *http.Client, url string) (string, *http.Response) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b), resp
}

func checkOrigin(t *testing.T, ep Endpoints) {
	t.Helper()
	bodies := map[string]string{}
	for _, tc := range []struct{ name, whoami string }{
		{OriginNameA, "origin vhost a\n"},
		{OriginNameB, "origin vhost b\n"},
	} {
		client := originClient(t, ep, tc.name)
		body, resp := get(t, client, "https://"+tc.name+"/whoami.txt")
		if body != tc.whoami {
			t.Errorf("%s /whoami.txt = %q, want %q", tc.name, body, tc.whoami)
		}
		if got := resp.TLS.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != tc.name {
			t.Errorf("%s served a certificate for %v", tc.name, got)
		}
		page, _ := get(t, client, "https://"+tc.name+"/")
		if !strings.Contains(page, tc.name) {
			t.Errorf("%s / does not name the vhost: %q", tc.name, page)
		}
		blob, _ := get(t, client, "https://"+tc.name+"/1k.bin")
		if len(blob) != 1024 {
			t.Errorf("%s /1k.bin is %d bytes", tc.name, len(blob))
		}
		bodies[tc.name] = blob
	}
	if bodies[OriginNameA] == bodies[OriginNameB] {
		t.Error("both vhosts serve the same /1k.bin")
	}

	// No SNI, or an unknown one: the handshake is refused.
	for _, sni := range []string{"", "c.origin.test"} {
		raw, err := net.DialTimeout("tcp", ep.OriginHTTPS, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn := tls.Client(raw, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := conn.Handshake(); err == nil {
			t.Errorf("handshake with SNI %q succeeded, want refused", sni)
		}
		conn.Close()
	}

	// Plain HTTP serves vhost a.
	body, _ := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+ep.OriginHTTP+"/whoami.txt")
	if body != "origin vhost a\n" {
		t.Errorf("HTTP /whoami.txt = %q", body)
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if port+offOriginHTTPS > 65535 {
		t.Skip("no room above the free port")
	}
	cfg := testConfig(t, t.TempDir())
	cfg.BasePort = port // the controller's port is taken
	_, err = Start(context.Background(), cfg)
	if err == nil {
		t.Fatal("Start succeeded on a taken port")
	}
	for _, want := range []string{fmt.Sprintf("port %d", port), "controller", "--base-port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"base port too high", Config{BasePort: 65500}, "--base-port"},
		{"two node IPs", Config{NodeIPs: []string{"127.0.1.1", "127.0.1.2"}}, "--node-ips"},
		{"bad node IP", Config{NodeIPs: []string{"127.0.1.1", "127.0.1.2", "nope"}}, "not an IP"},
		{"same node ports", Config{NodeHTTPPort: 8080, NodeHTTPSPort: 8080}, "must differ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Dir = t.TempDir()
			_, err := Start(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start = %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func TestPrintTry(t *testing.T) {
	ep := Endpoints{
		Dir: "/x", EtcdEndpoints: []string{"http://127.0.0.1:7379"}, Controller: "127.0.0.1:7000", Token: "opt_demo",
		CNAMESuffix: "cdn.outpost.test", SchedulerGRPC: "127.0.0.1:7100", SchedulerDNS: "127.0.0.1:7053",
		Nodes: []NodeEndpoint{
			{Name: "edge-1", Region: "east", HTTP: "127.0.1.1:8080", HTTPS: "127.0.1.1:8443"},
			{Name: "edge-2", Region: "east", HTTP: "127.0.1.2:8080", HTTPS: "127.0.1.2:8443"},
		},
		OriginHTTP: "127.0.0.1:7080", OriginHTTPS: "127.0.0.1:7443", DemoDomain: DemoDomain,
		DemoOriginNames: originNames, DemoCNAME: "abc.cdn.outpost.test", DemoCertFile: "/x/demo/www.demo.test.crt",
		OriginCAFile: "/x/origin/ca.crt", DemoClientSubnets: map[string]string{"east": "198.51.100.0/24", "west": "203.0.113.0/24"},
	}
	var b strings.Builder
	printTry(&b, ep, "/x/endpoints.json")
	for _, want := range []string{
		"export OUTPOST_CONTROLLER=127.0.0.1:7000",
		"export OUTPOST_TOKEN=opt_demo",
		"bin/outpostctl domain list",
		"bin/outpostctl domain get www.demo.test -o json",
		"bin/outpostctl node list",
		"bin/outpostctl origin sni www.demo.test --value b.origin.test",
		"curl --resolve www.demo.test:8443:127.0.1.1 --cacert /x/demo/www.demo.test.crt https://www.demo.test:8443/whoami.txt",
		"curl -H 'Host: www.demo.test' http://127.0.1.2:8080/whoami.txt",
		"dig @127.0.0.1 -p 7053 abc.cdn.outpost.test A +subnet=198.51.100.0/24   # a client in the east",
		"dig @127.0.0.1 -p 7053 abc.cdn.outpost.test A +subnet=203.0.113.0/24   # a client in the west",
		"bin/outpostctl resolve www.demo.test --client-ip 198.51.100.7 --scheduler 127.0.0.1:7100",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}

// checkScheduler asks the scheduler's DNS, as dig +subnet does, for the
// demo CNAME on behalf of a client in each dev region: the first answer is
// a node of that region.
func checkScheduler(t *testing.T, ep Endpoints) {
	if len(ep.DemoClientSubnets) != len(demoRegions) {
		t.Fatalf("demo_client_subnets: %v", ep.DemoClientSubnets)
	}
	regionOf := map[string]string{}
	for _, n := range ep.Nodes {
		host, _, _ := net.SplitHostPort(n.HTTP)
		regionOf[host] = n.Region
	}
	for region, subnet := range ep.DemoClientSubnets {
		_, ipnet, err := net.ParseCIDR(subnet)
		if err != nil {
			t.Fatal(err)
		}
		ones, _ := ipnet.Mask.Size()
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(ep.DemoCNAME), dns.TypeA)
		o := q.SetEdns0(1232, false).IsEdns0()
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ones), Address: ipnet.IP})
		c := &dns.Client{Timeout: 2 * time.Second}
		// The nodes join the scheduler's gossip once they have their first
		// config; give them the rejoin interval.
		deadline := time.Now().Add(30 * time.Second)
		for {
			r, _, err := c.Exchange(q, ep.SchedulerDNS)
			if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
				a, ok := r.Answer[0].(*dns.A)
				if ok && regionOf[a.A.String()] == region {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("a client in %s (%s): %v %v", region, subnet, r, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
