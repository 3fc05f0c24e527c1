package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Settings of BenchmarkTLSHandshake.
const (
	// tlsBenchWorkers is the number of client goroutines, each with one
	// handshake in flight.
	tlsBenchWorkers = 16
	// tlsBenchSingleName is the one accelerated name of the servers with
	// one certificate (nginx-edge.sh always serves it).
	tlsBenchSingleName = "a.example.test"
)

// tlsBenchCerts is the number of certificates of the "many" servers:
// OUTPOST_BENCH_TLS_CERTS, default 10,000.
func tlsBenchCerts(b *testing.B) int {
	return envInt(b, "OUTPOST_BENCH_TLS_CERTS", 10_000)
}

// tlsBenchRounds is the number of A B rounds: OUTPOST_BENCH_TLS_ROUNDS,
// default 5 (the 10,000-certificate target is a 5% band, and single
// rounds on a shared machine move by about that much).
func tlsBenchRounds(b *testing.B) int {
	return envInt(b, "OUTPOST_BENCH_TLS_ROUNDS", 5)
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1_000_000 {
		b.Fatalf("%s=%q: want a count from 1 to 1,000,000", name, v)
	}
	return n
}

// BenchmarkTLSHandshake measures full TLS 1.3 handshakes per second (a new
// TCP connection each time, no session resumption: the client keeps no
// session cache and sends no tickets) against the Outpost edge (its own
// process, configured through the controller API) and the shared nginx
// peer (nginx-edge.sh), each with one certificate loaded and with 10,000
// (one domain and one certificate per name, d0..d9999.example.test, as
// DOMAINS=10000 gives nginx), for ECDSA P-256 and RSA 2048 certificates.
//
// The client (tlsBenchWorkers goroutines in this process, one handshake in
// flight each) dials, handshakes with the SNI of a random loaded name and
// closes; it checks the presented certificate covers the name. Both sides
// serve the very same leaf certificates and keys (generated here, signed
// by a throwaway ECDSA CA; nginx-edge.sh finds them in its certs directory
// and does not make its own). RSA certificates all share one key, which
// does not change what a handshake costs. Before the measurements each
// server completes one handshake per loaded name (at least 1,000). Then
// the servers run in A B order (Outpost, nginx), one certificate then many, for
// OUTPOST_BENCH_TLS_ROUNDS rounds (default 5). Metrics: handshakes/s,
// p50-ms and p99-ms (dial and handshake), and server-cpu-µs/op, the CPU
// time of the server's processes per handshake (from /proc), which the
// load of other processes moves less than the rate. Reproduce:
//
//	go test -run '^$' -bench BenchmarkTLSHandshake -benchtime 3s -timeout 60m ./node
//
// OUTPOST_BENCH_TLS_CERTS sets the number of certificates (default
// 10,000); OUTPOST_BENCH_PPROF serves the edges' profiles (see
// edgeTLSProcess).
func BenchmarkTLSHandshake(b *testing.B) {
	for _, key := range []struct {
		name string
		typ  outpostv1.KeyType
	}{{"ec", outpostv1.KeyType_KEY_TYPE_EC_P256}, {"rsa", outpostv1.KeyType_KEY_TYPE_RSA_2048}} {
		b.Run(key.name, func(b *testing.B) {
			benchTLSKey(b, key.name, key.typ)
		})
	}
}

// tlsBenchTarget is one server under test.
type tlsBenchTarget struct {
	server string // outpost or nginx
	tlsServer
	names []string // SNI names to pick from
}

// tlsServer is a running server: its HTTPS address and its processes.
type tlsServer struct {
	addr string
	pids func() []int
}

