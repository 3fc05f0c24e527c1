package node_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/node"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// peerScript is the shared nginx peer (../shared/peers/nginx-edge.sh).
const peerScript = "../../shared/peers/nginx-edge.sh"

// peer is a running nginx peer (edge + origin).
type peer struct {
	dir                 string
	edgeHTTP, edgeHTTPS string
	originHTTPS         string
	originCert          []byte
	pids                func() []int // nginx's master and workers
}

// originRequests counts the requests that reached the peer's origin, from
// both edges (its access log).
func (p peer) originRequests(b *testing.B) int {
	b.Helper()
	data, err := os.ReadFile(filepath.Join(p.dir, "logs", "origin.log"))
	if err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}

// nginxPeer starts the shared nginx edge+origin on free ports and returns
// (edge HTTPS address, origin HTTPS address, origin cert PEM).
func nginxPeer(b *testing.B) (edge, origin string, originCert []byte) {
	p := startPeer(b)
	return p.edgeHTTPS, p.originHTTPS, p.originCert
}

// startPeer starts the shared nginx edge+origin on free ports.
func startPeer(b *testing.B) peer {
	b.Helper()
	script, err := filepath.Abs(peerScript)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		b.Skip("the nginx peer script is not beside the repository")
	}
	// nginx workers run as an unprivileged user: the directory must be
	// readable by them (t.TempDir is private to root).
	dir, err := os.MkdirTemp("", "outpost-nginx-peer-")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	ports := map[string]string{}
	for _, k := range []string{"EDGE_HTTP", "EDGE_HTTPS", "ORIGIN_HTTP", "ORIGIN_HTTPS"} {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		ports[k] = fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	cmd := exec.Command("bash", script, "start", dir)
	cmd.Env = append(os.Environ(), "ADDR=127.0.0.1", "WORKERS=2")
	for k, v := range ports {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("nginx peer: %v\n%s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("bash", script, "stop", dir).Run() })
	cert, err := os.ReadFile(filepath.Join(dir, "certs", "a.example.test.crt"))
	if err != nil {
		b.Fatal(err)
	}
	return peer{dir: dir, pids: func() []int { return nginxPids(filepath.Join(dir, "nginx.pid")) }, edgeHTTP: "127.0.0.1:" + ports["EDGE_HTTP"], edgeHTTPS: "127.0.0.1:" + ports["EDGE_HTTPS"],
		originHTTPS: "127.0.0.1:" + ports["ORIGIN_HTTPS"], originCert: cert}
}

// BenchmarkCacheHit compares cache hits over HTTPS keep-alive with nginx
// proxy_cache, on one machine in one run, in A B A B order. Reproduce:
//
//	go test -run '^$' -bench BenchmarkCacheHit -benchtime 3s -count 3 ./node
func BenchmarkCacheHit(b *testing.B) {
	h := hitSetup(b)
	type target struct {
		name  string
		addr  string
		roots *x509.CertPool
		pids  func() []int
	}
	targets := []target{{"outpost", h.edgeHTTPS, h.roots, h.edgePids}, {"nginx", h.peer.edgeHTTPS, h.peerRoots, h.peer.pids}}
	for _, size := range []string{"1k", "100k"} {
		for round := 0; round < 2; round++ { // A B A B
			for _, tg := range targets {
				b.Run(fmt.Sprintf("%s/%s/round%d", size, tg.name, round), func(b *testing.B) {
					benchHits(b, tg.addr, host, "/"+size+".bin", tg.roots, tg.pids)
				})
			}
		}
	}
}

// BenchmarkUncached compares requests that neither edge may cache (the
// origin answers /nostore/n.txt, 13 bytes, with Cache-Control: no-store)
// over HTTPS keep-alive: each one goes to the origin (nginx, over HTTPS
// with origin SNI and keep-alive, the same origin for both), A B A B. The
// client is wrk, as in BenchmarkCacheHit. server-cpu-µs/op is not
// comparable here: nginx's processes are the origin too. Reproduce:
//
//	go test -run '^$' -bench BenchmarkUncached -benchtime 3s ./node
func BenchmarkUncached(b *testing.B) {
	h := hitSetup(b)
	for round := range 2 {
		for _, tg := range []struct {
			name, addr string
			roots      *x509.CertPool
			pids       func() []int
		}{{"outpost", h.edgeHTTPS, h.roots, h.edgePids}, {"nginx", h.peer.edgeHTTPS, h.peerRoots, h.peer.pids}} {
			b.Run(fmt.Sprintf("%s/round%d", tg.name, round), func(b *testing.B) {
				benchHits(b, tg.addr, host, "/nostore/n.txt", tg.roots, tg.pids)
			})
		}
	}
}

// host is the accelerated name of the cache benchmarks, on both edges.
const host = "a.example.test"

// hitBench is the side-by-side set-up of the cache benchmarks: the nginx
// peer, and an Outpost edge process serving the same name (a.example.test)
// from the same origin, with the same origin SNI and a 10 minute rule for
// .bin files.
type hitBench struct {
	peer                peer
	env                 *controllertest.Env
	edgeHTTP, edgeHTTPS string
	roots, peerRoots    *x509.CertPool
	edgePids            func() []int // the edge process
}

func hitSetup(b *testing.B) *hitBench {
	p := startPeer(b)
	peerOrigin, originCert := p.originHTTPS, p.originCert
	_, originPort, _ := net.SplitHostPort(peerOrigin)
	var port uint32
	fmt.Sscan(originPort, &port)
	env := controllertest.Start(b, func(c *controller.Config) { c.OriginPorts = []uint32{80, 443, port} })
	admin, _ := env.NewAccount(b, "bench")
	c := env.Clients(b, admin)
	ctx := ctxT(b)
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: host, Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", port)}}); err != nil {
		b.Fatal(err)
	}
	for _, call := range []func() error{
		func() error {
			_, err := c.Origins.SetOriginProtocol(ctx, &outpostv1.SetOriginProtocolRequest{Domain: host, Policy: outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTPS})
			return err
		},
		func() error {
			_, err := c.Origins.SetOriginSni(ctx, &outpostv1.SetOriginSniRequest{Domain: host, Enabled: true, Value: host})
			return err
		},
		func() error {
			_, err := c.Origins.SetOriginVerify(ctx, &outpostv1.SetOriginVerifyRequest{Domain: host, TrustedCaPem: string(originCert)})
			return err
		},
		func() error {
			_, err := c.Cache.AddCacheRule(ctx, &outpostv1.AddCacheRuleRequest{Domain: host, Match: &outpostv1.AddCacheRuleRequest_Extension{Extension: "bin"}, Ttl: durationpb.New(10 * time.Minute)})
			return err
		},
	} {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	edgeCA := certstest.NewCA(b, "bench edge CA")
	pair := certstest.Issue(b, certstest.Options{DNSNames: []string{host}, Issuer: edgeCA})
	up, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: host, Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
		CertificatePem: string(pair.CertPEM), PrivateKeyPem: string(pair.KeyPEM)}}})
	if err != nil {
		b.Fatal(err)
	}
	_ = up
	roots := x509.NewCertPool()
	roots.AddCert(edgeCA.Cert)
	// The edge runs in a process of its own, as nginx does: in the test
	// process it would share the client's garbage collector and scheduler.
	edge := nodeProcess(b, env, env.JoinToken(b), host, roots)
	peerRoots := x509.NewCertPool()
	peerRoots.AppendCertsFromPEM(originCert) // the peer's edge serves the same self-signed certificate
	return &hitBench{peer: p, env: env, edgeHTTP: edge.httpAddr, edgeHTTPS: edge.httpsAddr, roots: roots, peerRoots: peerRoots,
		edgePids: func() []int { return []int{edge.cmd.Process.Pid} }}
}

