package node_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/internal/testorigin"
	"github.com/outpost-cdn/outpost/node"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// edge is a controller, one edge node and a real nginx origin.
type edge struct {
	env        *controllertest.Env
	c          *controllertest.Clients
	node       *node.Node
	origin     *testorigin.Origin
	adminToken string
	nodeToken  string // the join token of node (edge-1), which keeps its certificate in nodeDir
	nodeDir    string
}

func newEdge(t testing.TB) *edge {
	t.Helper()
	o := testorigin.Start(t)
	env := controllertest.Start(t, func(c *controller.Config) {
		c.OriginPorts = []uint32{80, 443, o.HTTPPort, o.HTTPSPort, 1}
	})
	admin, _ := env.NewAccount(t, "acme")
	e := &edge{env: env, c: env.Clients(t, admin), origin: o, adminToken: admin, nodeToken: env.JoinToken(t), nodeDir: t.TempDir()}
	e.node = startNode(t, env, e.nodeToken, nodeOpts{dataDir: e.nodeDir})
	return e
}

// addDomain creates a domain whose origin is the nginx HTTPS vhost chosen
// by SNI value sni, and waits until the node applied it.
func (e *edge) addDomain(t testing.TB, name, sni string) {
	t.Helper()
	e.addDomainNoSync(t, name)
	if sni != "" {
		e.setSNI(t, name, sni)
	}
	e.sync(t)
}

