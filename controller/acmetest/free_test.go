package acmetest_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outpost-cdn/outpost/controller"
	"github.com/outpost-cdn/outpost/controller/acmetest"
	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/node"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The tests below run the whole free certificate flow against Pebble: a
// controller elected to issue, the challenge carried to a real edge node
// by the config stream, Pebble's validation authority fetching it from the
// node over HTTP, and the node serving the issued certificate over TLS.

const (
	applying = outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING
	issued   = outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_ISSUED
	failed   = outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_FAILED
)

// waitLimit bounds every wait of these tests.
const waitLimit = 20 * time.Second

// freeEnv is a controller with free certificates from an in-process
// Pebble, one edge node, and an origin that records the challenge paths
// that reach it (none should). Other requests may reach it: a GET that
// races ahead of a redirect the node has not applied yet.
type freeEnv struct {
	ca         *acmetest.CA
	ctl        *controllertest.Env
	api        *controllertest.Clients
	node       *node.Node
	originPort uint32

	mu               sync.Mutex
	originChallenges []string
}

// challengesAtOrigin are the challenge paths that reached the origin.
func (e *freeEnv) challengesAtOrigin() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.originChallenges...)
}

func newFreeEnv(t *testing.T, validity time.Duration, adjust func(*controller.Config)) *freeEnv {
	t.Helper()
	e := &freeEnv{}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			e.mu.Lock()
			e.originChallenges = append(e.originChallenges, r.URL.Path)
			e.mu.Unlock()
		}
		_, _ = io.WriteString(w, "from the origin\n")
	}))
	t.Cleanup(origin.Close)
	e.originPort = uint32(origin.Listener.Addr().(*net.TCPAddr).Port)
	e.ca = acmetest.New(t, acmetest.Options{Validity: validity})
	e.ctl = controllertest.Start(t, func(c *controller.Config) {
		c.OriginPorts = []uint32{80, 443, e.originPort}
		c.AcmeDirectoryURL = e.ca.DirectoryURL
		c.AcmeCARoots = e.ca.TLSRootsPEM
		c.AcmeEmail = "ops@free.test"
		if adjust != nil {
			adjust(c)
		}
	})
	admin, _ := e.ctl.NewAccount(t, "acct")
	e.api = e.ctl.Clients(t, admin)
	n, err := node.Start(context.Background(), node.Config{
		Name:        "edge-1",
		Controllers: []string{e.ctl.Addr},
		JoinToken:   e.ctl.JoinToken(t),
		HTTPAddr:    "127.0.0.1:0",
		HTTPSAddr:   "127.0.0.1:0",
		DataDir:     t.TempDir(),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	e.node = n
	_, port, _ := net.SplitHostPort(n.HTTPAddr())
	p, _ := strconv.Atoi(port)
	// Pebble validates on the node's HTTP port, as a CA would on port 80.
	e.ca.Start(t, p)
	// The issuer waits for connected nodes only: with none yet, it would
	// ask the CA at once and fail on a node that has no challenge.
	eventually(t, "edge-1 connected", func() (bool, string) {
		resp, err := e.api.Nodes.ListNodes(ctxT(t), &outpostv1.ListNodesRequest{})
		if err != nil {
			return false, err.Error()
		}
		for _, n := range resp.GetNodes() {
			if n.GetName() == "edge-1" && n.GetHealth() == outpostv1.NodeHealth_NODE_HEALTH_CONNECTED {
				return true, ""
			}
		}
		return false, fmt.Sprint(resp.GetNodes())
	})
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit+10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// addDomain creates a domain served from the counting origin.
func (e *freeEnv) addDomain(t *testing.T, name string) {
	t.Helper()
	_, err := e.api.Domains.CreateDomain(ctxT(t), &outpostv1.CreateDomainRequest{Name: name, Origins: []*outpostv1.Origin{
		{Type: outpostv1.OriginType_ORIGIN_TYPE_IP, Address: "127.0.0.1", Port: e.originPort},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *freeEnv) enableFree(t *testing.T, name string) *outpostv1.EnableHttpsResponse {
	t.Helper()
	resp, err := e.api.HTTPS.EnableHttps(ctxT(t), &outpostv1.EnableHttpsRequest{Domain: name, Source: &outpostv1.EnableHttpsRequest_Free{Free: true}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// eventually polls cond every 50ms for up to waitLimit; last describes
// what was seen, for the failure message.
func eventually(t *testing.T, what string, cond func() (ok bool, last string)) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStatus waits until the domain's free certificate has status want and
// returns the domain as it was then.
func (e *freeEnv) waitStatus(t *testing.T, name string, want outpostv1.FreeCertificateStatus) *outpostv1.Domain {
	t.Helper()
	var d *outpostv1.Domain
	eventually(t, name+" "+want.String(), func() (bool, string) {
		resp, err := e.api.Domains.GetDomain(ctxT(t), &outpostv1.GetDomainRequest{Name: name})
		if err != nil {
			return false, err.Error()
		}
		d = resp.GetDomain()
		return d.GetHttps().GetFree().GetStatus() == want, d.GetHttps().String()
	})
	return d
}

func (e *freeEnv) settings(t *testing.T, name string) *outpostv1.GetHttpsSettingsResponse {
	t.Helper()
	resp, err := e.api.HTTPS.GetHttpsSettings(ctxT(t), &outpostv1.GetHttpsSettingsRequest{Domain: name})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// get sends a plain HTTP GET for host and path to the node, without
// following redirects.
func (e *freeEnv) get(t *testing.T, host, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, "http://"+e.node.HTTPAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	cl := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	cl.CloseIdleConnections()
	return resp.StatusCode, resp.Header, string(b)
}

// served is the chain the node presents for SNI name (nil when the
// handshake fails).
func (e *freeEnv) served(name string) []*x509.Certificate {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", e.node.HTTPSAddr(), &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates
}

// waitServed waits until the node presents the domain's current
// certificate (as GetHttpsSettings names it) for which ok holds, checks
// that it chains to Pebble's root for the name, and returns the leaf.
func (e *freeEnv) waitServed(t *testing.T, name string, ok func(*outpostv1.Certificate) bool) (*x509.Certificate, *outpostv1.Certificate) {
	t.Helper()
	var leaf *x509.Certificate
	var cert *outpostv1.Certificate
	var chain []*x509.Certificate
	eventually(t, "the node to serve "+name+"'s certificate", func() (bool, string) {
		cert = e.settings(t, name).GetCertificate()
		if cert == nil || !ok(cert) {
			return false, "settings: " + cert.String()
		}
		chain = e.served(name)
		if len(chain) == 0 {
			return false, "no handshake"
		}
		sum := sha256.Sum256(chain[0].Raw)
		return hex.EncodeToString(sum[:]) == cert.GetFingerprintSha256(), "served " + chain[0].SerialNumber.String()
	})
	leaf = chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// At a time within the certificate's life: some are short-lived here.
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: e.ca.Roots(), Intermediates: inter, CurrentTime: leaf.NotBefore.Add(time.Second)}); err != nil {
		t.Fatalf("the served certificate does not chain to Pebble's root for %s: %v", name, err)
	}
	return leaf, cert
}

// TestFreeCertificateIssued: EnableHttps free on a domain with HTTPS off
// leaves HTTPS off while the certificate is APPLYING, then the elected
// controller obtains it from Pebble through a real HTTP-01 validation of
// the edge node, stores it owned by the domain and turns HTTPS on; the
// node presents it for the domain's SNI. Challenges come before forced
// redirects and never reach the origin. Of two controllers, one issues.
// DisableHttps forgets the certificate.
func TestFreeCertificateIssued(t *testing.T) {
	t.Parallel()
	e := newFreeEnv(t, 0, nil)
	peer := e.ctl.StartPeer(t) // a second controller: only one may issue
	const name = "www.free.test"
	e.addDomain(t, name)

	resp := e.enableFree(t, name)
	if f := resp.GetHttps().GetFree(); f.GetStatus() != applying || resp.GetHttps().GetEnabled() || resp.GetCertificate() != nil {
		t.Fatalf("EnableHttps free answered %v, certificate %v; want APPLYING with HTTPS still off", resp.GetHttps(), resp.GetCertificate())
	}
	// Unknown tokens of a domain with a free certificate: the node's 404,
	// once it has the domain's new settings.
	eventually(t, name+" online", func() (bool, string) {
		resp, err := e.api.Domains.GetDomain(ctxT(t), &outpostv1.GetDomainRequest{Name: name})
		return err == nil && resp.GetDomain().GetStatus() == outpostv1.DomainStatus_DOMAIN_STATUS_ONLINE, resp.GetDomain().GetStatus().String()
	})
	if code, _, _ := e.get(t, name, "/.well-known/acme-challenge/no-such-token-0123456789"); code != http.StatusNotFound {
		t.Errorf("unknown challenge token: status %d, want 404", code)
	}

	d := e.waitStatus(t, name, issued)
	h := d.GetHttps()
	if !h.GetEnabled() || !h.GetCertificateOwned() || h.GetFree().GetError() != "" || h.GetFree().GetAttempts() != 0 {
		t.Fatalf("after issuance HTTPS is %v; want on, with a certificate owned by the domain", h)
	}
	leaf, cert := e.waitServed(t, name, func(*outpostv1.Certificate) bool { return true })
	if cert.GetSource() != outpostv1.CertificateSource_CERTIFICATE_SOURCE_ACME || cert.GetOwnerDomain() != name ||
		len(cert.GetDnsNames()) != 1 || cert.GetDnsNames()[0] != name || cert.GetId() != h.GetCertificateId() {
		t.Fatalf("stored certificate %v; want source ACME, owned by and naming %s", cert, name)
	}
	// Renewal 30 days before expiry (Pebble's certificates live 90 days).
	if want := leaf.NotAfter.Add(-720 * time.Hour); h.GetFree().GetNextAttemptTime().AsTime().Sub(want).Abs() > time.Second {
		t.Errorf("next attempt %v, want renewal at %v", h.GetFree().GetNextAttemptTime().AsTime(), want)
	}

	// A forced redirect to HTTPS does not catch challenges.
	if _, err := e.api.HTTPS.SetHttpsRedirect(ctxT(t), &outpostv1.SetHttpsRedirectRequest{Domain: name, Redirect: outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the redirect on the node", func() (bool, string) {
		code, _, _ := e.get(t, name, "/page")
		return code == http.StatusMovedPermanently, strconv.Itoa(code)
	})
	if code, _, body := e.get(t, name, "/.well-known/acme-challenge/no-such-token-0123456789"); code != http.StatusNotFound {
		t.Errorf("unknown challenge token behind a redirect: status %d (%q), want 404", code, body)
	}
	if got := e.challengesAtOrigin(); len(got) != 0 {
		t.Errorf("challenges reached the origin: %q", got)
	}

	// The challenge is withdrawn; the account key is stored sealed.
	st := e.ctl.Controller.Store()
	if kvs, _, err := st.Range(ctxT(t), store.AcmeChallengesPrefix(), "", 0); err != nil || len(kvs) != 0 {
		t.Errorf("challenges left in etcd: %d (%v)", len(kvs), err)
	}
	acct, found, err := st.GetRaw(ctxT(t), store.AcmeAccountKey())
	if err != nil || !found || !strings.Contains(acct, `"kekId"`) || !strings.Contains(acct, `"uri"`) || strings.Contains(acct, "PRIVATE KEY") {
		t.Errorf("ACME account record %q (found %v, %v); want a registered account with a sealed key", acct, found, err)
	}
	if n := strings.Count(e.ctl.Logs.String(), "acme: elected") + strings.Count(peer.Logs.String(), "acme: elected"); n != 1 {
		t.Errorf("%d controllers were elected to issue; want exactly one", n)
	}

	// DisableHttps clears the free certificate and forgets it.
	dis, err := e.api.HTTPS.DisableHttps(ctxT(t), &outpostv1.DisableHttpsRequest{Domain: name})
	if err != nil {
		t.Fatal(err)
	}
	if dis.GetHttps().GetFree() != nil || dis.GetHttps().GetEnabled() {
		t.Errorf("after DisableHttps: %v", dis.GetHttps())
	}
	if _, err := e.api.Certs.GetCertificate(ctxT(t), &outpostv1.GetCertificateRequest{Id: cert.GetId()}); status.Code(err) != codes.NotFound {
		t.Errorf("the free certificate after DisableHttps: %v, want NotFound", err)
	}
}

// TestFreeCertificateValidationFails: when the node cannot answer the
// challenge (here it refuses every config after a broken record, so it
// never has the challenge, and the request goes on to the origin), Pebble's
// validation fails, and the free certificate is FAILED with Pebble's
// reason, HTTPS still off. It is retried with a doubling backoff and issued
// once the node applies configs again. (A disabled domain is not attempted
// at all: TestFreeCertificateWaitsWhileDisabled in the controller package.)
func TestFreeCertificateValidationFails(t *testing.T) {
	t.Parallel()
	const retryMin = 300 * time.Millisecond
	e := newFreeEnv(t, 0, func(c *controller.Config) { c.AcmeRetryMin = retryMin; c.AcmeChallengeWait = 300 * time.Millisecond })
	const name = "off.free.test"
	e.addDomain(t, name)
	// A domain record no node accepts (its name is not a host name),
	// written past the API: the node NACKs every config from now on.
	etcd := e.ctl.Controller.Store().Client()
	broken := store.DomainKey("Not_A_Host")
	if _, err := etcd.Put(ctxT(t), broken, `{"name":"Not_A_Host","origins":[{"type":"ORIGIN_TYPE_IP","address":"192.0.2.1"}]}`); err != nil {
		t.Fatal(err)
	}
	e.enableFree(t, name)

	d := e.waitStatus(t, name, failed)
	f := d.GetHttps().GetFree()
	if !strings.Contains(f.GetError(), "(unauthorized)") {
		t.Errorf("error %q; want Pebble's reason: unauthorized", f.GetError())
	}
	if d.GetHttps().GetEnabled() || f.GetAttempts() < 1 {
		t.Errorf("after a failure HTTPS is %v; want off, with attempts counted", d.GetHttps())
	}
	// The wait before the next attempt doubles with each failure.
	want := retryMin << (f.GetAttempts() - 1)
	if got := f.GetNextAttemptTime().AsTime().Sub(d.GetUpdateTime().AsTime()); (got - want).Abs() > 100*time.Millisecond {
		t.Errorf("after %d failures the next attempt is %v later; want %v", f.GetAttempts(), got, want)
	}

	if _, err := etcd.Delete(ctxT(t), broken); err != nil {
		t.Fatal(err)
	}
	d = e.waitStatus(t, name, issued)
	if !d.GetHttps().GetEnabled() || d.GetHttps().GetFree().GetError() != "" {
		t.Errorf("after the retry HTTPS is %v; want on", d.GetHttps())
	}
	e.waitServed(t, name, func(*outpostv1.Certificate) bool { return true })
}

// TestFreeCertificateRenewed: a certificate that lives six seconds is
// renewed when a third of its life remains, through a forced HTTP→HTTPS
// redirect; the node then serves the new certificate (another serial) and
// the replaced one is deleted.
func TestFreeCertificateRenewed(t *testing.T) {
	t.Parallel()
	e := newFreeEnv(t, 6*time.Second, nil)
	const name = "renew.free.test"
	e.addDomain(t, name)
	e.enableFree(t, name)
	d := e.waitStatus(t, name, issued)
	first, firstCert := e.waitServed(t, name, func(*outpostv1.Certificate) bool { return true })
	life := first.NotAfter.Sub(first.NotBefore)
	if want := first.NotAfter.Add(-life / 3); d.GetHttps().GetFree().GetNextAttemptTime().AsTime().Sub(want).Abs() > time.Second {
		t.Errorf("renewal due at %v; want %v, when a third of its life remains", d.GetHttps().GetFree().GetNextAttemptTime().AsTime(), want)
	}
	if _, err := e.api.HTTPS.SetHttpsRedirect(ctxT(t), &outpostv1.SetHttpsRedirectRequest{Domain: name, Redirect: outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS}); err != nil {
		t.Fatal(err)
	}

	second, _ := e.waitServed(t, name, func(c *outpostv1.Certificate) bool { return c.GetId() != firstCert.GetId() })
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatalf("the renewed certificate has the old serial %v", first.SerialNumber)
	}
	if _, err := e.api.Certs.GetCertificate(ctxT(t), &outpostv1.GetCertificateRequest{Id: firstCert.GetId()}); status.Code(err) != codes.NotFound {
		t.Errorf("the replaced free certificate: %v, want NotFound", err)
	}
	if h := e.settings(t, name).GetHttps(); h.GetRedirect() != outpostv1.RedirectPolicy_REDIRECT_POLICY_HTTPS || !h.GetEnabled() {
		t.Errorf("after renewal HTTPS is %v; want on, the redirect kept", h)
	}
	if got := e.challengesAtOrigin(); len(got) != 0 {
		t.Errorf("challenges reached the origin: %q", got)
	}
}
