package outpostctl

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

func (a *app) newCertCommand() *cobra.Command {
	cmd := newGroup("cert", "Upload and manage HTTPS certificates",
		`Keep certificates in your account to serve HTTPS with ('https enable
--cert-id'). A private key goes in with the upload and never comes out: no
command shows it.

Deploy one certificate to many domains at once ('cert deploy'), renew it in
place so that every domain using it moves ('cert renew'), see which domains
serve what ('cert domains', 'cert https-domains', 'cert info') and watch
expiry ('cert expiring', 'cert stats').`,
		a.newCertUploadCommand(),
		a.newCertGetCommand(),
		a.newCertListCommand(),
		a.newCertDeleteCommand(),
		a.newCertDeployCommand(),
		a.newCertRenewCommand(),
		a.newCertDomainsCommand(),
		a.newCertHTTPSDomainsCommand(),
		a.newCertInfoCommand(),
		a.newCertStatsCommand(),
		a.newCertExpiringCommand(),
		a.newCertCSRCommand(),
	)
	cmd.Aliases = []string{"certs", "certificate"}
	return cmd
}

func (a *app) newCertUploadCommand() *cobra.Command {
	var name, certFile, keyFile string
	cmd := &cobra.Command{
		Use:   "upload --cert FILE --key FILE [--name NAME]",
		Short: "Upload a certificate and its private key",
		Long: `Upload a PEM certificate chain (leaf first) and its unencrypted PEM private
key (PKCS#8, PKCS#1 or SEC 1). The controller checks that they match and that
the certificate is valid. Prints the new certificate's ID, for 'https enable
--cert-id'; -o json prints the whole response.`,
		Example: `  outpostctl cert upload --name example-2026 --cert fullchain.pem --key privkey.pem
  id=$(outpostctl cert upload --cert fullchain.pem --key privkey.pem)
  outpostctl https enable cdn.example.com --cert-id "$id"`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPEM, keyPEM, err := readCertAndKey(certFile, keyFile)
			if err != nil {
				return err
			}
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.UploadCertificate(ctx, &outpostv1.UploadCertificateRequest{
				Name:           name,
				CertificatePem: certPEM,
				PrivateKeyPem:  keyPEM,
			})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, resp.GetCertificate().GetId())
				return err
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "a label for people (default: the certificate's common name)")
	cmd.Flags().StringVar(&certFile, "cert", "", "PEM certificate chain `FILE`, leaf first")
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM private key `FILE`")
	_ = cmd.MarkFlagRequired("cert")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagFilename("cert", "pem", "crt", "cer")
	_ = cmd.MarkFlagFilename("key", "pem", "key")
	return apiCommand(cmd)
}

func (a *app) newCertGetCommand() *cobra.Command {
	var pemOnly bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a certificate",
		Long: `Show a certificate's names, issuer, validity, key type and fingerprint.
--pem prints its PEM chain instead (public material only).`,
		Example: "  outpostctl cert get cert-0123\n  outpostctl cert get cert-0123 --pem | openssl x509 -noout -text",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.GetCertificate(ctx, &outpostv1.GetCertificateRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				if pemOnly {
					_, err := io.WriteString(w, publicPEM(resp.GetCertificate().GetCertificatePem()))
					return err
				}
				return writeCertificate(w, resp.GetCertificate())
			})
		},
	}
	cmd.Flags().BoolVar(&pemOnly, "pem", false, "print the PEM certificate chain")
	return apiCommand(cmd)
}