// edgeProc is an outpost-node process a benchmark runs.
type edgeProc struct {
	httpAddr, httpsAddr string
	cmd                 *exec.Cmd
	logs                *syncBuffer
}

// startEdgeProcess builds outpost-node and runs it against the controller
// of env until the benchmark ends, on free loopback ports. With pprofAddr
// it also serves metrics and Go profiles there.
func startEdgeProcess(b *testing.B, env *controllertest.Env, token, pprofAddr string) *edgeProc {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "outpost-node")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/outpost-cdn/outpost/cmd/outpost-node").CombinedOutput(); err != nil {
		b.Fatalf("build outpost-node: %v\n%s", err, out)
	}
	addr := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	p := &edgeProc{httpAddr: addr(), httpsAddr: addr(), logs: &syncBuffer{}}
	p.cmd = exec.Command(bin, "-name", "edge-bench", "-controllers", env.Addr, "-http", p.httpAddr, "-https", p.httpsAddr,
		"-data-dir", filepath.Join(dir, "data"))
	if pprofAddr != "" {
		p.cmd.Args = append(p.cmd.Args, "-metrics", pprofAddr, "-pprof")
	}
	p.cmd.Env = append(os.Environ(), "OUTPOST_NODE_JOIN_TOKEN="+token)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// nodeProcess runs an edge process (startEdgeProcess) and returns its
