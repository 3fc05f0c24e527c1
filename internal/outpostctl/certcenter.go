package outpostctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-cdn/outpost/internal/certs"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// The certificate center commands: deploy, renew, and the queries about
// which domains serve what and what expires when (docs/certificates.md).

func (a *app) newCertDeployCommand() *cobra.Command {
	var domains []string
	var file string
	cmd := &cobra.Command{
		Use:   "deploy ID (--domains NAME,... | --domains-file FILE)",
		Short: "Deploy a certificate to many domains at once",
		Long: `Bind a certificate to up to 10,000 of your domains in one transaction,
replacing the certificates they had and turning HTTPS on; their redirect
settings stay. Each domain gets a result: a domain the certificate does not
cover, or that does not exist, is refused with its reason and the others are
deployed. If another change touches one of the domains or the certificate
meanwhile, nothing is deployed (Aborted ConcurrentModification): run it
again.

Exits with status 1 when any domain was refused, after printing every
result.`,
		Example: `  outpostctl cert deploy cert-0123 --domains www.example.com,img.example.com
  outpostctl domain list -o json | jq -r '.domains[].name' > names.txt
  outpostctl cert deploy cert-0123 --domains-file names.txt`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				names, err := readNames(file)
				if err != nil {
					return err
				}
				domains = append(domains, names...)
			}
			if len(domains) == 0 {
				return usageErrorf("no domains given")
			}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.DeployCertificate(ctx, &outpostv1.DeployCertificateRequest{Id: args[0], Domains: domains})
			if err != nil {
				return err
			}
			refused := 0
			for _, r := range resp.GetResults() {
				if !r.GetDeployed() {
					refused++
				}
			}
			err = a.render(cmd, resp, func(w io.Writer) error {
				t := newTable(w, "DOMAIN", "RESULT", "REASON", "MESSAGE")
				for _, r := range resp.GetResults() {
					result := "deployed"
					if !r.GetDeployed() {
						result = "refused"
					}
					t.row(r.GetDomain(), result, r.GetReason(), r.GetMessage())
				}
				if err := t.flush(); err != nil {
					return err
				}
				if n := len(resp.GetResults()) - refused; n > 0 {
					_, err := fmt.Fprintf(w, "Deployed %s to %d domain(s) at revision %d.\n", args[0], n, resp.GetRevision())
					return err
				}
				return nil
			})
			if err != nil {
				return err
			}
			if refused > 0 {
				return fmt.Errorf("%d of %d domain(s) refused the certificate; see the results above", refused, len(resp.GetResults()))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&domains, "domains", nil, "comma-separated domain `NAMES` (repeatable)")
	cmd.Flags().StringVar(&file, "domains-file", "", "`FILE` of domain names, one per line ('-' for stdin)")
	cmd.MarkFlagsOneRequired("domains", "domains-file")
	return apiCommand(cmd)
}

// readNames reads names one per line (or separated by spaces or commas),
// skipping blank lines and '#' comments. "-" is stdin.
func readNames(file string) ([]string, error) {
	var (
		b   []byte
		err error
	)
	if file == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read --domains-file: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		out = append(out, strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' })...)
	}
	return out, nil
}

