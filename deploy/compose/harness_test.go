//go:build e2e

package compose

// The harness of the e2e and fault tests: the topology's settings, Docker
// and Compose commands, faults injected into containers' network
// namespaces, clients of the controllers, schedulers and etcd members, and
// the load that runs through every fault.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/grpcauth"
	"github.com/outpost-cdn/outpost/internal/loadtest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// topology is the compose project the tests bring up. Its defaults keep it
// apart from a `make compose-up` topology (project outpost, images tagged
// latest, networks 10.88.x.0/24, ports 7000..., state directory .state/):
// the tests may run beside one.
type topology struct {
	project, tag, net string
	state             string // the state directory (absolute): secrets, certificates, join tokens
	gossipLocal       string // "true": memberlist's local-network timings
	controllerPort    string
	dnsPort           string
	schedGRPCPort     string
	httpPorts         map[string]string // region → published HTTP port
	httpsPorts        map[string]string // region → published HTTPS port
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// stateDir is the project's state directory, as up.sh and down.sh pick
// it: OUTPOST_STATE_DIR, else .state-<project> (.state for the project
// outpost), made absolute so that Compose sees one path whoever runs it.
func stateDir(project string) string {
	def := "./.state-" + project
	if project == "outpost" {
		def = "./.state"
	}
	dir, err := filepath.Abs(env("OUTPOST_STATE_DIR", def))
	if err != nil {
		panic(err)
	}
	return dir
}

var topo = topology{
	project:        env("COMPOSE_PROJECT_NAME", "outpost-e2e"),
	state:          stateDir(env("COMPOSE_PROJECT_NAME", "outpost-e2e")),
	tag:            env("TAG", "e2e"),
	net:            env("OUTPOST_NET_PREFIX", "10.89"),
	gossipLocal:    env("OUTPOST_GOSSIP_LOCAL", "true"),
	controllerPort: env("OUTPOST_CONTROLLER_PORT", "17000"),
	dnsPort:        env("OUTPOST_DNS_PORT", "17053"),
	schedGRPCPort:  env("OUTPOST_SCHEDULER_GRPC_PORT", "17100"),
	httpPorts: map[string]string{
		"eu": env("OUTPOST_EU_HTTP_PORT", "18081"),
		"us": env("OUTPOST_US_HTTP_PORT", "18082"),
		"ap": env("OUTPOST_AP_HTTP_PORT", "18083"),
	},
	httpsPorts: map[string]string{
		"eu": env("OUTPOST_EU_HTTPS_PORT", "18441"),
		"us": env("OUTPOST_US_HTTPS_PORT", "18442"),
		"ap": env("OUTPOST_AP_HTTPS_PORT", "18443"),
	},
}

// environ is the environment of up.sh, down.sh and Compose: the same for
// all three, so that `compose up -d` finds nothing to recreate.
func (tp topology) environ() []string {
	zone := "./coverage-zone.json"
	if tp.net != "10.88" {
		zone = tp.path("coverage-zone.json") // written by up.sh
	}
	return append(os.Environ(), "OUTPOST_COVERAGE_ZONE="+zone, "OUTPOST_GOSSIP_LOCAL="+tp.gossipLocal,
		"COMPOSE_PROJECT_NAME="+tp.project, "TAG="+tp.tag, "OUTPOST_NET_PREFIX="+tp.net,
		"OUTPOST_STATE_DIR="+tp.state,
		"OUTPOST_CONTROLLER_PORT="+tp.controllerPort, "OUTPOST_DNS_PORT="+tp.dnsPort,
		"OUTPOST_SCHEDULER_GRPC_PORT="+tp.schedGRPCPort,
		"OUTPOST_EU_HTTP_PORT="+tp.httpPorts["eu"], "OUTPOST_US_HTTP_PORT="+tp.httpPorts["us"],
		"OUTPOST_AP_HTTP_PORT="+tp.httpPorts["ap"], "OUTPOST_EU_HTTPS_PORT="+tp.httpsPorts["eu"],
		"OUTPOST_US_HTTPS_PORT="+tp.httpsPorts["us"], "OUTPOST_AP_HTTPS_PORT="+tp.httpsPorts["ap"],
	)
}

// path is a file in the state directory: "pki/ca.crt".
func (tp topology) path(name string) string { return filepath.Join(tp.state, name) }

// ip is a container's address: "0.21" is controller-1 on the control
// network, "2.12" edge-us-2 on region-us.
func (tp topology) ip(suffix string) string { return tp.net + "." + suffix }

// The services, with their control-network addresses.
var (
	etcdMembers = []string{"etcd-1", "etcd-2", "etcd-3"}
	controllers = []string{"controller-1", "controller-2"}
	schedulers  = []string{"scheduler-1", "scheduler-2"}
	edges       = []string{"edge-eu-1", "edge-eu-2", "edge-us-1", "edge-us-2", "edge-ap-1", "edge-ap-2"}
	controlIP   = map[string]string{
		"etcd-1": "0.11", "etcd-2": "0.12", "etcd-3": "0.13",
		"controller-1": "0.21", "controller-2": "0.22",
		"scheduler-1": "0.31", "scheduler-2": "0.32", "origin": "0.40",
		"edge-eu-1": "0.51", "edge-eu-2": "0.52", "edge-us-1": "0.53",
		"edge-us-2": "0.54", "edge-ap-1": "0.55", "edge-ap-2": "0.56",
	}
	// A client subnet of each region in coverage-zone.json.
	regionClient = map[string]string{"eu": "192.0.2.1", "us": "198.51.100.1", "ap": "203.0.113.1"}
)

// command runs name with the topology's environment, bounded by timeout.
func command(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = topo.environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := command(5*time.Minute, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compose runs Compose on the project: v2 when installed, else v1, as
// up.sh picks; COMPOSE overrides.
func compose(args ...string) (string, error) {
	c := os.Getenv("COMPOSE")
	if c == "" {
		c = "docker-compose"
		if exec.Command("docker", "compose", "version").Run() == nil {
			c = "docker compose"
		}
	}
	f := strings.Fields(c)
	return command(5*time.Minute, f[0], slices.Concat(f[1:], []string{"-p", topo.project, "-f", "docker-compose.yml"}, args)...)
}

// container is the ID of a service's container. The name differs between
// Compose v1 and v2; the labels do not.
func container(t testing.TB, service string) string {
	t.Helper()
	id := strings.TrimSpace(run(t, "docker", "ps", "-aq",
		"--filter", "label=com.docker.compose.project="+topo.project,
		"--filter", "label=com.docker.compose.service="+service))
	if id == "" || strings.Contains(id, "\n") {
		t.Fatalf("container of %s: %q", service, id)
	}
	return id
}

func docker(t testing.TB, verb string, services ...string) {
	t.Helper()
	args := []string{verb}
	if verb == "stop" {
		args = append(args, "-t", "10")
	}
	for _, s := range services {
		args = append(args, container(t, s))
	}
	run(t, "docker", args...)
}

// waitFor polls f every interval until it returns nil, for at most d, and
// returns how long that took; it fails the test on timeout.
func waitFor(t testing.TB, what string, d, interval time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not after %v: %v", what, d, err)
		}
		time.Sleep(interval)
	}
}

// secs formats a duration as seconds with one decimal.
func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// summary logs a test's number in the form docs/deployment.md shows, and
// prints it so that `go test` without -v shows it too.
func summary(t testing.TB, format string, args ...any) {
	t.Helper()
	line := "fault: " + fmt.Sprintf(format, args...)
	t.Log(line)
	fmt.Println(line)
}

// ---- network faults ----

// netFault holds iptables rules added in containers' network namespaces
// (the images are FROM scratch: no shell, no iptables inside), so that
// they can be removed again.
type netFault struct {
	mu    sync.Mutex
	rules []nsRule
}

type nsRule struct {
	service, pid string
	spec         []string // after -A/-D CHAIN
	chain        string
}

func nsPID(t testing.TB, service string) string {
	t.Helper()
	pid := strings.TrimSpace(run(t, "docker", "inspect", "-f", "{{.State.Pid}}", container(t, service)))
	if pid == "" || pid == "0" {
		t.Fatalf("%s is not running", service)
	}
	return pid
}

// drop drops every packet between service and the given peers (control
// addresses), both ways, inside service's network namespace.
func (f *netFault) drop(t testing.TB, service string, peers ...string) {
	t.Helper()
	pid := nsPID(t, service)
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, topo.ip(controlIP[p]))
	}
	list := strings.Join(addrs, ",")
	for _, r := range []nsRule{
		{service: service, pid: pid, chain: "INPUT", spec: []string{"-s", list, "-j", "DROP"}},
		{service: service, pid: pid, chain: "OUTPUT", spec: []string{"-d", list, "-j", "DROP"}},
	} {
		run(t, "nsenter", slices.Concat([]string{"-t", pid, "-n", "iptables", "-w", "5", "-I", r.chain}, r.spec)...)
		f.mu.Lock()
		f.rules = append(f.rules, r)
		f.mu.Unlock()
	}
}