// addresses once it serves host. OUTPOST_BENCH_PPROF=host:port profiles it:
//
//	OUTPOST_BENCH_PPROF=127.0.0.1:6060 go test -bench ... &
//	go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=5
func nodeProcess(b *testing.B, env *controllertest.Env, token, host string, roots *x509.CertPool) *edgeProc {
	b.Helper()
	p := startEdgeProcess(b, env, token, os.Getenv("OUTPOST_BENCH_PPROF"))
	httpsAddr := p.httpsAddr
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: host, RootCAs: roots}}}
	defer cl.CloseIdleConnections()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest("GET", "https://"+httpsAddr+"/1k.bin", nil)
		req.Host = host
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the edge process never served %s (last: %v %v)\n%s", host, err, resp, p.logs.String())
		}
	}
}

// syncBuffer collects a child process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// hitConns is how many keep-alive connections the hit benchmarks keep
// busy, one request in flight on each.
const hitConns = 16

// benchHits measures GETs of path over HTTPS keep-alive (SNI and Host
// host, connected to addr), hitConns at a time, and reports the rate (as
// ns/op: nanoseconds per request), p50 and p99 latency and, from /proc,
// the CPU time the server's processes (pids) spent per request, which
// other load on the machine moves less than the rate.
//
// The client is wrk (Debian's package), with one thread per core: a C
// client spends a fraction of the CPU per request that Go's net/http client
// does, so on a machine that client and server share the rate is the
// server's, not the client's. Each b.N runs wrk for -benchtime.
// OUTPOST_BENCH_HIT_CLIENT=go uses the net/http client instead (b.N
// requests from 16 goroutines).
func benchHits(b *testing.B, addr, host, path string, roots *x509.CertPool, pids func() []int) {
	if os.Getenv("OUTPOST_BENCH_HIT_CLIENT") == "go" {
		benchHitsGo(b, addr, host, path, roots, pids)
		return
	}
	wrk := wrkPath(b)
	// Warm up with a client that checks what it gets: fill the cache.
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: host, RootCAs: roots}}}
	defer cl.CloseIdleConnections()
	for range 3 {
		req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
		req.Host = host
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("warm-up GET %s: %v %v", path, resp.Status, err)
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	run := wrkRun{url: "https://" + host + ":" + port + path, addr: addr, threads: runtime.GOMAXPROCS(0), conns: hitConns, d: benchDuration()}
	procs := pids()
	cpu0 := cpuTicks(procs)
	var requests, elapsedUS int64
	var p50, p99 []int64
	b.ResetTimer()
	for range b.N {
		r := run.run(b, wrk)
		requests += r.Requests
		elapsedUS += r.DurationUS
		p50, p99 = append(p50, r.P50US), append(p99, r.P99US)
	}
	b.StopTimer()
	b.ReportMetric(float64(elapsedUS)*1e3/float64(requests), "ns/op")
	b.ReportMetric(float64(cpuTicks(procs)-cpu0)*1e6/userHZ/float64(requests), "server-cpu-µs/op")
	slices.Sort(p50)
	slices.Sort(p99)
	b.ReportMetric(float64(p50[len(p50)/2]), "p50-µs")
	b.ReportMetric(float64(p99[len(p99)/2]), "p99-µs")
}

// benchHitsGo is benchHits with Go's net/http client: b.N GETs from 16
// goroutines.
func benchHitsGo(b *testing.B, addr, host, path string, roots *x509.CertPool, pids func() []int) {
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{ServerName: host, RootCAs: roots},
		DialContext:         (&net.Dialer{}).DialContext,
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := "https://" + addr + path
	get := func() (time.Duration, error) {
		start := time.Now()
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		resp, err := cl.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start), err
	}
	for i := 0; i < 3; i++ { // warm: fill the cache, open connections
		if _, err := get(); err != nil {
			b.Fatal(err)
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(8)
	procs := pids()
	cpu0 := cpuTicks(procs)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			d, err := get()
			if err != nil {
				b.Error(err)
				return
			}
			local = append(local, d)
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTicks(procs)-cpu0)*1e6/userHZ/float64(b.N), "server-cpu-µs/op")
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	}
}

