package outpostctl

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// result is what one outpostctl run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs the real command tree in-process with env as its whole
// environment. Every run is checked for what must always hold: stderr is
// empty on success and exactly one "Error: " line otherwise, and no output
// ever shows a private key.
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, &stdout, &stderr, func(k string) string { return env[k] })
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	if strings.Contains(r.stdout+r.stderr, "PRIVATE KEY") {
		t.Fatalf("outpostctl %s printed a private key:\n%s%s", strings.Join(args, " "), r.stdout, r.stderr)
	}
	switch {
	case code == 0 && r.stderr != "":
		t.Fatalf("outpostctl %s succeeded but wrote to stderr: %q", strings.Join(args, " "), r.stderr)
	case code != 0 && (!strings.HasPrefix(r.stderr, "Error: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n")):
		t.Fatalf("outpostctl %s exited %d; want one \"Error: \" line on stderr, got %q", strings.Join(args, " "), code, r.stderr)
	}
	return r
}

// wantFail checks a failed run: its exit code and the start of its error line.
func wantFail(t *testing.T, r result, code int, prefix string) {
	t.Helper()
	if r.code != code || !strings.HasPrefix(r.stderr, prefix) {
		t.Fatalf("exit %d, stderr %q; want exit %d and stderr starting %q", r.code, r.stderr, code, prefix)
	}
}

func wantOK(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestHelpAndCompletionDoNotDial(t *testing.T) {
	// A --tls-ca that cannot be read would fail any command that sets up
	// the client; these must not.
	for _, args := range [][]string{
		{},
		{"--help"},
		{"domain"},
		{"domain", "--help"},
		{"domain", "add", "--help"},
		{"help", "cert", "upload"},
		{"completion", "bash"},
		{"completion", "zsh"},
	} {
		r := runCLI(t, nil, append([]string{"--tls-ca", "/nonexistent/ca.pem"}, args...)...)
		wantOK(t, r)
		if r.stdout == "" {
			t.Errorf("outpostctl %v printed nothing", args)
		}
	}
	r := runCLI(t, nil, "domain", "add", "--help")
	for _, want := range []string{"Examples:", "--origin SPEC", "web|download|video|dynamic", "weight=N"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("domain add --help lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestEveryCommandIsDocumented(t *testing.T) {
	a := &app{getenv: func(string) string { return "" }}
	var walk func(prefix string, cmds []*cobra.Command)
	walk = func(prefix string, cmds []*cobra.Command) {
		for _, c := range cmds {
			if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
				continue
			}
			path := prefix + " " + c.Name()
			if c.Short == "" {
				t.Errorf("%s has no Short", path)
			}
			if c.Runnable() && !c.HasSubCommands() && c.Example == "" {
				t.Errorf("%s has no Example", path)
			}
			walk(path, c.Commands())
		}
	}
	walk("outpostctl", a.newRootCommand().Commands())
}

func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"domian"}, `Error: unknown command "domian" for "outpostctl"; did you mean "domain"? (see 'outpostctl --help')`},
		{[]string{"domain", "lst"}, `Error: unknown command "lst" for "outpostctl domain"`},
		{[]string{"domain", "get"}, `Error: missing NAME (see 'outpostctl domain get --help')`},
		{[]string{"domain", "get", "a.example.com", "b.example.com"}, `Error: unexpected argument "b.example.com"`},
		{[]string{"domain", "add", "a.example.com"}, `Error: required flag(s) "origin" not set`},
		{[]string{"domain", "add", "a.example.com", "--origin", "203.0.113.10"}, `Error: invalid argument "203.0.113.10" for "--origin" flag: missing origin type`},
		{[]string{"domain", "add", "a.example.com", "--origin", "ip:203.0.113.10", "--scope", "moon"}, `Error: invalid argument "moon" for "--scope" flag: want mainland, overseas or global`},
		{[]string{"domain", "list", "--bogus"}, `Error: unknown flag: --bogus`},
		{[]string{"-o", "yaml", "domain", "list"}, `Error: invalid argument "yaml" for "-o, --output" flag: want table or json`},
		{[]string{"--timeout", "0s", "domain", "list"}, `Error: --timeout must be positive`},
		{[]string{"--controller", "https://c.example.com:7000", "domain", "list"}, `Error: --controller takes the controller's gRPC address as HOST:PORT, not a URL`},
		{[]string{"origin", "verify", "a.example.com", "--on", "--off"}, `Error: if any flags in the group [on off ca] are set none of the others can be`},
		{[]string{"origin", "sni", "a.example.com"}, `Error: at least one of the flags in the group [value disable] is required`},
		{[]string{"https", "enable", "a.example.com", "--cert", "c.pem"}, `Error: if any flags in the group [cert key] are set they must all be set`},
		{[]string{"https", "redirect", "a.example.com", "--to", "ftp"}, `Error: invalid argument "ftp" for "--to" flag: want off, https or http`},
		{[]string{"token", "create", "--role", "root"}, `Error: invalid argument "root" for "--role" flag: want admin, read-only, operator or node`},
		{[]string{"account", "quota", "acme", "lots"}, `Error: invalid quota "lots"`},
		{[]string{"refresh"}, `Error: missing URL`},
		{[]string{"refresh", "--type", "glob", "https://a.example.com/"}, `Error: invalid argument "glob" for "--type" flag: want file, directory, regex or ignore-params`},
		{[]string{"prefetch"}, `Error: missing URL`},
		{[]string{"task", "get"}, `Error: missing ID`},
		{[]string{"account", "quota"}, `Error: missing ID`},
		{[]string{"account", "quota", "acme"}, `Error: give the domain quota N or a content quota flag`},
		{[]string{"account", "quota", "acme", "5", "6"}, `Error: unexpected argument "6"`},
		{[]string{"account", "quota", "acme", "--refresh-urls", "many"}, `Error: invalid argument "many" for "--refresh-urls" flag`},
		{[]string{"cache", "rule", "add", "a.example.com", "--ttl", "7d"}, `Error: at least one of the flags in the group [path-prefix ext] is required`},
		{[]string{"cache", "rule", "add", "a.example.com", "--ext", "jpg"}, `Error: required flag(s) "ttl" not set`},
		{[]string{"cache", "rule", "add", "a.example.com", "--ext", "jpg", "--path-prefix", "/a/", "--ttl", "1h"}, `Error: if any flags in the group [path-prefix ext] are set none of the others can be`},
		{[]string{"cache", "rule", "add", "a.example.com", "--ext", "jpg", "--ttl", "1week"}, `Error: invalid argument "1week" for "--ttl" flag: want a duration such as 30s, 10m, 12h or 7d`},
		{[]string{"cache", "rule", "remove", "a.example.com"}, `Error: missing ID`},
		{[]string{"cache", "key", "a.example.com"}, `Error: at least one of the flags in the group [ignore-query keep-query] is required`},
		{[]string{"cache", "rules"}, `Error: unknown command "rules" for "outpostctl cache"; did you mean "rule"?`},
		{[]string{"cert", "deploy", "cert-0123"}, `Error: at least one of the flags in the group [domains domains-file] is required`},
		{[]string{"cert", "deploy", "--domains", "a.example.com"}, `Error: missing ID`},
		{[]string{"cert", "renew", "cert-0123"}, `Error: required flag(s) "cert" not set`},
		{[]string{"cert", "expiring", "--within", "soon"}, `Error: invalid argument "soon" for "--within" flag: want a duration such as 30s, 10m, 12h or 7d`},
		{[]string{"cert", "list", "--state", "dead"}, `Error: invalid argument "dead" for "--state" flag: want valid, expiring, expired or not-yet-valid`},
		{[]string{"cert", "info"}, `Error: missing DOMAIN`},
	} {
		r := runCLI(t, map[string]string{envController: closedAddr(t)}, tt.args...)
		wantFail(t, r, exitUsage, tt.want)
		if r.stdout != "" {
			t.Errorf("outpostctl %v wrote to stdout: %q", tt.args, r.stdout)
		}
	}
}

