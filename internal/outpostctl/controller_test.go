package outpostctl

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	"github.com/outpost-cdn/outpost/internal/clusterpki"
	"github.com/outpost-cdn/outpost/internal/leakcheck"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// cli runs outpostctl against one controller with one token.
type cli struct {
	t     *testing.T
	addr  string
	ca    string // the cluster CA's PEM file, for OUTPOST_TLS_CA
	token string
}

func (c cli) run(args ...string) result {
	c.t.Helper()
	return runCLI(c.t, map[string]string{envController: c.addr, envToken: c.token, envTLSCA: c.ca}, args...)
}

// caFile writes env's cluster CA certificate to a file.
func caFile(t *testing.T, env *controllertest.Env) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "ca.pem", []byte(env.CAPEM()))
}

// ok runs a command that must succeed and returns its stdout.
func (c cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	wantOK(c.t, r)
	return r.stdout
}

// json runs a command with -o json and parses its stdout into resp.
func (c cli) json(resp proto.Message, args ...string) {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	if err := protojson.Unmarshal([]byte(out), resp); err != nil {
		c.t.Fatalf("outpostctl %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestAgainstController drives the real command tree against a real
// controller. The subtests share the controller; each uses its own account.
func TestAgainstController(t *testing.T) {
	env := controllertest.Start(t)
	operator := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: env.OperatorToken}

	t.Run("Domains", func(t *testing.T) {
		admin, _ := env.NewAccount(t, "domains")
		c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}

		var created outpostv1.CreateDomainResponse
		c.json(&created, "domain", "add", "a.example.com",
			"--origin", "ip:203.0.113.10",
			"--origin", "domain:origin.example.com:443,backup,weight=20",
			"--business-type", "download", "--scope", "global")
		d := created.GetDomain()
		if d.GetName() != "a.example.com" || d.GetCname() == "" ||
			d.GetBusinessType() != outpostv1.BusinessType_BUSINESS_TYPE_DOWNLOAD || d.GetScope() != outpostv1.Scope_SCOPE_GLOBAL {
			t.Fatalf("created %v", d)
		}
		if got := originSpecs(d.GetOrigins()); len(got) != 2 ||
			!strings.HasPrefix(got[0], "ip:203.0.113.10") || !strings.HasPrefix(got[1], "domain:origin.example.com:443,backup,weight=20") {
			t.Fatalf("created origins %v", got)
		}

		var got outpostv1.GetDomainResponse
		c.json(&got, "domain", "get", "a.example.com")
		if got.GetDomain().GetCname() != d.GetCname() || !proto.Equal(&outpostv1.GetDomainResponse{Domain: &outpostv1.Domain{Origins: got.GetDomain().GetOrigins()}},
			&outpostv1.GetDomainResponse{Domain: &outpostv1.Domain{Origins: d.GetOrigins()}}) {
			t.Fatalf("get %v, created %v", got.GetDomain(), d)
		}
		view := c.ok("domain", "get", "a.example.com")
		for _, want := range []string{"Name:", "a.example.com", "CNAME:", d.GetCname(), "Business type:", "download", "global", "domain:origin.example.com:443,backup,weight=20", "HTTPS:", "off"} {
			if !strings.Contains(view, want) {
				t.Errorf("domain get lacks %q:\n%s", want, view)
			}
		}

		c.ok("domain", "add", "b.example.com", "--origin", "ip:203.0.113.11")
		c.ok("domain", "add", "c.example.com", "--origin", "ip:[2001:db8::1]:443")
		var list outpostv1.ListDomainsResponse
		c.json(&list, "domain", "list", "--page-size", "1")
		var listed []string
		for _, d := range list.GetDomains() {
			listed = append(listed, d.GetName())
		}
		if strings.Join(listed, " ") != "a.example.com b.example.com c.example.com" || list.GetNextPageToken() != "" {
			t.Fatalf("domain list in pages of one: %v (next %q)", listed, list.GetNextPageToken())
		}
		table := c.ok("domain", "ls")
		if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME ") || !strings.Contains(lines[3], "ip:[2001:db8::1]:443") {
			t.Fatalf("domain list table:\n%s", table)
		}

		var disabled outpostv1.DisableDomainResponse
		c.json(&disabled, "domain", "disable", "a.example.com")
		if disabled.GetDomain().GetStatus() != outpostv1.DomainStatus_DOMAIN_STATUS_OFFLINE {
			t.Fatalf("disable: status %v", disabled.GetDomain().GetStatus())
		}
		if out := c.ok("domain", "enable", "a.example.com"); out != "Domain a.example.com is configuring.\n" && out != "Domain a.example.com is online.\n" {
			t.Fatalf("enable printed %q", out)
		}

		r := c.run("domain", "add", "a.example.com", "--origin", "ip:203.0.113.12")
		wantFail(t, r, exitError, "Error: AlreadyExists (DomainAlreadyExist): ")

		r = c.run("domain", "add", "d.example.com", "--origin", "domain:d.example.com")
		wantFail(t, r, exitError, "Error: InvalidArgument (OriginLoop): ")

		if out := c.ok("domain", "remove", "a.example.com"); out != "Removed domain a.example.com.\n" {
			t.Fatalf("remove printed %q", out)
		}
		r = c.run("domain", "get", "a.example.com")
		wantFail(t, r, exitError, "Error: NotFound (DomainNotFound): ")
		var empty outpostv1.DeleteDomainResponse
		c.json(&empty, "domain", "remove", "b.example.com")
	})

	t.Run("Auth", func(t *testing.T) {
		admin, readOnly := env.NewAccount(t, "auth")
		cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}.ok("domain", "add", "auth.example.com", "--origin", "ip:203.0.113.10")

		r := cli{t: t, addr: env.Addr, ca: caFile(t, env)}.run("domain", "list")
		wantFail(t, r, exitError, "Error: Unauthenticated (MissingCredentials): ")

		r = cli{t: t, addr: env.Addr, ca: caFile(t, env), token: "not-a-token"}.run("domain", "list")
		wantFail(t, r, exitError, "Error: Unauthenticated (InvalidToken): ")

		ro := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: readOnly}
		if out := ro.ok("domain", "list"); !strings.Contains(out, "auth.example.com") {
			t.Fatalf("read-only list:\n%s", out)
		}
		r = ro.run("domain", "add", "ro.example.com", "--origin", "ip:203.0.113.10")
		wantFail(t, r, exitError, "Error: PermissionDenied (ReadOnlyToken): ")
		r = ro.run("domain", "disable", "auth.example.com")
		wantFail(t, r, exitError, "Error: PermissionDenied (ReadOnlyToken): ")

		// The --token flag wins over OUTPOST_TOKEN.
		r = ro.run("--token", admin, "domain", "disable", "auth.example.com")
		wantOK(t, r)
	})

	t.Run("CertificatesAndHTTPS", func(t *testing.T) {
		admin, _ := env.NewAccount(t, "certs")
		c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}
		c.ok("domain", "add", "www.example.com", "--origin", "ip:203.0.113.10")

		dir := t.TempDir()
		pair := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com", "example.com"}})
		certFile := writeFile(t, dir, "www.pem", pair.ChainPEM)
		keyFile := writeFile(t, dir, "www.key", pair.KeyPEM)

		id := strings.TrimSpace(c.ok("cert", "upload", "--name", "www", "--cert", certFile, "--key", keyFile))
		if id == "" || strings.ContainsAny(id, " \n") {
			t.Fatalf("cert upload printed %q, want the ID alone", id)
		}
		var got outpostv1.GetCertificateResponse
		c.json(&got, "cert", "get", id)
		if got.GetCertificate().GetName() != "www" || strings.Join(got.GetCertificate().GetDnsNames(), ",") != "www.example.com,example.com" {
			t.Fatalf("cert get: %v", got.GetCertificate())
		}
		if view := c.ok("cert", "get", id); !strings.Contains(view, "www.example.com") || !strings.Contains(view, "days left") {
			t.Fatalf("cert get view:\n%s", view)
		}
		if pem := c.ok("cert", "get", id, "--pem"); !strings.HasPrefix(pem, "-----BEGIN CERTIFICATE-----") {
			t.Fatalf("cert get --pem:\n%s", pem)
		}
		var list outpostv1.ListCertificatesResponse
		c.json(&list, "cert", "list")
		if len(list.GetCertificates()) != 1 || list.GetCertificates()[0].GetId() != id {
			t.Fatalf("cert list: %v", list.GetCertificates())
		}

		// A key that does not match the certificate.
		other := certstest.Issue(t, certstest.Options{DNSNames: []string{"www.example.com"}})
		otherKey := writeFile(t, dir, "other.key", other.KeyPEM)
		r := c.run("cert", "upload", "--cert", certFile, "--key", otherKey)
		wantFail(t, r, exitError, "Error: InvalidArgument (CertificateKeyMismatch): ")

		var enabled outpostv1.EnableHttpsResponse
		c.json(&enabled, "https", "enable", "www.example.com", "--cert-id", id)
		if !enabled.GetHttps().GetEnabled() || enabled.GetHttps().GetCertificateId() != id {
			t.Fatalf("https enable: %v", enabled.GetHttps())
		}
		if out := c.ok("https", "redirect", "www.example.com", "--to", "https"); !strings.Contains(out, "HTTP redirected to HTTPS") {
			t.Fatalf("https redirect:\n%s", out)
		}
		if out := c.ok("https", "get", "www.example.com"); !strings.Contains(out, id) || !strings.Contains(out, "HTTPS:") {
			t.Fatalf("https get:\n%s", out)
		}
		r = c.run("cert", "delete", id)
		wantFail(t, r, exitError, "Error: FailedPrecondition (CertificateInUse): ")

		// An inline certificate belongs to the domain.
		c.json(&enabled, "https", "enable", "www.example.com", "--cert", certFile, "--key", keyFile, "--cert-name", "inline")
		if !enabled.GetHttps().GetCertificateOwned() || enabled.GetHttps().GetCertificateId() == id {
			t.Fatalf("inline https enable: %v", enabled.GetHttps())
		}
		var disabled outpostv1.DisableHttpsResponse
		c.json(&disabled, "https", "disable", "www.example.com")
		if disabled.GetHttps().GetEnabled() {
			t.Fatalf("https disable: %v", disabled.GetHttps())
		}
		if out := c.ok("cert", "delete", id); out != "Deleted certificate "+id+".\n" {
			t.Fatalf("cert delete printed %q", out)
		}
		r = c.run("cert", "get", id)
		wantFail(t, r, exitError, "Error: NotFound (CertificateNotFound): ")
	})

	t.Run("CertificateCenter", func(t *testing.T) {
		admin, readOnly := env.NewAccount(t, "certcenter")
		c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}
		domains := []string{"a.center.example.com", "b.center.example.com", "other.example.org"}
		for _, n := range domains {
			c.ok("domain", "add", n, "--origin", "ip:203.0.113.10")
		}
		dir := t.TempDir()
		p1 := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.center.example.com"}, NotAfter: time.Now().Add(10 * 24 * time.Hour)})
		id := strings.TrimSpace(c.ok("cert", "upload", "--name", "center", "--cert", writeFile(t, dir, "p1.pem", p1.CertPEM), "--key", writeFile(t, dir, "p1.key", p1.KeyPEM)))

		// One domain refused: every result printed, exit status 1.
		r := c.run("cert", "deploy", id, "--domains", strings.Join(domains, ","))
		wantFail(t, r, exitError, "Error: 1 of 3 domain(s) refused the certificate")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 5 || strings.Join(strings.Fields(lines[0]), " ") != "DOMAIN RESULT REASON MESSAGE" ||
			!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "a.center.example.com deployed -") ||
			!strings.HasPrefix(strings.Join(strings.Fields(lines[3]), " "), "other.example.org refused CertificateDomainMismatch certificate "+id) ||
			!strings.HasPrefix(lines[4], "Deployed "+id+" to 2 domain(s) at revision ") {
			t.Fatalf("cert deploy printed:\n%s", r.stdout)
		}
		var dep outpostv1.DeployCertificateResponse
		c.json(&dep, "cert", "deploy", id, "--domains", "a.center.example.com", "--domains", "B.center.example.com")
		if len(dep.GetResults()) != 2 || !dep.GetResults()[1].GetDeployed() || dep.GetResults()[1].GetDomain() != "b.center.example.com" || dep.GetRevision() == 0 {
			t.Fatalf("cert deploy -o json: %v", &dep)
		}
		names := writeFile(t, dir, "names.txt", []byte("# the center\na.center.example.com\n\nb.center.example.com, a.center.example.com\n"))
		if out := c.ok("cert", "deploy", id, "--domains-file", names); !strings.Contains(out, "to 3 domain(s)") {
			t.Fatalf("cert deploy --domains-file:\n%s", out)
		}

		if out := c.ok("cert", "domains", id); out != "DOMAIN\na.center.example.com\nb.center.example.com\n" {
			t.Fatalf("cert domains printed %q", out)
		}
		ro := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: readOnly}
		table := ro.ok("cert", "https-domains")
		lines = strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "DOMAIN CERTIFICATE NAME STATE NOT-AFTER LEFT TRUST" ||
			!strings.Contains(lines[1], "expiring") || !strings.Contains(lines[1], "untrusted") || !strings.Contains(lines[2], "b.center.example.com") {
			t.Fatalf("cert https-domains:\n%s", table)
		}
		view := ro.ok("cert", "info", "a.center.example.com")
		for _, want := range []string{"HTTPS:", "on", "Certificate:", id, "State:", "expiring", "Remaining:", "9d", "Chain trust:", "untrusted", "Source:", "uploaded"} {
			if !strings.Contains(view, want) {
				t.Errorf("cert info lacks %q:\n%s", want, view)
			}
		}
		if view := ro.ok("cert", "info", "other.example.org"); !strings.Contains(view, "HTTPS:") || strings.Contains(view, "Certificate:") {
			t.Fatalf("cert info of a plain domain:\n%s", view)
		}
		stats := ro.ok("cert", "stats")
		for _, want := range []string{"Certificates:", "1", "Expired:", "0, served by 0 domain(s)", "Expiring within 30 days:", "1, served by 2 domain(s)"} {
			if !strings.Contains(stats, want) {
				t.Errorf("cert stats lacks %q:\n%s", want, stats)
			}
		}
		out := ro.ok("cert", "expiring")
		lines = strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "Warning: 1 certificate(s) expired or expire within 30d (0 expired), served by 2 domain(s).") ||
			!strings.HasPrefix(lines[2], id) || strings.Fields(lines[2])[len(strings.Fields(lines[2]))-1] != "2" {
			t.Fatalf("cert expiring:\n%s", out)
		}
		if out := ro.ok("cert", "expiring", "--within", "7d"); out != "No certificate expires within 7d.\n" {
			t.Fatalf("cert expiring --within 7d printed %q", out)
		}
		var expiring outpostv1.ListCertificatesResponse
		ro.json(&expiring, "cert", "expiring", "--within", "10d")
		if len(expiring.GetCertificates()) != 1 || expiring.GetCertificates()[0].GetId() != id {
			t.Fatalf("cert expiring -o json: %v", &expiring)
		}
		var list outpostv1.ListCertificatesResponse
		ro.json(&list, "cert", "list", "--covers", "b.center.example.com", "--state", "expiring", "--name-contains", "CENT")
		if len(list.GetCertificates()) != 1 {
			t.Fatalf("cert list with filters: %v", list.GetCertificates())
		}
		if out := ro.ok("cert", "list", "--state", "expired"); out != "No certificate matches.\n" {
			t.Fatalf("cert list --state expired printed %q", out)
		}
		if out := ro.ok("cert", "list"); !strings.Contains(out, "STATE") || !strings.Contains(out, "expiring") {
			t.Fatalf("cert list:\n%s", out)
		}

		// Renewal with the same key, then with a new one.
		p2 := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.center.example.com"}, Key: p1.Key})
		out = c.ok("cert", "renew", id, "--cert", writeFile(t, dir, "p2.pem", p2.CertPEM))
		if !strings.HasPrefix(out, "Renewed certificate "+id+" to version 2, valid until ") || !strings.Contains(out, "2 domain(s) moved to it.") || !strings.Contains(out, "Version:") {
			t.Fatalf("cert renew printed:\n%s", out)
		}
		p3 := certstest.Issue(t, certstest.Options{DNSNames: []string{"*.center.example.com"}})
		var renewed outpostv1.RenewCertificateResponse
		c.json(&renewed, "cert", "renew", id, "--cert", writeFile(t, dir, "p3.pem", p3.CertPEM), "--key", writeFile(t, dir, "p3.key", p3.KeyPEM))
		if renewed.GetCertificate().GetVersion() != 3 || strings.Join(renewed.GetDomains(), ",") != "a.center.example.com,b.center.example.com" {
			t.Fatalf("cert renew -o json: %v", &renewed)
		}
		narrow := certstest.Issue(t, certstest.Options{DNSNames: []string{"a.center.example.com"}, Key: p3.Key})
		r = c.run("cert", "renew", id, "--cert", writeFile(t, dir, "narrow.pem", narrow.CertPEM))
		wantFail(t, r, exitError, "Error: InvalidArgument (CertificateDomainMismatch): ")
		if !strings.Contains(r.stderr, "b.center.example.com") {
			t.Fatalf("the refusal does not name the uncovered domain: %s", r.stderr)
		}
		r = c.run("cert", "renew", id, "--cert", writeFile(t, dir, "p1.pem", p1.CertPEM))
		wantFail(t, r, exitError, "Error: InvalidArgument (CertificateKeyMismatch): ")
		r = ro.run("cert", "deploy", id, "--domains", "a.center.example.com")
		wantFail(t, r, exitError, "Error: PermissionDenied (ReadOnlyToken): ")
		r = c.run("cert", "deploy", "cert-0000000000000000", "--domains", "a.center.example.com")
		wantFail(t, r, exitError, "Error: NotFound (CertificateNotFound): ")
	})

	t.Run("Origins", func(t *testing.T) {
		admin, _ := env.NewAccount(t, "origins")
		c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}
		c.ok("domain", "add", "o.example.com", "--origin", "ip:203.0.113.10")

		var set outpostv1.SetOriginsResponse
		c.json(&set, "origin", "set", "o.example.com", "--origin", "domain:origin.example.com:443", "--origin", "ip:203.0.113.20,backup")
		if got := originSpecs(set.GetOrigins()); len(got) != 2 || !strings.HasPrefix(got[0], "domain:origin.example.com:443") {
			t.Fatalf("origin set: %v", got)
		}
		var sni outpostv1.SetOriginSniResponse
		c.json(&sni, "origin", "sni", "o.example.com", "--value", "origin.example.com")
		if !sni.GetSettings().GetSni().GetEnabled() || sni.GetSettings().GetSni().GetValue() != "origin.example.com" {
			t.Fatalf("origin sni: %v", sni.GetSettings())
		}
		c.ok("origin", "host", "o.example.com", "--value", "origin.example.com")
		c.ok("origin", "protocol", "o.example.com", "--policy", "https")
		ca := certstest.NewCA(t, "origin CA")
		c.ok("origin", "verify", "o.example.com", "--ca", writeFile(t, t.TempDir(), "ca.pem", ca.CertPEM))

		view := c.ok("origin", "get", "o.example.com")
		for _, want := range []string{"domain:origin.example.com:443", "ip:203.0.113.20", "backup", "Origin SNI:", "Origin Host header:", "Origin protocol:", "https", "1 custom CA certificate"} {
			if !strings.Contains(view, want) {
				t.Errorf("origin get lacks %q:\n%s", want, view)
			}
		}
		c.ok("origin", "sni", "o.example.com", "--disable")
		c.ok("origin", "host", "o.example.com", "--default")
		var verify outpostv1.SetOriginVerifyResponse
		c.json(&verify, "origin", "verify", "o.example.com", "--off")
		if !verify.GetSettings().GetSkipVerify() {
			t.Fatalf("origin verify --off: %v", verify.GetSettings())
		}
		var got outpostv1.GetOriginSettingsResponse
		c.json(&got, "origin", "get", "o.example.com")
		s := got.GetSettings()
		if s.GetSni().GetEnabled() || s.GetHostHeader() != "" || s.GetProtocolPolicy() != outpostv1.OriginProtocolPolicy_ORIGIN_PROTOCOL_POLICY_HTTPS {
			t.Fatalf("origin settings after resets: %v", s)
		}
	})

	t.Run("PKI", func(t *testing.T) {
		// The CA, as a file to trust, and its pin.
		if out := operator.ok("pki", "ca"); out != env.CAPEM() {
			t.Fatalf("pki ca:\n%s", out)
		}
		pin := strings.TrimSpace(operator.ok("pki", "ca", "--pin"))
		var tok outpostv1.CreateJoinTokenResponse
		operator.json(&tok, "node", "join-token", "create", "--name", "edge-cli", "--ttl", "10m")
		if !strings.HasPrefix(tok.GetToken(), "OPJ1-") || tok.GetCaPin() != pin || !strings.HasPrefix(tok.GetTokenId(), "join-") {
			t.Fatalf("join token: %v (pin %s)", &tok, pin)
		}
		if out := operator.ok("node", "join-token", "create", "--role", "scheduler"); !strings.Contains(out, "OPJ1-") || !strings.Contains(out, pin) {
			t.Fatalf("join-token create:\n%s", out)
		}
		r := operator.run("node", "join-token", "create", "--role", "admin")
		wantFail(t, r, exitUsage, `Error: invalid argument "admin" for "--role" flag`)
		admin, _ := env.NewAccount(t, "pki")
		r = cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}.run("node", "join-token", "create")
		wantFail(t, r, exitError, "Error: PermissionDenied (OperatorOnly): ")

		// A member joins with it; the operator lists and revokes it.
		id, err := clusterpki.NewIdentity(clusterpki.MemberConfig{Name: "edge-cli", Role: outpostv1.MemberRole_MEMBER_ROLE_NODE,
			Controllers: []string{env.Addr}, JoinToken: tok.GetToken(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := id.Ensure(t.Context()); err != nil {
			t.Fatal(err)
		}
		if out := operator.ok("node", "certs", "--name", "edge-cli"); !strings.Contains(out, clusterpki.SerialHex(id.Certificate())) || !strings.Contains(out, "node") {
			t.Fatalf("node certs:\n%s", out)
		}
		if out := operator.ok("node", "revoke", "edge-cli"); !strings.Contains(out, "Revoked 1 certificate(s) of edge-cli.") {
			t.Fatalf("node revoke:\n%s", out)
		}
		var list outpostv1.ListMemberCertificatesResponse
		operator.json(&list, "node", "certs")
		if len(list.GetCertificates()) != 1 || list.GetCertificates()[0].GetRevokeTime() == nil {
			t.Fatalf("certs after revoke: %v", &list)
		}
		// Node bearer tokens are gone.
		r = operator.run("token", "create", "--role", "node")
		wantFail(t, r, exitError, "Error: FailedPrecondition (NodeTokensReplaced): ")
	})

	t.Run("AccountsAndTokens", func(t *testing.T) {
		var acct outpostv1.CreateAccountResponse
		operator.json(&acct, "account", "create", "acme", "--display-name", "ACME Corp", "--domain-quota", "5")
		if acct.GetAccount().GetId() != "acme" || acct.GetAccount().GetDomainQuota() != 5 {
			t.Fatalf("account create: %v", acct.GetAccount())
		}
		r := operator.run("account", "create", "acme")
		wantFail(t, r, exitError, "Error: AlreadyExists (AccountAlreadyExist): ")
		if out := operator.ok("account", "quota", "acme", "7"); !strings.Contains(out, "0 of 7") {
			t.Fatalf("account quota:\n%s", out)
		}
		if out := operator.ok("account", "list"); !strings.Contains(out, "acme") || !strings.Contains(out, "ACME Corp") {
			t.Fatalf("account list:\n%s", out)
		}

		out := operator.ok("token", "create", "--account", "acme", "--role", "admin", "--description", "ci")
		if !strings.Contains(out, "will not be shown again") {
			t.Fatalf("token create:\n%s", out)
		}
		var tok outpostv1.CreateTokenResponse
		operator.json(&tok, "token", "create", "--account", "acme", "--role", "read-only")
		if tok.GetSecret() == "" || tok.GetToken().GetRole() != outpostv1.Role_ROLE_READ_ONLY {
			t.Fatalf("token create -o json: %v", &tok)
		}
		// The secret printed in table mode works.
		var secret string
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "    ") {
				secret = strings.TrimSpace(line)
			}
		}
		user := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: secret}
		var who outpostv1.WhoAmIResponse
		user.json(&who, "whoami")
		if who.GetToken().GetAccount() != "acme" || who.GetToken().GetRole() != outpostv1.Role_ROLE_ADMIN || who.GetToken().GetDescription() != "ci" {
			t.Fatalf("whoami: %v", who.GetToken())
		}
		if out := user.ok("account", "get", "acme"); !strings.Contains(out, "ACME Corp") {
			t.Fatalf("account get:\n%s", out)
		}

		var tokens outpostv1.ListTokensResponse
		operator.json(&tokens, "token", "list", "--account", "acme")
		if len(tokens.GetTokens()) != 2 {
			t.Fatalf("token list: %v", tokens.GetTokens())
		}
		listing := operator.ok("token", "list", "--account", "acme")
		if strings.Contains(listing, secret) || strings.Contains(listing, tok.GetSecret()) {
			t.Fatalf("token list shows a secret:\n%s", listing)
		}
		operator.ok("token", "revoke", who.GetToken().GetId())
		r = user.run("whoami")
		wantFail(t, r, exitError, "Error: Unauthenticated (InvalidToken): ")
	})

	t.Run("Nodes", func(t *testing.T) {
		var nodes outpostv1.ListNodesResponse
		operator.json(&nodes, "node", "list")
		operator.ok("node", "list")
		r := operator.run("node", "get", "edge-nowhere")
		wantFail(t, r, exitError, "Error: NotFound (NodeNotFound): ")
	})

	t.Run("Cache", func(t *testing.T) {
		admin, _ := env.NewAccount(t, "cache")
		c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}
		c.ok("domain", "add", "cache.example.com", "--origin", "ip:203.0.113.10")

		var added outpostv1.AddCacheRuleResponse
		c.json(&added, "cache", "rule", "add", "cache.example.com", "--path-prefix", "/static/", "--ttl", "7d")
		rule := added.GetRule()
		if !strings.HasPrefix(rule.GetId(), "rule-") || rule.GetPathPrefix() != "/static/" || rule.GetTtl().AsDuration() != 7*24*time.Hour {
			t.Fatalf("cache rule add: %v", rule)
		}
		out := c.ok("cache", "rule", "add", "cache.example.com", "--ext", ".PNG", "--ttl", "1d12h")
		if !strings.Contains(out, "extension png, TTL 36h0m0s") || !strings.Contains(out, rule.GetId()) {
			t.Fatalf("cache rule add:\n%s", out)
		}
		c.ok("cache", "rule", "add", "cache.example.com", "--path-prefix", "/api/", "--ttl", "0")
		r := c.run("cache", "rule", "add", "cache.example.com", "--path-prefix", "static/", "--ttl", "1h")
		wantFail(t, r, exitError, "Error: InvalidArgument (InvalidCacheRule): ")
		r = c.run("cache", "rule", "add", "cache.example.com", "--ext", "jpg", "--ttl", "366d")
		wantFail(t, r, exitError, "Error: InvalidArgument (InvalidCacheRule): ")

		table := c.ok("cache", "rule", "list", "cache.example.com")
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != 7 || lines[0] != "Cache key: query string included." || lines[1] != "Automatic cache update: off." || !strings.HasPrefix(lines[3], "ID ") ||
			!strings.Contains(lines[4], "path prefix /static/") || !strings.Contains(lines[4], "7d") || !strings.Contains(lines[6], "0 (not cached)") {
			t.Fatalf("cache rule list:\n%s", table)
		}
		var key outpostv1.SetCacheKeyOptionsResponse
		c.json(&key, "cache", "key", "cache.example.com", "--ignore-query")
		if !key.GetSettings().GetIgnoreQuery() || len(key.GetSettings().GetRules()) != 3 {
			t.Fatalf("cache key: %v", key.GetSettings())
		}
		if out := c.ok("cache", "key", "cache.example.com", "--keep-query"); out != "Cache key of cache.example.com: query string included.\n" {
			t.Fatalf("cache key --keep-query printed %q", out)
		}
		if out := c.ok("cache", "rule", "remove", "cache.example.com", rule.GetId()); out != "Removed cache rule "+rule.GetId()+" from cache.example.com.\n" {
			t.Fatalf("cache rule remove printed %q", out)
		}
		r = c.run("cache", "rule", "remove", "cache.example.com", rule.GetId())
		wantFail(t, r, exitError, "Error: NotFound (CacheRuleNotFound): ")
		var list outpostv1.ListCacheRulesResponse
		c.json(&list, "cache", "rule", "list", "cache.example.com")
		if len(list.GetSettings().GetRules()) != 2 || list.GetSettings().GetIgnoreQuery() {
			t.Fatalf("cache rule list -o json: %v", list.GetSettings())
		}
		r = c.run("cache", "rule", "list", "nope.example.com")
		wantFail(t, r, exitError, "Error: NotFound (DomainNotFound): ")
	})

	t.Run("CacheAutoRefresh", func(t *testing.T) {
		admin, readOnly := env.NewAccount(t, "autorefresh")
		c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}
		c.ok("domain", "add", "bucket.example.com", "--origin", "oss:assets.s3.amazonaws.com")
		c.ok("domain", "add", "plain.example.com", "--origin", "ip:203.0.113.10")

		out := c.ok("cache", "auto-refresh", "bucket.example.com", "--on")
		var secret string
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "    obk_") {
				secret = strings.TrimSpace(line)
			}
		}
		for _, want := range []string{"Automatic cache update of bucket.example.com is on.", "POST /v1/bucket-events/bucket.example.com",
			"-bucket-events-addr", "Authorization: Bearer <secret>", "will not be shown again", "webhook"} {
			if !strings.Contains(out, want) {
				t.Errorf("auto-refresh --on lacks %q:\n%s", want, out)
			}
		}
		if len(secret) != len("obk_")+43 {
			t.Fatalf("auto-refresh --on printed no secret:\n%s", out)
		}
		var on outpostv1.EnableAutoRefreshResponse
		c.json(&on, "cache", "auto-refresh", "bucket.example.com", "--on")
		if !strings.HasPrefix(on.GetSecret(), "obk_") || on.GetSecret() == secret ||
			on.GetEndpointPath() != "/v1/bucket-events/bucket.example.com" || !on.GetSettings().GetAutoRefresh() {
			t.Fatalf("auto-refresh --on -o json: %v", &on)
		}
		ro := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: readOnly}
		if out := ro.ok("cache", "rule", "list", "bucket.example.com"); !strings.Contains(out, "Automatic cache update: on") {
			t.Fatalf("cache rule list:\n%s", out)
		}
		var d outpostv1.GetDomainResponse
		ro.json(&d, "domain", "get", "bucket.example.com")
		if !d.GetDomain().GetCache().GetAutoRefresh() {
			t.Fatalf("domain get -o json: %v", d.GetDomain().GetCache())
		}

		r := c.run("cache", "auto-refresh", "plain.example.com", "--on")
		wantFail(t, r, exitError, "Error: FailedPrecondition (NoBucketOrigin): ")
		r = c.run("cache", "auto-refresh", "bucket.example.com")
		wantFail(t, r, exitUsage, "Error: at least one of the flags in the group [on off] is required")
		r = c.run("cache", "auto-refresh", "bucket.example.com", "--on", "--off")
		wantFail(t, r, exitUsage, "Error: if any flags in the group [on off] are set none of the others can be")
		r = ro.run("cache", "auto-refresh", "bucket.example.com", "--off")
		wantFail(t, r, exitError, "Error: PermissionDenied (ReadOnlyToken): ")

		if out := c.ok("cache", "auto-refresh", "bucket.example.com", "--off"); !strings.HasPrefix(out, "Automatic cache update of bucket.example.com is off;") {
			t.Fatalf("auto-refresh --off printed %q", out)
		}
		var list outpostv1.ListCacheRulesResponse
		c.json(&list, "cache", "rule", "list", "bucket.example.com")
		if list.GetSettings().GetAutoRefresh() {
			t.Fatalf("after --off: %v", list.GetSettings())
		}
		var off outpostv1.DisableAutoRefreshResponse
		c.json(&off, "cache", "auto-refresh", "bucket.example.com", "--off")
	})

	t.Run("Content", func(t *testing.T) {
		admin, readOnly := env.NewAccount(t, "content")
		c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}
		c.ok("domain", "add", "cdn.example.com", "--origin", "ip:203.0.113.10")

		out := c.ok("refresh", "https://cdn.example.com/a.js", "HTTPS://CDN.example.com/b.js")
		id, _, _ := strings.Cut(strings.TrimPrefix(out, "Created refresh task "), " ")
		if !strings.HasPrefix(out, "Created refresh task task-") || !strings.Contains(out, " for 2 URLs.\n") || !strings.Contains(out, "outpostctl task get "+id) {
			t.Fatalf("refresh printed:\n%s", out)
		}
		var dir outpostv1.RefreshObjectsResponse
		c.json(&dir, "refresh", "--type", "directory", "https://cdn.example.com/img/")
		if task := dir.GetTask(); task.GetRefreshType() != outpostv1.RefreshType_REFRESH_TYPE_DIRECTORY || task.GetEntries()[0] != "https://cdn.example.com/img/" {
			t.Fatalf("refresh --type directory: %v", task)
		}
		if out := c.ok("refresh", "--type", "regex", `https://cdn.example.com/.*\.png$`); !strings.Contains(out, "for 1 regular expression.") {
			t.Fatalf("refresh --type regex printed:\n%s", out)
		}
		var pf outpostv1.PrefetchObjectsResponse
		c.json(&pf, "prefetch", "--region", "eu-west", "https://cdn.example.com/big.bin")
		if task := pf.GetTask(); task.GetKind() != outpostv1.TaskKind_TASK_KIND_PREFETCH || task.GetRegion() != "eu-west" {
			t.Fatalf("prefetch: %v", task)
		}

		r := c.run("refresh", "https://other.example.com/a.js")
		wantFail(t, r, exitError, "Error: InvalidArgument (UrlDomainNotOwned): ")
		r = c.run("refresh", "--type", "directory", "https://cdn.example.com/img")
		wantFail(t, r, exitError, "Error: InvalidArgument (InvalidUrl): ")
		r = c.run("refresh", "--type", "regex", "https://cdn.example.com/(")
		wantFail(t, r, exitError, "Error: InvalidArgument (InvalidRegex): ")
		r = c.run("prefetch", "cdn.example.com/a.js")
		wantFail(t, r, exitError, "Error: InvalidArgument (InvalidUrl): ")

		ro := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: readOnly}
		var list outpostv1.ListTasksResponse
		ro.json(&list, "task", "list", "--page-size", "1")
		if len(list.GetTasks()) != 4 || list.GetTasks()[0].GetId() != pf.GetTask().GetId() || list.GetTasks()[3].GetId() != id || list.GetNextPageToken() != "" {
			t.Fatalf("task list in pages of one: %v", list.GetTasks())
		}
		table := ro.ok("task", "ls")
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) != 5 || strings.Join(strings.Fields(lines[0]), " ") != "ID KIND STATUS PROGRESS CREATED ENTRIES" {
			t.Fatalf("task list table:\n%s", table)
		}
		// No edge node is connected: every task is done at once.
		if f := strings.Fields(lines[4]); f[0] != id || f[1] != "refresh" || f[2] != "complete" || f[3] != "0/0" || f[5] != "2" {
			t.Fatalf("task list row %q", lines[4])
		}
		view := ro.ok("task", "get", id)
		for _, want := range []string{"ID:", id, "Kind:", "refresh", "Type:", "file", "Status:", "complete", "Progress:", "0 of 0 edge nodes done",
			"https://cdn.example.com/a.js", "https://cdn.example.com/b.js", "Revision:"} {
			if !strings.Contains(view, want) {
				t.Errorf("task get lacks %q:\n%s", want, view)
			}
		}
		var got outpostv1.GetTaskResponse
		ro.json(&got, "task", "get", pf.GetTask().GetId())
		if got.GetTask().GetRegion() != "eu-west" || got.GetTask().GetStatus() != outpostv1.TaskStatus_TASK_STATUS_COMPLETE {
			t.Fatalf("task get -o json: %v", got.GetTask())
		}
		r = ro.run("task", "get", "task-0000000000000000-0000")
		wantFail(t, r, exitError, "Error: NotFound (TaskNotFound): ")
		r = ro.run("refresh", "https://cdn.example.com/a.js")
		wantFail(t, r, exitError, "Error: PermissionDenied (ReadOnlyToken): ")
	})

	t.Run("ContentQuota", func(t *testing.T) {
		operator.ok("account", "create", "quota")
		var acct outpostv1.SetAccountQuotaResponse
		operator.json(&acct, "account", "quota", "quota", "--refresh-urls", "2", "--prefetch-urls", "50")
		q := acct.GetAccount().GetContentQuota()
		if q.GetRefreshUrls() != 2 || q.GetPrefetchUrls() != 50 || q.GetRefreshDirectories() != 100 || q.GetRefreshRegexes() != 20 ||
			acct.GetAccount().GetDomainQuota() != 50 {
			t.Fatalf("account quota: %v", acct.GetAccount())
		}
		out := operator.ok("account", "quota", "quota", "3", "--refresh-dirs", "7")
		for _, want := range []string{"0 of 3", "2 URLs, 7 directories, 20 regular expressions", "50 URLs"} {
			if !strings.Contains(out, want) {
				t.Errorf("account quota lacks %q:\n%s", want, out)
			}
		}
		admin := env.NewToken(t, "quota", outpostv1.Role_ROLE_ADMIN)
		c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}
		c.ok("domain", "add", "quota.example.com", "--origin", "ip:203.0.113.10")
		c.ok("refresh", "https://quota.example.com/1", "https://quota.example.com/2")
		r := c.run("refresh", "https://quota.example.com/3")
		wantFail(t, r, exitError, "Error: ResourceExhausted (ContentQuotaExceeded): ")
		operator.ok("account", "quota", "quota", "--refresh-urls", "0")
		c.ok("refresh", "https://quota.example.com/3")
		if out := c.ok("account", "get", "quota"); !strings.Contains(out, "10000 URLs, 7 directories") {
			t.Fatalf("account get:\n%s", out)
		}
	})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