// BenchmarkPurgePropagation measures a refresh from the API call until all
// three edge nodes applied it (they apply purges before they ACK), as in
// the dev cluster. Reproduce:
//
//	go test -run '^$' -bench BenchmarkPurgePropagation -benchtime 200x ./node
func BenchmarkPurgePropagation(b *testing.B) {
	env := controllertest.Start(b)
	admin, _ := env.NewAccount(b, "bench")
	c := env.Clients(b, admin)
	ctx := ctxT(b)
	if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: "www.example.com", Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", 80)}}); err != nil {
		b.Fatal(err)
	}
	op := env.Clients(b, env.OperatorToken)
	if _, err := op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "bench", DomainQuota: 50,
		ContentQuota: &outpostv1.ContentQuota{RefreshUrls: 1_000_000}}); err != nil {
		b.Fatal(err)
	}
	var nodes []*node.Node
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, startNode(b, env, "", nodeOpts{name: fmt.Sprintf("edge-%d", i)}))
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		resp, err := c.Content.RefreshObjects(ctx, &outpostv1.RefreshObjectsRequest{Type: outpostv1.RefreshType_REFRESH_TYPE_FILE,
			Entries: []string{fmt.Sprintf("http://www.example.com/f%d.txt", i)}})
		if err != nil {
			b.Fatal(err)
		}
		rev := resp.GetTask().GetRevision()
		for _, n := range nodes {
			for n.Revision() < rev {
				time.Sleep(200 * time.Microsecond)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkDeployToNodes measures DeployCertificate to 1,000 domains, from
// the API call until all three edge nodes (one process, on loopback, with
// the controller and its embedded etcd) serve the new certificate: a real
// TLS handshake with the SNI of the last domain, verified against the
// test CA, presents it on every node. Each iteration deploys a certificate
// uploaded for it, so every iteration moves all 1,000 domains; the upload
// itself, and the nodes parsing the new certificate it carries, are done
// before the clock starts. Reproduce:
//
//	go test -run '^$' -bench BenchmarkDeployToNodes -benchtime 20x ./node
func BenchmarkDeployToNodes(b *testing.B) {
	const n = 1000
	env := controllertest.Start(b)
	admin, _ := env.NewAccount(b, "bench")
	c := env.Clients(b, admin)
	ctx := ctxT(b)
	op := env.Clients(b, env.OperatorToken)
	if _, err := op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: "bench", DomainQuota: n}); err != nil {
		b.Fatal(err)
	}
	domains := make([]string, n)
	for i := range domains {
		domains[i] = fmt.Sprintf("d%04d.deploy.example.com", i)
		if _, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: domains[i], Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", 80)}}); err != nil {
			b.Fatal(err)
		}
	}
	var nodes []*node.Node
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, startNode(b, env, "", nodeOpts{name: fmt.Sprintf("edge-%d", i)}))
	}
	waitAll := func(rev int64) {
		for _, nd := range nodes {
			for deadline := time.Now().Add(30 * time.Second); nd.Revision() < rev; time.Sleep(200 * time.Microsecond) {
				if time.Now().After(deadline) {
					b.Fatalf("a node did not reach revision %d", rev)
				}
			}
		}
	}
	ca := certstest.NewCA(b, "bench deploy CA")
	tlsCfg := &tls.Config{RootCAs: ca.Pool()}
	last := domains[n-1]
	prev := ""
	lat := make([]time.Duration, 0, b.N)
	rpc := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		pair := certstest.Issue(b, certstest.Options{DNSNames: []string{"*.deploy.example.com"}, Issuer: ca})
		up, err := c.Certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{Name: fmt.Sprintf("bench-%d", i), CertificatePem: string(pair.ChainPEM), PrivateKeyPem: string(pair.KeyPEM)})
		if err != nil {
			b.Fatal(err)
		}
		waitAll(up.GetCertificate().GetRevision())
		b.StartTimer()

		start := time.Now()
		resp, err := c.Certs.DeployCertificate(ctx, &outpostv1.DeployCertificateRequest{Id: up.GetCertificate().GetId(), Domains: domains})
		if err != nil {
			b.Fatal(err)
		}
		rpc = append(rpc, time.Since(start))
		var wg sync.WaitGroup
		errs := make([]error, len(nodes))
		for j, nd := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := time.Now().Add(30 * time.Second)
				for nd.Revision() < resp.GetRevision() && time.Now().Before(deadline) {
					time.Sleep(200 * time.Microsecond)
				}
				for {
					leaf, err := handshake(nd.HTTPSAddr(), last, tlsCfg)
					if err == nil && leaf.Equal(pair.Cert) {
						return
					}
					if time.Now().After(deadline) {
						errs[j] = fmt.Errorf("node %d does not serve the new certificate for %s: %v", j+1, last, err)
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
		wg.Wait()
		lat = append(lat, time.Since(start))
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}

		b.StopTimer()
		for _, r := range resp.GetResults() {
			if !r.GetDeployed() {
				b.Fatalf("not deployed: %v", r)
			}
		}
		if prev != "" {
			if _, err := c.Certs.DeleteCertificate(ctx, &outpostv1.DeleteCertificateRequest{Id: prev}); err != nil {
				b.Fatal(err)
			}
		}
		prev = up.GetCertificate().GetId()
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(rpc)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(rpc[len(rpc)/2].Microseconds())/1000, "rpc-p50-ms")
}
