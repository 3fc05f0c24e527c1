package outpostctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-cdn/outpost/controller/controllertest"
	"github.com/outpost-cdn/outpost/internal/certs/certstest"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// TestCSRAndKeyringCommands drives `cert csr` and `keyring` against a real
// controller: a CSR is created, signed by a test CA, completed and used for
// HTTPS; an operator reads the keyring status and re-wraps.
func TestCSRAndKeyringCommands(t *testing.T) {
	env := controllertest.Start(t)
	operator := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: env.OperatorToken}
	admin, readOnly := env.NewAccount(t, "csr")
	c := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: admin}
	ro := cli{t: t, addr: env.Addr, ca: caFile(t, env), token: readOnly}
	ca := certstest.NewCA(t, "CLI CSR CA")
	dir := t.TempDir()

	// Table mode: the ID, how to go on, then the request.
	out := c.ok("cert", "csr", "create", "--cn", "www.example.com", "--san", "example.com", "--san", "*.example.com",
		"--org", "Example Ltd", "--country", "gb", "--name", "www-2026")
	first, _, _ := strings.Cut(out, "\n")
	id, _, _ := strings.Cut(strings.TrimPrefix(first, "Created CSR "), " ")
	if !strings.HasPrefix(id, "csr-") || !strings.Contains(first, "for www.example.com (ec-p256 key, kept by Outpost)") ||
		!strings.Contains(out, "outpostctl cert csr complete "+id+" --cert CHAIN.pem") ||
		!strings.Contains(out, "\n-----BEGIN CERTIFICATE REQUEST-----\n") || !strings.HasSuffix(out, "-----END CERTIFICATE REQUEST-----\n") {
		t.Fatalf("csr create printed:\n%s", out)
	}

	// --out: the request alone in the file, the ID alone on stdout.
	csrFile := filepath.Join(dir, "api.csr")
	rsaID := strings.TrimSpace(c.ok("cert", "csr", "create", "--cn", "api.example.com", "--key-type", "rsa2048", "--out", csrFile))
	if !strings.HasPrefix(rsaID, "csr-") || strings.ContainsAny(rsaID, " \n") {
		t.Fatalf("csr create --out printed %q, want the ID alone", rsaID)
	}
	csrPEM, err := os.ReadFile(csrFile)
	if err != nil || !strings.HasPrefix(string(csrPEM), "-----BEGIN CERTIFICATE REQUEST-----\n") {
		t.Fatalf("--out file: %q, %v", csrPEM, err)
	}

	var got outpostv1.GetCsrResponse
	ro.json(&got, "cert", "csr", "get", id)
	if g := got.GetCsr(); g.GetName() != "www-2026" || strings.Join(g.GetDnsNames(), ",") != "www.example.com,example.com,*.example.com" ||
		g.GetKeyType() != outpostv1.KeyType_KEY_TYPE_EC_P256 || g.GetCertificateId() != "" {
		t.Fatalf("csr get -o json: %v", g)
	}
	view := ro.ok("cert", "csr", "get", rsaID)
	for _, want := range []string{"ID:", rsaID, "Common name:", "api.example.com", "Key type:", "rsa-2048", "State:", "pending"} {
		if !strings.Contains(view, want) {
			t.Errorf("csr get lacks %q:\n%s", want, view)
		}
	}
	if p := ro.ok("cert", "csr", "get", rsaID, "--pem"); p != string(csrPEM) {
		t.Fatalf("csr get --pem printed another request:\n%s", p)
	}

	// A CA signs; completing prints the certificate's ID.
	_, chain := ca.SignCSR(t, got.GetCsr().GetCsrPem(), certstest.SignOptions{})
	chainFile := writeFile(t, dir, "www-chain.pem", chain)
	certID := strings.TrimSpace(c.ok("cert", "csr", "complete", id, "--cert", chainFile))
	if certID != "cert-"+strings.TrimPrefix(id, "csr-") {
		t.Fatalf("csr complete printed %q", certID)
	}
	r := c.run("cert", "csr", "complete", id, "--cert", chainFile)
	wantFail(t, r, exitError, "Error: FailedPrecondition (CsrAlreadyCompleted): ")
	other := certstest.Issue(t, certstest.Options{DNSNames: []string{"api.example.com"}, Issuer: ca})
	r = c.run("cert", "csr", "complete", rsaID, "--cert", writeFile(t, dir, "other.pem", other.ChainPEM))
	wantFail(t, r, exitError, "Error: InvalidArgument (CertificateKeyMismatch): ")
	r = c.run("cert", "csr", "complete", rsaID, "--cert", writeFile(t, dir, "with-key.pem", append(append([]byte(nil), other.ChainPEM...), other.KeyPEM...)))
	wantFail(t, r, exitError, "Error: --cert "+dir+"/with-key.pem holds a private key")
	r = ro.run("cert", "csr", "complete", rsaID, "--cert", chainFile)
	wantFail(t, r, exitError, "Error: PermissionDenied (ReadOnlyToken): ")

	var list outpostv1.ListCsrsResponse
	c.json(&list, "cert", "csr", "list", "--page-size", "1")
	if len(list.GetCsrs()) != 2 {
		t.Fatalf("csr list: %v", list.GetCsrs())
	}
	table := c.ok("cert", "csr", "ls")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(table, certID) || !strings.Contains(table, "pending") {
		t.Fatalf("csr list table:\n%s", table)
	}
	if view := c.ok("cert", "get", certID); !strings.Contains(view, "www.example.com") {
		t.Fatalf("cert get of the completed CSR:\n%s", view)
	}
	c.ok("domain", "add", "www.example.com", "--origin", "ip:203.0.113.10")
	var enabled outpostv1.EnableHttpsResponse
	c.json(&enabled, "https", "enable", "www.example.com", "--cert-id", certID)
	if enabled.GetHttps().GetCertificateId() != certID {
		t.Fatalf("https enable: %v", enabled.GetHttps())
	}

	// Usage mistakes are caught before any request.
	r = c.run("cert", "csr", "create", "--cn", "x.example.com", "--key-type", "ed25519")
	wantFail(t, r, exitUsage, `Error: invalid argument "ed25519" for "--key-type" flag: want ec, rsa2048 or rsa3072`)
	r = c.run("cert", "csr", "create", "--san", "x.example.com")
	wantFail(t, r, exitUsage, `Error: required flag(s) "cn" not set`)
	r = c.run("cert", "csr", "complete", id)
	wantFail(t, r, exitUsage, `Error: required flag(s) "cert" not set`)
	r = c.run("cert", "csr", "create", "--cn", "x.example.com", "--country", "GBR")
	wantFail(t, r, exitError, "Error: InvalidArgument (InvalidCsrSubject): ")

	// The keyring: the test controller's one KEK wraps the completed
	// certificate's key, the pending CSR's and the cluster CA's.
	status := operator.ok("keyring", "status")
	if lines := strings.Split(status, "\n"); len(lines) < 4 || strings.Join(strings.Fields(lines[0]), " ") != "KEK SECRETS IN-KEYRING PRIMARY" ||
		strings.Join(strings.Fields(lines[1]), " ") != "test 3 yes yes" ||
		!strings.Contains(status, "Every secret is under the primary KEK test") {
		t.Fatalf("keyring status:\n%s", status)
	}
	var st outpostv1.GetKeyringStatusResponse
	operator.json(&st, "keyring", "status")
	if st.GetPrimaryKekId() != "test" || len(st.GetUsage()) != 1 || st.GetUsage()[0].GetSecrets() != 3 {
		t.Fatalf("keyring status -o json: %v", &st)
	}
	if out := operator.ok("keyring", "rewrap"); out != "Re-wrapped 0 secret(s) with the primary key-encryption key; 3 already were.\n" {
		t.Fatalf("keyring rewrap printed %q", out)
	}
	var rw outpostv1.RewrapSecretsResponse
	operator.json(&rw, "keyring", "rewrap")
	if rw.GetAlreadyCurrent() != 3 {
		t.Fatalf("keyring rewrap -o json: %v", &rw)
	}
	r = c.run("keyring", "status")
	wantFail(t, r, exitError, "Error: PermissionDenied (OperatorOnly): ")

	// Deleting the pending CSR deletes its sealed key: two secrets left.
	r = ro.run("cert", "csr", "delete", rsaID)
	wantFail(t, r, exitError, "Error: PermissionDenied (ReadOnlyToken): ")
	if out := c.ok("cert", "csr", "rm", rsaID); out != "Deleted CSR "+rsaID+".\n" {
		t.Fatalf("csr delete printed %q", out)
	}
	r = c.run("cert", "csr", "delete", rsaID)
	wantFail(t, r, exitError, "Error: NotFound (CsrNotFound): ")
	operator.json(&st, "keyring", "status")
	if len(st.GetUsage()) != 1 || st.GetUsage()[0].GetSecrets() != 2 {
		t.Fatalf("keyring status after csr delete: %v", &st)
	}
}