// heal removes every rule added; safe to call twice.
func (f *netFault) heal(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	rules := f.rules
	f.rules = nil
	f.mu.Unlock()
	for _, r := range rules {
		if _, err := command(30*time.Second, "nsenter", slices.Concat([]string{"-t", r.pid, "-n", "iptables", "-w", "5", "-D", r.chain}, r.spec)...); err != nil {
			t.Errorf("removing a rule from %s: %v", r.service, err)
		}
	}
}

// ---- controllers ----

// admin is a gRPC client of the controllers' admin API with one token.
type admin struct {
	conns map[string]*grpc.ClientConn // controller → conn
}

func readSecret(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(topo.path(name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// controllerAddr reaches controller-1 on its published port, controller-2
// on its control address (the host routes to Docker's bridge networks).
func controllerAddr(name string) string {
	if name == "controller-1" {
		return "127.0.0.1:" + topo.controllerPort
	}
	return topo.ip(controlIP[name]) + ":7000"
}

// certPool reads the PEM certificates of a file in the state directory.
func certPool(t testing.TB, name string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(topo.path(name))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", topo.path(name))
	}
	return pool
}

// newAdmin dials both controllers over TLS, trusting only the cluster CA
// that they write to <state>/pki/ca.crt (-ca-cert-out), as outpostctl does
// in up.sh. Their serving certificates name 127.0.0.1 and, through
// -tls-san, their control addresses.
func newAdmin(t testing.TB, token string) *admin {
	t.Helper()
	a := &admin{conns: map[string]*grpc.ClientConn{}}
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: certPool(t, "pki/ca.crt")})
	for _, c := range controllers {
		conn, err := grpc.NewClient(controllerAddr(c),
			grpc.WithTransportCredentials(creds),
			grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: token, RequireTLS: true}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		a.conns[c] = conn
	}
	return a
}

