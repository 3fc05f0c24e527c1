package devcluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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
	var freeFingerprint string
	t.Run("free certificate", func(t *testing.T) { freeFingerprint = checkFreeCertificate(t, ep) })
	t.Run("secrets are private", func(t *testing.T) {
		for _, f := range []string{operatorTokenFile, demoTokenFile, "origin/a.origin.test.key", "origin/b.origin.test.key",
			"nodes/edge-1/member.key", "scheduler/member.key"} {
			st, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
			}
		}
		// The demo domain's private key went to the controller only; the
		// only other keys are the members' own.
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.Contains(path, string(filepath.Separator)+"origin"+string(filepath.Separator)) {
				return err
			}
			if strings.HasPrefix(path, filepath.Join(dir, "controller")) || strings.HasPrefix(path, filepath.Join(dir, "nodes")) {
				return nil
			}
			if path == filepath.Join(dir, "scheduler", "member.key") {
				return nil // the scheduler's own key (mode 0600, checked above)
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
	if freeFingerprint != "" {
		// The new Pebble has a new root; the certificate the first one
		// issued is still served, and still verifies with the roots file.
		if ep2.AcmeRootFile != ep.AcmeRootFile {
			t.Errorf("acme_root_file %q, was %q", ep2.AcmeRootFile, ep.AcmeRootFile)
		}
		roots := readRoots(t, ep2.AcmeRootFile)
		if len(roots) != 2 {
			t.Errorf("%s holds %d roots after a restart, want 2 (this start's and the first's)", ep2.AcmeRootFile, len(roots))
		}
		waitServedFree(t, ep2, freeFingerprint)
	}

	// A stored demo token that no longer works is replaced by a new one.
	revokeToken(t, ep2.Controller, ep2.CAFile, ep2.OperatorToken, ep2.Token)
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

func revokeToken(t *testing.T, addr, caFile, operator, secret string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dial(addr, caFile, secret)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	who, err := outpostv1.NewAccountServiceClient(conn).WhoAmI(ctx, &outpostv1.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	op, err := dial(addr, caFile, operator)
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
	for _, k := range []string{"etcd_endpoints", "controller", "token", "operator_token", "ca_file", "cname_suffix",
		"scheduler_grpc", "scheduler_dns", "nodes", "origin_http", "origin_https", "demo_domain",
		"demo_origin_names", "demo_cname", "demo_ca_files", "demo_client_subnets",
		"acme_directory", "acme_dns", "acme_root_file"} {
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
	if len(readRoots(t, got.AcmeRootFile)) == 0 {
		t.Errorf("%s holds no root", got.AcmeRootFile)
	}
	if !strings.HasPrefix(got.AcmeDirectory, "https://127.0.0.1:") {
		t.Errorf("acme_directory %q", got.AcmeDirectory)
	}
	if !strings.HasSuffix(got.DemoCNAME, "."+got.CNAMESuffix) {
		t.Errorf("demo CNAME %q is not under %q", got.DemoCNAME, got.CNAMESuffix)
	}
}

func checkDemoDomain(t *testing.T, ep Endpoints) {
	t.Helper()
	conn, err := dial(ep.Controller, ep.CAFile, ep.Token)
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
		// The load test's size classes: /100k.bin is the 1 KiB repeated.
		big, _ := get(t, client, "https://"+tc.name+"/100k.bin")
		if big != strings.Repeat(blob, 100) {
			t.Errorf("%s /100k.bin is %d bytes, not /1k.bin 100 times", tc.name, len(big))
		}
		if resp, err := client.Get("https://" + tc.name + "/0k.bin"); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s /0k.bin: %v %v, want 404", tc.name, resp, err)
		} else {
			resp.Body.Close()
		}
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
	if port+offMax > 65535 {
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

// TestACMEPortsInUse: the dev ACME CA's ports are checked before anything
// starts, with the flag that moves them. Every other address of the plan is
// a free port, so that only the taken one can fail.
func TestACMEPortsInUse(t *testing.T) {
	for _, tc := range []struct {
		what string
		addr func(*plan) *string
	}{
		{"ACME CA directory", func(p *plan) *string { return &p.acmeDir }},
		{"ACME CA DNS", func(p *plan) *string { return &p.acmeDNS }},
	} {
		t.Run(tc.what, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			cfg := Config{}
			if err := cfg.setDefaults(); err != nil {
				t.Fatal(err)
			}
			p := makePlan(&cfg)
			*tc.addr(p) = ln.Addr().String()
			err = p.check()
			if err == nil {
				t.Fatal("the check passed on a taken port")
			}
			port := ln.Addr().(*net.TCPAddr).Port
			for _, want := range []string{fmt.Sprintf("port %d", port), tc.what, "--base-port"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
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
		CAFile:     "/x/ca.crt",
		OriginHTTP: "127.0.0.1:7080", OriginHTTPS: "127.0.0.1:7443", DemoDomain: DemoDomain,
		DemoOriginNames: originNames, DemoCNAME: "abc.cdn.outpost.test", DemoCertFile: "/x/demo/www.demo.test.crt",
		OriginCAFile: "/x/origin/ca.crt", DemoClientSubnets: map[string]string{"east": "198.51.100.0/24", "west": "203.0.113.0/24"},
		AcmeDirectory: "https://127.0.0.1:7014/dir", AcmeDNS: "127.0.0.1:7015", AcmeRootFile: "/x/acme/pebble-root.pem",
	}
	var b strings.Builder
	printTry(&b, ep, "/x/endpoints.json")
	for _, want := range []string{
		"export OUTPOST_CONTROLLER=127.0.0.1:7000",
		"export OUTPOST_TLS_CA=/x/ca.crt",
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
		"ACME CA      https://127.0.0.1:7014/dir  (Pebble; DNS 127.0.0.1:7015; roots /x/acme/pebble-root.pem)",
		"bin/outpostctl domain add free.demo.test --origin ip:127.0.0.1:7080",
		"bin/outpostctl origin protocol free.demo.test --policy http",
		"bin/outpostctl https enable free.demo.test --free",
		"bin/outpostctl https get free.demo.test",
		"bin/outpostctl cert info free.demo.test",
		"curl --resolve free.demo.test:8443:127.0.1.1 --cacert /x/acme/pebble-root.pem https://free.demo.test:8443/whoami.txt",
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

// freeWait bounds each wait of the free certificate checks.
const freeWait = 30 * time.Second

// checkFreeCertificate does what the printed tour suggests: it adds
// FreeDemoDomain with the demo origin's HTTP address as its origin (over
// HTTP whatever the client's scheme) and asks
// for a free certificate, which Pebble issues after validating HTTP-01 on
// edge-1. Every edge node then serves it over TLS, chained to the root in
// acme_root_file. It returns the certificate's SHA-256 fingerprint.
func checkFreeCertificate(t *testing.T, ep Endpoints) string {
	t.Helper()
	conn, err := dial(ep.Controller, ep.CAFile, ep.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*freeWait)
	defer cancel()
	host, portText, _ := net.SplitHostPort(ep.OriginHTTP)
	port, _ := strconv.Atoi(portText)
	domains := outpostv1.NewDomainServiceClient(conn)
	if _, err := domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: FreeDemoDomain, Origins: []*outpostv1.Origin{
		{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: host, Port: uint32(port)},
	}}); err != nil {
		t.Fatalf("CreateDomain: %v", err)
	}
	// The demo origin's HTTP port speaks HTTP only, also to HTTPS clients.
	if _, err := outpostv1.NewOriginServiceClient(conn).SetOriginProtocol(ctx, &outpostv1.SetOriginProtocolRequest{
		Domain: FreeDemoDomain, Policy: outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTP,
	}); err != nil {
		t.Fatalf("SetOriginProtocol: %v", err)
	}
	https := outpostv1.NewHttpsServiceClient(conn)
	resp, err := https.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: FreeDemoDomain, Source: &outpostv1.EnableHttpsRequest_Free{Free: true}})
	if err != nil {
		t.Fatalf("EnableHttps free: %v", err)
	}
	if s := resp.GetHttps().GetFree().GetStatus(); s != outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING {
		t.Fatalf("EnableHttps free: status %v, want APPLYING", s)
	}

	var settings *outpostv1.GetHttpsSettingsResponse
	deadline := time.Now().Add(freeWait)
	for {
		settings, err = https.GetHttpsSettings(ctx, &outpostv1.GetHttpsSettingsRequest{Domain: FreeDemoDomain})
		if err == nil && settings.GetHttps().GetFree().GetStatus() == outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_ISSUED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no free certificate issued within %v; last seen: %v %v", freeWait, settings.GetHttps(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cert := settings.GetCertificate()
	if !settings.GetHttps().GetEnabled() || cert.GetSource() != outpostv1.CertificateSource_CERTIFICATE_SOURCE_ACME ||
		len(cert.GetDnsNames()) != 1 || cert.GetDnsNames()[0] != FreeDemoDomain {
		t.Fatalf("after issuance: https %v, certificate %v; want HTTPS on with an ACME certificate for %s", settings.GetHttps(), cert, FreeDemoDomain)
	}
	waitServedFree(t, ep, cert.GetFingerprintSha256())

	// A request over HTTPS to edge-1, verified as curl --cacert would,
	// reaches the demo origin.
	pool := x509.NewCertPool()
	for _, r := range readRoots(t, ep.AcmeRootFile) {
		pool.AddCert(r)
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, ep.Nodes[0].HTTPS)
			},
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			DisableKeepAlives: true,
		},
	}
	if body, _ := get(t, client, "https://"+FreeDemoDomain+"/whoami.txt"); body != "origin vhost a\n" {
		t.Errorf("https://%s/whoami.txt through edge-1 = %q", FreeDemoDomain, body)
	}
	return cert.GetFingerprintSha256()
}

// waitServedFree waits until every edge node presents the certificate with
// the given fingerprint for FreeDemoDomain in a handshake that verifies
// against acme_root_file.
func waitServedFree(t *testing.T, ep Endpoints, fingerprint string) {
	t.Helper()
	pool := x509.NewCertPool()
	for _, r := range readRoots(t, ep.AcmeRootFile) {
		pool.AddCert(r)
	}
	for _, n := range ep.Nodes {
		deadline := time.Now().Add(freeWait)
		for {
			var last string
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.HTTPS, &tls.Config{ServerName: FreeDemoDomain, RootCAs: pool})
			if err == nil {
				leaf := conn.ConnectionState().PeerCertificates[0]
				conn.Close()
				sum := sha256.Sum256(leaf.Raw)
				if hex.EncodeToString(sum[:]) == fingerprint {
					break
				}
				last = "serial " + leaf.SerialNumber.String()
			} else {
				last = err.Error()
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not serve the free certificate of %s within %v, verified against %s; last: %s", n.Name, FreeDemoDomain, freeWait, ep.AcmeRootFile, last)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// readRoots returns the certificates of a PEM file.
func readRoots(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return certs
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		certs = append(certs, c)
	}
}

func TestWriteAcmeRoots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acme", "roots.pem")
	root := func(i int) []byte {
		leaf, err := issueLeaf(fmt.Sprintf("root%d.test", i), nil, nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return leaf.certPEM
	}
	var all [][]byte
	for i := range maxAcmeRoots + 2 {
		all = append(all, root(i))
		if err := writeAcmeRoots(path, all[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Again with the newest: not listed twice.
	if err := writeAcmeRoots(path, all[len(all)-1]); err != nil {
		t.Fatal(err)
	}
	got := readRoots(t, path)
	if len(got) != maxAcmeRoots {
		t.Fatalf("%d roots kept, want %d", len(got), maxAcmeRoots)
	}
	for i, c := range got {
		want := fmt.Sprintf("root%d.test", len(all)-1-i)
		if c.Subject.CommonName != want {
			t.Errorf("root %d is %s, want %s (newest first)", i, c.Subject.CommonName, want)
		}
	}
}