func (a *app) newCertRenewCommand() *cobra.Command {
	var certFile, keyFile string
	cmd := &cobra.Command{
		Use:   "renew ID --cert FILE [--key FILE]",
		Short: "Replace a certificate with its renewed version",
		Long: `Replace a certificate's chain (and, with --key, its private key) with a new
version under the same ID and name: every domain that serves it moves to the
new version on the edge nodes at once. Without --key the current key is
kept, so the new certificate must have been issued for it (a CA renewing the
same CSR). The new certificate must cover every domain that uses the
certificate ('cert domains ID'); otherwise it is refused with the domains it
would leave uncovered.`,
		Example: `  outpostctl cert renew cert-0123 --cert fullchain-2027.pem --key privkey-2027.pem
  outpostctl cert renew cert-0123 --cert fullchain-2027.pem   # same key`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			certPEM, keyPEM, err := readCertAndOptionalKey(certFile, keyFile)
			if err != nil {
				return err
			}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.RenewCertificate(ctx, &outpostv1.RenewCertificateRequest{Id: args[0], CertificatePem: certPEM, PrivateKeyPem: keyPEM})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				c := resp.GetCertificate()
				if _, err := fmt.Fprintf(w, "Renewed certificate %s to version %d, valid until %s; %d domain(s) moved to it.\n",
					c.GetId(), c.GetVersion(), validUntil(c, time.Now()), len(resp.GetDomains())); err != nil {
					return err
				}
				return writeCertificate(w, c)
			})
		},
	}
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM certificate chain `FILE` of the new version, leaf first")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM private key `FILE` of the new version (default: keep the current key)")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagFilename("cert", "pem", "crt", "cer")
	_ = cmd.MarkFlagFilename("key", "pem", "key")
	return apiCommand(cmd)
}

// readCertAndOptionalKey is readCertAndKey with the key file optional.
func readCertAndOptionalKey(certFile, keyFile string) (certPEM, keyPEM string, err error) {
	if keyFile != "" {
		return readCertAndKey(certFile, keyFile)
	}
	c, err := os.ReadFile(certFile)
	if err != nil {
		return "", "", fmt.Errorf("cannot read --cert: %w", err)
	}
	if strings.Contains(string(c), "PRIVATE KEY") {
		return "", "", fmt.Errorf("--cert %s holds a private key: give the certificate chain alone with --cert and the key with --key", certFile)
	}
	return string(c), "", nil
}

func (a *app) newCertDomainsCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "domains ID",
		Short:   "List the domains that serve a certificate",
		Long:    "List, in name order, the domains that serve a certificate over HTTPS.",
		Example: "  outpostctl cert domains cert-0123\n  outpostctl cert domains cert-0123 -o json | jq -r '.domains[]'",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.ListCertificateDomains(ctx, &outpostv1.ListCertificateDomainsRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				if len(resp.GetDomains()) == 0 {
					_, err := fmt.Fprintf(w, "No domain serves certificate %s. Deploy it with 'outpostctl cert deploy %s --domains NAME,...'.\n", args[0], args[0])
					return err
				}
				t := newTable(w, "DOMAIN")
				for _, d := range resp.GetDomains() {
					t.row(d)
				}
				return t.flush()
			})
		},
	})
}