func operator(t testing.TB) *admin  { return newAdmin(t, readSecret(t, "bootstrap.token")) }
func demoAdmin(t testing.TB) *admin { return newAdmin(t, readSecret(t, "admin.token")) }

func rpcCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// listNodes asks the controllers in turn for the node list.
func (a *admin) listNodes() (*outpostv1.ListNodesResponse, error) {
	var errs []error
	for _, c := range controllers {
		ctx, cancel := rpcCtx(3 * time.Second)
		resp, err := outpostv1.NewNodeServiceClient(a.conns[c]).ListNodes(ctx, &outpostv1.ListNodesRequest{})
		cancel()
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", c, err))
	}
	return nil, errors.Join(errs...)
}

// nodeHealth is the health the controllers report for an edge node.
func (a *admin) nodeHealth(name string) (outpostv1.NodeHealth, error) {
	resp, err := a.listNodes()
	if err != nil {
		return 0, err
	}
	for _, n := range resp.GetNodes() {
		if n.GetName() == name {
			return n.GetHealth(), nil
		}
	}
	return 0, fmt.Errorf("no node %s", name)
}

// memberCerts returns the serials of the member certificates issued to
// name (an edge node or scheduler), revoked and expired ones included.
func (a *admin) memberCerts(t testing.TB, name string) []string {
	t.Helper()
	var errs []error
	for _, c := range controllers {
		ctx, cancel := rpcCtx(5 * time.Second)
		resp, err := outpostv1.NewPkiServiceClient(a.conns[c]).ListMemberCertificates(ctx, &outpostv1.ListMemberCertificatesRequest{Name: name})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
			continue
		}
		var serials []string
		for _, mc := range resp.GetCertificates() {
			serials = append(serials, mc.GetSerial())
		}
		slices.Sort(serials)
		return serials
	}
	t.Fatalf("certificates of %s: %v", name, errors.Join(errs...))
	return nil
}

// nodesAt reports nil when every edge node is connected and has applied
// revision rev or later.
func (a *admin) nodesAt(rev int64) error {
	resp, err := a.listNodes()
	if err != nil {
		return err
	}
	return checkNodesAt(resp, edges, rev)
}

func checkNodesAt(resp *outpostv1.ListNodesResponse, names []string, rev int64) error {
	byName := map[string]*outpostv1.Node{}
	for _, n := range resp.GetNodes() {
		byName[n.GetName()] = n
	}
	var behind []string
	for _, name := range names {
		n := byName[name]
		switch {
		case n == nil:
			behind = append(behind, name+" unknown")
		case n.GetHealth() != outpostv1.NodeHealth_NODE_HEALTH_CONNECTED:
			behind = append(behind, name+" disconnected")
		case n.GetAppliedRevision() < rev:
			behind = append(behind, fmt.Sprintf("%s at %d", name, n.GetAppliedRevision()))
		}
	}
	if len(behind) > 0 {
		return fmt.Errorf("want revision %d: %s", rev, strings.Join(behind, ", "))
	}
	return nil
}