func TestLocalErrors(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{envController: closedAddr(t), envToken: "secret"}

	r := runCLI(t, env, "--tls-ca", filepath.Join(dir, "missing.pem"), "domain", "list")
	wantFail(t, r, exitError, "Error: cannot read --tls-ca (or OUTPOST_TLS_CA): open ")

	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, env, "--tls-ca", notPEM, "domain", "list")
	wantFail(t, r, exitError, "Error: --tls-ca "+notPEM+" holds no PEM certificate")

	r = runCLI(t, env, "cert", "upload", "--cert", filepath.Join(dir, "nope.pem"), "--key", notPEM)
	wantFail(t, r, exitError, "Error: cannot read --cert: open ")

	combined := filepath.Join(dir, "combined.pem")
	if err := os.WriteFile(combined, []byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, env, "https", "enable", "a.example.com", "--cert", combined, "--key", combined)
	wantFail(t, r, exitError, "Error: --cert "+combined+" holds a private key")
}

func TestUnreachableController(t *testing.T) {
	addr := closedAddr(t)
	r := runCLI(t, map[string]string{envController: addr}, "--timeout", "5s", "domain", "list")
	wantFail(t, r, exitError, "Error: Unavailable: ")
	if !strings.Contains(r.stderr, "(controller "+addr+")") {
		t.Fatalf("error does not name the controller: %q", r.stderr)
	}
	// --controller wins over the environment.
	other := closedAddr(t)
	r = runCLI(t, map[string]string{envController: addr}, "--controller", other, "whoami")
	if !strings.Contains(r.stderr, "(controller "+other+")") {
		t.Fatalf("--controller did not override %s: %q", envController, r.stderr)
	}
}