func (a *app) newCertHTTPSDomainsCommand() *cobra.Command {
	var pageSize int32
	cmd := &cobra.Command{
		Use:     "https-domains",
		Short:   "List the domains with HTTPS on and their certificates",
		Long:    "List your domains that have HTTPS on, in name order, each with its certificate's state and remaining life.",
		Example: "  outpostctl cert https-domains\n  outpostctl cert https-domains -o json | jq -r '.domains[] | select(.state == \"CERTIFICATE_STATE_EXPIRING\") | .domain'",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := listAll(cmd.Context(), a.flags.timeout, func(ctx context.Context, token string) ([]*outpostv1.DomainCertificateInfo, string, error) {
				resp, err := a.api.certs.ListHttpsDomains(ctx, &outpostv1.ListHttpsDomainsRequest{PageSize: pageSize, PageToken: token})
				return resp.GetDomains(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			resp := &outpostv1.ListHttpsDomainsResponse{Domains: list}
			return a.render(cmd, resp, func(w io.Writer) error {
				if len(list) == 0 {
					_, err := fmt.Fprintln(w, "No domain has HTTPS on. Turn it on with 'outpostctl https enable' or 'outpostctl cert deploy'.")
					return err
				}
				t := newTable(w, "DOMAIN", "CERTIFICATE", "NAME", "STATE", "NOT-AFTER", "LEFT", "TRUST")
				for _, d := range list {
					t.row(d.GetDomain(), d.GetCertificateId(), d.GetCertificateName(), enumName(d.GetState()),
						timestamp(d.GetNotAfter()), remaining(d), enumName(d.GetChainTrust()))
				}
				return t.flush()
			})
		},
	}
	pageSizeFlag(cmd, &pageSize)
	return apiCommand(cmd)
}

// remaining renders a certificate's remaining life in whole days, or how
// long ago it expired.
func remaining(d *outpostv1.DomainCertificateInfo) string {
	if d.GetRemaining() == nil {
		return "-"
	}
	return formatLeft(d.GetRemaining().AsDuration())
}

// formatLeft renders the time until a certificate expires: "12d", "5h",
// or "expired 3d ago".
func formatLeft(left time.Duration) string {
	ago := left < 0
	if ago {
		left = -left
	}
	s := strconv.FormatInt(int64(left/day), 10) + "d"
	if left < day {
		s = left.Round(time.Minute).String()
	}
	if ago {
		return "expired " + s + " ago"
	}
	return s
}

func (a *app) newCertInfoCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "info DOMAIN",
		Short:   "Show the certificate a domain serves",
		Long:    "Show whether a domain serves HTTPS and, if so, its certificate: names, validity, state, remaining life, chain trust and source.",
		Example: "  outpostctl cert info cdn.example.com",
		Args:    exactArgs("DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.GetDomainCertificateInfo(ctx, &outpostv1.GetDomainCertificateInfoRequest{Domain: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				info := resp.GetInfo()
				v := newDetails(w)
				v.field("Domain", info.GetDomain())
				v.field("HTTPS", map[bool]string{true: "on", false: "off"}[info.GetHttpsEnabled()])
				if f := info.GetFree(); f != nil {
					v.field("Free certificate", enumName(f.GetStatus()))
				}
				if info.GetCertificateId() != "" {
					v.field("Certificate", info.GetCertificateId())
					v.field("Name", info.GetCertificateName())
					v.field("Common name", info.GetCommonName())
					v.field("DNS names", info.GetDnsNames()...)
					v.field("Issuer", info.GetIssuer())
					v.field("Valid from", timestamp(info.GetNotBefore()))
					v.field("Valid until", timestamp(info.GetNotAfter()))
					v.field("State", enumName(info.GetState()))
					v.field("Remaining", remaining(info))
					v.field("Chain trust", enumName(info.GetChainTrust()))
					v.field("Source", enumName(info.GetSource()))
				}
				return v.flush()
			})
		},
	})
}

func (a *app) newCertStatsCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "stats",
		Short:   "Count certificates expired and expiring",
		Long:    "Count your certificates, those expired and those expiring within 30 days, and the domains that serve them.",
		Example: "  outpostctl cert stats\n  outpostctl cert stats -o json | jq .domainsWithExpired",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.GetCertificateStats(ctx, &outpostv1.GetCertificateStatsRequest{})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				v := newDetails(w)
				v.field("Certificates", strconv.Itoa(int(resp.GetCertificates())))
				v.field("Expired", fmt.Sprintf("%d, served by %d domain(s)", resp.GetExpiredCertificates(), resp.GetDomainsWithExpired()))
				v.field("Expiring within 30 days", fmt.Sprintf("%d, served by %d domain(s)", resp.GetExpiringCertificates(), resp.GetDomainsWithExpiring()))
				return v.flush()
			})
		},
	})
}