func (a *app) newCertListCommand() *cobra.Command {
	var pageSize int32
	var filters *certListFilters
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List certificates",
		Long: `List your account's certificates in ID order, every page of them. The
filters narrow the list: --name-contains, --covers (a domain the certificate
covers, exactly or by its wildcard) and --state (valid, expiring within 30
days, expired or not-yet-valid, as of now).`,
		Example: "  outpostctl cert list\n  outpostctl cert list --covers www.example.com --state valid\n  outpostctl cert list -o json | jq -r '.certificates[] | [.id, .notAfter] | @tsv'",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			certs, err := listAll(cmd.Context(), a.flags.timeout, func(ctx context.Context, token string) ([]*outpostv1.Certificate, string, error) {
				resp, err := a.api.certs.ListCertificates(ctx, &outpostv1.ListCertificatesRequest{PageSize: pageSize, PageToken: token,
					NameContains: filters.nameContains, Covers: filters.covers, State: filters.state.value})
				return resp.GetCertificates(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			resp := &outpostv1.ListCertificatesResponse{Certificates: certs}
			return a.render(cmd, resp, func(w io.Writer) error {
				if len(certs) == 0 {
					if cmd.Flags().Changed("name-contains") || cmd.Flags().Changed("covers") || cmd.Flags().Changed("state") {
						_, err := fmt.Fprintln(w, "No certificate matches.")
						return err
					}
					_, err := fmt.Fprintln(w, "No certificates. Upload one with 'outpostctl cert upload --cert FILE --key FILE'.")
					return err
				}
				now := time.Now()
				t := newTable(w, "ID", "NAME", "COMMON-NAME", "DNS-NAMES", "KEY", "NOT-AFTER", "STATE", "OWNER-DOMAIN")
				for _, c := range certs {
					t.row(c.GetId(), c.GetName(), c.GetCommonName(), truncate(strings.Join(c.GetDnsNames(), ","), 50),
						enumName(c.GetKeyType()), timestamp(c.GetNotAfter()), enumName(certState(c, now)), c.GetOwnerDomain())
				}
				return t.flush()
			})
		},
	}
	pageSizeFlag(cmd, &pageSize)
	filters = addCertListFilters(cmd)
	return apiCommand(cmd)
}

func (a *app) newCertDeleteCommand() *cobra.Command {
	return apiCommand(&cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm", "remove"},
		Short:   "Delete a certificate no domain uses",
		Long: `Delete a certificate and its private key. A certificate that a domain serves
cannot be deleted: switch the domain to another certificate, or disable its
HTTPS, first.`,
		Example: "  outpostctl cert delete cert-0123",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.rpcContext(cmd)
			defer cancel()
			resp, err := a.api.certs.DeleteCertificate(ctx, &outpostv1.DeleteCertificateRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.render(cmd, resp, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Deleted certificate %s.\n", args[0])
				return err
			})
		},
	})
}

// readCertAndKey reads a certificate chain file and a private key file. It
// refuses a certificate file that holds a private key too, so that a key
// never travels as (public) certificate material.
func readCertAndKey(certFile, keyFile string) (certPEM, keyPEM string, err error) {
	c, err := os.ReadFile(certFile)
	if err != nil {
		return "", "", fmt.Errorf("cannot read --cert: %w", err)
	}
	if strings.Contains(string(c), "PRIVATE KEY") {
		return "", "", fmt.Errorf("--cert %s holds a private key: give the certificate chain alone with --cert and the key with --key", certFile)
	}
	k, err := os.ReadFile(keyFile)
	if err != nil {
		return "", "", fmt.Errorf("cannot read --key: %w", err)
	}
	if len(strings.TrimSpace(string(k))) == 0 {
		return "", "", errors.New("--key " + keyFile + " is empty")
	}
	return string(c), string(k), nil
}

// publicPEM is a PEM chain as printed: the certificate blocks only. The API
// never returns a private key; this makes sure outpostctl cannot print one.
func publicPEM(chain string) string {
	var out []byte
	rest := []byte(chain)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return string(out)
		}
		if !strings.Contains(block.Type, "PRIVATE KEY") {
			out = append(out, pem.EncodeToMemory(block)...)
		}
	}
}

// writeCertificate writes the `cert get` view of a certificate.
func writeCertificate(w io.Writer, c *outpostv1.Certificate) error {
	v := newDetails(w)
	writeCertificateFields(v, c)
	return v.flush()
}

func writeCertificateFields(v *details, c *outpostv1.Certificate) {
	v.field("ID", c.GetId())
	v.field("Name", c.GetName())
	v.field("Common name", c.GetCommonName())
	v.field("DNS names", c.GetDnsNames()...)
	v.field("Issuer", c.GetIssuer())
	v.field("Valid from", timestamp(c.GetNotBefore()))
	v.field("Valid until", validUntil(c, time.Now()))
	v.field("Key type", enumName(c.GetKeyType()))
	v.field("SHA-256 fingerprint", c.GetFingerprintSha256())
	v.field("Chain trust", enumName(c.GetChainTrust()))
	v.field("Version", versionSummary(c))
	v.field("Owner domain", c.GetOwnerDomain())
	v.field("Account", c.GetAccount())
	v.field("Uploaded", timestamp(c.GetCreateTime()))
}

// validUntil renders not_after with how long is left.
func validUntil(c *outpostv1.Certificate, now time.Time) string {
	if c.GetNotAfter() == nil {
		return "-"
	}
	end := c.GetNotAfter().AsTime()
	left := end.Sub(now)
	switch {
	case left <= 0:
		return timestamp(c.GetNotAfter()) + " (expired)"
	case left < 48*time.Hour:
		return fmt.Sprintf("%s (expires in %s)", timestamp(c.GetNotAfter()), left.Round(time.Minute))
	}
	return fmt.Sprintf("%s (%d days left)", timestamp(c.GetNotAfter()), int(left.Hours()/24))
}