func (e *edge) addDomainNoSync(t testing.TB, name string) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := e.c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: name, Origins: []*outpostv1.Origin{ipOrigin(e.origin.IP, e.origin.HTTPSPort)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Origins.SetOriginProtocol(ctx, &outpostv1.SetOriginProtocolRequest{Domain: name, Policy: outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTPS}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Origins.SetOriginVerify(ctx, &outpostv1.SetOriginVerifyRequest{Domain: name, TrustedCaPem: e.origin.CAPEM()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: name, Enabled: true, Value: "a.origin.test"}); err != nil {
		t.Fatal(err)
	}
}

func (e *edge) setSNI(t testing.TB, name, sni string) {
	t.Helper()
	if _, err := e.c.Origins.SetOriginSni(ctxT(t), &outpostv1.SetOriginSniRequest{Domain: name, Enabled: sni != "", Value: sni}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
}

// sync waits until the node applied everything written so far.
func (e *edge) sync(t testing.TB) {
	t.Helper()
	// The newest config change is the highest ModRevision under the config
	// prefix (the tests here delete nothing without also writing a domain).
	kvs, _, err := e.env.Controller.Store().Range(ctxT(t), store.ConfigPrefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, kv := range kvs {
		want = max(want, kv.ModRevision)
	}
	eventually(t, fmt.Sprintf("node to reach revision %d", want), func() bool { return e.node.Revision() >= want })
}

// get sends a plain HTTP request through the edge.
func (e *edge) get(t testing.TB, method, host, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.node.HTTPAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 20 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestOriginSNIChoosesTheOriginCertificateAndContent(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	resp, body := e.get(t, "GET", "www.example.com", "/whoami.txt")
	if resp.StatusCode != 200 || body != "origin vhost a\n" {
		t.Fatalf("with SNI a: %d %q", resp.StatusCode, body)
	}
	e.setSNI(t, "www.example.com", "b.origin.test")
	if _, body := e.get(t, "GET", "www.example.com", "/whoami.txt"); body != "origin vhost b\n" {
		t.Fatalf("with SNI b: %q", body)
	}
	// Without origin SNI an IP origin gets no server name: nginx refuses the
	// handshake and the edge answers 502, without internal details.
	e.setSNI(t, "www.example.com", "")
	resp, body = e.get(t, "GET", "www.example.com", "/whoami.txt")
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, "tls") || strings.Contains(body, e.origin.IP) {
		t.Fatalf("without SNI: %d %q", resp.StatusCode, body)
	}
	// The SNI the origin saw, per request.
	var snis []string
	for _, l := range e.origin.Requests(t) {
		snis = append(snis, strings.Fields(l)[0])
	}
	if strings.Join(snis, ",") != "a.origin.test,b.origin.test" {
		t.Fatalf("origin saw SNIs %v", snis)
	}
}

func TestTwoDomainsOnOneOriginNeverShareAConnection(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "a.example.com", "a.origin.test")
	e.addDomain(t, "b.example.com", "b.origin.test")
	for i := 0; i < 5; i++ {
		for _, tc := range []struct{ host, want string }{{"a.example.com", "origin vhost a\n"}, {"b.example.com", "origin vhost b\n"}} {
			if _, body := e.get(t, "GET", tc.host, "/whoami.txt"); body != tc.want {
				t.Fatalf("%s round %d: %q", tc.host, i, body)
			}
		}
	}
}

func TestOriginHeaders(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	req, _ := http.NewRequest("GET", "http://"+e.node.HTTPAddr()+"/echo", nil)
	req.Host = "www.example.com"
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Connection", "keep-alive, X-Secret")
	req.Header.Set("X-Secret", "hop")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := string(b)
	if !strings.Contains(got, "host=www.example.com ") || !strings.Contains(got, "sni=a.origin.test") {
		t.Fatalf("origin saw %q", got)
	}
	if !strings.Contains(got, "xff=127.0.0.1 ") || strings.Contains(got, "6.6.6.6") {
		t.Fatalf("X-Forwarded-For not set from the connection: %q", got)
	}
	if !strings.Contains(got, "via=1.1 edge-1 (outpost)") || !strings.Contains(resp.Header.Get("Via"), "edge-1") {
		t.Fatalf("Via missing: %q / %q", got, resp.Header.Get("Via"))
	}

	// Host override.
	if _, err := e.c.Origins.SetOriginHost(ctxT(t), &outpostv1.SetOriginHostRequest{Domain: "www.example.com", HostHeader: "a.origin.test"}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	if _, body := e.get(t, "GET", "www.example.com", "/echo"); !strings.Contains(body, "host=a.origin.test ") {
		t.Fatalf("host override: %q", body)
	}
}

func TestUnknownHostIs404WithoutOriginTraffic(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	before := len(e.origin.Requests(t))
	resp, _ := e.get(t, "GET", "nope.example.com", "/whoami.txt")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown host: %d", resp.StatusCode)
	}
	if after := len(e.origin.Requests(t)); after != before {
		t.Fatalf("origin saw %d requests for an unknown host", after-before)
	}
}

func TestFailoverToBackupOrigin(t *testing.T) {
	e := newEdge(t)
	ctx := ctxT(t)
	dead := &outpostv1.Origin{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "127.0.0.1", Port: 1}
	backup := &outpostv1.Origin{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: e.origin.IP, Port: e.origin.HTTPPort, Priority: outpostv1.OriginPriority_ORIGIN_PRIORITY_BACKUP}
	if _, err := e.c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{dead, backup}}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	resp, body := e.get(t, "GET", "www.example.com", "/whoami.txt")
	if resp.StatusCode != 200 || body != "origin vhost a\n" {
		t.Fatalf("failover: %d %q", resp.StatusCode, body)
	}
	// With only the dead origin: 502.
	if _, err := e.c.Origins.SetOrigins(ctx, &outpostv1.SetOriginsRequest{Domain: "www.example.com", Origins: []*outpostv1.Origin{dead}}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	if resp, _ := e.get(t, "GET", "www.example.com", "/whoami.txt"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("dead origin: %d", resp.StatusCode)
	}
}

// tlsDial handshakes with the edge's HTTPS port.
func tlsDial(e *edge, sni string, roots *x509.CertPool, mod func(*tls.Config)) (*tls.Conn, error) {
	cfg := &tls.Config{ServerName: sni, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}}
	if sni == "" {
		cfg.InsecureSkipVerify = true
	}
	if mod != nil {
		mod(cfg)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", e.node.HTTPSAddr(), cfg)
}

func TestHTTPSTermination(t *testing.T) {
	e := newEdge(t)
	ctx := ctxT(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	e.addDomain(t, "*.img.example.com", "b.origin.test")
	e.addDomain(t, "plain.example.com", "a.origin.test")
	ca := certstest.NewCA(t, "edge CA")
	ec := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}, Issuer: ca})
	rsa := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.img.example.com"}, Issuer: ca, KeyType: outpostv1.KeyType_KEY_TYPE_RSA_2048})
	enable := func(domain string, p *certstest.Pair) {
		t.Helper()
		if _, err := e.c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: domain, Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
			CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)}}}); err != nil {
			t.Fatal(err)
		}
	}
	enable("www.example.com", ec)
	enable("*.img.example.com", rsa)
	e.sync(t)
	roots := ca.Pool()

	// Exact name, ECDSA, HTTP/2 by ALPN.
	conn, err := tlsDial(e, "www.example.com", roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := conn.ConnectionState()
	if st.NegotiatedProtocol != "h2" || !st.PeerCertificates[0].Equal(ec.Cert) {
		t.Fatalf("www: proto %q, cert %v", st.NegotiatedProtocol, st.PeerCertificates[0].Subject)
	}
	conn.Close()
	// Wildcard, RSA, HTTP/1.1.
	conn, err = tlsDial(e, "a.img.example.com", roots, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	if err != nil {
		t.Fatal(err)
	}
	if st := conn.ConnectionState(); st.NegotiatedProtocol != "http/1.1" || !st.PeerCertificates[0].Equal(rsa.Cert) {
		t.Fatalf("wildcard: %v", st.PeerCertificates[0].DNSNames)
	}
	conn.Close()
	// Refusals: no SNI, unknown SNI, a domain without HTTPS, two labels
	// under a wildcard (each with the alert unrecognized_name, RFC 6066
	// section 3, as nginx's ssl_reject_handshake sends), TLS 1.1.
	for _, tc := range []struct {
		sni   string
		mod   func(*tls.Config)
		alert string
	}{
		{"", nil, "unrecognized name"}, {"unknown.example.com", nil, "unrecognized name"},
		{"plain.example.com", nil, "unrecognized name"}, {"x.y.img.example.com", nil, "unrecognized name"},
		{"www.example.com", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }, "protocol version not supported"},
	} {
		conn, err := tlsDial(e, tc.sni, roots, tc.mod)
		if err == nil {
			conn.Close()
			t.Fatalf("handshake with SNI %q succeeded", tc.sni)
		}
		if want := "remote error: tls: " + tc.alert; !strings.Contains(err.Error(), want) {
			t.Errorf("handshake with SNI %q: %v, want %q", tc.sni, err, want)
		}
	}

	// HTTPS requests reach the origin; a Host that is not the SNI's domain gets 421.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	url := "https://" + e.node.HTTPSAddr()
	req, _ := http.NewRequest("GET", url+"/whoami.txt", nil)
	req.Host = "www.example.com"
	tr.TLSClientConfig.ServerName = "www.example.com"
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "origin vhost a\n" || resp.ProtoMajor != 2 {
		t.Fatalf("https get: %d %q proto %d", resp.StatusCode, b, resp.ProtoMajor)
	}
	req, _ = http.NewRequest("GET", url+"/whoami.txt", nil)
	req.Host = "a.img.example.com"
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("host/SNI mismatch: %d", resp.StatusCode)
	}

	// A replaced certificate takes effect for new handshakes while an open
	// connection keeps working.
	open, err := tlsDial(e, "www.example.com", roots, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	renewed := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}, Issuer: ca})
	enable("www.example.com", renewed)
	e.sync(t)
	conn, err = tlsDial(e, "www.example.com", roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !conn.ConnectionState().PeerCertificates[0].Equal(renewed.Cert) {
		t.Fatal("new handshake still gets the old certificate")
	}
	conn.Close()
	fmt.Fprintf(open, "GET /whoami.txt HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(open), nil)
	if err != nil {
		t.Fatalf("open connection dropped by the certificate change: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("open connection: %d", resp.StatusCode)
	}

	// Disabling HTTPS refuses the domain's handshakes.
	if _, err := e.c.HTTPS.DisableHttps(ctx, &outpostv1.DisableHttpsRequest{Domain: "www.example.com"}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	if conn, err := tlsDial(e, "www.example.com", roots, nil); err == nil {
		conn.Close()
		t.Fatal("handshake succeeded after HTTPS was disabled")
	}
}

func TestForcedRedirects(t *testing.T) {
	e := newEdge(t)
	ctx := ctxT(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	p := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}})
	if _, err := e.c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: "www.example.com", Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.HTTPS.SetHttpsRedirect(ctx, &outpostv1.SetHttpsRedirectRequest{Domain: "www.example.com", Redirect: outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	_, port, _ := net.SplitHostPort(e.node.HTTPSAddr())
	for _, tc := range []struct {
		method string
		code   int
	}{{"GET", 301}, {"HEAD", 301}, {"POST", 308}, {"DELETE", 308}} {
		resp, _ := e.get(t, tc.method, "www.example.com", "/a/b.txt?x=1&y=2")
		want := "https://www.example.com:" + port + "/a/b.txt?x=1&y=2"
		if resp.StatusCode != tc.code || resp.Header.Get("Location") != want {
			t.Fatalf("%s: %d %q, want %d %q", tc.method, resp.StatusCode, resp.Header.Get("Location"), tc.code, want)
		}
	}
}

// TestRequestSmuggling sends framing that two parsers could read
// differently: each gets 400 and the connection is closed.
func TestRequestSmuggling(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	before := len(e.origin.Requests(t))
	cases := []string{
		"POST /echo HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
		"POST /echo HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
		"GET /echo HTTP/1.1\r\nHost: www.example.com\r\nX-A: 1\r\n folded\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"GET /echo HTTP/1.1\r\nHost: www.example.com\r\nHost: evil.example.com\r\n\r\n",
		"GET http://evil.example.com/echo HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
		"GET /echo HTTP/1.1\r\nHost: www.example.com\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n",
	}
	// A legitimate request first on the same connection: the smuggled one
	// after it is judged on its own bytes.
	legit := "GET /whoami.txt HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
	p := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}})
	if _, err := e.c.HTTPS.EnableHttps(ctxT(t), &outpostv1.EnableHttpsRequest{Domain: "www.example.com", Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(p.CertPEM), PrivateKeyPem: string(p.KeyPEM)}}}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	before = len(e.origin.Requests(t))
	type dialer func() (net.Conn, error)
	plain := func() (net.Conn, error) { return net.Dial("tcp", e.node.HTTPAddr()) }
	overTLS := func() (net.Conn, error) {
		return tls.Dial("tcp", e.node.HTTPSAddr(), &tls.Config{ServerName: "www.example.com", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	}
	for _, dial := range []dialer{plain, overTLS} {
		for _, raw := range cases {
			conn, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprint(conn, legit)
			first, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, first.Body)
			first.Body.Close()
			if first.StatusCode != 200 {
				t.Fatalf("legit request: %d", first.StatusCode)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprint(conn, raw)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%q: %v", raw[:40], err)
			}
			if resp.StatusCode != 400 && resp.StatusCode != 431 && resp.StatusCode != 501 {
				t.Fatalf("%q: status %d", raw[:40], resp.StatusCode)
			}
			// The connection is closed after the error.
			buf := make([]byte, 1)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n, err := br.Read(buf); err == nil {
				rest, _ := br.Peek(br.Buffered())
				t.Fatalf("%q: status %d, connection left open: %q", raw[:40], resp.StatusCode, string(buf[:n])+string(rest))
			}
			conn.Close()
		}
	}
	// Only the legitimate requests reached the origin.
	if after := len(e.origin.Requests(t)); after != before+2*len(cases) {
		t.Fatalf("origin saw %d requests, want %d (the legitimate ones)", after-before, 2*len(cases))
	}
}