func (a *app) newCertExpiringCommand() *cobra.Command {
	within := &ttlValue{d: 30 * day}
	cmd := &cobra.Command{
		Use:   "expiring [--within DURATION]",
		Short: "Warn about certificates that expire soon",
		Long: `List the certificates that have expired or expire within --within (default
30 days), soonest first, each with the number of domains serving it, under a
warning line. Edge nodes keep serving an expired certificate, so clients see
certificate errors until it is renewed ('cert renew') or replaced ('cert
deploy'). -o json prints the certificates as a ListCertificatesResponse.
The exit status is 0 either way; use -o json to act on the list.`,
		Example: `  outpostctl cert expiring
  outpostctl cert expiring --within 7d
  outpostctl cert expiring -o json | jq -r '.certificates[].id'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			all, err := listAll(cmd.Context(), a.flags.timeout, func(ctx context.Context, token string) ([]*outpostv1.Certificate, string, error) {
				resp, err := a.api.certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{PageToken: token})
				return resp.GetCertificates(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			now := time.Now()
			var soon []*outpostv1.Certificate
			for _, c := range all {
				if c.GetNotAfter().AsTime().Before(now.Add(within.d)) {
					soon = append(soon, c)
				}
			}
			slices.SortStableFunc(soon, func(x, y *outpostv1.Certificate) int {
				return x.GetNotAfter().AsTime().Compare(y.GetNotAfter().AsTime())
			})
			resp := &outpostv1.ListCertificatesResponse{Certificates: soon}
			if a.flags.output.value == outputJSON {
				return a.render(cmd, resp, nil)
			}
			users := make([]int, len(soon))
			for i, c := range soon {
				ctx, cancel := a.rpcContext(cmd)
				d, err := a.api.certs.ListCertificateDomains(ctx, &outpostv1.ListCertificateDomainsRequest{Id: c.GetId()})
				cancel()
				if err != nil {
					return err
				}
				users[i] = len(d.GetDomains())
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				window := formatTTL(within.d)
				if len(soon) == 0 {
					_, err := fmt.Fprintf(w, "No certificate expires within %s.\n", window)
					return err
				}
				expired, domains := 0, 0
				for i, c := range soon {
					if c.GetNotAfter().AsTime().Before(now) {
						expired++
					}
					domains += users[i]
				}
				if _, err := fmt.Fprintf(w, "Warning: %d certificate(s) expired or expire within %s (%d expired), served by %d domain(s). Renew them with 'outpostctl cert renew ID --cert FILE [--key FILE]'.\n",
					len(soon), window, expired, domains); err != nil {
					return err
				}
				t := newTable(w, "ID", "NAME", "STATE", "NOT-AFTER", "LEFT", "DOMAINS")
				for i, c := range soon {
					t.row(c.GetId(), c.GetName(), enumName(certState(c, now)),
						timestamp(c.GetNotAfter()), formatLeft(c.GetNotAfter().AsTime().Sub(now)), strconv.Itoa(users[i]))
				}
				return t.flush()
			})
		},
	}
	cmd.Flags().Var(within, "within", "how far ahead to look: a duration such as 30d, 7d or 12h")
	return apiCommand(cmd)
}

// certListFilters are the filter flags of 'cert list'.
type certListFilters struct {
	nameContains string
	covers       string
	state        *enumValue[outpostv1.CertificateState]
}

func addCertListFilters(cmd *cobra.Command) *certListFilters {
	f := &certListFilters{state: newEnumFlag(outpostv1.CertificateState(0))}
	cmd.Flags().StringVar(&f.nameContains, "name-contains", "", "only certificates whose name contains `TEXT` (any case)")
	cmd.Flags().StringVar(&f.covers, "covers", "", "only certificates that cover domain `NAME` (exactly or by wildcard)")
	cmd.Flags().Var(f.state, "state", "only certificates in this state as of now")
	_ = cmd.RegisterFlagCompletionFunc("state", fixedCompletion(f.state.choices()...))
	return f
}

// certState is a certificate's state at now, as the controller works it out.
func certState(c *outpostv1.Certificate, now time.Time) outpostv1.CertificateState {
	return certs.State(c.GetNotBefore().AsTime(), c.GetNotAfter().AsTime(), now)
}

// versionSummary renders a certificate's version and source: "2 (uploaded)".
func versionSummary(c *outpostv1.Certificate) string {
	if c.GetVersion() == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (%s)", c.GetVersion(), enumName(c.GetSource()))
}