// configWrite makes a change that every edge node receives (a cache rule
// on the demo domain) and returns the config revision that carries it.
func configWrite(t testing.TB, a *admin, tag string) int64 {
	t.Helper()
	ctx, cancel := rpcCtx(10 * time.Second)
	defer cancel()
	var err error
	for _, c := range controllers {
		_, err = outpostv1.NewCacheServiceClient(a.conns[c]).AddCacheRule(ctx, &outpostv1.AddCacheRuleRequest{
			Domain: domain,
			Match:  &outpostv1.AddCacheRuleRequest_PathPrefix{PathPrefix: "/fault-" + tag + "/"},
			Ttl:    durationpb.New(time.Minute),
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("config write: %v", err)
	}
	rev, err := latestConfigRev()
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// nodesAtLatest reports nil when every edge node is connected and has
// applied the latest config change.
func (a *admin) nodesAtLatest() error {
	rev, err := latestConfigRev()
	if err != nil {
		return err
	}
	return a.nodesAt(rev)
}

// ---- schedulers ----

// schedulerAddr reaches scheduler-1's gRPC on its published port,
// scheduler-2's on its control address.
func schedulerAddr(name string) string {
	if name == "scheduler-1" {
		return "127.0.0.1:" + topo.schedGRPCPort
	}
	return topo.ip(controlIP[name]) + ":7100"
}

type schedClients map[string]outpostv1.SchedulerServiceClient

func newSchedClients(t testing.TB) schedClients {
	t.Helper()
	s := schedClients{}
	for _, name := range schedulers {
		conn, err := grpc.NewClient(schedulerAddr(name), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		s[name] = outpostv1.NewSchedulerServiceClient(conn)
	}
	return s
}

// view is the set of edge nodes a scheduler answers for the demo domain:
// every candidate, for a client in each region (Resolve lists them all,
// ranked).
func (s schedClients) view(sched string) ([]string, error) {
	seen := map[string]bool{}
	for _, ip := range regionClient {
		ctx, cancel := rpcCtx(2 * time.Second)
		resp, err := s[sched].Resolve(ctx, &outpostv1.ResolveRequest{Domain: domain, ClientIp: ip})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sched, err)
		}
		for _, c := range resp.GetCandidates() {
			seen[c.GetNode()] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// allSee reports nil when every scheduler answers exactly want.
func (s schedClients) allSee(want []string) error {
	want = slices.Sorted(slices.Values(want))
	for _, name := range schedulers {
		got, err := s.view(name)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s answers %v, want %v", name, got, want)
		}
	}
	return nil
}

// ---- etcd ----

func etcdEndpoint(member string) string { return "https://" + topo.ip(controlIP[member]) + ":2379" }

// etcdTLS is the client side of etcd's TLS: the operator client
// certificate init.sh made for backups (<state>/etcd/operator/client.crt,
// client.key), and etcd's CA (ca.crt beside them), which signed the
// members' server certificates for their control addresses.
func etcdTLS() (*tls.Config, error) {
	dir := topo.path("etcd/operator")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s/ca.crt", dir)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: pool}, nil
}

func newEtcdClient(endpoints ...string) (*clientv3.Client, error) {
	tc, err := etcdTLS()
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 3 * time.Second, TLS: tc})
}

func etcdClient() (*clientv3.Client, error) {
	var eps []string
	for _, m := range etcdMembers {
		eps = append(eps, etcdEndpoint(m))
	}
	return newEtcdClient(eps...)
}

// latestConfigRev is the revision of the newest config change: the
// highest ModRevision under the prefix the config stream carries. A node
// has every change when its applied revision reaches it. (The node list's
// current_revision is no substitute: it is the answering controller's, and
// a controller that loaded its cache after other writes reports etcd's
// revision at that load, which nodes on the other controller never reach.)
func latestConfigRev() (int64, error) {
	cli, err := etcdClient()
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	ctx, cancel := rpcCtx(5 * time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, store.ConfigPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, errors.New("no config in etcd")
	}
	return resp.Kvs[0].ModRevision, nil
}

// etcdLeader returns the member that leads, as the members' status says;
// it needs every given member to agree.
func etcdLeader(members []string) (string, error) {
	cli, err := newEtcdClient(etcdEndpoint(members[0]))
	if err != nil {
		return "", err
	}
	defer cli.Close()
	var leader uint64
	ids := map[uint64]string{}
	for _, m := range members {
		ctx, cancel := rpcCtx(3 * time.Second)
		st, err := cli.Status(ctx, etcdEndpoint(m))
		cancel()
		if err != nil {
			return "", fmt.Errorf("%s: %w", m, err)
		}
		if st.Leader == 0 || (leader != 0 && st.Leader != leader) {
			return "", fmt.Errorf("%s sees leader %x, others %x", m, st.Leader, leader)
		}
		leader = st.Leader
		ids[st.Header.GetMemberId()] = m
	}
	name, ok := ids[leader]
	if !ok {
		return "", fmt.Errorf("leader %x is none of %v", leader, members)
	}
	return name, nil
}

// ---- health ----

// ensureUp starts whatever is stopped (compose up -d changes nothing on a
// healthy topology) and waits until the topology is whole: three etcd
// members agreeing on a leader, every edge node connected at the latest
// config revision, and both schedulers answering all six edges. Every fault test
// starts from it.
func ensureUp(t testing.TB) {
	t.Helper()
	if _, err := compose("up", "-d"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "etcd leader", 90*time.Second, 500*time.Millisecond, func() error {
		_, err := etcdLeader(etcdMembers)
		return err
	})
	op := operator(t)
	waitFor(t, "edge nodes connected at the latest config revision", 120*time.Second, 500*time.Millisecond, func() error {
		return op.nodesAtLatest()
	})
	sc := newSchedClients(t)
	waitFor(t, "schedulers answering every edge", 120*time.Second, 500*time.Millisecond, func() error {
		return sc.allSee(edges)
	})
}

// ---- load ----

// load runs outpost-loadtest's engine (internal/loadtest) against the
// published HTTPS edges of the three regions, round robin, at loadRate
// until stopped, bounded by maxLoad and a matching request count, with the
// demo domain's certificate as the only root.
type load struct {
	done   chan struct{}
	res    *loadtest.Result
	err    error
	cancel context.CancelFunc
}

const (
	loadRate = 60 // requests per second, over the three published edges
	maxLoad  = 10 * time.Minute
)

func startLoad(t testing.TB) *load {
	t.Helper()
	roots := certPool(t, "demo.crt")
	var targets []string
	for _, r := range []string{"eu", "us", "ap"} {
		targets = append(targets, "127.0.0.1:"+topo.httpsPorts[r])
	}
	cfg := loadtest.Config{
		Edges:       targets,
		Domains:     []loadtest.Domain{{Name: domain}},
		RootCAs:     roots,
		HTTP2:       true,
		Rate:        loadRate,
		Concurrency: 32,
		Duration:    maxLoad,
		Requests:    int64(math.Ceil(maxLoad.Seconds() * loadRate)),
		Timeout:     5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(l.done)
		l.res, l.err = loadtest.Run(ctx, cfg)
	}()
	t.Cleanup(func() { l.cancel(); <-l.done })
	return l
}

// stop ends the load (requests in flight get a second) and returns the
// result; failed counts requests that got an error of any kind (4xx and
// 5xx included, and timeouts) or were cut off at the stop. Requests still
// queued when the load stops (Unsent) are logged, not counted: one that
// falls due in the instant of the stop is not sent, whatever the edges
// do, and edges too slow to keep the workers free show up as timeouts
// (5 s) long before the queue fills.
func (l *load) stop(t testing.TB) (res *loadtest.Result, failed int64) {
	t.Helper()
	l.cancel()
	<-l.done
	if l.err != nil {
		t.Fatalf("load: %v", l.err)
	}
	res = l.res
	for _, n := range res.Errors {
		failed += n
	}
	failed += res.Aborted
	t.Logf("load: %d requests in %.1f s, %d failed (errors %v %v, aborted %d, unsent %d), by node %v",
		res.Requests, res.ElapsedSeconds, failed, res.Errors, res.ErrorSamples, res.Aborted, res.Unsent, res.Nodes)
	return res, failed
}

// stopNoFailures stops the load and fails the test when any edge request
// failed.
func (l *load) stopNoFailures(t testing.TB) (res *loadtest.Result, failed int64) {
	t.Helper()
	res, failed = l.stop(t)
	if res.Requests == 0 {
		t.Errorf("the load sent no request")
	}
	if failed > 0 {
		t.Errorf("%d of %d edge requests failed (%v), want 0", failed, res.Requests, res.Errors)
	}
	return res, failed
}