// TestWriteKeyringStatus: the advice under the table follows the counts.
func TestWriteKeyringStatus(t *testing.T) {
	for _, tc := range []struct {
		usage []*outpostv1.KekUsage
		want  string
	}{
		{[]*outpostv1.KekUsage{{KekId: "k2", Secrets: 3, Known: true}, {KekId: "k1", Known: true}}, "Every secret is under the primary KEK k2: the other KEKs can be removed"},
		{[]*outpostv1.KekUsage{{KekId: "k2", Secrets: 3, Known: true}}, "\nEvery secret is under the primary KEK k2.\n"},
		{[]*outpostv1.KekUsage{{KekId: "k2", Secrets: 1, Known: true}, {KekId: "k1", Secrets: 2, Known: true}}, "2 secret(s) are under a KEK other than the primary k2: run 'outpostctl keyring rewrap'"},
		{[]*outpostv1.KekUsage{{KekId: "k2", Known: true}, {KekId: "k0", Secrets: 4}}, "4 secret(s) are under a KEK this controller's keyring lacks"},
	} {
		var b strings.Builder
		if err := writeKeyringStatus(&b, &outpostv1.GetKeyringStatusResponse{PrimaryKekId: "k2", Usage: tc.usage}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("status %v:\n%s\nwant %q", tc.usage, b.String(), tc.want)
		}
	}
}
