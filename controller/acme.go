package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/crypto/acme"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	"github.com/outpost-cdn/outpost/internal/certs"
	"github.com/outpost-cdn/outpost/internal/names"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// Free certificates (EnableHttps with free, seeds/003) come from an ACME CA
// (RFC 8555) with HTTP-01 challenges:
//
//  1. EnableHttps records the request on the domain: HttpsSettings.free is
//     APPLYING and due now. HTTPS stays as it was until a certificate is
//     issued.
//  2. One controller at a time issues: the leader of an etcd election
//     (store.AcmeElectionPrefix). It watches the domains through the config
//     cache and works on those whose free.next_attempt_time has come.
//  3. For each challenge the CA asks for, it writes the key authorization
//     under the config subtree (store.AcmeChallengeKey), so the config
//     stream carries it to every edge node, and waits until the connected
//     nodes have applied that revision (or Config.AcmeChallengeWait). Then it
//     tells the CA to validate, and deletes the challenge once the CA is
//     done. Nodes answer http://<domain>/.well-known/acme-challenge/<token>.
//  4. The certificate is stored as one owned by the domain (as an inline
//     upload is, with its key sealed) and bound in the same transaction:
//     HTTPS is on, free is ISSUED and due again at renewal time.
//  5. A failure makes free FAILED with the CA's reason, due again after a
//     backoff that doubles from Config.AcmeRetryMin up to a day.

// acmeAccountAAD binds the sealed ACME account key to its purpose.
var acmeAccountAAD = []byte("acme-account")

const (
	// acmeConcurrency bounds the certificates the leader obtains at once.
	acmeConcurrency = 4
	// acmeAttemptTimeout bounds one attempt: order, validation, issuance.
	acmeAttemptTimeout = 5 * time.Minute
	// acmeRetryMax caps the backoff after failures.
	acmeRetryMax = 24 * time.Hour
	// acmeIdleRescan is how often the leader looks through the domains
	// when nothing else wakes it, as a safety net.
	acmeIdleRescan = 10 * time.Minute
	// acmeCooldown is the least time between two attempts on one domain by
	// one leader, so that a config cache that lags behind etcd, or an
	// outcome that could not be recorded, never makes it spin.
	acmeCooldown = time.Second
	// acmeElectionTTL is the lease TTL of an election candidate: how long a
	// controller that died keeps the lead.
	acmeElectionTTL = 10 // seconds
	// acmeUserAgent identifies Outpost to the CA.
	acmeUserAgent = "outpost-controller"
)