func benchTLSKey(b *testing.B, key string, typ outpostv1.KeyType) {
	n := tlsBenchCerts(b)
	start := time.Now()
	ca := certstest.NewCA(b, "bench TLS CA")
	single := tlsBenchIssue(b, ca, typ, []string{tlsBenchSingleName, "b.example.test"})
	many := make([]string, n)
	for i := range many {
		many[i] = fmt.Sprintf("d%d.example.test", i)
	}
	manyPairs := tlsBenchIssue(b, ca, typ, many)
	b.Logf("%s: %d certificates generated in %v", key, n+2, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	nginxOne := nginxTLSPeer(b, key, 0, single, nil)
	b.Logf("%s: nginx with 1 certificate started in %v", key, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	nginxMany := nginxTLSPeer(b, key, n, single, manyPairs)
	b.Logf("%s: nginx with %d certificates (DOMAINS=%d) started in %v", key, n+1, n, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	outpostOne := outpostTLSEdge(b, []string{tlsBenchSingleName}, single[:1])
	b.Logf("%s: Outpost edge with 1 certificate ready in %v", key, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	outpostMany := outpostTLSEdge(b, many, manyPairs)
	b.Logf("%s: Outpost edge with %d certificates ready in %v", key, n, time.Since(start).Round(time.Millisecond))

	one := []string{tlsBenchSingleName}
	sets := []struct {
		certs   int
		targets []tlsBenchTarget
	}{
		{1, []tlsBenchTarget{{"outpost", outpostOne, one}, {"nginx", nginxOne, one}}},
		{n, []tlsBenchTarget{{"outpost", outpostMany, many}, {"nginx", nginxMany, many}}},
	}
	// Warm up: one handshake for every loaded name, so that the first
	// use of each key (lazy key set-up in Go's crypto, page faults) is
	// not in the measurements.
	for _, set := range sets {
		for _, tg := range set.targets {
			start := time.Now()
			lat, err := handshakes(tg.addr, tg.names, max(len(tg.names), 1000), true, 2*time.Minute)
			if err != nil {
				b.Fatalf("warm-up of %s with %d certificates: %v", tg.server, set.certs, err)
			}
			b.Logf("%s: warm-up %s with %d certificates: %d handshakes, %.0f/s; memory (PSS of its processes) %.1f MiB",
				key, tg.server, set.certs, len(lat), float64(len(lat))/time.Since(start).Seconds(), float64(pssKiB(tg.pids()))/1024)
		}
	}
	for round := range tlsBenchRounds(b) {
		for _, set := range sets {
			for _, tg := range set.targets {
				b.Run(fmt.Sprintf("certs=%d/%s/round%d", set.certs, tg.server, round), func(b *testing.B) {
					benchHandshakes(b, tg.tlsServer, tg.names)
				})
			}
		}
	}
}

// tlsBenchPair is a certificate (the leaf alone) and its key, in PEM.
type tlsBenchPair struct {
	certPEM, keyPEM []byte
}

// tlsBenchIssue issues one certificate per name, signed by ca, with keys
// of typ (RSA keys: one for all).
func tlsBenchIssue(b *testing.B, ca *certstest.CA, typ outpostv1.KeyType, names []string) []tlsBenchPair {
	out := make([]tlsBenchPair, len(names))
	for i, name := range names {
		p := certstest.Issue(b, certstest.Options{DNSNames: []string{name}, KeyType: typ, Issuer: ca})
		out[i] = tlsBenchPair{p.CertPEM, p.KeyPEM}
	}
	return out
}

// nginxTLSPeer starts nginx-edge.sh with DOMAINS=domains and KEY=key,
// with the certificates given: single for a.example.test and
// b.example.test, many for d0..d<domains-1>, and with TLS 1.3 enabled.
// It returns the edge's HTTPS address and processes.
func nginxTLSPeer(b *testing.B, key string, domains int, single, many []tlsBenchPair) tlsServer {
	b.Helper()
	script, err := filepath.Abs(peerScript)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		b.Skip("the nginx peer script is not beside the repository")
	}
	dir, err := os.MkdirTemp("", "outpost-nginx-tls-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "certs"), 0o755); err != nil {
		b.Fatal(err)
	}
	write := func(name string, p tlsBenchPair) {
		if err := os.WriteFile(filepath.Join(dir, "certs", name+".crt"), p.certPEM, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "certs", name+".key"), p.keyPEM, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	write("a.example.test", single[0])
	write("b.example.test", single[1])
	for i := range domains {
		write(fmt.Sprintf("d%d.example.test", i), many[i])
	}
	ports := map[string]string{}
	for _, k := range []string{"EDGE_HTTP", "EDGE_HTTPS", "ORIGIN_HTTP", "ORIGIN_HTTPS"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ports[k] = fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	cmd := exec.Command("bash", script, "start", dir)
	cmd.Env = append(os.Environ(), "ADDR=127.0.0.1", "WORKERS=2", "DOMAINS="+strconv.Itoa(domains), "KEY="+key)
	for k, v := range ports {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("nginx peer: %v\n%s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("bash", script, "stop", dir).Run() })
	// nginx 1.22 enables TLS 1.3 only when told to (1.23.4 and later do by
	// default), and the script leaves ssl_protocols at its default: add it
	// to the generated config and reload.
	conf := filepath.Join(dir, "nginx.conf")
	text, err := os.ReadFile(conf)
	if err != nil {
		b.Fatal(err)
	}
	text = bytes.Replace(text, []byte("http {\n"), []byte("http {\n  ssl_protocols TLSv1.2 TLSv1.3;\n"), 1)
	if err := os.WriteFile(conf, text, 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("nginx", "-c", conf, "-s", "reload").CombinedOutput(); err != nil {
		b.Fatalf("nginx reload: %v\n%s", err, out)
	}
	addr := "127.0.0.1:" + ports["EDGE_HTTPS"]
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		err := handshakeOnce(addr, tlsBenchSingleName)
		if err == nil {
			return tlsServer{addr, func() []int { return nginxPids(filepath.Join(dir, "nginx.pid")) }}
		}
		if time.Now().After(deadline) {
			b.Fatalf("nginx does not speak TLS 1.3 after the reload: %v", err)
		}
	}
}

// tlsBenchAccountDomains is the number of domains per account in
// outpostTLSEdge, which fills the accounts in parallel: creates in one
// account would abort each other (each guards the account's domain
// index), creates in different accounts do not.
const tlsBenchAccountDomains = 100

// outpostTLSEdge starts a controller, creates one domain per name through
// the API (in accounts of tlsBenchAccountDomains), each with HTTPS and its
// own certificate uploaded inline, then an edge process, and returns the
// edge's HTTPS address and process once it serves them.
func outpostTLSEdge(b *testing.B, names []string, pairs []tlsBenchPair) tlsServer {
	b.Helper()
	env := controllertest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	op := env.Clients(b, env.OperatorToken)
	var clients []*controllertest.Clients
	for i := 0; i < len(names); i += tlsBenchAccountDomains {
		id := fmt.Sprintf("bench-%d", len(clients))
		admin, _ := env.NewAccount(b, id)
		if _, err := op.Accounts.SetAccountQuota(ctx, &outpostv1.SetAccountQuotaRequest{Id: id, DomainQuota: tlsBenchAccountDomains}); err != nil {
			b.Fatal(err)
		}
		clients = append(clients, env.Clients(b, admin))
	}
	// Concurrent writes to one account may conflict (Aborted): retry.
	retry := func(call func() error) error {
		var err error
		for attempt := range 100 {
			if err = call(); status.Code(err) != codes.Aborted {
				return err
			}
			time.Sleep(time.Duration(attempt+1) * time.Millisecond)
		}
		return err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(names) || ctx.Err() != nil {
					return
				}
				c := clients[i/tlsBenchAccountDomains]
				err := retry(func() error {
					_, err := c.Domains.CreateDomain(ctx, &outpostv1.CreateDomainRequest{Name: names[i], Origins: []*outpostv1.Origin{ipOrigin("127.0.0.1", 80)}})
					if status.Code(err) == codes.AlreadyExists {
						return nil // an earlier attempt committed
					}
					return err
				})
				if err == nil {
					err = retry(func() error {
						_, err := c.HTTPS.EnableHttps(ctx, &outpostv1.EnableHttpsRequest{Domain: names[i], Source: &outpostv1.EnableHttpsRequest_Upload{Upload: &outpostv1.InlineCertificate{
							CertificatePem: string(pairs[i].certPEM), PrivateKeyPem: string(pairs[i].keyPEM)}}})
						return err
					})
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %v", names[i], err)
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	if len(names) > 1 {
		b.Logf("%d domains with their certificates created through the API, in %d accounts, in %v", len(names), len(clients), time.Since(start).Round(time.Millisecond))
	}
	env.SyncConfig(b)
	start = time.Now()
	srv := edgeTLSProcess(b, env, env.JoinToken(b), names)
	if len(names) > 1 {
		b.Logf("edge process serving all %d names %v after it started", len(names), time.Since(start).Round(time.Millisecond))
	}
	return srv
}

// edgeTLSProcess runs an edge process (startEdgeProcess) and returns its
// HTTPS address once a handshake with the first and the last of names
// succeeds.
func edgeTLSProcess(b *testing.B, env *controllertest.Env, token string, names []string) tlsServer {
	b.Helper()
	a := os.Getenv("OUTPOST_BENCH_PPROF")
	if a != "" && len(names) == 1 {
		// Profile the edges while they run: the one with many
		// certificates serves metrics and profiles on
		// OUTPOST_BENCH_PPROF, the one with one on the next port:
		//   go tool pprof http://$OUTPOST_BENCH_PPROF/debug/pprof/profile?seconds=5
		host, port, err := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		if err != nil || p == 0 {
			b.Fatalf("OUTPOST_BENCH_PPROF=%q: want host:port", a)
		}
		a = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	proc := startEdgeProcess(b, env, token, a)
	httpsAddr, cmd, logs := proc.httpsAddr, proc.cmd, proc.logs
	probe := []string{names[0], names[len(names)-1]}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		_, err := handshakes(httpsAddr, probe, len(probe), true, 5*time.Second)
		if err == nil {
			return tlsServer{httpsAddr, func() []int { return []int{cmd.Process.Pid} }}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the edge process never served %v (last: %v)\n%s", probe, err, logs.String())
		}
	}
}

// tlsBenchClient is the client's TLS config: TLS 1.3 only, X25519 (what
// both servers support: nginx's OpenSSL 3.0 has no ML-KEM), no session
// cache and no tickets, so every handshake is a full one. The chain is not
// verified (it is the client's cost, not the server's), but the leaf must
// cover the SNI, and the server's CertificateVerify signature is always
// checked.
var tlsBenchClient = &tls.Config{
	MinVersion:             tls.VersionTLS13,
	MaxVersion:             tls.VersionTLS13,
	CurvePreferences:       []tls.CurveID{tls.X25519},
	SessionTicketsDisabled: true,
	InsecureSkipVerify:     true,
	VerifyConnection: func(cs tls.ConnectionState) error {
		if cs.Version != tls.VersionTLS13 {
			return fmt.Errorf("negotiated %s", tls.VersionName(cs.Version))
		}
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("no certificate")
		}
		return cs.PeerCertificates[0].VerifyHostname(cs.ServerName)
	},
}

// handshakeOnce dials addr and completes one TLS handshake with SNI name.
func handshakeOnce(addr, name string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	cfg := tlsBenchClient.Clone()
	cfg.ServerName = name
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	err = tc.Handshake()
	_ = tc.Close()
	return err
}

// handshakes runs count handshakes against addr with tlsBenchWorkers
// workers, each name in turn (inOrder) or random names, for at most
// limit, and returns their latencies (dial and handshake).
func handshakes(addr string, names []string, count int, inOrder bool, limit time.Duration) ([]time.Duration, error) {
	deadline := time.Now().Add(limit)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	lat := make([][]time.Duration, tlsBenchWorkers)
	var wg sync.WaitGroup
	for w := range tlsBenchWorkers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			local := make([]time.Duration, 0, count/tlsBenchWorkers+1)
			for failed.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= count {
					break
				}
				if time.Now().After(deadline) {
					err := fmt.Errorf("%d of %d handshakes done in %v", i, count, limit)
					failed.CompareAndSwap(nil, &err)
					break
				}
				name := names[i%len(names)]
				if !inOrder {
					name = names[rng.IntN(len(names))]
				}
				start := time.Now()
				if err := handshakeOnce(addr, name); err != nil {
					err = fmt.Errorf("handshake with SNI %s: %w", name, err)
					failed.CompareAndSwap(nil, &err)
					break
				}
				local = append(local, time.Since(start))
			}
			lat[w] = local
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return nil, *err
	}
	return slices.Concat(lat...), nil
}

// benchHandshakes runs b.N handshakes with random names and reports their
// rate, latency, and the CPU time the server's processes spent per
// handshake (which the load of other processes on the machine moves
// less than the rate).
func benchHandshakes(b *testing.B, srv tlsServer, names []string) {
	pids := srv.pids()
	cpu0 := cpuTicks(pids)
	b.ResetTimer()
	start := time.Now()
	lat, err := handshakes(srv.addr, names, b.N, false, 5*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTicks(pids) - cpu0
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "handshakes/s")
	b.ReportMetric(float64(cpu)*1e6/userHZ/float64(b.N), "server-cpu-µs/op")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// nginxPids are nginx's master (from pidFile) and its workers.
func nginxPids(pidFile string) []int {
	text, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	master, err := strconv.Atoi(strings.TrimSpace(string(text)))
	if err != nil {
		return nil
	}
	pids := []int{master}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		if i := bytes.LastIndexByte(stat, ')'); i > 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(master) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// pssKiB is the proportional set size of pids together (memory shared
// between them counted once), from /proc/<pid>/smaps_rollup.
func pssKiB(pids []int) int {
	total := 0
	for _, pid := range pids {
		text, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(text)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				n, _ := strconv.Atoi(f[1])
				total += n
			}
		}
	}
	return total
}

// userHZ is the unit of CPU times in /proc/<pid>/stat (USER_HZ, 100 on
// Linux).
const userHZ = 100

// cpuTicks is the user and system CPU time pids used, in 1/userHZ s.
func cpuTicks(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime is field 14, stime 15.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += u + s
	}
	return total
}