// TestPipelinedRequests checks that the framing check follows bodies
// (sized and chunked) and stays in step with the server across requests
// sent back to back on one connection.
func TestPipelinedRequests(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	conn, err := net.Dial("tcp", e.node.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The chunked body holds text that looks like a smuggled request.
	inner := "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n"
	fmt.Fprintf(conn, "POST /whoami.txt HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 11\r\n\r\nhello world"+
		"POST /whoami.txt HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n"+
		"GET /whoami.txt HTTP/1.1\r\nHost: www.example.com\r\n\r\n", len(inner), inner)
	br := bufio.NewReader(conn)
	for i := 0; i < 3; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// nginx answers 405 to POST on a static file; what matters is that
		// no request was refused as smuggled.
		if resp.StatusCode == http.StatusBadRequest {
			t.Fatalf("response %d refused: %q", i, b)
		}
		if i == 2 && string(b) != "origin vhost a\n" {
			t.Fatalf("third response %d %q", resp.StatusCode, b)
		}
	}
}

func TestMetrics(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	e.get(t, "GET", "www.example.com", "/whoami.txt")
	e.get(t, "GET", "www.example.com", "/missing")
	e.get(t, "GET", "nope.example.com", "/")
	if conn, err := tlsDial(e, "", nil, nil); err == nil {
		conn.Close()
	}
	resp, err := http.Get("http://" + e.node.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`outpost_edge_requests_total{code="2xx",domain="www.example.com",scheme="http"} 1`,
		`outpost_edge_requests_total{code="4xx",domain="www.example.com",scheme="http"} 1`,
		`outpost_edge_requests_total{code="4xx",domain="_unknown",scheme="http"} 1`,
		`outpost_edge_tls_handshakes_total{result="no_sni"} 1`,
		`outpost_edge_origin_response_seconds_count{domain="www.example.com"} 2`,
		fmt.Sprintf("outpost_edge_config_revision %d", e.node.Revision()),
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestCNAMEHostServedAsDomain: the scheduler's HTTP mode sends clients to
// "<node>.<cname>"; the edge serves that as the accelerated domain.
func TestCNAMEHostServedAsDomain(t *testing.T) {
	e := newEdge(t)
	e.addDomain(t, "www.example.com", "a.origin.test")
	g, err := e.c.Domains.GetDomain(ctxT(t), &outpostv1.GetDomainRequest{Name: "www.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	cname := g.GetDomain().GetCname()
	for _, host := range []string{"edge-1." + cname, cname} {
		resp, body := e.get(t, "GET", host, "/echo")
		if resp.StatusCode != 200 || !strings.Contains(body, "host=www.example.com ") {
			t.Fatalf("Host %s: %d %q", host, resp.StatusCode, body)
		}
	}
	if resp, _ := e.get(t, "GET", "edge-1.other.cdn.outpost.test", "/echo"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown CNAME: %d", resp.StatusCode)
	}
}