// acmeTokenPattern is what a challenge token may look like before it is
// used in an etcd key and a URL path (RFC 8555 8.3: base64url).
var acmeTokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{16,256}$`)

// acmeIssuer obtains and renews free certificates while its controller
// leads the election. Only run touches it; the workers it starts share the
// client.
type acmeIssuer struct {
	c    *Controller
	log  *slog.Logger
	http *http.Client

	mu     sync.Mutex
	client *acme.Client // the registered account; nil until loaded this term
}

// newACMEIssuer returns the issuer of c, or nil when free certificates are
// disabled (no directory URL). It fails on unusable CA roots.
func newACMEIssuer(c *Controller) (*acmeIssuer, error) {
	cfg := c.cfg
	if cfg.AcmeDirectoryURL == "" {
		return nil, nil
	}
	roots := cfg.AcmeCARoots
	if cfg.AcmeCARootsFile != "" {
		b, err := os.ReadFile(cfg.AcmeCARootsFile)
		if err != nil {
			return nil, fmt.Errorf("ACME CA roots: %w", err)
		}
		roots = string(b)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if roots != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(roots)) {
			return nil, errors.New("ACME CA roots (-acme-ca-roots-file): no PEM certificate found")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &acmeIssuer{c: c, log: c.log.With("component", "acme"), http: &http.Client{Transport: tr, Timeout: time.Minute}}, nil
}

// run campaigns for the election until ctx ends, and issues while it leads.
func (a *acmeIssuer) run(ctx context.Context) {
	defer a.http.CloseIdleConnections()
	backoff := time.Second
	for ctx.Err() == nil {
		led, err := a.campaign(ctx)
		if ctx.Err() != nil {
			return
		}
		if led {
			backoff = time.Second
		}
		a.log.Warn("acme: not leading the issuer election; campaigning again", "err", err, "retry_in", backoff)
		sleep(ctx, backoff)
		backoff = min(backoff*2, 30*time.Second)
	}
}

// campaign waits to be elected, then leads until ctx ends or the election
// session is lost. led reports whether it was elected.
func (a *acmeIssuer) campaign(ctx context.Context) (led bool, err error) {
	// The session outlives ctx long enough for Close to revoke its lease,
	// so another controller takes over at once, not after the TTL.
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	sess, err := concurrency.NewSession(a.c.cli, concurrency.WithTTL(acmeElectionTTL), concurrency.WithContext(sctx))
	if err != nil {
		return false, err
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, store.AcmeElectionPrefix())
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	go func() {
		select {
		case <-sess.Done():
			ccancel()
		case <-cctx.Done():
		}
	}()
	if err := el.Campaign(cctx, a.c.Addr()); err != nil {
		return false, err
	}
	a.log.Info("acme: elected to issue free certificates", "directory", a.c.cfg.AcmeDirectoryURL)
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer rcancel()
		_ = el.Resign(rctx)
	}()
	a.lead(cctx)
	if ctx.Err() == nil {
		return true, errors.New("election session lost")
	}
	return true, nil
}

// lead works through due free certificates until ctx ends.
func (a *acmeIssuer) lead(ctx context.Context) {
	a.mu.Lock()
	a.client = nil // register (or find) the account again in this term
	a.mu.Unlock()
	// Challenges left by an earlier leader are stale: only the leader
	// writes them, and it waits for none it did not write.
	if _, err := a.c.cli.Delete(ctx, store.AcmeChallengesPrefix(), clientv3.WithPrefix()); err != nil && ctx.Err() == nil {
		a.log.Warn("acme: cannot delete stale challenges", "err", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	inflight := map[string]bool{}
	// cooldown: no attempt on a domain before this time (local clock).
	cooldown := map[string]time.Time{}
	type result struct {
		name      string
		notBefore time.Time
	}
	done := make(chan result)
	for {
		next, _ := a.c.cache.Ready()
		wake := acmeIdleRescan
		if domains, ok := a.c.cache.freeDomains(); ok {
			sort.Slice(domains, func(i, j int) bool {
				return domains[i].GetHttps().GetFree().GetNextAttemptTime().AsTime().Before(domains[j].GetHttps().GetFree().GetNextAttemptTime().AsTime())
			})
			now, local := a.c.cfg.Now(), time.Now()
			for _, d := range domains {
				name := d.GetName()
				if inflight[name] {
					continue
				}
				if wait := d.GetHttps().GetFree().GetNextAttemptTime().AsTime().Sub(now); wait > 0 {
					wake = min(wake, wait)
					continue
				}
				if wait := cooldown[name].Sub(local); wait > 0 {
					wake = min(wake, wait)
					continue
				}
				delete(cooldown, name)
				if len(inflight) >= acmeConcurrency {
					break // a worker's end wakes the loop
				}
				inflight[name] = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := result{name: name, notBefore: a.attempt(ctx, name)}
					select {
					case done <- r:
					case <-ctx.Done():
					}
				}()
			}
		}
		timer := time.NewTimer(wake)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case r := <-done:
			delete(inflight, r.name)
			cooldown[r.name] = r.notBefore
		case <-next:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// attempt obtains (or renews) the free certificate of one domain if it is
// still wanted and due, and records the outcome on the domain. It returns
// the earliest (local) time this leader may try the domain again.
func (a *acmeIssuer) attempt(ctx context.Context, name string) (notBefore time.Time) {
	ctx, cancel := context.WithTimeout(ctx, acmeAttemptTimeout)
	defer cancel()
	c := a.c
	notBefore = time.Now().Add(acmeCooldown)
	// Mark it APPLYING (a renewal or a retry) if it is still due.
	due := false
	if err := c.updateFree(ctx, name, func(d *outpostv1.Domain) bool {
		f := d.GetHttps().GetFree()
		if f.GetNextAttemptTime().AsTime().After(c.cfg.Now()) {
			return false
		}
		due = true
		if f.GetStatus() == outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING {
			return false
		}
		f.Status = outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING
		f.Error = ""
		return true
	}); err != nil || !due {
		if err != nil && ctx.Err() == nil {
			a.log.Warn("acme: cannot start an attempt", "domain", name, "err", err)
		}
		return notBefore
	}
	start := time.Now()
	certPEM, keyPEM, err := a.obtain(ctx, name)
	if err == nil {
		var cert *outpostv1.Certificate
		if cert, err = c.storeFreeCertificate(ctx, name, certPEM, keyPEM); err == nil {
			if cert != nil {
				a.log.Info("acme: free certificate issued", "domain", name, "certificate_id", cert.GetId(),
					"not_after", cert.GetNotAfter().AsTime(), "duration", time.Since(start).Round(time.Millisecond))
			}
			return notBefore
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return notBefore // leadership or the controller went away; the next leader retries
	}
	reason := a.reason(name, err)
	var attempts uint32
	var next time.Time
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	if uerr := c.updateFree(rctx, name, func(d *outpostv1.Domain) bool {
		f := d.GetHttps().GetFree()
		f.Attempts++
		attempts = f.GetAttempts()
		next = c.cfg.Now().Add(a.retryAfter(attempts, err))
		f.Status = outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_FAILED
		f.Error = reason
		f.NextAttemptTime = timestamppb.New(next)
		return true
	}); uerr != nil {
		// Not recorded: back off here all the same, so the CA is not asked
		// again at once.
		a.log.Warn("acme: cannot record a failure", "domain", name, "err", uerr)
		return time.Now().Add(a.retryAfter(1, err))
	}
	a.log.Warn("acme: free certificate failed", "domain", name, "reason", reason, "attempts", attempts, "next_attempt", next)
	return notBefore
}

// retryAfter is the backoff after the nth failure in a row: AcmeRetryMin
// doubled each time, capped at a day, and no sooner than a rate limit's
// Retry-After.
func (a *acmeIssuer) retryAfter(attempts uint32, err error) time.Duration {
	d := a.c.cfg.AcmeRetryMin
	for i := uint32(1); i < attempts && d < acmeRetryMax; i++ {
		d *= 2
	}
	d = min(d, acmeRetryMax)
	if ra, ok := acme.RateLimit(err); ok && ra > d {
		d = ra
	}
	return d
}

// reason turns an attempt's error into what the domain's owner sees: the
// CA's problem detail when the CA refused, else a short description (the
// full error is logged for the operator).
func (a *acmeIssuer) reason(domain string, err error) string {
	var (
		authz *acme.AuthorizationError
		order *acme.OrderError
		prob  *acme.Error
		user  userError
		api   *apierr.Error
	)
	switch {
	case errors.As(err, &authz):
		var parts []string
		for _, e := range authz.Errors {
			var p *acme.Error
			if errors.As(e, &p) {
				parts = append(parts, problemText(p))
			} else {
				parts = append(parts, e.Error())
			}
		}
		if len(parts) == 0 {
			return "the CA could not validate " + domain
		}
		return strings.Join(parts, "; ")
	case errors.As(err, &order) && order.Problem != nil:
		return problemText(order.Problem)
	case errors.As(err, &order):
		return "the CA left the order " + order.Status
	case errors.As(err, &prob):
		return problemText(prob)
	case errors.As(err, &user):
		return user.Error()
	case errors.As(err, &api):
		a.log.Warn("acme: cannot store the issued certificate", "domain", domain, "err", err)
		return "the issued certificate could not be stored: " + api.Message
	case errors.Is(err, context.DeadlineExceeded):
		a.log.Warn("acme: attempt timed out", "domain", domain, "err", err)
		return "timed out waiting for the CA"
	}
	a.log.Warn("acme: attempt failed", "domain", domain, "err", err)
	return "the request to the CA failed; it will be retried"
}

// problemText renders an ACME problem as its detail and short type, with
// its subproblems.
func problemText(p *acme.Error) string {
	typ := strings.TrimPrefix(p.ProblemType, "urn:ietf:params:acme:error:")
	s := p.Detail
	if typ != "" {
		s += " (" + typ + ")"
	}
	for _, sp := range p.Subproblems {
		s += "; " + sp.Detail
	}
	return s
}

// userError is a failure worth showing as it is.
type userError string

func (e userError) Error() string { return string(e) }

// account returns a client for the controllers' ACME account: the stored
// one, or a new one created, registered (terms agreed) and stored sealed.
// Once per term it registers again, which with a known key just finds the
// account.
func (a *acmeIssuer) account(ctx context.Context) (*acme.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.client != nil {
		return a.client, nil
	}
	c := a.c
	cfg := c.cfg
	t := c.store.Begin()
	acct := &storagev1.AcmeAccount{}
	found, err := t.Get(ctx, store.AcmeAccountKey(), acct)
	if err != nil {
		return nil, err
	}
	var key *ecdsa.PrivateKey
	if found && acct.GetDirectoryUrl() == cfg.AcmeDirectoryURL {
		der, err := c.sealer.Open(ctx, acct.GetPrivateKey(), acmeAccountAAD)
		if err != nil {
			return nil, fmt.Errorf("open the ACME account key (is the keyring the same on every controller?): %w", err)
		}
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("ACME account key: %w", err)
		}
		var ok bool
		if key, ok = k.(*ecdsa.PrivateKey); !ok {
			return nil, errors.New("ACME account key: not ECDSA")
		}
	} else if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	cl := &acme.Client{Key: key, DirectoryURL: cfg.AcmeDirectoryURL, HTTPClient: a.http, UserAgent: acmeUserAgent}
	reg := &acme.Account{}
	if cfg.AcmeEmail != "" {
		reg.Contact = []string{"mailto:" + cfg.AcmeEmail}
	}
	if _, err := cl.Register(ctx, reg, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("register with the ACME CA: %w", err)
	}
	if string(cl.KID) != acct.GetUri() || acct.GetEmail() != cfg.AcmeEmail || !found || acct.GetDirectoryUrl() != cfg.AcmeDirectoryURL {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		sealed, err := c.sealer.Seal(ctx, der, acmeAccountAAD)
		if err != nil {
			return nil, err
		}
		t.Put(store.AcmeAccountKey(), &storagev1.AcmeAccount{DirectoryUrl: cfg.AcmeDirectoryURL, Uri: string(cl.KID), Email: cfg.AcmeEmail, PrivateKey: sealed})
		if _, err := t.Commit(ctx); err != nil {
			return nil, fmt.Errorf("store the ACME account: %w", err)
		}
		a.log.Info("acme: account registered", "account", cl.KID, "directory", cfg.AcmeDirectoryURL)
	}
	a.client = cl
	return cl, nil
}

// obtain runs one ACME order for domain and returns the certificate chain
// and a new private key, as PEM.
func (a *acmeIssuer) obtain(ctx context.Context, domain string) (certPEM, keyPEM string, err error) {
	cl, err := a.account(ctx)
	if err != nil {
		return "", "", err
	}
	defer func() {
		var p *acme.Error
		if errors.As(err, &p) && strings.HasSuffix(p.ProblemType, ":accountDoesNotExist") {
			a.mu.Lock()
			a.client = nil // register again next time
			a.mu.Unlock()
		}
	}()
	order, err := cl.AuthorizeOrder(ctx, acme.DomainIDs(domain))
	if err != nil {
		return "", "", err
	}
	for _, u := range order.AuthzURLs {
		if err := a.authorize(ctx, cl, domain, u); err != nil {
			return "", "", err
		}
	}
	if order, err = cl.WaitOrder(ctx, order.URI); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{domain}}, key)
	if err != nil {
		return "", "", err
	}
	ders, _, err := cl.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		return "", "", err
	}
	var chain strings.Builder
	for _, der := range ders {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	return chain.String(), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})), nil
}

// authorize completes one authorization of an order with HTTP-01: publish
// the key authorization to the nodes, wait for them, ask the CA to
// validate, wait for its verdict, and withdraw the challenge.
func (a *acmeIssuer) authorize(ctx context.Context, cl *acme.Client, domain, url string) error {
	z, err := cl.GetAuthorization(ctx, url)
	if err != nil {
		return err
	}
	switch z.Status {
	case acme.StatusValid:
		return nil // validated recently for this account
	case acme.StatusPending:
	case acme.StatusInvalid:
		_, err := cl.WaitAuthorization(ctx, url) // returns at once, with the CA's reasons
		return err
	default:
		return userError(fmt.Sprintf("the CA's authorization for %s is %s", domain, z.Status))
	}
	var chal *acme.Challenge
	for _, ch := range z.Challenges {
		if ch.Type == "http-01" {
			chal = ch
		}
	}
	if chal == nil {
		return userError(fmt.Sprintf("the CA offered no http-01 challenge for %s", domain))
	}
	if !acmeTokenPattern.MatchString(chal.Token) {
		return userError("the CA sent a malformed challenge token")
	}
	keyAuth, err := cl.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		return err
	}
	b, err := store.Encode(&outpostv1.AcmeChallenge{Token: chal.Token, Domain: domain, KeyAuthorization: keyAuth})
	if err != nil {
		return err
	}
	// Plain writes: only the leader writes challenges.
	key := store.AcmeChallengeKey(chal.Token)
	resp, err := a.c.cli.Put(ctx, key, string(b))
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := a.c.cli.Delete(dctx, key); err != nil {
			a.log.Warn("acme: cannot delete a challenge; the next leader will", "domain", domain, "err", err)
		}
	}()
	a.waitApplied(ctx, resp.Header.Revision)
	if _, err := cl.Accept(ctx, chal); err != nil {
		return err
	}
	_, err = cl.WaitAuthorization(ctx, url)
	return err
}

// waitApplied waits until every connected edge node has applied config
// revision rev, for up to AcmeChallengeWait: the CA may ask any of them.
func (a *acmeIssuer) waitApplied(ctx context.Context, rev int64) {
	deadline := time.Now().Add(a.c.cfg.AcmeChallengeWait)
	poll := 20 * time.Millisecond
	for {
		nodes, err := a.c.listNodes(ctx)
		behind, connected := 0, 0
		for _, n := range nodes {
			if n.GetHealth() != outpostv1.NodeHealth_NODE_HEALTH_CONNECTED {
				continue
			}
			connected++
			if n.GetAppliedRevision() < rev {
				behind++
			}
		}
		if err == nil && behind == 0 {
			if connected == 0 {
				a.log.Warn("acme: no edge node is connected to answer the challenge")
			}
			return
		}
		if time.Now().After(deadline) {
			a.log.Warn("acme: edge nodes did not apply the challenge in time; asking the CA anyway",
				"revision", rev, "behind", behind, "connected", connected, "err", err)
			return
		}
		sleep(ctx, poll)
		if ctx.Err() != nil {
			return
		}
		poll = min(poll*2, 200*time.Millisecond)
	}
}

// updateFree is the read-modify-write of a domain's free certificate state
// by the issuer, retried on conflicts. fn changes the domain's
// HttpsSettings.free (never nil when fn runs) and reports whether to write.
// A domain that is gone or no longer wants a free certificate is left alone.
func (c *Controller) updateFree(ctx context.Context, name string, fn func(d *outpostv1.Domain) bool) error {
	for range 5 {
		t := c.store.Begin()
		d := &outpostv1.Domain{}
		found, err := t.Get(ctx, store.DomainKey(name), d)
		if err != nil {
			return err
		}
		if !found || d.GetHttps().GetFree() == nil || !fn(d) {
			return nil
		}
		d.UpdateTime = c.timestamp()
		d.Revision = 0
		d.Status = storedStatus(d.Status)
		t.Put(store.DomainKey(name), d)
		if _, err = t.Commit(ctx); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return store.ErrConflict
}

// storeFreeCertificate stores a certificate the CA issued for domain as the
// domain's own and binds it, HTTPS on, in one transaction (retried on
// conflicts). The certificate it replaces is unbound, and deleted if the
// domain owned it. It returns nil, nil when the domain no longer wants a
// free certificate: the new one is dropped.
func (c *Controller) storeFreeCertificate(ctx context.Context, name, certPEM, keyPEM string) (*outpostv1.Certificate, error) {
	for range 5 {
		t := c.store.Begin()
		d := &outpostv1.Domain{}
		found, err := t.Get(ctx, store.DomainKey(name), d)
		if err != nil {
			return nil, err
		}
		if !found || d.GetHttps().GetFree() == nil {
			c.log.Info("acme: the domain no longer wants a free certificate; dropping the one issued", "domain", name)
			return nil, nil
		}
		cert, err := c.addACMECertificate(ctx, t, d.GetAccount(), name, certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		if !coversDomain(cert, name) {
			return nil, userError(fmt.Sprintf("the CA issued a certificate for %v, not %s", cert.GetDnsNames(), name))
		}
		if err := c.unbindCertificate(ctx, t, d); err != nil {
			return nil, err
		}
		t.PutRaw(store.CertDomainKey(cert.GetId(), name), "")
		d.Https = &outpostv1.HttpsSettings{
			Enabled:          true,
			CertificateId:    cert.GetId(),
			Redirect:         d.GetHttps().GetRedirect(),
			CertificateOwned: true,
			Free: &outpostv1.FreeCertificate{
				Status:          outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_ISSUED,
				NextAttemptTime: timestamppb.New(renewalTime(cert.GetNotBefore().AsTime(), cert.GetNotAfter().AsTime(), c.cfg.AcmeRenewBefore)),
			},
		}
		d.UpdateTime = c.timestamp()
		d.Revision = 0
		d.Status = storedStatus(d.Status)
		t.Put(store.DomainKey(name), d)
		rev, err := t.Commit(ctx)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		cert.Revision = rev
		return cert, nil
	}
	return nil, store.ErrConflict
}

// renewalTime is when a certificate valid from notBefore to notAfter is
// renewed: renewBefore ahead of its expiry, or when a third of its life
// remains if that is later (short-lived certificates).
func renewalTime(notBefore, notAfter time.Time, renewBefore time.Duration) time.Time {
	return notAfter.Add(-min(renewBefore, notAfter.Sub(notBefore)/3))
}

// addACMECertificate validates an issued certificate and its key, seals the
// key, and queues the certificate's writes on t: a certificate owned by
// domain, as an inline upload is, whose source is ACME. The certificate is
// described by addCertificate itself, on a transaction that is then thrown
// away, so that free and uploaded certificates never differ in anything
// but their source; the key is sealed again under the same ID for t.
func (c *Controller) addACMECertificate(ctx context.Context, t *store.Txn, account, domain, certPEM, keyPEM string) (*outpostv1.Certificate, error) {
	cert, err := c.addCertificate(ctx, c.store.Begin(), account, domain, certPEM, keyPEM, domain)
	if err != nil {
		return nil, err
	}
	parsed, err := certs.ParsePair([]byte(certPEM), []byte(keyPEM), c.cfg.Now())
	if err != nil {
		return nil, err
	}
	id := cert.GetId()
	sealed, err := c.sealer.Seal(ctx, parsed.KeyPEM, []byte(id))
	if err != nil {
		return nil, err
	}
	cert.Source = outpostv1.CertificateSource_CERTIFICATE_SOURCE_ACME
	if _, err := t.Guard(ctx, store.CertKey(id)); err != nil {
		return nil, err
	}
	t.Put(store.CertKey(id), &storagev1.StoredCertificate{Certificate: cert, PrivateKey: sealed})
	t.PutRaw(store.AccountCertKey(account, id), "")
	return cert, nil
}

// enableFreeHTTPS is EnableHttps with free: it asks for a free certificate
// for d. HTTPS stays as it is until the certificate is issued. Asking again
// while one is being obtained or is issued changes nothing; asking again
// after a failure retries at once.
func (c *Controller) enableFreeHTTPS(d *outpostv1.Domain) error {
	if c.cfg.AcmeDirectoryURL == "" {
		return apierr.FailedPrecondition(apierr.ReasonFreeCertificatesDisabled,
			"free certificates are not available: the operator has configured no ACME CA on this controller (-acme-directory-url)")
	}
	if names.IsWildcard(d.GetName()) {
		return apierr.InvalidArgument(apierr.ReasonFreeCertificateWildcard,
			"free certificates are validated over HTTP (HTTP-01), which cannot prove control of a wildcard name such as %s; upload a certificate instead", d.GetName()).With("domain", d.GetName())
	}
	h := d.GetHttps()
	if h == nil {
		h = &outpostv1.HttpsSettings{}
		d.Https = h
	}
	f := h.GetFree()
	switch f.GetStatus() {
	case outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING, outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_ISSUED:
		return nil
	case outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_FAILED:
		f.Status = outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING
		f.Error = ""
		f.NextAttemptTime = c.timestamp()
		return nil
	}
	h.Free = &outpostv1.FreeCertificate{Status: outpostv1.FreeCertificateStatus_FREE_CERTIFICATE_STATUS_APPLYING, NextAttemptTime: c.timestamp()}
	return nil
}
